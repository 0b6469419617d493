"""Lesions as instances: connected components, one-to-one matching, size bins, FROC.

Instances are the 26-connected components (cc3d) of the lesion class in the reference and in the
prediction. Matching rule (docs/evaluation.md): every reference-prediction pair that shares at
least one voxel and whose intersection over union exceeds ``min_iou`` (default 0: any overlap) is
a candidate; candidates are taken greedily by decreasing IoU (ties: lower reference id, then lower
predicted id), each instance at most once. A matched reference lesion is a true positive, an
unmatched one a false negative, an unmatched predicted lesion a false positive. So a lesion split
in two gives one true positive and one false positive, two lesions merged into one prediction
give one true positive and one false negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Upper bounds (ml) of the lesion size bins: < 0.5 ml, 0.5-5 ml, >= 5 ml.
DEFAULT_SIZE_BINS_ML = (0.5, 5.0)
#: Lesion probability thresholds of the FROC curve.
FROC_THRESHOLDS = tuple(round(t, 2) for t in np.linspace(0.0, 1.0, 51))


@dataclass(frozen=True)
class Instances:
    """Connected components of one mask.

    Attributes:
        labels: (X, Y, Z) int32, component id 1..n, 0 outside.
        n: number of components.
        voxels: (n + 1,) voxel count of each id (index 0: background).
    """

    labels: np.ndarray
    n: int
    voxels: np.ndarray


def instances(mask: np.ndarray) -> Instances:
    """26-connected components of an (X, Y, Z) bool mask, ids in cc3d's scan order."""
    import cc3d

    labels, n = cc3d.connected_components(mask.astype(np.uint8), connectivity=26, return_N=True)
    labels = labels.astype(np.int32, copy=False)
    return Instances(labels=labels, n=int(n), voxels=np.bincount(labels.ravel(), minlength=n + 1))


