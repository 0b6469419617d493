"""Split whole-vertebra masks into vertebral body (1) and posterior elements (2), geometrically.

VerSe, TotalSegmentator, SPIDER and Spine-Mets-CT-SEG label each vertebra as one object; schema
v1 separates the body from the posterior elements. Design note (docs/contracts.md section 1): "the
body lies in front of the canal". For each vertebra we find the canal on axial slices and call
every voxel of the vertebra that lies further anterior than the canal's front edge "body", the
rest "posterior elements":

1. Slices are taken along the voxel axis closest to the patient's superior direction, so
   the rule works on any orientation (RAS, LPS, sagittal acquisitions, oblique affines).
2. On each slice the canal is the largest hole enclosed by the vertebra's ring (2D hole
   filling), or, where the dataset labels the canal (SPIDER), the labelled canal inside the
   vertebra's bounding box. Only holes of at least ``MIN_CANAL_AREA_MM2`` whose centre lies
   behind the whole vertebra's centroid count: gaps inside a body (hollow or defective masks,
   seen on TotalSegmentator model output) lie in front of it and are ignored.
3. A voxel is body when its world anterior coordinate (RAS y, which follows the patient, so
   prone scans work too) exceeds the canal's most anterior point on that slice; slices without
   a canal (above and below the pedicles) use the median over the vertebra's other slices.
4. A vertebra whose ring never closes (cut by the field of view, coarse voxels, spina bifida)
   is split at the same share of its antero-posterior depth as the median of the vertebrae in
   the same map that did show a canal, or at ``FALLBACK_BODY_FRACTION`` when none did.

Known limits: the boundary is one plane per slice, so with strong sagittal tilt a few voxels
of the body's back wall or the pedicle roots land on the wrong side; cervical anterior
tubercles that reach in front of the canal count as body. The atlas (C1) has no body and is
all posterior elements (``posterior_only``).
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from spinelesion.labels import POSTERIOR_ELEMENTS, VERTEBRAL_BODY

log = logging.getLogger(__name__)

#: Share of a vertebra's antero-posterior extent called body when no vertebra in the map shows a canal. Typical
#: adult proportions (body depth / whole vertebra depth): cervical ~0.3, thoracic ~0.33,
#: lumbar ~0.4 (anatomy texts); 0.35 sits in between.
FALLBACK_BODY_FRACTION = 0.35
#: Smallest hole taken for the canal. Adult canal cross-sections are about 150-300 mm^2
#: (cervical to lumbar); 30 mm^2 keeps small gaps and vascular foramina out.
MIN_CANAL_AREA_MM2 = 30.0


def split_vertebrae(instances: np.ndarray, *, affine: np.ndarray, posterior_only: tuple[int, ...] = (),
                    canal: np.ndarray | None = None) -> np.ndarray:
    """Body / posterior-element map from a map of whole vertebrae.

    Args:
        instances: (X, Y, Z) integer array; 0 is background, every other value one vertebra.
        affine: (4, 4) voxel -> RAS+ mm of that grid.
        posterior_only: instance values labelled posterior elements throughout (C1).
        canal: optional (X, Y, Z) bool mask of the spinal canal; used instead of ring holes.

    Returns:
        (X, Y, Z) uint8 array: 0, VERTEBRAL_BODY (1) or POSTERIOR_ELEMENTS (2).
    """
    instances = np.asarray(instances)
    affine = np.asarray(affine, dtype=np.float64)
    out = np.zeros(instances.shape, dtype=np.uint8)
    slice_axis = superior_axis(affine)
    pending: list[tuple[tuple[slice, ...], np.ndarray, np.ndarray]] = []  # vertebrae without a canal
    fractions: list[float] = []
    boxes = ndimage.find_objects(instances.astype(np.int64, copy=False))
    for index, box in enumerate(boxes):
        value = index + 1
        if box is None:
            continue
        mask = instances[box] == value
        if value in posterior_only:
            out[box][mask] = POSTERIOR_ELEMENTS
            continue
        anterior_mm = _anterior_mm(affine, box)
        body = _body_behind_canal(mask, anterior_mm, affine=affine, slice_axis=slice_axis,
                                  canal=None if canal is None else canal[box])
        if body is None:
            pending.append((box, mask, anterior_mm))
            continue
        a_values = anterior_mm[mask]
        depth_mm = float(a_values.max() - a_values.min())
        if depth_mm > 0 and (body & mask).any():
            fractions.append(float(a_values.max() - anterior_mm[body & mask].min()) / depth_mm)
        _paint(out, box, mask, body)
    fraction = float(np.median(fractions)) if fractions else FALLBACK_BODY_FRACTION
    for box, mask, anterior_mm in pending:
        a_values = anterior_mm[mask]
        a_max, a_min = float(a_values.max()), float(a_values.min())
        log.info("vertebra at voxel %s: no canal found, body = anterior %.0f%% of its depth",
                 tuple(s.start for s in box), 100 * fraction)
        _paint(out, box, mask, anterior_mm >= a_max - fraction * (a_max - a_min))
    return out


def superior_axis(affine: np.ndarray) -> int:
    """Index of the voxel axis whose direction is closest to the patient's superior (RAS z)."""
    directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return int(np.argmax(np.abs(directions[2])))


