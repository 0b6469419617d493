"""``load_scan``: any supported file or folder -> :class:`Scan` with RAS+ world geometry."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import zlib
from pathlib import Path

import numpy as np

from spinelesion.errors import ScanLoadError
from spinelesion.io.layout import as_c_order
from spinelesion.io.scan import LPS_TO_RAS, Scan

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")


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
    try:
        scan = _load_any(path, series_uid=series_uid, volume_index=volume_index)
    except ScanLoadError:
        raise
    except MemoryError:
        raise ScanLoadError(f"{path}: not enough memory to read this scan (is its header's size right?)") from None
    except Exception as err:  # noqa: BLE001 - a corrupt file can break a reader anywhere: one line, no traceback
        raise ScanLoadError(f"{path}: unreadable or corrupt file ({type(err).__name__}: {_first_line(err)})") from None
    check_geometry(scan.affine, path)
    _check_finite(scan.array, path)
    return _with_modality(scan, modality)


def _load_any(path: Path, *, series_uid: str | None, volume_index: int | None) -> Scan:
    if path.is_dir():
        from spinelesion.io.dicom import load_dicom_folder

        return load_dicom_folder(path, series_uid=series_uid)
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return _load_nifti(path, volume_index=volume_index)
    if name.endswith(ITK_SUFFIXES):
        return _load_itk(path, volume_index=volume_index)
    from spinelesion.io.dicom import load_dicom_file

    return load_dicom_file(path)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return " ".join(text.splitlines()[0].split())[:200] if text else "no detail"


def check_geometry(affine: np.ndarray, path) -> None:
    """ScanLoadError naming ``path`` unless ``affine`` is a finite voxel -> world map with non-zero
    voxel sizes and independent axes (a zero, NaN or infinite spacing, or a singular orientation
    matrix, in a header gives no usable geometry: measurements in mm would be meaningless)."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise ScanLoadError(f"{path}: the header's voxel geometry is not finite (NaN or infinite spacing, "
                            "origin or orientation); fix the header (pixdim/sform/qform, ElementSpacing...)")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if not (spacing > 1e-6).all():
        raise ScanLoadError(f"{path}: the header gives a voxel size of "
                            f"{'x'.join(f'{s:.3g}' for s in spacing)} mm; every voxel size must be above 0")
    rotation = affine[:3, :3] / spacing[None, :]
    if abs(np.linalg.det(rotation)) < 1e-3:
        raise ScanLoadError(f"{path}: the header's orientation matrix is singular (two voxel axes point the same "
                            "way); the scan cannot be placed in space")


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
    import logging

    import nibabel as nib

    quiet = _Quiet(logging.getLogger("nibabel.global"))  # header fixes are logged, not our one line
    try:
        img = nib.load(str(path))
        check_declared_size(path, shape=img.dataobj.shape, dtype=img.dataobj.dtype,
                            offset=int(img.dataobj.offset), compressed=path.name.lower().endswith(".gz"))
        array = _gzipped_volume_c_order(img.dataobj, path) if volume_index is None else None
        if array is None:
            array = _nifti_voxels(img, path)
    except ScanLoadError:
        raise
    except MemoryError:
        raise ScanLoadError(f"{path}: not enough memory to read this NIfTI file's voxels") from None
    except Exception as err:  # noqa: BLE001 - nibabel raises many kinds (HeaderDataError, zlib, EOF...)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ScanLoadError(f"{path}: not a readable NIfTI file ({reason})") from None
    finally:
        quiet.restore()
    if array.dtype.kind == "c" or array.dtype.names:
        raise ScanLoadError(f"{path}: unsupported voxel type {array.dtype}")
    array = to_3d(array, path, volume_index)
    return Scan(array=as_c_order(array, dtype=np.float32), affine=np.asarray(img.affine, dtype=np.float64),
                modality=None, source=f"NIfTI {path.name}")


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _stderr_to(lines: list[str]):
    """Collect what C code writes to file descriptor 2 inside the block into ``lines`` (one thread at
    a time; Python's own sys.stderr writes in other threads may land there too while it runs)."""
    with _STDERR_LOCK, tempfile.TemporaryFile() as sink:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr to redirect
            yield
            return
        try:
            sys.stderr.flush()
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read(65536).decode("utf-8", "replace").splitlines())


