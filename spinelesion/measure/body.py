"""Per-vertebra body measurements: volumes, destruction, heights, height loss, Genant, SINS.

Definitions (design.md §2):
- Destroyed fraction: lesion voxels inside the body / (body voxels + those lesion voxels) x 100.
  A lesion voxel is inside the body when it lies in front of the body's posterior wall (the
  canal's anterior wall) in the vertebra's own frame.
- Heights anterior / middle / posterior: measured on the vertebra's own mid-sagittal plane
  (through the body centroid, spanned by its superior and anterior axes, not the image axes),
  as the extent along its superior axis of the body (bone + lesion inside it) in bands at 10 %,
  50 % and 90 % of the body's depth (anterior and posterior heights 0.4 depth from the middle,
  clear of the rounded corners).
- Height loss: the largest of the three relative reductions against the height expected from
  normal neighbours (one undeformed size per vertebra, :func:`expected_heights`) (Genant et al.,
  J Bone Miner Res 1993;8:1137-48, semiquantitative method):
  grade 0 under 20 %, 1 for 20-25 %, 2 for 25-40 %, 3 over 40 %.
- SINS vertebral body collapse and posterolateral involvement, bone lesion quality (Fisher et
  al., Spine 2010;35:E1221-9): over 50 % collapse; under 50 %; no collapse with over 50 % of the
  body involved; none. Lytic / blastic / mixed from CT numbers inside the lesion against normal
  marrow of the same scan.
"""

from __future__ import annotations

import numpy as np

from spinelesion.measure import geometry as G
from spinelesion.measure.settings import MeasureSettings
from spinelesion.measure.vertebrae import Vertebra


def lesion_in_body(v: Vertebra, lesion_pts: np.ndarray, body_pts: np.ndarray) -> np.ndarray:
    """(N,) bool: which of the vertebra's (N, 3) lesion points lie inside its body."""
    if len(lesion_pts) == 0:
        return np.zeros(0, bool)
    if v.canal_centre_mm is not None and v.body_back_rel_mm is not None:
        return (lesion_pts - v.canal_centre_mm) @ v.anterior > v.body_back_rel_mm
    if len(body_pts):
        return lesion_pts @ v.anterior >= np.percentile(body_pts @ v.anterior, 1)
    return np.ones(len(lesion_pts), bool)


#: Tolerance on the canal's lateral wall (mm): a lesion must lie this far beyond it to count as
#: posterolateral (the wall is known to a voxel; the epidural test uses the same margin inwards).
CANAL_WALL_TOLERANCE_MM = 1.0


def in_canal(v: Vertebra, lesion_pts: np.ndarray) -> np.ndarray:
    """(N,) bool: lesion points inside the vertebra's bony canal (behind the body, within the bony
    canal's width plus ``CANAL_WALL_TOLERANCE_MM`` and about as far behind the canal centre as its
    anterior wall is in front)."""
    if len(lesion_pts) == 0 or v.canal_centre_mm is None or v.body_back_rel_mm is None:
        return np.zeros(len(lesion_pts), bool)
    rel = lesion_pts - v.canal_centre_mm
    a = rel @ v.anterior
    half_width = (v.bony_canal_half_width_mm or v.canal_half_width_mm) + CANAL_WALL_TOLERANCE_MM
    return (a <= v.body_back_rel_mm) & (a > -abs(v.body_back_rel_mm)) & (np.abs(rel @ v.right) <= half_width)


#: Voxel step (mm) along the vertebra's axis above which heights come from extents, not endplate fits.
COARSE_GRID_MM = 2.0
#: A fitted height is replaced by the band extent only when they differ by more than this fraction
#: of the body's tallest extent (or two voxel steps, whichever is larger).
FIT_TOLERANCE_FRACTION = 0.25


def body_heights_mm(v: Vertebra, flat_idx: np.ndarray, shape: tuple[int, int, int],
                    affine: np.ndarray) -> tuple[float, float, float] | None:
    """Anterior, middle and posterior heights (mm) of a body.

    Args:
        flat_idx: flat indices (into an array of ``shape``) of the body's voxels, bone and lesion.

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
    Chosen on phantoms (tests/test_measure_phantoms.py cases, seeds 200-209 and 300-319): median
    height error 0.11-0.16 mm, largest 1.4-1.6 mm but for one heavily destroyed body.
    """
    if flat_idx.size < 30:
        return None
    pts = G.world_points(flat_idx, shape, affine)
    if G.step_along_mm(v.superior, affine) > COARSE_GRID_MM:
        return _extent_heights_mm(v, pts, affine)
    ijk = np.stack(np.unravel_index(flat_idx, shape), axis=1)
    centre = pts.mean(axis=0)
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


