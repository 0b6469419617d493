"""DICOM SEG output (and read-back) for label maps made on DICOM inputs, with highdicom.

The SEG references the source series image by image (SOP Instance UIDs, frame numbers for a
multi-frame source), holds one BINARY segment per schema-v1 label present in the map, each with
SNOMED CT coded concepts (DICOM PS3.3 C.8.20.2; codes from PS3.16 / SNOMED CT), and names the
algorithm ("spinelesion", AUTOMATIC).

Patient data: highdicom copies the Patient and Study modules (name, ID, birth date, sex) from the
source images into the SEG, as DICOM requires of an object that must attach to the patient's
study. The SEG therefore carries whatever patient identity the source carried; spinelesion's
own reports, logs and file names never do.

Sources whose anonymiser blanked the UIDs (e.g. the TotalSegmentator example series) are
referenced through the same derived UIDs the loader reports (see
:func:`spinelesion.io.dicom.series_uid_of`); such a SEG cannot attach to a PACS study.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from spinelesion import __version__, labels as schema
from spinelesion.errors import LabelMapError
from spinelesion.io.atomic import atomic_path
from spinelesion.io.dicom import series_uid_of, sop_instance_uid_of, study_uid_of
from spinelesion.io.scan import Scan

#: Series number given to SEG series written here (any number; chosen to sort after images).
SEG_SERIES_NUMBER = 900


def segment_codes() -> dict[int, tuple]:
    """label value -> (segmented property category, segmented property type), SNOMED CT codes.

    Sources: DICOM PS3.16 CID 7150 (categories), CID 7151 / SNOMED CT (types). Vertebral body
    3572006 as mapped by AAPM TG-263; arch of vertebra 40265002 (pedicles, laminae, processes);
    neoplasm 108369006; spinal cord 2748008; cerebrospinal fluid 65216001; intervertebral disc
    360499006.
    """
    from highdicom.sr.coding import CodedConcept
    from pydicom.sr.codedict import codes

    anatomy = codes.SCT.AnatomicalStructure
    return {
        schema.VERTEBRAL_BODY: (anatomy, CodedConcept("3572006", "SCT", "Vertebral body")),
        schema.POSTERIOR_ELEMENTS: (anatomy, codes.SCT.ArchOfVertebra),
        schema.LESION: (codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm),
        schema.SPINAL_CORD: (anatomy, codes.SCT.SpinalCord),
        schema.THECAL_SAC: (codes.SCT.BodySubstance, codes.SCT.CerebrospinalFluid),
        schema.DISC: (anatomy, CodedConcept("360499006", "SCT", "Intervertebral disc")),
    }


def level_code(level: str | None):
    """The SNOMED CT code of a vertebral level (CID 7602 "C2 vertebra"...; the sacrum for S1-S5), or None."""
    from pydicom.sr.codedict import codes

    if not level:
        return None
    if level.startswith("S"):
        return codes.SCT.Sacrum
    return getattr(codes.cid7602, f"{level}Vertebra", None)


def save_dicom_seg(labels: np.ndarray, *, like: Scan, path: str | os.PathLike,
                   levels: Mapping[int, Sequence[str]] | None = None) -> Path:
    """Write a schema-v1 label map as a DICOM SEG referencing ``like``'s source series.

    Args:
        labels: (X, Y, Z) integer label map on ``like``'s grid (values from :data:`labels.LABEL_NAMES`).
        like: a scan loaded from DICOM (``like.dicom`` set).
        path: the .dcm file to write (atomically).
        levels: label value -> the named vertebral levels its segment covers (from the measurement
            record: e.g. every named vertebra for the bodies, those holding a lesion for the lesions);
            each segment lists them as its anatomic regions (SNOMED CT vertebrae, CID 7602).

    Returns:
        The path written.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    path = Path(path)
    labels = np.asarray(labels)
    if like.dicom is None:
        raise LabelMapError(f"{path}: a DICOM SEG needs a DICOM source scan; {like.source} is not DICOM")
    if labels.shape != like.shape:
        raise LabelMapError(f"{path}: label map shape {labels.shape} differs from the scan's {like.shape}")
    found = np.unique(labels)
    unknown = [v.item() for v in found if v not in schema.LABEL_NAMES or v != int(v)]
    if unknown:
        raise LabelMapError(f"{path}: label values {unknown} are not in label schema v{schema.SCHEMA_VERSION}")
    present = [int(v) for v in found if v != schema.BACKGROUND]
    labels = labels.astype(np.uint8)
    values = present or [v for v in schema.LABEL_NAMES if v != schema.BACKGROUND]  # empty map: all, empty

    sources = source_datasets(like, path)
    n_frames_src = int(sources[0].get("NumberOfFrames", 1) or 1) if like.dicom.frame_numbers else None
    # highdicom takes a (source frames, rows, cols) map of segment numbers, in source order.
    segment_of_value = np.zeros(256, dtype=np.uint8)
    segment_of_value[values] = np.arange(1, len(values) + 1)
    segment_map = np.zeros((n_frames_src or len(sources), like.shape[1], like.shape[0]), dtype=np.uint8)
    for k in range(like.shape[2]):
        index = like.dicom.frame_numbers[k] - 1 if like.dicom.frame_numbers else k
        segment_map[index] = segment_of_value[labels[:, :, k].T]

    algorithm = hd.AlgorithmIdentificationSequence(
        name="spinelesion", family=codes.cid7162.ArtificialIntelligence, version=__version__)
    category_type = segment_codes()
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=s + 1, segment_label=schema.LABEL_NAMES[value],
            segmented_property_category=category_type[value][0],
            segmented_property_type=category_type[value][1],
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            anatomic_regions=_level_codes((levels or {}).get(value, ())),
            display_color=hd.color.CIELabColor.from_rgb(*schema.LABEL_COLOURS[value]))
        for s, value in enumerate(values)
    ]
    return write_derived(lambda: _segmentation(hd, sources, segment_map, descriptions, present),
                         path=path, like=like, what="SEG")


