"""Every bad input from the foundation issue: a specific error naming the file, and a one-line CLI
message with exit code 2 and no traceback. The tests make every bad file themselves."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from conftest import OBLIQUE_AFFINE, ct_volume, make_affine, write_ct_series

from spinelesion.errors import DicomSeriesError, ScanLoadError
from spinelesion.io import load_scan


def _nifti(path, array):
    nib.save(nib.Nifti1Image(np.asarray(array, np.float32), OBLIQUE_AFFINE), path)
    return path


def _missing(tmp):
    return tmp / "nowhere" / "scan.nii.gz"


def _empty_folder(tmp):
    (tmp / "empty").mkdir()
    return tmp / "empty"


def _folder_without_dicom(tmp):
    (tmp / "docs").mkdir()
    (tmp / "docs" / "readme.txt").write_text("no images here")
    (tmp / "docs" / "data.bin").write_bytes(os.urandom(512))
    return tmp / "docs"


def _text_file(tmp):
    (tmp / "notes.txt").write_text("not an image")
    return tmp / "notes.txt"


def _random_bytes_nifti(tmp):
    (tmp / "random.nii.gz").write_bytes(np.random.default_rng(0).bytes(4096))
    return tmp / "random.nii.gz"


def _gzip_of_garbage_nifti(tmp):
    (tmp / "garbage.nii.gz").write_bytes(gzip.compress(np.random.default_rng(1).bytes(4096)))
    return tmp / "garbage.nii.gz"


def _truncated_nifti(tmp):
    full = _nifti(tmp / "full.nii.gz", np.random.default_rng(0).normal(size=(30, 30, 30)))
    data = full.read_bytes()
    (tmp / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
    return tmp / "truncated.nii.gz"


def _truncated_plain_nifti(tmp):
    full = _nifti(tmp / "full.nii", np.random.default_rng(0).normal(size=(30, 30, 30)))
    data = full.read_bytes()
    (tmp / "truncated.nii").write_bytes(data[: len(data) // 2])
    return tmp / "truncated.nii"


def _dicom_missing_slice(tmp):
    write_ct_series(tmp / "gap", ct_volume(), OBLIQUE_AFFINE, skip={3})
    return tmp / "gap"


def _dicom_duplicate(tmp):
    write_ct_series(tmp / "dup", ct_volume(), OBLIQUE_AFFINE, duplicate_of={2: 6})
    return tmp / "dup"


def _dicom_ambiguous(tmp):
    affine2 = make_affine(np.eye(3), (1, 1, 2), (0, 0, 0))
    write_ct_series(tmp / "mixed", ct_volume(seed=1), OBLIQUE_AFFINE, series_uid="1.2.3.1", prefix="A")
    write_ct_series(tmp / "mixed", ct_volume(seed=2), affine2, series_uid="1.2.3.2", prefix="B")
    return tmp / "mixed"


def _nifti_2d(tmp):
    return _nifti(tmp / "slice2d.nii.gz", np.zeros((16, 12)))


def _nifti_single_slice(tmp):
    return _nifti(tmp / "slice1.nii.gz", np.zeros((16, 12, 1)))


def _dicom_single_slice_file(tmp):
    return write_ct_series(tmp / "one", ct_volume((16, 12, 1)), OBLIQUE_AFFINE)[0]


def _dicom_single_slice_folder(tmp):
    write_ct_series(tmp / "one", ct_volume((16, 12, 1)), OBLIQUE_AFFINE)
    return tmp / "one"


def _nifti_4d(tmp):
    return _nifti(tmp / "fmri.nii.gz", np.random.default_rng(0).normal(size=(8, 9, 10, 3)))


def _nifti_nan(tmp):
    vol = np.zeros((8, 9, 10), np.float32)
    vol[2, 3, 4] = np.nan
    return _nifti(tmp / "nan.nii.gz", vol)


def _nifti_inf(tmp):
    vol = np.zeros((8, 9, 10), np.float32)
    vol[1, 1, 1] = np.inf
    vol[2, 2, 2] = -np.inf
    return _nifti(tmp / "inf.nii.gz", vol)


def _mha_nan(tmp):
    import SimpleITK as sitk

    vol = np.zeros((10, 9, 8), np.float32)
    vol[3, 3, 3] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(vol), str(tmp / "nan.mha"))
    return tmp / "nan.mha"


#: name -> (builder, exception class, regex the message must match)
CASES = {
    "missing path": (_missing, ScanLoadError, "no such file or folder"),
    "empty folder": (_empty_folder, ScanLoadError, "empty folder"),
    "folder without DICOM": (_folder_without_dicom, ScanLoadError, "no DICOM image series"),
    "text file": (_text_file, ScanLoadError, "not an image file"),
    "random bytes .nii.gz": (_random_bytes_nifti, ScanLoadError, "not a readable NIfTI"),
    "gzip of garbage .nii.gz": (_gzip_of_garbage_nifti, ScanLoadError, "not a readable NIfTI"),
    "truncated .nii.gz": (_truncated_nifti, ScanLoadError, "not a readable NIfTI"),
    "truncated .nii": (_truncated_plain_nifti, ScanLoadError, "truncated file or corrupt header"),
    "DICOM missing slice": (_dicom_missing_slice, DicomSeriesError, "missing slice"),
    "DICOM duplicate positions": (_dicom_duplicate, DicomSeriesError, "duplicate slice position"),
    "DICOM ambiguous series": (_dicom_ambiguous, DicomSeriesError, "tied .* --series-uid"),
    "NIfTI 2D": (_nifti_2d, ScanLoadError, "2D image"),
    "NIfTI single slice": (_nifti_single_slice, ScanLoadError, "2D image"),
    "DICOM single slice file": (_dicom_single_slice_file, ScanLoadError, "2D image"),
    "DICOM single slice folder": (_dicom_single_slice_folder, ScanLoadError, "2D image"),
    "4D without volume": (_nifti_4d, ScanLoadError, "4D image with 3 volumes"),
    "NaN voxel": (_nifti_nan, ScanLoadError, "1 voxels are NaN or infinite"),
    "Inf voxels": (_nifti_inf, ScanLoadError, "2 voxels are NaN or infinite"),
    "NaN voxel MHA": (_mha_nan, ScanLoadError, "NaN or infinite"),
}


def _run_cli(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "spinelesion", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def _assert_one_line_error(result: subprocess.CompletedProcess, path) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0]
    assert lines[0].startswith("spinelesion inspect: error: ")


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_raises_named_error(case, tmp_path):
    build, error, pattern = CASES[case]
    path = build(tmp_path)
    with pytest.raises(error, match=pattern) as info:
        load_scan(path)
    assert type(info.value) is error  # the specific class, not just the family
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_cli_prints_one_line(case, tmp_path):
    path = CASES[case][0](tmp_path)
    _assert_one_line_error(_run_cli("inspect", str(path)), path)


def test_4d_with_volume_index_loads(tmp_path):
    path = _nifti_4d(tmp_path)
    data = np.asarray(nib.load(path).dataobj)
    scan = load_scan(path, volume_index=1)
    np.testing.assert_array_equal(scan.array, data[..., 1])
    np.testing.assert_allclose(scan.affine, OBLIQUE_AFFINE, atol=1e-6)
    with pytest.raises(ScanLoadError, match="outside 0..2"):
        load_scan(path, volume_index=3)
    result = _run_cli("inspect", str(path), "--volume", "2")
    assert result.returncode == 0, result.stderr
    assert "shape (8, 9, 10)" in result.stdout


def test_ambiguous_series_resolved_with_series_uid_on_cli(tmp_path):
    path = _dicom_ambiguous(tmp_path)
    result = _run_cli("inspect", str(path), "--series-uid", "1.2.3.2")
    assert result.returncode == 0, result.stderr
    assert "DICOM series 1.2.3.2 (9 slices)" in result.stdout


def test_no_decoder_cli(real_data, tmp_path):
    """With every JPEG 2000 decoder plugin removed, the CLI names the syntax and the package."""
    folder = tmp_path / "j2k"
    shutil.copytree(real_data / "totalseg_ct_dicom/series", folder)
    code = ("import sys\n"
            "from pydicom.pixels.decoders import JPEG2000LosslessDecoder as D\n"
            "D._available.clear()\n"
            "from spinelesion.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    result = _run_cli("inspect", str(folder), code=code)
    _assert_one_line_error(result, folder)
    assert "JPEG 2000" in result.stderr and "pip install pylibjpeg pylibjpeg-openjpeg" in result.stderr
