"""Measurement on small synthetic label maps with known geometry (tests/measure_synth.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import measure_synth as S  # noqa: E402

from spinelesion.errors import ConfigError, LabelMapError  # noqa: E402
from spinelesion.measure import MeasureSettings, measure_files, measure_labels, settings_from_dict  # noqa: E402


def _measure(orientation="RAS", rotation=None, spacing=(1.0, 1.0, 1.0), label_map=None, **kw):
    affine, shape = S.grid(orientation=orientation, rotation_matrix=rotation, spacing_mm=spacing)
    labels = S.column(affine, shape, merged=label_map == "vertebra", **kw)
    return measure_labels(labels=labels, affine=affine, label_map=label_map)


@pytest.fixture(scope="module")
def healthy():
    return _measure()


def test_healthy_column(healthy):
    r = healthy
    assert len(r["vertebrae"]) == 5
    for v in r["vertebrae"]:
        for key in ("height_anterior_mm", "height_middle_mm", "height_posterior_mm"):
            assert v[key] == pytest.approx(S.BODY_HEIGHT_MM, abs=1.0)
        assert v["body_destruction_pct"] == 0
        assert v["height_loss_pct"] < 5 and v["genant_grade"] == 0 and v["sins_collapse"] == "none"
        assert v["posterolateral"] == "none"
    z = [v["centroid_mm"][2] for v in r["vertebrae"]]
    assert np.allclose(np.diff(z), S.BODY_HEIGHT_MM + S.DISC_MM, atol=0.5)  # inferior -> superior
    assert r["cord"]["bilsky_grade"] is None and not r["cord"]["compression_flag"]
    assert abs(r["cord"]["mscc_pct"]) < 5
    assert not any("compression" in f for f in r["flags"])
    json.dumps(r)  # serialisable


@pytest.mark.parametrize("orientation,rotation,spacing", [
    ("LPS", None, (1.0, 1.0, 1.0)),
    ("PSR", None, (0.9, 1.0, 1.2)),
    ("RAS", S.rotation(12, -8, 20), (1.0, 1.0, 1.0)),
])
def test_orientation_does_not_change_results(healthy, orientation, rotation, spacing):
    r = _measure(orientation=orientation, rotation=rotation, spacing=spacing)
    assert len(r["vertebrae"]) == 5
    for a, b in zip(r["vertebrae"], healthy["vertebrae"]):
        assert np.allclose(a["centroid_mm"], b["centroid_mm"], atol=0.7)
        assert a["height_middle_mm"] == pytest.approx(b["height_middle_mm"], abs=1.0)
        assert a["body_volume_ml"] == pytest.approx(b["body_volume_ml"], rel=0.05)


def test_lesion_fraction_and_crush():
    r = _measure(heights=[20, 20, 12, 20, 20], lesion=(2, 0.5))
    v = r["vertebrae"][2]
    assert v["body_destruction_pct"] == pytest.approx(50, abs=3)
    assert v["height_loss_pct"] == pytest.approx(40, abs=5)
    assert v["genant_grade"] in (2, 3) and v["sins_collapse"] == "under_50pct"
    assert any("SINS collapse: under 50 % collapse" in f for f in r["flags"]), r["flags"]
    assert all(o["height_loss_pct"] < 5 for i, o in enumerate(r["vertebrae"]) if i != 2)
    assert len(r["lesions"]) == 1 and r["lesions"][0]["vertebra_index"] == 2
    assert not r["lesions"][0]["epidural"]
    assert r["cord"]["bilsky_grade"] == "0" and not r["cord"]["compression_flag"]


@pytest.mark.parametrize("ap_mm,no_csf,grade", [(4.0, True, "3"), (4.5, False, "2")])
def test_cord_compression(ap_mm, no_csf, grade):
    r = _measure(compression={"vertebra": 2, "cord_ap_mm": ap_mm, "no_csf": no_csf})
    c = r["cord"]
    assert c["bilsky_grade"] == grade and c["compression_flag"]
    assert c["mscc_pct"] == pytest.approx(100 * (1 - ap_mm / 7.0), abs=5)
    assert c["worst_centroid_mm"][2] == pytest.approx(2 * (S.BODY_HEIGHT_MM + S.DISC_MM), abs=6)
    assert any(f.startswith(f"cord compression, Bilsky {grade}") for f in r["flags"])
    assert any(les["epidural"] for les in r["lesions"])


def _cauda(indent_mm: float, orientation: str = "RAS", **settings):
    affine, shape = S.grid(orientation=orientation)
    labels = S.cauda_column(affine, shape, conus_z_mm=65.0, indent_mm=indent_mm)
    return measure_labels(labels=labels, affine=affine, settings=MeasureSettings(**settings))


@pytest.mark.parametrize("orientation", ["RAS", "PSR", "LPI"])
def test_epidural_tumour_below_the_conus_is_graded_on_the_sac(orientation):
    """Below the conus (no cord) the sac's narrowing decides: half of its 14 mm AP taken by the mass;
    the voxel order (feet first along an array axis, the column along another) does not matter."""
    r = _cauda(7.0, orientation)
    c = r["cord"]
    assert c["bilsky_grade"] == "2" and c["compression_flag"] is True
    assert c["mscc_pct"] is None and c["mcc_pct"] == pytest.approx(50, abs=10)
    assert c["worst_centroid_mm"][2] == pytest.approx(S.BODY_HEIGHT_MM + S.DISC_MM, abs=6)
    kinds = [f["kind"] for f in r["findings"]]
    assert "cauda_equina_compression" in kinds and "cord_compression" not in kinds
    assert any(f.startswith("cauda equina compression below the conus, Bilsky 2") for f in r["flags"]), r["flags"]


def test_slight_indentation_below_the_conus_is_not_compression():
    r = _cauda(2.0)
    assert r["cord"]["bilsky_grade"] == "1b" and r["cord"]["compression_flag"] is False
    assert r["cord"]["mcc_pct"] == pytest.approx(14, abs=8)
    assert any(f.startswith("epidural tumour without cord compression, Bilsky 1b") for f in r["flags"]), r["flags"]


def test_cauda_grading_can_be_turned_off():
    r = _cauda(7.0, cauda_compressed_mcc_pct=None)
    assert r["cord"]["bilsky_grade"] == "1b" and r["cord"]["compression_flag"] is False


def test_only_canal_caudal_to_the_cord_counts_as_cauda():
    from spinelesion.measure.cauda import cauda_sections

    n = 60
    centre = np.zeros((n, 3))
    centre[:, 2] = np.arange(n, dtype=float)          # section i at z = i mm (+z cranial)
    canal = np.ones(n, bool)
    cord_above = np.arange(n) >= 30                    # cord in the cranial half: cauda below it
    cauda = cauda_sections(has_cord=cord_above, has_canal=canal, centre_mm=centre, step_mm=1.0)
    assert np.flatnonzero(cauda).tolist() == list(range(5, 25))  # 5 mm off the sac's end and the conus
    reversed_cauda = cauda_sections(has_cord=cord_above[::-1], has_canal=canal, centre_mm=centre[::-1], step_mm=1.0)
    assert np.array_equal(reversed_cauda, cauda[::-1])   # the same canal listed from the head down
    cord_below = ~cord_above                             # sac without cord cranial to the cord: not cauda
    assert not cauda_sections(has_cord=cord_below, has_canal=canal, centre_mm=centre, step_mm=1.0).any()


def test_merged_vertebra_class_is_split():
    r = _measure(label_map="vertebra", heights=[20, 20, 12, 20, 20], lesion=(2, 0.5))
    assert len(r["vertebrae"]) == 5
    v = r["vertebrae"][2]
    assert v["body_destruction_pct"] == pytest.approx(50, abs=5)
    assert v["height_loss_pct"] == pytest.approx(40, abs=6)
    assert r["vertebrae"][0]["height_middle_mm"] == pytest.approx(20, abs=1.0)


def test_column_without_discs_split_by_components():
    r = _measure(discs=False)
    assert len(r["vertebrae"]) == 5
    assert r["column"]["split_method"] == "components"


def test_lowest_level_names_levels():
    affine, shape = S.grid()
    r = measure_labels(labels=S.column(affine, shape), affine=affine, lowest_level="L3")
    assert [v["level"] for v in r["vertebrae"]] == ["L3", "L2", "L1", "T12", "T11"]
    with pytest.raises(LabelMapError):
        measure_labels(labels=S.column(affine, shape), affine=affine, lowest_level="X9")


def test_no_cord_gives_nulls_and_flag():
    r = _measure(cord=False, sac=False)
    assert r["cord"]["mscc_pct"] is None and r["cord"]["bilsky_grade"] is None
    assert any("no spinal cord" in f for f in r["flags"])
    assert len(r["vertebrae"]) == 5


def test_empty_label_map():
    r = measure_labels(labels=np.zeros((20, 20, 20), np.uint8), affine=np.eye(4))
    assert r["vertebrae"] == [] and r["lesions"] == []
    assert r["cord"]["mscc_pct"] is None and r["cord"]["compression_flag"] is None  # not measured
    assert any("empty" in f for f in r["flags"])


def test_bad_inputs():
    with pytest.raises(LabelMapError):
        measure_labels(labels=np.zeros((4, 4)), affine=np.eye(4))
    with pytest.raises(LabelMapError):
        measure_labels(labels=np.full((4, 4, 4), 0.5), affine=np.eye(4))
    with pytest.raises(LabelMapError):
        measure_labels(labels=np.zeros((4, 4, 4), np.uint8), affine=np.eye(4), image=np.zeros((4, 4, 5)))
    with pytest.raises(LabelMapError):
        measure_labels(labels=np.zeros((4, 4, 4), np.uint8), affine=np.eye(4), label_map="nonexistent")


def test_settings_validation():
    with pytest.raises(ConfigError):
        MeasureSettings(min_lesion_mm3=-1)
    with pytest.raises(ConfigError):
        MeasureSettings(compression_bilsky_grades=("4",))
    with pytest.raises(ConfigError):
        settings_from_dict({"min_lesion_mm": 5})
    assert settings_from_dict({"min_lesion_mm3": 5}).min_lesion_mm3 == 5


def test_min_lesion_size_drops_small_components():
    affine, shape = S.grid()
    labels = S.column(affine, shape)
    centre = np.round(np.linalg.inv(affine) @ np.array([0, 0, 0, 1.0])).astype(int)[:3]
    labels[tuple(centre)] = 3  # one 1 mm^3 lesion voxel
    r = measure_labels(labels=labels, affine=affine)
    assert r["lesions"] == []
    r = measure_labels(labels=labels, affine=affine, settings=MeasureSettings(min_lesion_mm3=0.5))
    assert len(r["lesions"]) == 1


def test_files_and_cli(tmp_path):
    from spinelesion.cli import main

    affine, shape = S.grid()
    labels = S.column(affine, shape, compression={"vertebra": 2, "cord_ap_mm": 4.0, "no_csf": True})
    nib.save(nib.Nifti1Image(labels, affine), tmp_path / "seg.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), affine), tmp_path / "img.nii.gz")
    other = affine.copy()
    other[:3, 3] += 5.0
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), other), tmp_path / "moved.nii.gz")
    with pytest.raises(LabelMapError, match="covers only part of the image grid"):  # shifted 5 voxels
        measure_files(image_path=tmp_path / "moved.nii.gz", labels_path=tmp_path / "seg.nii.gz")
    out = tmp_path / "out" / "record.json"
    assert main(["measure", "--image", str(tmp_path / "img.nii.gz"), "--labels", str(tmp_path / "seg.nii.gz"),
                 "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["schema_version"] == 1 and record["cord"]["compression_flag"] is True
    assert main(["measure", "--image", str(tmp_path / "moved.nii.gz"), "--labels", str(tmp_path / "seg.nii.gz"),
                 "--out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()


def test_labels_stored_in_another_axis_order_are_put_on_the_image_grid(tmp_path):
    """A label map holding the image's voxel centres in another axis order and direction (a DICOM
    series read LPS, its TotalSegmentator map written LAS) measures as on the image's own order;
    a map covering only part of the image is refused."""
    affine, shape = S.grid()
    labels = S.column(affine, shape, compression={"vertebra": 2, "cord_ap_mm": 4.0, "no_csf": True})
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), affine), tmp_path / "img.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), tmp_path / "seg.nii.gz")
    # axes (0, 1, 2) stored as (2, 0, 1), the new first and last axes reversed: same voxel centres
    other = nib.Nifti1Image(labels, affine).as_reoriented(np.array([[1, 1], [2, -1], [0, -1]]))
    assert other.shape != labels.shape
    nib.save(other, tmp_path / "seg_other_order.nii.gz")
    reference = measure_files(image_path=tmp_path / "img.nii.gz", labels_path=tmp_path / "seg.nii.gz")
    moved = measure_files(image_path=tmp_path / "img.nii.gz", labels_path=tmp_path / "seg_other_order.nii.gz")
    assert moved["cord"]["compression_flag"] is True
    assert json.dumps(moved, sort_keys=True) == json.dumps(reference, sort_keys=True)
    part = nib.Nifti1Image(labels[:, :, 3:], affine @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 3], [0, 0, 0, 1.0]]))
    nib.save(part, tmp_path / "seg_part.nii.gz")
    with pytest.raises(LabelMapError, match="label and image grids differ: label grid"):
        measure_files(image_path=tmp_path / "img.nii.gz", labels_path=tmp_path / "seg_part.nii.gz")


def test_expected_heights_follow_size_trend_to_end_vertebrae():
    """One size per normal vertebra, a distance-weighted line along the column: the end vertebrae
    get the extrapolated trend, a crushed body is excluded from the references and compared with
    its neighbours' trend, a lone normal vertebra is the only reference."""
    from spinelesion.measure import height_loss as B

    sizes = [24.0, 23.0, 22.0, 21.0, 20.0, 19.0]  # inferior -> superior, 1 mm per level
    heights = [(s + 0.3, s - 0.2, s - 0.1) for s in sizes]
    heights[2] = (13.0, 13.2, 13.1)  # uniform crush of ~40 %
    normal = B.reference_vertebrae(heights, [0.0] * 6, MeasureSettings())
    assert normal == [True, True, False, True, True, True]
    expected, notes = B.expected_heights(heights, normal)
    assert not notes
    for i in (0, 5):
        assert expected[i] == pytest.approx((sizes[i],) * 3, abs=0.3)
    assert expected[2][0] == pytest.approx(22.0, abs=0.3)
    assert B.height_loss_pct(heights[2], expected[2]) == pytest.approx(100 * (1 - 13.0 / 22.0), abs=1.5)
    lone, _ = B.expected_heights(heights, [False, True, False, False, False, False])
    assert lone[5] == pytest.approx((23.0,) * 3)


