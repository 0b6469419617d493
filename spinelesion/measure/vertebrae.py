"""Split the column into vertebrae, give each its own anatomical frame, split body from posterior.

Works in world millimetres on any voxel orientation. The column is split by, in order of
preference: per-level vertebra labels, disc planes (each disc's own normal), or connected
components of the vertebral bodies. Each vertebra gets a frame: ``superior`` along the line
through its neighbours' body centroids, ``anterior`` from the canal centre towards its body
(the canal from cord/thecal-sac labels, else from the hole the bony ring leaves in an axial
projection, else RAS anterior), ``right`` completing it. Bone that merges body and posterior
elements is split at the canal's anterior wall: the body lies in front of the canal (docs/contracts.md §1).
The canal itself is found by :mod:`spinelesion.measure.canal`.
"""

from __future__ import annotations


import cc3d
import numpy as np
from scipy import ndimage

from spinelesion import labels as L
from spinelesion.measure import canal
from spinelesion.measure import geometry as G
from spinelesion.measure import levels as LV
from spinelesion.measure.column import Column, LevelNaming, Vertebra, VertebraPoints
from spinelesion.measure.label_maps import MERGED_VERTEBRA
from spinelesion.measure.settings import MeasureSettings

def find_vertebrae(*, classes: np.ndarray, levels: np.ndarray | None, level_names: tuple[str, ...],
                   affine: np.ndarray, border_touch: np.ndarray, lowest_level: str | None,
                   settings: MeasureSettings, scan_box: tuple[np.ndarray, np.ndarray] | None = None,
                   auto_levels: bool = True) -> Column:
    """Find the vertebrae of a cropped (X, Y, Z) class map (values of schema v1 + MERGED_VERTEBRA).

    ``border_touch`` is an (X, Y, Z) bool mask of voxels on the original image's border;
    ``scan_box``: the whole scan's first and last voxel index (3,) each in the crop's index space
    (default: the crop is the scan). Vertebrae come back ordered inferior -> superior, named by the
    map's level labels, else from ``lowest_level``, else (``auto_levels``) from S1 or C2 where they
    are in view (:mod:`.levels`); how is in ``Column.naming``.
    """
    grid = G.Grid(classes.shape, affine)
    # one pass over the crop: every class's flat indices (ascending) come from its foreground
    labelled = np.flatnonzero(classes)
    values = classes.ravel()[labelled]
    bone_flat = labelled[(values == L.VERTEBRAL_BODY) | (values == L.POSTERIOR_ELEMENTS) | (values == MERGED_VERTEBRA)]
    lesion_flat = labelled[values == L.LESION]
    canal_flat = labelled[(values == L.SPINAL_CORD) | (values == L.THECAL_SAC)]
    disc_flat = labelled[values == L.DISC]
    axis = _column_axis(labelled, values, grid)
    if bone_flat.size == 0:
        return Column([], axis, "none", ["no vertebral bone labelled"],
                      LevelNaming("none", "levels not named: no vertebrae in view"))
    pts = {name: grid.points(flat)
           for name, flat in (("bone", bone_flat), ("lesion", lesion_flat), ("canal", canal_flat))}

    if levels is not None and levels.any():
        method = "levels"
        planes, bone_slab, names = _level_slabs(levels.ravel()[bone_flat].astype(np.int64), pts["bone"], axis,
                                                level_names)
    else:
        planes, method = _disc_planes(classes, disc_flat, affine, axis, settings)
        if not planes:
            body_flat = labelled[(values == L.VERTEBRAL_BODY) | (values == MERGED_VERTEBRA)]
            planes, method = _body_component_planes(classes, body_flat, affine, axis, settings), "components"
        bone_slab = _slab_index(pts["bone"], planes)
        names = None
    lesion_slab = _slab_index(pts["lesion"], planes)
    canal_slab = _slab_index(pts["canal"], planes)
    cls_bone = classes.ravel()[bone_flat]
    anterior_bone = cls_bone != L.POSTERIOR_ELEMENTS
    n_slabs = len(planes) + 1
    keep = _kept_slabs(bone_slab[anterior_bone], lesion_slab, n_slabs=n_slabs,
                       by_level=method == "levels", settings=settings)
    notes = [f"column split by {method}"]
    vertebrae: list[Vertebra] = []
    work: list[VertebraPoints] = []  # beside each vertebra while the column is found
    border = border_touch.ravel()
    bone_of, lesion_of, canal_of = (_members(slab_of, n_slabs) for slab_of in (bone_slab, lesion_slab, canal_slab))
    for slab in np.flatnonzero(keep):
        in_bone = bone_of[slab]  # this slab's bone entries, ascending (as a mask over the bone would give)
        cls = cls_bone[in_bone]
        level = names[slab] if names is not None else None
        body, post, merged = (bone_flat[in_bone[cls == c]]
                              for c in (L.VERTEBRAL_BODY, L.POSTERIOR_ELEMENTS, MERGED_VERTEBRA))
        les = lesion_flat[lesion_of[slab]]
        bone_mm = pts["bone"][in_bone]
        rough = np.concatenate([bone_mm[anterior_bone[in_bone]], pts["lesion"][lesion_of[slab]]])
        v = Vertebra(index=len(vertebrae), level=level, body_idx=body, posterior_idx=post, lesion_idx=les,
                     superior=axis.copy(), anterior=G.perpendicular(G.ANTERIOR, axis), right=np.zeros(3),
                     centroid_mm=G.centroid(rough) if len(rough) else G.centroid(bone_mm))
        vertebrae.append(v)
        work.append(VertebraPoints(merged_idx=merged, canal_mm=pts["canal"][canal_of[slab]], bone_mm=bone_mm))
    _set_frames(vertebrae, axis)
    for v, points in zip(vertebrae, work):
        canal.find_canal(v, points, affine)
    canal.check_rings(vertebrae, work, affine)
    canal.bony_canal_widths(vertebrae)
    if any(p.merged_idx.size for p in work):
        _split_merged(vertebrae, work, grid, disc_pts=grid.points(disc_flat))
    canal.body_back_walls(vertebrae, work, grid)
    for v in vertebrae:  # centroid of the body with the lesion inside it, then the final frames
        body_pts = v.body_points(grid)
        les_pts = grid.points(v.lesion_idx)
        if v.canal_centre_mm is not None and v.body_back_rel_mm is not None and len(les_pts):
            les_pts = les_pts[(les_pts - v.canal_centre_mm) @ v.anterior > v.body_back_rel_mm]
        both = np.concatenate([body_pts, les_pts])
        if len(both):
            v.centroid_mm = G.centroid(both)
    _set_frames(vertebrae, axis)
    for v in vertebrae:  # the body (with its lesion) cut by the image border
        v.truncated = bool(border[v.body_idx].any() or border[v.lesion_idx].any())
    if names is not None:
        naming = LevelNaming("label_map", "levels from the label map's own level labels")
    elif lowest_level is not None:
        naming = LV.name_from_lowest(vertebrae, lowest_level)
    elif auto_levels:
        lo, hi = scan_box if scan_box is not None else (np.zeros(3), np.asarray(classes.shape) - 1)
        naming = LV.name_from_anatomy(vertebrae, grid=grid, disc_mm=grid.points(disc_flat), scan_lo=np.asarray(lo),
                                      scan_hi=np.asarray(hi), axis=axis)
    else:
        naming = LevelNaming("none", "levels not named (automatic naming off)")
    if naming.method in ("lowest_level", "sacrum", "axis"):
        notes.append(naming.detail)
    return Column(vertebrae, axis, method, notes, naming)