def _level_codes(levels: Sequence[str]) -> list | None:
    """SNOMED CT codes of the named levels, each once, in the given order; None for none."""
    out = []
    for level in levels:
        code = level_code(level)
        if code is not None and code not in out:
            out.append(code)
    return out or None


def write_derived(make, *, path: Path, like: Scan, what: str) -> Path:
    """Build a DICOM object derived from ``like``'s images with ``make()`` (highdicom) and write it to
    ``path`` atomically; highdicom's refusals of the source's attributes become a LabelMapError
    naming the ``what`` ("SEG", "SR") that could not be written."""
    import pydicom

    try:
        dataset = make()
    except (AttributeError, KeyError, TypeError, ValueError) as err:  # highdicom: attributes it needs
        raise LabelMapError(f"{path}: cannot write a DICOM {what} for {like.source}: the source images lack or "
                            f"hold unusable attributes the {what} must repeat ({type(err).__name__}: "
                            f"{' '.join(str(err).split())[:200]})") from None
    with atomic_path(path) as tmp:
        pydicom.dcmwrite(tmp, dataset, enforce_file_format=True)
    return path


def _segmentation(hd, sources, segment_map, descriptions, present):
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=segment_map,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(), series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="spinelesion", manufacturer_model_name="spinelesion",
        software_versions=__version__, device_serial_number="0",
        series_description=f"spinelesion labels v{schema.SCHEMA_VERSION}",
        omit_empty_frames=bool(present))


