"""fill_canal: background the network leaves inside the dural canal's outline becomes cord or sac."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spinelesion import labels as L
from spinelesion.inference.refine import fill_canal
from spinelesion.inference.resample import class_argmax
from spinelesion.inference.settings import InferenceSettings


def _disc(shape, centre, radius):
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    return (i - centre[0]) ** 2 + (j - centre[1]) ** 2 <= radius ** 2


def _probabilities(labels: np.ndarray, *, inner: np.ndarray, inner_p: dict[int, float]) -> torch.Tensor:
    """(7, X, Y, Z) probabilities whose argmax is ``labels``; voxels of ``inner`` get ``inner_p``."""
    probs = np.full((7, *labels.shape), 0.01, np.float32)
    for c in range(7):
        probs[c][labels == c] = 0.94
    for c in range(7):
        probs[c][inner] = inner_p.get(c, 0.0)
    return torch.as_tensor(probs)


def _sac_with_unlabelled_middle(shape=(40, 40, 12)):
    """A thecal sac of radius 8 voxels whose front and back crescents are labelled, its middle
    (radius 5: where a cord as bright as the CSF would be) left background; plus a separate small
    sac piece 15 voxels to the side."""
    labels = np.zeros(shape, np.uint8)
    sac = _disc(shape[:2], (20, 20), 8)
    middle = _disc(shape[:2], (20, 20), 5)
    j = np.arange(shape[1])[None, :]
    crescents = sac & ~middle & (np.abs(j - 20) > 2)          # front and back, open at the sides
    labels[..., 2:10][crescents] = L.THECAL_SAC
    labels[5:7, 2:4, 2:10] = L.THECAL_SAC                     # a far piece (a false island)
    inner = np.zeros(shape, bool)
    inner[..., 2:10] = middle[..., None]
    inner &= labels == 0
    return labels, inner


def test_the_middle_of_a_sac_becomes_the_likelier_of_cord_and_sac():
    labels, inner = _sac_with_unlabelled_middle()
    # the network's middle: background 0.45, cord 0.35, sac 0.2 -> background by arg-max
    probs = _probabilities(labels, inner=inner, inner_p={0: 0.45, L.SPINAL_CORD: 0.35, L.THECAL_SAC: 0.2})
    classes = class_argmax(probs)
    assert not np.any(classes.numpy()[inner])                 # background before
    out, n = fill_canal(probs, spacing_mm=(1.5,) * 3, classes=classes)
    result = class_argmax(out).numpy()
    assert n >= inner.sum() and np.all(result[inner] == L.SPINAL_CORD)
    assert np.array_equal(classes.numpy(), result)            # classes kept equal to the arg-max
    # outside the outline nothing changes: the corners, the planes without canal, between the far piece and the sac
    assert np.all(result[:, :, :2] == 0) and np.all(result[:, :, 10:] == 0)
    assert np.all(result[0:4, 0:4] == 0) and np.all(result[8:11, 2:4] == 0)


def test_sac_wins_where_the_network_prefers_it():
    labels, inner = _sac_with_unlabelled_middle()
    probs = _probabilities(labels, inner=inner, inner_p={0: 0.5, L.SPINAL_CORD: 0.2, L.THECAL_SAC: 0.3})
    out, _ = fill_canal(probs, spacing_mm=(1.5,) * 3, classes=class_argmax(probs))
    assert np.all(class_argmax(out).numpy()[inner] == L.THECAL_SAC)


def test_background_the_network_does_not_call_canal_at_all_stays():
    """Tissue bulging into a sac (a ligament, a disc) the network gives no canal probability."""
    labels, inner = _sac_with_unlabelled_middle()
    probs = _probabilities(labels, inner=inner, inner_p={0: 0.95, L.SPINAL_CORD: 0.03, L.THECAL_SAC: 0.02})
    out, n = fill_canal(probs, spacing_mm=(1.5,) * 3, classes=class_argmax(probs), min_canal_probability=0.1)
    assert n == 0 and not np.any(class_argmax(out).numpy()[inner])


def test_lesion_and_bone_inside_the_outline_are_never_changed():
    labels, inner = _sac_with_unlabelled_middle()
    labels[18:23, 18:23, 4:8] = L.LESION                      # epidural tumour inside the outline
    inner &= labels == 0
    probs = _probabilities(labels, inner=inner, inner_p={0: 0.4, L.SPINAL_CORD: 0.6})
    out, _ = fill_canal(probs, spacing_mm=(1.5,) * 3, classes=class_argmax(probs))
    assert np.all(class_argmax(out).numpy()[18:23, 18:23, 4:8] == L.LESION)


def test_a_map_without_canal_is_returned_unchanged():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[2:8, 2:8, 2:8] = L.VERTEBRAL_BODY
    probs = _probabilities(labels, inner=np.zeros(labels.shape, bool), inner_p={})
    before = probs.clone()
    out, n = fill_canal(probs, spacing_mm=(1.0,) * 3, classes=class_argmax(probs))
    assert n == 0 and torch.equal(out, before)


def test_the_setting_is_validated():
    from spinelesion.typed_yaml import Invalid

    with pytest.raises(Invalid, match="canal_fill_min_probability"):
        InferenceSettings(canal_fill_min_probability=1.5).check()


def test_an_epidural_tumour_the_network_missed_in_the_sacs_notch_stays_background():
    """The notch an epidural mass makes in the sac lies inside the sac's convex outline; where the
    network gives it more lesion than canal (but called it background), it is not made canal."""
    labels, inner = _sac_with_unlabelled_middle()
    probs = _probabilities(labels, inner=inner, inner_p={0: 0.45, L.LESION: 0.3, L.SPINAL_CORD: 0.15,
                                                         L.THECAL_SAC: 0.1})
    out, n = fill_canal(probs, spacing_mm=(1.5,) * 3, classes=class_argmax(probs))
    assert n == 0 and not np.any(class_argmax(out).numpy()[inner])
