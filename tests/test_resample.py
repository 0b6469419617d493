"""labels_on_grid: the network's class probabilities onto the scan's grid: exact for identical and
flipped grids, equal to interpolating every class everywhere (the arg-max among the cell corners'
classes), whatever the shortcuts, and no class that no corner holds winning in between."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_affine, rotation
from spinelesion.inference.resample import labels_on_grid
from spinelesion.labels import NUM_CLASSES


def test_labels_on_grid_is_exact_for_identical_and_flipped_grids():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, NUM_CLASSES, (9, 10, 11))
    probs = torch.nn.functional.one_hot(torch.as_tensor(labels), NUM_CLASSES).permute(3, 0, 1, 2).float()
    affine = make_affine(rotation("y", 20), (1.5, 1.2, 2.0), (5.0, -3.0, 7.0))
    same = labels_on_grid(probs, source_affine=affine, target_affine=affine, target_shape=labels.shape,
                          slab_voxels=50)
    assert np.array_equal(same, labels)
    flipped = affine.copy()
    flipped[:3, 0] *= -1
    flipped[:3, 3] = affine[:3, :3] @ [8, 0, 0] + affine[:3, 3]
    out = labels_on_grid(probs, source_affine=affine, target_affine=flipped, target_shape=labels.shape)
    assert np.array_equal(out, labels[::-1])
    # a target grid lying entirely outside the source gets background
    far = affine.copy()
    far[:3, 3] += 1000
    assert not labels_on_grid(probs, source_affine=affine, target_affine=far, target_shape=(4, 4, 4)).any()


@pytest.mark.parametrize("relation", ["permuted_flipped", "oblique"])
def test_labels_on_grid_equals_interpolating_every_class_everywhere(relation):
    """The shortcuts (uniform cells, foreground box, separable axes) change no voxel: the same as
    interpolating every class at every voxel and taking the arg-max among the cell corners' classes."""
    from spinelesion.inference.resample import _cell_class_bits, _interpolate_argmax, class_argmax

    torch.manual_seed(1)
    logits = torch.nn.functional.interpolate(torch.randn(1, NUM_CLASSES, 5, 6, 5) * 4, size=(20, 24, 18),
                                             mode="trilinear")[0]
    logits[0, :4] += 30  # a background-only margin, so the foreground box is smaller than the grid
    probs = torch.softmax(logits, dim=0)
    source = make_affine(np.eye(3), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    if relation == "permuted_flipped":  # PSR-like voxel order at 0.9 x 1.3 x 0.7 mm
        direction = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=float)
        target, shape = make_affine(direction, (0.9, 1.3, 0.7), (36.0, 47.0, 33.0)), (40, 28, 50)
    else:
        target, shape = make_affine(rotation("x", 9) @ rotation("z", 5), (0.9, 1.3, 0.7), (1.0, 2.0, 1.0)), (40, 30, 48)
    fast = labels_on_grid(probs, source_affine=source, target_affine=target, target_shape=shape, slab_voxels=5000)
    m = np.linalg.inv(source) @ target
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    pos = torch.as_tensor(idx @ m[:3, :3].T + m[:3, 3], dtype=torch.float32)
    inside = ((pos > -1) & (pos < torch.tensor(probs.shape[1:]))).all(dim=1)
    reference = torch.zeros(len(pos), dtype=torch.uint8)
    bits = _cell_class_bits(class_argmax(probs))
    cell = pos.floor().long()
    in_cell = ((cell >= 0) & (cell <= torch.tensor(bits.shape) - 1)).all(dim=1)
    allowed = torch.full((len(pos),), 255, dtype=torch.uint8)
    c = cell[in_cell]
    allowed[in_cell] = bits[c[:, 0], c[:, 1], c[:, 2]]
    reference[inside] = _interpolate_argmax(probs, pos[inside], allowed_bits=allowed[inside])
    reference = reference.numpy().reshape(shape)
    assert (fast > 0).any() and (fast == 0).any()
    assert (fast == reference).mean() > 0.99999


def test_a_class_no_cell_corner_holds_never_wins_in_between():
    """Body (A) beside background (B), lesion second on both sides: the interpolation at the border
    gives lesion the most, yet no corner is lesion: the border voxels are body or background."""
    probs = torch.zeros(NUM_CLASSES, 6, 6, 6)
    probs[1, :3], probs[3, :3], probs[0, :3] = 0.50, 0.45, 0.05   # body, lesion second
    probs[0, 3:], probs[3, 3:], probs[1, 3:] = 0.50, 0.45, 0.05   # background, lesion second
    source = np.eye(4)
    target = np.diag([0.25, 0.25, 0.25, 1.0])                       # 4x finer: voxels inside the border cells
    labels = labels_on_grid(probs, source_affine=source, target_affine=target, target_shape=(20, 20, 20))
    assert not (labels == 3).any()
    assert (labels[:8] == 1).all() and (labels[13:] == 0).all()
    assert set(np.unique(labels[8:13])) <= {0, 1}
