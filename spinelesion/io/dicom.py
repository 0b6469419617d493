"""DICOM input: find the image series in a folder and load one as a :class:`Scan`.

A classic series (one 2D image per file) and an enhanced multi-frame CT/MR file are both
turned into an (X, Y, Z) float32 array, X = columns, Y = rows, Z = slices sorted along the slice
normal (the cross product of the two ImageOrientationPatient directions), with the modality
rescale (RescaleSlope/Intercept; CT in HU) applied and a 4x4 voxel -> RAS+ mm affine built from
ImageOrientationPatient, ImagePositionPatient and PixelSpacing (DICOM PS3.3 C.7.6.2.1.1; the
patient system is LPS, flipped to RAS here).

Series are told apart by SeriesInstanceUID and never mixed. Anonymised files that lost the UID
get a UID derived deterministically from their other attributes (``uid_derived``), so they can
still be listed, chosen and referenced. Patient name, ID and birth date are never read into
anything this module returns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spinelesion.errors import DicomSeriesError, ScanLoadError
from spinelesion.io.scan import LPS_TO_RAS, DicomReference, Scan

#: Modalities whose objects hold no image to segment (they may still carry Rows/Columns).
NON_IMAGE_MODALITIES = frozenset({"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "SR", "PR", "KO", "REG"})
#: Which pip package decodes which compressed transfer syntaxes (first match wins).
_DECODER_PACKAGES = (
    ("JPEG 2000", "pylibjpeg pylibjpeg-openjpeg"),
    ("High-Throughput JPEG 2000", "pylibjpeg pylibjpeg-openjpeg"),
    ("JPEG-LS", "pylibjpeg pylibjpeg-libjpeg"),
    ("JPEG", "pylibjpeg pylibjpeg-libjpeg"),
    ("RLE", "pylibjpeg pylibjpeg-rle"),
)
#: Two slices closer than this (mm, along the normal) sit at the same position.
DUPLICATE_TOLERANCE_MM = 1e-3
#: A step larger than this times the median spacing means slices are missing.
GAP_FACTOR = 1.5
#: A slice further than this fraction of the spacing from the regular grid is an error.
IRREGULAR_FRACTION = 0.1


@dataclass(frozen=True)
class SeriesInfo:
    """One image series found in a folder (headers only; no pixel data read).

    ``n_images`` counts frames: one per classic file, NumberOfFrames per multi-frame file.
    """

    series_instance_uid: str
    uid_derived: bool
    study_instance_uid: str
    modality: str | None
    series_description: str
    rows: int
    columns: int
    files: tuple[Path, ...]
    n_images: int
    multiframe: bool = False

    def summary(self) -> dict:
        """A PHI-free dict for ``spinelesion inspect``: UID, modality, file count, description."""
        kind = "frames" if self.multiframe else "slices"
        text = f"{self.series_description}; " if self.series_description else ""
        if self.uid_derived:
            text += "SeriesInstanceUID missing (UID derived); "
        return {
            "series_instance_uid": self.series_instance_uid,
            "modality": self.modality,
            "n_files": len(self.files),
            "description": f"{text}{self.n_images} {kind}, {self.rows}x{self.columns}",
        }


@dataclass(frozen=True)
class FolderContents:
    """What a recursive scan of a folder found."""

    series: list[SeriesInfo]
    n_files: int
    n_not_dicom: int
    n_not_image: int = 0
    examples_not_dicom: list[str] = field(default_factory=list)


def scan_folder(folder: str | os.PathLike) -> FolderContents:
    """Read the header of every file under ``folder`` and group image instances by series.

    Files that are not DICOM, and DICOM objects without an image (SEG, SR, RTSTRUCT...), are
    skipped and counted. Series come largest first (then by UID).
    """
    import pydicom

    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    groups: dict[str, dict] = {}
    n_not_dicom = n_not_image = 0
    examples: list[str] = []
    for path in files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - anything unreadable is "not DICOM" here
            n_not_dicom += 1
            if len(examples) < 3:
                examples.append(path.name)
            continue
        if not _is_image(ds):
            n_not_image += 1
            continue
        uid, derived = series_uid_of(ds)
        group = groups.setdefault(uid, {"derived": derived, "ds": ds, "files": [], "n_images": 0,
                                        "multiframe": False})
        group["files"].append(path)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        group["n_images"] += frames
        group["multiframe"] |= frames > 1 or "PerFrameFunctionalGroupsSequence" in ds
    series = [
        SeriesInfo(series_instance_uid=uid, uid_derived=g["derived"],
                   study_instance_uid=study_uid_of(g["ds"]),
                   modality=str(g["ds"].get("Modality", "")) or None,
                   series_description=str(g["ds"].get("SeriesDescription", "") or "").strip(),
                   rows=int(g["ds"].Rows), columns=int(g["ds"].Columns), files=tuple(g["files"]),
                   n_images=g["n_images"], multiframe=g["multiframe"])
        for uid, g in groups.items()
    ]
    series.sort(key=lambda s: (-s.n_images, s.series_instance_uid))
    return FolderContents(series=series, n_files=len(files), n_not_dicom=n_not_dicom,
                          n_not_image=n_not_image, examples_not_dicom=examples)


def list_series(folder: str | os.PathLike) -> list[SeriesInfo]:
    """The image series under ``folder`` (recursive), largest first. See :func:`scan_folder`."""
    return scan_folder(folder).series


def load_dicom_folder(folder: str | os.PathLike, *, series_uid: str | None = None) -> Scan:
    """Load one image series from a folder of DICOM files (searched recursively).

    Args:
        folder: the folder.
        series_uid: SeriesInstanceUID to load; by default the series with the most images.
            Two or more series tied for the most images are ambiguous: an error names them.

    Returns:
        A :class:`Scan`: (X=columns, Y=rows, Z=slices) float32, RAS+ affine, modality "CT"/"MR"/None.

    Raises:
        ScanLoadError: empty folder, no DICOM image series, single-slice series, no decoder.
        DicomSeriesError: unknown or ambiguous series, mixed orientation, duplicate positions,
            missing slices, irregular spacing.
    """
    folder = Path(folder)
    contents = scan_folder(folder)
    if contents.n_files == 0:
        raise ScanLoadError(f"{folder}: empty folder (no files found)")
    if not contents.series:
        raise ScanLoadError(
            f"{folder}: no DICOM image series ({contents.n_files} files: {contents.n_not_dicom} not DICOM"
            f"{' e.g. ' + ', '.join(contents.examples_not_dicom) if contents.examples_not_dicom else ''}, "
            f"{contents.n_not_image} DICOM without an image)")
    chosen = _choose_series(folder, contents.series, series_uid)
    if chosen.multiframe:
        if len(chosen.files) != 1:
            raise DicomSeriesError(f"{folder}: series {chosen.series_instance_uid} holds {len(chosen.files)} "
                                   "multi-frame files; pass one file instead of the folder")
        return load_dicom_file(chosen.files[0])
    if chosen.n_images < 2:
        raise ScanLoadError(f"{folder}: series {chosen.series_instance_uid} has a single slice "
                            f"({chosen.files[0].name}): 2D image; a 3D volume is needed")
    return _load_classic_series(folder, chosen)


def load_dicom_file(path: str | os.PathLike) -> Scan:
    """Load one DICOM file: an enhanced (multi-frame) CT/MR volume.

    A classic single-slice file is a 2D image and raises ScanLoadError, as does a file that is
    not DICOM ("not an image file") or a DICOM object without pixels.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, OSError, ValueError) as err:
        raise ScanLoadError(f"{path}: not an image file (not NIfTI/MHA/NRRD by its name, and not DICOM: "
                            f"{type(err).__name__})") from None
    if not _is_image(ds):
        raise ScanLoadError(f"{path}: not an image file (a DICOM {ds.get('Modality', '') or ''} object "
                            "without an image to segment)")
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if "PerFrameFunctionalGroupsSequence" not in ds:
        if n_frames > 1:
            raise ScanLoadError(f"{path}: multi-frame DICOM without per-frame positions "
                                "(PerFrameFunctionalGroupsSequence); cannot place its frames in space")
        raise ScanLoadError(f"{path}: 2D image (one DICOM slice, {ds.Rows}x{ds.Columns}); a 3D volume is "
                            "needed: pass the folder holding the whole series")
    if n_frames < 2:
        raise ScanLoadError(f"{path}: 2D image (a multi-frame DICOM with one frame); a 3D volume is needed")
    pixels = _pixels(ds, path)
    pixels = pixels.reshape(n_frames, int(ds.Rows), int(ds.Columns))
    frames = range(n_frames)
    iop = np.array([_frame_attr(ds, i, "PlaneOrientationSequence", "ImageOrientationPatient", path)
                    for i in frames], dtype=np.float64)
    ipp = np.array([_frame_attr(ds, i, "PlanePositionSequence", "ImagePositionPatient", path)
                    for i in frames], dtype=np.float64)
    spacing = np.array([_frame_attr(ds, i, "PixelMeasuresSequence", "PixelSpacing", path)
                        for i in frames], dtype=np.float64)
    names = [f"frame {i + 1}" for i in frames]
    order, affine = stack_geometry(iop=iop, ipp=ipp, pixel_spacing=spacing, names=names, where=str(path))
    array = _volume((pixels[i] for i in order), [_rescale(ds, i) for i in order], shape=pixels.shape)
    uid, _ = series_uid_of(ds)
    return Scan(array=array, affine=affine, modality=_modality(ds),
                source=f"DICOM multi-frame {path.name}, series {uid} ({n_frames} frames)",
                dicom=DicomReference(study_instance_uid=study_uid_of(ds), series_instance_uid=uid,
                                     slice_files=(path,), frame_numbers=tuple(int(i) + 1 for i in order)),
                extra={"transfer_syntax": _transfer_syntax_name(ds)})


