"""Context and mimics around the column: what a real scan shows that is not a labelled structure.

Drawn only for phantoms made with ``context=True`` (the training anatomy of the default model),
whose columns run from C1 down to S1 (levels C3..L5, and the junctions of :mod:`.junctions`:
atlas and axis with the dens under the skull base, S1 fused to the sacrum):

* bone that is not vertebra (label 0): ribs joined to the thoracic vertebrae at the costovertebral
  joints, iliac wings beside L4/L5 and the ilium at the sacroiliac joints beside S1; the skull
  base, sacrum and coccyx (:mod:`.junctions`);
* organs and soft tissue: liver, kidneys, psoas muscles, bowel with gas and oral contrast, the great
  vessels (vena cava, iliac arteries and veins below the aortic bifurcation at L4, carotid arteries and
  jugular veins in the neck), aortic wall plaque; the cord ending at the conus (L1/L2) with CSF below it;
* spinal hardware in some cases: pedicle screws and rods (metal, label 0);
* benign mimics that are NOT lesions: haemangioma, bone island, Modic change and Schmorl node
  (disc material under an endplate), all labelled vertebral body; vacuum disc (gas in the nucleus,
  labelled disc). Osteophytes are not drawn yet.

Everything is drawn from its own random stream (``draw_context``) and rendered deterministically
(``render_*``), in the same implicit-shape style as :mod:`.anatomy`.
"""

from __future__ import annotations

import numpy as np

from spinelesion import labels as L
from spinelesion.data.phantoms import anatomy as an
from spinelesion.synthesis.tissues import ID

MIMIC_KINDS = ("haemangioma", "bone_island", "modic", "schmorl", "vacuum_disc")


def draw_context(rng: np.random.Generator, anatomy: dict) -> dict:
    """Random context of one column (JSON-serialisable)."""
    verts = anatomy["vertebrae"]
    mimics = []
    for k, v in enumerate(verts):
        for _ in range(int(rng.poisson(0.35))):
            kind = str(rng.choice(MIMIC_KINDS, p=[0.4, 0.2, 0.15, 0.15, 0.1]))
            r = float(rng.uniform(2.0, 0.3 * min(v["depth_mm"], v["height_mm"])))
            centre = [float(rng.uniform(-0.25, 0.25) * v["width_mm"]), float(rng.uniform(-0.25, 0.3) * v["depth_mm"]),
                      float(rng.uniform(-0.25, 0.25) * v["height_mm"])]
            side = float(rng.choice([-1.0, 1.0]))
            mimics.append({"vertebra_index": k, "kind": kind, "radius_mm": r, "centre_mm": centre, "side": side})
    screws = None
    if len(verts) >= 3 and rng.random() < 0.08:
        k0 = int(rng.integers(0, len(verts) - 1))
        screws = {"vertebrae": [k0, k0 + 1], "radius_mm": float(rng.uniform(2.5, 3.5))}
    return {
        "version": 1,
        "rib_radius_mm": float(rng.uniform(3.0, 4.5)), "rib_reach_mm": float(rng.uniform(60, 90)),
        "rib_drop_mm": float(rng.uniform(20, 45)),
        "liver": bool(rng.random() < 0.9), "kidneys": bool(rng.random() < 0.9),
        "bowel_seed": int(rng.integers(0, 2**31 - 1)), "bowel_gas": float(rng.uniform(0.05, 0.3)),
        "bowel_contrast": float(rng.uniform(0.0, 0.3)) if rng.random() < 0.4 else 0.0,
        "plaque": bool(rng.random() < 0.4), "conus_offset_mm": float(rng.uniform(-15, 15)),   # see conus_s
        "mimics": mimics, "screws": screws,
    }


# ---------------------------------------------------------------- soft tissue (tube coordinates)

