"""``load_scan``: any supported file or folder -> :class:`Scan` with RAS+ world geometry."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from spinelesion.errors import ScanLoadError
from spinelesion.io.layout import as_c_order
from spinelesion.io.scan import Scan

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
#: Voxel-axis flips that turn ITK's LPS+ world into RAS+.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def load_scan(path: str | os.PathLike, *, series_uid: str | None = None,
              volume_index: int | None = None, modality: str | None = None) -> Scan:
    """Load a 3D scan from NIfTI, MHA/MHD, NRRD, a DICOM series folder or a multi-frame DICOM file.

    Args:
        path: a file, or a folder holding DICOM files (searched recursively).
        series_uid: SeriesInstanceUID to pick when a DICOM folder holds several series.
        volume_index: which volume of a 4D image to take; a 4D image without it is an error.
        modality: "CT" or "MR" to override what the file says (or does not say).

    Returns:
        A :class:`Scan` whose (X, Y, Z) float32 array is in the source's own voxel order and whose
        affine maps voxel indices to RAS+ millimetres. For sources without a modality tag the
        modality is guessed from the intensities (recorded in ``scan.extra["modality_source"]``).

    Raises:
        ScanLoadError (or its subclass DicomSeriesError): missing path, empty folder, non-image
        file, corrupt file, 2D or 4D image, NaN/Inf voxels, DICOM gaps or mixed series, missing
        decoder. The message names the path and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise ScanLoadError(f"{path}: no such file or folder")
    if path.is_dir():
        from spinelesion.io.dicom import load_dicom_folder

        scan = load_dicom_folder(path, series_uid=series_uid)
    else:
        name = path.name.lower()
        if name.endswith(NIFTI_SUFFIXES):
            scan = _load_nifti(path, volume_index=volume_index)
        elif name.endswith(ITK_SUFFIXES):
            scan = _load_itk(path, volume_index=volume_index)
        else:
            from spinelesion.io.dicom import load_dicom_file

            scan = load_dicom_file(path)
    _check_finite(scan.array, path)
    return _with_modality(scan, modality)


