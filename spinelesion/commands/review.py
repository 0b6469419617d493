"""``spinelesion review OUT [--port N]``: serve a run folder read-only on 127.0.0.1 for its viewer."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from spinelesion.report.review_server import DEFAULT_PORT

    parser.add_argument("out", help="output folder of `spinelesion infer` (holds report.html)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0 picks a free one)")


def run(args: argparse.Namespace) -> int:
    from spinelesion.report.review_server import serve

    serve(run_dir=args.out, port=args.port, announce=lambda line: print(line, flush=True))
    return 0
