"""Automatic level naming (spinelesion.measure.levels): counting up from S1, down from C2, and
leaving levels unnamed where nothing in view fixes them."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from spinelesion.data.phantoms import make_phantom
from spinelesion.measure import measure_labels
from spinelesion.measure.settings import MeasureSettings


@pytest.fixture(scope="module")
def phantoms():
    """Context phantoms (labels only matter): seed 0 ends at S1, seed 5 at C2 (the atlas C1 has no
    body: it is measured with C2), seed 2 has neither end in view."""
    return {seed: make_phantom(seed=seed, modality="ct", context=True) for seed in (0, 2, 5)}


def _levels(record):
    return [v["level"] for v in record["vertebrae"]]


def _truth_levels(ph):
    return [v["level"] for v in ph.truth["vertebrae"] if v["level"] != "C1"]


def test_counts_up_from_s1(phantoms):
    ph = phantoms[0]
    record = measure_labels(labels=ph.labels, affine=ph.scan.affine)
    assert _truth_levels(ph)[0] == "S1"
    assert _levels(record) == _truth_levels(ph)
    assert record["column"]["level_naming"]["method"] == "sacrum"
    assert "S1" in record["column"]["level_naming"]["detail"]


def test_counts_down_from_c2(phantoms):
    ph = phantoms[5]
    record = measure_labels(labels=ph.labels, affine=ph.scan.affine)
    assert _truth_levels(ph)[-1] == "C2"
    assert _levels(record) == _truth_levels(ph)
    assert record["column"]["level_naming"]["method"] == "axis"


def test_unnamed_when_no_end_is_in_view(phantoms):
    ph = phantoms[2]
    assert not {"S1", "C2"} & set(_truth_levels(ph))
    record = measure_labels(labels=ph.labels, affine=ph.scan.affine)
    assert set(_levels(record)) == {None}
    naming = record["column"]["level_naming"]
    assert naming["method"] == "none" and "--lowest-level" in naming["detail"]


def _axis_index(ph, record) -> int:
    cols = ph.scan.affine[:3, :3] / np.linalg.norm(ph.scan.affine[:3, :3], axis=0)
    return int(np.argmax(np.abs(np.asarray(record["column"]["axis"]) @ cols)))


def test_no_room_below_the_lowest_body_leaves_it_unnamed(phantoms):
    """A scan that ends just under the lowest body cannot tell S1 from a lumbar vertebra whose
    disc and neighbour are out of view."""
    ph = phantoms[0]
    record = measure_labels(labels=ph.labels, affine=ph.scan.affine)
    k = _axis_index(ph, record)
    inferior = float(np.asarray(record["column"]["axis"]) @ ph.scan.affine[:3, k]) > 0  # index grows superior
    s1_body = np.argwhere((ph.vertebra_ids == 1) & (ph.labels == 1))[:, k]
    cut = s1_body.min() - 2 if inferior else s1_body.max() + 3  # 2 voxels of scan beyond the body
    index = [slice(None)] * 3
    index[k] = slice(cut, None) if inferior else slice(0, cut)
    affine = ph.scan.affine.copy()
    if inferior:
        affine[:3, 3] += cut * affine[:3, k]
    cropped = measure_labels(labels=np.ascontiguousarray(ph.labels[tuple(index)]), affine=affine)
    assert len(cropped["vertebrae"]) == len(record["vertebrae"])
    assert set(_levels(cropped)) == {None}


def test_counting_stops_at_a_missing_vertebra(phantoms):
    """A vertebra the model did not label breaks the count: above the gap, levels stay unnamed."""
    ph = phantoms[0]
    labels = ph.labels.copy()
    labels[(ph.vertebra_ids == 3) & np.isin(labels, [1, 2, 3])] = 0  # the third vertebra's bone and lesion
    record = measure_labels(labels=labels, affine=ph.scan.affine)
    truth = _truth_levels(ph)
    levels = _levels(record)
    assert levels[:2] == truth[:2] and set(levels[2:]) == {None}
    assert "missing" in record["column"]["level_naming"]["detail"]


def test_a_small_end_body_names_nothing(phantoms):
    """A model that splits a piece of the sacrum off S1 (or of the atlas off C2) by a false disc leaves
    a small body at the end: counting from it would put every level one off, so nothing is named."""
    ph = phantoms[0]
    labels = ph.labels.copy()
    s1_body = np.argwhere((ph.vertebra_ids == 1) & (labels == 1))
    keep = s1_body[:, 0] < np.percentile(s1_body[:, 0], 30)  # a third of S1's body, the rest unlabelled
    labels[tuple(s1_body[~keep].T)] = 0
    record = measure_labels(labels=labels, affine=ph.scan.affine)
    assert set(_levels(record)) == {None}
    assert "smaller than its neighbour" in record["column"]["level_naming"]["detail"]


def test_lowest_level_and_the_setting_override_automatic_naming(phantoms):
    ph = phantoms[0]
    given = measure_labels(labels=ph.labels, affine=ph.scan.affine, lowest_level="L5")
    assert _levels(given)[:2] == ["L5", "L4"]
    assert given["column"]["level_naming"]["method"] == "lowest_level"
    off = measure_labels(labels=ph.labels, affine=ph.scan.affine, settings=MeasureSettings(auto_levels=False))
    assert set(_levels(off)) == {None} and off["column"]["level_naming"]["method"] == "none"


def test_real_ct_bodies_and_discs_named_as_totalsegmentator_names_them(real_data):
    """The example CT's bodies and discs (TotalSegmentator spine report, no level labels) named
    from S1 up; along the column, each named vertebra is nearest TotalSegmentator's vertebra of
    the same level (whose labels hold the posterior elements too: only the axial position compares)."""
    body_disc = nib.load(real_data / "totalseg_ct" / "example_ct_body_disc.nii.gz")
    values = np.asarray(body_disc.dataobj).astype(np.int16)
    record = measure_labels(labels=np.where(values == 2, 6, values), affine=body_disc.affine)
    assert record["column"]["level_naming"]["method"] == "sacrum"
    ts = nib.load(real_data / "totalseg_ct" / "example_ct_totalseg.nii.gz")
    ts_values = np.asarray(ts.dataobj)
    codes = {"S1": 26, "L5": 27, "L4": 28, "L3": 29, "L2": 30, "L1": 31, "T12": 32, "T11": 33}
    axis = np.asarray(record["column"]["axis"])
    ts_s = {level: nib.affines.apply_affine(ts.affine, np.argwhere(ts_values == code).mean(axis=0)) @ axis
            for level, code in codes.items() if (ts_values == code).any()}
    named = [v for v in record["vertebrae"] if v["level"] is not None]
    assert len(named) >= 6
    for v in named:
        s = np.asarray(v["centroid_mm"]) @ axis
        assert min(ts_s, key=lambda level: abs(ts_s[level] - s)) == v["level"]
        assert abs(ts_s[v["level"]] - s) < 8.0, v["level"]


def test_a_small_tilted_piece_called_disc_does_not_split_a_vertebra():
    """A few voxels called disc in front of the column (a model's stray piece, as on the real CT at
    L5/S1) fitted with their own plane, tilted 40 degrees, cut the next body in two and shifted every
    name below; too narrow to fit, they now cut across the column at their height."""
    ph = make_phantom(seed=12, modality="ct", context=True)
    base = measure_labels(labels=ph.labels, affine=ph.scan.affine)
    labels = ph.labels.copy()
    v1, v2 = (np.asarray(base["vertebrae"][i]["centroid_mm"]) for i in (1, 2))
    centre = (v1 + v2) / 2 + np.array([0.0, 28.0, 0.0])  # in front of the disc between them
    tilt = np.radians(40.0)
    normal, along = np.array([0.0, np.sin(tilt), np.cos(tilt)]), np.array([0.0, np.cos(tilt), -np.sin(tilt)])
    a, b, t = np.meshgrid(np.arange(-7, 7.01, 0.5), np.arange(-2, 2.01, 0.5), np.arange(-1, 1.01, 0.5), indexing="ij")
    points = centre + a.reshape(-1, 1) * along + b.reshape(-1, 1) * np.array([1.0, 0.0, 0.0]) + t.reshape(-1, 1) * normal
    inv = np.linalg.inv(ph.scan.affine)
    ijk = np.rint(points @ inv[:3, :3].T + inv[:3, 3]).astype(int)
    labels[tuple(ijk.T)] = 6
    record = measure_labels(labels=labels, affine=ph.scan.affine)
    assert len(record["vertebrae"]) == len(base["vertebrae"])
    assert [v["body_volume_ml"] for v in record["vertebrae"]] == pytest.approx(
        [v["body_volume_ml"] for v in base["vertebrae"]], abs=0.2)


def test_a_lowest_body_smaller_than_any_adult_s1_names_nothing(phantoms):
    """The same column shrunk to a cervical body's size (pieces of neck vertebrae on an axial slab end
    a column the way S1 does): no body that small is S1."""
    ph = phantoms[0]
    small = ph.scan.affine.copy()
    small[:3, :3] *= 0.45  # S1 77 ml -> 7 ml
    record = measure_labels(labels=ph.labels, affine=small)
    assert set(_levels(record)) == {None}
    assert "less than any adult S1" in record["column"]["level_naming"]["detail"]
    assert record["vertebrae"][0]["body_volume_ml"] < 8.0
    bigger = ph.scan.affine.copy()
    bigger[:3, :3] *= 0.6  # S1 17 ml: still named
    assert _levels(measure_labels(labels=ph.labels, affine=bigger))[0] == "S1"
