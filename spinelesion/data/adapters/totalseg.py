"""TotalSegmentator dataset (CT, v2 release: one binary mask per structure).

Layout (Zenodo releases of the TotalSegmentator dataset; class names of TotalSegmentator v2,
wasserth/TotalSegmentator ``totalsegmentator/map_to_binary.py``; split column as read by
``resources/convert_dataset_to_nnunet.py``)::

    ROOT/meta.csv                          ';'-separated, columns image_id;...;split (train/val/test)
    ROOT/s0000/ct.nii.gz
    ROOT/s0000/segmentations/vertebrae_C1.nii.gz ... vertebrae_L5.nii.gz, vertebrae_S1.nii.gz,
                             spinal_cord.nii.gz, sacrum.nii.gz, (and 100+ other structures)

Mapping: vertebrae_C1 ... vertebrae_S1 -> split geometrically into body (1) and posterior
elements (2) (C1 all posterior elements); spinal_cord -> 4. The rest of the sacrum below S1
and every other structure stay background. Annotated classes: 0, 1, 2, 4 (lesion, thecal sac
and discs are not annotated). The masks were made with a model and corrected by people; they
are not hand-drawn truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spinelesion.data.adapters.base import Case, read_label_volume, read_splits, require_file, require_root
from spinelesion.data.adapters.vertebra_split import split_vertebrae
from spinelesion.errors import LabelMapError
from spinelesion.io.scan import Scan
from spinelesion.labels import BACKGROUND, POSTERIOR_ELEMENTS, SPINAL_CORD, VERTEBRAL_BODY
from spinelesion.vocabulary import VERTEBRAE_C1_TO_S1

VERTEBRAE: tuple[str, ...] = VERTEBRAE_C1_TO_S1
CORD_FILE = "spinal_cord.nii.gz"


class TotalSegmentatorAdapter:
    name = "totalsegmentator"
    annotated_classes: tuple[int, ...] = (BACKGROUND, VERTEBRAL_BODY, POSTERIOR_ELEMENTS, SPINAL_CORD)

    def find_cases(self, root: Path) -> list[Case]:
        """One case per ``ROOT/<id>/ct.nii.gz``; every mask file this adapter reads must exist."""
        root = require_root(root, dataset="TotalSegmentator")
        splits = read_splits(root / "meta.csv", key="image_id", split="split", delimiter=";")
        cases: list[Case] = []
        for image in sorted(root.glob("*/ct.nii.gz")):
            folder = image.parent / "segmentations"
            for name in mask_files():
                require_file(folder / name, what=f"TotalSegmentator mask (v2 name) for {image.parent.name}")
            case_id = image.parent.name
            cases.append(Case(case_id=case_id, image=image, label=folder, dataset=self.name,
                              annotated_classes=self.annotated_classes, split=splits.get(case_id),
                              modality="CT"))
        if not cases:
            raise LabelMapError(f"{root}: no <case>/ct.nii.gz images found")
        return cases

    def load_labels(self, case: Case, *, like: Scan) -> np.ndarray:
        """(X, Y, Z) uint8 schema v1 labels built from the binary masks in ``case.label``."""
        instances = np.zeros(like.shape, dtype=np.int32)
        for number, level in enumerate(VERTEBRAE, start=1):
            instances[_read_binary(case.label / f"vertebrae_{level}.nii.gz", like=like)] = number
        labels = split_vertebrae(instances, affine=like.affine, posterior_only=(1,))
        labels[_read_binary(case.label / CORD_FILE, like=like)] = SPINAL_CORD
        return labels


def mask_files() -> list[str]:
    """Names of the mask files read per case."""
    return [f"vertebrae_{level}.nii.gz" for level in VERTEBRAE] + [CORD_FILE]


def _read_binary(path: Path, *, like: Scan) -> np.ndarray:
    array = read_label_volume(path, like=like)
    values = set(int(v) for v in np.unique(array))
    if not values <= {0, 1}:
        raise LabelMapError(f"{path}: a binary mask must hold only 0 and 1, found {sorted(values)[:10]}")
    return array == 1

