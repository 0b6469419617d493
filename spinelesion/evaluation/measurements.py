"""Measurement records (docs/contracts.md section 2) against truth records of the same scans.

Vertebrae are paired one-to-one by body centroid (``scipy.optimize.linear_sum_assignment`` on the
distances, pairs farther than ``max_mm`` apart dropped). Continuous figures (destroyed fraction,
height loss per vertebra; MSCC per case) are compared by bias (mean of predicted - true), limits
of agreement (bias ± 1.96 SD of the differences, Bland and Altman 1986) and mean absolute error;
ordinal grades (Genant per vertebra, Bilsky per case) by a confusion matrix and Cohen's linearly
weighted kappa; the compression flag by sensitivity and specificity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spinelesion.record_types import MeasurementRecord, VertebraRecord

#: Figures compared per paired vertebra: record key -> name in the outputs.
VERTEBRA_FIGURES = {"body_destruction_pct": "destroyed_fraction_pct", "height_loss_pct": "height_loss_pct"}
GENANT_GRADES = (0, 1, 2, 3)
#: Farthest two body centroids may lie apart and still be the same vertebra, mm.
PAIR_MAX_MM = 15.0


def pair_vertebrae(*, pred: Sequence[VertebraRecord], truth: list[dict], max_mm: float = PAIR_MAX_MM,
                   ) -> list[tuple[VertebraRecord, dict]]:
    """One-to-one pairs (predicted, true) of vertebrae with centroids at most ``max_mm`` apart,
    chosen to minimise the summed distance; in the truth's order. ``truth``: the truth record's
    vertebrae (JSON: a phantom's truth or a measured record)."""
    from scipy.optimize import linear_sum_assignment

    t = [v for v in truth if v.get("centroid_mm") is not None]
    if not pred or not t:
        return []
    d = np.linalg.norm(np.asarray([v["centroid_mm"] for v in t], float)[:, None, :]
                       - np.asarray([v.centroid_mm for v in pred], float)[None, :, :], axis=2)
    rows, cols = linear_sum_assignment(np.where(d <= max_mm, d, 1e9))
    return [(pred[j], t[i]) for i, j in sorted(zip(rows, cols)) if d[i, j] <= max_mm]


def compare_records(*, pred: MeasurementRecord, truth: dict, max_mm: float = PAIR_MAX_MM) -> dict:
    """Paired values of one case: the typed prediction against the truth (JSON: a phantom's truth
    record or a measured record, which share these fields).

    Returns:
        {"vertebrae": [{"level", "pred_<figure>", "truth_<figure>", "pred_genant", "truth_genant"}],
        "n_truth_vertebrae", "n_pred_vertebrae", "n_paired", "mscc_pct": (pred, truth),
        "bilsky": (pred, truth), "compression_flag": (pred, truth)}; None where a side has no value.
    """
    pairs = pair_vertebrae(pred=pred.vertebrae, truth=truth.get("vertebrae") or [], max_mm=max_mm)
    vertebrae = []
    for pv, tv in pairs:
        row = {"level": tv.get("level")}
        for key, name in VERTEBRA_FIGURES.items():
            row[f"pred_{name}"], row[f"truth_{name}"] = getattr(pv, key), tv.get(key)
        row["pred_genant"], row["truth_genant"] = pv.genant_grade, tv.get("genant_grade")
        vertebrae.append(row)
    tc = truth.get("cord") or {}
    return {"vertebrae": vertebrae, "n_truth_vertebrae": len(truth.get("vertebrae") or []),
            "n_pred_vertebrae": len(pred.vertebrae), "n_paired": len(pairs),
            "mscc_pct": (pred.cord.mscc_pct, tc.get("mscc_pct")),
            "bilsky": (pred.cord.bilsky_grade, tc.get("bilsky_grade")),
            "compression_flag": (pred.cord.compression_flag, tc.get("compression_flag"))}


def agreement(pairs) -> dict:
    """Bland-Altman agreement of (predicted, true) number pairs (None-containing pairs dropped).

    Returns:
        {"n", "bias", "sd", "loa_low", "loa_high", "mae"}: bias = mean(pred - true), sd its sample
        standard deviation (ddof 1), limits of agreement bias ± 1.96 sd, mae = mean |pred - true|;
        None where undefined (sd and limits need 2 pairs).
    """
    diffs = np.array([p - t for p, t in pairs if p is not None and t is not None], float)
    out = {"n": int(diffs.size), "bias": None, "sd": None, "loa_low": None, "loa_high": None, "mae": None}
    if diffs.size:
        out.update(bias=float(diffs.mean()), mae=float(np.abs(diffs).mean()))
    if diffs.size >= 2:
        sd = float(diffs.std(ddof=1))
        out.update(sd=sd, loa_low=out["bias"] - 1.96 * sd, loa_high=out["bias"] + 1.96 * sd)
    return out


def confusion_matrix(pairs, categories) -> list[list[int]]:
    """Counts[i][j] of true category i predicted as j over (predicted, true) pairs; pairs with a
    None or a value outside ``categories`` are dropped."""
    index = {c: i for i, c in enumerate(categories)}
    counts = [[0] * len(categories) for _ in categories]
    for p, t in pairs:
        if p in index and t in index:
            counts[index[t]][index[p]] += 1
    return counts


def weighted_kappa(matrix) -> float | None:
    """Cohen's kappa with linear weights w_ij = |i - j| / (k - 1) (Cohen 1968) of a k x k confusion
    matrix: 1 - sum(w * observed) / sum(w * expected); None when undefined (no pairs, or all pairs
    and all expected counts on one category)."""
    o = np.asarray(matrix, float)
    n = o.sum()
    k = o.shape[0]
    if n == 0 or k < 2:
        return None
    w = np.abs(np.subtract.outer(np.arange(k), np.arange(k))) / (k - 1)
    e = np.outer(o.sum(axis=1), o.sum(axis=0)) / n
    denominator = float((w * e).sum())
    if denominator == 0:
        return None
    return 1.0 - float((w * o).sum()) / denominator


def flag_rates(pairs) -> dict:
    """Sensitivity and specificity of a yes/no flag over (predicted, true) pairs (None dropped).

    Returns:
        {"tp", "fn", "tn", "fp", "sensitivity", "specificity"} (rates None without positives /
        negatives in the truth).
    """
    pairs = [(bool(p), bool(t)) for p, t in pairs if p is not None and t is not None]
    tp = sum(p and t for p, t in pairs)
    fn = sum((not p) and t for p, t in pairs)
    tn = sum((not p) and (not t) for p, t in pairs)
    fp = sum(p and (not t) for p, t in pairs)
    return {"tp": tp, "fn": fn, "tn": tn, "fp": fp,
            "sensitivity": tp / (tp + fn) if tp + fn else None,
            "specificity": tn / (tn + fp) if tn + fp else None}
