"""keep_canal_in_line: canal pieces off the main canal's line and outside the vertebrae (an aorta or a kidney
the network took for canal) are dropped; pieces on the line (a canal cut by a gap) or between posterior
elements stay."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from network_grid import certain_probabilities
from spinelesion import labels as L
from spinelesion.inference.canal_line import keep_canal_in_line
from spinelesion.inference.resample import class_argmax

SPACING_MM = 1.5
AFFINE = np.diag([SPACING_MM] * 3 + [1.0])   # RAS: z superior, y anterior



def _column(shape=(60, 60, 80)) -> np.ndarray:
    """A canal (cord in a sac) along z at x 30, y 20, bodies in front of it (y 30-45), laminae behind."""
    labels = np.zeros(shape, np.uint8)
    labels[25:36, 15:26, :] = L.THECAL_SAC
    labels[28:33, 18:23, :] = L.SPINAL_CORD
    for z0 in range(2, shape[2] - 12, 16):
        labels[20:41, 28:44, z0:z0 + 12] = L.VERTEBRAL_BODY
        labels[22:39, 10:14, z0:z0 + 12] = L.POSTERIOR_ELEMENTS
    return labels


def _run(labels: np.ndarray, **kwargs):
    probs = certain_probabilities(labels)
    classes = class_argmax(probs)
    out, n = keep_canal_in_line(probs, classes=classes, affine=AFFINE, **kwargs)
    result = class_argmax(out).numpy()
    assert np.array_equal(classes.numpy(), result)  # the arg-max is kept up to date
    return result, n


def test_a_tube_in_front_of_the_bodies_is_dropped():
    labels = _column()
    aorta = np.zeros_like(labels, bool)
    aorta[8:16, 48:56, 10:70] = True          # 40 mm in front of the canal, left of it
    labels[aorta] = L.THECAL_SAC
    result, n = _run(labels)
    assert n == np.count_nonzero(aorta)
    assert np.all(result[aorta] == L.BACKGROUND)
    assert np.array_equal(result[~aorta], labels[~aorta])


@pytest.mark.parametrize("why, gap", [
    ("a canal cut by a gap in the labels stays: its pieces are on one line", "gap"),
    ("a piece beyond the main canal's end, off its line but between the laminae, stays", "bent"),
])
def test_canal_pieces_that_stay(why, gap):
    labels = _column()
    if gap == "gap":
        labels[:, :, 50:54][np.isin(labels[:, :, 50:54], (L.SPINAL_CORD, L.THECAL_SAC))] = L.BACKGROUND
    else:   # the lowest 20 slices' canal moved 20 mm forward (a lordosis), laminae moved with it
        low = labels[:, :, :20]
        low[np.isin(low, (L.SPINAL_CORD, L.THECAL_SAC, L.POSTERIOR_ELEMENTS))] = L.BACKGROUND
        labels[:, :, 20:22][np.isin(labels[:, :, 20:22], (L.SPINAL_CORD, L.THECAL_SAC))] = L.BACKGROUND
        low[25:36, 29:38, :] = L.THECAL_SAC
        low[22:39, 25:29, :] = L.POSTERIOR_ELEMENTS
    result, n = _run(labels)
    assert n == 0, why
    assert np.array_equal(result, labels)


def test_one_piece_or_none_and_the_switch():
    labels = _column()
    assert _run(labels)[1] == 0
    assert _run(np.where(np.isin(labels, (L.SPINAL_CORD, L.THECAL_SAC)), 0, labels).astype(np.uint8))[1] == 0
    labels[8:16, 48:56, 10:70] = L.THECAL_SAC
    assert _run(labels, max_off_line_mm=100.0)[1] == 0


def test_a_dropped_piece_does_not_become_lesion():
    """The step runs after the lesions' clean-up: a dropped piece whose runner-up is lesion must not bypass it."""
    labels = _column()
    aorta = np.zeros_like(labels, bool)
    aorta[8:16, 48:56, 10:70] = True
    labels[aorta] = L.THECAL_SAC
    probs = certain_probabilities(labels)
    probs[L.LESION][torch.as_tensor(aorta)] = 0.04
    classes = class_argmax(probs)
    out, n = keep_canal_in_line(probs, classes=classes, affine=AFFINE)
    assert n == np.count_nonzero(aorta)
    assert not np.any(classes.numpy() == L.LESION)
    assert np.array_equal(classes.numpy(), class_argmax(out).numpy())
