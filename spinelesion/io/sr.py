"""DICOM Structured Report output: the measurement record as a TID 1500 Measurement Report, with highdicom.

:func:`save_dicom_sr` writes one Comprehensive 3D SR document (``measurements.sr.dcm``) beside the
DICOM SEG that :func:`spinelesion.io.seg.save_dicom_seg` wrote for the same scan. What goes where
(record fields: docs/contracts.md §2; codes: docs/dicom_sr.md)::

    Imaging Measurement Report (DCM 126000, TID 1500)
    ├─ language, observer: device "spinelesion" (TID 1004), procedure reported (CT / MR / imaging)
    └─ Imaging Measurements
       ├─ group "spine" (TID 1501): vertebrae found, lesions found (counts)
       ├─ group per vertebra (TID 1411), tracking identifier "L2" or "vertebra 3",
       │    finding: vertebral body, finding site: its level (SCT) when known,
       │    referenced segment: the SEG's vertebral_body segment + source series;
       │    body destruction %, height (DCM 121207) at the anterior / middle / posterior body in mm,
       │    height loss %; Genant grade, SINS collapse category, lesion type (CT)
       ├─ group per lesion (TID 1411), "lesion 1 at L2": finding neoplasm, the SEG's lesion segment;
       │    volume (cm3 = ml), epidural extension yes/no, mean network lesion probability
       └─ group "spinal cord" (TID 1411; TID 1501 when the SEG has no cord segment):
            MSCC %, MCC %, Bilsky grade, cord compression yes/no

A figure the record holds as null (not measured) is left out, never written as 0. Every group
names the algorithm (TID 4019: spinelesion, its version and the model file of the record's
provenance). Measurements use standard codes (SNOMED CT, DCM, NCIt modifiers, UCUM units) where
they exist and project codes of the private scheme :data:`SCHEME` otherwise, all listed in
docs/dicom_sr.md (:data:`PROJECT_CODES`).

Patient data: as for the SEG (see :mod:`spinelesion.io.seg`), highdicom copies the source's Patient
and Study modules into the SR, which DICOM requires of a document that belongs to the study; the
content tree itself holds no patient data. Sources whose anonymiser blanked the UIDs are referenced
through the same derived UIDs as the SEG (:func:`spinelesion.io.seg.source_datasets`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from spinelesion import __version__, labels as schema
from spinelesion.errors import LabelMapError
from spinelesion.io.scan import Scan
from spinelesion.io.seg import level_code, source_datasets, write_derived
from spinelesion.record_types import CordRecord, LesionRecord, MeasurementRecord, VertebraRecord

#: Series number given to SR series written here (after the SEG's 900).
SR_SERIES_NUMBER = 901
#: Private coding scheme designator of the project's own codes (PS3.16 §8: private schemes start with "99").
SCHEME = "99SPINELESION"

#: key -> (code value, code meaning) of the project codes (scheme :data:`SCHEME`); docs/dicom_sr.md lists each.
PROJECT_CODES: dict[str, tuple[str, str]] = {
    "n_vertebrae": ("SL-NVERT", "Number of vertebrae found"),
    "n_lesions": ("SL-NLES", "Number of lesions found"),
    "destruction": ("SL-DESTR", "Vertebral body destruction"),
    "height_loss": ("SL-HLOSS", "Vertebral body height loss"),
    "genant": ("SL-GENANT", "Genant semiquantitative grade"),
    "genant_0": ("SL-GENANT0", "Genant grade 0"),
    "genant_1": ("SL-GENANT1", "Genant grade 1"),
    "genant_2": ("SL-GENANT2", "Genant grade 2"),
    "genant_3": ("SL-GENANT3", "Genant grade 3"),
    "sins": ("SL-SINSCOL", "SINS vertebral body collapse"),
    "sins_over_50pct": ("SL-SINSCOL-1", "Over 50 % collapse"),
    "sins_under_50pct": ("SL-SINSCOL-2", "Under 50 % collapse"),
    "sins_no_collapse_over_50pct_involved": ("SL-SINSCOL-3", "No collapse, over 50 % of body involved"),
    "sins_none": ("SL-SINSCOL-4", "None of the above (no collapse, under 50 % involved)"),
    "lesion_type": ("SL-LESTYPE", "Bone lesion quality"),
    "lesion_type_lytic": ("SL-LYTIC", "Lytic"),
    "lesion_type_blastic": ("SL-BLASTIC", "Blastic"),
    "lesion_type_mixed": ("SL-MIXED", "Mixed lytic and blastic"),
    "epidural": ("SL-EPIDURAL", "Epidural extension"),
    "confidence": ("SL-LESPROB", "Mean network lesion probability"),
    "tta_sd": ("SL-LESPROBSD", "Lesion probability spread over test-time augmentation"),
    "mscc": ("SL-MSCC", "Maximum spinal cord compression"),
    "mcc": ("SL-MCC", "Maximum canal compromise"),
    "bilsky": ("SL-BILSKY", "Bilsky epidural spinal cord compression grade"),
    **{f"bilsky_{g}": (f"SL-BILSKY-{g.upper()}", f"Bilsky grade {g}") for g in ("0", "1a", "1b", "1c", "2", "3")},
    "compression": ("SL-CORDCOMP", "Spinal cord compression"),
}


def project_code(key: str):
    """The project code ``key`` of :data:`PROJECT_CODES` as a highdicom CodedConcept."""
    from highdicom.sr import CodedConcept

    value, meaning = PROJECT_CODES[key]
    return CodedConcept(value, SCHEME, meaning)


def save_dicom_sr(record: MeasurementRecord, *, like: Scan, seg_path: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write a measurement record as a DICOM SR (TID 1500) referencing ``like``'s series and its SEG.

    Args:
        record: the typed measurement record of ``like`` (docs/contracts.md §2, schema_version 1).
        like: the scan the record measures, loaded from DICOM (``like.dicom`` set).
        seg_path: the DICOM SEG written for ``like`` by :func:`spinelesion.io.seg.save_dicom_seg`:
            each group references its segment (vertebral_body, lesion, spinal_cord) by number.
        path: the .dcm file to write (atomically).

    Returns:
        The path written.

    Raises:
        LabelMapError: ``like`` is not DICOM, the SEG is unreadable or made for another series, or the
            source images lack attributes the SR must repeat.
    """
    import highdicom as hd
    import pydicom
    from highdicom.coding_schemes import CodingSchemeIdentificationItem
    from pydicom.sr.codedict import codes

    path, seg_path = Path(path), Path(seg_path)
    if like.dicom is None:
        raise LabelMapError(f"{path}: a DICOM SR needs a DICOM source scan; {like.source} is not DICOM")
    sources = source_datasets(like, path)
    seg = _read_seg(seg_path, series_uid=str(sources[0].SeriesInstanceUID))
    segments = {str(s.SegmentLabel): int(s.SegmentNumber) for s in seg.SegmentSequence}

    def reference(label_value: int):
        number = segments.get(schema.LABEL_NAMES[label_value])
        if number is None:
            return None
        return hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=number,
            source_series=hd.sr.SourceSeriesForSegmentation(str(sources[0].SeriesInstanceUID)))

    model = (record.provenance or {}).get("model")
    algorithm = hd.sr.AlgorithmIdentification(
        name="spinelesion", version=__version__, parameters=[f"model={model}"] if model else None)
    groups = [_spine_group(record, algorithm)]
    groups += [_vertebra_group(v, algorithm, reference(schema.VERTEBRAL_BODY)) for v in record.vertebrae]
    groups += [_lesion_group(lesion, record, algorithm, reference(schema.LESION)) for lesion in record.lesions]
    cord = _cord_group(record.cord, algorithm, reference(schema.SPINAL_CORD))
    groups += [cord] if cord is not None else []

    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=pydicom.uid.generate_uid(entropy_srcs=["spinelesion-device", __version__]), name="spinelesion",
        manufacturer_name="spinelesion", model_name=f"spinelesion {__version__}")
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.cid270.Device, observer_identifying_attributes=device))
    procedure = {"CT": codes.cid100.CTUnspecifiedBodyRegion,
                 "MR": codes.cid100.MRIUnspecifiedBodyRegion}.get(like.modality, codes.cid100.ImagingProcedure)
    report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=procedure,
                                     imaging_measurements=groups, title=codes.cid7021.ImagingMeasurementReport)
    return write_derived(lambda: hd.sr.Comprehensive3DSR(
        evidence=[*sources, seg], content=report[0], series_instance_uid=hd.UID(),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="spinelesion", is_complete=True, is_final=False, is_verified=False,
        series_description=f"spinelesion measurements v{record.schema_version}",
        coding_schemes=[CodingSchemeIdentificationItem(
            designator=SCHEME, name="spinelesion project codes",
            responsible_organization="spinelesion (docs/dicom_sr.md)")]), path=path, like=like, what="SR")


