"""Issue 16's faster paths give what the plain expressions they replace give (same values, same order)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from spinelesion.measure import geometry as G
from spinelesion.measure.vertebrae import _members, _slab_index


def _blobs(shape=(23, 19, 17), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    mask[4:9, 6:15, 2:5] = True
    mask[rng.integers(0, shape[0], 20), rng.integers(0, shape[1], 20), rng.integers(0, shape[2], 20)] = True
    return mask


def test_column_reductions_equal_axis0():
    rng = np.random.default_rng(1)
    for values in (rng.normal(size=(1000, 2)), rng.integers(-50, 50, size=(999, 3))):
        assert np.array_equal(G.column_min(values), values.min(axis=0))
        assert np.array_equal(G.column_max(values), values.max(axis=0))
        assert G.column_min(values).dtype == values.dtype


def test_crop_box_equals_per_axis_projections():
    mask = _blobs()
    expected = []
    for axis in range(3):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        expected.append(slice(max(hits[0] - 2, 0), min(hits[-1] + 3, mask.shape[axis])))
    assert G.crop_box(mask, margin=2) == tuple(expected)
    assert G.crop_box(np.zeros((4, 5, 6), bool)) is None


def test_box_mask_points_equal_whole_grid_points():
    mask = _blobs()
    affine = np.array([[0.7, 0.1, 0.0, -30.0], [0.0, -0.8, 0.2, 12.5], [0.05, 0.0, 1.3, 7.0], [0, 0, 0, 1]])
    box = G.crop_box(mask, margin=1)
    assert np.array_equal(G.box_mask_points(mask[box], box, mask.shape, affine), G.mask_points(mask, affine))


def test_principal_axes_on_a_sample_first_is_the_same():
    rng = np.random.default_rng(2)
    points = rng.normal(size=(5000, 3)) * [1.0, 2.0, 9.0]
    whole = G.principal_axes(points, max_points=1000)
    sampled = G.principal_axes(points[G.axes_sample(len(points), max_points=1000)], max_points=1000)
    assert all(np.array_equal(a, b) for a, b in zip(whole, sampled))


def test_members_equal_flatnonzero_per_slab():
    slab_of = np.random.default_rng(3).integers(-1, 5, size=10_000)
    members = _members(slab_of, 5)
    assert len(members) == 5
    for s, got in enumerate(members):
        assert np.array_equal(got, np.flatnonzero(slab_of == s))


def test_slab_index_in_blocks_equals_whole_array():
    rng = np.random.default_rng(4)
    points = rng.normal(size=(200_003, 3)) * 40
    planes = [(rng.normal(size=3), n / np.linalg.norm(n)) for n in rng.normal(size=(6, 3))]
    whole = np.zeros(len(points), np.int64)
    for centre, normal in planes:
        whole += ((points - centre) @ normal) > 0
    assert np.array_equal(_slab_index(points, planes), whole)
    assert np.array_equal(_slab_index(points, planes, rows=777), whole)


def test_touch_box_dilation_equals_whole_volume():
    tissue, epidural = _blobs(seed=5), _blobs(seed=6)
    box = G.crop_box(tissue, margin=1)
    whole = ndimage.binary_dilation(tissue) & epidural
    part = np.zeros_like(whole)
    part[box] = ndimage.binary_dilation(tissue[box]) & epidural[box]
    assert np.array_equal(part, whole)

