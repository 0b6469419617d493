"""DICOM SR (TID 1500): the measurement record written beside the SEG, read back with highdicom,
referencing the SEG's segments and the source series, valid per dciodvfy, no patient data beyond the
copied patient module."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from records import typed  # noqa: E402
from conftest import OBLIQUE_AFFINE, ct_volume, make_affine, write_ct_series, write_enhanced_ct

sys.path.insert(0, str(Path(__file__).parent))
import measure_synth as S  # noqa: E402

from spinelesion import labels as schema  # noqa: E402
from spinelesion.errors import LabelMapError  # noqa: E402
from spinelesion.io import load_scan  # noqa: E402
from spinelesion.io.seg import save_dicom_seg  # noqa: E402
from spinelesion.io.sr import PROJECT_CODES, SCHEME, save_dicom_sr  # noqa: E402
from spinelesion.measure import measure_labels  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs" / "dicom_sr.md"
#: What conftest's DICOM writers plant as patient data.
PATIENT = ("Doe", "PID-SECRET-42", "19230405")
PATIENT_MODULE = ("PatientName", "PatientID", "PatientBirthDate")


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """A 4-vertebra CT phantom (2 mm) as a DICOM series: a lytic lesion in L3, an epidural mass at L2
    touching the cord; its scan, label map and measured record (levels from L4 up)."""
    folder = tmp_path_factory.mktemp("phantom") / "series"
    affine, shape = S.grid(n_vertebrae=4, spacing_mm=(2.0, 2.0, 2.0))
    labels = S.column(affine, shape, n_vertebrae=4, lesion=(1, 0.6),
                      compression={"vertebra": 2, "cord_ap_mm": 3.0, "no_csf": False, "half_length_mm": 8})
    volume = np.where(np.isin(labels, [1, 2]), 700.0, np.where(labels == 0, -100.0, 40.0)).astype(np.float32)
    write_ct_series(folder, volume, affine)
    scan = load_scan(folder)
    record = measure_labels(labels=labels, affine=scan.affine, image=scan.array, modality="CT", lowest_level="L4")
    assert len(record["vertebrae"]) == 4 and len(record["lesions"]) == 2 and record["cord"]["mscc_pct"] is not None
    record["lesions"][0]["confidence"] = 0.8123
    record["provenance"] = {"model": "tiny.safetensors"}
    return scan, labels, record


def _write(scan, labels, record, folder: Path) -> tuple[Path, Path]:
    seg = save_dicom_seg(labels, like=scan, path=folder / "labels.seg.dcm")
    sr = save_dicom_sr(typed(record), like=scan, seg_path=seg, path=folder / "measurements.sr.dcm")
    return seg, sr


def _groups(sr) -> dict[str, object]:
    content = sr.content
    groups = [*content.get_image_measurement_groups(), *content.get_volumetric_roi_measurement_groups()]
    named = {g.tracking_identifier: g for g in groups}
    assert len(named) == len(groups), "tracking identifiers are unique"
    return named


def _value(group, meaning: str, *, modifier: str | None = None) -> tuple[float, str]:
    """(value, UCUM unit) of the one measurement ``meaning`` (and finding-site modifier) in a group."""
    found = [m for m in group.get_measurements() if m.name.meaning == meaning and (
        modifier is None or any(s.topographical_modifier is not None and s.topographical_modifier.meaning == modifier
                                for s in m.finding_sites))]
    assert len(found) == 1, (group.tracking_identifier, meaning, modifier, len(found))
    return float(found[0].value), found[0].unit.value


def _evaluation(group, meaning: str) -> str | None:
    found = [e for e in group.get_qualitative_evaluations() if e.name.meaning == meaning]
    assert len(found) <= 1
    return found[0].value.meaning if found else None


def _segment_reference(group) -> tuple[str, int, str]:
    ref = group.referenced_segment
    return (ref.referenced_sop_instance_uid, ref.referenced_segment_numbers[0],
            ref.source_series_for_segmentation.value)


def test_sr_holds_the_record_and_references_the_seg(phantom, tmp_path):
    import highdicom as hd

    scan, labels, record = phantom
    seg_path, sr_path = _write(scan, labels, record, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.seg.dcm", "measurements.sr.dcm"]  # no temporaries
    seg = pydicom.dcmread(seg_path, stop_before_pixels=True)
    segment = {s.SegmentLabel: int(s.SegmentNumber) for s in seg.SegmentSequence}
    sr = hd.sr.srread(sr_path)
    assert sr.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage and sr.Modality == "SR"
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert sr.StudyInstanceUID == seg.StudyInstanceUID == scan.dicom.study_instance_uid
    assert sr.CompletionFlag == "COMPLETE" and sr.VerificationFlag == "UNVERIFIED"
    groups = _groups(sr)
    assert set(groups) == {"spine", "L4", "L3", "L2", "L1", "lesion 1 at L3", "lesion 2 at L2", "spinal cord"}

    assert _value(groups["spine"], "Number of vertebrae found") == (4, "{vertebrae}")
    assert _value(groups["spine"], "Number of lesions found") == (2, "{lesions}")
    for v in record["vertebrae"]:
        group = groups[v["level"]]
        assert group.finding_type.meaning == "Vertebral body"
        assert [s.value.meaning for s in group.finding_sites] == [f"{v['level']} vertebra"]
        assert _segment_reference(group) == (seg.SOPInstanceUID, segment["vertebral_body"],
                                             scan.dicom.series_instance_uid)
        assert _value(group, "Vertebral body destruction") == (pytest.approx(v["body_destruction_pct"]), "%")
        assert _value(group, "Vertebral body height loss") == (pytest.approx(v["height_loss_pct"]), "%")
        for key, modifier in (("height_anterior_mm", "Anterior"), ("height_middle_mm", "Middle"),
                              ("height_posterior_mm", "Posterior")):
            assert _value(group, "Height", modifier=modifier) == (pytest.approx(v[key]), "mm")
        assert _evaluation(group, "Genant semiquantitative grade") == f"Genant grade {v['genant_grade']}"
        assert _evaluation(group, "SINS vertebral body collapse") == PROJECT_CODES[f"sins_{v['sins_collapse']}"][1]
    assert _evaluation(groups["L3"], "Bone lesion quality") == "Lytic"
    assert _evaluation(groups["L4"], "Bone lesion quality") is None  # lesion_type null: left out

    for lesion, name in zip(record["lesions"], ("lesion 1 at L3", "lesion 2 at L2")):
        group = groups[name]
        assert group.finding_type.meaning == "Neoplasm"
        assert _segment_reference(group) == (seg.SOPInstanceUID, segment["lesion"], scan.dicom.series_instance_uid)
        assert _value(group, "Volume") == (pytest.approx(lesion["volume_ml"]), "cm3")
        assert _evaluation(group, "Epidural extension") == ("Yes" if lesion["epidural"] else "No")
    assert _value(groups["lesion 1 at L3"], "Mean network lesion probability") == (pytest.approx(0.8123), "1")
    assert not [m for m in groups["lesion 2 at L2"].get_measurements()
                if m.name.meaning == "Mean network lesion probability"]  # confidence null: left out

    cord, group = record["cord"], groups["spinal cord"]
    assert _segment_reference(group) == (seg.SOPInstanceUID, segment["spinal_cord"], scan.dicom.series_instance_uid)
    assert _value(group, "Maximum spinal cord compression") == (pytest.approx(cord["mscc_pct"]), "%")
    assert _value(group, "Maximum canal compromise") == (pytest.approx(cord["mcc_pct"]), "%")
    assert _evaluation(group, "Bilsky epidural spinal cord compression grade") == f"Bilsky grade {cord['bilsky_grade']}"
    assert _evaluation(group, "Spinal cord compression") == ("Yes" if cord["compression_flag"] else "No")

    # evidence: every source image and the SEG, in the source study
    evidence = {uid for _, _, uid, _ in sr.get_evidence()}
    sources = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in scan.dicom.slice_files}
    assert evidence == sources | {seg.SOPInstanceUID}
    _check_codes(sr)
    _check_patient_data_only_in_patient_module(sr_path)


def _walk(dataset, depth=0):
    for element in dataset:
        yield depth, element
        if element.VR == "SQ":
            for item in element.value:
                yield from _walk(item, depth + 1)


def _check_patient_data_only_in_patient_module(path: Path) -> None:
    ds = pydicom.dcmread(path)
    assert str(ds.PatientName) == "Doe^Jane" and ds.PatientID == PATIENT[1]  # copied, as DICOM requires
    for depth, element in _walk(ds):
        if element.VR in ("SQ", "OB", "OW", "UN"):
            continue
        if depth == 0 and element.keyword in PATIENT_MODULE:
            continue
        text = str(element.value)
        assert not any(p in text for p in PATIENT), (element.keyword, depth, text)


def _check_codes(sr) -> None:
    """Every project code in the SR is one of PROJECT_CODES; every PROJECT_CODE is in docs/dicom_sr.md."""
    documented = set(re.findall(r"^\| [^|]+ \| (SL-[A-Z0-9-]+) \|", DOCS.read_text(), flags=re.M))
    ours = {value: meaning for value, meaning in PROJECT_CODES.values()}
    assert set(ours) <= documented, set(ours) - documented
    assert sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == SCHEME
    used = set()
    for _, element in _walk(sr):
        if element.keyword in ("ConceptNameCodeSequence", "ConceptCodeSequence", "MeasurementUnitsCodeSequence"):
            for code in element.value:
                if code.CodingSchemeDesignator == SCHEME:
                    assert ours.get(code.CodeValue) == code.CodeMeaning, (code.CodeValue, code.CodeMeaning)
                    used.add(code.CodeValue)
                else:  # standard schemes only
                    assert code.CodingSchemeDesignator in ("SCT", "DCM", "LN", "UCUM", "NCIt", "RFC5646"), code
    assert len(used) > 10


def test_sr_leaves_out_what_was_not_measured(ct_series, tmp_path):
    """Null figures are left out (never 0); a vertebra without level is "vertebra N"; no cord segment in
    the SEG: the cord group stands without a segment reference (TID 1501)."""
    import highdicom as hd

    folder, _, _ = ct_series
    scan = load_scan(folder)
    labels = np.zeros(scan.shape, np.uint8)
    labels[4:12, 5:11, 1:7] = schema.VERTEBRAL_BODY
    labels[6:9, 6:9, 3:5] = schema.LESION
    vertebra = {"index": 0, "level": None, "body_destruction_pct": 12.5, "height_anterior_mm": None,
                "height_middle_mm": None, "height_posterior_mm": 14.0, "height_loss_pct": None, "genant_grade": None,
                "sins_collapse": "under_50pct", "lesion_type": None}
    record = {"schema_version": 1, "vertebrae": [vertebra],
              "lesions": [{"id": 1, "volume_ml": 0.05, "vertebra_index": None, "epidural": False, "confidence": None}],
              "cord": {"mscc_pct": None, "mcc_pct": None, "bilsky_grade": "0", "compression_flag": False}, "flags": []}
    _, sr_path = _write(scan, labels, record, tmp_path)
    sr = hd.sr.srread(sr_path)
    groups = _groups(sr)
    assert set(groups) == {"spine", "vertebra 0", "lesion 1", "spinal cord"}
    body = groups["vertebra 0"]
    assert [(m.name.meaning, float(m.value)) for m in body.get_measurements()] == [
        ("Vertebral body destruction", 12.5), ("Height", 14.0)]
    assert _value(body, "Height", modifier="Posterior") == (14.0, "mm")
    assert _evaluation(body, "Genant semiquantitative grade") is None
    assert _evaluation(body, "SINS vertebral body collapse") == "Under 50 % collapse"
    assert body.finding_sites == []
    assert [m.name.meaning for m in groups["lesion 1"].get_measurements()] == ["Volume"]
    cord = groups["spinal cord"]
    assert isinstance(cord, hd.sr.MeasurementsAndQualitativeEvaluations) and cord.get_measurements() == []
    assert _evaluation(cord, "Bilsky epidural spinal cord compression grade") == "Bilsky grade 0"
    _check_patient_data_only_in_patient_module(sr_path)


def test_sr_of_an_empty_map_says_nothing_was_found(ct_series, tmp_path):
    import highdicom as hd

    folder, _, _ = ct_series
    scan = load_scan(folder)
    labels = np.zeros(scan.shape, np.uint8)
    record = measure_labels(labels=labels, affine=scan.affine)
    _, sr_path = _write(scan, labels, record, tmp_path)
    groups = _groups(hd.sr.srread(sr_path))
    assert set(groups) == {"spine"}  # cord all null: no cord group
    assert _value(groups["spine"], "Number of lesions found") == (0, "{lesions}")


def test_sr_refuses_a_foreign_seg_and_a_non_dicom_scan(ct_series, tmp_path):
    folder, volume, affine = ct_series
    scan = load_scan(folder)
    labels = np.zeros(scan.shape, np.uint8)
    labels[2:5, 2:5, 2:4] = schema.LESION
    write_ct_series(tmp_path / "other", volume, affine)
    other = load_scan(tmp_path / "other")
    seg = save_dicom_seg(labels, like=other, path=tmp_path / "other.seg.dcm")
    record = {"schema_version": 1, "vertebrae": [], "lesions": [], "cord": {}, "flags": []}
    with pytest.raises(LabelMapError, match="another series"):
        save_dicom_sr(typed(record), like=scan, seg_path=seg, path=tmp_path / "out" / "m.sr.dcm")
    with pytest.raises(LabelMapError, match="not a readable DICOM SEG|not a DICOM SEG"):
        save_dicom_sr(typed(record), like=scan, seg_path=scan.dicom.slice_files[0], path=tmp_path / "out" / "m.sr.dcm")
    (tmp_path / "garbage.dcm").write_bytes(b"not dicom at all" * 20)
    with pytest.raises(LabelMapError, match="not a readable DICOM SEG"):
        save_dicom_sr(typed(record), like=scan, seg_path=tmp_path / "garbage.dcm", path=tmp_path / "out" / "m.sr.dcm")
    with pytest.raises(LabelMapError, match="not a readable DICOM SEG"):
        save_dicom_sr(typed(record), like=scan, seg_path=tmp_path / "missing.dcm", path=tmp_path / "out" / "m.sr.dcm")
    from spinelesion.io.scan import Scan

    nifti_like = Scan(array=scan.array, affine=scan.affine, modality="CT", source="x.nii.gz")
    with pytest.raises(LabelMapError, match="not DICOM"):
        save_dicom_sr(typed(record), like=nifti_like, seg_path=seg, path=tmp_path / "out" / "m.sr.dcm")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_sr_of_the_real_anonymised_series(real_series_with_labels, tmp_path):
    """UID-less JPEG 2000 series: the SR references the same derived UIDs as the SEG."""
    import highdicom as hd

    scan, labels = real_series_with_labels
    folder = tmp_path / "series"   # where the fixture copied the series
    record = measure_labels(labels=labels, affine=scan.affine, image=scan.array, modality=scan.modality)
    seg_path, sr_path = _write(scan, labels, record, tmp_path / "out")
    seg = pydicom.dcmread(seg_path, stop_before_pixels=True)
    sr = hd.sr.srread(sr_path)
    assert sr.StudyInstanceUID == seg.StudyInstanceUID == scan.dicom.study_instance_uid
    assert {uid for _, _, uid, _ in sr.get_evidence()} >= {seg.SOPInstanceUID}
    assert len(sr.get_evidence()) == scan.shape[2] + 1
    lines = _dciodvfy(sr_path, skip=False)  # warnings here come from the source's own attributes
    assert lines is None or not [line for line in lines if line.startswith("Error")], lines
    again = load_scan(folder)  # an SR beside the images is not read as an image series
    shutil.copy(sr_path, folder / "sr.dcm")
    np.testing.assert_array_equal(load_scan(folder).array, again.array)


def test_sr_is_written_whenever_the_seg_is(tmp_path):
    """Source attributes removed one at a time (as tests/test_fuzz.py does for the SEG): where the SEG
    copes, the SR does too, so an infer case is never left partial by the SR alone."""
    files = write_ct_series(tmp_path / "template", ct_volume((16, 14, 5)), OBLIQUE_AFFINE)
    keywords = [k for k in pydicom.dcmread(files[0]).dir() if k != "PixelData"]
    record = {"schema_version": 1, "vertebrae": [], "lesions": [{"id": 1, "volume_ml": 0.1, "vertebra_index": None,
                                                                 "epidural": True, "confidence": 0.5}],
              "cord": {"mscc_pct": None, "mcc_pct": None, "bilsky_grade": None, "compression_flag": None}, "flags": []}
    written = 0
    for keyword in keywords:
        folder = tmp_path / keyword
        shutil.copytree(tmp_path / "template", folder)
        for path in folder.iterdir():
            ds = pydicom.dcmread(path)
            delattr(ds, keyword)
            ds.save_as(path)
        try:
            scan = load_scan(folder)
            labels = np.zeros(scan.shape, np.uint8)
            labels[4:9, 4:9, 1:3] = schema.LESION
            seg = save_dicom_seg(labels, like=scan, path=tmp_path / f"{keyword}.seg.dcm")
        except Exception:  # noqa: BLE001 - load or SEG refused: tests/test_fuzz.py checks how
            continue
        save_dicom_sr(typed(record), like=scan, seg_path=seg, path=tmp_path / f"{keyword}.sr.dcm")
        written += 1
    assert written >= 10, written


def _dciodvfy(path: Path, *, skip: bool = True) -> list[str] | None:
    """dciodvfy's lines about ``path``; skips the test (or returns None) where dciodvfy is not installed."""
    if shutil.which("dciodvfy") is None:
        if skip:
            pytest.skip("dciodvfy not on PATH (Debian package dicom3tools: apt-get install dicom3tools)")
        return None
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    return (run.stdout + run.stderr).splitlines()