@pytest.mark.parametrize("tilt_deg", [17, 25])
def test_heights_unbiased_on_a_column_tilted_against_thick_slices(tilt_deg):
    """Endplates tilted against 1.7 mm slices: heights without bias (boundary voxels deep and
    shallow under the surface are kept alike; a one-sided choice read 0.45-0.64 mm low here)."""
    r = _measure(rotation=S.rotation(tilt_deg, 0, 0), spacing=(0.8, 0.8, 1.7))
    errors = np.array([[v[k] - S.BODY_HEIGHT_MM for k in ("height_anterior_mm", "height_middle_mm", "height_posterior_mm")]
                       for v in r["vertebrae"]])
    assert len(errors) == 5
    assert abs(errors.mean()) < 0.15, errors.round(2)
    assert np.abs(errors).max() < 0.6, errors.round(2)


# ---------------------------------------------------------------- Genant's reading (issue 17)

def _reading(v):
    return v["height_loss_pct"], v["height_loss_comparison"], v["genant_deformity"], v["height_loss_confidence"]


def test_intact_end_vertebra_off_the_size_trend_reads_no_loss():
    """An intact top vertebra 10 % shorter than the trend of the others (sizes do bend at the
    column's ends): its shape is intact and the one-sided comparison is within its uncertainty, so
    no loss, with moderate confidence. The old reading (smallest height against the extrapolated
    size) gave it 10 % of false loss."""
    r = _measure(heights=[20, 21, 22, 23, 21.3])
    top = r["vertebrae"][-1]
    assert top["height_loss_pct"] < 1, top
    assert top["height_loss_comparison"] == "none" and top["genant_deformity"] == "none"
    assert top["height_loss_confidence"] == "moderate"
    assert top["height_ratios"]["posterior_neighbours"] == pytest.approx(21.3 / 24.0, abs=0.05)
    assert r["vertebrae"][2]["height_loss_confidence"] == "high"
    assert all(v["height_loss_pct"] < 1 for v in r["vertebrae"])


