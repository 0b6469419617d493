"""``spinelesion infer INPUT --out OUT``: segment and measure every scan found under INPUT."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="a scan file, a DICOM series folder, or a folder tree of scans")
    parser.add_argument("--out", required=True, help="output folder (one sub-folder per scan + run report)")
    parser.add_argument("--model", help="checkpoint (.safetensors) or folder of them; default: the shipped "
                                        "synthesis-trained model (spinelesion/models/MODEL_CARD.md)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--settings", metavar="YAML",
                        help="inference and measurement settings: a YAML file with sections 'inference:' "
                             "(overlap, tta, spine_margin_mm, canal_fill_min_probability, ct_bone_reach_mm, ...; "
                             "every key with its default: configs/infer.yaml) and 'measure:' (any MeasureSettings "
                             "key, e.g. min_lesion_mm3); --tta and --overlap override it")
    parser.add_argument("--tta", action="store_true",
                        help="mirror test-time augmentation along the model's training flips "
                             "(default model: left-right, 2x network time)")
    parser.add_argument("--overlap", type=float, default=None,
                        help="sliding-window overlap in [0, 1) (default 0.5)")
    parser.add_argument("--save-probabilities", action="store_true",
                        help="also write probabilities.nii.gz (X, Y, Z, class), 0..1 stored as uint8")
    parser.add_argument("--no-overlays", action="store_true",
                        help="skip the PNG overlays and the interactive viewer (viewer_image.nii.gz, viewer.html)")
    parser.add_argument("--no-viewer", action="store_true",
                        help="skip the interactive viewer only (its image copy costs ~1-2 s and tens of MB "
                             "per 512x512x600 CT)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--profile", action="store_true",
                        help="print where the time went: seconds per stage, summed over the scans of this run "
                             "(also in run.json, seconds_by_stage)")
    parser.add_argument("--include", action="append", default=[], metavar="GLOB",
                        help="only inputs whose path under INPUT (or a folder/file name in it) matches, "
                             "e.g. --include 'imagesTr' or --include '*_t2.nii.gz' (repeatable)")
    parser.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                        help="leave out inputs matching, e.g. --exclude '*_seg*' --exclude labelsTr (repeatable)")
    parser.add_argument("--lowest-level", default=None, metavar="LEVEL",
                        help="level of every scan's lowest vertebra (e.g. L5): levels are named by counting up, "
                             "as in `spinelesion measure` (default: counted from S1 or C2 where the labels show "
                             "either end of the column, else unnamed v0, v1, ...; record: column.level_naming)")
    parser.add_argument("--finish-workers", type=_workers, default=None, metavar="N|auto",
                        help="threads measuring and writing finished cases while the network runs on the "
                             "next; each holds one more scan in memory (default auto: 0 on CPU, where "
                             "it gains nothing; on a GPU one per 4 CPU cores, at most 4)")


def run(args: argparse.Namespace) -> int:
    from spinelesion.inference.settings import load_run_settings
    from spinelesion.pipeline.batch import run_batch

    overrides = {"tta": True} if args.tta else {}
    if args.overlap is not None:
        overrides["overlap"] = args.overlap
    settings, measure_settings = load_run_settings(args.settings, overrides=overrides)
    result = run_batch(input_path=args.input, out_dir=args.out, model=args.model, device=args.device,
                       settings=settings, measure_settings=measure_settings,
                       save_probabilities=args.save_probabilities,
                       overlays=not args.no_overlays, viewer=not args.no_viewer,
                       progress=not args.quiet,
                       finish_workers=args.finish_workers, include=args.include, exclude=args.exclude,
                       lowest_level=args.lowest_level)
    if result.report is None:  # another rank of a torchrun job writes the run's summary
        return result.exit_code
    for case, note in result.notes:
        print(f"skipped: {case}: {note}", file=sys.stderr)
    for case, status, reason in result.problems:
        print(f"{status}: {case}: {reason}", file=sys.stderr)
    if result.n_ok and result.demonstration_models:
        from spinelesion.report.html import DEMONSTRATION_WARNING

        print(f"note: {DEMONSTRATION_WARNING}", file=sys.stderr)
    print(f"{result.n_ok} ok, {result.n_failed} failed, {result.n_partial} partial, "
          f"{result.n_not_scans} skipped (segmentations, not scans), {result.n_skipped} already done; "
          f"report: {result.report}")
    if result.n_ok and not (args.no_overlays or args.no_viewer):
        print(f"interactive viewer: spinelesion review {result.out_dir}")
    if args.profile:
        print(stage_profile(result.out_dir / "run.json"))
    if result.problems:
        print("rerunning the same command resumes: finished scans are kept, the failed and partial ones "
              "are redone", file=sys.stderr)
    return result.exit_code


def _workers(text: str) -> int | None:
    """``--finish-workers`` value: None for "auto", else a count of 0 or more."""
    if text == "auto":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"'auto' or a count of 0 or more, not {text!r}")
    return int(text)


def stage_profile(run_json) -> str:
    """A table of seconds per stage (summed over the run's cases) from a run.json, with shares of the total."""
    import json

    info = json.loads(run_json.read_text())
    stages = dict(info.get("seconds_by_stage") or {})
    measured = sum(v for k, v in stages.items() if k != "total")
    total = stages.pop("total", None) or measured
    n = max(int(info.get("n_ok", 0)) + int(info.get("n_partial", 0)), 1)
    rows = list(stages.items())
    if total - measured > 0.005:
        rows.append(("other", total - measured))
    lines = [f"profile ({n} scan{'s' if n > 1 else ''} processed, seconds summed over them):"]
    for stage, seconds in rows:
        share = 100.0 * seconds / total if total else 0.0
        lines.append(f"  {stage:<12}{seconds:9.2f} s {share:5.1f} %   ({seconds / n:.2f} s per scan)")
    if total - measured > 0.005:
        lines.append("  (other: loading the model, waiting for a prefetched scan, thread hand-over)")
    lines.append(f"  {'total':<12}{total:9.2f} s          ({total / n:.2f} s per scan; wall "
                 f"{info.get('seconds_total', 0):.1f} s)")
    return "\n".join(lines)