def _read_seg(seg_path: Path, *, series_uid: str):
    """The SEG's header (no pixels), checked to be a SEG of the series ``series_uid``."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import SegmentationStorage

    try:
        seg = pydicom.dcmread(seg_path, stop_before_pixels=True, specific_tags=[  # not the per-frame groups
            "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
            "SegmentSequence", "ReferencedSeriesSequence"])
    except (InvalidDicomError, OSError, ValueError) as err:
        raise LabelMapError(f"{seg_path}: not a readable DICOM SEG ({str(err).splitlines()[0]})") from None
    if seg.get("SOPClassUID") != SegmentationStorage or "SegmentSequence" not in seg:
        raise LabelMapError(f"{seg_path}: not a DICOM SEG (SOP class {seg.get('SOPClassUID', 'missing')})")
    referenced = {str(s.SeriesInstanceUID) for s in seg.get("ReferencedSeriesSequence", [])}
    if series_uid not in referenced:
        raise LabelMapError(f"{seg_path}: this SEG was made for another series, not the scan measured")
    return seg


def _finite(value) -> bool:
    """Whether a record figure was measured (null means not measured: left out, never 0)."""
    return value is not None and not isinstance(value, bool) and math.isfinite(float(value))


def _measurement(name, value, unit, *, finding_site=None):
    import highdicom as hd

    return hd.sr.Measurement(name=name, value=round(float(value), 4), unit=unit,
                             finding_sites=[finding_site] if finding_site is not None else None)


def _yes_no(flag: bool):
    from pydicom.sr.codedict import codes

    return codes.SCT.Yes if flag else codes.SCT.No


def _level_site(level: str | None):
    """Finding site of a vertebral level: its SNOMED CT vertebra (CID 7602), the sacrum for S1-S5."""
    import highdicom as hd

    code = level_code(level)
    return hd.sr.FindingSite(code) if code is not None else None


def _group(*, name: str, algorithm, segment, finding_type=None, site=None, measurements=(), evaluations=()):
    """A TID 1411 group on ``segment``, or a TID 1501 group where the SEG holds no such segment."""
    import highdicom as hd

    common = dict(tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=name),
                  finding_type=finding_type, algorithm_id=algorithm,
                  finding_sites=[site] if site is not None else None,
                  measurements=list(measurements) or None, qualitative_evaluations=list(evaluations) or None)
    if segment is None:
        return hd.sr.MeasurementsAndQualitativeEvaluations(**common)
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_segment=segment, **common)


def _spine_group(record: MeasurementRecord, algorithm):
    """What was found at all: the counts tell "no lesion found" from "lesions not reported"."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    measurements = [
        hd.sr.Measurement(name=project_code("n_vertebrae"), value=len(record.vertebrae),
                          unit=hd.sr.CodedConcept("{vertebrae}", "UCUM", "vertebrae")),
        hd.sr.Measurement(name=project_code("n_lesions"), value=len(record.lesions),
                          unit=hd.sr.CodedConcept("{lesions}", "UCUM", "lesions")),
    ]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="spine"),
        finding_sites=[hd.sr.FindingSite(codes.SCT.Spine)],
        algorithm_id=algorithm, measurements=measurements)


