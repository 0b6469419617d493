"""Rib-bearing vertebrae on CT (spinelesion.measure.ribs) and level names from where the ribs stop
or start (spinelesion.measure.levels.with_ribs)."""

from __future__ import annotations

import numpy as np
import pytest

from spinelesion.data.phantoms import make_phantom
from spinelesion.measure import measure_labels
from spinelesion.measure.column import LevelNaming, Vertebra
from spinelesion.measure.levels import _rib_anchors, with_ribs


@pytest.fixture(scope="module")
def phantoms():
    """Context CT phantoms with ribs on their thoracic vertebrae: seed 12 shows L2..T10 (the
    thoracolumbar junction, no S1 or C2), seed 2 shows C6..T4 (the cervicothoracic junction)."""
    return {seed: make_phantom(seed=seed, modality="ct", context=True) for seed in (12, 2)}


def _levels(record):
    return [v["level"] for v in record["vertebrae"]]


def _truth_levels(ph):
    return [v["level"] for v in ph.truth["vertebrae"] if v["level"] != "C1"]


@pytest.mark.parametrize("seed,anchor", [(12, "T12"), (2, "T1")])
def test_levels_named_from_where_the_ribs_stop_or_start(phantoms, seed, anchor):
    ph = phantoms[seed]
    assert anchor in _truth_levels(ph) and not {"S1", "C2"} & set(_truth_levels(ph))
    record = measure_labels(labels=ph.labels, affine=ph.scan.affine, image=ph.scan.array, modality="CT")
    assert _levels(record) == _truth_levels(ph)
    naming = record["column"]["level_naming"]
    assert naming["method"] == "ribs" and f"counted from {anchor}" in naming["detail"]
    with_ribs_named = naming["detail"].split("ribs on ")[1].split(", ")
    assert with_ribs_named and all(level.startswith("T") for level in with_ribs_named)


def test_ribs_are_looked_for_only_on_a_ct_in_hounsfield_units(phantoms):
    ph = phantoms[12]
    hu = ph.scan.array
    scaled = (hu - hu.min()) / (hu.max() - hu.min()) * 1000.0  # CT-like contrast, not HU
    for kwargs in ({}, {"image": hu, "modality": "MR"}, {"image": scaled, "modality": "CT"}):
        record = measure_labels(labels=ph.labels, affine=ph.scan.affine, **kwargs)
        assert set(_levels(record)) == {None}, kwargs
        assert record["column"]["level_naming"]["method"] == "none"
        assert "looked at for ribs" not in record["column"]["level_naming"]["detail"]


def test_lowest_level_given_wins_over_the_ribs(phantoms):
    ph = phantoms[12]
    record = measure_labels(labels=ph.labels, affine=ph.scan.affine, image=ph.scan.array, modality="CT",
                            lowest_level="L3")
    assert _levels(record)[0] == "L3"
    assert record["column"]["level_naming"]["method"] == "lowest_level"


@pytest.mark.parametrize("bearing,expected", [
    ([False, False, True, True], {2: "T12"}),          # L2 L1 T12 T11
    ([False, False, True], {2: "T12"}),                # L2 L1 T12 (the top of the scan)
    ([False, True, True], {}),                         # L1 T12 T11: one rib-free vertebra is too few
    ([True, True, False, False], {1: "T1"}),           # T2 T1 C7 C6
    ([True, False, False], {}),                        # S1 beside the ilium under L5, L4: not T1
    ([True, True, True, False, True], {}),             # a rib missed inside a run of ribs is no junction
    ([True, True, True], {}),                          # no junction
    ([False, True, False, False, True, True], {4: "T12"}),  # a lone rib-like piece under two rib-free ones: not T12
    ([False, True, True, False, False, False, True], {}),  # the ilium passing for ribs on the lowest two: trust nothing
])
def test_rib_junctions(bearing, expected):
    assert _rib_anchors(bearing, np.zeros(len(bearing) - 1, bool)) == expected


def test_a_gap_at_the_junction_names_nothing():
    gap = np.array([False, True, False])  # a vertebra missing between v1 and v2
    assert _rib_anchors([False, False, True, True], gap) == {}


def _column(levels):
    return [Vertebra(index=i, level=lvl, body_idx=np.zeros(0, int), posterior_idx=np.zeros(0, int),
                     lesion_idx=np.zeros(0, int), superior=np.array([0.0, 0.0, 1.0]),
                     anterior=np.array([0.0, 1.0, 0.0]), right=np.array([1.0, 0.0, 0.0]),
                     centroid_mm=np.array([0.0, 0.0, 30.0 * i])) for i, lvl in enumerate(levels)]


def test_ribs_check_names_counted_from_s1():
    axis = np.array([0.0, 0.0, 1.0])
    sacrum = LevelNaming("sacrum", "levels counted up from S1")
    agree = with_ribs(_column(["S1", "L5", "L4", "L3", "L2", "L1", "T12"]), sacrum,
                      [False] * 6 + [True], axis=axis)
    assert agree.method == "sacrum" and "the ribs (CT, on T12) agree" in agree.detail
    # six rib-free vertebrae under the first with ribs: a sixth lumbar vertebra, or 11 pairs of ribs
    column = _column(["S1", "L5", "L4", "L3", "L2", "L1", "T12", "T11"])
    disagree = with_ribs(column, sacrum, [False] * 7 + [True], axis=axis)
    assert disagree.method == "sacrum" and "disagree" in disagree.detail and "named T11" in disagree.detail
    assert [v.level for v in column] == ["S1", "L5", "L4", "L3", "L2", "L1", "T12", "T11"]  # names kept



def test_a_piece_leaving_the_scan_short_of_a_ribs_reach_is_undecided():
    """A narrow field of view cuts every rib at the same distance: a cut piece cannot tell a rib from a
    transverse process, so its vertebra is undecided (None), not rib-free."""
    from spinelesion.measure.ribs import REACH_MM, _is_rib

    rib_like = {"volume_ml": 3.0, "contact_radial_mm": 20.0, "forward_mm": -20.0, "reach_mm": REACH_MM - 5.0,
                "rise_mm": None}
    assert _is_rib(rib_like, cut=True) is None
    assert _is_rib(rib_like, cut=False) is False
    assert _is_rib({**rib_like, "reach_mm": 110.0, "rise_mm": -15.0}, cut=True) is True
    assert _is_rib({**rib_like, "forward_mm": 12.0}, cut=True) is False  # in front of the body: a vessel


def test_no_junction_across_undecided_vertebrae():
    no_gap = np.zeros(4, bool)
    assert _rib_anchors([False, False, True, False, False], no_gap) == {2: "T12"}  # would name a lone rib T12
    assert _rib_anchors([None, None, True, None, None], no_gap) == {}


@pytest.mark.parametrize("order", ["C", "F"])
def test_block_means_are_the_means_of_each_block(order):
    """The plane-by-plane block sums equal each block's mean, for a view cut from a larger volume."""
    from spinelesion.measure.ribs import _block_means

    volume = np.asarray(np.random.default_rng(0).normal(0, 300, (31, 26, 40)), dtype=np.float32, order=order)
    region = volume[2:29, 1:25, 4:40]                    # 27 x 24 x 36: whole blocks of 3 x 4 x 2
    expected = region.astype(np.float64).reshape(9, 3, 6, 4, 18, 2).mean(axis=(1, 3, 5))
    got = _block_means(region, k=np.array([3, 4, 2]))
    assert got.dtype == np.float32 and got.shape == (9, 6, 18)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3)
