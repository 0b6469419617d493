"""What every dataset adapter shares: the :class:`Case` record, the :class:`Adapter` protocol and
the checks that keep a label map honest (same grid as its image, known values only).

An adapter turns one public dataset's files into label maps of schema v1
(:mod:`spinelesion.labels`) on the image's own voxel grid, and says which classes the dataset
annotates. A class a dataset does not annotate must be masked out of the loss, not learnt as
background: a voxel labelled 0 in such a dataset may still belong to an unannotated class.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from spinelesion.errors import DatasetError, LabelMapError, ScanLoadError
from spinelesion.io.grid import labels_on_image_grid
from spinelesion.io.scan import Scan
from spinelesion.labels import NUM_CLASSES


@dataclass(frozen=True, kw_only=True)
class Case:
    """One training case: an image and the label source that goes with it.

    Attributes:
        case_id: identifier built from the dataset's own public subject/series IDs (for example
            ``sub-gl003_dir-ax``); never a DICOM PatientName or other PHI.
        image: file or DICOM series folder, anything :func:`spinelesion.io.load_scan` reads.
        label: label file, folder of masks or DICOM SEG file (adapter-specific).
        dataset: name of the adapter that made the case.
        annotated_classes: schema v1 classes this case annotates; the others must be masked
            out of the loss, not treated as background.
        split: ``"train"``, ``"validation"`` or ``"test"`` where the dataset says; else None.
        modality: ``"CT"`` or ``"MR"`` where the dataset says; None lets the loader decide.
        label_map: description of the label values, for adapters that need one (``labelmaps``).
    """

    case_id: str
    image: Path
    label: Path | None
    dataset: str
    annotated_classes: tuple[int, ...]
    split: str | None = None
    modality: str | None = None
    label_map: str | None = None


@runtime_checkable
class Adapter(Protocol):
    """A public dataset's layout and label mapping."""

    name: str
    #: Classes the dataset annotates (a case may annotate fewer; see ``Case.annotated_classes``).
    annotated_classes: tuple[int, ...]

    def find_cases(self, root: Path) -> list[Case]:
        """Every case under ``root``, sorted by case_id; raises SpinelesionError for a missing
        root, an empty layout or a missing image or label file (naming the path)."""
        ...

    def load_labels(self, case: Case, *, like: Scan) -> np.ndarray:
        """(X, Y, Z) uint8 schema v1 label map on ``like``'s exact grid.

        Raises LabelMapError naming the file when the label's grid differs from ``like``'s or
        it holds a value outside the dataset's mapping.
        """
        ...


def annotated_mask(classes: tuple[int, ...]) -> np.ndarray:
    """(NUM_CLASSES,) bool: True for each annotated class value."""
    mask = np.zeros(NUM_CLASSES, dtype=bool)
    for value in classes:
        if not 0 <= value < NUM_CLASSES:
            raise LabelMapError(f"annotated class {value} is outside schema v1 (0..{NUM_CLASSES - 1})")
        mask[value] = True
    return mask


def require_root(root: Path, *, dataset: str) -> Path:
    """``root`` as a Path, or a DatasetError naming it when it is not a folder."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: {dataset} dataset folder not found")
    return root


def require_file(path: Path, *, what: str) -> Path:
    """``path`` if it exists, else a LabelMapError (labels) or ScanLoadError (images) naming it."""
    if not path.exists():
        error = ScanLoadError if what == "image" else LabelMapError
        raise error(f"{path}: {what} not found")
    return path


def read_label_volume(path: Path, *, like: Scan) -> np.ndarray:
    """Read an integer label file (NIfTI, MHA, NRRD) that must lie on ``like``'s grid.

    Returns:
        (X, Y, Z) int32 array in ``like``'s voxel order.
    """
    from spinelesion.io.load import load_scan

    require_file(path, what="label file")
    try:
        label = load_scan(path, modality="CT")  # modality given only to skip the guess
    except ScanLoadError as err:
        raise LabelMapError(str(err)) from None
    array = labels_on_image_grid(label, like=like, path=path)
    if not np.array_equal(array, np.round(array)):
        raise LabelMapError(f"{path}: label values must be integers")
    return array.astype(np.int32)


def map_values(array: np.ndarray, mapping: dict[int, int], *, path: Path | str) -> np.ndarray:
    """Map each source value through ``mapping`` (source value -> schema v1 value).

    Args:
        array: (X, Y, Z) integer array of source label values.
        mapping: every value the dataset may hold, including 0.

    Returns:
        (X, Y, Z) uint8 array of schema v1 values.

    Raises:
        LabelMapError naming ``path`` and the unknown values when the array holds any value
        missing from ``mapping``.
    """
    values = np.unique(array)
    unknown = [int(v) for v in values if int(v) not in mapping]
    if unknown:
        shown = ", ".join(str(v) for v in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise LabelMapError(f"{path}: label values {shown} are outside this dataset's mapping "
                            f"(known: {_ranges(sorted(mapping))})")
    table = np.zeros(int(values.max()) + 1 if values.size else 1, dtype=np.uint8)
    for value in values:
        table[int(value)] = mapping[int(value)]
    return table[array]


def check_values(array: np.ndarray, *, known: set[int], path: Path) -> None:
    """LabelMapError naming ``path`` when ``array`` holds a nonzero value outside ``known``."""
    unknown = sorted(int(v) for v in np.unique(array) if v != 0 and int(v) not in known)
    if unknown:
        raise LabelMapError(f"{path}: label values {unknown[:10]} are outside this dataset's mapping "
                            f"(known: 0 and {sorted(known)})")


def _ranges(values: list[int]) -> str:
    """"0-25, 28" for [0, 1, ..., 25, 28]."""
    parts: list[str] = []
    start = prev = values[0]
    for value in values[1:] + [None]:  # type: ignore[list-item]
        if value is not None and value == prev + 1:
            prev = value
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if value is not None:
            start = prev = value
    return ", ".join(parts)


#: Split names used by dataset tables -> this project's split names.
SPLITS = {"train": "train", "training": "train", "val": "validation", "validation": "validation", "test": "test"}


def read_splits(table: Path, *, key: str, split: str, delimiter: str = ",") -> dict[str, str]:
    """Case name -> split ("train", "validation", "test") from a dataset's CSV table: the column
    ``key`` names the case, the column ``split`` its split (other split names are left out).
    Empty when the file is absent; LabelMapError when the columns are missing."""
    if not table.exists():
        return {}
    with open(table, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle, delimiter=delimiter))
    if rows and not {key, split} <= set(rows[0]):
        sep = "" if delimiter == "," else f"{delimiter!r}-separated "
        raise LabelMapError(f"{table}: needs {sep}columns {key} and {split}, found {sorted(rows[0])[:8]}")
    splits: dict[str, str] = {}
    for row in rows:
        name = SPLITS.get(str(row[split]).strip().lower())
        if name is not None:
            splits[str(row[key]).strip()] = name
    return splits
