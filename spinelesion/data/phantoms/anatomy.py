"""Column geometry: level sizes, vertebra frames (a kinematic chain), bone shapes, the canal tube.

Frames: every vertebra has a rigid frame (origin at the body centre, axes ``l`` lateral towards
the patient's right, ``a`` anterior, ``w`` superior along its own axis). Bodies and posterior
elements are implicit shapes in that frame, so heights along the vertebra's own axis are exact.
The canal, thecal sac and cord follow a smooth spline through the canal centres; points are
mapped to tube coordinates ``(s, u, v)`` (arc length, lateral, anterior) by Newton projection.

Typical adult dimensions (body height, depth, width, disc height, canal, cord) follow the
ranges of Panjabi et al. (Spine 1991, 1992) for thoracic and lumbar and Gilad & Nissan (1986)
for cervical vertebrae, rounded; they vary between cases by a global scale.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.spatial.transform import Rotation

#: Levels of default phantoms: C3 to L2.
LEVELS: tuple[str, ...] = tuple([f"C{i}" for i in range(3, 8)] + [f"T{i}" for i in range(1, 13)]
                                + ["L1", "L2"])
#: Levels of phantoms drawn with context (``draw_params(context=True)``): down to L5.
LEVELS_CONTEXT: tuple[str, ...] = LEVELS + ("L3", "L4", "L5")
#: Every level a column may hold, superior -> inferior: context phantoms add the atlas (C1) and
#: axis (C2) above C3 and S1 below L5 (:mod:`.junctions`); indices into :data:`LEVELS_CONTEXT` are unchanged.
LEVELS_ALL: tuple[str, ...] = ("C1", "C2") + LEVELS_CONTEXT + ("S1",)

# anchor level -> (height, depth, width, disc_above, canal_half_width, cord_half_width,
#                  pedicle_r, spinous_len, spinous_angle_deg, tp_len, tp_back, lordosis_deg)
# C1 has no body: its "body" is the virtual one its frame is built on (centred on the dens, height
# = the atlas ring's, disc_above = the gap to the skull base); C2's disc_above is the C1/C2 joint gap;
# S1's disc_above is the L5/S1 disc and its lordosis the lumbosacral angle.
_ANCHORS: dict[str, tuple[float, ...]] = {
    "C1": (14.0, 16.0, 20.0, 4.0, 14.5, 6.8, 3.5, 8.0, 0.0, 36.0, 0.0, 0.0),
    "C2": (15.0, 15.5, 18.0, 1.0, 13.5, 6.6, 3.5, 24.0, 20.0, 24.0, 0.0, 2.0),
    "C3": (14.0, 16.0, 20.0, 5.0, 12.5, 6.5, 3.0, 14.0, 25.0, 24.0, 0.0, 4.0),
    "C7": (15.0, 17.0, 25.0, 5.0, 12.0, 6.0, 3.5, 22.0, 35.0, 27.0, 2.0, 1.0),
    "T1": (16.0, 18.0, 27.0, 4.0, 10.5, 5.0, 4.0, 26.0, 40.0, 34.0, 8.0, -2.0),
    "T6": (19.0, 24.0, 29.0, 4.5, 9.5, 4.5, 4.0, 30.0, 60.0, 36.0, 10.0, -3.5),
    "T12": (23.0, 29.0, 38.0, 7.0, 10.5, 4.5, 4.5, 26.0, 20.0, 30.0, 4.0, 1.0),
    "L2": (26.0, 32.0, 44.0, 10.0, 11.5, 4.5, 5.0, 26.0, 5.0, 38.0, 0.0, 6.0),
    "L5": (27.0, 34.0, 50.0, 11.5, 12.5, 4.5, 6.0, 22.0, 0.0, 28.0, 0.0, 9.0),
    "S1": (29.0, 36.0, 52.0, 12.0, 13.0, 4.5, 6.5, 12.0, 10.0, 16.0, 0.0, 16.0),
}
_FIELDS = ("height_mm", "depth_mm", "width_mm", "disc_above_mm", "canal_half_width_mm",
           "cord_half_width_mm", "pedicle_radius_mm", "spinous_length_mm", "spinous_angle_deg",
           "tp_length_mm", "tp_back_mm", "lordosis_deg")


def level_dims(level: str) -> dict[str, float]:
    """Typical dimensions of one level, linearly interpolated between anchor levels."""
    idx = LEVELS_ALL.index(level)
    xs = [LEVELS_ALL.index(k) for k in _ANCHORS]
    vals = np.array(list(_ANCHORS.values()))
    return {f: float(np.interp(idx, xs, vals[:, j])) for j, f in enumerate(_FIELDS)}


def draw_anatomy(rng: np.random.Generator, *, n_vertebrae: int, lowest_level_index: int,
                 levels: list[str] | None = None) -> dict:
    """Draw one column (JSON-serialisable). Vertebrae are listed inferior -> superior.

    ``lowest_level_index`` indexes :data:`LEVELS_CONTEXT` (0 = C3 ... 21 = L2 ... 24 = L5);
    ``levels`` (inferior -> superior, names of :data:`LEVELS_ALL`) replaces both when given.
    """
    scale = float(rng.uniform(0.9, 1.1))
    if levels is None:
        levels = [LEVELS_CONTEXT[lowest_level_index - i] for i in range(n_vertebrae)]
    phase = rng.uniform(0, 2 * np.pi)
    vertebrae = []
    for k, level in enumerate(levels):
        d = level_dims(level)
        jitter = lambda: float(rng.uniform(0.985, 1.015))  # noqa: E731  small level-to-level spread
        vertebrae.append({
            "level": level,
            "height_mm": d["height_mm"] * scale * jitter(),
            "depth_mm": d["depth_mm"] * scale * jitter(),
            "width_mm": d["width_mm"] * scale * jitter(),
            "disc_above_mm": d["disc_above_mm"] * scale * float(rng.uniform(0.85, 1.15)),
            "disc_angle_deg": [d["lordosis_deg"] + float(rng.normal(0, 1.0)),
                               float(2.0 * np.sin(phase + 0.6 * k) + rng.normal(0, 0.5))],
            "canal_half_width_mm": d["canal_half_width_mm"] * scale,
            "cord_half_width_mm": d["cord_half_width_mm"] * float(rng.uniform(0.95, 1.1)),
            "pedicle_radius_mm": d["pedicle_radius_mm"] * scale,
            "spinous_length_mm": d["spinous_length_mm"] * scale * jitter(),
            "spinous_angle_deg": d["spinous_angle_deg"],
            "tp_length_mm": d["tp_length_mm"] * scale * jitter(),
            "tp_back_mm": d["tp_back_mm"],
            "cortex_mm": float(rng.uniform(1.0, 1.5)),
            "profile": {"kind": "none"},
        })
    first = level_dims(levels[0])
    below = first["disc_above_mm"] * scale
    for v in vertebrae:
        v["disc_below_mm"], below = below, v["disc_above_mm"]
    return {
        "levels": levels,
        "scale": scale,
        "vertebrae": vertebrae,
        "disc_below_first_mm": vertebrae[0]["disc_below_mm"],
        # canal cross-section along AP, posterior -> anterior (mm); wide epidural/CSF spaces keep
        # the Bilsky sub-grades apart by at least a voxel.
        "canal": {"epi_post_mm": float(rng.uniform(1.8, 2.4)), "csf_post_mm": float(rng.uniform(2.8, 3.4)),
                  "cord_ap_mm": float(rng.uniform(6.5, 8.5)), "csf_ant_mm": float(rng.uniform(4.3, 5.0)),
                  "epi_ant_mm": float(rng.uniform(4.5, 5.2))},
        "torso": {"skin_behind_spinous_mm": float(rng.uniform(12, 35)), "fat_mm": float(rng.uniform(6, 20)),
                  "half_width_mm": float(rng.uniform(130, 170)), "ap_mm": float(rng.uniform(190, 260)),
                  "aorta_radius_mm": float(rng.uniform(9, 13))},
        "world": {"rotvec": [float(x) for x in rng.normal(0, 0.04, 3)],
                  "centre_mm": [float(x) for x in rng.uniform(-60, 60, 3)]},
    }


# ---------------------------------------------------------------- body height profile

def body_height(v: dict, u: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Body height (mm) along the vertebra's own axis at lateral ``u`` and anterior ``a`` (mm).

    Profiles: ``none`` (h0), ``wedge`` (linear in ``a`` through the posterior height at
    a = -0.4 D and the anterior height at a = +0.4 D), ``crush`` (uniform), ``biconcave``
    (rim height minus a central dip). Endplates sit symmetrically at +-height/2.
    """
    p = v["profile"]
    depth, width = v["depth_mm"], v["width_mm"]
    kind = p["kind"]
    if kind == "none":
        return np.full(np.shape(u), v["height_mm"], np.float32)
    if kind == "wedge":
        h_mid = 0.5 * (p["anterior_mm"] + p["posterior_mm"])
        return (h_mid + (p["anterior_mm"] - p["posterior_mm"]) * a / (0.8 * depth)).astype(np.float32)
    if kind == "crush":
        return np.full(np.shape(u), p["height_mm"], np.float32)
    if kind == "biconcave":
        q = np.minimum(1.0, (2 * a / depth) ** 2 + (2 * u / width) ** 2)
        return (p["rim_mm"] - p["dip_mm"] * (1.0 - q)).astype(np.float32)
    raise ValueError(f"unknown body profile {kind!r}")