def render_soft_tissue(tissue: np.ndarray, s, u, v, line, anat: dict, ctx: dict) -> None:
    """Organs, psoas, bowel and plaque into ``tissue`` (same shape as s, u, v), in place."""
    verts = anat["vertebrae"]
    per = lambda f: line.interp(s, np.array([f(x) for x in verts], float))  # noqa: E731
    depth, width = per(lambda x: x["depth_mm"]), per(lambda x: x["width_mm"])
    front = an.canal_half_ap(anat["canal"]) + depth
    inside = (tissue != ID["air"]) & (tissue != ID["fat"])
    level = lambda names: per(lambda x: 1.0 if x["level"] in names else 0.0) > 0.5  # noqa: E731
    lumbar = level({"L1", "L2", "L3", "L4", "L5", "S1"})
    low_lumbar = level({"L2", "L3", "L4", "L5", "S1"})
    abdomen = level({"T10", "T11", "T12", "L1", "L2"})
    # psoas: grows downward beside the lumbar bodies
    for sign in (-1, 1):
        r = 10 + 0.35 * width
        m = ((u - sign * (0.5 * width + 0.4 * r)) / r) ** 2 + ((v - front + 0.45 * depth) / (0.9 * r)) ** 2
        tissue[(m <= 1) & lumbar & inside] = ID["muscle"]
    if ctx["kidneys"]:
        kid = level({"T12", "L1", "L2", "L3"})
        for sign in (-1, 1):
            m = ((u - sign * (0.5 * width + 50)) / 28) ** 2 + ((v - front + 0.2 * depth) / 22) ** 2
            tissue[(m <= 1) & kid & inside] = ID["kidney"]
    if ctx["liver"]:
        m = ((u - 75) / 70) ** 2 + ((v - front - 45) / 60) ** 2
        tissue[(m <= 1) & abdomen & inside & (tissue != ID["kidney"])] = ID["liver"]
    # bowel: anterior abdomen below the liver, wall tissue with gas and contrast pockets
    bowel = low_lumbar & inside & (v > front + 15) & (np.abs(u) < 110) & (tissue == ID["soft"])
    if bowel.any():
        rng = np.random.default_rng(ctx["bowel_seed"])
        field = _blobs(rng, s, u, v, cell_mm=18.0)
        tissue[bowel] = ID["bowel_wall"]
        gas = bowel & (field > 1.0 - 2 * ctx["bowel_gas"])
        tissue[gas] = ID["bowel_gas"]
        if ctx["bowel_contrast"] > 0:
            tissue[bowel & ~gas & (field < -1.0 + 2 * ctx["bowel_contrast"])] = ID["bowel_contrast"]
    _great_vessels(tissue, s, u, v, line, anat, ctx, level=level, inside=inside, front=front, width=width,
                   depth=depth)
    if ctx["plaque"]:
        vessel = tissue == ID["vessel"]
        rng = np.random.default_rng(ctx["bowel_seed"] + 1)
        rim = vessel & (_blobs(rng, s, u, v, cell_mm=8.0) > 1.2)
        tissue[rim] = ID["plaque"]


def _great_vessels(tissue, s, u, v, line, anat: dict, ctx: dict, *, level, inside, front, width, depth) -> None:
    """Vessels beside the column besides the aorta (drawn for every phantom): the inferior vena cava
    right of the aorta (T11-L4); below the L4 body the aorta and cava divide into common iliac
    arteries and veins that diverge towards the pelvis (the aorta is removed there); in the neck the
    carotid arteries and jugular veins in front of and beside the bodies. Tubes in tube coordinates
    (mm); radii drawn from the case's own stream (``bowel_seed`` + 2), so other draws are unchanged.
    ``level(names)``: the caller's mask of the voxels at those levels."""
    verts = anat["vertebrae"]
    rng = np.random.default_rng(ctx["bowel_seed"] + 2)
    r_cava, r_iliac_a, r_iliac_v = rng.uniform(9, 13), rng.uniform(4, 6), rng.uniform(5, 7.5)
    r_carotid, r_jugular = rng.uniform(2.5, 4), rng.uniform(4, 7)
    centre_v = front + 2
    levels = [x["level"] for x in verts]
    s_split = None
    if "L4" in levels:   # the bifurcation, at the L4 body's lower half
        k = levels.index("L4")
        s_split = float(line.vertebra_s[k] - 0.3 * verts[k]["height_mm"])
    cava = level({"T11", "T12", "L1", "L2", "L3", "L4"}) & ((u - 0.3 * width - r_cava) ** 2
                                                          + (v - centre_v - r_cava) ** 2 <= r_cava ** 2)
    if s_split is not None:
        cava &= s >= s_split
        below = (s < s_split) & inside
        tissue[below & (tissue == ID["vessel"])] = ID["soft"]            # no aorta below the bifurcation
        spread = 0.3 * width + 0.45 * np.maximum(s_split - s, 0.0)      # the pairs diverge downwards
        for sign in (-1, 1):
            artery = (u - sign * spread) ** 2 + (v - centre_v - r_iliac_a) ** 2 <= r_iliac_a ** 2
            vein = (u - sign * (spread + r_iliac_a + r_iliac_v)) ** 2 + (v - centre_v - r_iliac_v + 3) ** 2 \
                <= r_iliac_v ** 2
            tissue[below & (artery | vein) & (s > s_split - 120)] = ID["vessel"]
    tissue[cava & inside] = ID["vessel"]
    neck = level({f"C{i}" for i in range(1, 8)})
    for sign in (-1, 1):
        lateral = 0.5 * width + 8
        carotid = (u - sign * lateral) ** 2 + (v - front + 0.3 * depth - 4) ** 2 <= r_carotid ** 2
        jugular = (u - sign * (lateral + r_carotid + r_jugular + 1)) ** 2 + (v - front + 0.3 * depth - 2) ** 2 \
            <= r_jugular ** 2
        tissue[neck & inside & (carotid | jugular) & (tissue == ID["soft"])] = ID["vessel"]