def _level_slabs(level_of_bone: np.ndarray, bone_pts: np.ndarray, axis: np.ndarray,
                 level_names: tuple[str, ...]) -> tuple[list, np.ndarray, list[str]]:
    """(separating planes, slab index (N,) of each bone point, level name of each slab) from a
    per-level label (``level_of_bone`` (N,), 0 = none) of the bone points (N, 3), slabs ordered
    inferior -> superior along ``axis``."""
    ids = [k for k in np.unique(level_of_bone) if k > 0]
    centroids = np.array([G.centroid(bone_pts[level_of_bone == k]) for k in ids])
    order = np.argsort(centroids @ axis)
    ids, centroids = [ids[i] for i in order], centroids[order]
    bone_slab = np.full(level_of_bone.size, -1)
    for slab, k in enumerate(ids):
        bone_slab[level_of_bone == k] = slab
    return _mid_planes(centroids, axis), bone_slab, [level_names[k - 1] for k in ids]


def _members(slab_of: np.ndarray, n_slabs: int) -> list[np.ndarray]:
    """For each slab 0..n_slabs-1, the ascending positions of its entries in (N,) ``slab_of`` (entries
    of -1, no slab, in none): ``np.flatnonzero(slab_of == s)`` for every s in one sort."""
    order = np.argsort(slab_of, kind="stable")
    bounds = np.searchsorted(slab_of[order], np.arange(n_slabs + 1))
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _kept_slabs(body_slab: np.ndarray, lesion_slab: np.ndarray, *, n_slabs: int, by_level: bool,
                settings: MeasureSettings) -> np.ndarray:
    """(n_slabs,) bool: slabs that hold a vertebra, from the slab index of each body-bone point
    (``body_slab``) and lesion point. Named levels are kept whatever their size; otherwise a slab
    needs ``min_vertebra_fraction`` of the median amount, and the two end slabs (beyond the
    outermost separators) that much real body bone, not a lesion alone."""
    bodies = np.bincount(body_slab, minlength=n_slabs).astype(float)
    amount = bodies + np.bincount(lesion_slab, minlength=n_slabs)
    keep = amount > 0
    if not by_level and keep.sum() > 1:
        keep &= amount >= settings.min_vertebra_fraction * np.median(amount[amount > 0])
        floor = settings.min_vertebra_fraction * np.median(bodies[bodies > 0]) if (bodies > 0).any() else 0
        for end in (0, n_slabs - 1):
            keep[end] &= bodies[end] >= floor
    return keep