def stack_geometry(*, iop: np.ndarray, ipp: np.ndarray, pixel_spacing: np.ndarray, names: list[str],
                   where: str) -> tuple[np.ndarray, np.ndarray]:
    """Sort 2D images into a volume and build its voxel -> RAS+ affine.

    Args:
        iop: (N, 6) ImageOrientationPatient per image (row direction, then column direction; LPS).
        ipp: (N, 3) ImagePositionPatient per image (LPS mm, centre of the first pixel).
        pixel_spacing: (N, 2) PixelSpacing per image (between rows, between columns; mm).
        names: a name per image for error messages (file name or frame number).
        where: the folder or file, for error messages.

    Returns:
        ``order`` ((N,) indices of the images from first to last slice along the normal) and the
        (4, 4) affine for an array indexed (column, row, slice).
    """
    if not (np.allclose(iop, iop[0], atol=1e-4) and np.allclose(pixel_spacing, pixel_spacing[0], atol=1e-4)):
        bad = int(np.argmax(np.abs(iop - iop[0]).max(axis=1) + np.abs(pixel_spacing - pixel_spacing[0]).max(axis=1)))
        raise DicomSeriesError(f"{where}: images differ in orientation or pixel spacing ({names[0]}: "
                               f"{np.round(iop[0], 4).tolist()}, {names[bad]}: {np.round(iop[bad], 4).tolist()})")
    row_dir, col_dir = iop[0, :3], iop[0, 3:]
    normal = np.cross(row_dir, col_dir)
    position_mm = ipp @ normal
    order = np.argsort(position_mm, kind="stable")
    pos = position_mm[order]
    steps = np.diff(pos)
    dup = np.flatnonzero(steps < DUPLICATE_TOLERANCE_MM)
    if dup.size:
        a, b = order[dup[0]], order[dup[0] + 1]
        raise DicomSeriesError(
            f"{where}: {dup.size} duplicate slice position(s): {names[a]} and {names[b]} both lie at "
            f"{pos[dup[0]]:.3f} mm along the slice normal (several acquisitions, echoes or phases in one "
            "series?)")
    median_mm = float(np.median(steps))
    gaps = np.flatnonzero(steps > GAP_FACTOR * median_mm)
    if gaps.size:
        g = gaps[0]
        a, b = order[g], order[g + 1]
        n_missing = int(round(steps[g] / median_mm)) - 1
        missing = ipp[a] + (ipp[b] - ipp[a]) * (1.0 / (n_missing + 1))
        raise DicomSeriesError(
            f"{where}: missing slice(s): a gap of {steps[g]:.3g} mm between {names[a]} and {names[b]} "
            f"(median spacing {median_mm:.3g} mm); about {n_missing} slice(s) missing, the first at "
            f"{pos[g] + median_mm:.3f} mm along the normal (LPS {np.round(missing, 2).tolist()} mm)"
            + (f"; {gaps.size} gaps in all" if gaps.size > 1 else ""))
    first, last = ipp[order[0]], ipp[order[-1]]
    step_vec = (last - first) / (len(order) - 1)
    expected = first + np.arange(len(order))[:, None] * step_vec
    deviation_mm = np.linalg.norm(ipp[order] - expected, axis=1)
    if deviation_mm.max() > IRREGULAR_FRACTION * median_mm:
        worst = int(np.argmax(deviation_mm))
        raise DicomSeriesError(f"{where}: irregular slice spacing: {names[order[worst]]} lies "
                               f"{deviation_mm[worst]:.3g} mm off a regular grid of {median_mm:.3g} mm steps")
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_dir * pixel_spacing[0, 1]  # along a row = next column
    affine_lps[:3, 1] = col_dir * pixel_spacing[0, 0]  # along a column = next row
    affine_lps[:3, 2] = step_vec
    affine_lps[:3, 3] = first
    return order, LPS_TO_RAS @ affine_lps


