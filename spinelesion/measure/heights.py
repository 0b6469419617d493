"""Vertebral body heights (anterior, middle, posterior) on each vertebra's own axes.

Heights are measured on the vertebra's own mid-sagittal plane (through the body centroid,
spanned by its superior and anterior axes, not the image axes), as the extent along its superior
axis of the body (bone + lesion inside it) in bands at 10 %, 50 % and 90 % of the body's depth
(anterior and posterior heights 0.4 depth from the middle, clear of the rounded corners), from
endplate surfaces fitted to the body's boundary voxels (docs/contracts.md §2).
"""

from __future__ import annotations

import numpy as np

from spinelesion.measure import geometry as G
from spinelesion.measure.column import Vertebra


#: Voxel step (mm) along the vertebra's axis above which heights come from extents, not endplate fits.
COARSE_GRID_MM = 2.0


#: A fitted height is replaced by the band extent only when they differ by more than this fraction
#: of the body's tallest extent (or two voxel steps, whichever is larger).
FIT_TOLERANCE_FRACTION = 0.25


def body_heights_mm(v: Vertebra, flat_idx: np.ndarray, grid: G.Grid, *,
                    points_mm: np.ndarray | None = None) -> tuple[float, float, float] | None:
    """Anterior, middle and posterior heights (mm) of a body.

    Args:
        flat_idx: flat indices (into ``grid``) of the body's voxels, bone and lesion.
        points_mm: (N, 3) RAS+ mm of those voxels where the caller has them (else computed).

    The superior and inferior endplates are located from the body's boundary voxels along the
    voxel axis nearest the vertebra's superior axis (a boundary voxel's centre plus half a voxel
    step towards its outside neighbour, where the surface lies on average; :func:`_endplate_points`).
    Each endplate is fitted, around each of the three positions (10 %, 50 % and 90 % of the
    body's depth on the mid-sagittal plane), by a Gaussian-weighted robust local surface
    s = c0 + c1 a + c2 r + c3 r^2 (s along the superior axis, a anterior, r right of the
    mid-sagittal plane); the height is the distance between the two fits at (a, r = 0). The fit
    reaches across the endplate's width (sigma 0.3 of the width): where the endplate is tilted
    against the slices, the boundary voxels' grid phase varies across the width as well as along
    the depth, so pooling them gives sub-voxel precision; the r^2 term follows a biconcave dip.
    An endplate parallel to the slices stays known to one slice only (an information limit of a
    label map, not of the fit). Depth kernels: 0.1 of the depth at the middle (a dip curves
    there), 0.2 at the walls.
    On grids coarser than ``COARSE_GRID_MM`` along the vertebra's axis too few boundary voxels
    fall near each position: the extent of the body in bands is used there (``_extent_heights_mm``),
    as it is wherever the fit fails or differs grossly from that extent (over
    ``FIT_TOLERANCE_FRACTION`` of the body's height, or two voxel steps): the band extent takes
    the highest voxel of its band, so on a wedge's slanted wall it overreads by 3-4 mm.
    The kernel widths were chosen on the phantoms of tests/test_measure_phantoms.py (seeds 200-209
    and 300-319); their errors are in docs/benchmarks.md ("Figures behind design choices").
    """
    if flat_idx.size < 30:
        return None
    affine = grid.affine
    pts = grid.points(flat_idx) if points_mm is None else points_mm
    if G.step_along_mm(v.superior, affine) > COARSE_GRID_MM:
        return _extent_heights_mm(v, pts, affine)
    ijk = grid.ijk(flat_idx)
    v = own_axes(v, ijk, affine)
    centre = G.centroid(pts)
    step_a = G.step_along_mm(v.anterior, affine)
    step_r = G.step_along_mm(v.right, affine)
    surfaces = _endplate_points(ijk, affine, v, inset_mm=max(1.5, 1.01 * step_a))
    if surfaces is None:
        return None
    rel = pts - centre
    r_all, a_all = rel @ v.right, rel @ v.anterior
    r_mid = float(np.median(r_all))
    in_slab = np.abs(r_all - r_mid) <= max(1.5, 1.01 * step_r)
    if in_slab.sum() < 10:
        return None
    a_lo, a_hi = _depth_range(a_all[in_slab], (rel @ v.superior)[in_slab], step_a)
    depth = a_hi - a_lo + step_a
    r_lo, r_hi = np.percentile(r_all, [0.5, 99.5])
    sigma_r = max(0.3 * (r_hi - r_lo + step_r), step_r)
    sigma_middle = max(0.1 * depth, 0.75 * step_a)
    sigma_wall = max(0.2 * depth, 0.75 * step_a)
    fits = [((q - centre) @ v.anterior, (q - centre) @ v.right - r_mid, (q - centre) @ v.superior)
            for q in surfaces]
    extent = _extent_heights_mm(v, pts, affine)
    if extent is None:
        return None
    tolerance = max(2.0 * G.step_along_mm(v.superior, affine), FIT_TOLERANCE_FRACTION * max(extent))
    heights = []
    for frac, rough in zip((0.9, 0.5, 0.1), extent):  # anterior, middle, posterior
        a_t = a_lo - step_a / 2 + frac * depth
        sigma_a = sigma_middle if frac == 0.5 else sigma_wall
        ends = [_local_surface(a - a_t, r, s, sigma_a=sigma_a, sigma_r=sigma_r) for a, r, s in fits]
        fitted = None if any(e is None for e in ends) else float(ends[0] - ends[1])
        # few or stray boundary voxels near a collapsed corner: keep the extent
        heights.append(fitted if fitted is not None and abs(fitted - rough) <= tolerance else rough)
    return tuple(heights)  # type: ignore[return-value]


