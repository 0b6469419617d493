"""Map network outputs from the network's grid back onto the input scan's exact grid."""

from __future__ import annotations

import numpy as np
import torch


def labels_on_grid(probabilities: torch.Tensor, *, source_affine: np.ndarray, target_affine: np.ndarray,
                   target_shape: tuple[int, int, int], slab_voxels: int = 4_000_000) -> np.ndarray:
    """Trilinearly interpolate class probabilities at each target voxel, then take the argmax.

    Each target voxel's world position (``target_affine``) is mapped into the source grid
    (inverse of ``source_affine``). The result equals interpolating all C probabilities
    everywhere, but is computed cheaply: inside a source cell whose 8 corners share one argmax
    class c, every convex combination of the corners also has argmax c (p_c >= p_k at each corner
    implies it for any weighted sum), so those voxels take c directly; only voxels in cells
    straddling a class boundary, or within one voxel of the source edge, are interpolated.
    Voxels more than one voxel outside the source grid are background (class 0), and so is
    everything outside the target box that covers the source's foreground cells: the work scales
    with the size of the spine, not of the scan.

    Args:
        probabilities: (C, X, Y, Z) float tensor on the network grid (any device).
        source_affine: (4, 4) voxel -> RAS mm of the probabilities' grid.
        target_affine: (4, 4) voxel -> RAS mm of the output grid.
        target_shape: (X, Y, Z) of the output grid.

    Returns:
        (X, Y, Z) uint8 label map on the target grid.
    """
    device = probabilities.device
    probabilities = probabilities.float()
    src_shape = torch.tensor(probabilities.shape[1:], device=device)
    labels_src = probabilities.argmax(dim=0).to(torch.uint8)
    uniform = _uniform_cells(labels_src)  # (X-1, Y-1, Z-1) bool
    matrix = torch.as_tensor(np.linalg.inv(source_affine) @ target_affine, dtype=torch.float32, device=device)
    out = np.zeros(target_shape, dtype=np.uint8)
    box = _target_box(labels_src, target_to_source=np.linalg.inv(source_affine) @ target_affine,
                      target_shape=target_shape)
    if box is None:
        return out
    (x0, y0, z0), (x1, y1, z1) = box
    ii, jj = torch.meshgrid(torch.arange(x0, x1, dtype=torch.float32, device=device),
                            torch.arange(y0, y1, dtype=torch.float32, device=device), indexing="ij")
    k_step = max(1, slab_voxels // max(1, (x1 - x0) * (y1 - y0)))
    for k0 in range(z0, z1, k_step):
        kk = torch.arange(k0, min(z1, k0 + k_step), dtype=torch.float32, device=device)
        # (nx, ny, nk, 3) source positions of the target voxels
        pos = torch.stack([matrix[a, 0] * ii[..., None] + matrix[a, 1] * jj[..., None]
                           + matrix[a, 2] * kk[None, None, :] + matrix[a, 3] for a in range(3)], dim=-1)
        cell = pos.floor().long()
        in_cell = ((cell >= 0) & (cell <= src_shape - 2)).all(dim=-1)
        near = ((pos > -1) & (pos < src_shape.float())).all(dim=-1)
        slab = torch.zeros(pos.shape[:3], dtype=torch.uint8, device=device)
        c = cell[in_cell]
        flat_uniform = uniform[c[:, 0], c[:, 1], c[:, 2]]
        values = torch.zeros(len(c), dtype=torch.uint8, device=device)
        values[flat_uniform] = labels_src[c[flat_uniform, 0], c[flat_uniform, 1], c[flat_uniform, 2]]
        slab[in_cell] = values
        mixed = near.clone()
        mixed[in_cell] = ~flat_uniform
        if bool(mixed.any()):
            slab[mixed] = _interpolate_argmax(probabilities, pos[mixed])
        out[x0:x1, y0:y1, k0:k0 + len(kk)] = slab.cpu().numpy()
    return out


def _target_box(labels_src: torch.Tensor, *, target_to_source: np.ndarray, target_shape):
    """Target index box ((lo), (hi)) holding every voxel that can get a foreground label, or None.

    A target voxel can only be foreground if one of the 8 source voxels around its position is;
    the box is the target-grid hull of the source foreground's bounding box grown by one voxel.
    """
    import itertools

    foreground = labels_src > 0
    if not bool(foreground.any()):
        return None
    lo_hi = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hits = torch.nonzero(foreground.any(dim=others[1]).any(dim=others[0])).flatten()
        lo_hi.append((int(hits.min()) - 1, int(hits.max()) + 1))
    corners = np.array([[*c, 1.0] for c in itertools.product(*lo_hi)]).T  # (4, 8) source indices
    target = (np.linalg.inv(target_to_source) @ corners)[:3]
    shape = np.array(target_shape)
    lo = np.clip(np.floor(target.min(axis=1)).astype(int), 0, shape)
    hi = np.clip(np.ceil(target.max(axis=1)).astype(int) + 1, 0, shape)
    if np.any(hi <= lo):
        return None
    return tuple(int(v) for v in lo), tuple(int(v) for v in hi)


def _uniform_cells(labels: torch.Tensor) -> torch.Tensor:
    """(X-1, Y-1, Z-1) bool: True where the 8 corners of the cell starting at that voxel agree."""
    base = labels[:-1, :-1, :-1]
    same = torch.ones_like(base, dtype=torch.bool)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                if dx or dy or dz:
                    same &= labels[dx:labels.shape[0] - 1 + dx, dy:labels.shape[1] - 1 + dy,
                                   dz:labels.shape[2] - 1 + dz] == base
    return same


def _interpolate_argmax(probabilities: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """argmax of trilinearly interpolated (C, X, Y, Z) probabilities at (N, 3) source positions;
    outside the grid the probabilities fall off to 0 (background where all vanish)."""
    size = torch.tensor(probabilities.shape[1:], dtype=torch.float32, device=points.device)
    norm = points * (2.0 / (size - 1).clamp(min=1)) - 1  # align_corners=True convention
    grid = norm[:, [2, 1, 0]].reshape(1, 1, 1, -1, 3)  # grid_sample wants (W, H, D) order
    sampled = torch.nn.functional.grid_sample(probabilities[None], grid, mode="bilinear",
                                              padding_mode="zeros", align_corners=True)
    return sampled.reshape(probabilities.shape[0], -1).argmax(dim=0).to(torch.uint8)
