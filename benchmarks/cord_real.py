"""The cord read from the image's partial volume against the manual masks, on the real MR scans.

For each MR scan with a manual cord mask that ``scripts/evaluate_real.sh W`` ran (its inputs in
``W/in``, the model's label maps in ``W/pred``, the masks in ``W/cord_ref``), measures the cord three
ways: the manual mask (with the model's sac round it, for the same canal), the model's labels alone,
and the model's labels with the image (``measure/cord.py::cord_shares``). Prints the median cross-
section area and AP diameter over the cord profile and the MSCC of each (healthy volunteers: the MSCC
is their cords' natural narrowing, the manual mask's reading is the reference), and the mean abs
difference from the manual mask.

Run: bash scripts/evaluate_real.sh W && python benchmarks/cord_real.py --work W   (about 1 min; asserts nothing)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def read(labels, scan, image) -> dict:
    from spinelesion.measure import measure_labels

    record = measure_labels(labels=labels, affine=scan.affine, modality="MR", image=image)
    profile = record.get("cord_profile") or {}
    return {"area": float(np.median(profile.get("cord_area_mm2") or [np.nan])),
            "ap": float(np.median(profile.get("cord_ap_mm") or [np.nan])), "mscc": record["cord"]["mscc_pct"]}


def main() -> None:
    import nibabel as nib

    from spinelesion import labels as L
    from spinelesion.io.load import load_scan

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="the folder scripts/evaluate_real.sh wrote")
    args = parser.parse_args()
    diffs = {"labels": [], "image": []}
    for ref in sorted((args.work / "cord_ref").glob("*/*.nii.gz")):
        dataset, name = ref.parent.name, ref.name[: -len(".nii.gz")]
        pred = args.work / "pred" / f"{dataset}__{name}" / "labels.nii.gz"
        source = args.work / "in" / dataset / ref.name
        if not pred.exists() or not source.exists():
            print(f"{dataset}/{name}: no prediction or input, skipped")
            continue
        scan = load_scan(source)
        labels = np.asarray(nib.load(pred).dataobj)
        manual = np.asarray(nib.load(ref).dataobj) > 0
        by_hand = np.where(manual, L.SPINAL_CORD, np.where(np.isin(labels, (L.SPINAL_CORD, L.THECAL_SAC)),
                                                           L.THECAL_SAC, 0)).astype(np.uint8)
        rows = {"manual": read(by_hand, scan, None), "labels": read(labels, scan, None),
                "image": read(labels, scan, scan.array)}
        print(f"{dataset}/{name}: " + " | ".join(
            f"{k} area {r['area']:.1f} mm2, AP {r['ap']:.2f} mm, MSCC {r['mscc']}" for k, r in rows.items()))
        for k in ("labels", "image"):
            if rows[k]["mscc"] is not None and rows["manual"]["mscc"] is not None:
                diffs[k].append([abs(rows[k][q] - rows["manual"][q]) for q in ("area", "ap", "mscc")])
    for k, d in diffs.items():
        if d:
            m = np.nanmean(np.array(d, float), axis=0)
            print(f"{k} against the manual masks ({len(d)} scans), mean abs difference: area {m[0]:.1f} mm2, "
                  f"AP {m[1]:.2f} mm, MSCC {m[2]:.1f} points")


if __name__ == "__main__":
    main()