#: Largest angle (deg) between a body's endplates' bisector and the column's local axis that is
#: taken as the body's own axis (beyond it the endplate fit is more likely wrong than the body tilted).
OWN_AXIS_MAX_DEG = 45.0


def own_axes(v: Vertebra, ijk: np.ndarray, affine: np.ndarray, *, iterations: int = 2) -> Vertebra:
    """The vertebra with its superior axis on the body's own axis: the bisector of the normals of
    planes fitted to its superior and inferior endplates (``ijk`` (N, 3): the body's voxel indices),
    anterior and right kept perpendicular. The column's axis through the neighbours' centroids
    (:func:`vertebrae._set_frames`) misses a body's own tilt where the column bends sharply or
    ends (L5 against S1, a kyphotic apex): heights along it read long by 1 / cos(angle) (a 35 deg
    L5/S1 angle: 7 % on the end vertebra). Returns ``v`` itself when the endplates cannot be fitted."""
    import dataclasses

    frame = v
    for _ in range(iterations):
        surfaces = _endplate_points(ijk, affine, frame, inset_mm=max(1.5, 1.01 * G.step_along_mm(frame.anterior, affine)))
        if surfaces is None or min(len(q) for q in surfaces) < 20:
            return frame
        normals = [_plane_normal(q, frame.superior) for q in surfaces]
        if any(n is None for n in normals):
            return frame
        sup = normals[0] + normals[1]
        sup /= np.linalg.norm(sup)
        if np.degrees(np.arccos(np.clip(sup @ v.superior, -1, 1))) > OWN_AXIS_MAX_DEG:
            return frame
        anterior = G.perpendicular(frame.anterior, sup)
        frame = dataclasses.replace(frame, superior=sup, anterior=anterior, right=np.cross(anterior, sup))
    return frame


def _plane_normal(points: np.ndarray, towards: np.ndarray) -> np.ndarray | None:
    """Unit normal (pointing along ``towards``) of a plane fitted to (M, 3) points by least squares,
    refitted twice without points over 2 mm from it; None with under 20 points."""
    use = np.ones(len(points), bool)
    normal = None
    for _ in range(3):
        if use.sum() < 20:
            return normal
        q = points[use]
        c = G.centroid(q)
        normal = G.orient_like(np.linalg.eigh((q - c).T @ (q - c))[1][:, 0], towards)
        use = np.abs((points - c) @ normal) <= 2.0
    return normal


def _extent_heights_mm(v: Vertebra, pts: np.ndarray, affine: np.ndarray) -> tuple[float, float, float] | None:
    """Heights (anterior, middle, posterior, mm) on coarse grids: each height is the extent along the vertebra's superior axis of the voxel centres in a band
    of the mid-sagittal slab (0.5 / 99.5 percentiles when the band holds over 200 voxels), plus
    the mean voxel step along that axis. ``pts``: (N, 3) world mm of the body's voxels.
    """
    if len(pts) < 30:
        return None
    step_s = G.step_along_mm(v.superior, affine)
    step_a = G.step_along_mm(v.anterior, affine)
    rel = pts - G.centroid(pts)
    r = rel @ v.right
    slab = np.abs(r - np.median(r)) <= max(1.5, 1.01 * G.step_along_mm(v.right, affine))
    if slab.sum() < 10:
        return None
    a, s = rel[slab] @ v.anterior, rel[slab] @ v.superior
    a_lo, a_hi = _depth_range(a, s, step_a)
    depth = a_hi - a_lo + step_a
    half_w = max(0.05 * depth, 0.51 * step_a, 1.0)
    heights = []
    for frac in (0.9, 0.5, 0.1):  # anterior, middle, posterior
        band = s[np.abs(a - (a_lo - step_a / 2 + frac * depth)) <= half_w]
        if band.size < 3:
            return None
        lo, hi = (np.percentile(band, [0.5, 99.5]) if band.size > 200 else (band.min(), band.max()))
        heights.append(float(hi - lo + step_s))
    return tuple(heights)  # type: ignore[return-value]


