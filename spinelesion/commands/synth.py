"""``spinelesion synth OUT --n N --modality ct|t1|t2 --seed S``: write a phantom dataset."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (imagesTr/, labelsTr/, truth/, params/, dataset.json)")
    parser.add_argument("--n", type=int, default=20, help="number of cases (default 20)")
    parser.add_argument("--modality", choices=["ct", "t1", "t2"], default="ct", help="image contrast (default ct)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same files")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="fraction of cases in the validation split (default 0.2)")
    parser.add_argument("--max-shape", type=int, default=160,
                        help="at most this many voxels along any axis (default 160)")
    parser.add_argument("--context", action="store_true",
                        help="draw ribs, pelvis, organs, hardware and benign mimics too, levels C1 (with the "
                             "skull base) to S1 (with the sacrum), and write tissue maps (tissueTr/) for "
                             "training on synthesised images")
    parser.add_argument("--workers", type=int, default=1,
                        help="cases made at once in separate processes (default 1; the files do not depend on it)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from spinelesion.data.phantoms import write_dataset

    path = write_dataset(args.out, n=args.n, modality=args.modality, seed=args.seed,
                         val_fraction=args.val_fraction, progress=not args.no_progress,
                         shape_limit_vox=args.max_shape, context=args.context, workers=args.workers)
    print(f"wrote {args.n} {args.modality} phantoms: {path}")
    return 0
