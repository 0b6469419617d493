"""``spinelesion infer INPUT --out OUT``: segment and measure every scan found under INPUT."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="a scan file, a DICOM series folder, or a folder tree of scans")
    parser.add_argument("--out", required=True, help="output folder (one sub-folder per scan + run report)")
    parser.add_argument("--model", help="checkpoint (.safetensors) or folder of them; default: the shipped "
                                        "phantom-trained demonstration models")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--tta", action="store_true", help="mirror test-time augmentation (4x network time)")
    parser.add_argument("--save-probabilities", action="store_true",
                        help="also write probabilities.nii.gz (X, Y, Z, class), 0..1 stored as uint8")
    parser.add_argument("--no-overlays", action="store_true", help="skip the PNG overlays")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--finish-workers", type=int, default=0, metavar="N",
                        help="threads measuring and writing finished cases while the network runs on the "
                             "next (default 0: one case at a time; meant for a GPU machine with idle CPU "
                             "cores; on a 2-core CPU it gained nothing and held one more scan in memory)")


def run(args: argparse.Namespace) -> int:
    from spinelesion.errors import ConfigError
    from spinelesion.inference.batch import run_batch

    if args.finish_workers < 0:
        raise ConfigError(f"--finish-workers must be 0 or more, got {args.finish_workers}")
    result = run_batch(input_path=args.input, out_dir=args.out, model=args.model, device=args.device,
                       tta=args.tta, save_probabilities=args.save_probabilities,
                       overlays=not args.no_overlays, progress=not args.quiet,
                       finish_workers=args.finish_workers)
    if result.report is not None:
        print(f"{result.n_ok} ok, {result.n_failed} failed, {result.n_skipped} already done; "
              f"report: {result.report}")
    return result.exit_code