def _depth_range(a: np.ndarray, s: np.ndarray, step_a: float, *, min_height_fraction: float = 0.25,
                 ) -> tuple[float, float]:
    """Front and back (mm along the anterior axis) of a body from its mid-sagittal slab points
    (N,) ``a`` (anterior) and ``s`` (superior): the 0.5 / 99.5 percentiles of ``a`` over the
    bands (one voxel step wide) whose extent along ``s`` is at least ``min_height_fraction`` of
    the tallest band's. A thin appendage (an epidural lesion counted with a destroyed body,
    a stray corner) is no part of the body's depth; a wedge's low front (over a quarter of its
    back) still is."""
    bins = np.floor((a - a.min()) / step_a).astype(np.int64)
    lo = np.full(bins.max() + 1, np.inf)
    hi = np.full(bins.max() + 1, -np.inf)
    np.minimum.at(lo, bins, s)
    np.maximum.at(hi, bins, s)
    extent = hi - lo
    tall = extent >= min_height_fraction * extent.max()
    a_lo, a_hi = np.percentile(a[tall[bins]], [0.5, 99.5])
    return float(a_lo), float(a_hi)


def _endplate_points(ijk: np.ndarray, affine: np.ndarray, v: Vertebra, *, inset_mm: float):
    """World points (M, 3) on the superior and inferior surfaces of a body given by its voxel
    indices (N, 3): boundary voxel centres moved half a step towards the outside neighbour along
    the voxel axis nearest the vertebra's superior axis. Voxels within ``inset_mm`` of the body's
    front, back or sides (a point that far along the vertebra's anterior or right axis is outside)
    are left out: on a wall slanted against the grid every voxel has an outside neighbour along
    that axis. None if either surface is empty."""
    cols = affine[:3, :3]
    inv = np.linalg.inv(cols)
    k = int(np.argmax(np.abs(v.superior @ cols) / np.linalg.norm(cols, axis=0)))
    sign = 1 if float(v.superior @ cols[:, k]) > 0 else -1
    lo = G.column_min(ijk) - 1
    local = ijk - lo
    mask = np.zeros(tuple(G.column_max(local) + 2), bool)
    step_k = int(np.prod(mask.shape[k + 1:]))  # flat-index step of one voxel along axis k
    local_flat = np.ravel_multi_index(local.T, mask.shape)  # one-array look-ups, not 3-array fancy indexing
    flat_mask = mask.ravel()
    flat_mask[local_flat] = True

    def inside(points_ijk: np.ndarray) -> np.ndarray:
        q = np.rint(points_ijk).astype(np.int64)
        ok = G.in_bounds(q, mask.shape)
        out = np.zeros(len(q), bool)
        out[ok] = flat_mask[np.ravel_multi_index(q[ok].T, mask.shape)]
        return out

    out = []
    for direction in (sign, -sign):  # superior, then inferior
        # the mask is padded by one voxel on every side: a neighbour's flat index never leaves it
        cand = local[~flat_mask[local_flat + direction * step_k]].astype(float)
        # a margin into the body along its axis, as large as rounding a point to its voxel can move
        # it across a surface perpendicular to that axis: deep and shallow boundary voxels alike pass
        margin_mm = 0.5 * float(np.abs(v.superior @ cols).sum())
        inward = inv @ (-(1 if direction == sign else -1) * margin_mm * v.superior)
        for axis in (v.anterior, -v.anterior, v.right, -v.right):
            cand = cand[inside(cand + inset_mm * (inv @ axis) + inward)]
        if len(cand) == 0:
            return None
        cand[:, k] += 0.5 * direction
        out.append((cand + lo) @ cols.T + affine[:3, 3])
    return out


def _local_surface(da: np.ndarray, r: np.ndarray, s: np.ndarray, *, sigma_a: float,
                   sigma_r: float) -> float | None:
    """Value at (da, r) = (0, 0) of a surface s = c0 + c1 da + c2 r + c3 r^2 fitted to (N,) points
    by least squares, weighted by Gaussians (``sigma_a``, ``sigma_r`` mm) and refitted twice
    without points lying over 2 mm from it (stray voxels); None with under 6 points near."""
    near = (np.abs(da) <= 2.5 * sigma_a) & (np.abs(r) <= 2.5 * sigma_r)
    if near.sum() < 6:
        return None
    da, r, s = da[near], r[near], s[near]
    w = np.sqrt(np.exp(-0.5 * (da / sigma_a) ** 2 - 0.5 * (r / sigma_r) ** 2))
    x = np.stack([np.ones_like(da), da, r, r * r], axis=1)
    use = np.ones(len(s), bool)
    value = None
    for _ in range(3):
        if use.sum() < 6:
            break
        coef = np.linalg.lstsq(x[use] * w[use, None], s[use] * w[use], rcond=None)[0]
        value = float(coef[0])
        use = np.abs(s - x @ coef) <= 2.0
    return value
