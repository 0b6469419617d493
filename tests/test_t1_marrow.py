"""t1_disc_sign: on a T1-weighted scan with fatty marrow, foci deep in a vertebral body at or under
the discs' signal (the disc sign) become lesion; other weightings, marrow near the disc's signal, small
channels and straight tubes (screws) change nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from network_grid import ball, certain_probabilities
from spinelesion import labels as L
from spinelesion.inference.resample import VolumeLookup, class_argmax
from spinelesion.inference.t1_marrow import t1_disc_sign

SPACING_MM = 1.5
AFFINE = np.diag([SPACING_MM] * 3 + [1.0])
#: Relative T1 signals: fatty marrow well above the disc, CSF under it, cortex a void.
T1 = {"marrow": 0.75, "disc": 0.38, "csf": 0.15, "cortex": 0.05, "soft": 0.45}
#: T2 with desiccated (dark) discs: marrow over 1.5 times the disc, as on T1, but CSF the brightest tissue.
T2_DRY_DISCS = {"marrow": 0.55, "disc": 0.3, "csf": 1.0, "cortex": 0.04, "soft": 0.35}



def _column(signals: dict, *, seed: int = 0):
    """Three bodies of 24 x 24 x 16 voxels (36 x 36 x 24 mm) stacked along z between discs, a thecal sac
    behind them; each tissue at its relative signal with 4 % noise."""
    rng = np.random.default_rng(seed)
    shape = (32, 40, 70)
    labels = np.zeros(shape, np.uint8)
    image = np.full(shape, signals["soft"], np.float32)
    for z0 in (4, 24, 44):
        labels[4:28, 4:28, z0:z0 + 16] = L.VERTEBRAL_BODY
        image[4:28, 4:28, z0:z0 + 16] = signals["cortex"]
        image[5:27, 5:27, z0 + 1:z0 + 15] = signals["marrow"]
        labels[4:28, 4:28, z0 + 16:z0 + 20] = L.DISC
        image[4:28, 4:28, z0 + 16:z0 + 20] = signals["disc"]
    labels[12:20, 30:36, :] = L.THECAL_SAC
    image[12:20, 30:36, :] = signals["csf"]
    image += rng.normal(0.0, 0.04 * signals["marrow"], shape).astype(np.float32)
    return labels, image



def _run(labels, image, **kwargs):
    probs = certain_probabilities(labels)
    classes = class_argmax(probs)
    out, n, _ = t1_disc_sign(probs, classes=classes, affine=AFFINE, signal_at=VolumeLookup(image, affine=AFFINE),
                             **kwargs)
    result = class_argmax(out).numpy()
    assert np.array_equal(classes.numpy(), result)  # the arg-max is kept up to date
    return result, n


def test_a_focus_darker_than_the_disc_on_t1_becomes_lesion():
    labels, image = _column(T1)
    focus = ball(labels.shape, (16, 16, 32), 5)    # 15 mm across, in the middle body
    image[focus] = 0.25
    result, n = _run(labels, image)
    found = result == L.LESION
    assert n == np.count_nonzero(found) > 0
    assert np.count_nonzero(found & focus) >= 0.8 * np.count_nonzero(focus)  # grown back to the focus's edge
    assert not np.any(found & ~ball(labels.shape, (16, 16, 32), 6.5))
    assert np.array_equal(result[labels != L.VERTEBRAL_BODY], labels[labels != L.VERTEBRAL_BODY])


def test_a_body_replaced_throughout_is_found():
    labels, image = _column(T1)
    middle = np.zeros_like(labels, bool)
    middle[5:27, 5:27, 25:39] = True
    image[middle] = 0.2
    result, n = _run(labels, image)
    assert n > 0
    assert np.count_nonzero(result[middle] == L.LESION) >= 0.8 * np.count_nonzero(middle)
    assert not np.any(result[:, :, :24] == L.LESION) and not np.any(result[:, :, 40:] == L.LESION)


def _tube(shape):
    """A straight rod 3 voxels across and 20 long through the middle body, front to back: a screw's void."""
    tube = np.zeros(shape, bool)
    tube[15:18, 6:26, 31:34] = True
    return tube


@pytest.mark.parametrize("why, signals, focus, radius_vox", [
    ("T2: CSF brighter than the discs, no disc sign", T2_DRY_DISCS, 0.2, 5),
    ("marrow only 1.2 times the disc: red marrow or fat suppression", dict(T1, marrow=0.46), 0.3, 5),
    ("a small dark channel: under 250 mm^3 deep in the body", T1, 0.25, 2.0),
    ("brighter than the disc: not marrow replacement", T1, 0.5, 5),
    ("a straight tube: a screw's void", T1, 0.02, "tube"),
])
def test_what_the_disc_sign_does_not_call_a_lesion(why, signals, focus, radius_vox):
    labels, image = _column(signals)
    mask = _tube(labels.shape) if radius_vox == "tube" else ball(labels.shape, (16, 16, 32), radius_vox)
    image[mask] = focus
    result, n = _run(labels, image)
    assert n == 0, why
    assert np.array_equal(result, labels)


def test_healthy_t1_marrow_and_a_missing_reference_give_nothing():
    labels, image = _column(T1, seed=3)
    assert _run(labels, image)[1] == 0
    no_sac = np.where(labels == L.THECAL_SAC, 0, labels).astype(np.uint8)
    image[ball(labels.shape, (16, 16, 32), 5)] = 0.25
    assert _run(no_sac, image)[1] == 0   # without a sac the weighting is unknown: not judged
    assert _run(labels, image, min_core_mm3=1e9)[1] == 0


def test_network_lesions_posterior_elements_and_canal_are_never_changed():
    labels, image = _column(T1)
    labels[14:18, 14:18, 8:12] = L.LESION
    image[14:18, 14:18, 8:12] = 0.25   # dark: marrow replaced
    labels[4:28, 28:30, 24:40] = L.POSTERIOR_ELEMENTS
    image[ball(labels.shape, (16, 16, 32), 5)] = 0.25
    result, _ = _run(labels, image)
    for c in (L.LESION, L.POSTERIOR_ELEMENTS, L.THECAL_SAC, L.DISC):
        assert np.all(result[labels == c] == c)


def _with_network_lesion(labels: np.ndarray, image: np.ndarray, signal: float) -> np.ndarray:
    """A network lesion of radius 4 voxels in the middle body, the image there at ``signal``."""
    lesion = ball(labels.shape, (16, 16, 32), 4)
    labels[lesion] = L.LESION
    image[lesion] = signal
    return lesion


def test_a_network_lesion_as_bright_as_the_marrow_is_dropped_on_t1():
    labels, image = _column(T1)
    lesion = _with_network_lesion(labels, image, T1["marrow"])
    result, n = _run(labels, image)
    assert n == 0
    assert not np.any(result == L.LESION)
    assert np.all(result[lesion] == L.VERTEBRAL_BODY)   # the voxels' next most likely class


@pytest.mark.parametrize("why, signals, lesion_signal, kwargs", [
    ("dark on T1: marrow replaced", T1, 0.25, {}),
    ("T2: not judged", T2_DRY_DISCS, T2_DRY_DISCS["marrow"], {}),
    ("the drop turned off", T1, T1["marrow"], {"min_dark_share": None}),
])
def test_network_lesions_that_stay(why, signals, lesion_signal, kwargs):
    labels, image = _column(signals)
    lesion = _with_network_lesion(labels, image, lesion_signal)
    result, _ = _run(labels, image, **kwargs)
    assert np.all(result[lesion] == L.LESION), why
