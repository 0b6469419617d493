#!/usr/bin/env python
"""Same as ``spinelesion infer ...``; also the entry for ``torchrun --nproc_per_node N scripts/infer.py``."""

import sys

from spinelesion.cli import main

if __name__ == "__main__":
    sys.exit(main(["infer", *sys.argv[1:]]))
