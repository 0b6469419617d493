"""World-space helpers: voxel indices -> RAS+ mm, principal axes, local anatomical frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: RAS+ world directions.
SUPERIOR = np.array([0.0, 0.0, 1.0])
ANTERIOR = np.array([0.0, 1.0, 0.0])


def world_points(flat_idx: np.ndarray, shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """(N,) flat voxel indices of an array of ``shape`` -> (N, 3) float64 RAS+ mm.

    Computed one world axis at a time rather than as an (N, 3) @ (3, 3) product: numpy hands
    that product to a multithreaded BLAS, which is slow for so thin a matrix and many times
    slower still when other processes hold the cores. Equal to the product within rounding.
    """
    ijk = [np.asarray(v, dtype=np.float64) for v in np.unravel_index(flat_idx, shape)]
    out = np.empty((len(ijk[0]), 3))
    for row in range(3):
        a = affine[row]
        out[:, row] = ijk[0] * a[0] + ijk[1] * a[1] + ijk[2] * a[2] + a[3]
    return out


def centroid(points: np.ndarray) -> np.ndarray:
    """(3,) mean of (N, 3) points, column by column: ``points.mean(axis=0)`` reduces a thin
    C-ordered array across its rows, about 15 times slower (equal within rounding)."""
    return np.array([points[:, k].mean() for k in range(points.shape[1])])


def in_bounds(ijk: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(N,) bool: which (N, 3) integer voxel indices lie inside an array of ``shape`` (column by
    column: ``np.all(..., axis=1)`` over an (N, 3) array is about 10 times slower)."""
    ok = (ijk[:, 0] >= 0) & (ijk[:, 0] < shape[0])
    for k in range(1, len(shape)):
        ok &= (ijk[:, k] >= 0) & (ijk[:, k] < shape[k])
    return ok


@dataclass(frozen=True, eq=False)
class Grid:
    """A voxel grid: its (X, Y, Z) ``shape`` and 4x4 voxel -> RAS+ mm ``affine`` (one value where
    functions would otherwise take the pair)."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    def points(self, flat_idx: np.ndarray) -> np.ndarray:
        """(N,) flat voxel indices -> (N, 3) RAS+ mm (:func:`world_points`)."""
        return world_points(flat_idx, self.shape, self.affine)

    def ijk(self, flat_idx: np.ndarray) -> np.ndarray:
        """(N,) flat voxel indices -> (N, 3) int voxel indices."""
        return np.stack(np.unravel_index(flat_idx, self.shape), axis=1)

    @property
    def voxel_mm3(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])))


def mask_points(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(X, Y, Z) bool mask -> (N, 3) RAS+ mm of its voxels."""
    return world_points(np.flatnonzero(mask), mask.shape, affine)


def step_along_mm(direction: np.ndarray, affine: np.ndarray) -> float:
    """Mean spacing of voxel centres along a world ``direction`` (unit vector), in mm.

    For an axis-aligned direction it is that axis' spacing; oblique directions see a denser grid.
    """
    inv = np.linalg.inv(affine[:3, :3])
    return float(1.0 / max(np.linalg.norm(inv @ direction), 1e-9))


def principal_axis(points: np.ndarray, *, max_points: int = 200_000, seed: int = 0) -> np.ndarray:
    """Unit direction of largest variance of (N, 3) points (sign arbitrary)."""
    return principal_axes(points, max_points=max_points, seed=seed)[1][:, -1]


def smallest_axis(points: np.ndarray, *, max_points: int = 200_000, seed: int = 0) -> np.ndarray:
    """Unit direction of smallest variance of (N, 3) points (a plate's normal)."""
    return principal_axes(points, max_points=max_points, seed=seed)[1][:, 0]


def axes_sample(n: int, *, max_points: int = 200_000, seed: int = 0) -> np.ndarray | slice:
    """Which of ``n`` points :func:`principal_axes` uses: all (a slice), or ``max_points`` of them
    drawn with ``seed`` ((max_points,) indices). Taking them first spares converting the others."""
    if n > max_points:
        return np.random.default_rng(seed).choice(n, max_points, replace=False)
    return slice(None)


def principal_axes(points: np.ndarray, *, max_points: int = 200_000, seed: int = 0):
    """(eigenvalues (3,) ascending, unit eigenvectors (3, 3) as columns) of the covariance of (N, 3)
    points; at most ``max_points`` of them, drawn with ``seed`` (:func:`axes_sample`)."""
    points = points[axes_sample(len(points), max_points=max_points, seed=seed)]
    # column by column: the (3, N) @ (N, 3) product and the mean along axis 0 of a thin array are
    # several times slower (docs/benchmarks.md, issue 16)
    columns = [points[:, k] - points[:, k].mean() for k in range(3)]
    covariance = np.array([[a @ b for b in columns] for a in columns])
    return np.linalg.eigh(covariance / max(len(points), 1))


def orient_like(vector: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``vector`` or its negation, whichever points along ``reference``."""
    return -vector if float(vector @ reference) < 0 else vector


def perpendicular(vector: np.ndarray, axis: np.ndarray, *, fallback: np.ndarray = ANTERIOR) -> np.ndarray:
    """Unit component of ``vector`` perpendicular to unit ``axis`` (``fallback`` if degenerate)."""
    v = vector - (vector @ axis) * axis
    n = np.linalg.norm(v)
    if n < 1e-6:
        if fallback is vector:
            other = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
            return perpendicular(other, axis, fallback=other)
        return perpendicular(fallback, axis, fallback=fallback)
    return v / n


def crop_box(mask: np.ndarray, *, margin: int = 2) -> tuple[slice, ...] | None:
    """Bounding box (slices) of a 3D mask's True voxels (or a label map's nonzero ones: passing the
    map itself spares a whole-volume mask), grown by ``margin``; None if empty.

    Two passes over the volume, not three: the first two axes' extents come from one (X, Y) projection."""
    xy = mask.any(axis=2)
    box = []
    for axis, seen in enumerate((xy.any(axis=1), xy.any(axis=0), mask.any(axis=(0, 1)))):
        hits = np.flatnonzero(seen)
        if hits.size == 0:
            return None
        box.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(box)


def column_min(values: np.ndarray) -> np.ndarray:
    """(K,) minimum of each column of (N, K) ``values``: ``values.min(axis=0)``, column by column
    (numpy reduces a thin array along axis 0 a row at a time, 20-30 times slower)."""
    return np.array([values[:, k].min() for k in range(values.shape[1])], dtype=values.dtype)


def column_max(values: np.ndarray) -> np.ndarray:
    """(K,) maximum of each column of (N, K) ``values`` (as :func:`column_min`)."""
    return np.array([values[:, k].max() for k in range(values.shape[1])], dtype=values.dtype)


def box_mask_points(mask: np.ndarray, box: tuple[slice, ...], shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """(N, 3) RAS+ mm of the True voxels of ``mask``, the box ``box`` (slices with starts) of a grid
    of ``shape`` and ``affine``: :func:`mask_points` of the whole grid's mask, same points, same order."""
    ijk = [i + b.start for i, b in zip(np.nonzero(mask), box)]
    return world_points(np.ravel_multi_index(ijk, shape), shape, affine)


def cropped_affine(affine: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """Affine of the sub-array ``array[box]``."""
    out = affine.copy()
    out[:3, 3] = affine[:3, :3] @ np.array([s.start for s in box], float) + affine[:3, 3]
    return out
