"""DICOM loading: synthetic series built with pydicom, enhanced multi-frame, and the real series."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import OBLIQUE_AFFINE, ct_volume, make_affine, rotation, write_ct_series, write_enhanced_ct

from spinelesion.errors import DicomSeriesError, ScanLoadError
from spinelesion.io import load_scan
from spinelesion.io.dicom import list_series, load_dicom_file


def test_oblique_series_matches_truth(ct_series):
    folder, volume, affine = ct_series
    scan = load_scan(folder)
    assert scan.shape == volume.shape
    assert scan.array.dtype == np.float32
    np.testing.assert_allclose(scan.affine, affine, atol=1e-5)
    np.testing.assert_array_equal(scan.array, volume)  # HU: RescaleIntercept -1024 applied
    assert scan.modality == "CT" and scan.extra["modality_source"] == "header"
    assert scan.source.startswith("DICOM series ") and "(9 slices)" in scan.source
    # slice_files are in k order: file k holds slice k's pixels.
    import pydicom

    for k in (0, 4, 8):
        ds = pydicom.dcmread(scan.dicom.slice_files[k])
        np.testing.assert_allclose(ds.pixel_array.T.astype(np.float32) - 1024, volume[:, :, k])


def test_series_stored_against_the_normal_is_sorted(tmp_path):
    """Slices whose step points against row x column are reordered; the world mapping holds."""
    affine = make_affine(rotation("y", 15) @ np.diag([1.0, 1.0, -1.0]), (0.9, 0.9, 3.0), (10, 20, 30))
    assert np.linalg.det(affine[:3, :3]) < 0  # slice step opposite to the row x column normal
    volume = ct_volume(seed=3) + 1100  # MR-like: non-negative, no rescale
    write_ct_series(tmp_path, volume, affine, modality="MR", intercept=0.0)
    scan = load_scan(tmp_path)
    assert scan.modality == "MR"
    flip_z = np.eye(4)
    flip_z[2, 2], flip_z[2, 3] = -1, volume.shape[2] - 1
    np.testing.assert_allclose(scan.affine, affine @ flip_z, atol=1e-5)
    np.testing.assert_array_equal(scan.array, volume[:, :, ::-1])


def test_gantry_tilt_keeps_slice_positions(tmp_path):
    """A sheared grid (slice step not along the normal) keeps each slice at its true position."""
    affine = make_affine(np.eye(3), (0.7, 0.7, 2.0), (0, 0, 0))
    affine[1, 2] = 0.5  # each slice moves 0.5 mm in y: a tilted gantry
    volume = ct_volume(seed=4)
    write_ct_series(tmp_path, volume, affine)
    scan = load_scan(tmp_path)
    np.testing.assert_allclose(scan.affine, affine, atol=1e-5)
    np.testing.assert_array_equal(scan.array, volume)


def test_rle_compressed_series(tmp_path):
    from pydicom.uid import RLELossless

    volume = ct_volume(seed=5)
    write_ct_series(tmp_path, volume, OBLIQUE_AFFINE, transfer_syntax=RLELossless)
    scan = load_scan(tmp_path)
    assert "RLE" in scan.extra["transfer_syntax"]
    np.testing.assert_array_equal(scan.array, volume)


def test_missing_slice_is_an_error(tmp_path):
    write_ct_series(tmp_path, ct_volume(), OBLIQUE_AFFINE, skip={4})
    with pytest.raises(DicomSeriesError, match="missing slice") as err:
        load_scan(tmp_path)
    assert str(tmp_path) in str(err.value)
    # The missing position is named: slice 4 lies 4 x 2.5 mm along the normal from slice 0.
    lps0 = np.diag([-1, -1, 1]) @ OBLIQUE_AFFINE[:3, 3]
    normal = np.diag([-1, -1, 1]) @ OBLIQUE_AFFINE[:3, 2] / 2.5
    assert f"{lps0 @ normal + 4 * 2.5:.3f} mm along the normal" in str(err.value)


def test_duplicate_positions_are_an_error(tmp_path):
    write_ct_series(tmp_path, ct_volume(), OBLIQUE_AFFINE, duplicate_of={5: 4})
    with pytest.raises(DicomSeriesError, match="duplicate slice position") as err:
        load_scan(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_irregular_spacing_is_an_error(tmp_path):
    affine = make_affine(np.eye(3), (1, 1, 2.0), (0, 0, 0))
    volume = ct_volume()
    write_ct_series(tmp_path, volume, affine, skip={8})
    # Move slice 7 by 0.6 mm: within the 1.5x gap rule, but off the regular grid.
    import pydicom

    for path in tmp_path.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        if abs(float(ds.ImagePositionPatient[2]) - 14.0) < 1e-6:
            ds.ImagePositionPatient = [0, 0, 14.6]
            ds.save_as(path)
    with pytest.raises(DicomSeriesError, match="irregular slice spacing"):
        load_scan(tmp_path)


def test_two_series_default_largest_choice_and_tie(tmp_path):
    big, small = ct_volume((24, 20, 9), seed=1), ct_volume((24, 20, 5), seed=2)
    affine2 = make_affine(np.eye(3), (1.0, 1.0, 3.0), (5, 5, 5))
    write_ct_series(tmp_path / "a", big, OBLIQUE_AFFINE, series_uid="1.2.3.100", prefix="A")
    write_ct_series(tmp_path / "b", small, affine2, series_uid="1.2.3.200", prefix="B")
    (tmp_path / "notes.txt").write_text("not dicom")

    series = list_series(tmp_path)
    assert [s.series_instance_uid for s in series] == ["1.2.3.100", "1.2.3.200"]
    assert [s.summary()["n_files"] for s in series] == [9, 5]

    scan = load_scan(tmp_path)  # default: the larger
    assert scan.dicom.series_instance_uid == "1.2.3.100"
    np.testing.assert_array_equal(scan.array, big)
    other = load_scan(tmp_path, series_uid="1.2.3.200")  # never mixed with the other
    assert other.shape == small.shape
    np.testing.assert_array_equal(other.array, small)
    np.testing.assert_allclose(other.affine, affine2, atol=1e-5)
    with pytest.raises(DicomSeriesError, match="1.2.3.999"):
        load_scan(tmp_path, series_uid="1.2.3.999")

    write_ct_series(tmp_path / "c", ct_volume((24, 20, 9), seed=3), affine2, series_uid="1.2.3.300", prefix="C")
    with pytest.raises(DicomSeriesError, match="--series-uid") as err:
        load_scan(tmp_path)
    assert "1.2.3.100" in str(err.value) and "1.2.3.300" in str(err.value)


def test_enhanced_multiframe_ct(tmp_path):
    volume = ct_volume(seed=6)
    path = tmp_path / "enhanced.dcm"
    order = write_enhanced_ct(path, volume, OBLIQUE_AFFINE)
    scan = load_scan(path)
    assert scan.modality == "CT" and scan.shape == volume.shape
    np.testing.assert_allclose(scan.affine, OBLIQUE_AFFINE, atol=1e-5)
    np.testing.assert_array_equal(scan.array, volume)
    # frame_numbers[k] is the 1-based frame holding slice k.
    assert [order[f - 1] for f in scan.dicom.frame_numbers] == list(range(volume.shape[2]))
    # The same file inside a folder loads the same way.
    folder_scan = load_scan(tmp_path)
    np.testing.assert_array_equal(folder_scan.array, volume)


def test_enhanced_multiframe_from_highdicom_legacy_converter(ct_series, tmp_path):
    """An independent multi-frame writer: highdicom's Legacy Converted Enhanced CT."""
    import highdicom as hd
    import pydicom

    folder, volume, affine = ct_series
    datasets = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    converted = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=datasets, series_instance_uid=hd.UID(), series_number=9,
        sop_instance_uid=hd.UID(), instance_number=1)
    path = tmp_path / "legacy_enhanced.dcm"
    converted.save_as(path)
    scan = load_dicom_file(path)
    np.testing.assert_allclose(scan.affine, affine, atol=1e-5)
    np.testing.assert_array_equal(scan.array, volume)


