"""One phantom: draw parameters from a seed, then render them (deterministically) on the final grid.

Anatomy is a set of implicit shapes in world millimetres, evaluated at every voxel centre of the
final grid (any spacing, orientation, oblique tilt), so labels need no resampling and are exact.
Intensities are evaluated on the same grid with ``n_sub`` sub-slices per slice, averaged, then
blurred (partial volume) and noised.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from spinelesion import labels as L
from spinelesion.data.phantoms import anatomy as an
from spinelesion.data.phantoms import context as cx
from spinelesion.data.phantoms import imaging as im
from spinelesion.data.phantoms import junctions as jn
from spinelesion.data.phantoms.pathology import BILSKY_GRADES, CanalModel, draw_pathology, lesion_inside
from spinelesion.data.phantoms.truth import build_truth
from spinelesion.io.scan import Scan

MODALITIES = ("ct", "t1", "t2")
PARAMS_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class Phantom:
    """A synthetic scan with its label map and exact truth.

    Attributes:
        scan: image on its final grid (spacing, orientation, oblique tilt as drawn).
        labels: (X, Y, Z) uint8 label map, schema v1, on ``scan``'s grid.
        vertebra_ids: (X, Y, Z) uint8, 0 outside vertebrae, k + 1 for vertebra k (inferior ->
            superior): its body, posterior elements and the lesion voxels that replace its bone.
        region_ids: (X, Y, Z) uint8, 1 vertebral body region (body + lesion in it), 2 / 3 left /
            right posterior elements (pedicle, facets, lamina, transverse process), 4 spinous process.
        truth: measurement record (docs/contracts.md section 2) from the generation parameters.
        params: the drawn parameters (JSON-serialisable); ``render_phantom(params)`` rebuilds it.
        tissue: (X, Y, Z) uint8 tissue classes (:mod:`spinelesion.synthesis.tissues`) on the
            final grid (centre sub-slice): what images are synthesised from in training.
    """

    scan: Scan
    labels: np.ndarray
    vertebra_ids: np.ndarray
    truth: dict
    params: dict
    region_ids: np.ndarray | None = None
    tissue: np.ndarray | None = None


def draw_params(*, seed: int, modality: str = "ct", healthy: bool | None = None, bilsky: str | None = None,
                orientation: str | None = None, oblique: bool | None = None, shape_limit_vox: int = 160,
                context: bool = False) -> dict:
    """Draw every random choice of a phantom from ``seed`` (JSON-serialisable dict).

    ``context``: levels C1 (with the skull base) down to S1 (with the sacrum), ribs, pelvis, organs,
    bowel, hardware and benign mimics (:mod:`.context`, :mod:`.junctions`); False keeps the
    phantoms of earlier versions unchanged (C3 to L2)."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    if bilsky is not None and bilsky not in BILSKY_GRADES:
        raise ValueError(f"bilsky must be one of {BILSKY_GRADES}, got {bilsky!r}")
    if bilsky is not None and healthy:
        raise ValueError("a healthy phantom has no Bilsky grade")
    streams = np.random.SeedSequence(seed).spawn(6 if context else 4)   # children 0-4 do not depend on the count
    rng_case, rng_anat, rng_path, rng_img = (np.random.default_rng(s) for s in streams[:4])
    if healthy is None:
        healthy = bilsky is None and bool(rng_case.random() < 0.2)
    grid = im.draw_grid(rng_case, modality=modality, orientation=orientation, oblique=oblique)
    if context:   # a real scan's field of view: anything from a tight slab to the whole trunk
        extra = np.random.default_rng(streams[4]).uniform(0, 110, 6)
        grid["margin_mm"] = [float(m + e) for m, e in zip(grid["margin_mm"], extra)]
    # how much column fits along the axis nearest to superior without coarsening the spacing
    axis_s = {"RAS": 2, "LPS": 2, "PSR": 1}[grid["orientation"]]
    room_mm = shape_limit_vox * grid["spacing_mm"][axis_s] - 30
    n = int(rng_case.integers(5, 13))
    lowest = int(rng_case.integers(n - 1, len(an.LEVELS_CONTEXT if context else an.LEVELS)))
    while n > 5 and _column_length(lowest, n) > room_mm:
        n -= 1
        lowest = max(lowest - 1, n - 1) if rng_case.random() < 0.5 else lowest
    levels = None
    if context:   # cervical, lumbosacral, thoracic slabs; C1-C2 with the skull base, S1 with the sacrum
        rng_levels = np.random.default_rng(streams[5])
        levels = jn.draw_levels(rng_levels, lowest=lowest, n=n, room_mm=room_mm)
    anatomy = an.draw_anatomy(rng_anat, n_vertebrae=n, lowest_level_index=lowest, levels=levels)
    if context:
        jn.draw_junctions(rng_levels, anatomy)
    pathology = draw_pathology(rng_path, anatomy, healthy=healthy, bilsky=bilsky)
    params = {"version": PARAMS_VERSION, "seed": int(seed), "modality": modality, "healthy": bool(healthy),
              "shape_limit_vox": int(shape_limit_vox), "anatomy": anatomy, "pathology": pathology,
              "grid": grid, "imaging": im.draw_imaging(rng_img, modality=modality)}
    if context:
        params["context"] = cx.draw_context(np.random.default_rng(streams[4]), anatomy)
    return params