def _extent_heights_mm(v: Vertebra, pts: np.ndarray, affine: np.ndarray) -> tuple[float, float, float] | None:
    """Heights (anterior, middle, posterior, mm) on coarse grids: each height is the extent along the vertebra's superior axis of the voxel centres in a band
    of the mid-sagittal slab (0.5 / 99.5 percentiles when the band holds over 200 voxels), plus
    the mean voxel step along that axis. ``pts``: (N, 3) world mm of the body's voxels.
    """
    if len(pts) < 30:
        return None
    step_s = G.step_along_mm(v.superior, affine)
    step_a = G.step_along_mm(v.anterior, affine)
    rel = pts - pts.mean(axis=0)
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
    lo = ijk.min(axis=0) - 1
    local = ijk - lo
    mask = np.zeros(tuple(local.max(axis=0) + 2), bool)
    mask[tuple(local.T)] = True

    def inside(points_ijk: np.ndarray) -> np.ndarray:
        q = np.rint(points_ijk).astype(np.int64)
        ok = np.all((q >= 0) & (q < mask.shape), axis=1)
        out = np.zeros(len(q), bool)
        out[ok] = mask[tuple(q[ok].T)]
        return out

    out = []
    for direction in (sign, -sign):  # superior, then inferior
        shifted = local.copy()
        shifted[:, k] += direction
        cand = local[~mask[tuple(shifted.T)]].astype(float)
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


def reference_vertebrae(heights: list[tuple[float, float, float] | None], destruction: list[float | None],
                        settings: MeasureSettings) -> list[bool]:
    """Which vertebrae serve as normal references for the expected heights.

    A vertebra with heights qualifies unless its destruction exceeds
    ``reference_max_destruction_pct`` or it is collapsed: its smallest height under
    ``normal_min_height_ratio`` of what the other references predict for it (leave-one-out,
    :func:`expected_heights`), repeated until the set is stable. A lesion without collapse keeps
    the body's height, so by default lesions do not exclude a vertebra; collapse does.
    """
    ok = [h is not None and (d or 0.0) <= settings.reference_max_destruction_pct for h, d in zip(heights, destruction)]
    excluded: set[int] = set()
    for _ in range(5):
        ref = [o and i not in excluded for i, o in enumerate(ok)]
        if sum(ref) < 2:
            break
        expected, _ = expected_heights(heights, ref)
        new = {i for i, (h, e) in enumerate(zip(heights, expected))
               if ok[i] and h is not None and e is not None
               and min(x / max(y, 1e-6) for x, y in zip(h, e)) < settings.normal_min_height_ratio}
        if new == excluded:
            break
        excluded = new
    return [o and i not in excluded for i, o in enumerate(ok)]


def expected_heights(heights: list[tuple[float, float, float] | None], normal: list[bool],
                     ) -> tuple[list[tuple[float, float, float] | None], list[str]]:
    """Expected (anterior, middle, posterior) height of each vertebra from normal vertebrae.

    A normal body's three heights are equal but for measurement noise, so each normal vertebra
    contributes one size, the mean of its three heights (averaging the three measurements; a
    per-position expectation would carry each position's own noise into the loss). The expected
    height is a line through those sizes against the vertebra index, fitted by least squares
    weighted 1 / (1 + distance)^2 and leaving the vertebra itself out: it follows the size trend
    along the column (heights grow caudally), extrapolates to the end vertebrae from their
    one-sided neighbours, and averages out one neighbour's own variation. Diseased neighbours
    are skipped, so a run of diseased vertebrae borrows from the nearest normal ones. With one
    normal vertebra its size is used; with none, the vertebra's own largest height (this sees
    wedging, not a uniform crush) and a note says so. The prediction is kept within +-15 % of
    the nearest normal vertebra's size. The same value is returned for the three positions.
    """
    idx = np.array([i for i in range(len(heights)) if normal[i] and heights[i] is not None], int)
    notes: list[str] = []
    out: list[tuple[float, float, float] | None] = []
    size = np.array([float(np.mean(heights[j])) for j in idx], float)
    for i, h in enumerate(heights):
        if h is None:
            out.append(None)
            continue
        if idx.size == 0:
            out.append((max(h),) * 3)
            if not notes:
                notes.append("no normal vertebra to compare heights with: height loss from the "
                             "vertebra's own tallest height (wedging only)")
            continue
        others = idx != i
        j, sj = (idx[others], size[others]) if others.any() else (idx, size)
        if j.size == 1:
            exp = float(sj[0])
        else:
            w = np.sqrt(1.0 / (1.0 + np.abs(j - i)) ** 2)
            x = np.stack([np.ones(j.size), j - i], axis=1)
            coef = np.linalg.lstsq(x * w[:, None], sj * w, rcond=None)[0]
            nearest = float(sj[np.argmin(np.abs(j - i))])
            exp = float(np.clip(coef[0], 0.85 * nearest, 1.15 * nearest))
        out.append((exp,) * 3)
    return out, notes


