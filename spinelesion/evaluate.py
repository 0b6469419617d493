"""Segmentation and measurement metrics against truth, on each scan's own grid.

Segmentation: Dice per class, lesion-wise sensitivity and false positives per scan, with the
definitions of :mod:`spinelesion.validation` (there on the training grid, here on the input
grid). Measurements: agreement of a predicted record with a truth record (design.md section 2):
compression flag, Bilsky grade, MSCC, vertebra count, and per vertebra destroyed fraction and
height loss, vertebrae paired by nearest body centroid.
"""

from __future__ import annotations

import numpy as np

from spinelesion.labels import NUM_CLASSES
from spinelesion.validation import case_stats, summarise

BILSKY_ORDER = ("0", "1a", "1b", "1c", "2", "3")


def segmentation_stats(*, pred: np.ndarray, truth: np.ndarray) -> dict:
    """Per-case counts for (X, Y, Z) predicted and truth label maps on the same grid."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} are on different grids")
    return case_stats(pred, truth, np.ones(NUM_CLASSES, dtype=bool))


def measurement_agreement(*, pred: dict, truth: dict) -> dict:
    """How a predicted measurement record agrees with the truth record of the same scan."""
    p_cord, t_cord = pred.get("cord") or {}, truth.get("cord") or {}
    out = {
        "n_vertebrae_pred": len(pred["vertebrae"]), "n_vertebrae_truth": len(truth["vertebrae"]),
        "compression_flag_pred": p_cord.get("compression_flag"), "compression_flag_truth": t_cord.get("compression_flag"),
        "bilsky_pred": p_cord.get("bilsky_grade"), "bilsky_truth": t_cord.get("bilsky_grade"),
        "mscc_pred": p_cord.get("mscc_pct"), "mscc_truth": t_cord.get("mscc_pct"),
    }
    out["bilsky_grades_off"] = _grades_off(out["bilsky_pred"], out["bilsky_truth"])
    destruction, height = [], []
    for tv in truth["vertebrae"]:
        pv = _nearest(tv, pred["vertebrae"])
        if pv is None:
            continue
        if pv.get("body_destruction_pct") is not None and tv.get("body_destruction_pct") is not None:
            destruction.append(abs(pv["body_destruction_pct"] - tv["body_destruction_pct"]))
        if pv.get("height_loss_pct") is not None and tv.get("height_loss_pct") is not None:
            height.append(abs(pv["height_loss_pct"] - tv["height_loss_pct"]))
    out["destruction_abs_err"] = destruction
    out["height_loss_abs_err"] = height
    return out


def summarise_measurements(rows: list[dict]) -> dict:
    """Pool :func:`measurement_agreement` rows into rates and error quantiles."""
    def q(values, p):
        return float(np.percentile(values, p)) if values else None

    bilsky = [r for r in rows if r["bilsky_truth"] is not None and r["bilsky_grades_off"] is not None]
    mscc = [abs(r["mscc_pred"] - r["mscc_truth"]) for r in rows
            if r["mscc_pred"] is not None and r["mscc_truth"] is not None]
    destruction = [e for r in rows for e in r["destruction_abs_err"]]
    height = [e for r in rows for e in r["height_loss_abs_err"]]
    return {
        "cases": len(rows),
        "vertebra_count_exact": sum(r["n_vertebrae_pred"] == r["n_vertebrae_truth"] for r in rows),
        "compression_flag_right": sum(r["compression_flag_pred"] == r["compression_flag_truth"] for r in rows),
        "bilsky_exact": sum(r["bilsky_grades_off"] == 0 for r in bilsky),
        "bilsky_within_one": sum(r["bilsky_grades_off"] <= 1 for r in bilsky),
        "bilsky_cases": len(bilsky),
        "mscc_abs_err_median": q(mscc, 50), "mscc_abs_err_max": max(mscc) if mscc else None,
        "destruction_abs_err_median": q(destruction, 50), "destruction_abs_err_p90": q(destruction, 90),
        "destruction_within_5": sum(e <= 5 for e in destruction), "destruction_n": len(destruction),
        "height_loss_abs_err_median": q(height, 50), "height_loss_abs_err_p90": q(height, 90),
        "height_loss_within_5": sum(e <= 5 for e in height), "height_loss_n": len(height),
    }


def summarise_segmentation(stats: list[dict]) -> dict:
    """Dice per class, lesion sensitivity and false positives per scan over many cases."""
    metrics = summarise(stats)
    metrics["cases"] = metrics.pop("val_cases")
    return metrics


def _grades_off(pred: str | None, truth: str | None) -> int | None:
    if pred is None or truth is None:
        return None if truth is None else len(BILSKY_ORDER)
    return abs(BILSKY_ORDER.index(pred) - BILSKY_ORDER.index(truth))


def _nearest(vertebra: dict, candidates: list[dict], max_mm: float = 15.0) -> dict | None:
    """The candidate whose body centroid is nearest (within ``max_mm``), or None."""
    if vertebra.get("centroid_mm") is None:
        return None
    best, best_d = None, max_mm
    for c in candidates:
        if c.get("centroid_mm") is None:
            continue
        d = float(np.linalg.norm(np.subtract(c["centroid_mm"], vertebra["centroid_mm"])))
        if d < best_d:
            best, best_d = c, d
    return best