def test_real_series_matches_reference_nifti_grid(real_data):
    """The JPEG 2000 series lands on the grid of example_seg_dicom.nii.gz within 0.01 mm."""
    import nibabel as nib

    scan = load_scan(real_data / "totalseg_ct_dicom/series")
    ref = nib.load(real_data / "totalseg_ct_dicom/example_seg_dicom.nii.gz")
    assert "JPEG 2000" in scan.extra["transfer_syntax"]
    assert sorted(scan.shape) == sorted(ref.shape)
    # Match voxel axes: the permutation and flips that take our index axes to the reference's.
    ours, theirs = scan.affine[:3, :3], ref.affine[:3, :3]
    perm_flip = np.round(np.linalg.solve(theirs, ours))  # our index step -> their index step
    assert np.allclose(np.abs(perm_flip).sum(axis=0), 1) and np.allclose(np.abs(perm_flip).sum(axis=1), 1)
    shape = np.array(scan.shape)
    rng = np.random.default_rng(0)
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) * (shape - 1)
    voxels = np.vstack([corners, rng.integers(0, shape, size=(200, 3))]).astype(float)
    ours_mm = (scan.affine @ np.c_[voxels, np.ones(len(voxels))].T)[:3]
    their_index = perm_flip @ voxels.T
    their_index += np.where(perm_flip.sum(axis=1) < 0, np.array(ref.shape) - 1, 0)[:, None]
    assert ((their_index >= 0) & (their_index < np.array(ref.shape)[:, None])).all()
    theirs_mm = (ref.affine @ np.vstack([their_index, np.ones(len(voxels))]))[:3]
    assert np.abs(ours_mm - theirs_mm).max() < 0.01
    # HU: outside-the-body air near -1000, soft tissue around 0..100.
    assert scan.modality == "CT"
    assert -1030 <= np.percentile(scan.array, 1) <= -950
    assert -1030 <= scan.array[:20, :20, :].mean() <= -950  # a corner of the field of view
    # The reference's spinal cord (class 79) lies on soft-tissue values in our voxels.
    seg = np.asarray(ref.dataobj)
    cord_ref = np.argwhere(seg == 79)
    assert len(cord_ref) > 50
    inv = np.linalg.inv(scan.affine) @ ref.affine
    cord_ours = np.round((inv @ np.c_[cord_ref, np.ones(len(cord_ref))].T)[:3]).astype(int)
    cord_hu = scan.array[tuple(cord_ours)]
    assert 0 < np.median(cord_hu) < 100


