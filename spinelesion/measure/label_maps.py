"""Map other label schemas onto ours (design.md section 1) before measuring.

A mapping is a dict (or a JSON file holding one)::

    {"name": "my_tool",
     "classes": {"1": "vertebral_body", "7": "vertebra", "9": "spinal_cord"},
     "levels":  {"20": "L1", "21": "L2"}}

``classes`` maps source values to class names of schema v1 (``vertebral_body``,
``posterior_elements``, ``lesion``, ``spinal_cord``, ``thecal_sac``, ``disc``) or ``vertebra``: bone
that merges body and posterior elements, split geometrically later. ``levels`` maps source values to
whole vertebrae of a named level (also merged bone). Source values not named are treated as
background and reported.

Built in: ``schema`` (ours, the default), ``vertebra`` (ours with 1 and 2 merged into one vertebra
class), ``cord`` (a binary cord mask, 1 = spinal cord, as the Spinal Cord Toolbox writes) and ``totalsegmentator`` (TotalSegmentator v2 'total': 26 = S1, 27 = L5 ... 31 = L1,
32 = T12 ... 43 = T1, 44 = C7 ... 50 = C1, 79 = spinal_cord; Wasserthal et al. 2023).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spinelesion import labels as L
from spinelesion.errors import LabelMapError

#: Internal class for bone that merges body and posterior elements (not part of schema v1).
MERGED_VERTEBRA = 7
_CLASS_BY_NAME = {name: value for value, name in L.LABEL_NAMES.items()} | {"vertebra": MERGED_VERTEBRA}

_TOTALSEG_LEVELS = (["S1", "L5", "L4", "L3", "L2", "L1"] + [f"T{i}" for i in range(12, 0, -1)]
                    + [f"C{i}" for i in range(7, 0, -1)])
BUILTIN_MAPS: dict[str, dict] = {
    "schema": {"name": "schema", "classes": {str(v): n for v, n in L.LABEL_NAMES.items() if v}},
    "vertebra": {"name": "vertebra",
                 "classes": {"1": "vertebra", "2": "vertebra", "3": "lesion", "4": "spinal_cord",
                             "5": "thecal_sac", "6": "disc"}},
    "cord": {"name": "cord", "classes": {"1": "spinal_cord"}},
    "totalsegmentator": {"name": "totalsegmentator", "classes": {"79": "spinal_cord"},
                         "levels": {str(26 + i): lvl for i, lvl in enumerate(_TOTALSEG_LEVELS)}},
}


@dataclass(frozen=True)
class MappedLabels:
    """A label map in our classes.

    Attributes:
        classes: (X, Y, Z) uint8, values 0..6 of schema v1 or MERGED_VERTEBRA (7).
        levels: (X, Y, Z) uint8 index into ``level_names`` + 1 (0: no level), or None.
        level_names: level of each level index (``levels == k + 1`` is ``level_names[k]``).
        ignored_values: source values that the mapping did not name (treated as background).
        name: the mapping's name.
    """

    classes: np.ndarray
    levels: np.ndarray | None
    level_names: tuple[str, ...]
    ignored_values: tuple[int, ...]
    name: str


def load_label_map(spec: str | dict | Path | None) -> dict:
    """Return the mapping dict for a built-in name, a JSON file path or a dict (validated)."""
    if spec is None:
        spec = "schema"
    if isinstance(spec, dict):
        mapping = spec
    elif isinstance(spec, str) and spec in BUILTIN_MAPS:
        mapping = BUILTIN_MAPS[spec]
    else:
        path = Path(spec)
        if not path.is_file():
            raise LabelMapError(f"label map {spec!s}: neither a built-in ({', '.join(BUILTIN_MAPS)}) "
                                "nor an existing JSON file")
        try:
            mapping = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise LabelMapError(f"label map {path}: cannot read JSON ({err})") from err
        mapping = dict(mapping, name=mapping.get("name", path.stem))
    _validate(mapping)
    return mapping


def _validate(mapping: dict) -> None:
    name = mapping.get("name", "?")
    if not isinstance(mapping, dict) or not ({"classes", "levels"} & set(mapping)):
        raise LabelMapError(f"label map {name}: needs a 'classes' and/or 'levels' object")
    unknown = set(mapping) - {"name", "classes", "levels", "description"}
    if unknown:
        raise LabelMapError(f"label map {name}: unknown key(s) {sorted(unknown)}")
    for key in ("classes", "levels"):
        for value, target in mapping.get(key, {}).items():
            try:
                int(value)
            except (TypeError, ValueError):
                raise LabelMapError(f"label map {name}: {key} key {value!r} is not an integer") from None
            if key == "classes" and target not in _CLASS_BY_NAME:
                raise LabelMapError(f"label map {name}: class {target!r} for value {value} is not one of "
                                    f"{', '.join(_CLASS_BY_NAME)}")
            if key == "levels" and not isinstance(target, str):
                raise LabelMapError(f"label map {name}: level for value {value} must be a string")


def apply_label_map(labels: np.ndarray, spec: str | dict | Path | None) -> MappedLabels:
    """Translate an (X, Y, Z) integer label map into our classes with a lookup table."""
    mapping = load_label_map(spec)
    if labels.size and (labels.min() < 0 or labels.max() > 65535):
        raise LabelMapError(f"label map values must lie in 0..65535, got {labels.min()}..{labels.max()}: "
                            "is this an image (were --image and --labels swapped)?")
    present = np.flatnonzero(_value_counts(labels)) if labels.size else []
    classes_lut = np.zeros(int(labels.max(initial=0)) + 1, np.uint8)
    level_lut = np.zeros_like(classes_lut)
    for value, target in mapping.get("classes", {}).items():
        if int(value) < classes_lut.size:
            classes_lut[int(value)] = _CLASS_BY_NAME[target]
    level_names: list[str] = []
    for value, level in mapping.get("levels", {}).items():
        if int(value) < classes_lut.size and int(value) in present:
            classes_lut[int(value)] = MERGED_VERTEBRA
            level_names.append(level)
            level_lut[int(value)] = len(level_names)
    named = {int(v) for v in mapping.get("classes", {})} | {int(v) for v in mapping.get("levels", {})}
    ignored = tuple(int(v) for v in present if v != 0 and int(v) not in named)
    classes = classes_lut[labels]
    levels = level_lut[labels] if level_names else None
    return MappedLabels(classes=classes, levels=levels, level_names=tuple(level_names),
                        ignored_values=ignored, name=str(mapping.get("name", "custom")))


def _value_counts(labels: np.ndarray, chunk_voxels: int = 1 << 22) -> np.ndarray:
    """``np.bincount`` of a non-negative integer array, a slab at a time: the same counts without
    an int64 copy of the whole volume (560 MB for a 70 M-voxel crop)."""
    counts = np.zeros(int(labels.max()) + 1, np.int64)
    rows = max(1, chunk_voxels // max(1, labels[0].size))
    for i in range(0, labels.shape[0], rows):
        part = np.bincount(labels[i:i + rows].ravel(), minlength=counts.size)
        counts += part
    return counts