def _column_axis(labelled: np.ndarray, values: np.ndarray, grid: G.Grid) -> np.ndarray:
    """Superior-pointing long axis of the column (anterior column first, else any foreground),
    from the (N,) flat indices of the labelled voxels and their (N,) class values."""
    for classes in ((L.VERTEBRAL_BODY, L.DISC, MERGED_VERTEBRA, L.LESION),
                    (L.SPINAL_CORD, L.THECAL_SAC), tuple(range(1, 8))):
        chosen = labelled[np.isin(values, classes)]
        if chosen.size >= 10:  # world points of the voxels principal_axes draws, not of them all
            w, vecs = G.principal_axes(grid.points(chosen[G.axes_sample(chosen.size)]))
            axis = vecs[:, -1]
            if w[-1] < 1.5 * w[-2] and abs(vecs[:, -2] @ G.SUPERIOR) > abs(axis @ G.SUPERIOR):
                axis = vecs[:, -2]  # ambiguous shape (short column): take the one nearer RAS superior
            return G.orient_like(axis, G.SUPERIOR)
    return G.SUPERIOR.copy()


#: A disc component's own plane is fitted only where it is at least this wide (mm, the standard
#: deviation of its points along its narrower in-plane axis; a cervical disc about 15 mm across has
#: about 4): a narrower piece, fitted, can tilt through the next vertebra and split it in two.
DISC_PLANE_MIN_SD_MM = 3.0


