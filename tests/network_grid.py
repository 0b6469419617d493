"""Helpers for tests of the post-processing steps that work on the network grid (ct_density, t1_marrow,
canal_line): certain probabilities from a label map, and a ball of voxels."""

from __future__ import annotations

import numpy as np
import torch

from spinelesion import labels as L


def certain_probabilities(labels: np.ndarray) -> torch.Tensor:
    """(7, X, Y, Z) probabilities: 0.94 for each voxel's label, 0.01 for every other class; a lesion's runner-up
    is body (0.03: a lesion in bone)."""
    probs = np.full((7, *labels.shape), 0.01, np.float32)
    for c in range(7):
        probs[c][labels == c] = 0.94
    probs[L.VERTEBRAL_BODY][labels == L.LESION] = 0.03
    return torch.as_tensor(probs)


def ball(shape, centre, radius_vox) -> np.ndarray:
    """(X, Y, Z) bool: voxels within ``radius_vox`` of ``centre``."""
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    return np.linalg.norm(grid - np.array(centre), axis=-1) <= radius_vox
