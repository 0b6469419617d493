"""MSD-style datalist (``dataset.json``), as ``spinelesion synth`` writes it: labels already schema v1.

Layout (Medical Segmentation Decathlon convention, paths relative to the JSON's folder)::

    ROOT/dataset.json      {"training": [{"image": "imagesTr/x.nii.gz", "label": "labelsTr/x.nii.gz"}, ...],
                            "validation": [...], "modality": {"0": "CT"}, "labels": {"0": "background", ...}}
    ROOT/imagesTr/...      ROOT/labelsTr/...

Every schema v1 class is annotated. When the JSON carries a ``labels`` table it must name the
schema v1 classes (either {"0": "background", ...} or {"background": 0, ...}); a different
table means the labels are not schema v1 and is an error.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spinelesion.data.adapters.base import Case, map_values, read_label_volume, require_file, require_root
from spinelesion.errors import LabelMapError
from spinelesion.io.scan import Scan
from spinelesion.labels import LABEL_NAMES

SPLITS = {"training": "train", "validation": "validation"}


class MSDAdapter:
    name = "msd"
    annotated_classes: tuple[int, ...] = tuple(LABEL_NAMES)

    def find_cases(self, root: Path) -> list[Case]:
        """Cases listed under "training" and "validation" of ``root/dataset.json`` (or of ``root``
        itself when it is the JSON file)."""
        root = Path(root)
        json_path = root if root.suffix == ".json" else require_root(root, dataset="MSD") / "dataset.json"
        require_file(json_path, what="datalist dataset.json")
        try:
            datalist = json.loads(json_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise LabelMapError(f"{json_path}: not a readable JSON datalist ({err})") from None
        if not isinstance(datalist, dict):
            raise LabelMapError(f"{json_path}: a datalist must be a JSON object")
        _check_label_table(datalist.get("labels"), json_path)
        modality = _modality(datalist.get("modality"))
        cases: list[Case] = []
        for key, split in SPLITS.items():
            entries = datalist.get(key, [])
            if not isinstance(entries, list):
                raise LabelMapError(f"{json_path}: '{key}' must be a list of {{'image', 'label'}} entries")
            for number, entry in enumerate(entries):
                if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
                    raise LabelMapError(f"{json_path}: {key}[{number}] needs 'image' and 'label'")
                image = require_file(json_path.parent / entry["image"], what="image")
                label = require_file(json_path.parent / entry["label"], what="label file")
                cases.append(Case(case_id=_case_id(image), image=image, label=label, dataset=self.name,
                                  annotated_classes=self.annotated_classes, split=split, modality=modality))
        if not cases:
            raise LabelMapError(f"{json_path}: no 'training' or 'validation' entries")
        _check_unique(cases, json_path)
        return sorted(cases, key=lambda case: case.case_id)

    def load_labels(self, case: Case, *, like: Scan) -> np.ndarray:
        """(X, Y, Z) uint8 schema v1 labels; values outside 0..6 are an error."""
        array = read_label_volume(case.label, like=like)
        return map_values(array, {value: value for value in LABEL_NAMES}, path=case.label)


def _case_id(image: Path) -> str:
    name = image.name
    for suffix in (".nii.gz", ".nii", ".mha", ".nrrd"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name


def _modality(table: object) -> str | None:
    """"CT"/"MR" from an MSD modality table such as {"0": "CT"} or {"0": "MR-T1"}; None when absent
    or mixed."""
    if isinstance(table, str):
        values = {table}
    elif isinstance(table, dict):
        values = {str(v) for v in table.values()}
    else:
        return None
    upper = {v.strip().upper() for v in values}
    if upper and all(v == "CT" for v in upper):
        return "CT"
    if upper and all(v.startswith(("MR", "T1", "T2", "STIR")) for v in upper):  # "MR", "MR-T1", "T2W"
        return "MR"
    return None


def _check_label_table(table: object, json_path: Path) -> None:
    if table is None:
        return
    if not isinstance(table, dict):
        raise LabelMapError(f"{json_path}: 'labels' must be an object")

    def norm(name: object) -> str:
        return str(name).strip().lower().replace(" ", "_").replace("-", "_")

    try:
        if all(str(key).isdigit() for key in table):
            found = {int(key): norm(name) for key, name in table.items()}
        else:
            found = {int(value): norm(name) for name, value in table.items()}
    except (TypeError, ValueError):
        raise LabelMapError(f"{json_path}: 'labels' must map values to names") from None
    expected = {value: name for value, name in LABEL_NAMES.items()}
    if found != expected:
        raise LabelMapError(f"{json_path}: 'labels' {found} is not label schema v1 {expected}")


def _check_unique(cases: list[Case], json_path: Path) -> None:
    seen: set[str] = set()
    for case in cases:
        if case.case_id in seen:
            raise LabelMapError(f"{json_path}: case {case.case_id!r} is listed twice")
        seen.add(case.case_id)
