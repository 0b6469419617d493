"""Write label maps on the exact grid of their source scan, atomically."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from spinelesion.errors import LabelMapError
from spinelesion.io.atomic import atomic_path
from spinelesion.io.layout import as_fortran_order
from spinelesion.io.load import ITK_SUFFIXES, NIFTI_SUFFIXES
from spinelesion.io.scan import LPS_TO_RAS
from spinelesion.io.scan import Scan


def save_labels(labels: np.ndarray, *, like: Scan, path: str | os.PathLike) -> Path:
    """Write an integer label map on ``like``'s grid: same shape, same voxel order, same affine.

    Args:
        labels: (X, Y, Z) integer array, shape equal to ``like.shape``, values 0..255.
        like: the scan the labels were made for.
        path: ``.nii``/``.nii.gz`` (NIfTI, sform and qform set) or ``.mha``/``.nrrd``.

    Returns:
        The path written. The file appears only once complete (temporary file, then rename).
    """
    path = Path(path)
    labels = np.asarray(labels)
    if labels.shape != like.shape:
        raise LabelMapError(f"{path}: label map shape {labels.shape} differs from the scan's {like.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise LabelMapError(f"{path}: label values must lie in 0..255, got {labels.min()}..{labels.max()}")
    return _write_volume(labels, dtype=np.uint8, affine=like.affine, path=path, what="label")


def save_probabilities(probabilities: np.ndarray, *, like: Scan, path: str | os.PathLike) -> Path:
    """Write (C, X, Y, Z) class probabilities on ``like``'s grid as a 4D NIfTI (X, Y, Z, C), uint8
    scaled 0..255 (scl_slope 1/255), with the scan's affine in sform and qform, atomically."""
    path = Path(path)
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 4 or probabilities.shape[1:] != like.shape:
        raise LabelMapError(f"{path}: probabilities of shape {probabilities.shape} do not fit the scan's "
                            f"(C, {', '.join(map(str, like.shape))})")
    if not path.name.lower().endswith(NIFTI_SUFFIXES):
        raise LabelMapError(f"{path}: probabilities are written as NIfTI (.nii.gz or .nii)")
    import nibabel as nib

    data = np.empty((*like.shape, probabilities.shape[0]), dtype=np.uint8, order="F")
    for c in range(probabilities.shape[0]):  # a class at a time: no float copy of the whole 4D array
        data[..., c] = as_fortran_order(_to_uint8(probabilities[c]), dtype=np.uint8)  # threaded reorder
    img = nib.Nifti1Image(data, like.affine)
    img.set_sform(like.affine, code=1)
    img.set_qform(like.affine, code=1)
    img.header.set_xyzt_units("mm")
    img.header["scl_slope"], img.header["scl_inter"] = 1 / 255, 0
    with atomic_path(path) as tmp:
        save_nifti(img, tmp)
    return path


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """(X, Y, Z) probabilities 0..1 -> uint8 0..255, rounded half to even as ``np.rint`` (torch's
    threaded element-wise ops: numpy's five passes took 2-4 s a class on a 512x512x600 grid)."""
    import torch

    return torch.from_numpy(np.asarray(values)).float().mul_(255).round_().clamp_(0, 255).to(torch.uint8).numpy()


def save_image(scan: Scan, *, path: str | os.PathLike, dtype=np.float32) -> Path:
    """Write a scan's voxels on its own grid (NIfTI or MHA/NRRD by extension), atomically.

    ``dtype`` is the stored voxel type; an integer type rounds and clips (e.g. int16 for HU).
    """
    data = scan.array
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        data = np.clip(np.rint(data), info.min, info.max)
    return _write_volume(data, dtype=dtype, affine=scan.affine, path=Path(path), what="image")


def _write_volume(data: np.ndarray, *, dtype, affine: np.ndarray, path: Path, what: str) -> Path:
    """Write (X, Y, Z) ``data`` as ``dtype`` with ``affine`` as NIfTI or MHA/NRRD (by extension), atomically."""
    name = path.name.lower()
    if not name.endswith((*NIFTI_SUFFIXES, *ITK_SUFFIXES)):
        raise LabelMapError(f"{path}: unknown {what} file type (use .nii.gz, .nii, .mha or .nrrd)")
    data = as_fortran_order(data, dtype=dtype)
    with atomic_path(path) as tmp:
        (_write_nifti if name.endswith(NIFTI_SUFFIXES) else _write_itk)(data, affine, tmp)
    return path


def _write_nifti(labels: np.ndarray, affine: np.ndarray, path: Path) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(labels, affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)  # qform cannot hold shear; readers prefer the sform
    img.header.set_xyzt_units("mm")
    save_nifti(img, path)


#: Most threads that deflate one ``.nii.gz`` (each holds a block of about 1 MB).
MAX_DEFLATE_THREADS = 4


def save_nifti(img, path: Path) -> None:
    """``nib.save(img, path)``; a ``.nii.gz`` is compressed by ISA-L's igzip at level 1 when the
    ``isal`` package is installed (about 8 times faster than nibabel's zlib level 1, and smaller
    for label maps), in blocks on up to ``MAX_DEFLATE_THREADS`` threads (one gzip member, as pigz
    writes it: the viewer's copy of a body CT 0.36 -> 0.25 s on the 2 cores here). The uncompressed
    NIfTI bytes are the same either way."""
    import nibabel as nib

    if not str(path).lower().endswith(".gz"):
        nib.save(img, str(path))
        return
    try:
        from isal import igzip_threaded
    except ImportError:
        nib.save(img, str(path))
        return
    from spinelesion.io.layout import available_cores

    threads = min(MAX_DEFLATE_THREADS, available_cores())
    with igzip_threaded.open(path, "wb", compresslevel=1, threads=threads) as stream:
        holder = nib.FileHolder(fileobj=_ForwardWriter(stream))
        img.to_file_map({"image": holder, "header": holder})


class _ForwardWriter(io.RawIOBase):
    """A write-only stream that can "seek" forward only (zeros fill the gap), as nibabel asks of the
    file it writes a NIfTI into (the threaded gzip writer cannot seek at all)."""

    def __init__(self, stream):
        super().__init__()
        self.stream, self.position = stream, 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data) -> int:
        n = self.stream.write(data)
        self.position += n
        return n

    def tell(self) -> int:
        return self.position

    def seek(self, position: int, whence: int = 0) -> int:
        target = position if whence == 0 else self.position + position if whence == 1 else None
        if target is None or target < self.position:
            raise OSError("a compressed NIfTI is written front to back")
        if target > self.position:
            self.write(bytes(target - self.position))
        return self.position

    def flush(self) -> None:
        self.stream.flush()


def _write_itk(labels: np.ndarray, affine: np.ndarray, path: Path) -> None:
    import SimpleITK as sitk

    affine_lps = LPS_TO_RAS @ affine
    spacing = np.linalg.norm(affine_lps[:3, :3], axis=0)
    direction = affine_lps[:3, :3] / spacing[None, :]
    img = sitk.GetImageFromArray(np.transpose(labels, (2, 1, 0)))
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in affine_lps[:3, 3]))
    img.SetDirection(tuple(float(d) for d in direction.ravel()))
    sitk.WriteImage(img, str(path), useCompression=True)
