"""Lesions as 3D connected components (cc3d), with volume, centroid, vertebra and epidural status."""

from __future__ import annotations

from collections.abc import Callable

import cc3d
import numpy as np

from spinelesion import labels as L
from spinelesion.measure import geometry as G
from spinelesion.measure.settings import MeasureSettings
from spinelesion.measure.column import Vertebra
from spinelesion.vocabulary import vertebra_name

#: Most voxels of one lesion read for its confidence (evenly strided beyond that).
CONFIDENCE_SAMPLES = 20_000


def find_lesions(*, classes: np.ndarray, affine: np.ndarray, vertebrae: list[Vertebra],
                 settings: MeasureSettings, lesion_probability: Callable[[np.ndarray], np.ndarray] | None = None,
                 lesion_probability_sd: Callable[[np.ndarray], np.ndarray] | None = None,
                 ) -> tuple[list[dict], np.ndarray]:
    """Connected lesion components of at least ``settings.min_lesion_mm3``.

    ``lesion_probability`` (the network's lesion probability at (N, 3) RAS+ mm points) gives each
    lesion a ``confidence``: its mean over the lesion's voxels (at most :data:`CONFIDENCE_SAMPLES`
    of them, evenly spread); null without it (labels not made by a network).
    ``lesion_probability_sd`` (its standard deviation over test-time augmentation passes) gives
    ``tta_sd``, the mean of that spread over the lesion's voxels; null without TTA.

    A component is epidural when it touches the cord or thecal sac (26-neighbourhood) or reaches
    into the bony canal of its vertebra (behind the body's posterior wall, within the canal's width).
    Returns the lesion records (ids 1.., ordered by volume, largest first) and an (X, Y, Z) bool
    mask of the voxels of epidural components.

    Work beyond the connected-component pass runs on the lesion voxels' flat indices (and the
    canal's bounding box), not on whole volumes: volumes, centroids and vertebra votes are
    bincounts over the lesion voxels.
    """
    lesion = classes == L.LESION
    epidural_mask = np.zeros(classes.shape, bool)
    if not lesion.any():
        return [], epidural_mask
    comps, n = cc3d.connected_components(lesion, connectivity=26, return_N=True)
    voxel_mm3 = abs(np.linalg.det(affine[:3, :3]))
    flat = np.flatnonzero(lesion)  # (N,) sorted flat indices of the lesion voxels
    comp_of = comps.ravel()[flat]
    # uint32, the type of cc3d.statistics' voxel counts, so that equal volumes keep their old order
    counts = np.bincount(comp_of, minlength=n + 1).astype(np.uint32)
    ijk = np.unravel_index(flat, classes.shape)
    with np.errstate(invalid="ignore", divide="ignore"):  # component 0 (background) has no voxels here
        centroids = np.stack([np.bincount(comp_of, weights=x, minlength=n + 1) for x in ijk], axis=1) / counts[:, None]
    vert_of = np.full(flat.size, -1, np.int64)  # vertebra index of each lesion voxel, -1 for none
    for v in vertebrae:
        vert_of[np.searchsorted(flat, v.lesion_idx)] = v.index
    grid = G.Grid(classes.shape, affine)
    epidural_ids = _in_canal_components(flat, comp_of, grid, vertebrae, vert_of)
    epidural_ids |= _touching_canal(classes, comps)
    n_vert = max((v.index for v in vertebrae), default=-1) + 1
    has_vert = vert_of >= 0
    votes = np.bincount(comp_of[has_vert].astype(np.int64) * n_vert + vert_of[has_vert],
                        minlength=(n + 1) * n_vert).reshape(n + 1, n_vert)
    records, epidural_kept = [], []
    for k in np.argsort(-counts[1:]) + 1:
        if counts[k] * voxel_mm3 < settings.min_lesion_mm3:
            continue
        centroid = affine[:3, :3] @ centroids[k] + affine[:3, 3]
        vertebra_index = int(votes[k].argmax()) if n_vert and votes[k].any() else None
        voxels = flat[comp_of == k]
        records.append({
            "id": len(records) + 1,
            "volume_ml": round(float(counts[k] * voxel_mm3 / 1000.0), 4),
            "centroid_mm": [round(float(x), 2) for x in centroid],
            "vertebra_index": vertebra_index,
            "epidural": bool(k in epidural_ids),
            "confidence": _mean_at(voxels, grid, lesion_probability),
            "tta_sd": _mean_at(voxels, grid, lesion_probability_sd),
        })
        if vertebra_index is None:  # say where it is instead
            records[-1]["location"] = outside_location(centroid, vertebrae)
        if k in epidural_ids:
            epidural_kept.append(k)
    np.put(epidural_mask, flat[np.isin(comp_of, epidural_kept)], True)
    return records, epidural_mask