def series_uid_of(ds) -> tuple[str, bool]:
    """The SeriesInstanceUID, or (if missing) one derived from other attributes; and whether derived."""
    import pydicom.uid

    uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
    if uid:
        return uid, False
    sources = ["spinelesion-series", study_uid_of(ds), str(ds.get("FrameOfReferenceUID", "")),
               str(ds.get("SeriesNumber", "")), str(ds.get("SeriesDescription", "")),
               str(ds.get("Modality", "")), str(ds.get("Rows", "")), str(ds.get("Columns", ""))]
    return str(pydicom.uid.generate_uid(entropy_srcs=sources)), True


def study_uid_of(ds) -> str:
    """The StudyInstanceUID, or (if missing) one derived from the frame of reference."""
    import pydicom.uid

    uid = str(ds.get("StudyInstanceUID", "") or "").strip()
    if uid:
        return uid
    return str(pydicom.uid.generate_uid(entropy_srcs=["spinelesion-study", str(ds.get("FrameOfReferenceUID", "")),
                                                      str(ds.get("StudyDate", "")), str(ds.get("StudyID", ""))]))


def sop_instance_uid_of(ds) -> str:
    """SOPInstanceUID, else the file meta's MediaStorageSOPInstanceUID (anonymisers may blank one)."""
    uid = str(ds.get("SOPInstanceUID", "") or "").strip()
    meta = getattr(ds, "file_meta", None)
    if not uid and meta is not None:
        uid = str(meta.get("MediaStorageSOPInstanceUID", "") or "").strip()
    return uid