class _Quiet:
    """Silence a logger until ``restore()`` (nibabel logs the header fields it fixes to stderr)."""

    def __init__(self, logger):
        self.logger, self.disabled = logger, logger.disabled
        logger.disabled = True

    def restore(self) -> None:
        self.logger.disabled = self.disabled


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


#: Bytes of stored voxels inflated at a time by :func:`_gzipped_volume_c_order` (a few planes: in cache).
INFLATE_CHUNK_BYTES = 8 * 2**20


def _gzipped_volume_c_order(on_disk, path: Path) -> np.ndarray | None:
    """The (X, Y, Z) float32 C-ordered voxels of a gzipped, unscaled 3D NIfTI, or None for any other
    file (the general path reads those).

    The file stores Z planes one after another (Fortran order); a reader thread inflates the next
    few planes with ISA-L (which releases the GIL) while this thread reorders and converts those
    already read into the output: the inflate and the reordering copy overlap, and no second
    whole-volume copy in the stored type is made. Values as :func:`_nifti_voxels` then
    :func:`~spinelesion.io.layout.as_c_order` give them.
    """
    if not path.name.lower().endswith(".gz") or on_disk.order != "F" or len(on_disk.shape) != 3:
        return None
    if min(on_disk.shape) < 2 or on_disk.dtype.kind not in "iuf":
        return None
    if not (on_disk.slope in (None, 1.0) and on_disk.inter in (None, 0.0)):
        return None
    try:
        from isal import igzip
    except ImportError:
        return None
    from concurrent.futures import ThreadPoolExecutor

    shape, dtype = tuple(int(n) for n in on_disk.shape), on_disk.dtype
    plane_bytes = shape[0] * shape[1] * dtype.itemsize
    step = max(1, INFLATE_CHUNK_BYTES // plane_bytes)
    out = np.empty(shape, dtype=np.float32)
    with igzip.open(path, "rb") as stream, ThreadPoolExecutor(max_workers=1, thread_name_prefix="inflate") as reader:
        stream.seek(int(on_disk.offset))

        def planes(z0: int) -> np.ndarray:
            n = min(step, shape[2] - z0)
            data = stream.read(n * plane_bytes)
            if len(data) != n * plane_bytes:
                raise ValueError(f"file ends early: {shape[2]} planes declared, {z0 + len(data) // plane_bytes} stored")
            return np.frombuffer(data, dtype=dtype).reshape((shape[0], shape[1], n), order="F")

        pending = reader.submit(planes, 0)
        for z0 in range(0, shape[2], step):
            chunk = pending.result()
            if z0 + step < shape[2]:
                pending = reader.submit(planes, z0 + step)
            out[:, :, z0:z0 + chunk.shape[2]] = chunk
    return out


#: Deflate cannot expand data more than about 1032 times: a larger claim is a corrupt header.
MAX_DEFLATE_RATIO = 1032


def _voxels(shape) -> str:
    return "x".join(str(int(n)) for n in shape)


def check_declared_size(path: Path, *, shape, dtype, offset: int, compressed: bool,
                        data_path: Path | None = None) -> None:
    """ScanLoadError naming ``path`` when the header claims more voxel bytes than the file can
    hold (truncated file or corrupt dimensions), or more memory than this machine has; checked
    before anything is allocated.

    Uncompressed: the data file must hold ``offset`` + the voxel bytes. Compressed: deflate expands
    at most ~1032 times; and a gzip file's trailer (ISIZE, the size modulo 2^32) smaller than the
    claim is confirmed by inflating the stream without keeping it (multi-member files are allowed).
    """
    dims = [int(n) for n in shape]
    if any(n < 0 for n in dims):
        raise ScanLoadError(f"{path}: header declares negative dimensions {dims}")
    itemsize = np.dtype(dtype).itemsize
    needed = int(np.prod(dims, dtype=object)) * itemsize
    data_path = data_path or path
    on_disk = data_path.stat().st_size
    if not compressed:
        if on_disk < offset + needed:
            raise ScanLoadError(f"{path}: header declares {_voxels(dims)} voxels ({needed:,} bytes of "
                                f"{np.dtype(dtype)}) but the file holds {max(on_disk - offset, 0):,} bytes of "
                                "voxel data: truncated file or corrupt header")
    else:
        if needed > MAX_DEFLATE_RATIO * on_disk + 1024:
            raise ScanLoadError(f"{path}: header declares {_voxels(dims)} voxels ({needed:,} bytes) but the "
                                f"{on_disk:,}-byte compressed file cannot hold that many: corrupt header")
        if data_path.name.lower().endswith(".gz") and offset + needed < 2 ** 32:
            _check_gzip_size(path, data_path, needed=offset + needed, dims=dims)
    voxels = int(np.prod(dims, dtype=object))
    memory = _physical_memory()
    if memory and voxels * 4 > memory:
        raise ScanLoadError(f"{path}: {_voxels(dims)} voxels need {voxels * 4 / 2 ** 30:.1f} GiB as float32; "
                            f"this machine has {memory / 2 ** 30:.1f} GiB (corrupt header, or crop the scan)")


def _check_gzip_size(path: Path, data_path: Path, *, needed: int, dims) -> None:
    with open(data_path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        isize = int.from_bytes(f.read(4), "little")
    if isize >= needed:
        return
    inflated = 0  # the trailer may be of the last member only: count what the stream really holds
    decompressor, pending = zlib.decompressobj(zlib.MAX_WBITS | 32), b""
    with open(data_path, "rb") as f:
        while inflated < needed:
            if not pending:
                pending = f.read(1 << 20)
                if not pending:
                    break
            try:
                inflated += len(decompressor.decompress(pending, 1 << 24))
            except zlib.error:
                break
            pending = decompressor.unconsumed_tail
            if decompressor.eof:  # the next member, if any
                pending = decompressor.unused_data
                decompressor = zlib.decompressobj(zlib.MAX_WBITS | 32)
    if inflated < needed:
        raise ScanLoadError(f"{path}: header declares {_voxels(dims)} voxels ({needed:,} bytes with the header) "
                            f"but the compressed file holds {inflated:,} bytes: truncated file or corrupt header")


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def _itk_data_file(path: Path) -> Path:
    """The file holding the voxels of an MHA/MHD/NRRD/NHDR header (the header itself when LOCAL)."""
    if not path.name.lower().endswith((".mhd", ".nhdr")):
        return path
    with open(path, "rb") as f:
        head = f.read(65536).decode("latin-1")
    for line in head.splitlines():
        key, _, value = line.partition("=" if "=" in line else ":")
        if key.strip().lower() in ("elementdatafile", "data file", "datafile"):
            value = value.strip()
            if value.upper() == "LOCAL" or not value or " " in value:
                return path
            candidate = path.parent / value
            if not candidate.is_file():
                raise ScanLoadError(f"{path}: its voxel data file {value} is missing")
            return candidate
    return path


def _igzip_errors() -> tuple[type[BaseException], ...]:
    """Exception types igzip raises for corrupt data (none without ``isal``)."""
    try:
        from isal.isal_zlib import error
    except ImportError:
        return ()
    return (error,)


def _load_itk(path: Path, *, volume_index: int | None) -> Scan:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK's own multi-line messages: ours is one line
    messages: list[str] = []
    try:
        with _stderr_to(messages):  # MetaIO writes its complaints straight to the C stderr
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            # 1 byte per value is a lower bound on what any stored type needs
            check_declared_size(path, shape=[*reader.GetSize(), reader.GetNumberOfComponents()], dtype=np.uint8,
                                offset=0, compressed=True, data_path=_itk_data_file(path))
            img = sitk.ReadImage(str(path))
    except RuntimeError as err:
        said = [line.strip() for line in messages if line.strip()]
        reason = said[0] if said else (str(err).strip().splitlines()[-1] if str(err).strip() else "unreadable")
        raise ScanLoadError(f"{path}: not a readable image file ({reason})") from None
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
