"""Lesion instances: one-to-one matching of split and merged lesions, size bins, FROC."""

from __future__ import annotations

import numpy as np
import pytest

from spinelesion.evaluation.lesions import case_lesions, instances, match, size_bin

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])  # 2 mm3 voxels


def _grid():
    return np.zeros((30, 12, 12), bool)


def test_split_lesion_is_one_true_positive_and_one_false_positive():
    ref, pred = _grid(), _grid()
    ref[2:12, 2:6, 2:6] = True  # 160 voxels
    pred[2:6, 2:6, 2:6] = True  # 64
    pred[8:12, 2:6, 2:6] = True  # 64
    r = case_lesions(pred_mask=pred, ref_mask=ref, affine=AFFINE)
    assert (r["n_ref"], r["n_pred"], r["tp"], r["fn"], r["fp"]) == (1, 2, 1, 0, 1)
    assert r["matched_dice"] == [pytest.approx(2 * 64 / (160 + 64))]
    outcomes = sorted((row["source"], row["outcome"]) for row in r["rows"])
    assert outcomes == [("predicted", "FP"), ("predicted", "TP"), ("reference", "TP")]
    ref_row = next(row for row in r["rows"] if row["source"] == "reference")
    assert ref_row["volume_ml"] == pytest.approx(160 * 2 / 1000)
    assert ref_row["iou"] == pytest.approx(64 / 160)
    assert ref_row["centroid_mm"] == [6.5, 3.5, 7.0]
    # with a stricter localisation criterion (IoU > 0.5) neither piece matches
    strict = case_lesions(pred_mask=pred, ref_mask=ref, affine=AFFINE, min_iou=0.5)
    assert (strict["tp"], strict["fn"], strict["fp"]) == (0, 1, 2)


def test_merged_lesions_are_one_true_positive_and_one_false_negative():
    ref, pred = _grid(), _grid()
    ref[2:6, 2:6, 2:6] = True
    ref[8:14, 2:6, 2:6] = True  # the larger one: 96 voxels
    pred[2:14, 2:6, 2:6] = True  # one blob over both (and the gap)
    r = case_lesions(pred_mask=pred, ref_mask=ref, affine=AFFINE)
    assert (r["n_ref"], r["n_pred"], r["tp"], r["fn"], r["fp"]) == (2, 1, 1, 1, 0)
    # greedy by IoU: the blob goes to the larger reference lesion (IoU 96/192 against 64/192)
    tp = next(row for row in r["rows"] if row["source"] == "reference" and row["outcome"] == "TP")
    assert tp["volume_ml"] == pytest.approx(96 * 2 / 1000) and tp["iou"] == pytest.approx(0.5)


def test_matching_is_one_to_one_by_highest_iou():
    ref, pred = _grid(), _grid()
    ref[2:12, 2:6, 2:6] = True
    pred[2:5, 2:6, 2:6] = True  # IoU 48/160 = 0.3
    pred[6:12, 2:6, 2:6] = True  # IoU 96/160 = 0.6
    r_inst, p_inst = instances(ref), instances(pred)
    matched = match(ref=r_inst, pred=p_inst)
    (p, iou, dice), = matched.values()
    assert iou == pytest.approx(0.6) and p_inst.voxels[p] == 96 and dice == pytest.approx(2 * 96 / 256)


def test_size_bins():
    assert size_bin(0.1) == "<0.5 ml"
    assert size_bin(0.5) == "0.5-5 ml"
    assert size_bin(5.0) == ">=5 ml"
    assert size_bin(2.0, bins_ml=(1.0,)) == ">=1 ml"
    ref, pred = _grid(), _grid()
    ref[2:6, 2:6, 2:6] = True  # 64 voxels = 0.128 ml
    pred[20:28, 2:10, 2:10] = True  # 512 voxels = 1.024 ml, false positive
    r = case_lesions(pred_mask=pred, ref_mask=ref, affine=AFFINE)
    assert r["by_bin"]["<0.5 ml"] == {"ref": 1, "tp": 0, "pred": 0, "fp": 0}
    assert r["by_bin"]["0.5-5 ml"] == {"ref": 0, "tp": 0, "pred": 1, "fp": 1}


def test_froc_over_the_lesion_probability_threshold():
    ref, pred, prob = _grid(), _grid(), np.zeros((30, 12, 12), np.float32)
    ref[2:6, 2:6, 2:6] = True
    ref[20:24, 2:6, 2:6] = True
    pred[2:6, 2:6, 2:6] = True
    prob[2:6, 2:6, 2:6] = 0.9  # true positive, score 0.9
    pred[11:15, 2:6, 2:6] = True
    prob[11:15, 2:6, 2:6] = 0.6  # false positive, 0.6
    pred[20:24, 2:6, 2:6] = True
    prob[20:24, 2:6, 2:6] = 0.3
    prob[21, 3, 3] = 0.32  # true positive, score = its highest voxel 0.32
    r = case_lesions(pred_mask=pred, ref_mask=ref, affine=AFFINE, probability=prob)
    froc = {t: (tp, fp) for t, tp, fp in r["froc"]}
    assert froc[0.0] == (2, 1) and froc[0.32] == (2, 1)
    assert froc[0.34] == (1, 1) and froc[0.6] == (1, 1)
    assert froc[0.62] == (1, 0) and froc[0.9] == (1, 0)
    assert froc[0.92] == (0, 0) and froc[1.0] == (0, 0)
    assert sorted(row["score"] for row in r["rows"] if row["source"] == "predicted") == [0.32, 0.6, 0.9]
