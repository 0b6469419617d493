"""Write the evaluation outputs: cases.csv, lesions.csv (and levels.csv / measurements.csv when
there are levels / truth records), summary.json, plots/*.png and evaluation.html.

All files are written atomically and are byte-identical for the same inputs and settings (sorted
cases, fixed rounding, seeded bootstrap, PNGs without a software/date stamp).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from spinelesion.io.atomic import atomic_path, write_text_atomic
from spinelesion.report.templating import render

CASE_COLUMNS = ("case", "group", "modality", "class", "ref_voxels", "pred_voxels", "ref_volume_ml", "pred_volume_ml",
                "volume_error_ml", "volume_error_pct", "dice", "nsd", "hd95_mm")
LESION_COLUMNS = ("case", "group", "source", "id", "volume_ml", "size_bin", "centroid_x_mm", "centroid_y_mm",
                  "centroid_z_mm", "score", "matched_id", "iou", "dice", "outcome")


def _cell(value, digits: int = 4):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}".rstrip("0").rstrip(".") if np.isfinite(value) else ""
    return value


def _write_csv(path: Path, columns, rows) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    write_text_atomic(path, buffer.getvalue())


def write_outputs(*, out_dir: Path, results: list[dict], summary: dict) -> None:
    """All outputs for the per-case ``results`` and their ``summary`` (pipeline.evaluate_folders)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(out_dir / "cases.csv", CASE_COLUMNS,
               ({"case": r["case"], "group": r["group"], "modality": r["modality"], **row}
                for r in results for row in r["class_rows"]))
    lesion_rows = []
    for r in results:
        for row in (r["lesions"] or {}).get("rows", []):
            x, y, z = row["centroid_mm"]
            lesion_rows.append({"case": r["case"], "group": r["group"], **row,
                                "centroid_x_mm": x, "centroid_y_mm": y, "centroid_z_mm": z})
    _write_csv(out_dir / "lesions.csv", LESION_COLUMNS, lesion_rows)
    if any(r["levels"] for r in results):
        _write_csv(out_dir / "levels.csv", ("case", "group", "level", "detected", "identified", "pred_level", "distance_mm"),
                   ({"case": r["case"], "group": r["group"], **row} for r in results for row in r["levels"] or []))
    if any(r["measurements"] for r in results):
        rows = []
        for r in results:
            m = r["measurements"]
            if m is None:
                continue
            for v in m["vertebrae"]:
                rows.append({"case": r["case"], "group": r["group"], "item": "vertebra", **v})
            rows.append({"case": r["case"], "group": r["group"], "item": "cord",
                         "pred_mscc_pct": m["mscc_pct"][0], "truth_mscc_pct": m["mscc_pct"][1],
                         "pred_bilsky": m["bilsky"][0], "truth_bilsky": m["bilsky"][1],
                         "pred_compression_flag": m["compression_flag"][0],
                         "truth_compression_flag": m["compression_flag"][1]})
        _write_csv(out_dir / "measurements.csv",
                   ("case", "group", "item", "level", "pred_destroyed_fraction_pct", "truth_destroyed_fraction_pct",
                    "pred_height_loss_pct", "truth_height_loss_pct", "pred_genant", "truth_genant", "pred_mscc_pct",
                    "truth_mscc_pct", "pred_bilsky", "truth_bilsky", "pred_compression_flag", "truth_compression_flag"),
                   rows)
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=1, sort_keys=False) + "\n")
    plots = write_plots(out_dir=out_dir, results=results, summary=summary)
    write_text_atomic(out_dir / "evaluation.html", render_html(results=results, summary=summary, plots=plots))


# ---------------------------------------------------------------------------------------- plots

