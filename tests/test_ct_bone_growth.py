"""grow_into_bone: on CT, posterior elements reach the bone (HU >= 200) they touch, within a short reach."""

from __future__ import annotations

import numpy as np
import torch

from spinelesion import labels as L
from spinelesion.inference.refine import grow_into_bone
from spinelesion.inference.resample import VolumeLookup, class_argmax


def _probabilities(labels: np.ndarray) -> torch.Tensor:
    probs = np.full((7, *labels.shape), 0.01, np.float32)
    for c in range(7):
        probs[c][labels == c] = 0.94
    return torch.as_tensor(probs)


def _process(shape=(30, 20, 20)):
    """A lamina labelled over x 5..9 whose bone (1000 HU) runs on to x 24 unlabelled, a body beside it
    with bone-like HU round it, and soft tissue (40 HU) everywhere else."""
    labels = np.zeros(shape, np.uint8)
    hu = np.full(shape, 40.0, np.float32)
    labels[5:10, 8:12, 8:12] = L.POSTERIOR_ELEMENTS
    hu[5:25, 8:12, 8:12] = 1000.0                  # the process's bone, labelled only in part
    labels[0:4, 0:6, 0:20] = L.VERTEBRAL_BODY
    hu[0:5, 0:7, 0:20] = 300.0                       # a body and its blurred rim
    labels[12:14, 8:12, 8:12] = L.LESION             # a lesion on the process: never changed
    return labels, hu


def test_posterior_elements_grow_into_their_bone_within_the_reach():
    labels, hu = _process()
    probs = _probabilities(labels)
    classes = class_argmax(probs)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    out, n = grow_into_bone(probs, classes=classes, affine=affine,
                            hu_at=VolumeLookup(hu, affine=affine), reach_mm=3.0)
    result = class_argmax(out).numpy()
    assert np.array_equal(classes.numpy(), result)
    assert np.all(result[10:12, 8:12, 8:12] == L.POSTERIOR_ELEMENTS)   # 2 steps of 1.5 mm along the bone
    assert np.all(result[12:14, 8:12, 8:12] == L.LESION)
    assert not np.any(result[14:, 8:12, 8:12] == L.POSTERIOR_ELEMENTS)  # beyond the lesion: not joined
    assert np.all(result[5:10, 12:, :] != L.POSTERIOR_ELEMENTS)       # soft tissue round it stays
    assert np.all(result[4, 0:6] == 0) and not np.any(result[:, 6] == L.VERTEBRAL_BODY)  # bodies not grown
    assert n == int(np.count_nonzero(result[10:12, 8:12, 8:12] == L.POSTERIOR_ELEMENTS))


def test_low_density_and_far_bone_is_not_grown_into():
    labels, hu = _process()
    hu[10:25, 8:12, 8:12] = 150.0                    # under 200 HU (osteoporotic, or a missed lytic lesion)
    probs = _probabilities(labels)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    out, n = grow_into_bone(probs, classes=class_argmax(probs), affine=affine,
                            hu_at=VolumeLookup(hu, affine=affine), reach_mm=3.0)
    assert n == 0 and np.array_equal(class_argmax(out).numpy(), labels)


def test_the_reach_bounds_the_growth():
    labels, hu = _process()
    labels[labels == L.LESION] = 0                   # the process's bone free all the way
    probs = _probabilities(labels)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    out, _ = grow_into_bone(probs, classes=class_argmax(probs), affine=affine,
                            hu_at=VolumeLookup(hu, affine=affine), reach_mm=3.0)
    result = class_argmax(out).numpy()
    assert np.all(result[10:12, 8:12, 8:12] == L.POSTERIOR_ELEMENTS) and not np.any(result[12:, 8:12, 8:12])
