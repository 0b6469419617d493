"""Map other label schemas onto ours (docs/contracts.md section 1) before measuring.

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
from spinelesion.measure import geometry as G
from spinelesion.vocabulary import VERTEBRAE_C1_TO_S1

#: Internal class for bone that merges body and posterior elements (not part of schema v1).
MERGED_VERTEBRA = 7
_CLASS_BY_NAME = {name: value for value, name in L.LABEL_NAMES.items()} | {"vertebra": MERGED_VERTEBRA}

BUILTIN_MAPS: dict[str, dict] = {
    "schema": {"name": "schema", "classes": {str(v): n for v, n in L.LABEL_NAMES.items() if v}},
    "vertebra": {"name": "vertebra",
                 "classes": {"1": "vertebra", "2": "vertebra", "3": "lesion", "4": "spinal_cord",
                             "5": "thecal_sac", "6": "disc"}},
    "cord": {"name": "cord", "classes": {"1": "spinal_cord"}},
    "totalsegmentator": {"name": "totalsegmentator", "classes": {"79": "spinal_cord"},
                         "levels": {str(26 + i): lvl for i, lvl in enumerate(reversed(VERTEBRAE_C1_TO_S1))}},
}


@dataclass(frozen=True)
class MappedLabels:
    """A label map in our classes.

    Attributes:
        classes: (X, Y, Z) uint8, values 0..6 of schema v1 or MERGED_VERTEBRA (7); the input array
            itself where it needs no translation (read it, never write to it).
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
    top = int(labels.max(initial=0))
    if labels.size and (top > 65535 or (labels.dtype.kind != "u" and labels.min() < 0)):
        raise LabelMapError(f"label map values must lie in 0..65535, got {labels.min()}..{top}: "
                            "is this an image (were --image and --labels swapped)?")
    classes_lut = np.zeros(top + 1, np.uint8)
    for value, target in mapping.get("classes", {}).items():
        if int(value) < classes_lut.size:
            classes_lut[int(value)] = _CLASS_BY_NAME[target]
    if labels.dtype == np.uint8 and not mapping.get("levels") and np.array_equal(classes_lut, np.arange(top + 1)):
        # every value present names its own class (our schema, as inference writes it): nothing to translate,
        # nothing ignored; ``classes`` is ``labels`` itself (measurement only reads it)
        return MappedLabels(classes=labels, levels=None, level_names=(), ignored_values=(),
                            name=str(mapping.get("name", "custom")))
    present = np.flatnonzero(_value_counts(labels)) if labels.size else []
    level_lut = np.zeros_like(classes_lut)
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


#: A single-value mask thinner than this (mean cross-section, mm^2) and elongated is a cord (or
#: canal) mask: a spinal cord is 50-120 mm^2, a thecal sac up to ~250; vertebral bodies 500 and more.
TUBE_MAX_AREA_MM2 = 300.0


def check_fits(labels: np.ndarray, affine: np.ndarray, spec: str | dict | Path | None, *, what: str = "label map") -> None:
    """LabelMapError when ``labels`` do not look like the chosen mapping, naming the one that fits.

    Caught: a single-value thin tube (a spinal cord mask, as the Spinal Cord Toolbox writes) read
    with a mapping where 1 is bone; and maps most of whose labelled voxels the chosen mapping does
    not name while a built-in mapping names them (a TotalSegmentator map read as ours...).
    """
    mapping = load_label_map(spec)
    name = str(mapping.get("name", "custom"))
    labels = np.asarray(labels)
    if labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        if labels.size == 0 or not np.array_equal(labels, np.round(labels)):
            return
        labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() > 65535:
        return  # apply_label_map says what is wrong
    counts = _value_counts(labels)
    counts[0] = 0
    total = int(counts.sum())
    if total == 0:
        return
    present = [int(v) for v in np.flatnonzero(counts)]
    if present == [1] and _CLASS_BY_NAME.get(mapping.get("classes", {}).get("1", "")) in (
            L.VERTEBRAL_BODY, L.POSTERIOR_ELEMENTS, MERGED_VERTEBRA):
        tube = _tube(labels == 1, affine)
        if tube is not None:
            area, length = tube
            raise LabelMapError(
                f"{what}: one value only (1), shaped like a thin tube ({area:.0f} mm^2 cross-section over "
                f"{length:.0f} mm) with no bone: a spinal cord mask, not label map {name!r} "
                f"(1 = {mapping['classes']['1']}); pass --label-map cord")

    def named_fraction(m: dict) -> float:
        named = {int(v) for v in m.get("classes", {})} | {int(v) for v in m.get("levels", {})}
        return sum(int(counts[v]) for v in present if v in named) / total

    if named_fraction(mapping) >= 0.5:
        return
    fits = [other for other, m in BUILTIN_MAPS.items() if other != name and named_fraction(m) >= 0.9]
    if fits:
        shown = present[:8] + (["..."] if len(present) > 8 else [])
        raise LabelMapError(f"{what}: label map {name!r} names only {100 * named_fraction(mapping):.0f} % of the "
                            f"labelled voxels (values {shown}); they fit label map {fits[0]!r}: pass "
                            f"--label-map {fits[0]}")


def _tube(mask: np.ndarray, affine: np.ndarray) -> tuple[float, float] | None:
    """(mean cross-section mm^2, length mm) of ``mask`` when it is a thin elongated tube, else None."""
    index = np.flatnonzero(mask)
    voxel_mm3 = abs(float(np.linalg.det(affine[:3, :3])))
    volume = index.size * voxel_mm3
    sample = index[:: max(1, index.size // 200_000)]
    points = np.stack(np.unravel_index(sample, mask.shape), axis=1) @ affine[:3, :3].T
    if len(points) < 10:
        return None
    centred = points - G.centroid(points)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    along = centred @ axis
    length = float(np.ptp(along)) + float(np.cbrt(voxel_mm3))  # centre to centre, plus one voxel
    area = volume / length
    if area < TUBE_MAX_AREA_MM2 and length > 3 * np.sqrt(area):
        return area, length
    return None