def _choose_series(folder: Path, series: list[SeriesInfo], series_uid: str | None) -> SeriesInfo:
    if series_uid is not None:
        for s in series:
            if s.series_instance_uid == series_uid:
                return s
        raise DicomSeriesError(f"{folder}: no image series with SeriesInstanceUID {series_uid}; found: "
                               + ", ".join(f"{s.series_instance_uid} ({s.n_images} images)" for s in series))
    tied = [s for s in series if s.n_images == series[0].n_images]
    if len(tied) > 1:
        raise DicomSeriesError(
            f"{folder}: {len(tied)} image series are tied for the most images ({tied[0].n_images} each): "
            + ", ".join(s.series_instance_uid for s in tied) + "; choose one with --series-uid")
    return series[0]


def _load_classic_series(folder: Path, info: SeriesInfo) -> Scan:
    import pydicom

    datasets = []
    for path in info.files:
        try:
            datasets.append(pydicom.dcmread(path))
        except Exception as err:  # noqa: BLE001 - the header read worked; the body did not
            raise ScanLoadError(f"{path}: unreadable DICOM file ({err})") from None
    shapes = {(int(ds.Rows), int(ds.Columns)) for ds in datasets}
    if len(shapes) > 1:
        raise DicomSeriesError(f"{folder}: series {info.series_instance_uid} mixes image sizes {sorted(shapes)}")
    try:
        iop = np.array([[float(v) for v in ds.ImageOrientationPatient] for ds in datasets])
        ipp = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
        spacing = np.array([[float(v) for v in ds.PixelSpacing] for ds in datasets])
    except (AttributeError, TypeError, ValueError) as err:
        raise DicomSeriesError(f"{folder}: series {info.series_instance_uid} lacks image geometry "
                               f"(ImageOrientationPatient/ImagePositionPatient/PixelSpacing): {err}") from None
    if iop.shape != (len(datasets), 6) or ipp.shape != (len(datasets), 3) or spacing.shape != (len(datasets), 2):
        raise DicomSeriesError(f"{folder}: series {info.series_instance_uid} has malformed geometry tags")
    names = [p.name for p in info.files]
    order, affine = stack_geometry(iop=iop, ipp=ipp, pixel_spacing=spacing, names=names, where=str(folder))
    array = _volume((_pixels(datasets[i], info.files[i]) for i in order), [_rescale(datasets[i], None) for i in order],
                    shape=(len(order), *shapes.pop()))
    first = datasets[0]
    return Scan(array=array, affine=affine, modality=_modality(first),
                source=f"DICOM series {info.series_instance_uid} ({len(order)} slices)",
                dicom=DicomReference(study_instance_uid=info.study_instance_uid,
                                     series_instance_uid=info.series_instance_uid,
                                     slice_files=tuple(info.files[i] for i in order)),
                extra={"transfer_syntax": _transfer_syntax_name(first), "uid_derived": info.uid_derived})


