"""Measurements against truth (bias, limits of agreement, MAE, kappa, flag rates) and the bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from records import typed  # noqa: E402

from spinelesion.evaluation.bootstrap import bootstrap_ci, figure
from spinelesion.evaluation.measurements import (agreement, compare_records, confusion_matrix, flag_rates,
                                                 pair_vertebrae, weighted_kappa)
from spinelesion.evaluation.summary import summarise


def test_agreement_by_hand():
    a = agreement([(10.0, 8.0), (5.0, 6.0), (0.0, 0.0), (None, 3.0)])
    sd = math.sqrt(((2 - 1 / 3) ** 2 + (-1 - 1 / 3) ** 2 + (0 - 1 / 3) ** 2) / 2)
    assert a["n"] == 3
    assert a["bias"] == pytest.approx(1 / 3) and a["mae"] == pytest.approx(1.0) and a["sd"] == pytest.approx(sd)
    assert a["loa_low"] == pytest.approx(1 / 3 - 1.96 * sd) and a["loa_high"] == pytest.approx(1 / 3 + 1.96 * sd)
    one = agreement([(4.0, 1.0)])
    assert one["bias"] == 3.0 and one["sd"] is None and one["loa_low"] is None


def test_confusion_matrix_and_linearly_weighted_kappa():
    pairs = [(0, 0), (1, 0), (1, 1), (1, 2), (2, 2), (None, 2), (5, 1)]  # (predicted, true)
    m = confusion_matrix(pairs, (0, 1, 2))
    assert m == [[1, 1, 0], [0, 1, 0], [0, 1, 1]]
    # observed weighted disagreement 0.5 + 0.5 = 1.0; expected 1.0 + 0.2 + 1.0 = 2.2
    assert weighted_kappa(m) == pytest.approx(1 - 1.0 / 2.2)
    assert weighted_kappa([[2, 1], [0, 2]]) == pytest.approx((0.8 - 0.48) / 0.52)  # k = 2: Cohen's kappa
    assert weighted_kappa([[3, 0], [0, 3]]) == 1.0
    assert weighted_kappa([[4, 0], [0, 0]]) is None
    assert weighted_kappa([[0, 0], [0, 0]]) is None
    bilsky = confusion_matrix([("1b", "2"), ("2", "2"), ("0", "0")], ("0", "1a", "1b", "1c", "2", "3"))
    assert bilsky[4] == [0, 0, 1, 0, 1, 0] and bilsky[0][0] == 1


def test_flag_rates():
    r = flag_rates([(True, True), (False, True), (False, False), (True, False), (False, False), (None, True)])
    assert (r["tp"], r["fn"], r["tn"], r["fp"]) == (1, 1, 2, 1)
    assert r["sensitivity"] == 0.5 and r["specificity"] == pytest.approx(2 / 3)
    assert flag_rates([(False, False)])["sensitivity"] is None


def test_vertebrae_pair_one_to_one_by_centroid():
    truth = [{"level": "L1", "centroid_mm": [0, 0, 0]}, {"level": "L2", "centroid_mm": [0, 0, -20]},
             {"level": "L3", "centroid_mm": [0, 0, -60]}]
    pred = [{"level": None, "centroid_mm": [0, 0, -8]},  # 8 mm from L1, 12 mm from L2
            {"level": None, "centroid_mm": [0, 0, -2]},  # 2 mm from L1, 18 mm (too far) from L2
            {"level": None, "centroid_mm": [0, 0, -90]}]  # near nothing
    pairs = pair_vertebrae(pred=typed({"vertebrae": pred}).vertebrae, truth=truth)
    assert [(t["level"], p.centroid_mm[2]) for p, t in pairs] == [("L1", -2), ("L2", -8)]


def _record(vertebrae, mscc, bilsky, flag):
    return {"vertebrae": [{"centroid_mm": [0, 0, -30.0 * i], "level": f"L{i + 1}", "body_destruction_pct": d,
                           "height_loss_pct": h, "genant_grade": g} for i, (d, h, g) in enumerate(vertebrae)],
            "cord": {"mscc_pct": mscc, "bilsky_grade": bilsky, "compression_flag": flag}}


def test_measurement_summary_by_hand():
    cases = [compare_records(pred=typed(_record([(10, 30, 2), (0, 5, 0)], 40.0, "2", True)),
                             truth=_record([(12, 22, 1), (0, 0, 0)], 50.0, "3", True)),
             compare_records(pred=typed(_record([(50, 0, 0)], 5.0, "1a", False)),
                             truth=_record([(40, 0, 0)], 0.0, "0", False))]
    assert cases[0]["n_paired"] == 2 and cases[0]["mscc_pct"] == (40.0, 50.0)
    results = [{"class_rows": [], "measurements": c} for c in cases]
    m = summarise(results, classes=[], size_bins_ml=(0.5, 5), n_resamples=200, seed=1)["measurements"]
    d = m["destroyed_fraction_pct"]
    assert d["n"] == 3 and d["bias"]["value"] == pytest.approx((-2 + 0 + 10) / 3, abs=1e-4)
    assert d["mae"]["value"] == pytest.approx(4.0)
    assert m["height_loss_pct"]["bias"]["value"] == pytest.approx((8 + 5 + 0) / 3, abs=1e-4)
    assert m["mscc_pct"]["bias"]["value"] == pytest.approx(-2.5) and m["mscc_pct"]["mae"]["value"] == pytest.approx(7.5)
    assert m["genant"]["matrix"] == [[2, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert m["bilsky"]["matrix"][5][4] == 1 and m["bilsky"]["matrix"][0][1] == 1
    assert m["compression_flag"]["sensitivity"]["value"] == 1.0
    assert m["compression_flag"]["specificity"]["value"] == 1.0
    low, high = m["destroyed_fraction_pct"]["bias"]["ci95"]
    assert low <= d["bias"]["value"] <= high


def test_bootstrap_is_seeded_and_brackets_the_mean():
    values = list(np.linspace(0.5, 0.9, 20))
    mean = lambda u: float(np.mean(u))  # noqa: E731
    a = bootstrap_ci(units=values, statistic=mean, n_resamples=500, seed=3)
    assert a == bootstrap_ci(units=values, statistic=mean, n_resamples=500, seed=3)
    assert a != bootstrap_ci(units=values, statistic=mean, n_resamples=500, seed=4)
    assert a[0] < 0.7 < a[1] and a[1] - a[0] < 0.15
    assert bootstrap_ci(units=[0.8] * 5, statistic=mean) == (0.8, 0.8)
    assert bootstrap_ci(units=[0.8], statistic=mean) == (None, None)
    f = figure(units=values, statistic=mean, n_resamples=100)
    assert f["value"] == pytest.approx(0.7) and f["n"] == 20 and len(f["ci95"]) == 2
    assert figure(units=[], statistic=lambda u: None)["value"] is None
