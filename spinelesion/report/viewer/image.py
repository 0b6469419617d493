"""The viewer's copy of a scan: ``viewer_image.nii.gz``, the voxels NiiVue shows under the labels.

The input may be DICOM, MHA/NRRD or a NIfTI elsewhere on disk; the browser can only read what the
run folder holds, so the case step writes this copy beside ``labels.nii.gz``. It sits exactly where
the input does: the same (X, Y, Z) voxel order and the scan's own voxel -> RAS+ affine, in the sform
and the qform (a shear only the sform can hold; NiiVue, like nibabel, reads the sform when its code is
at least the qform's). It carries nothing but voxels and geometry: ``descrip`` stays empty, no
extensions, no intent. Voxels are int16, ``round(value / scl_slope)``: ``scl_slope`` is 1 when the
values fit int16 and are whole numbers (CT in HU) or span 256 units or more (rounding then moves a value
by at most 0.5 of them), else the largest magnitude over 32767 (MR intensities of 0..1 or 0..60000).
Cost on a 512 x 512 x 600 CT, two cores, ISA-L gzip level 1, whole scan: 0.7 s and 54 MB for smooth 3 mm
anatomy, 1.5-1.9 s and 168 MB with 15 HU of noise (the file is mostly the noise). So the copy holds the
labelled region and ``MARGIN_MM`` around it (``box``), on the same voxels: the viewer is for the spine,
and an axial CT's spine with its surroundings is a quarter of its slices' area or less.
"""

from __future__ import annotations

import os
from pathlib import Path

#: File name of the copy in a case folder.
VIEWER_IMAGE = "viewer_image.nii.gz"

#: Scan kept around the labelled region in the copy (mm, each side, along each voxel axis).
MARGIN_MM = 50.0

_INT16_MAX = 32767
#: Planes converted at a time (bounds the float temporaries: 8 x 512 x 512 float32 = 8 MiB).
_PLANES = 8


def viewer_slope(*, low: float, high: float, integer_valued: bool) -> float:
    """``scl_slope`` for voxels in ``low..high``: 1 when they fit int16 and are whole numbers (or span
    256 units or more, where rounding to 1 is below 0.2 % of the range), else the range over 32767."""
    reach = max(abs(float(low)), abs(float(high)))
    if reach <= _INT16_MAX and (integer_valued or float(high) - float(low) >= 256):
        return 1.0
    return reach / _INT16_MAX if reach > 0 else 1.0


def label_box(labels, affine, *, margin_mm: float = MARGIN_MM) -> tuple[slice, slice, slice] | None:
    """Voxel box of the labelled voxels of an (X, Y, Z) label map with ``margin_mm`` around them
    (per axis, from that axis' spacing), within the grid; None when nothing is labelled."""
    import numpy as np

    from spinelesion.measure.geometry import crop_box

    box = crop_box(np.asarray(labels), margin=0)  # nonzero voxels: no whole-volume mask made
    if box is None:
        return None
    spacing = np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)
    pad = np.ceil(margin_mm / spacing).astype(int)
    return tuple(slice(max(0, b.start - int(m)), min(n, b.stop + int(m)))
                 for b, m, n in zip(box, pad, np.shape(labels)))


def save_viewer_image(scan, *, path: str | os.PathLike, box: tuple[slice, slice, slice] | None = None) -> Path:
    """Write ``scan``'s voxels as an int16 NIfTI on its own grid, atomically; return ``path``.

    Args:
        scan: a :class:`spinelesion.io.scan.Scan` ((X, Y, Z) float32 voxels, 4x4 RAS+ affine in mm).
        path: a ``.nii.gz`` (or ``.nii``) file; it appears only once complete.
        box: voxel box (three slices) of the scan to keep (:func:`label_box`), None for all of it; its
            voxels keep their world positions (the affine moves to the box's first voxel).
    """
    import nibabel as nib
    import numpy as np

    from spinelesion.io.atomic import atomic_path
    from spinelesion.io.layout import as_fortran_order
    from spinelesion.io.save import save_nifti

    data, affine = scan.array, np.asarray(scan.affine, np.float64)
    if box is not None:
        data = data[tuple(box)]
        affine = affine.copy()
        affine[:3, 3] += affine[:3, :3] @ np.array([b.start or 0 for b in box], float)
    if data.size == 0:
        raise ValueError(f"{path}: the scan has no voxels")
    low, high = float(np.min(data)), float(np.max(data))
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"{path}: the scan holds NaN or infinite values")
    sample = data.reshape(-1)[:: max(1, data.size // 100_000)] if data.flags.c_contiguous else data[::7, ::7, ::3]
    slope = viewer_slope(low=low, high=high, integer_valued=bool(np.all(sample == np.rint(sample))))
    out = _as_int16(data, slope=slope)
    img = nib.Nifti1Image(as_fortran_order(out, dtype=np.int16), affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm")
    img.header["scl_slope"], img.header["scl_inter"] = slope, 0.0
    img.header["descrip"] = b""
    path = Path(path)
    with atomic_path(path) as tmp:
        save_nifti(img, tmp)
    return path


def _as_int16(data, *, slope: float):
    """``round(data / slope)`` clipped to int16, in ``data``'s memory order, a few planes at a time
    along its slowest axis (no whole-volume float temporary)."""
    import numpy as np

    fortran = data.flags.f_contiguous and not data.flags.c_contiguous
    axis = 2 if fortran else 0
    out = np.empty(data.shape, np.int16, order="F" if fortran else "C")
    for start in range(0, data.shape[axis], _PLANES):
        index = [slice(None)] * 3
        index[axis] = slice(start, start + _PLANES)
        block = np.array(data[tuple(index)], dtype=np.float32, copy=True)
        if slope != 1.0:
            block /= np.float32(slope)
        np.rint(block, out=block)
        np.clip(block, -_INT16_MAX - 1, _INT16_MAX, out=block)
        out[tuple(index)] = block
    return out
