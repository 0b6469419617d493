"""Per-level vertebra detection and identification, where the reference names levels.

Rule (docs/evaluation.md): a reference vertebra of level L (its voxels in the reference) is
detected when the body centroid of a predicted vertebra falls inside those voxels (the centroid's
nearest voxel); when several do, the one nearest the reference vertebra's centroid counts, so each
predicted vertebra detects at most one level. It is identified when that predicted vertebra is
also named L. Predicted vertebrae come from the prediction's measurement record (body centroid and
level); without one, from the 26-connected components of the predicted vertebral bodies (no level).
"""

from __future__ import annotations

import numpy as np

from spinelesion.record_types import MeasurementRecord


def predicted_vertebrae(*, record: MeasurementRecord | None, pred_classes: np.ndarray, affine: np.ndarray,
                        ) -> list[dict]:
    """[{"index", "level", "centroid_mm"}] of the predicted vertebrae.

    Args:
        record: the prediction's typed measurement record or None.
        pred_classes: (X, Y, Z) predicted mapped classes (used without a record).
        affine: (4, 4) voxel -> RAS+ mm.
    """
    if record is not None:
        return [{"index": v.index, "level": v.level, "centroid_mm": list(v.centroid_mm)} for v in record.vertebrae]
    from spinelesion.evaluation.lesions import centroids_mm, instances

    bodies = instances(pred_classes == 1)
    return [{"index": k - 1, "level": None, "centroid_mm": c} for k, c in centroids_mm(bodies, affine).items()]


def level_detection(*, ref_levels: np.ndarray, level_names, pred_vertebrae: list[dict], affine: np.ndarray) -> list[dict]:
    """One row per reference level: {"level", "detected", "identified", "pred_level", "distance_mm"}.

    Args:
        ref_levels: (X, Y, Z) uint8, k + 1 on the voxels of ``level_names[k]``, 0 elsewhere.
        pred_vertebrae: :func:`predicted_vertebrae`.
        affine: (4, 4) voxel -> RAS+ mm of the grid.
    """
    inverse = np.linalg.inv(affine)
    shape = np.array(ref_levels.shape)
    centres = {}
    for k in range(len(level_names)):
        idx = np.argwhere(ref_levels == k + 1)
        if idx.size:
            centres[k] = affine[:3, :3] @ idx.mean(axis=0) + affine[:3, 3]
    inside: dict[int, list[tuple[float, dict]]] = {}
    for v in pred_vertebrae:
        c = np.asarray(v["centroid_mm"], float)
        ijk = np.round(inverse[:3, :3] @ c + inverse[:3, 3]).astype(int)
        if np.any(ijk < 0) or np.any(ijk >= shape):
            continue
        k = int(ref_levels[tuple(ijk)]) - 1
        if k >= 0 and k in centres:
            inside.setdefault(k, []).append((float(np.linalg.norm(c - centres[k])), v))
    rows = []
    for k, name in enumerate(level_names):
        if k not in centres:
            continue
        hits = sorted(inside.get(k, []), key=lambda t: (t[0], t[1]["index"]))
        best = hits[0] if hits else None
        rows.append({"level": name, "detected": best is not None,
                     "identified": best is not None and best[1]["level"] == name,
                     "pred_level": None if best is None else best[1]["level"],
                     "distance_mm": None if best is None else round(best[0], 2)})
    return rows
