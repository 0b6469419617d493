"""Dataset adapters: public spine datasets -> (scan, schema v1 labels, annotated classes).

Usage::

    adapter = get_adapter("verse")
    for case in adapter.find_cases(Path("data/verse")):
        scan, labels, annotated = load_case(case)

Where to get each dataset and how to lay it out: ``data/README.md``.
"""

from __future__ import annotations

import numpy as np

from spinelesion.data.adapters.base import Adapter, Case, annotated_mask
from spinelesion.data.adapters.labelmaps import LabelMapsAdapter
from spinelesion.data.adapters.msd import MSDAdapter
from spinelesion.data.adapters.spider import SpiderAdapter
from spinelesion.data.adapters.spinemets import SpineMetsAdapter
from spinelesion.data.adapters.tissue import TissueAdapter
from spinelesion.data.adapters.totalseg import TotalSegmentatorAdapter
from spinelesion.data.adapters.verse import VerSeAdapter
from spinelesion.errors import ConfigError
from spinelesion.io.scan import Scan

#: adapter name -> adapter class.
ADAPTERS: dict[str, type] = {
    "msd": MSDAdapter,
    "verse": VerSeAdapter,
    "totalsegmentator": TotalSegmentatorAdapter,
    "spider": SpiderAdapter,
    "spinemets": SpineMetsAdapter,
    "tissue": TissueAdapter,
    "labelmaps": LabelMapsAdapter,
}


def get_adapter(name: str) -> Adapter:
    """The adapter called ``name``; ConfigError listing the known names otherwise."""
    try:
        return ADAPTERS[name]()
    except KeyError:
        raise ConfigError(f"unknown dataset adapter {name!r}; choose one of {', '.join(ADAPTERS)}") from None


def load_case(case: Case) -> tuple[Scan, np.ndarray, np.ndarray]:
    """Load one case.

    Returns:
        scan: the image as :func:`spinelesion.io.load_scan` reads it (modality from the dataset
            when the dataset says).
        labels: (X, Y, Z) uint8 schema v1 labels on the scan's exact grid.
        annotated: (NUM_CLASSES,) bool, True for the classes this case annotates; the loss must
            ignore the others (a 0 voxel may belong to an unannotated class).

    Raises:
        ScanLoadError for an unreadable image, LabelMapError for a label that does not fit.
    """
    from spinelesion.io.load import load_scan

    scan = load_scan(case.image, modality=case.modality)
    labels = get_adapter(case.dataset).load_labels(case, like=scan)
    return scan, labels, annotated_mask(case.annotated_classes)


__all__ = ["ADAPTERS", "Adapter", "Case", "annotated_mask", "get_adapter", "load_case"]