def read_dicom_seg(path: str | os.PathLike, *, like: Scan,
                   segment_values: dict[int, int] | None = None) -> np.ndarray:
    """Read a DICOM SEG back as an (X, Y, Z) uint8 label map on ``like``'s grid.

    Args:
        path: the SEG file.
        like: the DICOM scan the SEG references.
        segment_values: segment number -> label value; by default segments are matched to the
            schema by their SegmentLabel (as :func:`save_dicom_seg` writes them).

    Overlapping segments: the highest segment number wins.
    """
    import highdicom as hd

    path = Path(path)
    if like.dicom is None:
        raise LabelMapError(f"{path}: the scan {like.source} is not DICOM, a SEG cannot reference it")
    try:
        seg = hd.seg.segread(path)
    except Exception as err:  # noqa: BLE001 - pydicom/highdicom raise many kinds
        raise LabelMapError(f"{path}: not a readable DICOM SEG ({str(err).splitlines()[0]})") from None
    if segment_values is None:
        by_name = {name: value for value, name in schema.LABEL_NAMES.items()}
        segment_values = {}
        for number in seg.segment_numbers:
            name = seg.get_segment_description(number).segment_label
            if name not in by_name:
                raise LabelMapError(f"{path}: segment {number} {name!r} is not a label of schema "
                                    f"v{schema.SCHEMA_VERSION}; pass segment_values")
            segment_values[number] = by_name[name]
    numbers = sorted(segment_values)
    sources = source_datasets(like, path)
    try:
        if like.dicom.frame_numbers:
            pixels = seg.get_pixels_by_source_frame(
                source_sop_instance_uid=sop_instance_uid_of(sources[0]),
                source_frame_numbers=list(like.dicom.frame_numbers), segment_numbers=numbers,
                combine_segments=True, skip_overlap_checks=True, assert_missing_frames_are_empty=True)
        else:
            pixels = seg.get_pixels_by_source_instance(
                source_sop_instance_uids=[sop_instance_uid_of(ds) for ds in sources],
                segment_numbers=numbers, combine_segments=True, skip_overlap_checks=True,
                assert_missing_frames_are_empty=True)
    except (KeyError, ValueError, RuntimeError) as err:
        raise LabelMapError(f"{path}: SEG does not fit {like.source} ({str(err).splitlines()[0]})") from None
    value_of_segment = np.zeros(max(numbers) + 1, dtype=np.uint8)
    value_of_segment[numbers] = [segment_values[n] for n in numbers]
    # pixels: (Z, rows=Y, cols=X) segment numbers -> (X, Y, Z) label values.
    return np.ascontiguousarray(np.transpose(value_of_segment[pixels], (2, 1, 0)))


def source_datasets(like: Scan, path: Path) -> list:
    """Headers of the source images of ``like``, in ``like.dicom.slice_files`` order."""
    try:
        return [_source_dataset(p) for p in like.dicom.slice_files]
    except (OSError, ValueError) as err:
        raise LabelMapError(f"{path}: the source DICOM files of {like.source} are no longer readable "
                            f"({str(err).splitlines()[0]})") from None


def _source_dataset(path: Path):
    """A source image's header with the UIDs a SEG needs filled in where an anonymiser blanked them."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    meta = ds.file_meta
    if not str(ds.get("SOPClassUID", "") or ""):
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
    if not str(ds.get("SOPInstanceUID", "") or ""):
        ds.SOPInstanceUID = sop_instance_uid_of(ds)
    if not str(ds.get("StudyInstanceUID", "") or ""):
        ds.StudyInstanceUID = study_uid_of(ds)
    if not str(ds.get("SeriesInstanceUID", "") or ""):
        ds.SeriesInstanceUID = series_uid_of(ds)[0]
    for keyword in TYPE2_COPIED:  # type 2: present, empty when unknown (PS3.5 7.4.5)
        if keyword not in ds:
            setattr(ds, keyword, "")
    if not str(ds.get("FrameOfReferenceUID", "") or ""):  # type 1 where the SEG shares the source's frame
        import pydicom.uid

        ds.FrameOfReferenceUID = pydicom.uid.generate_uid(entropy_srcs=["spinelesion-frame", study_uid_of(ds)])
    return ds


#: Type 2 attributes of the patient and study modules that a SEG repeats from its source; an
#: anonymiser may have removed them, and the standard allows them empty.
TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                "ReferringPhysicianName", "StudyID", "AccessionNumber", "SliceThickness")
