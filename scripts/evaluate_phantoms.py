#!/usr/bin/env python
"""Evaluate a model on held-out phantoms: run inference, compare labels and measurements to truth.

    python scripts/evaluate_phantoms.py --data runs/ph_ct_test [--data runs/ph_t2_test ...] --out runs/eval [--model CKPT]

Each --data is a `spinelesion synth` folder (imagesTr, labelsTr, truth). Writes evaluation.json in
--out and prints Dice per class, lesion-wise sensitivity, false positives per scan and the
measurement agreement (compression flag, Bilsky, MSCC, destroyed fraction, height loss).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from spinelesion.evaluate import (measurement_agreement, segmentation_stats, summarise_measurements,
                                  summarise_segmentation)
from spinelesion.inference.batch import run_batch
from spinelesion.io.load import load_scan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--model")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    results = {}
    for data in map(Path, args.data):
        out = Path(args.out) / data.name
        run_batch(input_path=data / "imagesTr", out_dir=out, model=args.model, device=args.device, overlays=False)
        seg, meas = [], []
        for image in sorted((data / "imagesTr").glob("*.nii.gz")):
            case = image.name[: -len(".nii.gz")]
            pred = load_scan(out / case / "labels.nii.gz").array.astype("uint8")
            truth = load_scan(data / "labelsTr" / image.name).array.astype("uint8")
            seg.append(segmentation_stats(pred=pred, truth=truth))
            meas.append(measurement_agreement(pred=json.loads((out / case / "measurements.json").read_text()),
                                              truth=json.loads((data / "truth" / f"{case}.json").read_text())))
        results[data.name] = {"segmentation": summarise_segmentation(seg), "measurements": summarise_measurements(meas),
                              "per_case": meas}
        print(f"== {data.name}")
        print(json.dumps({k: v for k, v in results[data.name].items() if k != "per_case"}, indent=1))
    (Path(args.out) / "evaluation.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