@pytest.mark.parametrize("source", ["series", "enhanced"])
def test_sr_passes_dciodvfy(phantom, source, tmp_path):
    """No "Error" from dciodvfy; the only warnings allowed are about the project's private coding scheme."""
    if source == "series":
        scan, labels, record = phantom
    else:
        write_enhanced_ct(tmp_path / "src" / "mf.dcm", ct_volume(seed=3), OBLIQUE_AFFINE)
        scan = load_scan(tmp_path / "src" / "mf.dcm")
        labels = np.zeros(scan.shape, np.uint8)
        labels[4:12, 5:11, 1:7] = schema.VERTEBRAL_BODY
        labels[6:9, 6:9, 3:5] = schema.LESION
        labels[17:19, 7:9, :] = schema.SPINAL_CORD
        record = measure_labels(labels=labels, affine=scan.affine, image=scan.array, modality="CT")
    _, sr_path = _write(scan, labels, record, tmp_path / "out")
    lines = _dciodvfy(sr_path)
    errors = [line for line in lines if line.startswith("Error")]
    assert not errors, "\n".join(errors)
    others = {line for line in lines if line.startswith("Warning") and f"<{SCHEME}>" not in line}
    assert not others, "\n".join(sorted(others))


def test_infer_writes_the_sr_beside_the_seg(tmp_path, tiny_model):
    """End to end: `spinelesion infer` on a DICOM series writes measurements.sr.dcm referencing its SEG."""
    import highdicom as hd

    from spinelesion.pipeline.batch import run_batch

    write_ct_series(tmp_path / "in" / "series", ct_volume((24, 20, 9), seed=3),
                    make_affine(np.eye(3), (1, 1, 2), (0, 0, 0)))
    result = run_batch(input_path=tmp_path / "in", out_dir=tmp_path / "out", model=tiny_model, device="cpu",
                       progress=False, overlays=False)
    assert result.exit_code == 0
    (case_dir,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    status = json.loads((case_dir / "status.json").read_text())
    assert status["status"] == "ok" and "measurements.sr.dcm" in status["outputs"], status
    seg = pydicom.dcmread(case_dir / "labels.seg.dcm", stop_before_pixels=True)
    sr = hd.sr.srread(case_dir / "measurements.sr.dcm")
    record = json.loads((case_dir / "measurements.json").read_text())
    groups = _groups(sr)
    assert _value(groups["spine"], "Number of lesions found")[0] == len(record["lesions"])
    assert seg.SOPInstanceUID in {uid for _, _, uid, _ in sr.get_evidence()}
    for group in sr.content.get_volumetric_roi_measurement_groups():
        assert group.referenced_segment.referenced_sop_instance_uid == seg.SOPInstanceUID
    assert not list(case_dir.glob(".*tmp*"))
