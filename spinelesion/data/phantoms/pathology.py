"""Pathology with known truth: intraosseous lesions, epidural extension (Bilsky 0-3), collapse.

Bilsky epidural spinal cord compression grades (Bilsky et al., J Neurosurg Spine 2010) are built
geometrically on the axial slice through the mass's deepest point, in canal coordinates
(``v`` anterior, 0 at the canal centre; the canal's anterior wall is the vertebral body):

* 1a: the mass stays in the anterior epidural fat, leaving fat between it and the thecal sac;
* 1b: it indents the sac, leaving CSF between it and the cord;
* 1c: it reaches the cord (touches it) without flattening it;
* 2: it flattens the cord from the front by ``cord_compression_mm``; CSF stays behind the cord;
* 3: as 2, and within a slab around the deepest slice the tumour fills the whole sac: no CSF.

Collapse (pathological fracture) changes the body height profile (see ``anatomy.body_height``):
wedge, crush or biconcave, with height loss drawn inside one Genant (1993) grade band, away from
the thresholds 20/25/40 % and from the 50 % SINS threshold (Fisher et al., Spine 2010).
"""

from __future__ import annotations

import numpy as np

from spinelesion.data.phantoms.anatomy import canal_half_ap
from spinelesion.vocabulary import BILSKY_GRADES

LESION_KINDS: tuple[str, ...] = ("lytic", "blastic", "mixed")
#: Fraction of the mass's half-length at full depth (a flat top keeps thin slivers to its fringe).
_PLATEAU = 0.3
#: How far (mm) the epidural mass may reach in front of the canal's anterior wall (see CanalModel.mass).
_WALL_OVERLAP_MM = 0.5
#: Levels drawn without collapse: C1 has no body, the dens and the sacrum hang on the C2 and S1 bodies.
_NO_COLLAPSE = ("C1", "C2", "S1")
#: Height-loss bands (percent) for collapse: Genant 1, 2, 3 under 50 %, 3 over 50 %.
_LOSS_BANDS = ((21.5, 23.5), (28.0, 37.0), (42.0, 47.0), (55.0, 68.0))


def draw_pathology(rng: np.random.Generator, anatomy: dict, *, healthy: bool, bilsky: str | None) -> dict:
    """Draw lesions, collapse and epidural extension for a drawn column.

    Collapse is written into ``anatomy["vertebrae"][k]["profile"]`` (the column is built from it).
    Returns ``{"lesions": [...], "epidural": {...} | None, "bilsky_grade": str | None}``.
    """
    if healthy:
        return {"lesions": [], "epidural": None, "bilsky_grade": None}
    verts = anatomy["vertebrae"]
    n = len(verts)
    grade = bilsky if bilsky is not None else str(rng.choice(BILSKY_GRADES))
    site = int(rng.integers(1, n - 1))            # keeps >= one level of normal cord above and below
    others = [k for k in range(n) if k != site]
    involved = [site] + sorted(rng.choice(others, size=int(rng.integers(0, min(3, len(others)) + 1)),
                                          replace=False).tolist())
    lesions = []
    for k in involved:
        v = verts[k]
        for j in range(int(rng.integers(1, 3))):
            posterior_wall = (k == site and j == 0)
            if v["level"] == "C1":      # the atlas has no body: its lesions sit in the lateral masses and arches
                lesions.append(_draw_posterior_lesion(rng, v, k, str(rng.choice(["left", "right"]))))
            else:
                lesions.append(_draw_body_lesion(rng, v, k, at_posterior_wall=posterior_wall))
        if rng.random() < 0.35:
            for side in {"left": ["left"], "right": ["right"], "both": ["left", "right"],
                         "spinous": ["spinous"]}[str(rng.choice(["left", "right", "both", "spinous"]))]:
                lesions.append(_draw_posterior_lesion(rng, v, k, side))
        big = any(les["size"] in ("large", "whole") for les in lesions if les["vertebra_index"] == k)
        if big and v["level"] not in _NO_COLLAPSE and rng.random() < 0.5:
            v["profile"] = _draw_collapse(rng, v)
    epidural = None if grade == "0" else _draw_epidural(rng, anatomy, site, grade)
    return {"lesions": lesions, "epidural": epidural, "bilsky_grade": grade}


def _draw_body_lesion(rng, v: dict, k: int, *, at_posterior_wall: bool) -> dict:
    depth, width, h0 = v["depth_mm"], v["width_mm"], v["height_mm"]
    size = str(rng.choice(["small", "medium", "large", "whole"], p=[0.3, 0.3, 0.25, 0.15]))
    if at_posterior_wall and size == "small":
        size = "medium"
    if size == "whole":
        radii = [0.75 * width, 0.9 * depth, 0.9 * h0]
        centre = [0.0, 0.0, 0.0]
    else:
        r = {"small": (2.5, 5.0), "medium": (5.0, 8.0), "large": (8.0, 12.0)}[size]
        radius = float(rng.uniform(*r))
        radii = [radius * float(rng.uniform(0.85, 1.15)) for _ in range(3)]
        if at_posterior_wall:
            centre = [float(rng.uniform(-3, 3)), -0.5 * depth + 0.5 * radii[1], float(rng.uniform(-2, 2))]
        else:
            centre = [float(rng.uniform(-0.22, 0.22) * width), float(rng.uniform(-0.25, 0.25) * depth),
                      float(rng.uniform(-0.2, 0.2) * h0)]
    return {"vertebra_index": k, "site": "body", "size": size,
            "kind": str(rng.choice(LESION_KINDS, p=[0.5, 0.3, 0.2])),
            "centre_mm": centre, "radii_mm": radii,
            "wobble": [float(x) for x in rng.uniform(-1, 1, 4)]}