def overlaps(ref: Instances, pred: Instances) -> dict[tuple[int, int], int]:
    """{(reference id, predicted id): shared voxels} for every pair that shares voxels."""
    both = (ref.labels > 0) & (pred.labels > 0)
    if not both.any():
        return {}
    keys = ref.labels[both].astype(np.int64) * (pred.n + 1) + pred.labels[both]
    values, counts = np.unique(keys, return_counts=True)
    return {(int(v // (pred.n + 1)), int(v % (pred.n + 1))): int(c) for v, c in zip(values, counts)}


def match(*, ref: Instances, pred: Instances, shared: dict[tuple[int, int], int] | None = None,
          min_iou: float = 0.0, keep_pred: set[int] | None = None) -> dict[int, tuple[int, float, float]]:
    """One-to-one greedy matching by IoU (module docstring).

    Args:
        shared: :func:`overlaps` of ``ref`` and ``pred`` (computed when None).
        keep_pred: predicted ids allowed to match (all when None), e.g. those above a threshold.

    Returns:
        {reference id: (predicted id, IoU, Dice of the pair)}.
    """
    shared = overlaps(ref, pred) if shared is None else shared
    candidates = []
    for (r, p), inter in shared.items():
        if keep_pred is not None and p not in keep_pred:
            continue
        union = int(ref.voxels[r] + pred.voxels[p] - inter)
        iou = inter / union
        if iou > min_iou:
            candidates.append((-iou, r, p, 2.0 * inter / (ref.voxels[r] + pred.voxels[p])))
    matched: dict[int, tuple[int, float, float]] = {}
    used: set[int] = set()
    for neg_iou, r, p, dice in sorted(candidates):
        if r in matched or p in used:
            continue
        matched[r] = (p, -neg_iou, float(dice))
        used.add(p)
    return matched


def size_bin(volume_ml: float, bins_ml=DEFAULT_SIZE_BINS_ML) -> str:
    """Name of the size bin of a lesion volume: '<0.5 ml', '0.5-5 ml', '>=5 ml' for the default bins."""
    edges = list(bins_ml)
    if volume_ml < edges[0]:
        return f"<{edges[0]:g} ml"
    for low, high in zip(edges, edges[1:]):
        if volume_ml < high:
            return f"{low:g}-{high:g} ml"
    return f">={edges[-1]:g} ml"


def bin_names(bins_ml=DEFAULT_SIZE_BINS_ML) -> list[str]:
    """All size bin names in increasing size."""
    edges = list(bins_ml)
    return ([f"<{edges[0]:g} ml"] + [f"{a:g}-{b:g} ml" for a, b in zip(edges, edges[1:])]
            + [f">={edges[-1]:g} ml"])


def case_lesions(*, pred_mask: np.ndarray, ref_mask: np.ndarray, affine: np.ndarray,
                 probability: np.ndarray | None = None, min_iou: float = 0.0,
                 size_bins_ml=DEFAULT_SIZE_BINS_ML) -> dict:
    """Lesion instances of one case, matched.

    Args:
        pred_mask, ref_mask: (X, Y, Z) bool lesion masks on one grid.
        affine: (4, 4) voxel -> RAS+ mm of that grid.
        probability: (X, Y, Z) float lesion probability 0..1, or None; a predicted lesion's score
            is its highest voxel probability.

    Returns:
        {"rows": one dict per reference and per predicted lesion (lesions.csv), "tp", "fn", "fp",
        "n_ref", "n_pred", "matched_dice": [Dice of each matched pair], "by_bin": {bin: {"ref",
        "tp", "pred", "fp"}}, "froc": [(threshold, tp, fp) for FROC_THRESHOLDS] or None}.
    """
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    ref, pred = instances(ref_mask), instances(pred_mask)
    shared = overlaps(ref, pred)
    matched = match(ref=ref, pred=pred, shared=shared, min_iou=min_iou)
    pred_to_ref = {p: (r, iou, dice) for r, (p, iou, dice) in matched.items()}
    scores = _scores(pred, probability)
    centroids_r, centroids_p = centroids_mm(ref, affine), centroids_mm(pred, affine)
    rows = []
    by_bin = {name: {"ref": 0, "tp": 0, "pred": 0, "fp": 0} for name in bin_names(size_bins_ml)}
    for r in range(1, ref.n + 1):
        vol = float(ref.voxels[r]) * voxel_ml
        b = size_bin(vol, size_bins_ml)
        p, iou, dice = matched.get(r, (None, None, None))
        by_bin[b]["ref"] += 1
        by_bin[b]["tp"] += p is not None
        rows.append({"source": "reference", "id": r, "volume_ml": vol, "size_bin": b,
                     "centroid_mm": centroids_r[r], "score": None, "matched_id": p,
                     "iou": iou, "dice": dice, "outcome": "TP" if p is not None else "FN"})
    for p in range(1, pred.n + 1):
        vol = float(pred.voxels[p]) * voxel_ml
        b = size_bin(vol, size_bins_ml)
        r, iou, dice = pred_to_ref.get(p, (None, None, None))
        by_bin[b]["pred"] += 1
        by_bin[b]["fp"] += r is None
        rows.append({"source": "predicted", "id": p, "volume_ml": vol, "size_bin": b,
                     "centroid_mm": centroids_p[p], "score": scores.get(p), "matched_id": r,
                     "iou": iou, "dice": dice, "outcome": "TP" if r is not None else "FP"})
    froc = None
    if probability is not None:
        froc = []
        for t in FROC_THRESHOLDS:
            keep = {p for p, s in scores.items() if s >= t}
            m = match(ref=ref, pred=pred, shared=shared, min_iou=min_iou, keep_pred=keep)
            froc.append((t, len(m), len(keep) - len(m)))
    return {"rows": rows, "tp": len(matched), "fn": ref.n - len(matched), "fp": pred.n - len(matched),
            "n_ref": ref.n, "n_pred": pred.n, "matched_dice": [d for _, _, d in matched.values()],
            "by_bin": by_bin, "froc": froc}


def _scores(pred: Instances, probability: np.ndarray | None) -> dict[int, float]:
    if probability is None or pred.n == 0:
        return {}
    from scipy import ndimage

    highest = ndimage.maximum(probability, labels=pred.labels, index=np.arange(1, pred.n + 1))
    return {i + 1: round(float(v), 4) for i, v in enumerate(np.atleast_1d(highest))}


def centroids_mm(inst: Instances, affine: np.ndarray) -> dict[int, list[float]]:
    """{id: centroid [x, y, z] in RAS+ mm} of each instance; ``affine`` (4, 4) voxel -> mm."""
    if inst.n == 0:
        return {}
    from scipy import ndimage

    centres = ndimage.center_of_mass(np.ones(inst.labels.shape, np.uint8), labels=inst.labels,
                                     index=np.arange(1, inst.n + 1))
    world = (affine[:3, :3] @ np.asarray(centres, float).T).T + affine[:3, 3]
    return {i + 1: [round(float(x), 2) for x in w] for i, w in enumerate(world)}
