"""Measurement on real label maps from ../shared/data/real (copied to tmp_path first).

Sources: spinalcordtoolbox/sct_testing_data (MIT) and wasserth/TotalSegmentator test files
(Apache-2.0); see ../shared/data/real/README.md.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from spinelesion.measure import measure_files

from conftest import REAL_DATA as REAL
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason="real test data not available")


def _copy(tmp_path: Path, *names: str) -> list[Path]:
    out = []
    for name in names:
        dst = tmp_path / Path(name).name
        shutil.copy(REAL / name, dst)
        out.append(dst)
    return out


def test_sct_healthy_cord_not_compressed(tmp_path):
    image, seg = _copy(tmp_path, "sct_t2/t2.nii.gz", "sct_t2/t2_seg-manual.nii.gz")
    r = measure_files(image_path=image, labels_path=seg, label_map="cord")
    assert r["scan"]["orientation"] == "PSR"
    assert r["cord"]["compression_flag"] is False
    assert r["cord"]["mscc_pct"] is not None and abs(r["cord"]["mscc_pct"]) < 15
    assert r["cord"]["bilsky_grade"] is None  # no lesion at all
    assert r["cord"]["mcc_pct"] is None  # no thecal sac labelled
    assert r["vertebrae"] == []
    assert any("no vertebrae" in f for f in r["flags"]) and any("thecal sac" in f for f in r["flags"])
    areas = r["cord_profile"]["cord_area_mm2"]
    assert 60 < min(areas) and max(areas) < 95  # README: about 69-85 mm^2


def test_sct_cord_read_as_our_schema_names_the_mapping_that_fits(tmp_path):
    """A cord mask (value 1) read with the default schema (1 = vertebral body) used to report a
    "body cut by the field of view"; now it is refused, naming --label-map cord."""
    from spinelesion.errors import LabelMapError

    image, seg = _copy(tmp_path, "sct_t2/t2.nii.gz", "sct_t2/t2_seg-manual.nii.gz")
    with pytest.raises(LabelMapError, match="spinal cord mask.*--label-map cord"):
        measure_files(image_path=image, labels_path=seg)  # value 1 = vertebral body in schema v1


def test_totalsegmentator_levels(tmp_path):
    image, seg = _copy(tmp_path, "totalseg_ct/example_ct.nii.gz", "totalseg_ct/example_ct_totalseg.nii.gz")
    r = measure_files(image_path=image, labels_path=seg, label_map="totalsegmentator")
    levels = [v["level"] for v in r["vertebrae"]]
    assert levels == ["S1", "L5", "L4", "L3", "L2", "L1", "T12", "T11"]  # inferior -> superior
    by_level = {v["level"]: v for v in r["vertebrae"]}
    for level in ("L5", "L4", "L3", "L2", "L1"):
        v = by_level[level]
        for key in ("height_anterior_mm", "height_middle_mm", "height_posterior_mm"):
            assert 20 <= v[key] <= 36, (level, key, v[key])
        assert 25 <= v["body_volume_ml"] <= 70
        assert v["genant_grade"] == 0
    # T12 and T11 are cut by the top of the field of view: named, heights not measured
    assert by_level["T12"]["truncated"] and by_level["T12"]["height_middle_mm"] is None
    assert by_level["T11"]["truncated"]
    assert by_level["S1"]["height_loss_pct"] is None  # sacrum: no neighbour comparison
    assert r["cord"]["mscc_pct"] is None and any("no spinal cord" in f for f in r["flags"])
    assert not any("compression" in f for f in r["flags"])


def test_totalsegmentator_map_of_a_dicom_series_in_another_axis_order(tmp_path):
    """The DICOM series loads LPS; its TotalSegmentator map (dcm2niix grid) is stored LAS: the same
    voxel centres, so the map is put in the series' order and measured (T12 and T11, both cut by
    the 20-slice field of view)."""
    series = tmp_path / "series"
    shutil.copytree(REAL / "totalseg_ct_dicom/series", series)
    (seg,) = _copy(tmp_path, "totalseg_ct_dicom/example_seg_dicom.nii.gz")
    r = measure_files(image_path=series, labels_path=seg, label_map="totalsegmentator")
    assert r["scan"]["orientation"] == "LPS"
    assert [v["level"] for v in r["vertebrae"]] == ["T12", "T11"]
    assert all(v["truncated"] for v in r["vertebrae"])
    assert 20 <= r["vertebrae"][0]["body_volume_ml"] <= 60
