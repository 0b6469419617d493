"""The ends of the column in context phantoms: atlas (C1), axis (C2) with the dens, skull base, S1, sacrum.

Drawn only for phantoms made with ``context=True``. Labels follow the TotalSegmentator adapter
(:mod:`spinelesion.data.adapters.totalseg`, geometric body / posterior split):

* C1 (atlas) has no body: anterior arch, lateral masses, posterior arch and transverse processes are
  all posterior elements (label 2). Its frame is built on a virtual body centred on the dens.
* C2 (axis): body and dens are vertebral body (1), and so are the superior articular masses beside
  the dens that carry C1 (they lie in front of the canal); the arch is posterior elements (2).
  There is no disc between C1 and C2, nor between C1 and the skull.
* S1: body (1); pedicles, laminae, facets and median crest (2); the alae are split like the
  adapter splits them: body in front of the canal's front wall, posterior elements behind it.
  The L5/S1 disc carries the lumbosacral angle; S1 is fused to the sacrum (no disc below).
* Bone with label 0 (cortex / marrow tissue, like ribs): the occipital bone (a bowl around the
  posterior fossa, 8-10 mm thick, with the foramen magnum), occipital condyles, clivus and
  mastoids; the sacrum below S1 (S2-S5 fused, tapering, curved forward) and the coccyx.
* Canal: above the foramen magnum the cord goes on as the medulla (cord tissue, label 0) in CSF
  (label 0); the thecal sac ends near S2, below it a narrower sacral canal (epidural fat)
  follows the sacrum down to the sacral hiatus, where it opens dorsally.

Shapes of C1, C2 and S1 live in the vertebra frame (``l`` lateral, ``a`` anterior, ``w`` superior,
mm, origin at the body centre) like :mod:`.anatomy`; the skull base and the sacrum are evaluated in
tube coordinates ``(s, u, v)`` of the canal centreline (arc length, lateral, anterior; mm) relative
to C1's or S1's canal centre, so the canal passes through them by construction.

Typical dimensions (rounded): dens ~10 mm wide, ~15 mm above the C2 body; atlanto-dental interval
1.5-2.5 mm; foramen magnum ~35 mm AP x ~30 mm wide; S1 body ~29 mm high, 36 mm deep, 52 mm wide;
sacrum ~80-90 mm long below S1, the dural sac ending at S2.
"""

from __future__ import annotations

import numpy as np

from spinelesion import labels as L
from spinelesion.data.phantoms import anatomy as an
from spinelesion.synthesis.tissues import ID

#: Chance that a context column is a cervical (resp. lumbosacral) scan: its top snaps to C3 (its bottom to L5).
P_CERVICAL_SCAN = 0.15
P_LUMBOSACRAL_SCAN = 0.15
#: Chance that a column reaching C3/C4 (L4/L5) also shows C1-C2 and the skull base (S1 and the sacrum).
P_JUNCTION = 0.85
#: Fewest ordinary levels (C3..L5) kept when a junction makes the column too long for the grid.
_MIN_ORDINARY = 4


# ---------------------------------------------------------------- drawing

def draw_levels(rng: np.random.Generator, *, lowest: int, n: int, room_mm: float) -> list[str]:
    """Levels of a context column, inferior -> superior (names of :data:`.anatomy.LEVELS_ALL`).

    ``lowest`` indexes :data:`.anatomy.LEVELS_CONTEXT` and ``n`` counts the drawn levels, as
    ``draw_params`` chose them. Some columns snap to the top or bottom of C3..L5; a column whose
    top is C3 or C4 then gets C1 and C2 (C3 added if missing), one whose bottom is L4 or L5 gets
    S1 (L5 added if missing), each with chance :data:`P_JUNCTION`. With a junction, ordinary levels
    at the far end are dropped while the column is longer than ``room_mm`` (down to four).
    """
    order = an.LEVELS_CONTEXT
    snap, with_top, with_bottom = rng.random(3)
    top = lowest - n + 1
    if snap < P_CERVICAL_SCAN:
        top = 0
    elif snap < P_CERVICAL_SCAN + P_LUMBOSACRAL_SCAN:
        top = len(order) - n
    bottom = top + n - 1
    names = list(order[top:bottom + 1])                       # superior -> inferior
    if top <= 1 and with_top < P_JUNCTION:
        names = ["C1", "C2"] + list(order[:top]) + names
    if bottom >= len(order) - 2 and with_bottom < P_JUNCTION:
        names = names + list(order[bottom + 1:]) + ["S1"]
    added = names[0] == "C1" or names[-1] == "S1"
    while added and column_length(names) > room_mm and sum(x not in ("C1", "C2", "S1") for x in names) > _MIN_ORDINARY:
        names.pop(0 if names[-1] == "S1" else -1)             # drop from the end without a junction
    return names[::-1]


