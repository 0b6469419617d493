"""SPIDER lumbar spine MRI (sagittal T1, T2, T2 SPACE; vertebrae, discs and spinal canal).

Layout (Zenodo record 10.5281/zenodo.10159290: images.zip, masks.zip, overview.csv;
van der Graaf et al., Sci Data 11, 264 (2024))::

    ROOT/images/1_t1.mha   ROOT/images/1_t2.mha   ROOT/images/107_t2_SPACE.mha ...
    ROOT/masks/1_t1.mha    ...                    (same file name as its image)
    ROOT/overview.csv      optional; columns new_file_name (the file stem) and subset
                           (training / validation)

Mask values (SPIDER challenge label description, grand-challenge "SPIDER Baseline IIS"):
1-25 vertebrae numbered from the bottom, 100 spinal canal, 101-125 vertebrae only partly in
the field of view, 201-225 intervertebral discs. Mapping: vertebrae (both kinds) -> body (1) /
posterior elements (2), split geometrically with the labelled canal marking the canal's front
(:mod:`.vertebra_split`); discs -> 6. The canal is NOT mapped: it holds cord, conus, cauda
equina and CSF in one label, so it can teach neither cord (4) nor thecal sac (5) and is left
background with both classes unannotated. Annotated classes: 0, 1, 2, 6.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spinelesion.data.adapters.base import (Case, check_values, read_label_volume, read_splits, require_file,
                                            require_root)
from spinelesion.data.adapters.vertebra_split import split_vertebrae
from spinelesion.errors import LabelMapError
from spinelesion.io.scan import Scan
from spinelesion.labels import BACKGROUND, DISC, POSTERIOR_ELEMENTS, VERTEBRAL_BODY

VERTEBRA_VALUES = set(range(1, 26)) | set(range(101, 126))
CANAL_VALUE = 100
DISC_VALUES = set(range(201, 226))


class SpiderAdapter:
    name = "spider"
    annotated_classes: tuple[int, ...] = (BACKGROUND, VERTEBRAL_BODY, POSTERIOR_ELEMENTS, DISC)

    def find_cases(self, root: Path) -> list[Case]:
        """One case per ``images/*.mha`` with its mask ``masks/<same name>``."""
        root = require_root(root, dataset="SPIDER")
        images = sorted((root / "images").glob("*.mha"))
        if not images:
            raise LabelMapError(f"{root / 'images'}: no SPIDER .mha images found")
        splits = read_splits(root / "overview.csv", key="new_file_name", split="subset")
        cases = []
        for image in images:
            mask = require_file(root / "masks" / image.name, what=f"SPIDER mask for {image.name}")
            cases.append(Case(case_id=image.stem, image=image, label=mask, dataset=self.name,
                              annotated_classes=self.annotated_classes, split=splits.get(image.stem),
                              modality="MR"))
        return cases

    def load_labels(self, case: Case, *, like: Scan) -> np.ndarray:
        """(X, Y, Z) uint8: vertebrae split into body/posterior elements, discs 6, else 0."""
        source = read_label_volume(case.label, like=like)
        check_values(source, known=VERTEBRA_VALUES | DISC_VALUES | {CANAL_VALUE}, path=case.label)
        vertebrae = np.where(np.isin(source, list(VERTEBRA_VALUES)), source, 0)
        labels = split_vertebrae(vertebrae, affine=like.affine, canal=source == CANAL_VALUE)
        labels[np.isin(source, list(DISC_VALUES))] = DISC
        return labels