def _disc_planes(classes, flat, affine, axis, settings):
    """Planes through the labelled discs; ``flat``: the disc voxels' ascending flat indices."""
    if flat.size == 0:
        return [], "none"
    comps, n = cc3d.connected_components(classes == L.DISC, connectivity=26, return_N=True)
    voxel_mm3 = abs(np.linalg.det(affine[:3, :3]))
    comp_of = comps.ravel()[flat]
    counts = np.bincount(comp_of, minlength=n + 1)
    planes = []
    for k in range(1, n + 1):
        if counts[k] * voxel_mm3 < settings.min_disc_mm3:
            continue
        p = G.world_points(flat[comp_of == k], classes.shape, affine) if n < 40 else None
        if p is None:
            continue
        variances, vectors = G.principal_axes(p)
        # a piece narrower than a disc (a few voxels called disc) has no plane to fit: cut across the column
        fitted = np.sqrt(max(float(variances[1]), 0.0)) >= DISC_PLANE_MIN_SD_MM
        normal = G.orient_like(vectors[:, 0], axis) if fitted else axis
        planes.append((G.centroid(p), normal))
    planes.sort(key=lambda pl: float(pl[0] @ axis))
    return planes, "discs"


def _body_component_planes(classes, flat, affine, axis, settings):
    """Planes between the body components' centroids; ``flat``: the body voxels' ascending flat indices."""
    bodies = (classes == L.VERTEBRAL_BODY) | (classes == MERGED_VERTEBRA)
    comps, n = cc3d.connected_components(bodies, connectivity=6, return_N=True)
    if n <= 1:
        return []
    lab = comps.ravel()[flat]
    counts = np.bincount(lab, minlength=n + 1)[1:]
    big = np.flatnonzero(counts >= settings.min_vertebra_fraction * np.median(counts[counts >= 0.1 * counts.max()])) + 1
    pts = G.world_points(flat, classes.shape, affine)
    sums = np.stack([np.bincount(lab, weights=pts[:, c], minlength=n + 1) for c in range(3)], axis=1)
    centroids = sums[big] / counts[big - 1, None]  # each component's mean point, in one pass
    centroids = centroids[np.argsort(centroids @ axis)]
    return _mid_planes(centroids, axis)


def _mid_planes(centroids: np.ndarray, axis: np.ndarray):
    """Planes half way between consecutive centroids, normal along the line joining them."""
    planes = []
    for lo, hi in zip(centroids[:-1], centroids[1:]):
        d = hi - lo
        normal = d / np.linalg.norm(d) if np.linalg.norm(d) > 1e-6 else axis
        planes.append(((lo + hi) / 2, normal))
    return planes


def _slab_index(points: np.ndarray, planes, *, rows: int = 1 << 16) -> np.ndarray:
    """Number of planes each (N, 3) point lies above: its slab, 0 = below every plane.

    A point lies above a plane where its projection on the normal exceeds the centre's: one
    matrix-vector product per plane, no (N, 3) difference (5 times faster). ``rows`` points at a
    time, every plane on them before the next block, so the block stays in cache."""
    index = np.zeros(len(points), np.int64)
    for start in range(0, len(points), rows):
        block = points[start:start + rows]
        for centre, normal in planes:
            index[start:start + rows] += (block @ normal) > float(centre @ normal)
    return index


def _set_frames(vertebrae: list[Vertebra], axis: np.ndarray) -> None:
    """Superior axis of each vertebra from its neighbours' centroids; anterior kept perpendicular."""
    c = [v.centroid_mm for v in vertebrae]
    for i, v in enumerate(vertebrae):
        if len(vertebrae) >= 2:
            lo, hi = c[max(i - 1, 0)], c[min(i + 1, len(c) - 1)]
            d = hi - lo
            sup = G.orient_like(d / np.linalg.norm(d), axis) if np.linalg.norm(d) > 1e-6 else axis
        else:
            sup = axis
        v.superior = sup
        v.anterior = G.perpendicular(v.anterior, sup)
        v.right = np.cross(v.anterior, sup)