def test_no_decoder_gives_a_clear_error(real_data, tmp_path, monkeypatch):
    from pydicom.pixels.decoders import JPEG2000LosslessDecoder

    folder = tmp_path / "j2k"
    shutil.copytree(real_data / "totalseg_ct_dicom/series", folder)
    monkeypatch.setattr(JPEG2000LosslessDecoder, "_available", {})
    with pytest.raises(ScanLoadError, match="JPEG 2000") as err:
        load_scan(folder)
    message = str(err.value)
    assert str(folder) in message and "pylibjpeg-openjpeg" in message


def test_single_slice_file_and_series_are_2d(tmp_path):
    paths = write_ct_series(tmp_path / "one", ct_volume((16, 16, 1)), OBLIQUE_AFFINE)
    with pytest.raises(ScanLoadError, match="2D image") as err:
        load_scan(paths[0])
    assert str(paths[0]) in str(err.value)
    with pytest.raises(ScanLoadError, match="single slice") as err:
        load_scan(tmp_path / "one")
    assert str(tmp_path / "one") in str(err.value)


def test_summary_has_no_patient_data(ct_series):
    folder, _, _ = ct_series
    (summary,) = [s.summary() for s in list_series(folder)]
    assert set(summary) == {"series_instance_uid", "modality", "n_files", "description"}
    text = repr(summary)
    for secret in ("Doe", "Jane", "PID-SECRET-42", "19230405"):
        assert secret not in text
    assert summary["description"] == "synthetic; 9 slices, 20x24"


@pytest.mark.parametrize("which", ["synthetic", "real"])
def test_geometry_agrees_with_simpleitk_series_reader(which, ct_series, real_data):
    """An independent reader (ITK/GDCM) maps every voxel to the same world point."""
    import SimpleITK as sitk

    folder = ct_series[0] if which == "synthetic" else real_data / "totalseg_ct_dicom/series"
    scan = load_scan(folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    itk_array = np.transpose(sitk.GetArrayFromImage(img), (2, 1, 0)).astype(np.float32)
    assert itk_array.shape == scan.shape
    # ITK may stack the slices in the other order; find which and compare voxels and positions.
    z_flip = not np.array_equal(itk_array, scan.array)
    if z_flip:
        itk_array = itk_array[:, :, ::-1]
    np.testing.assert_array_equal(itk_array, scan.array)
    nz = scan.shape[2] - 1
    for i, j, k in [(0, 0, 0), (scan.shape[0] - 1, scan.shape[1] - 1, nz), (3, 5, nz // 2)]:
        x, y, z = img.TransformIndexToPhysicalPoint((i, j, nz - k if z_flip else k))
        np.testing.assert_allclose((scan.affine @ [i, j, k, 1])[:3], [-x, -y, z], atol=1e-3)


def test_localizer_in_the_series_is_left_out(ct_series):
    """A scout image that shares the series UID (as some scanners write it) is not stacked."""
    import pydicom

    folder, volume, affine = ct_series
    first = sorted(folder.glob("*.dcm"))[0]
    ds = pydicom.dcmread(first)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # a coronal scout
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(folder / "scout.dcm")
    scan = load_scan(folder)
    np.testing.assert_array_equal(scan.array, volume)
    np.testing.assert_allclose(scan.affine, affine, atol=1e-5)
