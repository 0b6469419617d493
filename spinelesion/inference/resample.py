"""Map network outputs from the network's grid back onto the input scan's exact grid."""

from __future__ import annotations

import numpy as np
import torch


def labels_on_grid(probabilities: torch.Tensor, *, source_affine: np.ndarray, target_affine: np.ndarray,
                   target_shape: tuple[int, int, int], slab_voxels: int = 2_000_000) -> np.ndarray:
    """Resample class probabilities trilinearly onto another grid, then take the argmax.

    Each target voxel's world position (``target_affine``) is mapped into the source grid
    (inverse of ``source_affine``) and the (C, X, Y, Z) probabilities are interpolated there;
    voxels outside the source grid get background (class 0). Works slab by slab along the
    target's last axis so a 512x512x600 CT never needs all class probabilities at full size.

    Args:
        probabilities: (C, X, Y, Z) float tensor on the network grid (any device).
        source_affine: (4, 4) voxel -> RAS mm of the probabilities' grid.
        target_affine: (4, 4) voxel -> RAS mm of the output grid.
        target_shape: (X, Y, Z) of the output grid.

    Returns:
        (X, Y, Z) uint8 label map on the target grid.
    """
    src_shape = torch.tensor(probabilities.shape[1:], dtype=torch.float64)
    target_to_source = np.linalg.inv(source_affine) @ target_affine
    matrix = torch.as_tensor(target_to_source, dtype=torch.float64, device=probabilities.device)
    volume = probabilities[None].float()  # (1, C, X, Y, Z): grid_sample reads it as (N, C, D, H, W)
    out = np.zeros(target_shape, dtype=np.uint8)
    nx, ny, nz = target_shape
    k_step = max(1, slab_voxels // max(1, nx * ny))
    ii, jj = torch.meshgrid(torch.arange(nx, dtype=torch.float64, device=probabilities.device),
                            torch.arange(ny, dtype=torch.float64, device=probabilities.device), indexing="ij")
    scale = 2.0 / (src_shape.to(probabilities.device) - 1).clamp(min=1)
    for k0 in range(0, nz, k_step):
        k1 = min(nz, k0 + k_step)
        kk = torch.arange(k0, k1, dtype=torch.float64, device=probabilities.device)
        # source index = M[:3,:3] @ (i, j, k) + M[:3, 3], computed per axis to save memory
        idx = [matrix[a, 0] * ii[..., None] + matrix[a, 1] * jj[..., None] + matrix[a, 2] * kk[None, None, :]
               + matrix[a, 3] for a in range(3)]
        # grid_sample wants (x=W, y=H, z=D) = (source axis 2, 1, 0), normalised to [-1, 1]
        grid = torch.stack([idx[2] * scale[2] - 1, idx[1] * scale[1] - 1, idx[0] * scale[0] - 1], dim=-1)
        sampled = torch.nn.functional.grid_sample(volume, grid[None].float(), mode="bilinear",
                                                  padding_mode="zeros", align_corners=True)[0]
        # outside the source grid every class samples 0 -> argmax gives 0 (background)
        out[:, :, k0:k1] = sampled.argmax(dim=0).to(torch.uint8).cpu().numpy()
    return out