def _blobs(rng, s, u, v, *, cell_mm: float) -> np.ndarray:
    """A smooth random field of unit spread over tube coordinates (sum of random cosines)."""
    out = np.zeros(np.shape(s), np.float32)
    for _ in range(6):
        k = rng.normal(size=3) / cell_mm
        phase = rng.uniform(0, 2 * np.pi)
        out += np.cos(k[0] * s + k[1] * u + k[2] * v + phase).astype(np.float32)
    return out / np.sqrt(3.0)


def conus_s(line, anat: dict, ctx: dict) -> float | None:
    """Arc length below which there is no cord, or None when the conus is not in view.

    The conus medullaris ends near the L1/L2 disc in adults (range T12 to L2/L3): here at that
    disc plus the drawn ``conus_offset_mm`` (-15..15 mm) along the canal. A column showing only
    levels below L2 has no cord at all."""
    levels = [v["level"] for v in anat["vertebrae"]]
    for name, side in (("L1", -0.5), ("L2", 0.5)):     # L1's inferior or L2's superior endplate
        if name in levels:
            k = levels.index(name)
            return float(line.vertebra_s[k]) + side * anat["vertebrae"][k]["height_mm"] + ctx["conus_offset_mm"]
    if levels[-1] in ("L3", "L4", "L5"):
        return float("inf")
    return None


# ---------------------------------------------------------------- bones (vertebra frames, world points)

def bone_capsules(anat: dict, frames, ctx: dict) -> list[tuple[np.ndarray, np.ndarray, float, str]]:
    """World capsules (a, b, radius, what) of ribs, iliac wings and hardware."""
    out = []
    verts = anat["vertebrae"]
    canal = anat["canal"]
    for k, (v, (origin, rot)) in enumerate(zip(verts, frames[1:-1])):
        lvl = v["level"]
        vc = -(v["depth_mm"] / 2 + an.canal_half_ap(canal))
        to_world = lambda p: rot @ np.asarray(p, float) + origin  # noqa: E731
        if lvl.startswith("T"):
            r = ctx["rib_radius_mm"] * (0.8 if lvl in ("T1", "T2") else 1.0)
            reach, drop = ctx["rib_reach_mm"], ctx["rib_drop_mm"]
            for side in (-1, 1):
                pts = [(0.45 * v["width_mm"], -0.3 * v["depth_mm"], 0.2 * v["height_mm"]),
                       (v["tp_length_mm"] + 4, vc - v["tp_back_mm"] - 3, 0.1 * v["height_mm"]),
                       (v["tp_length_mm"] + 0.5 * reach, vc + 5, -0.3 * drop),
                       (v["tp_length_mm"] + 0.8 * reach, 0.5 * reach, -0.7 * drop),
                       (v["tp_length_mm"] + 0.55 * reach, 1.3 * reach, -drop)]
                pts = [to_world((side * x, y, z)) for x, y, z in pts]
                out += [(a, b, r, "rib") for a, b in zip(pts[:-1], pts[1:])]
        if lvl in ("L4", "L5"):
            for side in (-1, 1):
                a = to_world((side * (0.5 * v["width_mm"] + 25), -0.3 * v["depth_mm"], -0.6 * v["height_mm"]))
                b = to_world((side * (0.5 * v["width_mm"] + 75), 0.2 * v["depth_mm"], 25.0))
                out.append((a, b, 9.0, "ilium"))
        if lvl == "S1" and "ala_mm" in v:      # the ilium beside the ala, across the sacroiliac joint
            x = 0.5 * v["width_mm"] + 2 * v["ala_mm"] + 14
            for side in (-1, 1):
                a = to_world((side * x, -0.45 * v["depth_mm"], -0.9 * v["height_mm"]))
                b = to_world((side * (x + 6), -0.2 * v["depth_mm"], 0.7 * v["height_mm"]))
                out.append((a, b, 9.0, "ilium"))
        screws = ctx.get("screws")
        if screws and k in screws["vertebrae"]:
            for side in (-1, 1):
                ped_x = v["canal_half_width_mm"] + 0.7 * v["pedicle_radius_mm"]
                a = to_world((side * (ped_x + 4), vc - 12, 0.15 * v["height_mm"]))
                b = to_world((side * 0.3 * ped_x, 0.25 * v["depth_mm"], 0.15 * v["height_mm"]))
                out.append((a, b, screws["radius_mm"], "metal"))
    if ctx.get("screws"):
        k0, k1 = ctx["screws"]["vertebrae"]
        for side in (-1, 1):
            ends = []
            for k in (k0, k1):
                v, (origin, rot) = verts[k], frames[k + 1]
                vc = -(v["depth_mm"] / 2 + an.canal_half_ap(canal))
                ped_x = v["canal_half_width_mm"] + 0.7 * v["pedicle_radius_mm"]
                ends.append(rot @ np.array([side * (ped_x + 4), vc - 14, 0.15 * v["height_mm"]]) + origin)
            out.append((ends[0], ends[1], 3.0, "metal"))
    return out