def _draw_posterior_lesion(rng, v: dict, k: int, side: str) -> dict:
    canal_l = v["canal_half_width_mm"] + 0.7 * v["pedicle_radius_mm"]
    if side == "spinous":
        centre = [0.0, -(v["depth_mm"] / 2 + 22 + 0.4 * v["spinous_length_mm"]), 0.0]
    else:
        centre = [canal_l * (-1 if side == "left" else 1), -v["depth_mm"] / 2 - 4, 0.15 * v["height_mm"]]
    radius = float(rng.uniform(5.5, 8.0))
    return {"vertebra_index": k, "site": side, "size": "medium",
            "kind": str(rng.choice(LESION_KINDS, p=[0.5, 0.3, 0.2])),
            "centre_mm": centre, "radii_mm": [radius] * 3,
            "wobble": [float(x) for x in rng.uniform(-1, 1, 4)]}


def _draw_collapse(rng, v: dict) -> dict:
    h0 = v["height_mm"]
    loss = float(rng.uniform(*_LOSS_BANDS[int(rng.integers(0, len(_LOSS_BANDS)))])) / 100
    kind = str(rng.choice(["wedge", "crush", "biconcave"], p=[0.5, 0.2, 0.3]))
    if kind == "wedge":
        return {"kind": "wedge", "anterior_mm": h0 * (1 - loss),
                "posterior_mm": h0 * (1 - loss * float(rng.uniform(0.0, 0.15)))}
    if kind == "crush":
        return {"kind": "crush", "height_mm": h0 * (1 - loss)}
    rim = h0 * (1 - loss * float(rng.uniform(0.05, 0.2)))
    return {"kind": "biconcave", "rim_mm": rim, "dip_mm": rim - h0 * (1 - loss)}


def _draw_epidural(rng, anatomy: dict, site: int, grade: str) -> dict:
    c = anatomy["canal"]
    to_sac, to_cord = c["epi_ant_mm"], c["epi_ant_mm"] + c["csf_ant_mm"]
    compression = 0.0
    if grade == "1a":
        depth = to_sac * float(rng.uniform(0.45, 0.6))
    elif grade == "1b":
        depth = to_sac + c["csf_ant_mm"] * float(rng.uniform(0.3, 0.5))
    elif grade == "1c":
        depth = to_cord + 0.6
    else:
        frac = (0.2, 0.45) if grade == "2" else (0.35, 0.65)
        compression = c["cord_ap_mm"] * float(rng.uniform(*frac))
        depth = to_cord + compression
    half_length = float(rng.uniform(10, 22))
    if compression > 0:  # keep the flattened cord within +-8 mm so SCT's windows (10-30 mm) see normal cord
        reach = _PLATEAU + (1 - _PLATEAU) * 2 / np.pi * np.arccos(np.sqrt(to_cord / depth))
        half_length = min(half_length, float(8.0 / reach))
    v = anatomy["vertebrae"][site]
    return {"vertebra_index": site, "grade": grade, "depth_mm": float(depth),
            "cord_compression_mm": float(compression), "half_length_mm": half_length,
            "half_width_mm": float(v["canal_half_width_mm"] * rng.uniform(0.9, 1.4)),
            "s_offset_mm": float(rng.uniform(-3, 3)),
            "wrap_half_length_mm": float(rng.uniform(4.0, 6.0)) if grade == "3" else 0.0}


# ---------------------------------------------------------------- evaluation

def lesion_inside(lesion: dict, q: np.ndarray) -> np.ndarray:
    """Bool (N,): local points q (N, 3) inside the lesion's wobbly ellipsoid."""
    centre, radii = np.asarray(lesion["centre_mm"], np.float32), np.asarray(lesion["radii_mm"], np.float32)
    near = np.all(np.abs(q - centre) <= 1.5 * radii, axis=1)
    d = (q[near] - centre) / radii
    rho = np.sqrt(np.sum(d * d, axis=1)) + 1e-6
    n = d / rho[:, None]
    w = lesion["wobble"]
    bound = 1.0 + 0.12 * (w[0] * n[:, 0] * n[:, 1] + w[1] * n[:, 2] + w[2] * n[:, 0] + w[3] * (n[:, 1] ** 2 - n[:, 2] ** 2))
    out = np.zeros(len(q), bool)
    out[near] = rho <= bound
    return out