def test_crushed_end_vertebra_is_read_against_its_neighbours():
    """A uniform crush shows in no ratio of the body's own heights: the comparison with the
    neighbours' posterior heights gives it, also at the end of the column (moderate confidence)."""
    r = _measure(heights=[20, 20, 20, 20, 13])
    loss, comparison, deformity, confidence = _reading(r["vertebrae"][-1])
    assert loss == pytest.approx(35, abs=3) and comparison == "neighbours"
    assert deformity == "crush" and confidence == "moderate"
    assert r["vertebrae"][-1]["neighbour_posterior_height_mm"] == pytest.approx(20, abs=0.7)
    assert r["vertebrae"][-2]["height_loss_confidence"] == "moderate"  # beside the crush
    assert all(v["height_loss_pct"] < 1 for v in r["vertebrae"][:-1])


@pytest.fixture(scope="module")
def tilted_fractures():
    """A column tilted 30 deg sagittally and 20 deg coronally in the scan, bent 8 deg per level
    (lordosis) with 3 deg of scoliosis, on 0.9 x 0.9 x 1.5 mm voxels: a wedge at the bottom end,
    a biconcave body, a crush and an intact top."""
    profiles = [{"kind": "wedge", "anterior": 11.0, "posterior": 19.0}, None,
                {"kind": "biconcave", "rim": 19.5, "middle": 13.0}, None,
                {"kind": "crush", "height": 13.0}, None]
    labels, affine, truth = S.curved_column(n_vertebrae=6, profiles=profiles, bends_deg=[(8, 3)] * 5,
                                            base_tilt_deg=(30, 20), spacing_mm=(0.9, 0.9, 1.5))
    # boxes with scan below the lowest and no disc under it would be counted up from S1, which
    # has no height loss: this column is about heights, not names
    return measure_labels(labels=labels, affine=affine, settings=MeasureSettings(auto_levels=False)), truth


