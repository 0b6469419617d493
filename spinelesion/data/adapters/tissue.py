"""Tissue-map datasets (``spinelesion synth --context`` output): train on images synthesised on the fly.

Layout: an MSD datalist whose entries also name a ``tissue`` map (tissue classes of
:mod:`spinelesion.synthesis.tissues` on the label's grid)::

    ROOT/dataset.json   {"training": [{"image": ..., "label": ..., "tissue": "tissueTr/x.nii.gz"}, ...],
                         "validation": [...]}

Training cases read the tissue map as their "image": the training step turns it into a new image
every time (:func:`spinelesion.synthesis.synthesize`). Validation cases keep the rendered image,
so validation measures the network on an appearance family it was not trained on.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from spinelesion.data.adapters.base import Case, read_label_volume, require_file
from spinelesion.data.adapters.msd import MSDAdapter
from spinelesion.errors import LabelMapError
from spinelesion.io.scan import Scan


class TissueAdapter:
    name = "tissue"
    annotated_classes = MSDAdapter.annotated_classes

    def find_cases(self, root: Path) -> list[Case]:
        """MSD cases; training cases point their ``image`` at the entry's tissue map."""
        cases = MSDAdapter().find_cases(root)
        root = Path(root)
        json_path = root if root.suffix == ".json" else root / "dataset.json"
        datalist = json.loads(json_path.read_text())
        tissue = {}
        for entry in datalist.get("training", []):
            if "tissue" not in entry:
                raise LabelMapError(f"{json_path}: training entry {entry.get('image')!r} has no 'tissue' map "
                                    f"(make the dataset with `spinelesion synth --context`)")
            tissue[Path(entry["image"]).name] = require_file(json_path.parent / entry["tissue"], what="tissue map")
        out = []
        for case in cases:
            if case.split == "validation":
                out.append(replace(case, dataset="msd"))
            else:
                out.append(replace(case, image=tissue[Path(case.image).name], dataset=self.name, modality=None))
        return out

    def load_labels(self, case: Case, *, like: Scan) -> np.ndarray:
        return MSDAdapter().load_labels(case, like=like)


def read_tissue(path: Path, *, like: Scan) -> np.ndarray:
    """(X, Y, Z) uint8 tissue classes on ``like``'s grid."""
    return np.asarray(read_label_volume(path, like=like), dtype=np.uint8)