def _column_length(lowest: int, n: int) -> float:
    dims = [an.level_dims(an.LEVELS_CONTEXT[lowest - i]) for i in range(n)]
    return sum(d["height_mm"] + d["disc_above_mm"] for d in dims) * 1.1


def make_phantom(*, seed: int, modality: str = "ct", healthy: bool | None = None, bilsky: str | None = None,
                 orientation: str | None = None, oblique: bool | None = None, shape_limit_vox: int = 160,
                 context: bool = False) -> Phantom:
    """Draw and render one phantom; the same arguments always give identical arrays and truth.

    Args:
        seed: random seed.
        modality: "ct" (HU), "t1" or "t2" (T2 fat-suppressed / STIR-like).
        healthy: no lesion at all; None draws it (20 % of cases) unless ``bilsky`` is given.
        bilsky: force the epidural grade ("0", "1a", "1b", "1c", "2", "3").
        orientation: "RAS", "LPS" or "PSR" (None draws one); oblique: tilt the grid up to 15 deg.
        shape_limit_vox: at most this many voxels along any axis (spacing grows if needed).
        context: draw the surroundings and benign mimics too (:mod:`.context`).
    """
    params = draw_params(seed=seed, modality=modality, healthy=healthy, bilsky=bilsky,
                         orientation=orientation, oblique=oblique, shape_limit_vox=shape_limit_vox,
                         context=context)
    return render_phantom(params)


def column_geometry(params: dict):
    """(vertebra frames, canal centreline, :class:`CanalModel` with the epidural mass) of drawn parameters."""
    anat, epi = params["anatomy"], params["pathology"]["epidural"]
    frames = an.build_frames(anat)
    line = an.Centreline(frames, anat)
    s_site = None if epi is None else float(line.vertebra_s[epi["vertebra_index"]] + epi["s_offset_mm"])
    return frames, line, CanalModel(anat, epi, s_site)


