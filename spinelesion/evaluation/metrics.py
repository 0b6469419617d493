"""Per case and class overlap and boundary metrics, computed with MONAI on the scan's own grid.

For one class, with P the predicted and R the reference voxels (docs/evaluation.md):

- Dice = 2|P ∩ R| / (|P| + |R|) (``monai.metrics.compute_dice``);
- normalised surface Dice (NSD) at tolerance τ mm: the fraction of the boundary voxels of P and R
  that lie within τ of the other boundary (``compute_surface_dice``, Nikolov et al. 2021);
- HD95: the larger of the two directed 95th percentiles of boundary-to-boundary distances, mm
  (``compute_hausdorff_distance(percentile=95)``);
- volume error: volume(P) - volume(R) in ml and in percent of volume(R).

Distances use the real voxel spacing. Both empty: no Dice, NSD or HD95 (the class is absent and
rightly so; it is not averaged). One empty: Dice 0, NSD 0, HD95 undefined (None, counted).
"""

from __future__ import annotations

import warnings

import numpy as np

from spinelesion.measure.label_maps import MERGED_VERTEBRA

#: Scored class name -> mapped class values (schema v1, plus 7 = merged vertebra) it covers. A
#: reference that annotates whole vertebrae (TotalSegmentator levels, ``--ref-map vertebra``) is
#: scored as ``vertebra``: body + posterior elements of the prediction.
SCORABLE_CLASSES: dict[str, tuple[int, ...]] = {
    "vertebral_body": (1,),
    "posterior_elements": (2,),
    "lesion": (3,),
    "spinal_cord": (4,),
    "thecal_sac": (5,),
    "disc": (6,),
    "vertebra": (1, 2, MERGED_VERTEBRA),
}

#: Default tolerance of the normalised surface Dice, mm.
DEFAULT_TOLERANCE_MM = 2.0


def class_mask(classes: np.ndarray, name: str) -> np.ndarray:
    """(X, Y, Z) bool mask of scored class ``name`` in an (X, Y, Z) map of mapped class values."""
    return np.isin(classes, SCORABLE_CLASSES[name])


def overlap_metrics(*, pred: np.ndarray, ref: np.ndarray, spacing_mm, tolerance_mm: float = DEFAULT_TOLERANCE_MM) -> dict:
    """Dice, NSD, HD95 and volume error of one class.

    Args:
        pred, ref: (X, Y, Z) bool masks on the same grid.
        spacing_mm: (3,) voxel size along X, Y, Z.
        tolerance_mm: NSD tolerance.

    Returns:
        dict with pred_voxels, ref_voxels, pred_volume_ml, ref_volume_ml, volume_error_ml,
        volume_error_pct (None when the reference is empty), dice, nsd, hd95_mm (None when undefined).
    """
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} are on different grids")
    spacing = tuple(float(s) for s in spacing_mm)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    n_pred, n_ref = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    out = {"pred_voxels": n_pred, "ref_voxels": n_ref,
           "pred_volume_ml": n_pred * voxel_ml, "ref_volume_ml": n_ref * voxel_ml,
           "volume_error_ml": (n_pred - n_ref) * voxel_ml,
           "volume_error_pct": 100.0 * (n_pred - n_ref) / n_ref if n_ref else None,
           "dice": None, "nsd": None, "hd95_mm": None}
    if n_pred == 0 and n_ref == 0:
        return out
    if n_pred == 0 or n_ref == 0:
        out.update(dice=0.0, nsd=0.0)
        return out
    import torch
    from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice

    p, r = _crop(pred, ref)
    y_pred = torch.from_numpy(np.stack([~p, p]))[None].float()  # (1, 2, X, Y, Z) one-hot
    y = torch.from_numpy(np.stack([~r, r]))[None].float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dice = compute_dice(y_pred, y, include_background=False)
        nsd = compute_surface_dice(y_pred, y, [float(tolerance_mm)], include_background=False, spacing=spacing)
        hd95 = compute_hausdorff_distance(y_pred, y, include_background=False, percentile=95, spacing=spacing)
    out.update(dice=_number(dice), nsd=_number(nsd), hd95_mm=_number(hd95))
    return out


def segmentation_metrics(*, pred_classes: np.ndarray, ref_classes: np.ndarray, spacing_mm,
                         classes=("vertebral_body", "posterior_elements", "lesion", "spinal_cord", "thecal_sac", "disc"),
                         tolerance_mm: float = DEFAULT_TOLERANCE_MM) -> dict[str, dict]:
    """:func:`overlap_metrics` for each scored class name in ``classes``.

    Args:
        pred_classes, ref_classes: (X, Y, Z) integer maps of mapped class values on one grid.
    """
    return {name: overlap_metrics(pred=class_mask(pred_classes, name), ref=class_mask(ref_classes, name),
                                  spacing_mm=spacing_mm, tolerance_mm=tolerance_mm) for name in classes}


def _crop(a: np.ndarray, b: np.ndarray, margin: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cropped to their joint bounding box plus ``margin`` voxels (inside the grid):
    the same overlap and boundaries, less memory than whole one-hot volumes."""
    union = a | b
    box = []
    for axis in range(3):
        other = tuple(i for i in range(3) if i != axis)
        hit = np.flatnonzero(union.any(axis=other))
        box.append(slice(max(0, hit[0] - margin), min(union.shape[axis], hit[-1] + 1 + margin)))
    return a[tuple(box)], b[tuple(box)]


def _number(t) -> float | None:
    value = float(t.reshape(-1)[0])
    return None if not np.isfinite(value) else value
