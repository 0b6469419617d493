"""``spinelesion train --config FILE [--set key.sub=value ...] [--resume]``."""

from __future__ import annotations

import argparse
import shlex
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML experiment file (see configs/README.md)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set optim.lr=3e-4 "
                             "--set data.sources.0.root=runs/phantoms_ct (repeatable)")
    parser.add_argument("--output", help="output folder (same as --set output_dir=...)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in the output folder from its resume.pt")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")


def run(args: argparse.Namespace) -> int:
    from spinelesion.config import load_config
    from spinelesion.train import train

    overrides = list(args.overrides) + ([f"output_dir={args.output}"] if args.output else [])
    config = load_config(args.config, overrides=overrides)
    command = "spinelesion train " + " ".join(shlex.quote(a) for a in sys.argv[1:] if a != "train")
    summary = train(config=config, resume=args.resume, device=args.device, command=command)
    if summary.get("rank", 0) == 0:
        best = summary["best_value"]
        print(f"done: {summary['epochs']} epochs in {summary['seconds'] / 60:.1f} min; best "
              f"{summary['metric']} {'n/a' if best is None else f'{best:.4f}'} at epoch "
              f"{summary['best_epoch']}; checkpoints in {summary['output_dir']}")
    return 0