def _mean_at(flat_idx: np.ndarray, grid: G.Grid, lookup) -> float | None:
    """Mean of ``lookup`` (world points -> values) over a lesion's voxels (flat C indices into
    ``grid``), or None without a lookup."""
    if lookup is None:
        return None
    step = max(1, flat_idx.size // CONFIDENCE_SAMPLES)
    return round(float(np.mean(lookup(grid.points(flat_idx[::step])))), 3)


def _touching_canal(classes: np.ndarray, comps: np.ndarray) -> set[int]:
    """Ids of lesion components with a voxel 26-adjacent to (or in) the cord or thecal sac.

    Only the canal's bounding box grown by one voxel can hold such voxels; the canal is dilated
    there by the 3x3x3 cube as three 1-voxel passes along each axis (the cube is their sum).
    """
    canal = (classes == L.SPINAL_CORD) | (classes == L.THECAL_SAC)
    box = G.crop_box(canal, margin=1)
    if box is None:
        return set()
    near = canal[box]
    for axis in range(3):
        grown = near.copy()
        lower = [slice(None)] * 3
        upper = [slice(None)] * 3
        lower[axis], upper[axis] = slice(None, -1), slice(1, None)
        grown[tuple(upper)] |= near[tuple(lower)]
        grown[tuple(lower)] |= near[tuple(upper)]
        near = grown
    return set(np.unique(comps[box][near]).tolist()) - {0}


def _in_canal_components(flat, comp_of, grid: G.Grid, vertebrae, vert_of) -> set[int]:
    ids: set[int] = set()
    for v in vertebrae:
        if v.canal_centre_mm is None or v.body_back_rel_mm is None:
            continue
        sel = vert_of == v.index
        rel = grid.points(flat[sel]) - v.canal_centre_mm
        a, r = rel @ v.anterior, rel @ v.right
        inside = (a < v.body_back_rel_mm - 1.0) & (a > -v.body_back_rel_mm) & (np.abs(r) < v.canal_half_width_mm - 1.0)
        ids |= set(np.unique(comp_of[sel][inside]).tolist())
    return ids


def outside_location(centroid_mm: np.ndarray, vertebrae: list[Vertebra]) -> str:
    """Where a lesion that belongs to no vertebra lies: distance and direction (patient R/L, A/P,
    S/I) from the nearest vertebra's centroid, or its RAS position when there are no vertebrae."""
    centroid_mm = np.asarray(centroid_mm, float)
    if not vertebrae:
        return "in no vertebra (no vertebrae found): at RAS " + ", ".join(f"{x:.0f}" for x in centroid_mm) + " mm"
    nearest = min(vertebrae, key=lambda v: float(np.linalg.norm(centroid_mm - v.centroid_mm)))
    offset = centroid_mm - nearest.centroid_mm
    words = [("right", "left"), ("anterior", "posterior"), ("superior", "inferior")]
    parts = [f"{abs(d):.0f} mm {words[a][0] if d >= 0 else words[a][1]}"
             for a, d in sorted(enumerate(offset), key=lambda ad: -abs(ad[1])) if abs(d) >= 5]
    name = vertebra_name(nearest.level, nearest.index)
    where = ", ".join(parts) if parts else "at the centre"
    return f"in no vertebra: {where} of {name}'s body centre ({np.linalg.norm(offset):.0f} mm away)"
