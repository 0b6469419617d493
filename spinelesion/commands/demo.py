"""``spinelesion demo``: phantoms -> default model -> measurements -> report, in one command."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="spinelesion-demo", help="output folder (default: ./spinelesion-demo)")
    parser.add_argument("--n-ct", type=int, default=2, help="CT phantoms to make (default 2)")
    parser.add_argument("--n-mr", type=int, default=2, help="MR phantoms to make, T1 and T2 alternating (default 2)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))


def run(args: argparse.Namespace) -> int:
    from spinelesion.demo import run_demo

    report = run_demo(out_dir=args.out, n_ct=args.n_ct, n_mr=args.n_mr, seed=args.seed, device=args.device)
    print(f"report: {report}")
    print(f"interactive viewer: spinelesion review {report.parent}")
    return 0
