"""A PHI-free description of a scan, for ``spinelesion inspect`` and run reports."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from spinelesion.io.load import load_scan


def describe(path: str | os.PathLike, *, series_uid: str | None = None,
             volume_index: int | None = None) -> dict:
    """Load ``path`` and return shape, spacing, orientation, modality and intensity range.

    For a DICOM folder the result also lists every image series found ("series"), with the
    one loaded marked by ``series_instance_uid``. No patient name, ID or birth date is read.
    """
    path = Path(path)
    info: dict = {}
    if path.is_dir():
        from spinelesion.io.dicom import list_series

        info["series"] = [s.summary() for s in list_series(path)]
    scan = load_scan(path, series_uid=series_uid, volume_index=volume_index)
    rotation = scan.affine[:3, :3] / np.asarray(scan.spacing_mm)[None, :]
    p1, p99 = np.percentile(scan.array, [1, 99])
    info.update(
        source=scan.source,
        shape=list(scan.shape),
        spacing_mm=[round(s, 4) for s in scan.spacing_mm],
        orientation=scan.orientation,
        oblique=bool(np.abs(np.abs(rotation) - np.round(np.abs(rotation))).max() > 1e-3),
        modality=scan.modality,
        modality_source=scan.extra.get("modality_source"),
        intensity_min=float(scan.array.min()),
        intensity_max=float(scan.array.max()),
        intensity_p1=float(p1),
        intensity_p99=float(p99),
        affine=np.round(scan.affine, 4).tolist(),
    )
    if scan.dicom is not None:
        info["series_instance_uid"] = scan.dicom.series_instance_uid
    return info