def render_phantom(params: dict, *, timings: dict | None = None) -> Phantom:
    """Render drawn parameters into a :class:`Phantom` (deterministic). ``timings`` collects seconds per stage."""
    clock = _Clock(timings)
    anat, path = params["anatomy"], params["pathology"]
    verts, canal_p = anat["vertebrae"], anat["canal"]
    epi = path["epidural"]
    frames, line, canal = column_geometry(params)
    grid = dict(params["grid"])
    affine, shape = im.fit_grid(grid, _fov_points(frames, verts, canal_p, anat, line),
                                shape_limit_vox=params["shape_limit_vox"])
    n_sub = 3 if grid["spacing_mm"][2] > 1.6 else 1
    fine = affine.copy()
    fine[:3, 2] /= n_sub
    fine[:3, 3] -= fine[:3, 2] * (n_sub - 1) / 2
    fshape = (shape[0], shape[1], shape[2] * n_sub)
    clock.tick("setup")

    s, u, v = _tube_coords(line, affine, shape, n_sub)
    clock.tick("tube_coords")
    ctx = params.get("context")
    tissue = _soft_tissue(s, u, v, line, anat)
    if ctx:
        cx.render_soft_tissue(tissue, s, u, v, line, anat, ctx)
        jn.render_head(tissue, s, u, v, line, anat)
    canal_hw = line.interp(s, np.array([x["canal_half_width_mm"] for x in verts]))
    in_canal = canal.canal(u, v, canal_hw)
    in_sac = canal.sac(u, v, canal_hw - 2.0)
    in_cord = canal.cord(s, u, v, line.interp(s, np.array([x["cord_half_width_mm"] for x in verts])))
    conus = cx.conus_s(line, anat, ctx) if ctx else None
    if conus is not None:
        in_cord &= s >= conus
    if ctx:
        jn.trim_canal(in_canal, in_sac, in_cord, s, u, v, line, anat)
    tissue[in_canal] = im.EPIDURAL_FAT
    tissue[in_sac] = im.CSF
    tissue[in_cord] = im.CORD
    label = np.zeros(fshape, np.uint8)
    label[in_sac] = L.THECAL_SAC
    label[in_cord] = L.SPINAL_CORD
    if ctx:
        jn.intracranial(tissue, label, in_canal, s, line, anat)
    clock.tick("soft_tissue_canal")

    rng_tex = np.random.default_rng(params["imaging"]["noise_seed"] + 1)
    texture = im.texture_field(rng_tex, fshape)
    vid = np.zeros(fshape, np.uint8)
    region = np.zeros(fshape, np.uint8)
    source = np.zeros(fshape, np.uint8)           # lesion index + 1 per lesion voxel, 255 epidural
    volumes = {"tissue": tissue, "label": label, "vid": vid, "region": region, "source": source}
    _render_vertebrae(volumes, verts=verts, frames=frames, lesions=path["lesions"], canal_p=canal_p, ctx=ctx,
                      fine=fine, texture=texture, in_sac=in_sac, in_canal=in_canal)
    clock.tick("vertebrae")
    _render_discs(volumes, anat=anat, frames=frames, ctx=ctx, fine=fine, texture=texture, in_canal=in_canal)
    clock.tick("discs")
    if ctx:
        cx.render_bones(tissue, label, vid, in_canal, fine, fshape, cx.bone_capsules(anat, frames, ctx),
                        _world_points, _index_box)
        jn.render_bones(tissue, label, vid, in_canal, s, u, v, line, anat)
        clock.tick("context_bones")
    if epi is not None:
        mass = canal.mass(s, u, v, canal_hw) & ~in_cord & (vid == 0) & (label != L.DISC)
        centre = mass[:, :, (n_sub - 1) // 2::n_sub]
        centre &= _largest_component(centre)     # drop slivers cut off by the voxel grid
        tissue[mass] = im.EPIDURAL
        label[mass] = L.LESION
        source[mass] = 255
    clock.tick("epidural")

    c = (n_sub - 1) // 2
    labels_f, vid_f, region_f, source_f, tissue_f = (x[:, :, c::n_sub].copy()
                                                     for x in (label, vid, region, source, tissue))
    image = im.render_intensity(tissue, modality=params["modality"], imaging=params["imaging"],
                                texture=texture, n_sub=n_sub)
    clock.tick("intensity")
    scan = Scan(array=image, affine=affine, modality="CT" if params["modality"] == "ct" else "MR",
                source=f"phantom seed {params['seed']} ({params['modality']})")
    truth = build_truth(params=params, scan=scan, labels=labels_f, vertebra_ids=vid_f, region_ids=region_f,
                        lesion_source=source_f, canal=canal, line=line)
    clock.tick("truth")
    return Phantom(scan=scan, labels=labels_f, vertebra_ids=vid_f, region_ids=region_f, truth=truth,
                   params=dict(params, grid=grid), tissue=tissue_f)


def _render_vertebrae(volumes: dict, *, verts, frames, lesions, canal_p, ctx, fine, texture, in_sac, in_canal) -> None:
    """Bone of every vertebra (body, posterior elements, cortex/marrow), its lesions and mimics, into
    the fine-grid (X, Y, Z*n_sub) ``volumes`` (tissue, label, vid, region, source), in place."""
    tissue, label, vid, region, source = (volumes[k] for k in ("tissue", "label", "vid", "region", "source"))
    fshape = tissue.shape
    inv = np.linalg.inv(fine)
    for k, (vert, (origin, rot)) in enumerate(zip(verts, frames[1:-1])):
        box = _index_box(inv, origin, rot, jn.local_box(vert, canal_p), fshape)
        if box is None:
            continue
        q = (_world_points(fine, fshape, box) - origin.astype(np.float32)) @ rot.astype(np.float32)
        sd_body, sd_post, side = jn.bone_distances(vert, canal_p, q)
        sub = tuple(slice(a, b) for a, b in box)
        cand = np.flatnonzero((sd_body <= 0) | (sd_post <= 0))     # only these can become bone
        sub_idx = np.unravel_index(cand, tissue[sub].shape)
        free = (vid[sub][sub_idx] == 0) & ~in_sac[sub][sub_idx]
        sd_body, sd_post, side, q = sd_body[cand], sd_post[cand], side[cand], q[cand]
        body = (sd_body <= 0) & free
        post = (sd_post <= 0) & free & ~body & ~in_canal[sub][sub_idx]
        reg = np.where(body, 1, np.where(post, side, 0)).astype(np.uint8)
        cortex = np.where(body, sd_body > -vert["cortex_mm"], sd_post > -1.3)
        tis = np.where(cortex, im.CORTEX, im.MARROW).astype(np.uint8)
        lab = np.where(body, L.VERTEBRAL_BODY, L.POSTERIOR_ELEMENTS).astype(np.uint8)
        tex = texture[sub][sub_idx]
        src = np.zeros(tis.shape, np.uint8)
        for n_les, les in enumerate(lesions):
            if les["vertebra_index"] != k:
                continue
            want = {"body": 1, "left": 2, "right": 3, "spinous": 4}[les["site"]]
            hit = lesion_inside(les, q) & (reg == want)
            kind = les["kind"]
            blastic = np.full(hit.shape, kind == "blastic") if kind != "mixed" else tex > 0.35
            tis[hit] = np.where(blastic[hit], im.BLASTIC, im.LYTIC)
            lab[hit] = L.LESION
            src[hit] = n_les + 1
        cx.mark_mimics(ctx, k, vert, q, reg, lab, tis)
        bone = body | post
        at = tuple(i[bone] for i in sub_idx)
        for arr, val in ((tissue, tis), (label, lab), (vid, np.uint8(k + 1)), (region, reg), (source, src)):
            arr[sub][at] = val if np.isscalar(val) or val.ndim == 0 else val[bone]


def _render_discs(volumes: dict, *, anat, frames, ctx, fine, texture, in_canal) -> None:
    """Discs (annulus, nucleus, vacuum gas) between unfused neighbours, into ``volumes``, in place."""
    tissue, label, vid = volumes["tissue"], volumes["label"], volumes["vid"]
    fshape = tissue.shape
    verts, canal_p = anat["vertebrae"], anat["canal"]
    inv = np.linalg.inv(fine)
    chain = [dict(verts[0], profile={"kind": "none"}, disc_above_mm=anat["disc_below_first_mm"])] + list(verts) + [dict(verts[-1], profile={"kind": "none"})]
    for j in range(len(chain) - 1):
        if jn.fused(chain[j], chain[j + 1]):
            continue
        (o_lo, r_lo), (o_up, r_up) = frames[j], frames[j + 1]
        corners = np.vstack([r_lo @ c + o_lo for c in jn.local_box(chain[j], canal_p)[[1, 3, 5, 7]]]
                            + [r_up @ c + o_up for c in jn.local_box(chain[j + 1], canal_p)[[0, 2, 4, 6]]])
        box = _index_box(inv, np.zeros(3), np.eye(3), corners, fshape)
        if box is None:
            continue
        world = _world_points(fine, fshape, box)
        q_lo = (world - o_lo.astype(np.float32)) @ r_lo.astype(np.float32)
        q_up = (world - o_up.astype(np.float32)) @ r_up.astype(np.float32)
        disc, nucleus = an.disc_inside(chain[j], chain[j + 1], q_lo, q_up)
        sub = tuple(slice(a, b) for a, b in box)
        bshape = tissue[sub].shape
        disc = (disc & (vid[sub].ravel() == 0) & ~in_canal[sub].ravel()).reshape(bshape)
        tissue[sub][disc] = np.where(nucleus.reshape(bshape)[disc], im.NUCLEUS, im.ANNULUS)
        if j in cx.vacuum_discs(ctx):
            gas = disc & nucleus.reshape(bshape) & (texture[sub] > 0.3)
            tissue[sub][gas] = im.AIR
        label[sub][disc] = L.DISC


def _fov_points(frames, verts, canal_p, anat, line) -> np.ndarray:
    """World points the field of view must hold: every vertebra's outline and the posterior skin."""
    pts = [jn.key_points(vert, canal_p) @ rot.T + origin for vert, (origin, rot) in zip(verts, frames[1:-1])]
    for k, vert in enumerate(verts):
        c, _, a, _ = line.at(float(line.vertebra_s[k]))
        pts.append((c + a * _skin_v(vert, anat))[None, :] - a * 3)
    return np.vstack(pts)


def _skin_v(vert: dict, anat: dict) -> float:
    """Anterior coordinate (tube frame, mm, negative) of the posterior skin at one vertebra."""
    ang = np.radians(vert["spinous_angle_deg"])
    reach = an.canal_half_ap(anat["canal"]) + 3 + vert["spinous_length_mm"] * np.cos(ang) + 0.3 * vert["height_mm"]
    return -(reach + anat["torso"]["skin_behind_spinous_mm"])


def _soft_tissue(s, u, v, line, anat) -> np.ndarray:
    """Tissue classes outside the spine: air, subcutaneous fat, paraspinal muscle, lungs, aorta, soft tissue."""
    verts, torso = anat["vertebrae"], anat["torso"]
    per = lambda f: line.interp(s, np.array([f(x) for x in verts]))  # noqa: E731
    skin = per(lambda x: _skin_v(x, anat))
    depth = per(lambda x: x["depth_mm"])
    width = per(lambda x: x["width_mm"])
    half_ap = an.canal_half_ap(anat["canal"])
    semi_ap = 0.5 * torso["ap_mm"]
    r2 = (u / torso["half_width_mm"]) ** 2 + ((v - skin - semi_ap) / semi_ap) ** 2
    tissue = np.full(s.shape, im.AIR, np.uint8)
    fat = torso["fat_mm"]
    inner = (u / (torso["half_width_mm"] - fat)) ** 2 + ((v - skin - semi_ap) / (semi_ap - fat)) ** 2
    tissue[r2 <= 1] = im.FAT
    tissue[inner <= 1] = im.SOFT
    back = 0.5 * (skin + fat - half_ap)            # between the lamina and the subcutaneous fat
    for sign in (-1, 1):
        m = ((u - sign * (0.35 * width + 10)) / (0.3 * width + 8)) ** 2 + ((v - back) / (0.5 * (half_ap - skin - fat) + 2)) ** 2
        tissue[(m <= 1) & (inner <= 1)] = im.MUSCLE
    thoracic = per(lambda x: 1.0 if x["level"].startswith("T") and x["level"] not in ("T1", "T12") else 0.0)
    front = half_ap + depth
    for sign in (-1, 1):
        lung = ((u - sign * (0.5 * width + 42)) / 38) ** 2 + ((v - front + 0.3 * depth) / 50) ** 2
        tissue[(lung <= 1) & (thoracic > 0.5) & (inner <= 1)] = im.LUNG
    aorta_r = torso["aorta_radius_mm"]
    not_neck = per(lambda x: 0.0 if x["level"].startswith("C") else 1.0)
    aorta = (u + 0.3 * width) ** 2 + (v - front - aorta_r - 2) ** 2 <= aorta_r ** 2
    tissue[aorta & (not_neck > 0.5)] = im.VESSEL
    return tissue


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean (X, Y, Z) mask."""
    import cc3d

    if not mask.any():
        return mask
    comps = cc3d.connected_components(mask.astype(np.uint8), connectivity=26)
    counts = np.bincount(comps.ravel())
    counts[0] = 0
    return comps == counts.argmax()


def _tube_coords(line, affine: np.ndarray, shape, n_sub: int):
    """Tube coordinates (s, u, v), each (X, Y, Z * n_sub) float32, on the slice-supersampled grid.

    Exact (Newton projection) on the centre sub-slice of every slice; the other sub-slices add the
    first-order change along the slice axis (the frame barely turns over a slice)."""
    s, u, v = (x.reshape(shape) for x in line.project(_world_points(affine, shape)))
    if n_sub == 1:
        return s, u, v
    step = affine[:3, 2] / n_sub
    idx = np.clip(np.rint(s / line.step_mm).astype(np.int32), 0, len(line.s) - 1)
    offsets = (np.arange(n_sub, dtype=np.float32) - (n_sub - 1) / 2)
    out = []
    for x, table in ((s, line.t), (u, line.l), (v, line.a)):
        d = (table @ step).astype(np.float32)[idx]
        out.append((x[..., None] + d[..., None] * offsets).reshape(shape[0], shape[1], -1))
    return tuple(out)


def _world_points(affine: np.ndarray, shape, box=None) -> np.ndarray:
    """(N, 3) float32 world coordinates of voxel centres (C order), optionally within index ``box``."""
    ranges = [np.arange(n) if box is None else np.arange(box[i][0], box[i][1]) for i, n in enumerate(shape)]
    aff = affine.astype(np.float32)
    out = np.empty((len(ranges[0]), len(ranges[1]), len(ranges[2]), 3), np.float32)
    out[:] = aff[:3, 3]
    for ax in range(3):
        sl = [None, None, None]
        sl[ax] = slice(None)
        out += (ranges[ax].astype(np.float32)[tuple(sl)])[..., None] * aff[:3, ax]
    return out.reshape(-1, 3)


def _index_box(inv_affine, origin, rot, local_corners, shape):
    """Index ranges ((i0, i1), (j0, j1), (k0, k1)) covering local box corners, or None if outside."""
    world = local_corners @ rot.T + origin
    idx = world @ inv_affine[:3, :3].T + inv_affine[:3, 3]
    lo = np.maximum(np.floor(idx.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(idx.max(axis=0)).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return None
    return tuple((int(a), int(b)) for a, b in zip(lo, hi))


class _Clock:
    def __init__(self, timings: dict | None):
        self.timings, self.t = timings, time.perf_counter()

    def tick(self, name: str) -> None:
        now = time.perf_counter()
        if self.timings is not None:
            self.timings[name] = self.timings.get(name, 0.0) + now - self.t
        self.t = now