class CanalModel:
    """Canal contents in tube coordinates, with the epidural mass and the cord it flattens.

    ``s`` is arc length (mm), ``u`` lateral, ``v`` anterior from the canal centre. ``s_site`` is the
    arc length of the mass's deepest slice (None without epidural extension).
    """

    def __init__(self, anatomy: dict, epidural: dict | None, s_site: float | None):
        c = anatomy["canal"]
        self.half_ap = canal_half_ap(c)
        self.sac_post = -self.half_ap + c["epi_post_mm"]
        self.sac_ant = self.half_ap - c["epi_ant_mm"]
        self.cord_post = self.sac_post + c["csf_post_mm"]
        self.cord_ant = self.cord_post + c["cord_ap_mm"]
        self.cord_ap = c["cord_ap_mm"]
        self.epidural = epidural
        self.s_site = s_site

    def depth(self, s: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Mass depth (mm) behind the canal's anterior wall; 0 where there is none."""
        e = self.epidural
        if e is None:
            return np.zeros_like(s)
        x = np.maximum(np.abs(s - self.s_site) / e["half_length_mm"] - _PLATEAU, 0) / (1 - _PLATEAU)
        along = np.where(x < 1, np.cos(0.5 * np.pi * x) ** 2, 0.0)
        across = np.sqrt(np.clip(1 - (u / e["half_width_mm"]) ** 2, 0, None))
        return (e["depth_mm"] * along * across).astype(np.float32)

    def compression(self, s: np.ndarray) -> np.ndarray:
        """Cord flattening (mm, AP) at arc length s."""
        e = self.epidural
        if e is None or e["cord_compression_mm"] <= 0:
            return np.zeros_like(s)
        to_cord = self.half_ap - self.cord_ant
        return np.clip(self.depth(s, np.zeros_like(s)) - to_cord, 0, None).astype(np.float32)

    def cord(self, s: np.ndarray, u: np.ndarray, v: np.ndarray, half_width: np.ndarray) -> np.ndarray:
        """Bool: inside the cord, flattened from the front (and widened) where compressed."""
        comp = self.compression(s)
        semi_ap = 0.5 * (self.cord_ap - comp)
        centre = self.cord_post + semi_ap
        semi_l = half_width * np.sqrt(0.5 * self.cord_ap / semi_ap)
        return (u / semi_l) ** 2 + ((v - centre) / semi_ap) ** 2 <= 1.0

    def sac(self, u: np.ndarray, v: np.ndarray, half_width: np.ndarray) -> np.ndarray:
        """Bool: inside the dural sac (cord + CSF), undeformed."""
        semi_ap = 0.5 * (self.sac_ant - self.sac_post)
        return (u / half_width) ** 2 + ((v - self.sac_post - semi_ap) / semi_ap) ** 2 <= 1.0

    def canal(self, u: np.ndarray, v: np.ndarray, half_width: np.ndarray) -> np.ndarray:
        return (u / half_width) ** 2 + (v / self.half_ap) ** 2 <= 1.0

    def mass(self, s: np.ndarray, u: np.ndarray, v: np.ndarray, half_width: np.ndarray) -> np.ndarray:
        """Bool: epidural tumour region (before removing cord and bone): behind the canal's anterior
        wall (the bodies' posterior walls, ``v = half_ap``), where the mass has depth. It reaches
        ``_WALL_OVERLAP_MM`` past that wall, so it meets the body where the tube and vertebra frames
        differ slightly (bone and disc win there); no further, so no tumour lies in front of the wall
        beside a body (behind a collapsed body, at endplate corners) where the truth would count it
        as epidural but a reader would see it inside the vertebra's outline."""
        if self.epidural is None:
            return np.zeros(s.shape, bool)
        depth = self.depth(s, u)
        m = ((depth > 0.3) & (v > self.half_ap - depth) & (v < self.half_ap + _WALL_OVERLAP_MM)
             & (np.abs(u) < half_width))
        wrap = self.epidural["wrap_half_length_mm"]
        if wrap > 0:
            m |= (np.abs(s - self.s_site) <= wrap) & self.canal(u, v, half_width)
        return m

    def worst(self) -> dict:
        """Cord figures on the deepest slice: AP diameters (mm) of cord and sac, normal and there."""
        e = self.epidural
        comp = e["cord_compression_mm"] if e else 0.0
        cord_ant = self.cord_ant - comp
        front = max(self.half_ap - e["depth_mm"], cord_ant) if e else self.sac_ant
        front = min(front, self.sac_ant)
        back = self.cord_post if (e and e["wrap_half_length_mm"] > 0) else self.sac_post
        return {"cord_ap_normal_mm": self.cord_ap, "cord_ap_worst_mm": self.cord_ap - comp,
                "sac_ap_normal_mm": self.sac_ant - self.sac_post, "sac_ap_worst_mm": front - back,
                "cord_centre_v_mm": self.cord_post + 0.5 * (self.cord_ap - comp)}
