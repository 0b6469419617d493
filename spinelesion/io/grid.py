"""Label arrays onto an image's voxel grid without resampling.

A label map can hold the same voxel centres as its image in another axis order or direction (a
DICOM series loaded LPS and its TotalSegmentator map written LAS by dcm2niix; a DICOM SEG holding
only the frames with segments): permuting, flipping and placing it moves no voxel in space. Any
other difference (spacing, rotation, sub-voxel shift) would need resampling and is refused.
"""

from __future__ import annotations

import os

import numpy as np

from spinelesion.errors import LabelMapError
from spinelesion.io.scan import Scan

#: Largest distance (mm) between corresponding corner voxels of two grids still called "the same
#: grid". NIfTI stores its affine in float32, so identical grids written by different tools can
#: differ by about 1e-4 mm; a real grid difference is a fraction of a voxel or more.
GRID_TOLERANCE_MM = 0.01


def place_on_grid(array: np.ndarray, *, affine: np.ndarray, like: Scan, path: str | os.PathLike,
                  require_full: bool = False) -> np.ndarray:
    """Copy a label array onto ``like``'s grid when its voxels coincide with ``like``'s voxels.

    The source may cover part of ``like``'s field of view and store its axes in another order or
    direction (a DICOM SEG holding only the frames that have segments); voxels outside it are 0.

    Args:
        array: (I, J, K) source labels.
        affine: (4, 4) source voxel -> RAS+ mm.
        require_full: refuse a source that covers only part of ``like``'s field of view.

    Returns:
        (X, Y, Z) array of ``array``'s dtype on ``like``'s grid.

    Raises:
        LabelMapError naming ``path`` when the source voxel centres are not ``like``'s voxel
        centres (other spacing, rotation or a sub-voxel shift), or, with ``require_full``, when
        it does not cover every voxel of ``like``.
    """
    # like voxel index -> source voxel index
    to_source = np.linalg.inv(np.asarray(affine, dtype=np.float64)) @ like.affine
    rotation, offset = to_source[:3, :3], to_source[:3, 3]
    axis_of = np.argmax(np.abs(rotation), axis=0)  # source axis for each like axis
    signs = np.sign(rotation[axis_of, range(3)])
    expected = np.zeros((3, 3))
    expected[axis_of, range(3)] = signs
    corners = np.array([[i, j, k] for i in (0, like.shape[0] - 1) for j in (0, like.shape[1] - 1)
                        for k in (0, like.shape[2] - 1)], dtype=np.float64).T
    drift_voxels = np.abs(rotation @ corners + offset[:, None] - (expected @ corners + np.round(offset)[:, None]))
    if sorted(axis_of.tolist()) != [0, 1, 2] or drift_voxels.max() * max(like.spacing_mm) > 10 * GRID_TOLERANCE_MM:
        raise LabelMapError(f"{path}: label and image grids differ: label voxels do not lie on the image "
                            "grid (other spacing, rotation or shift); resample the label onto the image first")
    out = np.zeros(like.shape, dtype=array.dtype)
    source = np.transpose(array, axis_of.tolist())
    index, valid = [], []
    for axis in range(3):
        along = np.round(signs[axis] * np.arange(like.shape[axis]) + offset[axis_of[axis]]).astype(int)
        inside = (along >= 0) & (along < source.shape[axis])
        index.append(along[inside])
        valid.append(np.flatnonzero(inside))
    if require_full and any(v.size < n for v, n in zip(valid, like.shape)):
        raise LabelMapError(f"{path}: label and image grids differ: the label map covers only part of the "
                            f"image grid {like.shape}; resample the label onto the image first")
    if all(v.size for v in valid):
        out[np.ix_(*valid)] = source[np.ix_(*index)]
    return out


def labels_on_image_grid(labels: Scan, *, like: Scan, path: str | os.PathLike) -> np.ndarray:
    """The voxels of a label volume in ``like``'s voxel order, when they are ``like``'s voxel
    centres, possibly stored in another axis order or direction; else LabelMapError naming ``path``.

    Returns:
        (X, Y, Z) array of ``labels.array``'s dtype on ``like``'s grid.
    """
    if sorted(labels.shape) != sorted(like.shape):
        raise LabelMapError(f"{path}: label and image grids differ: label grid {labels.shape} "
                            f"({labels.orientation}) against the image's {like.shape} ({like.orientation}); "
                            "resample the label onto the image first")
    return place_on_grid(labels.array, affine=labels.affine, like=like, path=path, require_full=True)