def test_genant_reading_on_a_tilted_column(tilted_fractures):
    """Issue 17: each body's own ratios (wedge: anterior/posterior, biconcave: middle/posterior)
    with the neighbours' posterior heights (crush), on a column tilted 20-30 deg in the scan; the
    record says which comparison gave the loss and the heights and ratios behind it."""
    r, truth = tilted_fractures
    v = r["vertebrae"]
    assert len(v) == 6
    for m, t in zip(v, truth):
        h = (m["height_anterior_mm"], m["height_middle_mm"], m["height_posterior_mm"])
        assert np.allclose(h, t["heights"], atol=1.0), (h, t["heights"])
        assert m["height_loss_pct"] == pytest.approx(t["loss_pct"], abs=4), (m["height_loss_pct"], t)
    # an end vertebra: its own posterior wall (19 mm; the one-sided prediction is not trusted over it)
    assert _reading(v[0])[1:] == ("own_shape", "wedge", "moderate")
    assert v[0]["height_loss_reference_mm"] == pytest.approx(19, abs=0.8)
    assert v[0]["height_ratios"]["anterior_posterior"] == pytest.approx(11 / 19, abs=0.05)
    assert v[2]["genant_deformity"] == "biconcave" and v[2]["height_loss_comparison"].startswith("own_shape")
    assert v[2]["height_ratios"]["middle_posterior"] < 0.8
    assert _reading(v[4])[1:3] == ("neighbours", "crush")
    assert v[4]["height_loss_reference_mm"] == pytest.approx(20, abs=1.0)
    for k in (1, 3, 5):
        assert v[k]["height_loss_pct"] < 1 and v[k]["genant_deformity"] == "none"
    assert [m["genant_grade"] for m in v] == [3, 0, 2, 0, 2, 0]
    json.dumps(r)


