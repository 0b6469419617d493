"""Pool per-case results into the summary figures, each with its seeded 95 % bootstrap interval.

Every figure is ``{"value", "ci95": [low, high], "n"}`` (:func:`spinelesion.evaluation.bootstrap.figure`),
resampling cases. Per-case results are the dicts :func:`spinelesion.evaluation.pipeline.evaluate_case`
returns.
"""

from __future__ import annotations

import numpy as np

from spinelesion.evaluation.bootstrap import figure
from spinelesion.evaluation.lesions import FROC_THRESHOLDS, bin_names
from spinelesion.evaluation.measurements import (GENANT_GRADES, VERTEBRA_FIGURES, agreement,
                                                 confusion_matrix, flag_rates, weighted_kappa)
from spinelesion.vocabulary import BILSKY_GRADES

#: Per-class figures: name in cases.csv -> how the cases are pooled.
CLASS_FIGURES = ("dice", "nsd", "hd95_mm", "volume_error_ml", "volume_error_pct")
#: False positives per scan at which the FROC sensitivity is read (the CPM points of van Ginneken et al. 2010).
FROC_FP_POINTS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def summarise(results: list[dict], *, classes: list[str], size_bins_ml, n_resamples: int, seed: int) -> dict:
    """Summary of one group of cases: segmentation, lesions, vertebra levels, measurements."""
    boot = {"n_resamples": n_resamples, "seed": seed}
    out = {"n_cases": len(results), "segmentation": _segmentation(results, classes, boot)}
    lesion_cases = [r["lesions"] for r in results if r.get("lesions") is not None]
    if lesion_cases:
        out["lesions"] = _lesions(lesion_cases, size_bins_ml, boot)
    level_cases = [r["levels"] for r in results if r.get("levels")]
    if level_cases:
        out["vertebra_levels"] = _levels(level_cases, boot)
    measured = [r["measurements"] for r in results if r.get("measurements") is not None]
    if measured:
        out["measurements"] = _measurements(measured, boot)
    return out


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _segmentation(results, classes, boot) -> dict:
    out = {}
    for name in classes:
        rows = [row for r in results for row in r["class_rows"] if row["class"] == name]
        entry = {"cases": len(rows)}
        for key in CLASS_FIGURES:
            defined = [row for row in rows if row[key] is not None]
            entry[key] = figure(units=defined, statistic=lambda u, k=key: _mean(x[k] for x in u), **boot)
            if key == "dice":
                entry["dice_median"] = figure(units=defined, statistic=lambda u: float(np.median([x["dice"] for x in u]))
                                              if u else None, **boot)
            if key == "hd95_mm":
                entry["hd95_undefined"] = sum(row["hd95_mm"] is None and row["dice"] is not None for row in rows)
        out[name] = entry
    return out


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _lesions(cases: list[dict], size_bins_ml, boot) -> dict:
    out = {"cases": len(cases), "reference_lesions": sum(c["n_ref"] for c in cases),
           "predicted_lesions": sum(c["n_pred"] for c in cases),
           "tp": sum(c["tp"] for c in cases), "fn": sum(c["fn"] for c in cases), "fp": sum(c["fp"] for c in cases)}
    out["sensitivity"] = figure(units=cases, statistic=lambda u: _ratio(sum(c["tp"] for c in u), sum(c["n_ref"] for c in u)),
                                n=out["reference_lesions"], **boot)
    out["fp_per_scan"] = figure(units=cases, statistic=lambda u: _ratio(sum(c["fp"] for c in u), len(u)), **boot)
    out["precision"] = figure(units=cases, statistic=lambda u: _ratio(sum(c["tp"] for c in u), sum(c["n_pred"] for c in u)),
                              n=out["predicted_lesions"], **boot)
    out["lesion_dice"] = figure(units=cases, statistic=lambda u: _mean(d for c in u for d in c["matched_dice"]),
                                n=out["tp"], **boot)
    by_size = {}
    for b in bin_names(size_bins_ml):
        by_size[b] = {
            "reference_lesions": sum(c["by_bin"][b]["ref"] for c in cases),
            "tp": sum(c["by_bin"][b]["tp"] for c in cases),
            "predicted_lesions": sum(c["by_bin"][b]["pred"] for c in cases),
            "fp": sum(c["by_bin"][b]["fp"] for c in cases),
            "sensitivity": figure(units=cases, statistic=lambda u, b=b: _ratio(sum(c["by_bin"][b]["tp"] for c in u),
                                                                               sum(c["by_bin"][b]["ref"] for c in u)),
                                  n=sum(c["by_bin"][b]["ref"] for c in cases), **boot),
            "fp_per_scan": figure(units=cases, statistic=lambda u, b=b: _ratio(sum(c["by_bin"][b]["fp"] for c in u), len(u)),
                                  **boot)}
    out["by_size"] = by_size
    froc_cases = [c for c in cases if c["froc"] is not None]
    if froc_cases and len(froc_cases) == len(cases):
        curve = _froc_curve(froc_cases)
        out["froc"] = {"thresholds": list(FROC_THRESHOLDS), "sensitivity": curve[0], "fp_per_scan": curve[1],
                       "sensitivity_at_fp": {f"{f:g}": figure(units=froc_cases, statistic=lambda u, f=f: _sens_at(u, f), **boot)
                                             for f in FROC_FP_POINTS},
                       "cpm": figure(units=froc_cases, statistic=lambda u: _mean(_sens_at(u, f) for f in FROC_FP_POINTS),
                                     **boot)}
    return out


