"""VerSe 2019 / 2020 (CT, whole vertebrae by level), subject-based BIDS-like layout.

Layout (OSF "subject based structure", https://osf.io/4skx2/wiki for VerSe 2020 and
https://osf.io/923ap/ for VerSe 2019)::

    ROOT/dataset-01training/rawdata/sub-gl003/sub-gl003_dir-ax_ct.nii.gz
    ROOT/dataset-01training/derivatives/sub-gl003/sub-gl003_dir-ax_seg-vert_msk.nii.gz
    ROOT/dataset-02validation/...        ROOT/dataset-03test/...

``ROOT`` may also be one of those folders (holding ``rawdata/`` and ``derivatives/``). The
split comes from the folder name (…training / …validation / …test).

Mask values (same wiki): 1-7 C1-C7, 8-19 T1-T12, 20-25 L1-L6, 28 T13; 26 and 27 (sacrum,
coccyx) are "not labeled in this dataset", so any value outside 0-25 and 28 is an error.
Each vertebra is split geometrically into body (1) and posterior elements (2)
(:mod:`.vertebra_split`); C1, which has no body, is all posterior elements. Annotated
classes: 0, 1, 2. Lesion, cord, thecal sac and discs are not annotated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spinelesion.data.adapters.base import Case, check_values, read_label_volume, require_file, require_root
from spinelesion.data.adapters.vertebra_split import split_vertebrae
from spinelesion.errors import LabelMapError
from spinelesion.io.scan import Scan
from spinelesion.labels import BACKGROUND, POSTERIOR_ELEMENTS, VERTEBRAL_BODY

#: VerSe mask value -> level name.
LEVELS: dict[int, str] = {
    **{v: f"C{v}" for v in range(1, 8)},
    **{v: f"T{v - 7}" for v in range(8, 20)},
    **{v: f"L{v - 19}" for v in range(20, 26)},
    28: "T13",
}
ATLAS = 1
IMAGE_SUFFIX = "_ct.nii.gz"
MASK_SUFFIX = "_seg-vert_msk.nii.gz"


class VerSeAdapter:
    name = "verse"
    annotated_classes: tuple[int, ...] = (BACKGROUND, VERTEBRAL_BODY, POSTERIOR_ELEMENTS)

    def find_cases(self, root: Path) -> list[Case]:
        """One case per ``rawdata/sub-*/*_ct.nii.gz``; its mask must exist under ``derivatives``."""
        root = require_root(root, dataset="VerSe")
        rawdata_dirs = [root / "rawdata"] if (root / "rawdata").is_dir() else sorted(root.glob("*/rawdata"))
        if not rawdata_dirs:
            raise LabelMapError(f"{root}: no rawdata/ folder (expected ROOT/rawdata or ROOT/<split>/rawdata)")
        cases: list[Case] = []
        for rawdata in rawdata_dirs:
            split = _split_of(rawdata.parent.name)
            for image in sorted(rawdata.glob(f"sub-*/*{IMAGE_SUFFIX}")):
                stem = image.name[: -len(IMAGE_SUFFIX)]
                mask = rawdata.parent / "derivatives" / image.parent.name / f"{stem}{MASK_SUFFIX}"
                require_file(mask, what=f"VerSe vertebra mask for {image.name}")
                cases.append(Case(case_id=stem, image=image, label=mask, dataset=self.name,
                                  annotated_classes=self.annotated_classes, split=split, modality="CT"))
        if not cases:
            raise LabelMapError(f"{root}: no rawdata/sub-*/*{IMAGE_SUFFIX} images found")
        return sorted(cases, key=lambda case: case.case_id)

    def load_labels(self, case: Case, *, like: Scan) -> np.ndarray:
        """(X, Y, Z) uint8: vertebrae split into body (1) and posterior elements (2), else 0."""
        instances = read_label_volume(case.label, like=like)
        check_values(instances, known=set(LEVELS), path=case.label)
        return split_vertebrae(instances, affine=like.affine, posterior_only=(ATLAS,))


def _split_of(folder_name: str) -> str | None:
    name = folder_name.lower()
    for key, split in (("train", "train"), ("valid", "validation"), ("test", "test")):
        if key in name:
            return split
    return None