def _anterior_mm(affine: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """World anterior coordinate (RAS y, mm) of every voxel in ``box``."""
    grids = np.meshgrid(*(np.arange(s.start, s.stop) for s in box), indexing="ij")
    return affine[1, 0] * grids[0] + affine[1, 1] * grids[1] + affine[1, 2] * grids[2] + affine[1, 3]


def _paint(out: np.ndarray, box: tuple[slice, ...], mask: np.ndarray, body: np.ndarray) -> None:
    region = out[box]
    region[mask & body] = VERTEBRAL_BODY
    region[mask & ~body] = POSTERIOR_ELEMENTS


def _body_behind_canal(mask: np.ndarray, anterior_mm: np.ndarray, *, affine: np.ndarray, slice_axis: int,
                       canal: np.ndarray | None) -> np.ndarray | None:
    """Bool mask (box-sized) of the voxels in front of the canal; None when no slice shows it."""
    spacing_mm = np.linalg.norm(affine[:3, :3], axis=0)
    pixel_area_mm2 = float(np.prod(np.delete(spacing_mm, slice_axis)))
    centroid_mm = float(anterior_mm[mask].mean())
    fronts: dict[int, float] = {}
    for k in range(mask.shape[slice_axis]):
        ring = np.take(mask, k, axis=slice_axis)
        if not ring.any():
            continue
        if canal is not None:
            hole = np.take(canal, k, axis=slice_axis).astype(bool) & ~ring
        else:
            hole = ndimage.binary_fill_holes(ring) & ~ring
        a_slice = np.take(anterior_mm, k, axis=slice_axis)
        hole = _canal_component(hole, a_slice, min_pixels=MIN_CANAL_AREA_MM2 / pixel_area_mm2,
                                behind_mm=centroid_mm)
        if hole.any():
            fronts[k] = float(a_slice[hole].max())
    if not fronts:
        return None
    median_front = float(np.median(list(fronts.values())))
    shape = [1, 1, 1]
    shape[slice_axis] = mask.shape[slice_axis]
    per_slice = np.array([fronts.get(k, median_front) for k in range(mask.shape[slice_axis])]).reshape(shape)
    return anterior_mm > per_slice


def _canal_component(holes: np.ndarray, anterior_mm: np.ndarray, *, min_pixels: float,
                     behind_mm: float) -> np.ndarray:
    """The largest 2D component of ``holes`` with at least ``min_pixels`` pixels whose mean
    anterior coordinate is below ``behind_mm``; an empty mask when none qualifies."""
    if not holes.any():
        return holes
    labelled, count = ndimage.label(holes)
    best, best_size = 0, 0
    for number in range(1, count + 1):
        component = labelled == number
        size = int(component.sum())
        if size >= min_pixels and size > best_size and anterior_mm[component].mean() < behind_mm:
            best, best_size = number, size
    return labelled == best if best else np.zeros_like(holes)
