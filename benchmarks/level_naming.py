"""How right the automatic level names are: vertebrae named right, named wrong and left unnamed,
on phantoms whose truth names every level.

    python benchmarks/level_naming.py --data runs/ctx_ct [--data ...] [--pred runs/ctx_pred] [--no-image]

``--data``: folders written by ``spinelesion synth`` (imagesTr/, labelsTr/, truth/). Without
``--pred`` the exact label maps are measured; with it, the label maps ``spinelesion infer`` wrote
(``PRED/<case>/labels.nii.gz``). The image goes to ``measure_labels`` with the dataset's modality
(CT images give the ribs) unless ``--no-image``. A measured vertebra takes the truth's level of the
truth vertebra whose centroid is nearest, within 15 mm; farther (a fragment), it counts as "no match".
Prints one line per case and the totals by how the levels were named.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import nibabel as nib
import numpy as np

from spinelesion.measure import measure_labels

MATCH_MM = 15.0


def _case_rows(data: Path, pred: Path | None):
    meta = json.loads((data / "dataset.json").read_text())
    modality = meta["modality"]["0"]
    for entry in meta["training"] + meta.get("validation", []):
        name = Path(entry["image"]).name.removesuffix(".nii.gz")
        labels = pred / name / "labels.nii.gz" if pred else data / entry["label"]
        if labels.exists():
            yield name, data / entry["image"], labels, data / entry["truth"], modality


def score(image_path: Path | None, labels_path: Path, truth_path: Path, modality: str) -> dict:
    labels_img = nib.load(labels_path)
    image = None if image_path is None else np.asarray(nib.load(image_path).dataobj, dtype=np.float32)
    record = measure_labels(labels=np.asarray(labels_img.dataobj).astype(np.int16), affine=labels_img.affine,
                            image=image, modality=modality)
    truth = json.loads(truth_path.read_text())["vertebrae"]
    centres = np.array([v["centroid_mm"] for v in truth])
    counts = collections.Counter()
    for v in record["vertebrae"]:
        d = np.linalg.norm(centres - np.asarray(v["centroid_mm"]), axis=1)
        j = int(d.argmin())
        if d[j] > MATCH_MM:
            counts["no match, named" if v["level"] else "no match, unnamed"] += 1
        elif v["level"] is None:
            counts["unnamed"] += 1
        else:
            counts["right" if v["level"] == truth[j]["level"] else "wrong"] += 1
    return {"method": record["column"]["level_naming"]["method"], "counts": counts,
            "truth": f"{truth[0]['level']}..{truth[-1]['level']}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, action="append", required=True)
    parser.add_argument("--pred", type=Path, action="append", help="one per --data, in the same order")
    parser.add_argument("--no-image", action="store_true")
    args = parser.parse_args()
    preds = args.pred or [None] * len(args.data)
    by_method: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    cases = collections.Counter()
    for data, pred in zip(args.data, preds):
        for name, image, labels, truth, modality in _case_rows(data, pred):
            result = score(None if args.no_image else image, labels, truth, modality)
            by_method[result["method"]].update(result["counts"])
            cases[result["method"]] += 1
            print(f"{data.name}/{name} {result['truth']}: {result['method']} {dict(result['counts'])}", flush=True)
    print("\nmethod | cases | right | wrong | unnamed | no match (named / unnamed)")
    for method, c in sorted(by_method.items()):
        print(f"{method} | {cases[method]} | {c['right']} | {c['wrong']} | {c['unnamed']} | "
              f"{c['no match, named']} / {c['no match, unnamed']}")


if __name__ == "__main__":
    main()
