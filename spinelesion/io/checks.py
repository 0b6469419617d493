"""Checks an input must pass before it is segmented."""

from __future__ import annotations

import numpy as np

from spinelesion.errors import NotAScanError, ScanLoadError
from spinelesion.io.scan import Scan

#: A volume of non-negative integers with at most this many distinct values is a label map.
MAX_LABEL_VALUES = 64


def require_image(scan: Scan, *, hint: str = "give the images only") -> None:
    """Raise NotAScanError (a ScanLoadError) when ``scan`` looks like a segmentation rather than an image.

    A label map (a mask, a TotalSegmentator or nnU-Net output) found beside the scans would
    otherwise be segmented as if it were an MR and measured: a silent wrong answer. A label map
    holds a few non-negative integers; CT holds thousands of HU values, MR hundreds of grey
    levels at least. A subsample decides for large volumes; only a volume that looks like a label
    map there is checked in full.
    """
    array = scan.array
    if _label_values(_subsample(array)) is None:
        return
    values = _label_values(array)
    if values is not None and len(values) >= 2:  # a constant volume says nothing either way (require_signal)
        raise NotAScanError(f"{scan.source}: looks like a segmentation, not a scan ({len(values)} distinct "
                            f"integer values, {values.min():g}..{values.max():g}); {hint}")


def require_signal(scan: Scan) -> None:
    """Raise ScanLoadError when every voxel of ``scan`` holds one value: a blank or failed export, with
    nothing to segment (the network would still draw a spine in it)."""
    array = scan.array
    sample = _subsample(array)
    if sample.size == 0 or sample.min() != sample.max():  # a subsample with two values decides at once
        return
    if array.min() == array.max():
        raise ScanLoadError(f"{scan.source}: every voxel holds the same value ({float(array.flat[0]):g}): "
                            "no image to segment (a blank or failed export?)")


def _subsample(array: np.ndarray) -> np.ndarray:
    """Every k-th voxel along each axis of an (X, Y, Z) array, about a million in all (a view, no copy)."""
    step = max(1, int(round((array.size / 1e6) ** (1 / 3))))
    return array[::step, ::step, ::step]


def _label_values(array: np.ndarray) -> np.ndarray | None:
    """The distinct values of ``array`` when they are at most MAX_LABEL_VALUES non-negative integers."""
    values = np.unique(array)
    if len(values) > MAX_LABEL_VALUES or values[0] < 0 or not np.all(values == np.round(values)):
        return None
    return values
