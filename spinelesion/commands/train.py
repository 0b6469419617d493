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
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="auto (CUDA when available), cpu or cuda")


def run(args: argparse.Namespace) -> int:
    from spinelesion.training.config import load_config
    from spinelesion.training.loop import train

    overrides = list(args.overrides) + ([f"output_dir={args.output}"] if args.output else [])
    config = load_config(args.config, overrides=overrides)
    summary = train(config=config, resume=args.resume, device=args.device, command=recorded_command(sys.argv[1:]))
    if summary.get("rank", 0) == 0:
        print(final_message(summary))
    return 0


def recorded_command(argv: list[str]) -> str:
    """The command recorded in checkpoints: ``spinelesion train`` and the arguments after the
    subcommand (only the subcommand itself is dropped: ``--output train`` keeps its value)."""
    argv = list(argv)
    if "train" in argv:
        argv = argv[argv.index("train") + 1:]
    return "spinelesion train " + " ".join(shlex.quote(a) for a in argv)


def final_message(summary: dict) -> str:
    """The last lines of a training run: what it reached, the best checkpoint and the next command."""
    from pathlib import Path

    best = summary["best_value"]
    out = Path(summary["output_dir"])
    lines = [f"done: {summary['epochs']} epochs in {summary['seconds'] / 60:.1f} min; best "
             f"{summary['metric']} {'n/a' if best is None else f'{best:.4f}'} at epoch "
             f"{summary['best_epoch']}; checkpoints in {out}"]
    checkpoint = next((out / n for n in ("best.safetensors", "last.safetensors") if (out / n).is_file()), None)
    if checkpoint is not None:
        lines.append(f"best checkpoint: {checkpoint}")
        lines.append(f"next: spinelesion infer SCANS --out OUT --model {shlex.quote(str(checkpoint))}")
    return "\n".join(lines)
