"""DICOM SEG: written with highdicom from a label map, read back voxel for voxel, on the right grid."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import OBLIQUE_AFFINE, ct_volume, write_enhanced_ct

from spinelesion import labels as schema
from spinelesion.errors import LabelMapError
from spinelesion.io import load_scan
from spinelesion.io.seg import read_dicom_seg, save_dicom_seg

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _label_map(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[4:12, 5:11, 1:7] = schema.VERTEBRAL_BODY
    labels[12:16, 5:11, 1:7] = schema.POSTERIOR_ELEMENTS
    labels[6:9, 6:9, 3:5] = schema.LESION
    labels[17:19, 7:9, :] = schema.SPINAL_CORD
    labels[16, 6:10, :] = schema.THECAL_SAC
    labels[4:12, 5:11, 7] = schema.DISC
    labels[rng.random(shape) < 0.01] = schema.LESION  # scattered single voxels
    return labels


def _check_seg_geometry(seg_path, scan, labels):
    """Every SEG frame sits on the source slice it references: its position is that slice's."""
    import highdicom as hd

    seg = hd.seg.segread(seg_path)
    volume = seg.get_volume(combine_segments=True, relabel=False)
    # highdicom's Volume: array (slices, rows, cols), affine in LPS mm from (slice, row, col).
    seg_affine_ras = LPS_TO_RAS @ volume.affine
    ours = scan.affine
    # Our (i=col, j=row, k=slice) -> world must equal highdicom's (slice, row, col) -> world.
    seg_slice = {}
    for k in (0, scan.shape[2] // 2, scan.shape[2] - 1):
        for i, j in ((0, 0), (scan.shape[0] - 1, scan.shape[1] - 1)):
            world_ours = ours @ [i, j, k, 1]
            index_seg = np.linalg.solve(seg_affine_ras, world_ours)[:3]
            assert np.allclose(index_seg, np.round(index_seg), atol=1e-3)
            assert index_seg[1] == pytest.approx(j, abs=1e-3) and index_seg[2] == pytest.approx(i, abs=1e-3)
            seg_slice.setdefault(k, []).append(index_seg[0])
    # Each of our slices is one SEG slice (highdicom may order them the other way: slope -1).
    ks = sorted(seg_slice)
    assert all(np.ptp(seg_slice[k]) < 1e-3 for k in ks)
    slope = (seg_slice[ks[-1]][0] - seg_slice[ks[0]][0]) / (ks[-1] - ks[0])
    assert abs(abs(slope) - 1) < 1e-6
    assert seg_slice[ks[1]][0] == pytest.approx(seg_slice[ks[0]][0] + slope * (ks[1] - ks[0]), abs=1e-3)


def test_seg_round_trip_synthetic_series(ct_series, tmp_path):
    import pydicom

    folder, volume, _ = ct_series
    scan = load_scan(folder)
    labels = _label_map(scan.shape)
    out = tmp_path / "out" / "labels.seg.dcm"
    save_dicom_seg(labels, like=scan, path=out)
    np.testing.assert_array_equal(read_dicom_seg(out, like=scan), labels)
    _check_seg_geometry(out, scan, labels)
    assert [p.name for p in out.parent.iterdir()] == ["labels.seg.dcm"]  # no temporary left behind

    ds = pydicom.dcmread(out)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == scan.dicom.series_instance_uid
    assert ds.StudyInstanceUID == scan.dicom.study_instance_uid
    segments = {s.SegmentLabel: s for s in ds.SegmentSequence}
    assert set(segments) == {schema.LABEL_NAMES[v] for v in range(1, 7)}
    body = segments["vertebral_body"]
    assert body.SegmentedPropertyTypeCodeSequence[0].CodeValue == "3572006"
    assert body.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
    assert segments["spinal_cord"].SegmentedPropertyTypeCodeSequence[0].CodeValue == "2748008"
    assert segments["lesion"].SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert body.SegmentAlgorithmType == "AUTOMATIC"
    assert body.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "spinelesion"
    assert "AnatomicRegionSequence" not in body  # no levels given: none claimed


def test_seg_segments_name_the_levels_they_cover(ct_series, tmp_path):
    """Named levels (from the record) become each segment's anatomic regions: SNOMED CT vertebrae."""
    folder, _, _ = ct_series
    scan = load_scan(folder)
    out = tmp_path / "labels.seg.dcm"
    save_dicom_seg(_label_map(scan.shape), like=scan, path=out,
                   levels={schema.VERTEBRAL_BODY: ["L5", "L4", "L4", "S1"], schema.LESION: ["L4"]})
    import pydicom

    segments = {s.SegmentLabel: s for s in pydicom.dcmread(out).SegmentSequence}
    body = [(c.CodeValue, c.CodeMeaning) for c in segments["vertebral_body"].AnatomicRegionSequence]
    assert body == [("49668003", "L5 vertebra"), ("11994002", "L4 vertebra"), ("54735007", "Sacrum")]
    assert [c.CodeMeaning for c in segments["lesion"].AnatomicRegionSequence] == ["L4 vertebra"]
    assert "AnatomicRegionSequence" not in segments["spinal_cord"]


def test_seg_only_present_labels_and_bad_values(ct_series, tmp_path):
    import pydicom

    folder, _, _ = ct_series
    scan = load_scan(folder)
    labels = np.zeros(scan.shape, np.uint8)
    labels[2:5, 2:5, 2:4] = schema.SPINAL_CORD
    save_dicom_seg(labels, like=scan, path=tmp_path / "cord.dcm")
    ds = pydicom.dcmread(tmp_path / "cord.dcm")
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["spinal_cord"]
    np.testing.assert_array_equal(read_dicom_seg(tmp_path / "cord.dcm", like=scan), labels)

    empty = np.zeros(scan.shape, np.uint8)  # "nothing found" is a result too: all segments, empty
    save_dicom_seg(empty, like=scan, path=tmp_path / "empty.dcm")
    assert len(pydicom.dcmread(tmp_path / "empty.dcm").SegmentSequence) == 6
    np.testing.assert_array_equal(read_dicom_seg(tmp_path / "empty.dcm", like=scan), empty)

    labels[0, 0, 0] = 9
    with pytest.raises(LabelMapError, match=r"\[9\]"):
        save_dicom_seg(labels, like=scan, path=tmp_path / "bad.dcm")
    assert not (tmp_path / "bad.dcm").exists()
    with pytest.raises(LabelMapError, match="shape"):
        save_dicom_seg(labels[:-1], like=scan, path=tmp_path / "bad.dcm")


def test_seg_round_trip_enhanced_multiframe(tmp_path):
    volume = ct_volume(seed=7)
    write_enhanced_ct(tmp_path / "src" / "mf.dcm", volume, OBLIQUE_AFFINE)
    scan = load_scan(tmp_path / "src" / "mf.dcm")
    labels = _label_map(scan.shape, seed=1)
    save_dicom_seg(labels, like=scan, path=tmp_path / "mf_seg.dcm")
    np.testing.assert_array_equal(read_dicom_seg(tmp_path / "mf_seg.dcm", like=scan), labels)


def test_seg_round_trip_real_series(real_series_with_labels, tmp_path):
    """The real (anonymised, UID-less) JPEG 2000 series: SEG written, read back, same voxels."""
    scan, labels = real_series_with_labels
    folder = tmp_path / "series"   # where the fixture copied the series
    out = tmp_path / "real_seg.dcm"
    save_dicom_seg(labels, like=scan, path=out)
    np.testing.assert_array_equal(read_dicom_seg(out, like=scan), labels)
    _check_seg_geometry(out, scan, labels)
    # A SEG written into the series folder is not mistaken for an image series.
    shutil.copy(out, folder / "seg.dcm")
    again = load_scan(folder)
    np.testing.assert_array_equal(again.array, scan.array)