def column_length(names: list[str]) -> float:
    """Rough length (mm) of a column of these levels: heights and discs of typical size, plus 10 %."""
    return sum(an.level_dims(x)["height_mm"] + an.level_dims(x)["disc_above_mm"] for x in names) * 1.1


def draw_junctions(rng: np.random.Generator, anatomy: dict) -> None:
    """Draw the junction shapes of a drawn column, in place (JSON-serialisable).

    Writes ``dens`` into C2, ``atlas`` into C1 and ``skull`` into the anatomy when C1 is there;
    ``sacrum`` when S1 is, and then fuses S1 to the sacrum (no disc below it, the sacral kyphosis
    as the angle to the virtual vertebra below, see :func:`.anatomy.build_frames`)."""
    verts = anatomy["vertebrae"]
    levels = [v["level"] for v in verts]
    scale = anatomy["scale"]
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    if "C1" in levels and "C2" in levels:
        c1, c2 = verts[levels.index("C1")], verts[levels.index("C2")]
        r_d = u(4.5, 5.5) * scale
        a_d = -0.1 * c2["depth_mm"]
        lm = [u(6.0, 7.0) * scale, u(8.0, 9.0) * scale, u(7.5, 8.5) * scale]    # lateral mass semi-axes
        facet = {"x_mm": r_d + 2.0 + lm[0], "a_mm": a_d - 1.0}
        c2["dens"] = {"radius_mm": r_d, "height_mm": u(13.0, 17.0) * scale, "a_mm": a_d, "facet": facet,
                      "lateral_mass_mm": lm}
        c1["atlas"] = {"dens_radius_mm": r_d, "dens_a_mm": a_d, "dens_height_mm": c2["dens"]["height_mm"],
                       "c2_top_mm": -(0.5 * c1["height_mm"] + c2["disc_above_mm"]), "facet": facet,
                       "adi_mm": u(1.5, 2.5), "arch_radius_mm": u(3.2, 4.0) * scale,
                       "posterior_arch_radius_mm": u(2.6, 3.2) * scale, "lateral_mass_mm": lm}
        anatomy["skull"] = {
            "fm_gap_mm": u(5.0, 7.0),                  # outer rim of the foramen magnum above C1's virtual top
            "fm_half_width_mm": max(u(14.5, 16.5) * scale, c1["canal_half_width_mm"] + 1.5),
            "fossa_mm": [u(50, 56) * scale, u(42, 48) * scale, u(40, 46) * scale],
            "thickness_mm": u(8.0, 10.0), "clivus_deg": u(60.0, 70.0), "clivus_mm": u(35.0, 45.0) * scale,
            "mastoids": bool(rng.random() < 0.8)}
    if levels[0] == "S1":
        s1 = verts[0]
        anatomy["disc_below_first_mm"] = 0.0
        s1["disc_below_mm"] = 0.0
        anatomy["angle_below_first_deg"] = [-u(5.0, 12.0), 0.0]   # S1/S2 nearly straight
        anatomy["sacrum"] = {"length_mm": u(75.0, 95.0) * scale, "curve_radius_mm": u(110.0, 160.0),
                             "sac_end_mm": u(8.0, 20.0), "hiatus": u(0.72, 0.85),
                             "coccyx_mm": u(20.0, 30.0) * scale if rng.random() < 0.8 else 0.0,
                             "ala_mm": u(12.0, 16.0) * scale}
        s1["ala_mm"] = anatomy["sacrum"]["ala_mm"]