def _is_image(ds) -> bool:
    """An image to segment: has pixels, is not a SEG/SR/RT object and not a localizer (scout)."""
    modality = str(ds.get("Modality", "") or "").upper()
    image_type = ds.get("ImageType") or []
    image_type = [str(v).upper() for v in ([image_type] if isinstance(image_type, str) else image_type)]
    return ("Rows" in ds and "Columns" in ds and modality not in NON_IMAGE_MODALITIES
            and "LOCALIZER" not in image_type)


def _modality(ds) -> str | None:
    modality = str(ds.get("Modality", "") or "").upper()
    return modality if modality in ("CT", "MR") else None


def _transfer_syntax_name(ds) -> str:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return f"{uid.name} ({uid})" if uid else "unknown transfer syntax"


def _pixels(ds, path: Path) -> np.ndarray:
    """Decoded stored values, (rows, cols) or (frames, rows, cols); a missing decoder is a ScanLoadError."""
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise ScanLoadError(f"{path}: colour DICOM image ({ds.SamplesPerPixel} samples per pixel); "
                            "a greyscale CT or MR is needed")
    try:
        return np.asarray(ds.pixel_array)
    except (RuntimeError, NotImplementedError, ImportError) as err:
        syntax = _transfer_syntax_name(ds)
        package = next((pkg for key, pkg in _DECODER_PACKAGES if key in syntax), "pylibjpeg or python-gdcm")
        raise ScanLoadError(f"{path}: no decoder installed for the pixel data's transfer syntax {syntax}; "
                            f"install one with `pip install {package}` (or python-gdcm) "
                            f"[pydicom: {str(err).splitlines()[0]}]") from None
    except (ValueError, AttributeError) as err:
        raise ScanLoadError(f"{path}: DICOM pixel data unreadable ({str(err).splitlines()[0]})") from None


def _rescale(ds, frame_index: int | None) -> tuple[float, float]:
    """(slope, intercept) for a frame (enhanced: per-frame, then shared group) or a classic image."""
    if frame_index is not None:
        for seq_name in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
            groups = ds.get(seq_name)
            if not groups:
                continue
            item = groups[frame_index] if seq_name.startswith("PerFrame") else groups[0]
            pvt = item.get("PixelValueTransformationSequence")
            if pvt:
                return float(pvt[0].get("RescaleSlope", 1) or 1), float(pvt[0].get("RescaleIntercept", 0) or 0)
    slope = ds.get("RescaleSlope", 1)
    intercept = ds.get("RescaleIntercept", 0)
    return float(1 if slope in (None, "") else slope), float(0 if intercept in (None, "") else intercept)


def _volume(planes, rescales: list[tuple[float, float]], *, shape: tuple[int, int, int]) -> np.ndarray:
    """(X = columns, Y = rows, Z = slices) C-ordered float32 modality values (HU for CT) of ``planes``,
    (rows, cols) stored values in slice order, each with its (slope, intercept): each plane lands in a
    (slices, rows, cols) block (contiguous writes), then one threaded reordering copy (docs/benchmarks.md:
    600 slices of 512 x 512 loaded in 3.7-4.5 s, 5.2 s by a transposed copy per plane stacked)."""
    from spinelesion.io.layout import as_c_order

    stacked = np.empty(shape, dtype=np.float32)
    for k, (plane, (slope, intercept)) in enumerate(zip(planes, rescales)):
        stacked[k] = plane.astype(np.float64) * slope + intercept if (slope, intercept) != (1.0, 0.0) else plane
    return as_c_order(stacked.transpose(2, 1, 0), dtype=np.float32)


def _frame_attr(ds, frame_index: int, sequence: str, attr: str, path: Path) -> list[float]:
    """An attribute of a functional group macro, per-frame first, then shared (PS3.3 C.7.6.16)."""
    for seq_name in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        groups = ds.get(seq_name)
        if not groups:
            continue
        item = groups[frame_index] if seq_name.startswith("PerFrame") else groups[0]
        macro = item.get(sequence)
        if macro and attr in macro[0]:
            return [float(v) for v in macro[0].get(attr)]
    raise DicomSeriesError(f"{path}: frame {frame_index + 1} has no {sequence} / {attr}")
