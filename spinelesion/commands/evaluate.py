"""``spinelesion evaluate --pred PRED --ref REF --out OUT``: score predictions against references."""

from __future__ import annotations

import argparse
import shlex
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, help="an infer output folder (OUT/<case>/labels.nii.gz) or a folder of label maps")
    parser.add_argument("--ref", required=True, help="folder of reference label maps, paired with --pred by case name")
    parser.add_argument("--ref-map", default="schema",
                        help="label map of the references: schema (default), totalsegmentator, vertebra, cord, or a "
                             "JSON mapping file; only the classes it names are scored")
    parser.add_argument("--pred-map", default="schema", help="label map of the predictions (default schema)")
    parser.add_argument("--annotates", default="", metavar="CLASS[,CLASS]",
                        help="classes the references also annotate although their map does not name them (taken as "
                             "empty there), e.g. lesion for scans of healthy subjects")
    parser.add_argument("--truth", help="folder of truth records <case>.json (phantom truth or records measured on "
                                        "reference labels): measurements are compared as well")
    parser.add_argument("--by", help="also summarise per group: modality, dataset (first folder of the case path) or a "
                                     "CSV file with columns case,group")
    parser.add_argument("--tolerance-mm", type=float, default=2.0, help="normalised surface Dice tolerance (default 2 mm)")
    parser.add_argument("--min-iou", type=float, default=0.0,
                        help="lesions match when their IoU exceeds this (default 0: any shared voxel)")
    parser.add_argument("--size-bins-ml", default="0.5,5", help="lesion size bin edges in ml (default 0.5,5)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000; 0: no intervals)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--only-ref-cases", action="store_true",
                        help="skip predictions that have no reference instead of stopping with an error")
    parser.add_argument("--out", required=True, help="output folder: cases.csv, lesions.csv, summary.json, evaluation.html")


def run(args: argparse.Namespace) -> int:
    from spinelesion.errors import SpinelesionError
    from spinelesion.evaluation import evaluate_folders

    try:
        bins = tuple(float(x) for x in args.size_bins_ml.split(",") if x.strip())
    except ValueError:
        raise SpinelesionError(f"--size-bins-ml {args.size_bins_ml!r}: comma-separated numbers expected") from None
    if not bins or list(bins) != sorted(bins):
        raise SpinelesionError(f"--size-bins-ml {args.size_bins_ml!r}: increasing numbers expected")
    command = "spinelesion evaluate " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["evaluate"] else None
    summary = evaluate_folders(pred_dir=args.pred, ref_dir=args.ref, out_dir=args.out, ref_map=args.ref_map,
                               pred_map=args.pred_map, truth_dir=args.truth, by=args.by,
                               annotates=[c.strip() for c in args.annotates.split(",") if c.strip()],
                               tolerance_mm=args.tolerance_mm, min_iou=args.min_iou, size_bins_ml=bins,
                               n_resamples=args.bootstrap, seed=args.seed, only_ref_cases=args.only_ref_cases,
                               command=command)
    print(format_summary(summary))
    print(f"written: {args.out}/cases.csv, lesions.csv, summary.json, evaluation.html")
    return 0


def format_summary(summary: dict) -> str:
    """A short text table: per class mean Dice / NSD / HD95 with intervals, then lesions."""
    def f(x, d=3):
        if x["value"] is None:
            return "-"
        lo, hi = x["ci95"]
        return f"{x['value']:.{d}f}" + ("" if lo is None else f" [{lo:.{d}f}, {hi:.{d}f}]")

    s = summary["all"]
    lines = [f"{s['n_cases']} cases", f"{'class':<20}{'n':>4}  {'Dice':<22}{'NSD':<22}{'HD95 mm':<22}"]
    for name, e in s["segmentation"].items():
        lines.append(f"{name:<20}{e['dice']['n']:>4}  {f(e['dice']):<22}{f(e['nsd']):<22}{f(e['hd95_mm'], 1):<22}")
    if "lesions" in s:
        les = s["lesions"]
        lines.append(f"lesions: {les['reference_lesions']} reference, {les['predicted_lesions']} predicted, "
                     f"sensitivity {f(les['sensitivity'])}, FP per scan {f(les['fp_per_scan'], 2)}")
    if "vertebra_levels" in s:
        lev = s["vertebra_levels"]
        lines.append(f"vertebra levels: {lev['levels']}, detected {f(lev['detection_rate'])}, "
                     f"identified {f(lev['identification_rate'])}")
    return "\n".join(lines)
