"""Spine-Mets-CT-SEG (TCIA): CT of metastatic spines, DICOM CT series plus one DICOM SEG each.

Layout as the NBIA Data Retriever writes it (TCIA collection "Spine-Mets-CT-SEG")::

    ROOT/Spine-Mets-CT-SEG/<PatientID>/<study folder>/<CT series folder>/1-001.dcm ...
    ROOT/Spine-Mets-CT-SEG/<PatientID>/<study folder>/<"…Spine Segmentation…" series>/1-1.dcm

``ROOT`` may be the collection folder or any folder above it. Series are found by their DICOM
headers (Modality CT / SEG), and each SEG is paired with the CT series it references
(ReferencedSeriesSequence), never by folder name. The case ID is the TCIA PatientID folder
name (a de-identified public ID).

Segments (dataset authors' converter, github.com/rouge1616/Spine-Mets-CT-SEG
``tcia_dcm2nifti.py``) are labelled by vertebral level, "T1 vertebra" ... "L5 vertebra";
the collection also classifies lesions (lytic / blastic / mixed). Mapping by segment label
and segmented property type:

- a label or property naming a lesion (lesion, metastasis, tumour, neoplasm, lytic, blastic,
  sclerotic) -> lesion (3), painted over the bone it sits in;
- a vertebral level ("L1 vertebra", "T12") or "vertebra" -> body (1) / posterior elements (2),
  split geometrically (:mod:`.vertebra_split`);
- anything else -> LabelMapError naming the segment.

Annotated classes are decided per case: 0, 1, 2, plus 3 only when the SEG holds at least one
lesion segment. A SEG with vertebra segments only leaves lesion unannotated: the vertebra
masks then include the metastatic bone, so such a case teaches the lesion nothing and marks
lesion voxels as bone (see data/README.md).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from spinelesion.data.adapters.base import Case, require_root
from spinelesion.io.grid import place_on_grid
from spinelesion.data.adapters.vertebra_split import split_vertebrae
from spinelesion.errors import LabelMapError
from spinelesion.io.scan import Scan
from spinelesion.labels import BACKGROUND, LESION, POSTERIOR_ELEMENTS, VERTEBRAL_BODY

LESION_WORDS = ("lesion", "metasta", "tumor", "tumour", "neoplas", "lytic", "blastic", "sclerotic")
LEVEL_PATTERN = re.compile(r"^\s*(C[1-7]|T1[0-3]|T[1-9]|L[1-6]|S[1-5])(\b|_)", re.IGNORECASE)
VERTEBRA = "vertebra"
BASE_CLASSES = (BACKGROUND, VERTEBRAL_BODY, POSTERIOR_ELEMENTS)


class SpineMetsAdapter:
    name = "spinemets"
    annotated_classes: tuple[int, ...] = BASE_CLASSES + (LESION,)

    def find_cases(self, root: Path) -> list[Case]:
        """One case per DICOM SEG under ``root``, paired with the CT series it references."""
        root = require_root(root, dataset="Spine-Mets-CT-SEG")
        ct_series: dict[str, Path] = {}
        segs: list[tuple[Path, object]] = []
        for folder, files in _dicom_folders(root):
            header = _read_header(folder / files[0])
            if header is None:
                continue
            modality = str(getattr(header, "Modality", ""))
            if modality == "CT":
                ct_series.setdefault(str(header.SeriesInstanceUID), folder)
            elif modality == "SEG":
                segs.extend((folder / name, _read_header(folder / name)) for name in files)
        if not segs:
            raise LabelMapError(f"{root}: no DICOM SEG files found (expected <PatientID>/<study>/<series>/*.dcm)")
        cases: list[Case] = []
        seen: dict[str, int] = {}
        for seg_path, header in sorted(segs, key=lambda item: str(item[0])):
            if header is None or str(getattr(header, "Modality", "")) != "SEG":
                continue
            series_uid = _referenced_series(header, seg_path)
            if series_uid not in ct_series:
                raise LabelMapError(f"{seg_path}: the CT series it references ({series_uid}) is not under {root}")
            kinds = classify_segments(header, seg_path)
            classes = BASE_CLASSES + ((LESION,) if LESION in kinds.values() else ())
            patient = seg_path.parent.parent.parent.name
            seen[patient] = seen.get(patient, 0) + 1
            case_id = patient if seen[patient] == 1 else f"{patient}_{seen[patient]}"
            cases.append(Case(case_id=case_id, image=ct_series[series_uid], label=seg_path, dataset=self.name,
                              annotated_classes=classes, modality="CT"))
        return sorted(cases, key=lambda case: case.case_id)

    def load_labels(self, case: Case, *, like: Scan) -> np.ndarray:
        """(X, Y, Z) uint8 schema v1 labels from the SEG, on ``like``'s grid (the CT's)."""
        import highdicom as hd

        path = Path(case.label)
        try:
            seg = hd.seg.segread(path)
        except Exception as err:  # noqa: BLE001 - any reader failure is a bad label file
            raise LabelMapError(f"{path}: not a readable DICOM SEG ({err})") from None
        if like.dicom is not None and _referenced_series(seg, path) != like.dicom.series_instance_uid:
            raise LabelMapError(f"{path}: references series {_referenced_series(seg, path)}, "
                                f"not the image's series {like.dicom.series_instance_uid}")
        kinds = classify_segments(seg, path)
        vertebrae = [n for n, kind in kinds.items() if kind != LESION]
        lesions = [n for n, kind in kinds.items() if kind == LESION]
        labels = np.zeros(like.shape, dtype=np.uint8)
        if vertebrae:
            instances = _segments_on_grid(seg, vertebrae, like=like, path=path)
            atlas = tuple(n for n in vertebrae if kinds[n] == POSTERIOR_ELEMENTS)
            labels = split_vertebrae(instances, affine=like.affine, posterior_only=atlas)
        if lesions:
            labels[_segments_on_grid(seg, lesions, like=like, path=path) > 0] = LESION
        return labels


def classify_segments(dataset: object, path: Path) -> dict[int, int]:
    """Segment number -> VERTEBRAL_BODY (a vertebra to split), POSTERIOR_ELEMENTS (C1) or LESION.

    Raises:
        LabelMapError naming the file and the segment when a segment is neither.
    """
    kinds: dict[int, int] = {}
    for item in getattr(dataset, "SegmentSequence", []):
        label = str(getattr(item, "SegmentLabel", ""))
        meanings = " ".join(str(getattr(code, "CodeMeaning", ""))
                            for code in getattr(item, "SegmentedPropertyTypeCodeSequence", []))
        text = f"{label} {meanings}".lower()
        level = LEVEL_PATTERN.match(label)
        if any(word in text for word in LESION_WORDS):
            kind = LESION
        elif level or VERTEBRA in text:
            kind = POSTERIOR_ELEMENTS if level and level.group(1).upper() == "C1" else VERTEBRAL_BODY
        else:
            raise LabelMapError(f"{path}: segment {int(item.SegmentNumber)} {label!r} ({meanings}) is neither "
                                "a vertebra nor a lesion; this dataset's mapping knows only those")
        kinds[int(item.SegmentNumber)] = kind
    if not kinds:
        raise LabelMapError(f"{path}: DICOM SEG without segments")
    return kinds


def _segments_on_grid(seg: object, numbers: list[int], *, like: Scan, path: Path) -> np.ndarray:
    """(X, Y, Z) int array on ``like``'s grid: the segment number covering each voxel, else 0."""
    from spinelesion.io.scan import LPS_TO_RAS

    try:
        volume = seg.get_volume(segment_numbers=numbers, combine_segments=True, relabel=False,
                                skip_overlap_checks=True)
    except Exception as err:  # noqa: BLE001 - highdicom raises several types for bad geometry
        raise LabelMapError(f"{path}: cannot build a volume from segments {numbers} ({err})") from None
    return place_on_grid(np.asarray(volume.array), affine=LPS_TO_RAS @ np.asarray(volume.affine), like=like,
                         path=path)


def _referenced_series(dataset: object, path: Path) -> str:
    for item in getattr(dataset, "ReferencedSeriesSequence", []):
        return str(item.SeriesInstanceUID)
    raise LabelMapError(f"{path}: DICOM SEG names no referenced series (ReferencedSeriesSequence)")


def _dicom_folders(root: Path):
    """(folder, sorted file names) for every folder under ``root`` that holds files."""
    for folder, _dirs, files in sorted(os.walk(root)):
        names = sorted(name for name in files if not name.startswith(".") and not name.endswith((".csv", ".json",
                                                                                                   ".txt", ".xlsx")))
        if names:
            yield Path(folder), names


def _read_header(path: Path):
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - not a DICOM file: skip it
        return None