def body_heights_amp(v: dict) -> tuple[float, float, float]:
    """(anterior, middle, posterior) heights in mm at a = +0.4 D, 0, -0.4 D on the mid-sagittal plane."""
    a = np.array([0.4, 0.0, -0.4]) * v["depth_mm"]
    h = body_height(v, np.zeros(3), a)
    return float(h[0]), float(h[1]), float(h[2])


def _endplate_plane(v: dict) -> tuple[float, float]:
    """(slope dw/da of the superior endplate's rim plane, its height at a = 0) in the vertebra frame."""
    p = v["profile"]
    if p["kind"] == "wedge":
        slope = (p["anterior_mm"] - p["posterior_mm"]) / (0.8 * v["depth_mm"]) / 2
        return slope, 0.25 * (p["anterior_mm"] + p["posterior_mm"])
    if p["kind"] == "biconcave":
        return 0.0, p["rim_mm"] / 2
    if p["kind"] == "crush":
        return 0.0, p["height_mm"] / 2
    return 0.0, v["height_mm"] / 2


# ---------------------------------------------------------------- frames

def _rx(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def build_frames(anatomy: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """World frames (origin (3,), rotation (3,3) with columns l, a, w) of the vertebrae.

    Returns n + 2 frames: a virtual vertebra below the first and above the last (for the end discs
    and the canal), then the real ones: index ``k + 1`` holds vertebra ``k``.
    The chain stacks body, endplate tilt (collapse), disc angle (lordosis/kyphosis, scoliosis) and
    disc height; the column is then turned so its chord runs along +z, and placed in the world.
    """
    verts = anatomy["vertebrae"]
    ghost_below = dict(verts[0], profile={"kind": "none"}, disc_above_mm=anatomy["disc_below_first_mm"])
    if "angle_below_first_deg" in anatomy:      # a sacrum: the fused S2 below S1 (junctions.draw_junctions)
        ghost_below["disc_angle_deg"] = anatomy["angle_below_first_deg"]
    ghost_above = dict(verts[-1], profile={"kind": "none"})
    chain = [ghost_below] + list(verts) + [ghost_above]
    origin, rot = np.zeros(3), np.eye(3)
    frames = [(origin, rot)]
    for lower, upper in zip(chain[:-1], chain[1:]):
        slope_l, top_l = _endplate_plane(lower)
        slope_u, bot_u = _endplate_plane(upper)
        contact_rot = rot @ _rx(np.arctan(slope_l))
        contact = origin + rot @ np.array([0.0, 0.0, top_l])
        sag, cor = np.radians(lower["disc_angle_deg"])
        contact_rot = contact_rot @ _rx(sag) @ _ry(cor)
        contact = contact + contact_rot[:, 2] * lower["disc_above_mm"]
        rot = contact_rot @ _rx(np.arctan(slope_u))
        origin = contact + rot[:, 2] * bot_u
        frames.append((origin, rot))
    # align the chord of the real bodies with +z, keep anterior near +y, then place in the world
    chord = frames[-2][0] - frames[1][0]
    align, _ = Rotation.align_vectors([[0, 0, 1.0], [0, 1.0, 0]], [chord, frames[len(frames) // 2][1][:, 1]],
                                      weights=[100.0, 1.0])
    turn = Rotation.from_rotvec(anatomy["world"]["rotvec"]) * align
    centre = 0.5 * (frames[1][0] + frames[-2][0])
    shift = np.asarray(anatomy["world"]["centre_mm"])
    return [(turn.apply(o - centre) + shift, turn.as_matrix() @ r) for o, r in frames]


def canal_offset(v: dict, canal: dict) -> float:
    """Distance (mm) from the body centre back to the canal centre, in the vertebra frame."""
    return v["depth_mm"] / 2 + canal_half_ap(canal)


def canal_half_ap(canal: dict) -> float:
    return 0.5 * (canal["epi_post_mm"] + canal["csf_post_mm"] + canal["cord_ap_mm"]
                  + canal["csf_ant_mm"] + canal["epi_ant_mm"])


# ---------------------------------------------------------------- canal tube

class Centreline:
    """Smooth canal centreline with a moving frame; maps world points to tube coordinates.

    Attributes (sampled every ``step_mm``): ``s`` (M,), ``c``/``t``/``a``/``l`` (M, 3) position,
    unit tangent (superior), anterior and lateral (right) unit vectors; ``vertebra_s`` (n,) arc
    length of each real vertebra's canal centre.
    """

    def __init__(self, frames: list[tuple[np.ndarray, np.ndarray]], anatomy: dict, step_mm: float = 0.5):
        verts = anatomy["vertebrae"]
        chain = [verts[0]] + list(verts) + [verts[-1]]
        pts = np.array([o - r[:, 1] * canal_offset(v, anatomy["canal"]) for (o, r), v in zip(frames, chain)])
        ants = np.array([r[:, 1] for _, r in frames])
        # straight extensions beyond the ends so every voxel projects inside the table
        t0 = frames[0][1][:, 2]
        t1 = frames[-1][1][:, 2]
        pts = np.vstack([pts[0] - 150 * t0, pts, pts[-1] + 150 * t1])
        ants = np.vstack([ants[0], ants, ants[-1]])
        knots = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        spline = CubicSpline(knots, pts, bc_type="natural")
        fine = np.arange(0.0, knots[-1], 0.25)
        seg = np.linalg.norm(np.diff(spline(fine), axis=0), axis=1)
        arc = np.concatenate([[0.0], np.cumsum(seg)])
        self.s = np.arange(0.0, arc[-1], step_mm)
        knot_s = np.interp(knots, fine, arc)
        param = np.interp(self.s, arc, fine)
        self.c = spline(param)
        t = spline(param, 1)
        self.t = t / np.linalg.norm(t, axis=1, keepdims=True)
        a = np.stack([np.interp(self.s, knot_s, ants[:, j]) for j in range(3)], axis=1)
        a -= np.sum(a * self.t, axis=1, keepdims=True) * self.t
        self.a = a / np.linalg.norm(a, axis=1, keepdims=True)
        self.l = np.cross(self.a, self.t)
        self.vertebra_s = knot_s[2:-2]
        self.step_mm = step_mm

    def at(self, s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(position, tangent, anterior, lateral) at arc length ``s`` (nearest sample)."""
        i = int(np.clip(round(s / self.step_mm), 0, len(self.s) - 1))
        return self.c[i], self.t[i], self.a[i], self.l[i]

    def project(self, points: np.ndarray, iterations: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(s, u, v) float32 arrays (N,) for world points (N, 3): arc length, lateral, anterior (mm)."""
        pts = points.astype(np.float32, copy=False)
        axis = (self.c[-1] - self.c[0]) / np.linalg.norm(self.c[-1] - self.c[0])
        proj_table = (self.c - self.c[0]) @ axis
        s = np.interp(pts @ axis.astype(np.float32), proj_table, self.s).astype(np.float32)
        c32, t32 = self.c.astype(np.float32), self.t.astype(np.float32)
        for _ in range(iterations):
            idx = np.clip(np.rint(s / self.step_mm).astype(np.int32), 0, len(self.s) - 1)
            s = s + np.einsum("ij,ij->i", pts - c32[idx], t32[idx])
            np.clip(s, 0, self.s[-1], out=s)
        idx = np.clip(np.rint(s / self.step_mm).astype(np.int32), 0, len(self.s) - 1)
        d = pts - c32[idx]
        u = np.einsum("ij,ij->i", d, self.l[idx].astype(np.float32))
        v = np.einsum("ij,ij->i", d, self.a[idx].astype(np.float32))
        return s, u, v

    def interp(self, s: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Per-vertebra values (n,) interpolated along the column at arc lengths ``s``."""
        return np.interp(s, self.vertebra_s, values).astype(np.float32)


# ---------------------------------------------------------------- bone shapes (vertebra frame)

def capsule_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float,
                     scale: np.ndarray | None = None, *, far_mm: float = 3.0) -> np.ndarray:
    """Signed distance (mm, negative inside) of points (N, 3) to a capsule a-b of ``radius``.

    ``scale`` (3,) stretches space before measuring (elliptical cross-sections). Points farther
    than about ``far_mm`` outside the capsule's bounding box get +inf (not computed)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    sc = np.ones(3, np.float32) if scale is None else np.asarray(scale, np.float32)
    pad = (radius + far_mm) / sc
    lo, hi = np.minimum(a, b) - pad, np.maximum(a, b) + pad
    near = np.all((p >= lo) & (p <= hi), axis=1)
    out = np.full(len(p), np.inf, np.float32)
    q = p[near] * sc
    a, b = a * sc, b * sc
    ab = b - a
    t = np.clip(((q - a) @ ab) / float(ab @ ab), 0.0, 1.0)
    out[near] = np.linalg.norm(q - a - t[:, None] * ab, axis=1) - radius
    return out


def body_signed_distance(v: dict, q: np.ndarray) -> np.ndarray:
    """Approximate signed distance (mm) to the vertebral body for local points q (N, 3) = (l, a, w).

    Cross-section: ellipse centred 0.15 D behind the middle with a flat posterior wall at a = -D/2,
    a slight waist at mid-height; axial extent +-body_height/2 (the collapse profile). Points well
    outside the body's box get +inf."""
    depth, width, h0 = v["depth_mm"], v["width_mm"], v["height_mm"]
    near = ((np.abs(q[:, 0]) < 0.5 * width + 3) & (q[:, 1] > -0.5 * depth - 3) & (q[:, 1] < 0.5 * depth + 3)
            & (np.abs(q[:, 2]) < 0.5 * h0 + 3))
    out = np.full(len(q), np.inf, np.float32)
    x, y, z = q[near, 0], q[near, 1], q[near, 2]
    waist = 1.0 - 0.06 * (1.0 - np.clip(2 * z / h0, -1, 1) ** 2)
    semi_l, semi_a = 0.5 * width * waist, 0.65 * depth
    rn = np.sqrt((x / semi_l) ** 2 + ((y + 0.15 * depth) / semi_a) ** 2)
    d_rad = (rn - 1.0) * np.minimum(semi_l, semi_a)
    d_post = -0.5 * depth - y
    d_ax = np.abs(z) - 0.5 * body_height(v, x, y)
    out[near] = np.maximum(np.maximum(d_rad, d_post), d_ax)
    return out


def disc_inside(lower: dict, upper: dict, q_low: np.ndarray, q_up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(disc mask, nucleus mask) for points given in the lower and upper vertebra frames.

    The disc fills the gap above the lower body's superior endplate and below the upper body's
    inferior endplate, within the mean body outline bulging 3 %."""
    q = 0.5 * (q_low + q_up)
    depth = 0.5 * (lower["depth_mm"] + upper["depth_mm"])
    width = 0.5 * (lower["width_mm"] + upper["width_mm"])
    x, y = q[:, 0], q[:, 1]
    rn = np.sqrt((x / (0.5 * width * 1.03)) ** 2 + ((y + 0.15 * depth) / (0.65 * depth * 1.03)) ** 2)
    gap = (lower["disc_above_mm"] + 0.5 * (lower["height_mm"] + upper["height_mm"]))
    cand = np.flatnonzero((rn <= 1.0) & (y >= -0.5 * depth - 0.5) & (np.abs(q_low[:, 2]) < gap + 5))
    ql, qu = q_low[cand], q_up[cand]
    above = ql[:, 2] > 0.5 * body_height(lower, ql[:, 0], ql[:, 1])
    below = qu[:, 2] < -0.5 * body_height(upper, qu[:, 0], qu[:, 1])
    disc = np.zeros(len(q), bool)
    disc[cand] = above & below
    nucleus = disc & (np.sqrt((x / (0.3 * width)) ** 2 + ((y + 0.05 * depth) / (0.3 * depth)) ** 2) <= 1.0)
    return disc, nucleus


def posterior_elements(v: dict, canal: dict, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(signed distance (N,) mm, side (N,) int8) of the posterior elements at local points q (N, 3).

    Side: 2 left (l < 0), 3 right, 4 midline (spinous process). Pedicles, laminae, superior and
    inferior articular processes, transverse processes and the spinous process are capsules; the
    canal itself is carved out by the caller."""
    depth, h0 = v["depth_mm"], v["height_mm"]
    rc_ap, rc_l = canal_half_ap(canal), v["canal_half_width_mm"]
    vc = -(depth / 2 + rc_ap)                     # canal centre (anterior coordinate)
    pr = v["pedicle_radius_mm"]
    wp = 0.15 * h0                                  # pedicles sit on the upper half of the body
    x = np.abs(q[:, 0])
    qa = np.stack([x, q[:, 1], q[:, 2]], axis=1)   # mirror: one side serves both
    stretch = np.array([1.0, 1.0, 0.65], np.float32)
    ped_x = rc_l + 0.7 * pr
    d = capsule_distance(qa, np.array([ped_x, -depth / 2 + 2, wp]), np.array([ped_x, vc - 1, wp]), pr, stretch)
    facet_x, facet_a = rc_l + 0.6 * pr, vc - 0.5 * rc_ap
    gap_up, gap_down = 0.5 * v["disc_above_mm"], 0.5 * v["disc_below_mm"]
    d = np.minimum(d, capsule_distance(qa, np.array([facet_x + 1.5, facet_a, wp]),
                                       np.array([facet_x + 1.5, facet_a - 1, h0 / 2 + gap_up]), 0.8 * pr))
    d = np.minimum(d, capsule_distance(qa, np.array([facet_x - 0.5, facet_a - 2, wp]),
                                       np.array([facet_x - 0.5, facet_a - 3, -h0 / 2 - gap_down + 1]), 0.8 * pr))
    tp_r = 0.8 * pr
    d = np.minimum(d, capsule_distance(qa, np.array([ped_x, vc, wp]),
                                       np.array([v["tp_length_mm"], vc - v["tp_back_mm"], wp + 2]), tp_r))
    # laminae: an arch behind the canal, from the pedicles to the midline
    lam_r = 0.45 * pr + 1.0
    lam_end = np.array([0.0, vc - rc_ap - lam_r + 0.5, wp - 2])
    d = np.minimum(d, capsule_distance(qa, np.array([ped_x, vc - 0.5 * rc_ap, wp]), lam_end, lam_r,
                                       np.array([1.0, 1.0, 0.45], np.float32)))
    side = np.where(q[:, 0] < 0, 2, 3).astype(np.int8)
    ang = np.radians(v["spinous_angle_deg"])
    tip = lam_end + v["spinous_length_mm"] * np.array([0.0, -np.cos(ang), -np.sin(ang)])
    d_sp = capsule_distance(q, lam_end, tip, 0.3 * h0, np.array([2.2, 1.0, 1.0], np.float32))
    side[d_sp < d] = 4
    return np.minimum(d, d_sp), side


def vertebra_key_points(v: dict, canal: dict) -> np.ndarray:
    """(M, 3) local points on the vertebra's outline (body corners, process tips), mm."""
    depth, width, h0 = v["depth_mm"], v["width_mm"], v["height_mm"]
    vc = -(depth / 2 + canal_half_ap(canal))
    rc_ap, pr = canal_half_ap(canal), v["pedicle_radius_mm"]
    ang = np.radians(v["spinous_angle_deg"])
    lam_end = np.array([0.0, vc - rc_ap - 0.45 * pr, 0.15 * h0 - 2])
    tip = lam_end + v["spinous_length_mm"] * np.array([0.0, -np.cos(ang), -np.sin(ang)])
    r_sp = 0.3 * h0
    pts = [[x, y, z] for x in (-width / 2, width / 2) for y in (-depth / 2, depth / 2) for z in (-h0 / 2, h0 / 2)]
    pts += [tip + [0, -r_sp, -r_sp], tip + [0, -r_sp, r_sp]]
    for x in (-1, 1):
        tp = np.array([x * v["tp_length_mm"], vc - v["tp_back_mm"], 0.15 * h0 + 2])
        pts += [tp + [x * pr, 0, pr], tp + [x * pr, 0, -pr]]
        pts += [[x * (v["canal_half_width_mm"] + pr), vc - rc_ap, h0 / 2 + v["disc_above_mm"] / 2 + pr],
                [x * (v["canal_half_width_mm"] + pr), vc - rc_ap, -h0 / 2 - v["disc_below_mm"] / 2 - pr]]
    return np.array(pts, float)