#: Cell size (mm) of the discs' axial outline, and how far (mm) merged bone may stand outside it.
DISC_OUTLINE_CELL_MM = 1.0
DISC_OUTLINE_MARGIN_MM = 1.0
#: Depth (mm) in front of the canal's wall where a pedicle root can stand.
PEDICLE_ROOT_DEPTH_MM = 12.0


def _split_merged(vertebrae: list[Vertebra], work: list[VertebraPoints], grid: G.Grid, *,
                  disc_pts: np.ndarray) -> None:
    """Merged bone: body where it lies in front of the canal's anterior wall, else posterior.

    Where the map labels the discs next to a vertebra (``disc_pts`` (N, 3) world mm of all disc
    voxels), bone in front of that wall but within ``PEDICLE_ROOT_DEPTH_MM`` of it counts as body
    only inside the discs' outline seen along the vertebra's axis (plus ``DISC_OUTLINE_MARGIN_MM``):
    the disc covers the endplate, while a pedicle root beside the body's rounded posterolateral
    corner can stand in front of the wall's plane. Farther forward, and without discs, the plane
    alone decides (an under-segmented disc cannot take the front of the body). What this gains
    over the plane alone is measured in docs/benchmarks.md ("Figures behind design choices").
    """
    for v, points in zip(vertebrae, work):
        merged = points.merged_idx
        if merged.size == 0:
            continue
        pts = grid.points(merged)
        if v.canal_centre_mm is not None:
            a = (pts - v.canal_centre_mm) @ v.anterior
            is_body = a > v.canal_front_rel_mm
            outline = _disc_outline(v, pts, disc_pts)
            if outline is not None:  # only where a pedicle root can be: near the wall
                is_body &= outline | (a >= v.canal_front_rel_mm + PEDICLE_ROOT_DEPTH_MM)
        else:  # no canal found: the front 55 % of the vertebra's depth
            a = pts @ v.anterior
            lo, hi = np.percentile(a, [1, 99])
            is_body = a > lo + 0.45 * (hi - lo)
        v.body_idx = np.concatenate([v.body_idx, merged[is_body]])
        v.posterior_idx = np.concatenate([v.posterior_idx, merged[~is_body]])


def _disc_outline(v: Vertebra, pts: np.ndarray, disc_pts: np.ndarray) -> np.ndarray | None:
    """(M,) bool: which of the vertebra's merged bone points (M, 3) fall inside the axial outline
    of the discs just above and below it (projected along ``v.superior``), or None without
    enough disc voxels there."""
    if len(disc_pts) == 0:
        return None
    rel_bone = pts - v.centroid_mm
    s_bone = rel_bone @ v.superior
    reach = 0.5 * float(s_bone.max() - s_bone.min()) + 8.0  # the discs touching this body
    rel = disc_pts - v.centroid_mm
    near = np.abs(rel @ v.superior) <= reach
    if near.sum() < 50:
        return None
    cell = DISC_OUTLINE_CELL_MM
    da, dr = rel[near] @ v.anterior, rel[near] @ v.right
    ba, br = rel_bone @ v.anterior, rel_bone @ v.right
    lo_a, lo_r = min(da.min(), ba.min()), min(dr.min(), br.min())
    shape2 = (int((max(da.max(), ba.max()) - lo_a) / cell) + 2, int((max(dr.max(), br.max()) - lo_r) / cell) + 2)
    grid = np.zeros(shape2, bool)
    grid[((da - lo_a) / cell).astype(int), ((dr - lo_r) / cell).astype(int)] = True
    grid = ndimage.binary_fill_holes(grid)
    grid = ndimage.binary_dilation(grid, iterations=max(1, int(round(DISC_OUTLINE_MARGIN_MM / cell))))
    return grid[((ba - lo_a) / cell).astype(int), ((br - lo_r) / cell).astype(int)]