def guess_modality(array: np.ndarray) -> str:
    """Guess "CT" or "MR" from intensities: CT in HU has air near -1000 and bone above +300."""
    sample = array[:: max(1, array.shape[0] // 64), :: max(1, array.shape[1] // 64), :]
    low, high = np.percentile(sample, [1, 99.9])
    return "CT" if low < -500 and high > 150 else "MR"


def _with_modality(scan: Scan, modality: str | None) -> Scan:
    if modality is not None:
        modality = modality.upper()
        if modality not in ("CT", "MR"):
            raise ScanLoadError(f"modality must be CT or MR, got {modality!r}")
        source = "user"
    elif scan.modality is not None:
        modality, source = scan.modality, "header"
    else:
        modality, source = guess_modality(scan.array), "guessed"
    return Scan(array=scan.array, affine=scan.affine, modality=modality, source=scan.source,
                dicom=scan.dicom, extra={**scan.extra, "modality_source": source})


def _check_finite(array: np.ndarray, path: Path) -> None:
    # A float64 sum of float32 voxels cannot overflow (|v| < 3.5e38, far fewer than 1e200 voxels),
    # so it is finite exactly when every voxel is: one cheap pass, the count only on failure.
    with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf
        if np.isfinite(np.sum(array, dtype=np.float64)):
            return
    bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise ScanLoadError(f"{path}: {bad} voxels are NaN or infinite")


def to_3d(array: np.ndarray, path: Path, volume_index: int | None) -> np.ndarray:
    """Return the (X, Y, Z) volume of a 3D or 4D (X, Y, Z, T) array, or raise for other ranks."""
    while array.ndim > 3 and array.shape[-1] == 1 and volume_index is None:
        array = array[..., 0]
    if array.ndim == 2 or (array.ndim == 3 and min(array.shape) == 1):
        raise ScanLoadError(f"{path}: 2D image (shape {array.shape}); a 3D volume is needed")
    if array.ndim == 4:
        if volume_index is None:
            raise ScanLoadError(
                f"{path}: 4D image with {array.shape[3]} volumes; save the one to segment as a 3D file "
                "(load_scan(volume_index=N) picks one in Python; `spinelesion inspect --volume N` shows it)")
        if not 0 <= volume_index < array.shape[3]:
            raise ScanLoadError(f"{path}: volume index {volume_index} outside 0..{array.shape[3] - 1}")
        array = array[..., volume_index]
    elif volume_index not in (None, 0):
        raise ScanLoadError(f"{path}: volume index {volume_index} given but the image is 3D")
    if array.ndim != 3:
        raise ScanLoadError(f"{path}: {array.ndim}D image (shape {array.shape}); a 3D volume is needed")
    if min(array.shape) < 2:
        raise ScanLoadError(f"{path}: 2D image (shape {array.shape}, a single slice); a 3D volume is needed")
    return array


def _load_nifti(path: Path, *, volume_index: int | None) -> Scan:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        array = _nifti_voxels(img, path)
    except (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError,
            *_igzip_errors()) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ScanLoadError(f"{path}: not a readable NIfTI file ({reason})") from None
    if array.dtype.kind == "c" or array.dtype.names:
        raise ScanLoadError(f"{path}: unsupported voxel type {array.dtype}")
    array = to_3d(array, path, volume_index)
    return Scan(array=as_c_order(array, dtype=np.float32), affine=np.asarray(img.affine, dtype=np.float64),
                modality=None, source=f"NIfTI {path.name}")


def _nifti_voxels(img, path: Path) -> np.ndarray:
    """The voxels of a nibabel NIfTI image, scaled as nibabel scales them.

    A ``.nii.gz`` is inflated with ISA-L's igzip (package ``isal``) when it is installed: the same
    bytes about twice as fast as zlib, which sets the pace of reading a large gzipped scan.
    Without ``isal`` nibabel reads the file itself.
    """
    if not path.name.lower().endswith(".gz"):
        return np.asarray(img.dataobj)
    try:
        from isal import igzip
    except ImportError:
        return np.asarray(img.dataobj)
    on_disk = img.dataobj  # shape, stored type, data offset and scaling as nibabel read them
    spec = (on_disk.shape, on_disk.dtype, on_disk.offset, on_disk.slope, on_disk.inter)
    with igzip.open(path, "rb") as stream:
        return np.asarray(type(on_disk)(stream, spec, mmap=False, order=on_disk.order))


def _igzip_errors() -> tuple[type[BaseException], ...]:
    """Exception types igzip raises for corrupt data (none without ``isal``)."""
    try:
        from isal.isal_zlib import error
    except ImportError:
        return ()
    return (error,)


def _load_itk(path: Path, *, volume_index: int | None) -> Scan:
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as err:
        first_line = str(err).strip().splitlines()[-1] if str(err).strip() else "unreadable"
        raise ScanLoadError(f"{path}: not a readable image file ({first_line})") from None
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise ScanLoadError(f"{path}: {img.GetNumberOfComponentsPerPixel()}-component (vector/RGB) image; "
                            "a scalar volume is needed")
    dim = img.GetDimension()
    array = sitk.GetArrayFromImage(img)  # (T?, Z, Y, X)
    array = np.transpose(array, tuple(range(dim - 1, -1, -1)))  # (X, Y, Z, T?)
    spacing = np.array(img.GetSpacing()[:3], dtype=np.float64)
    origin = np.array(img.GetOrigin()[:3], dtype=np.float64)
    direction = np.array(img.GetDirection(), dtype=np.float64).reshape(dim, dim)[:3, :3]
    if dim == 2:
        raise ScanLoadError(f"{path}: 2D image (shape {array.shape}); a 3D volume is needed")
    array = to_3d(array, path, volume_index)
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = direction * spacing[None, :]
    affine_lps[:3, 3] = origin
    return Scan(array=as_c_order(array, dtype=np.float32), affine=LPS_TO_RAS @ affine_lps, modality=None,
                source=f"{path.suffix.lstrip('.').upper()} {path.name}")
