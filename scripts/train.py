#!/usr/bin/env python
"""Same entry as ``spinelesion train``; also the script to give torchrun:

    torchrun --nproc_per_node 2 scripts/train.py --config configs/phantom_ct.yaml
"""

import sys

from spinelesion.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