def _vertebra_group(v: VertebraRecord, algorithm, segment):
    """One vertebra: destruction, heights and height loss; Genant, SINS collapse, lesion type."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    percent, mm = codes.UCUM.Percent, codes.UCUM.Millimeter
    body = hd.sr.CodedConcept("3572006", "SCT", "Vertebral body")  # as in the SEG (io/seg.py)
    measurements = []
    if _finite(v.body_destruction_pct):
        measurements.append(_measurement(project_code("destruction"), v.body_destruction_pct, percent))
    for height, modifier in ((v.height_anterior_mm, codes.cid212.Anterior), (v.height_middle_mm, codes.cid212.Middle),
                             (v.height_posterior_mm, codes.cid212.Posterior)):
        if _finite(height):
            site = hd.sr.FindingSite(body, topographical_modifier=modifier)
            measurements.append(_measurement(codes.cid7469.Height, height, mm, finding_site=site))
    if _finite(v.height_loss_pct):
        measurements.append(_measurement(project_code("height_loss"), v.height_loss_pct, percent))
    evaluations = []
    for concept, key in (("genant", f"genant_{v.genant_grade}"), ("sins", f"sins_{v.sins_collapse}"),
                         ("lesion_type", f"lesion_type_{v.lesion_type}")):
        if key in PROJECT_CODES:  # a null value has no code: left out
            evaluations.append(hd.sr.QualitativeEvaluation(project_code(concept), project_code(key)))
    return _group(name=v.display_name, algorithm=algorithm, segment=segment,
                  finding_type=body, site=_level_site(v.level),
                  measurements=measurements, evaluations=evaluations)


def _lesion_group(lesion: LesionRecord, record: MeasurementRecord, algorithm, segment):
    """One lesion: volume, epidural extension, confidence; named after the vertebra it lies in."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    vertebra = record.vertebra(lesion.vertebra_index)
    name = f"lesion {lesion.id}" + (f" at {vertebra.display_name}" if vertebra is not None else "")
    measurements = []
    if _finite(lesion.volume_ml):  # 1 ml = 1 cm3; cm3 is the volume unit of CID 7181
        measurements.append(_measurement(codes.cid7469.Volume, lesion.volume_ml, codes.UCUM.CubicCentimeter))
    if _finite(lesion.confidence):
        measurements.append(_measurement(project_code("confidence"), lesion.confidence, codes.UCUM.NoUnits))
    if _finite(lesion.tta_sd):
        measurements.append(_measurement(project_code("tta_sd"), lesion.tta_sd, codes.UCUM.NoUnits))
    evaluations = [hd.sr.QualitativeEvaluation(project_code("epidural"), _yes_no(lesion.epidural))]
    return _group(name=name, algorithm=algorithm, segment=segment, finding_type=codes.SCT.Neoplasm,
                  site=_level_site(vertebra.level) if vertebra is not None else None,
                  measurements=measurements, evaluations=evaluations)


def _cord_group(cord: CordRecord, algorithm, segment):
    """MSCC, MCC, Bilsky grade and the compression flag; None when the record holds none of them."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    measurements = [_measurement(project_code(key), value, codes.UCUM.Percent)
                    for key, value in (("mscc", cord.mscc_pct), ("mcc", cord.mcc_pct)) if _finite(value)]
    evaluations = []
    if f"bilsky_{cord.bilsky_grade}" in PROJECT_CODES:
        evaluations.append(hd.sr.QualitativeEvaluation(project_code("bilsky"),
                                                       project_code(f"bilsky_{cord.bilsky_grade}")))
    if cord.compression_flag is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(project_code("compression"), _yes_no(cord.compression_flag)))
    if not measurements and not evaluations:
        return None
    return _group(name="spinal cord", algorithm=algorithm, segment=segment, finding_type=codes.SCT.SpinalCord,
                  measurements=measurements, evaluations=evaluations)
