#!/usr/bin/env python3
"""Choose a checkpoint's lesion clean-up thresholds on validation data; write them into it.

    python scripts/calibrate_lesions.py --model runs/x/best.safetensors --data runs/tissue_ct \
        [--data runs/phantoms_t2 ...] [--max-fp 0.5] --out spinelesion/models/spine_any.safetensors

Uses the 'validation' cases of each MSD/tissue dataset folder (their rendered images), prints the
lesion-wise operating points (the FROC over minimum size and probability) and the choice.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--data", required=True, action="append", type=Path, help="MSD/tissue dataset folder")
    parser.add_argument("--max-fp", type=float, default=0.5, help="false positives per scan allowed (default 0.5)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    from spinelesion.data.adapters import get_adapter
    from spinelesion.training.calibrate import choose_operating_point, lesion_operating_points, store_postprocess

    cases = []
    for root in args.data:
        cases += [c for c in get_adapter("msd").find_cases(root) if c.split == "validation"]
    rows = lesion_operating_points(checkpoint=args.model, cases=cases, device=args.device)
    for r in rows:
        print(json.dumps(r))
    chosen = choose_operating_point(rows, max_fp_per_scan=args.max_fp)
    where = f"{len(cases)} validation cases of " + ", ".join(str(d) for d in args.data)
    store_postprocess(args.model, out=args.out, chosen=chosen, rows=rows, chosen_on=where)
    print(f"chosen: {json.dumps(chosen)}\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
