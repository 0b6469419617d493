"""The ``spinelesion`` command: one thin entry with a subcommand per job.

Each subcommand lives in ``spinelesion/commands/<name>.py`` and exposes ``add_arguments(parser)``
and ``run(args) -> int``. Only the chosen subcommand's module is imported, so ``--help`` answers
at once and heavy libraries (torch, monai, matplotlib) load only when a command needs them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from spinelesion import __version__

#: name -> one-line help; the module is spinelesion.commands.<name with - replaced by _>.
COMMANDS: dict[str, str] = {
    "inspect": "show what the loader sees in a scan (series, shape, spacing, orientation), no PHI",
    "synth": "generate synthetic spine phantoms (CT, T1, T2) with exact ground truth",
    "measure": "measure vertebrae, lesions and cord compression from a label map",
    "train": "train a 3D U-Net from a YAML config",
    "infer": "segment and measure every scan in a file or folder",
    "demo": "make phantoms, run the default model on them and write a report",
    "review": "serve a run folder read-only on 127.0.0.1 for its interactive viewer (open the URL it prints)",
    "evaluate": "score predicted label maps and measurements against references (Dice, NSD, HD95, lesions, CIs)",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spinelesion",
        description="Find and measure cancerous lesions of the spine on CT and MRI.")
    parser.add_argument("--version", action="version", version=f"spinelesion {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            _module(name).add_arguments(p)
    return parser


def _module(name: str):
    return importlib.import_module(f"spinelesion.commands.{name.replace('-', '_')}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 some inputs failed, 2 usage or input error)."""
    from spinelesion.errors import SpinelesionError

    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(_module(args.command).run(args) or 0)
    except SpinelesionError as err:
        print(f"spinelesion {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spinelesion {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