def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def write_plots(*, out_dir: Path, results: list[dict], summary: dict) -> list[tuple[str, str]]:
    """PNG plots under OUT/plots; returns [(relative path, caption)]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = []
    classes = summary["settings"]["scored_classes"]
    data = [[row["dice"] for r in results for row in r["class_rows"] if row["class"] == c and row["dice"] is not None]
            for c in classes]
    if any(data):
        fig, ax = plt.subplots(figsize=(1.3 * len(classes) + 2.5, 4))
        shown = [(c, d) for c, d in zip(classes, data) if d]
        ax.boxplot([d for _, d in shown], showmeans=True)
        for i, (_, d) in enumerate(shown, start=1):
            ax.scatter(np.full(len(d), i) + np.linspace(-0.12, 0.12, len(d)), d, s=12, color="#1f77b4", alpha=0.6, zorder=3)
        ax.set_xticks(range(1, len(shown) + 1), [c.replace("_", "\n") for c, _ in shown])
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("Dice per case")
        ax.set_title("Dice per case and class", fontsize=11)
        fig.tight_layout()
        _save(fig, out_dir / "plots" / "dice_boxplot.png")
        plots.append(("plots/dice_boxplot.png", "Dice per case and class (box: quartiles, triangle: mean, dots: cases)"))
    lesions = summary["all"].get("lesions") or {}
    if "froc" in lesions and lesions["froc"]["sensitivity"][0] is not None:
        froc = lesions["froc"]
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot(froc["fp_per_scan"], froc["sensitivity"], marker=".", drawstyle="steps-post")
        ax.set_xscale("symlog", linthresh=0.125)
        ax.set_xlabel("false positives per scan")
        ax.set_ylabel("lesion sensitivity")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title("FROC over the lesion probability threshold")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        _save(fig, out_dir / "plots" / "froc.png")
        plots.append(("plots/froc.png", "FROC: sensitivity against false positives per scan"))
    measurements = summary["all"].get("measurements")
    if measurements:
        for name, label in (("destroyed_fraction_pct", "destroyed fraction (%)"), ("height_loss_pct", "height loss (%)"),
                            ("mscc_pct", "MSCC (%)")):
            entry = measurements[name]
            if not entry["pairs"]:
                continue
            pairs = np.asarray(entry["pairs"], float)
            mean, diff = pairs.mean(axis=1), pairs[:, 0] - pairs[:, 1]
            fig, ax = plt.subplots(figsize=(5, 4))
            ax.scatter(mean, diff, s=14)
            for key, style in (("bias", "-"), ("loa_low", "--"), ("loa_high", "--")):
                value = entry[key]["value"]
                if value is not None:
                    ax.axhline(value, color="k", linestyle=style, linewidth=1)
                    ax.annotate(f"{key} {value:.1f}", (1.0, value), xycoords=("axes fraction", "data"), ha="right",
                                va="bottom", fontsize=8)
            ax.set_xlabel(f"mean of predicted and true {label}")
            ax.set_ylabel(f"predicted - true {label}")
            ax.set_title(f"Bland-Altman: {label}")
            ax.grid(alpha=0.3)
            fig.tight_layout()
            _save(fig, out_dir / "plots" / f"bland_altman_{name}.png")
            plots.append((f"plots/bland_altman_{name}.png", f"Bland-Altman plot of {label}"))
        for name, label in (("genant", "Genant grade"), ("bilsky", "Bilsky grade")):
            entry = measurements[name]
            if not entry["n"]:
                continue
            m = np.asarray(entry["matrix"])
            fig, ax = plt.subplots(figsize=(4.2, 3.8))
            ax.imshow(m, cmap="Blues")
            for (i, j), v in np.ndenumerate(m):
                ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black")
            ticks = range(len(entry["categories"]))
            ax.set_xticks(ticks, entry["categories"])
            ax.set_yticks(ticks, entry["categories"])
            ax.set_xlabel(f"predicted {label}")
            ax.set_ylabel(f"true {label}")
            kappa = entry["weighted_kappa"]["value"]
            ax.set_title(f"{label}: linear weighted kappa {'-' if kappa is None else f'{kappa:.2f}'}")
            fig.tight_layout()
            _save(fig, out_dir / "plots" / f"confusion_{name}.png")
            plots.append((f"plots/confusion_{name}.png", f"Confusion matrix of the {label}"))
    return plots


# ----------------------------------------------------------------------------------------- html

def _fig(f: dict | None, digits: int = 3) -> str:
    """'value [low, high]' of a summary figure."""
    if not f or f.get("value") is None:
        return "–"
    low, high = f["ci95"]
    ci = "" if low is None else f" [{low:.{digits}f}, {high:.{digits}f}]"
    return f"{f['value']:.{digits}f}{ci}"


def _group_view(title: str, s: dict, suffix: str) -> dict:
    """The rows of one group's tables (all cases or one group); the headers are in the template."""
    view = {"title": title, "suffix": suffix, "n_cases": s["n_cases"], "lesions": None, "levels": None,
            "measurements": None,
            "segmentation": [[c, e["dice"]["n"], _fig(e["dice"]), _fig(e["dice_median"]), _fig(e["nsd"]),
                              _fig(e["hd95_mm"], 1), e["hd95_undefined"], _fig(e["volume_error_ml"], 2),
                              _fig(e["volume_error_pct"], 1)] for c, e in s["segmentation"].items()]}
    les = s.get("lesions")
    if les:
        froc = None
        if "froc" in les and les["reference_lesions"]:
            at = les["froc"]["sensitivity_at_fp"]
            froc = {"fp_per_scan": list(at), "rows": [["sensitivity", *(_fig(f) for f in at.values()),
                                                       _fig(les["froc"]["cpm"])]]}
        view["lesions"] = {
            "totals": [[les["reference_lesions"], les["predicted_lesions"], les["tp"], les["fn"], les["fp"],
                        _fig(les["sensitivity"]), _fig(les["fp_per_scan"], 2), _fig(les["precision"]),
                        _fig(les["lesion_dice"])]],
            "sizes": [[b, e["reference_lesions"], e["tp"], _fig(e["sensitivity"]), e["predicted_lesions"], e["fp"],
                       _fig(e["fp_per_scan"], 2)] for b, e in les["by_size"].items()],
            "froc": froc}
    lev = s.get("vertebra_levels")
    if lev:
        view["levels"] = ([["all", _fig(lev["detection_rate"]), _fig(lev["identification_rate"])]]
                          + [[k, _fig(e["detection_rate"]), _fig(e["identification_rate"])]
                             for k, e in lev["per_level"].items()])
    m = s.get("measurements")
    if m:
        flag = m["compression_flag"]
        view["measurements"] = {
            "paired_vertebrae": m["paired_vertebrae"], "truth_vertebrae": m["truth_vertebrae"],
            "agreement": [[k, m[k]["n"], *(_fig(m[k][x], 2) for x in ("bias", "sd", "loa_low", "loa_high", "mae"))]
                          for k in ("destroyed_fraction_pct", "height_loss_pct", "mscc_pct")],
            "grades": [[k, m[k]["n"], _fig(m[k]["weighted_kappa"]), _fig(m[k]["exact_agreement"])]
                       for k in ("genant", "bilsky")],
            "flag": [["", *(flag[k] for k in ("tp", "fn", "tn", "fp")), _fig(flag["sensitivity"]),
                      _fig(flag["specificity"])]],
            "confusion": [{"grade": k, "categories": m[k]["categories"],
                           "rows": [[c, *row] for c, row in zip(m[k]["categories"], m[k]["matrix"])]}
                          for k in ("genant", "bilsky")]}
    return view


