"""``spinelesion inspect`` on the real scans and on synthetic DICOM carrying planted patient data."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from conftest import OBLIQUE_AFFINE, ct_volume, write_ct_series, write_enhanced_ct

PLANTED = ("Secretname^Planted", "PID-SECRET-42", "19230405")


def _inspect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spinelesion", "inspect", *args],
                          capture_output=True, text=True, timeout=120)


#: real scan -> (modality inspect must report, how it knows)
REAL_SCANS = {
    "sct_t2/t2.nii.gz": ("MR", "guessed"),
    "sct_lumbar_t2/t2_lumbar.nii.gz": ("MR", "guessed"),
    "totalseg_ct/example_ct.nii.gz": ("CT", "guessed"),
}


@pytest.mark.parametrize("name", sorted(REAL_SCANS))
def test_inspect_real_nifti_prints_a_sane_line(real_data, name):
    path = real_data / name
    result = _inspect(str(path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    img = nib.load(path)
    modality, how = REAL_SCANS[name]
    assert f"NIfTI {path.name}: shape {tuple(img.shape)}" in lines[0]
    assert f"orientation {''.join(nib.aff2axcodes(img.affine))}" in lines[0]
    assert f"modality {modality} ({how})" in lines[0]
    spacing = "x".join(f"{s:.3g}" for s in img.header.get_zooms()[:3])
    assert f"spacing {spacing} mm" in lines[0]
    data = np.asarray(img.dataobj)
    assert re.search(rf"intensity {data.min():.6g}\.\.{data.max():.6g} ", lines[0])


@pytest.mark.parametrize("name", ["sct_t2/t2_seg-manual.nii.gz", "sct_t2/t2_seg-manual_labeled.nii.gz",
                                  "totalseg_ct/example_ct_totalseg.nii.gz",
                                  "totalseg_ct_dicom/example_seg_dicom.nii.gz"])
def test_inspect_real_label_maps(real_data, name):
    result = _inspect(str(real_data / name))
    assert result.returncode == 0, result.stderr
    img = nib.load(real_data / name)
    assert f"shape {tuple(img.shape)}" in result.stdout


def test_inspect_real_dicom_series(real_data):
    result = _inspect(str(real_data / "totalseg_ct_dicom/series"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("* series ") and "CT  20 files" in lines[0] and "20 slices, 512x512" in lines[0]
    assert "(20 slices): shape (512, 512, 20), spacing 0.977x0.977x2 mm, orientation LPS" in lines[1]
    assert "modality CT (header), intensity -1024.." in lines[1]


def test_inspect_never_shows_patient_data(tmp_path):
    """Plant a name, ID and birth date in a two-series folder and a multi-frame file: none is shown."""
    folder = tmp_path / "study"
    write_ct_series(folder / "a", ct_volume(), OBLIQUE_AFFINE, patient_name=PLANTED[0],
                    description="axial bone", series_uid="1.2.3.10")
    write_ct_series(folder / "b", ct_volume((24, 20, 4)), OBLIQUE_AFFINE, patient_name=PLANTED[0],
                    series_uid="1.2.3.20", prefix="B")
    write_enhanced_ct(tmp_path / "mf.dcm", ct_volume(seed=3), OBLIQUE_AFFINE, patient_name=PLANTED[0])
    for target in (folder, tmp_path / "mf.dcm"):
        text = _inspect(str(target))
        as_json = _inspect(str(target), "--json")
        assert text.returncode == 0 and as_json.returncode == 0, text.stderr + as_json.stderr
        for output in (text.stdout + text.stderr, as_json.stdout + as_json.stderr):
            for secret in (*PLANTED, "Secretname", "Planted", "SECRET"):
                assert secret not in output
    info = json.loads(_inspect(str(folder), "--json").stdout)
    assert [s["series_instance_uid"] for s in info["series"]] == ["1.2.3.10", "1.2.3.20"]
    assert info["series_instance_uid"] == "1.2.3.10"
    assert info["series"][0]["description"] == "axial bone; 9 slices, 20x24"
    assert info["modality"] == "CT" and info["oblique"] is True
    np.testing.assert_allclose(info["affine"], np.round(OBLIQUE_AFFINE, 4), atol=1e-4)