@pytest.mark.parametrize("bends", [[(35, 0)] + [(5, 0)] * 3, [(0, 0), (0, 0), (30, 12), (0, 0)]])
def test_heights_on_each_vertebras_own_axes_at_a_sharp_angle(bends):
    """One sharp angle in the column (as at L5/S1, 30-35 deg, with coronal tilt): heights along
    each vertebra's own axis within 0.8 mm and no false loss."""
    labels, affine, truth = S.curved_column(n_vertebrae=5, bends_deg=bends, spacing_mm=(1.0, 1.0, 1.2))
    r = measure_labels(labels=labels, affine=affine)
    for m, t in zip(r["vertebrae"], truth):
        h = (m["height_anterior_mm"], m["height_middle_mm"], m["height_posterior_mm"])
        assert np.allclose(h, t["heights"], atol=0.8), (h, t["heights"])
        assert m["height_loss_pct"] < 1


def test_neighbour_comparison_by_named_level():
    """With levels known, the neighbours are placed by level: a vertebra missing from the map
    leaves a gap, and a vertebra across the gap is not 'directly beside' it."""
    from spinelesion.measure import height_loss as B

    assert B.column_positions(["L3", "L2", "T12", "T11"]) == [7.0, 8.0, 10.0, 11.0]
    assert B.column_positions(["L3", None, "L1"]) == [0.0, 1.0, 2.0]
    heights = [(24.0, 24.0, 24.0), (23.0, 23.0, 23.0), (21.0, 21.0, 21.0), (20.0, 20.0, 20.0)]
    out = B.genant_readings(heights, [True] * 4, [7.0, 8.0, 10.0, 11.0], [1.0] * 4)
    assert [o["confidence"] for o in out] == ["moderate", "moderate", "moderate", "moderate"]
    assert out[1]["neighbour_posterior_mm"] == pytest.approx(22.5, abs=0.6)  # L1 missing: L2 a level above L3's trend
    assert all(o["loss_pct"] == 0 for o in out)