def render_html(*, results: list[dict], summary: dict, plots: list[tuple[str, str]]) -> str:
    """The evaluation page: settings, summary tables per group, plots, Dice per case.

    The markup is ``spinelesion/report/templates/evaluation.html.j2`` (autoescaped); this function
    prepares the values it shows."""
    st = summary["settings"]
    classes = st["scored_classes"]
    rows = []
    for r in results:
        by_class = {row["class"]: row for row in r["class_rows"]}
        les = r["lesions"]
        rows.append([r["case"], r["group"], *(_cell((by_class.get(c) or {}).get("dice"), 3) if c in by_class else "not scored" for c in classes),
                     *(() if les is None else (les["n_ref"], les["tp"], les["fp"]))])
    header = ["case", "group", *(f"Dice {c}" for c in classes)]
    if "lesion" in classes:
        header += ["ref lesions", "TP", "FP"]
    settings = {"pred": st["pred"], "ref": st["ref"], "ref_map": st["ref_map"], "classes": classes,
                "tolerance_mm": f"{st['surface_tolerance_mm']:g}",
                "min_iou": f"{st['lesion_match']['min_iou_exclusive']:g}",
                "n_resamples": st["bootstrap"]["n_resamples"], "seed": st["bootstrap"]["seed"]}
    groups = [_group_view("All cases", summary["all"], "")]
    groups += [_group_view(f"Group {g}", s, f"-{g}") for g, s in (summary.get("groups") or {}).items()]
    return render("evaluation.html.j2", n_cases=len(results), settings=settings, command=summary.get("command"),
                  skipped_predictions=summary.get("skipped_predictions"), groups=groups,
                  plots=[{"src": src, "caption": cap} for src, cap in plots],
                  cases={"header": header, "rows": rows})
