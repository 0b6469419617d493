"""add_density_lesions: on CT, soft-tissue foci deep in a vertebral body's marrow and bodies far denser than
their neighbours become lesion; fat, small channels, healthy marrow and every other class stay as the network
drew them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from network_grid import ball, certain_probabilities
from spinelesion import labels as L
from spinelesion.inference.ct_density import add_density_lesions
from spinelesion.inference.resample import VolumeLookup, class_argmax

SPACING_MM = 1.5
AFFINE = np.diag([SPACING_MM] * 3 + [1.0])



def _column(seed: int = 0):
    """Three bodies of 24 x 24 x 16 voxels (36 x 36 x 24 mm) stacked along z between discs, marrow at
    250 +- 20 HU, cortex at 900 HU, soft tissue at 40 HU round them; a canal behind them."""
    rng = np.random.default_rng(seed)
    shape = (32, 40, 70)
    labels = np.zeros(shape, np.uint8)
    hu = np.full(shape, 40.0, np.float32)
    for z0 in (4, 24, 44):
        labels[4:28, 4:28, z0:z0 + 16] = L.VERTEBRAL_BODY
        hu[4:28, 4:28, z0:z0 + 16] = 900.0
        hu[5:27, 5:27, z0 + 1:z0 + 15] = 250.0
        labels[4:28, 4:28, z0 + 16:z0 + 20] = L.DISC
    labels[12:20, 30:36, :] = L.THECAL_SAC
    hu += rng.normal(0.0, 20.0, shape).astype(np.float32)
    return labels, hu



def _run(labels, hu, **kwargs):
    probs = certain_probabilities(labels)
    classes = class_argmax(probs)
    out, n = add_density_lesions(probs, classes=classes, affine=AFFINE, hu_at=VolumeLookup(hu, affine=AFFINE), **kwargs)
    result = class_argmax(out).numpy()
    assert np.array_equal(classes.numpy(), result)  # the arg-max is kept up to date
    return result, n


def test_a_soft_tissue_focus_deep_in_a_body_becomes_lesion():
    labels, hu = _column()
    focus = ball(labels.shape, (16, 16, 32), 5)    # 15 mm across, in the middle body
    hu[focus] = 50.0 + np.random.default_rng(1).normal(0.0, 20.0, np.count_nonzero(focus))
    result, n = _run(labels, hu)
    found = result == L.LESION
    assert n == np.count_nonzero(found) > 0
    assert np.count_nonzero(found & focus) >= 0.8 * np.count_nonzero(focus)  # grown back to the focus's edge
    assert not np.any(found & ~ball(labels.shape, (16, 16, 32), 6.5))
    assert np.array_equal(result[labels != L.VERTEBRAL_BODY], labels[labels != L.VERTEBRAL_BODY])


def test_a_body_lytic_throughout_is_found_against_its_neighbours():
    labels, hu = _column()
    middle = np.zeros_like(labels, bool)
    middle[5:27, 5:27, 25:39] = True
    hu[middle] = 60.0 + np.random.default_rng(2).normal(0.0, 20.0, np.count_nonzero(middle))
    result, n = _run(labels, hu)
    assert n > 0
    assert np.count_nonzero(result[middle] == L.LESION) >= 0.8 * np.count_nonzero(middle)
    assert not np.any(result[:, :, :24] == L.LESION) and not np.any(result[:, :, 40:] == L.LESION)


@pytest.mark.parametrize("why, focus_hu, radius_vox", [
    ("fat density: a haemangioma or focal fat, benign", -40.0, 5),
    ("a small dark channel: under 250 mm^3 deep in the body", 50.0, 2.0),
    ("not 100 HU under the marrow", 180.0, 5),
    ("fat between thick trabeculae: a haemangioma, benign", "fatty", 5),
])
def test_what_is_not_a_lytic_lesion_stays_marrow(why, focus_hu, radius_vox):
    labels, hu = _column()
    focus = ball(labels.shape, (16, 16, 32), radius_vox)
    if focus_hu == "fatty":  # soft-tissue density on average (median over 0 HU), a third of it fat
        rng = np.random.default_rng(5)
        hu[focus] = np.where(rng.random(np.count_nonzero(focus)) < 0.35, -60.0, 60.0)
    else:
        hu[focus] = focus_hu
    result, n = _run(labels, hu)
    assert n == 0, why
    assert np.array_equal(result, labels)


def test_healthy_marrow_and_the_dense_cortex_round_it_give_nothing():
    labels, hu = _column(seed=3)
    result, n = _run(labels, hu)
    assert n == 0 and np.array_equal(result, labels)


def test_no_body_or_too_little_inside_returns_unchanged():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[2:5, 2:5, 2:5] = L.VERTEBRAL_BODY        # too thin to have an inside
    hu = np.full(labels.shape, 40.0, np.float32)
    result, n = _run(labels, hu)
    assert n == 0 and np.array_equal(result, labels)
    result, n = _run(np.zeros_like(labels), hu)
    assert n == 0 and not result.any()


def test_dense_bone_labelled_body_does_not_make_healthy_marrow_read_lytic():
    """Two of three bodies sclerotic (1000 HU throughout, as a blastic body or screws the network calls
    body): judged against them, the healthy body's 250 HU marrow would read lytic; marrow is what reads
    under MARROW_MAX_HU."""
    labels, hu = _column()
    hu[5:27, 5:27, 5:19] = 1000.0
    hu[5:27, 5:27, 45:59] = 1000.0
    result, n = _run(labels, hu)
    assert n == 0 and np.array_equal(result, labels)


def _ivory_middle(hu):
    middle = np.zeros(hu.shape, bool)
    middle[5:27, 5:27, 25:39] = True
    hu[middle] = 900.0 + np.random.default_rng(4).normal(0.0, 30.0, np.count_nonzero(middle))
    return middle


def test_a_body_far_denser_than_its_neighbours_becomes_lesion():
    """An ivory vertebra: the middle body's marrow at 900 HU against 250 in the bodies round it."""
    labels, hu = _column()
    middle = _ivory_middle(hu)
    result, n = _run(labels, hu)
    assert n > 0
    assert np.count_nonzero(result[middle] == L.LESION) >= 0.8 * np.count_nonzero(middle)
    assert not np.any(result[:, :, :24] == L.LESION) and not np.any(result[:, :, 40:] == L.LESION)
    assert np.array_equal(result[labels != L.VERTEBRAL_BODY], labels[labels != L.VERTEBRAL_BODY])
    off, n_off = _run(labels, hu, sclerotic_bodies=False)
    assert n_off == 0 and np.array_equal(off, labels)


@pytest.mark.parametrize("why, change", [
    ("metal in the body: its density is not the bone's", "screw"),
    ("two bodies cannot say which one is unlike the column", "two_bodies"),
    ("a bone island moves no body's median", "island"),
])
def test_what_is_not_a_sclerotic_body(why, change):
    labels, hu = _column()
    if change == "island":
        hu[ball(labels.shape, (16, 16, 32), 3)] = 1200.0
    else:
        _ivory_middle(hu)
    if change == "screw":
        hu[14:18, 14:18, 26:38] = 2800.0
    if change == "two_bodies":
        labels[:, :, 44:64][labels[:, :, 44:64] == L.VERTEBRAL_BODY] = 0
    result, n = _run(labels, hu)
    assert n == 0, why
    assert np.array_equal(result, labels)
