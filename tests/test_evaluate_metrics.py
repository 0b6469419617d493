"""Per class Dice, normalised surface Dice, HD95 and volume error against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from spinelesion.evaluation.metrics import class_mask, overlap_metrics, segmentation_metrics


def _empty(shape=(14, 14, 14)):
    return np.zeros(shape, bool)


def test_plate_shifted_across_its_thickness():
    # a one-voxel plate and the same plate two slices further along Z (1.5 mm slices): every
    # boundary voxel lies exactly 3 mm from the other plate
    ref, pred = _empty(), _empty()
    ref[3:9, 3:9, 5] = True
    pred[3:9, 3:9, 7] = True
    m = overlap_metrics(pred=pred, ref=ref, spacing_mm=(1.0, 1.0, 1.5), tolerance_mm=3.0)
    assert m["dice"] == 0.0
    assert m["hd95_mm"] == pytest.approx(3.0)
    assert m["nsd"] == pytest.approx(1.0)  # within the 3 mm tolerance
    assert overlap_metrics(pred=pred, ref=ref, spacing_mm=(1.0, 1.0, 1.5), tolerance_mm=2.9)["nsd"] == 0.0
    # the spacing is used: along X (1 mm) the same shift is 2 mm
    m = overlap_metrics(pred=np.moveaxis(pred, 2, 0), ref=np.moveaxis(ref, 2, 0), spacing_mm=(1.0, 1.0, 1.5), tolerance_mm=2.0)
    assert m["hd95_mm"] == pytest.approx(2.0) and m["nsd"] == pytest.approx(1.0)
    assert m["volume_error_ml"] == 0.0 and m["volume_error_pct"] == 0.0


def test_cube_shifted_by_one_voxel():
    ref = _empty()
    ref[2:8, 2:8, 2:8] = True
    pred = np.roll(ref, 1, axis=0)
    m = overlap_metrics(pred=pred, ref=ref, spacing_mm=(1.0, 1.0, 1.5), tolerance_mm=1.0)
    assert m["dice"] == pytest.approx(2 * 5 * 36 / (2 * 216))  # 0.8333
    assert m["hd95_mm"] == pytest.approx(1.0)
    assert m["nsd"] == pytest.approx(1.0)
    assert m["ref_voxels"] == m["pred_voxels"] == 216
    assert m["ref_volume_ml"] == pytest.approx(216 * 1.5 / 1000)


def test_volume_error_and_empty_masks():
    ref, pred = _empty(), _empty()
    ref[2:4, 2:4, 2:4] = True  # 8 voxels
    pred[2:5, 2:4, 2:4] = True  # 12 voxels
    m = overlap_metrics(pred=pred, ref=ref, spacing_mm=(1.0, 1.0, 2.0))
    assert m["volume_error_ml"] == pytest.approx(4 * 2.0 / 1000)
    assert m["volume_error_pct"] == pytest.approx(50.0)
    assert m["dice"] == pytest.approx(16 / 20)
    both_empty = overlap_metrics(pred=_empty(), ref=_empty(), spacing_mm=(1, 1, 1))
    assert both_empty["dice"] is None and both_empty["nsd"] is None and both_empty["hd95_mm"] is None
    missed = overlap_metrics(pred=_empty(), ref=ref, spacing_mm=(1, 1, 1))
    assert missed["dice"] == 0.0 and missed["nsd"] == 0.0 and missed["hd95_mm"] is None
    assert missed["volume_error_pct"] == -100.0
    spurious = overlap_metrics(pred=pred, ref=_empty(), spacing_mm=(1, 1, 1))
    assert spurious["dice"] == 0.0 and spurious["volume_error_pct"] is None and spurious["volume_error_ml"] == 0.012


def test_segmentation_metrics_per_class_and_merged_vertebra():
    ref = np.zeros((10, 10, 10), np.uint8)
    ref[1:5, 1:5, 1:5] = 1  # body
    ref[5:7, 1:5, 1:5] = 2  # posterior elements
    ref[1:3, 7:9, 7:9] = 4  # cord
    pred = ref.copy()
    pred[5:7, 1:5, 1:5] = 1  # posterior elements called body
    m = segmentation_metrics(pred_classes=pred, ref_classes=ref, spacing_mm=(1, 1, 1),
                             classes=("vertebral_body", "posterior_elements", "spinal_cord", "lesion", "vertebra"))
    assert m["vertebral_body"]["dice"] == pytest.approx(2 * 64 / (64 + 96))
    assert m["posterior_elements"]["dice"] == 0.0
    assert m["spinal_cord"]["dice"] == 1.0 and m["spinal_cord"]["hd95_mm"] == 0.0
    assert m["lesion"]["dice"] is None  # absent from both: no number
    assert m["vertebra"]["dice"] == 1.0  # body + posterior elements together
    # the merged vertebra value 7 of a reference that does not split the bone counts as vertebra
    merged = np.where(np.isin(ref, (1, 2)), 7, ref)
    assert class_mask(merged, "vertebra").sum() == 96