def render_bones(tissue, label, vid, in_canal, fine_affine, fshape, capsules, world_points, index_box) -> None:
    """Ribs, iliac wings (cortex + marrow, label 0) and metal (label 0) into the maps, in place.

    Vertebral bone, discs and the canal win over ribs and pelvis; metal wins over bone (its
    voxels leave the vertebra: label 0, vertebra id 0)."""
    inv = np.linalg.inv(fine_affine)
    for a, b, radius, what in capsules:
        corners = np.array([a + d for d in _cube(radius + 2)] + [b + d for d in _cube(radius + 2)])
        box = index_box(inv, np.zeros(3), np.eye(3), corners, fshape)
        if box is None:
            continue
        world = world_points(fine_affine, fshape, box)
        d = an.capsule_distance(world, a, b, radius).reshape(tuple(hi - lo for lo, hi in box))
        sub = tuple(slice(lo, hi) for lo, hi in box)
        inside = d <= 0
        if what == "metal":
            inside &= ~in_canal[sub]
            tissue[sub][inside] = ID["metal"]
            label[sub][inside] = L.BACKGROUND
            vid[sub][inside] = 0
            continue
        free = inside & (vid[sub] == 0) & (label[sub] == 0) & ~in_canal[sub] & (tissue[sub] != ID["metal"])
        tissue[sub][free] = np.where(d[free] > -1.2, ID["cortex"], ID["marrow"]).astype(tissue.dtype)


def _cube(r: float) -> list[np.ndarray]:
    return [np.array([x, y, z], float) for x in (-r, r) for y in (-r, r) for z in (-r, r)]


# ---------------------------------------------------------------- mimics (vertebra frame, in the bone loop)

def mark_mimics(ctx: dict | None, k: int, v: dict, q: np.ndarray, reg: np.ndarray, lab: np.ndarray,
                tis: np.ndarray) -> None:
    """Benign mimics of vertebra ``k`` into the candidate bone voxels (local points ``q`` (N, 3)).

    Haemangioma, bone island, Modic change and Schmorl node replace marrow of the body and keep
    its label; vacuum discs are drawn with the discs (:func:`disc_mimics`)."""
    if not ctx:
        return
    for m in ctx["mimics"]:
        if m["vertebra_index"] != k or m["kind"] == "vacuum_disc":
            continue
        c = np.asarray(m["centre_mm"], np.float32)
        r = m["radius_mm"]
        z0 = m["side"] * 0.5 * v["height_mm"]
        if m["kind"] == "modic":       # a band under one endplate
            hit = (np.abs(q[:, 2] - z0) < 0.35 * r + 1.5) & (np.abs(q[:, 0] - c[0]) < 1.5 * r + 4)
        elif m["kind"] == "schmorl":   # a small round herniation of disc into one endplate
            hit = np.sum(((q - np.array([c[0], c[1], z0], np.float32)) / (0.5 * r + 1.0)) ** 2, axis=1) <= 1.0
        else:
            rr = r * (0.5 if m["kind"] == "bone_island" else 1.0)
            hit = np.sum(((q - c) / rr) ** 2, axis=1) <= 1.0
        hit &= (reg == 1) & (lab == L.VERTEBRAL_BODY) & (tis == ID["marrow"])
        tis[hit] = ID["nucleus"] if m["kind"] == "schmorl" else ID[m["kind"]]


def vacuum_discs(ctx: dict | None) -> set[int]:
    """Chain indices j of the discs (between chain members j and j + 1) that hold gas."""
    if not ctx:
        return set()
    return {m["vertebra_index"] + 1 for m in ctx["mimics"] if m["kind"] == "vacuum_disc"}
