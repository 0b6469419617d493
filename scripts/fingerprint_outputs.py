"""Fingerprint of pipeline outputs (label maps and measurement records), and comparison of two.

    python scripts/fingerprint_outputs.py make WORK_DIR > fingerprint.json
    python scripts/fingerprint_outputs.py compare BEFORE.json AFTER.json

``make`` reads WORK_DIR/pred/*/labels.nii.gz, WORK_DIR/pred/*/measurements.json and
WORK_DIR/measure/*.json (what ``scripts/check_outputs_unchanged.sh`` writes). Label maps become a
SHA-256 of their voxels (as stored), shape, dtype and affine; records are kept whole except
``provenance`` (versions, times, paths), which may differ between two runs of the same code.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

VOLATILE = ("provenance",)


def _label_hash(path: Path) -> dict:
    img = nib.load(path)
    data = np.asarray(img.dataobj)
    digest = hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()
    return {"sha256": digest, "shape": list(data.shape), "dtype": str(data.dtype),
            "affine": np.round(img.affine, 6).tolist()}


def _record(path: Path) -> dict:
    record = json.loads(path.read_text())
    return {k: v for k, v in record.items() if k not in VOLATILE}


def make(work: Path) -> dict:
    out: dict = {}
    for case in sorted(p for p in (work / "pred").iterdir() if p.is_dir()):
        entry = {}
        if (case / "labels.nii.gz").is_file():
            entry["labels"] = _label_hash(case / "labels.nii.gz")
        if (case / "measurements.json").is_file():
            entry["record"] = _record(case / "measurements.json")
        out[f"infer/{case.name}"] = entry
    for path in sorted((work / "measure").glob("*.json")):
        out[f"measure/{path.stem}"] = {"record": _record(path)}
    return out


def _diff(a, b, where: str, found: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                found.append(f"{where}/{key}: only in {'after' if key in b else 'before'}")
            else:
                _diff(a[key], b[key], f"{where}/{key}", found)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{where}[{i}]", found)
    elif a != b:
        found.append(f"{where}: {json.dumps(a)[:120]} -> {json.dumps(b)[:120]}")


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "make":
        json.dump(make(Path(argv[1])), sys.stdout, indent=1, sort_keys=True)
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        before, after = (json.loads(Path(p).read_text()) for p in argv[1:])
        found: list[str] = []
        _diff(before, after, "", found)
        print("\n".join(found) if found else f"identical: {len(before)} cases")
        return 1 if found else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