def height_loss_pct(height: tuple[float, float, float] | None, expected) -> float | None:
    """Largest relative reduction (%) of the three heights against the expected ones, >= 0."""
    if height is None or expected is None:
        return None
    loss = [100.0 * (1.0 - h / e) for h, e in zip(height, expected) if e > 0]
    return float(max(0.0, max(loss))) if loss else None


def genant_grade(loss_pct: float | None) -> int | None:
    """Genant 1993 semiquantitative grade from a height loss in %."""
    if loss_pct is None:
        return None
    return 0 if loss_pct < 20 else 1 if loss_pct < 25 else 2 if loss_pct <= 40 else 3


def sins_collapse(loss_pct: float | None, destruction_pct: float | None, settings: MeasureSettings) -> str | None:
    """SINS vertebral body collapse category (Fisher 2010)."""
    if loss_pct is None and destruction_pct is None:
        return None
    loss = loss_pct or 0.0
    if loss > 50:  # "over 50 %" (Fisher 2010); exactly 50 % is under
        return "over_50pct"
    if loss >= settings.collapse_min_pct:
        return "under_50pct"
    if (destruction_pct or 0.0) > 50:
        return "no_collapse_over_50pct_involved"
    return "none"


def lesion_type(lesion_hu: np.ndarray, marrow_hu: float | None, settings: MeasureSettings) -> str | None:
    """Lytic, blastic or mixed from the HU of a lesion's voxels against normal marrow (CT only)."""
    if marrow_hu is None or lesion_hu.size == 0:
        return None
    lytic = float(np.mean(lesion_hu < marrow_hu - settings.lytic_hu_below_marrow))
    blastic = float(np.mean(lesion_hu > marrow_hu + settings.blastic_hu_above_marrow))
    if min(lytic, blastic) >= settings.mixed_min_fraction:
        return "mixed"
    median = float(np.median(lesion_hu))
    return "blastic" if median > marrow_hu else "lytic"


def posterolateral(v: Vertebra, lesion_pts: np.ndarray, voxel_mm3: float, settings: MeasureSettings) -> str:
    """SINS posterolateral involvement: lesion behind the body and lateral to the bony canal (by
    more than ``CANAL_WALL_TOLERANCE_MM``), at least ``posterolateral_min_mm3`` per side. On the
    phantoms (42 cases, 252 vertebrae) this gets 249 right; reading the canal's width from the
    dural sac where the ring is open, and without the tolerance, got 237 (epidural tumour beside
    the sac read as posterolateral)."""
    if len(lesion_pts) == 0 or v.canal_centre_mm is None or v.body_back_rel_mm is None:
        return "none"
    rel = lesion_pts - v.canal_centre_mm
    behind = rel @ v.anterior <= v.body_back_rel_mm
    r = rel @ v.right
    lateral = np.abs(r) > (v.bony_canal_half_width_mm or v.canal_half_width_mm) + CANAL_WALL_TOLERANCE_MM
    sides = [np.sum(behind & lateral & (r > 0)), np.sum(behind & lateral & (r < 0))]
    involved = sum(count * voxel_mm3 >= settings.posterolateral_min_mm3 for count in sides)
    return ("none", "unilateral", "bilateral")[involved]