def fused(lower: dict, upper: dict) -> bool:
    """True where two neighbours of the chain have no disc between them (C2/C1, C1/skull, S1/sacrum)."""
    return "C1" in (lower["level"], upper["level"]) or lower["level"] == upper["level"] == "S1"


# ---------------------------------------------------------------- vertebra shapes (vertebra frame)

def bone_distances(v: dict, canal: dict, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(body signed distance (N,), posterior signed distance (N,), side (N,) int8) at local points q (N, 3).

    The shapes of :mod:`.anatomy` for ordinary levels; C1, C2 and S1 get their own (module docstring).
    Signed distances in mm, negative inside, +inf far away; side as in :func:`.anatomy.posterior_elements`."""
    if v["level"] == "C1" and "atlas" in v:
        d, side = _atlas(v, canal, q)
        return np.full(len(q), np.inf, np.float32), d, side
    sd_body = an.body_signed_distance(v, q)
    sd_post, side = an.posterior_elements(v, canal, q)
    if v["level"] == "C2" and "dens" in v:
        sd_body = np.minimum(sd_body, _axis_extra(v, q))
    if v["level"] == "S1" and "ala_mm" in v:
        d_ala = _ala(v, q)
        front = q[:, 1] > -0.5 * v["depth_mm"]
        sd_body = np.minimum(sd_body, np.where(front, d_ala, np.inf))
        behind = ~front & (d_ala < sd_post)
        side[behind] = np.where(q[behind, 0] < 0, 2, 3)
        sd_post = np.minimum(sd_post, np.where(front, np.inf, d_ala))
    return sd_body.astype(np.float32), sd_post.astype(np.float32), side


def _ellipsoid(q: np.ndarray, centre, semi) -> np.ndarray:
    """Approximate signed distance (mm) to an axis-aligned ellipsoid (exact on spheres)."""
    semi = np.asarray(semi, np.float32)
    rn = np.linalg.norm((q - np.asarray(centre, np.float32)) / semi, axis=1)
    return ((rn - 1.0) * semi.min()).astype(np.float32)


def _axis_extra(v: dict, q: np.ndarray) -> np.ndarray:
    """Signed distance (mm) to the dens and the superior articular masses of C2 (C2 frame)."""
    dn = v["dens"]
    h, r = v["height_mm"], dn["radius_mm"]
    d = an.capsule_distance(q, np.array([0.0, dn["a_mm"], 0.5 * h - 3.0]),
                            np.array([0.0, dn["a_mm"], 0.5 * h + dn["height_mm"] - r]), r)
    sl, sa, _ = dn["lateral_mass_mm"]
    mirrored = np.stack([np.abs(q[:, 0]), q[:, 1], q[:, 2]], axis=1)
    shoulders = _ellipsoid(mirrored, (dn["facet"]["x_mm"], dn["facet"]["a_mm"], 0.5 * h - 3.5),
                           (0.85 * sl, 0.85 * sa, 3.5))
    return np.minimum(d, shoulders)


def _atlas(v: dict, canal: dict, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(signed distance (N,) mm, side (N,) int8) of the atlas ring at local points q (N, 3), C1 frame.

    Lateral masses on C2's superior articular masses beside the dens; anterior arch in front of the
    dens (atlanto-dental interval ``adi_mm``); posterior arch around the canal with a posterior
    tubercle (side 4); long transverse processes."""
    at = v["atlas"]
    r_d, a_d, adi, ra, rp = (at[k] for k in ("dens_radius_mm", "dens_a_mm", "adi_mm", "arch_radius_mm",
                                               "posterior_arch_radius_mm"))
    sl, sa, sw = at["lateral_mass_mm"]
    x_lm, a_lm = at["facet"]["x_mm"], at["facet"]["a_mm"]
    w_lm = at["c2_top_mm"] + 1.0 + sw                          # a 1 mm joint above C2
    w_arch = at["c2_top_mm"] + 0.55 * at["dens_height_mm"]     # the anterior arch holds the dens' upper half
    w_post = w_lm - 2.0
    qa = np.stack([np.abs(q[:, 0]), q[:, 1], q[:, 2]], axis=1)   # mirror: one side serves both
    d = _ellipsoid(qa, (x_lm, a_lm, w_lm), (sl, sa, sw))
    tall = np.array([1.0, 1.0, 0.7], np.float32)
    a_front = a_d + r_d + adi + ra
    ring = [np.array(p, float) for p in ((x_lm - 0.3 * sl, a_lm + 0.6 * sa, w_arch),
                                         (0.5 * (r_d + adi + ra), a_d + 0.85 * (r_d + adi + ra), w_arch),
                                         (0.0, a_front, w_arch))]
    for p0, p1 in zip(ring[:-1], ring[1:]):
        d = np.minimum(d, an.capsule_distance(qa, p0, p1, ra, tall))
    vc = -(0.5 * v["depth_mm"] + an.canal_half_ap(canal))
    semi_l = v["canal_half_width_mm"] + rp + 1.0
    semi_a = an.canal_half_ap(canal) + rp + 0.5
    arch = [np.array([x_lm, a_lm - 0.5 * sa, w_post])]
    arch += [np.array([semi_l * np.cos(t), vc + semi_a * np.sin(t), w_post]) for t in np.radians([-15, -45, -70, -90])]
    flat = np.array([1.0, 1.0, 0.6], np.float32)
    for p0, p1 in zip(arch[:-1], arch[1:]):
        d = np.minimum(d, an.capsule_distance(qa, p0, p1, rp, flat))
    d = np.minimum(d, an.capsule_distance(qa, np.array([x_lm + 0.5 * sl, a_lm - 1.0, w_lm]),
                                          np.array([v["tp_length_mm"], a_lm - 3.0, w_lm + 1.0]), 1.2 * rp))
    side = np.where(q[:, 0] < 0, 2, 3).astype(np.int8)
    back = vc - semi_a
    d_tub = an.capsule_distance(q, np.array([0.0, back, w_post]),
                                np.array([0.0, back - 0.5 * v["spinous_length_mm"], w_post]), rp + 1.0, flat)
    side[d_tub < d] = 4
    return np.minimum(d, d_tub), side


def _ala(v: dict, q: np.ndarray) -> np.ndarray:
    """Signed distance (mm) to the two sacral alae of S1 (S1 frame): wings beside the body."""
    ala = v["ala_mm"]
    mirrored = np.stack([np.abs(q[:, 0]), q[:, 1], q[:, 2]], axis=1)
    return _ellipsoid(mirrored, (0.5 * v["width_mm"] + ala, -0.1 * v["depth_mm"], -0.05 * v["height_mm"]),
                      (ala + 3.0, 0.4 * v["depth_mm"], 0.42 * v["height_mm"]))


def key_points(v: dict, canal: dict) -> np.ndarray:
    """(M, 3) local points on a vertebra's outline (mm): :func:`.anatomy.vertebra_key_points` and
    the junction shapes (dens tip, atlas ring, the foramen magnum above C1, alae, S2 below S1)."""
    pts = [an.vertebra_key_points(v, canal)]
    h, depth = v["height_mm"], v["depth_mm"]
    if v["level"] == "C1" and "atlas" in v:
        at = v["atlas"]
        front = at["dens_a_mm"] + at["dens_radius_mm"] + at["adi_mm"] + 2 * at["arch_radius_mm"] + 1
        back = -(0.5 * depth + 2 * an.canal_half_ap(canal) + 2 * at["posterior_arch_radius_mm"]
                 + 0.5 * v["spinous_length_mm"] + 3)
        x = v["tp_length_mm"] + 5
        pts.append(np.array([[sx * x, a, w] for sx in (-1, 1) for a in (front, back)
                             for w in (at["c2_top_mm"], 0.5 * h + 12)]))
    if v["level"] == "C2" and "dens" in v:
        pts.append(np.array([[0.0, v["dens"]["a_mm"], 0.5 * h + v["dens"]["height_mm"] + 1]]))
    if v["level"] == "S1" and "ala_mm" in v:
        x = 0.5 * v["width_mm"] + 2 * v["ala_mm"] + 4
        pts.append(np.array([[sx * x, a, w] for sx in (-1, 1) for a in (-0.5 * depth, 0.5 * depth)
                             for w in (-0.5 * h - 20, 0.5 * h)]))
    return np.vstack(pts)


def local_box(v: dict, canal: dict, margin_mm: float = 4.0) -> np.ndarray:
    """(8, 3) corners of a local box that holds the whole vertebra, junction shapes included (mm)."""
    pts = key_points(v, canal)
    lo, hi = pts.min(axis=0) - margin_mm, pts.max(axis=0) + margin_mm
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


# ---------------------------------------------------------------- skull base (tube coordinates)

def _skull_geometry(line, anat: dict) -> dict:
    """Skull-base landmarks in tube coordinates relative to C1's canal centre (mm).

    ``z_fm``: the foramen magnum's inferior rim above C1's canal centre; ``v_fm``, ``fm_ap``,
    ``fm_lat``: its centre and semi-axes; ``centre``/``semi``: the inner ellipsoid of the posterior
    fossa (its floor at ``z_fm`` + thickness); ``basion``: the anterior rim's (v, z)."""
    sk = anat["skull"]
    c1 = anat["vertebrae"][-1]
    at = c1["atlas"]
    half_ap = an.canal_half_ap(anat["canal"])
    v_dens = at["dens_a_mm"] + 0.5 * c1["depth_mm"] + half_ap
    z_fm = 0.5 * c1["height_mm"] + sk["fm_gap_mm"]
    basion, opisthion = v_dens + 1.0, -(half_ap + 6.0)
    semi = sk["fossa_mm"]
    t = sk["thickness_mm"]
    return {"s0": float(line.vertebra_s[-1]), "z_fm": z_fm, "v_fm": 0.5 * (basion + opisthion),
            "fm_ap": 0.5 * (basion - opisthion), "fm_lat": sk["fm_half_width_mm"], "basion": (basion, z_fm + 2.0),
            "centre": (opisthion - 5.0, z_fm + t + semi[2]), "semi": semi, "t": t, "v_dens": v_dens,
            "lateral_mass": (at["facet"]["x_mm"], at["facet"]["a_mm"] + 0.5 * c1["depth_mm"] + half_ap,
                             at["c2_top_mm"] + 1.0 + 2 * at["lateral_mass_mm"][2])}


def _fossa_radius(g: dict, u, v, z) -> np.ndarray:
    """Normalised radius of points in the posterior fossa's inner ellipsoid (1 on its inner table)."""
    (vc, zc), (sa, sb, sc) = g["centre"], g["semi"]
    return np.sqrt((u / sa) ** 2 + ((v - vc) / sb) ** 2 + ((z - zc) / sc) ** 2)


def render_head(tissue: np.ndarray, s, u, v, line, anat: dict) -> None:
    """Posterior fossa (cerebellum as soft tissue, a CSF rim) and scalp above C1 into ``tissue``, in place.

    Arrays (same shape) are tube coordinates; no-op without a skull."""
    if "skull" not in anat:
        return
    g = _skull_geometry(line, anat)
    idx = np.flatnonzero(s.ravel() > g["s0"] + g["z_fm"] - 25)
    if idx.size == 0:
        return
    uu, vv, z = u.ravel()[idx], v.ravel()[idx], s.ravel()[idx] - g["s0"]
    rn = _fossa_radius(g, uu, vv, z)
    mean = float(np.mean(g["semi"]))
    flat = tissue.reshape(-1)
    scalp = (rn <= 1 + (g["t"] + 6) / mean) & (flat[idx] == ID["air"]) & (z > g["z_fm"] - 5)
    flat[idx[scalp]] = ID["fat"]
    fossa = (rn < 1) & (vv < g["basion"][0] + 6) & (z > g["z_fm"])
    flat[idx[fossa]] = ID["soft"]
    flat[idx[fossa & (rn > 1 - 2.0 / mean) & _shell_kept(g, vv, z)]] = ID["csf"]


def intracranial(tissue: np.ndarray, label: np.ndarray, in_canal: np.ndarray, s, line, anat: dict) -> None:
    """Above the foramen magnum: the canal holds CSF and the medulla, both label 0 (in place)."""
    if "skull" not in anat:
        return
    g = _skull_geometry(line, anat)
    above = in_canal & (s > g["s0"] + g["z_fm"])
    tissue[above & (tissue == ID["epidural_fat"])] = ID["csf"]
    label[above] = L.BACKGROUND


def _shell_kept(g: dict, v, z) -> np.ndarray:
    """Where the bowl around the posterior fossa is bone: its floor and the occipital squama rising
    behind; nothing in front of the basion (the clivus is drawn apart) nor over the top."""
    (vc, zc), semi = g["centre"], g["semi"]
    return (v < g["basion"][0] + 6.0) & (z < np.where(v < vc - 0.3 * semi[1], zc + 0.8 * semi[2], zc - 0.2 * semi[2]))


def _skull_distance(g: dict, anat: dict, u, v, z) -> np.ndarray:
    """Approximate signed distance (mm) to the skull-base bone at tube points (u, v, z) (N,)."""
    sk = anat["skull"]
    mean = float(np.mean(g["semi"]))
    rn = _fossa_radius(g, u, v, z)
    d = np.maximum((1.0 - rn) * mean, (rn - 1.0) * mean - g["t"])      # shell of thickness t
    d = np.where(_shell_kept(g, v, z), d, np.inf)
    semi, zc = g["semi"], g["centre"][1]
    hole = ((u / g["fm_lat"]) ** 2 + ((v - g["v_fm"]) / g["fm_ap"]) ** 2 <= 1.0) & (z < zc)
    d = np.where(hole, np.inf, d)
    pts = np.stack([u, v, z], axis=1).astype(np.float32)
    b_v, b_z = g["basion"]
    ang = np.radians(sk["clivus_deg"])
    top = np.array([0.0, b_v + 5 + sk["clivus_mm"] * np.cos(ang), b_z + sk["clivus_mm"] * np.sin(ang)])
    d = np.minimum(d, an.capsule_distance(pts, np.array([0.0, b_v + 5.0, b_z + 3.0]), top, 6.0,
                                          np.array([0.45, 1.0, 1.0], np.float32)))
    x_lm, v_lm, z_lm = g["lateral_mass"]
    mirrored = np.stack([np.abs(u), v, z], axis=1).astype(np.float32)
    d = np.minimum(d, _ellipsoid(mirrored, (x_lm, v_lm, z_lm + 5.5), (6.0, 9.0, 4.5)))     # condyles on C1
    if sk["mastoids"]:
        x = 0.95 * semi[0]                   # lateral to C1's transverse processes, the tip at C1's level
        d = np.minimum(d, an.capsule_distance(mirrored, np.array([x, g["v_fm"] + 8, g["z_fm"] + 22]),
                                              np.array([x - 3, g["v_fm"] + 12, g["z_fm"] - 6]), 7.0))
    return d


# ---------------------------------------------------------------- sacrum (tube coordinates)

def _sacrum_section(anat: dict, z: np.ndarray) -> dict:
    """Cross-section of the sacrum and coccyx at heights ``z`` (mm below S1's canal centre, < 0).

    Returns arrays: ``t`` (0 at S1's inferior endplate, 1 at the S5 tip, > 1 coccyx), ``shift``
    (forward curve, mm), ``half_width``, ``front``, ``back`` (v of the outline), ``canal_u``,
    ``canal_v`` (semi-axes of the sacral canal, centred at ``shift``)."""
    sac, s1 = anat["sacrum"], anat["vertebrae"][0]
    h, depth, width = s1["height_mm"], s1["depth_mm"], s1["width_mm"]
    half_ap = an.canal_half_ap(anat["canal"])
    below = np.maximum(-z - 0.5 * h, 0.0)
    t = below / sac["length_mm"]
    ts = np.minimum(t, 1.0)
    shift = below ** 2 / (2 * sac["curve_radius_mm"])
    tc = np.clip((below - sac["length_mm"]) / max(sac["coccyx_mm"], 1e-6), 0.0, 1.0)
    half_width = np.where(t <= 1, (0.5 * width + 2 * sac["ala_mm"] + 1) * (1 - ts) ** 0.8 + 12 * ts, 12 - 7 * tc)
    front = np.where(t <= 1, half_ap + depth * (0.95 - 0.6 * ts), half_ap + depth * 0.35 * (1 - 0.6 * tc))
    back = np.where(t <= 1, -(half_ap * (1 - 0.5 * ts) + 4), 0.2 * half_ap)
    return {"t": t, "tc": tc, "shift": shift, "half_width": half_width, "front": front + shift,
            "back": back + shift, "canal_u": s1["canal_half_width_mm"] * 0.72 * (1 - 0.4 * ts),
            "canal_v": 0.6 * half_ap * (1 - 0.4 * ts)}


def trim_canal(in_canal: np.ndarray, in_sac: np.ndarray, in_cord: np.ndarray, s, u, v, line, anat: dict) -> None:
    """End the thecal sac near S2 and replace the canal below it by the sacral canal (in place).

    The sacral canal is narrower, follows the sacrum's forward curve and ends at the hiatus; no-op
    without a sacrum."""
    if "sacrum" not in anat:
        return
    s1, sac = anat["vertebrae"][0], anat["sacrum"]
    s0 = float(line.vertebra_s[0])
    idx = np.flatnonzero(s.ravel() < s0 - 0.5 * s1["height_mm"] - sac["sac_end_mm"])
    if idx.size == 0:
        return
    for m in (in_sac, in_cord):
        m.reshape(-1)[idx] = False
    sec = _sacrum_section(anat, s.ravel()[idx] - s0)
    sacral = (((u.ravel()[idx] / sec["canal_u"]) ** 2 + ((v.ravel()[idx] - sec["shift"]) / sec["canal_v"]) ** 2 <= 1)
              & (sec["t"] < sac["hiatus"]))
    in_canal.reshape(-1)[idx] = sacral


def _sacrum_distance(anat: dict, sec: dict, u, v) -> np.ndarray:
    """Approximate signed distance (mm) to the sacrum / coccyx at tube points (u, v) (N,) of section ``sec``."""
    centre = 0.5 * (sec["front"] + sec["back"])
    semi_v = np.maximum(0.5 * (sec["front"] - sec["back"]), 1.0)
    rn = np.sqrt(np.abs(u / sec["half_width"]) ** 2.5 + ((v - centre) / semi_v) ** 2)
    d = (rn - 1.0) * np.minimum(sec["half_width"], semi_v)
    hiatus = ((sec["t"] >= anat["sacrum"]["hiatus"]) & (sec["t"] <= 1)          # the canal opens dorsally
              & (np.abs(u) < sec["canal_u"] + 1.5) & (v < sec["shift"] + sec["canal_v"]))
    past_tip = (sec["t"] > 1) & (anat["sacrum"]["coccyx_mm"] <= 0) | (sec["tc"] >= 1)   # below S5 or the coccyx
    d = np.where(hiatus | past_tip, np.inf, d)
    return d.astype(np.float32)


# ---------------------------------------------------------------- painting

def render_bones(tissue: np.ndarray, label: np.ndarray, vid: np.ndarray, in_canal: np.ndarray,
                 s, u, v, line, anat: dict) -> None:
    """Skull base and sacrum (cortex / marrow tissue, label 0) into free voxels of the maps, in place.

    Vertebrae, discs, the canal and metal win; all arrays share one shape (tube coordinates s, u, v)."""
    parts = []
    if "skull" in anat:
        g = _skull_geometry(line, anat)
        idx = np.flatnonzero(s.ravel() > g["s0"])
        z = s.ravel()[idx] - g["s0"]
        parts.append((idx, _skull_distance(g, anat, u.ravel()[idx], v.ravel()[idx], z), 1.5))
    if "sacrum" in anat:
        s0, h = float(line.vertebra_s[0]), anat["vertebrae"][0]["height_mm"]
        idx = np.flatnonzero(s.ravel() < s0 - 0.5 * h + 5)
        sec = _sacrum_section(anat, s.ravel()[idx] - s0)
        parts.append((idx, _sacrum_distance(anat, sec, u.ravel()[idx], v.ravel()[idx]), 1.2))
    flat_t, flat_l, flat_v, flat_c = (x.reshape(-1) for x in (tissue, label, vid, in_canal))
    for idx, d, cortex_mm in parts:
        inside = d <= 0
        at = idx[inside]
        free = (flat_v[at] == 0) & (flat_l[at] == L.BACKGROUND) & ~flat_c[at] & (flat_t[at] != ID["metal"])
        flat_t[at[free]] = np.where(d[inside][free] > -cortex_mm, ID["cortex"], ID["marrow"]).astype(tissue.dtype)