def test_a_neighbours_single_height_a_slice_off_gives_no_false_crush():
    """An intact end vertebra (heights right) beside a neighbour whose posterior height reads one
    2 mm slice too tall: the neighbours are read as the body is (an undeformed body's mean of three
    heights), so the extrapolation gives no false crush (the single posterior heights gave 16 %)."""
    from spinelesion.measure import height_loss as B

    heights = [(12.6, 12.6, 12.6), (12.6, 12.6, 14.6), (14.6, 14.6, 12.6), (14.6, 14.6, 16.6), (14.6, 14.6, 14.6)]
    out = B.genant_readings(heights, [True] * 5, [0.0, 1.0, 2.0, 3.0, 4.0], [2.0] * 5)
    assert [o["deformity"] for o in out] == ["none"] * 5
    assert all(o["loss_pct"] == 0 for o in out)
    assert out[4]["neighbour_posterior_mm"] < 16.5


def test_lesion_voxels_under_the_minimum_size_give_no_bilsky_grade():
    """Bilsky grades a reported lesion; a speck under min_lesion_mm3 is neither a lesion nor 'Bilsky 0'."""
    from spinelesion.data.phantoms import make_phantom
    from spinelesion.measure import measure_labels
    from spinelesion.measure.settings import MeasureSettings

    ph = make_phantom(seed=5, modality="t2", healthy=True, shape_limit_vox=96)
    labels = ph.labels.copy()
    body = np.argwhere(labels == 1)
    i, j, k = body[len(body) // 2]
    labels[i, j, k] = 3                                           # one lesion voxel inside a body
    record = measure_labels(labels=labels, affine=ph.scan.affine, settings=MeasureSettings(min_lesion_mm3=30.0))
    assert record["lesions"] == [] and record["cord"]["bilsky_grade"] is None
    assert measure_labels(labels=labels, affine=ph.scan.affine,
                          settings=MeasureSettings(min_lesion_mm3=0.0))["cord"]["bilsky_grade"] == "0"