def _froc_curve(cases) -> tuple[list, list]:
    n_ref = sum(c["n_ref"] for c in cases)
    tp = np.sum([[t[1] for t in c["froc"]] for c in cases], axis=0)
    fp = np.sum([[t[2] for t in c["froc"]] for c in cases], axis=0)
    sens = [None if not n_ref else round(float(x) / n_ref, 4) for x in tp]
    return sens, [round(float(x) / len(cases), 4) for x in fp]


def _sens_at(cases, fp_per_scan: float) -> float | None:
    """Highest sensitivity among the thresholds whose false positives per scan are at most ``fp_per_scan``."""
    sens, fps = _froc_curve(cases)
    if sens[0] is None:
        return None
    ok = [s for s, f in zip(sens, fps) if f <= fp_per_scan]
    return max(ok) if ok else 0.0


def _levels(cases: list[list[dict]], boot) -> dict:
    rate = lambda u, key: _ratio(sum(r[key] for c in u for r in c), sum(len(c) for c in u))  # noqa: E731
    out = {"cases": len(cases), "levels": sum(len(c) for c in cases),
           "detection_rate": figure(units=cases, statistic=lambda u: rate(u, "detected"), n=sum(len(c) for c in cases), **boot),
           "identification_rate": figure(units=cases, statistic=lambda u: rate(u, "identified"),
                                         n=sum(len(c) for c in cases), **boot)}
    names = sorted({r["level"] for c in cases for r in c}, key=_level_order)
    per_level = {}
    for name in names:
        having = [[r for r in c if r["level"] == name] for c in cases]
        having = [c for c in having if c]
        per_level[name] = {"detection_rate": figure(units=having, statistic=lambda u: rate(u, "detected"), **boot),
                           "identification_rate": figure(units=having, statistic=lambda u: rate(u, "identified"), **boot)}
    out["per_level"] = per_level
    return out


def _level_order(name: str) -> tuple:
    order = {"C": 0, "T": 1, "L": 2, "S": 3}
    try:
        return (order.get(name[0], 9), int(name[1:]), name)
    except ValueError:
        return (9, 0, name)


def _measurements(cases: list[dict], boot) -> dict:
    out = {"cases": len(cases), "truth_vertebrae": sum(c["n_truth_vertebrae"] for c in cases),
           "paired_vertebrae": sum(c["n_paired"] for c in cases)}
    for name in VERTEBRA_FIGURES.values():
        pool = lambda u, name=name: [(v[f"pred_{name}"], v[f"truth_{name}"]) for c in u for v in c["vertebrae"]]  # noqa: E731
        out[name] = _agreement_figures(cases, pool, boot)
    out["mscc_pct"] = _agreement_figures(cases, lambda u: [c["mscc_pct"] for c in u], boot)
    for name, key, cats in (("genant", None, GENANT_GRADES), ("bilsky", "bilsky", BILSKY_GRADES)):
        if key is None:
            pool = lambda u: [(v["pred_genant"], v["truth_genant"]) for c in u for v in c["vertebrae"]]  # noqa: E731
        else:
            pool = lambda u, key=key: [c[key] for c in u]  # noqa: E731
        matrix = confusion_matrix(pool(cases), cats)
        out[name] = {"categories": [str(c) for c in cats], "matrix": matrix, "n": int(np.sum(matrix)),
                     "weighted_kappa": figure(units=cases, statistic=lambda u, pool=pool, cats=cats:
                                              weighted_kappa(confusion_matrix(pool(u), cats)), n=int(np.sum(matrix)), **boot),
                     "exact_agreement": figure(units=cases, statistic=lambda u, pool=pool, cats=cats:
                                               _diagonal(confusion_matrix(pool(u), cats)), n=int(np.sum(matrix)), **boot)}
    flags = lambda u: [c["compression_flag"] for c in u]  # noqa: E731
    counts = flag_rates(flags(cases))
    out["compression_flag"] = {**{k: counts[k] for k in ("tp", "fn", "tn", "fp")},
                               "sensitivity": figure(units=cases, statistic=lambda u: flag_rates(flags(u))["sensitivity"],
                                                     n=counts["tp"] + counts["fn"], **boot),
                               "specificity": figure(units=cases, statistic=lambda u: flag_rates(flags(u))["specificity"],
                                                     n=counts["tn"] + counts["fp"], **boot)}
    return out


def _diagonal(matrix) -> float | None:
    m = np.asarray(matrix)
    return float(np.trace(m) / m.sum()) if m.sum() else None


def _agreement_figures(cases, pool, boot) -> dict:
    pairs = [(p, t) for p, t in pool(cases) if p is not None and t is not None]
    out = {"n": len(pairs), "pairs": [[p, t] for p, t in pairs]}
    for key in ("bias", "sd", "loa_low", "loa_high", "mae"):
        out[key] = figure(units=cases, statistic=lambda u, key=key: agreement(pool(u))[key], n=len(pairs), **boot)
    return out
