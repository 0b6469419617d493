"""Map network outputs from the network's grid back onto the input scan's exact grid."""

from __future__ import annotations

import numpy as np
import torch

#: Marks a source cell whose 8 corners disagree (labels are 0..254).
MIXED = 255


def labels_on_grid(probabilities: torch.Tensor, *, source_affine: np.ndarray, target_affine: np.ndarray,
                   target_shape: tuple[int, int, int], slab_voxels: int = 4_000_000,
                   classes: torch.Tensor | None = None) -> np.ndarray:
    """Trilinearly interpolate class probabilities at each target voxel, then take the argmax among
    the classes of the voxel's source cell corners (a class no corner holds never wins in between:
    no specks of a runner-up class along borders).

    Each target voxel's world position (``target_affine``) is mapped into the source grid
    (inverse of ``source_affine``). The result equals interpolating all C probabilities
    everywhere and taking that arg-max, but is computed cheaply: inside a source cell whose 8 corners share one argmax
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
        classes: (X, Y, Z) uint8 :func:`class_argmax` of ``probabilities`` where the caller has it.

    Returns:
        (X, Y, Z) uint8 label map on the target grid.
    """
    device = probabilities.device
    probabilities = probabilities.float()
    labels_src = class_argmax(probabilities) if classes is None else classes
    for axis in range(1, 4):  # a network grid one voxel thick (a scan thinner than a network voxel):
        if probabilities.shape[axis] == 1:  # that voxel's values one step further too, so cells exist
            probabilities = torch.cat([probabilities, probabilities], dim=axis)
            labels_src = torch.cat([labels_src, labels_src], dim=axis - 1)
    if probabilities.shape[0] > 8:
        raise ValueError("labels_on_grid handles at most 8 classes (label schema v1 has 7)")
    src_shape = torch.tensor(probabilities.shape[1:], device=device)
    # the classes of each source cell's 8 corners (the 2x2x2 voxels from its corner) as bits; the cell's
    # class where all corners agree (a single bit), else MIXED
    cell_bits = _cell_class_bits(labels_src)
    cell_class = torch.where((cell_bits & (cell_bits - 1)) == 0, labels_src[:-1, :-1, :-1],
                             torch.tensor(MIXED, dtype=torch.uint8, device=device)).flatten()
    cell_bits = cell_bits.flatten()
    cell_strides = torch.tensor([(src_shape[1] - 1) * (src_shape[2] - 1), src_shape[2] - 1, 1], device=device)
    target_to_source = np.linalg.inv(source_affine) @ target_affine
    out = np.zeros(target_shape, dtype=np.uint8)
    box = _target_box(labels_src, target_to_source=target_to_source, target_shape=target_shape)
    if box is None:
        return out
    (x0, y0, z0), (x1, y1, z1) = box
    matrix = torch.as_tensor(target_to_source, dtype=torch.float32, device=device)
    axes = [torch.arange(lo, hi, dtype=torch.float32, device=device) for lo, hi in zip((x0, y0, z0), (x1, y1, z1))]
    k_step = max(1, slab_voxels // max(1, (x1 - x0) * (y1 - y0)))
    permutation = _axis_permutation(target_to_source)
    for k0 in range(0, len(axes[2]), k_step):
        slab_axes = [axes[0], axes[1], axes[2][k0:k0 + k_step]]
        if permutation is None:
            flat, in_cell, near, position = _general_cells(matrix, slab_axes, src_shape, cell_strides)
        else:
            flat, in_cell, near, position = _separable_cells(matrix, slab_axes, src_shape, cell_strides, permutation)
        cell = flat.clamp(0, cell_class.numel() - 1)
        slab = torch.where(in_cell, cell_class[cell], torch.zeros((), dtype=torch.uint8, device=device))
        mixed = (slab == MIXED) | (near & ~in_cell)
        slab[~near] = 0
        if bool(mixed.any()):  # within a cell, one of its corners' classes; past the grid's edge, any
            allowed = torch.where(in_cell[mixed], cell_bits[cell[mixed]],
                                  torch.tensor(ALL_CLASSES, dtype=torch.uint8, device=device))
            slab[mixed] = _interpolate_argmax(probabilities, position(mixed), allowed_bits=allowed)
        out[x0:x1, y0:y1, z0 + k0:z0 + k0 + len(slab_axes[2])] = slab.cpu().numpy()
    return out


def class_argmax(probabilities: torch.Tensor) -> torch.Tensor:
    """uint8 index of the largest of (C, ...) class scores along dim 0, the first on ties.

    The same as ``probabilities.argmax(dim=0)`` for NaN-free scores (softmax output), but a pass
    per class: torch's CPU argmax over a leading dimension is much slower (docs/benchmarks.md,
    "Figures behind design choices").
    """
    best = probabilities[0].clone()
    index = torch.zeros(probabilities.shape[1:], dtype=torch.uint8, device=probabilities.device)
    for c in range(1, probabilities.shape[0]):
        larger = probabilities[c] > best
        index.masked_fill_(larger, c)
        torch.maximum(best, probabilities[c], out=best)
    return index


def _axis_permutation(target_to_source: np.ndarray) -> list[int] | None:
    """For each target axis the one source axis it moves along, when the grids are axis-aligned
    (a permutation with flips and scales, as for any non-oblique pair of grids); else None."""
    m = np.abs(target_to_source[:3, :3])
    tol = 1e-6 * m.max()
    permutation = [int(np.argmax(m[:, b])) for b in range(3)]
    if sorted(permutation) != [0, 1, 2]:
        return None
    off_axis = m.copy()
    off_axis[permutation, [0, 1, 2]] = 0
    return permutation if off_axis.max() <= tol else None


def _general_cells(matrix, axes, src_shape, cell_strides):
    """Cell index, in-cell and near masks for a slab of target voxels under any affine map."""
    pos = torch.stack([matrix[a, 0] * axes[0][:, None, None] + matrix[a, 1] * axes[1][None, :, None]
                       + matrix[a, 2] * axes[2][None, None, :] + matrix[a, 3] for a in range(3)], dim=-1)
    cell = pos.floor().long()
    in_cell = ((cell >= 0) & (cell <= src_shape - 2)).all(dim=-1)
    near = ((pos > -1) & (pos < src_shape.float())).all(dim=-1)
    flat = (cell.clamp(min=0) * cell_strides).sum(dim=-1)
    return flat, in_cell, near, lambda mask: pos[mask]


def _separable_cells(matrix, axes, src_shape, cell_strides, permutation):
    """The same as :func:`_general_cells` for axis-aligned grids, from three 1D index maps."""
    pos_1d, flat, in_cell, near = [], 0, True, True
    for b, a in enumerate(permutation):
        pos = matrix[a, b] * axes[b] + matrix[a, 3]
        cell = pos.floor().long()
        shape = [1, 1, 1]
        shape[b] = -1
        pos_1d.append(pos)
        flat = flat + (cell.clamp(0, int(src_shape[a]) - 2) * cell_strides[a]).reshape(shape)
        in_cell = in_cell & ((cell >= 0) & (cell <= src_shape[a] - 2)).reshape(shape)
        near = near & ((pos > -1) & (pos < src_shape[a])).reshape(shape)
    full = (len(axes[0]), len(axes[1]), len(axes[2]))

    def position(mask):
        index = torch.nonzero(mask)  # (N, 3) target indices within the slab
        pos = torch.empty(len(index), 3, device=index.device)
        for b, a in enumerate(permutation):
            pos[:, a] = pos_1d[b][index[:, b]]
        return pos

    return flat.expand(full), in_cell.expand(full), near.expand(full), position


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


def _cell_class_bits(labels: torch.Tensor) -> torch.Tensor:
    """(X-1, Y-1, Z-1) uint8: for the cell starting at each voxel, bit c set when one of its 8 corners is
    of class c (classes 0-7: :func:`labels_on_grid` refuses more)."""
    one = torch.ones((), dtype=torch.uint8, device=labels.device)
    bits = torch.zeros_like(labels[:-1, :-1, :-1])
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                corner = labels[dx:labels.shape[0] - 1 + dx, dy:labels.shape[1] - 1 + dy, dz:labels.shape[2] - 1 + dz]
                bits |= torch.bitwise_left_shift(one, corner)
    return bits


#: All bits set: any class may win (a point past the source grid's edge).
ALL_CLASSES = 255


def _interpolate_argmax(probabilities: torch.Tensor, points: torch.Tensor,
                        allowed_bits: torch.Tensor | None = None) -> torch.Tensor:
    """argmax of trilinearly interpolated (C, X, Y, Z) probabilities at (N, 3) source positions;
    outside the grid the probabilities fall off to 0 (background where all vanish).

    With ``allowed_bits`` ((N,) uint8, bit c set where class c may win: the classes of the point's cell
    corners, :func:`_cell_class_bits`) the winner is the most probable allowed class: between a voxel
    of class A and one of class B, a class both give second place (lesion between body and background)
    can otherwise win the interpolation and leave one-voxel specks of it along every border
    (docs/benchmarks.md)."""
    size = torch.tensor(probabilities.shape[1:], dtype=torch.float32, device=points.device)
    norm = points * (2.0 / (size - 1).clamp(min=1)) - 1  # align_corners=True convention
    grid = norm[:, [2, 1, 0]].reshape(1, 1, 1, -1, 3)  # grid_sample wants (W, H, D) order
    sampled = torch.nn.functional.grid_sample(probabilities[None], grid, mode="bilinear",
                                              padding_mode="zeros", align_corners=True)
    sampled = sampled.reshape(probabilities.shape[0], -1)
    winner = class_argmax(sampled)
    if allowed_bits is None:
        return winner
    barred = (torch.bitwise_right_shift(allowed_bits, winner) & 1) == 0  # few: redo only those
    if bool(barred.any()):
        classes = torch.arange(probabilities.shape[0], dtype=torch.uint8, device=points.device)[:, None]
        allowed = (torch.bitwise_right_shift(allowed_bits[barred][None, :], classes) & 1).bool()
        winner[barred] = class_argmax(sampled[:, barred].masked_fill(~allowed, -1.0))
    return winner


def probabilities_on_grid(probabilities: torch.Tensor, *, source_affine: np.ndarray, target_affine: np.ndarray,
                          target_shape: tuple[int, int, int], slab_voxels: int = 1_000_000) -> np.ndarray:
    """(C, X, Y, Z) float16 class probabilities trilinearly interpolated at each target voxel.

    The same rule as :func:`labels_on_grid`, so that the saved probabilities and the labels agree
    at the borders (but where a class none of a cell's corners holds leads the interpolation, which the
    labels do not let win): trilinear inside the source grid; within one voxel outside it the inside
    corners' weighted mean (the labels' zero-padded interpolation, renormalised: same argmax, sum
    1); background (1, 0, ...) further out, where the labels are background. Target coordinates
    are made a slab of ``slab_voxels`` at a time in float32 (never a full-volume coordinate array).
    """
    device = probabilities.device
    probabilities = probabilities.float()
    for axis in range(1, 4):  # as labels_on_grid does for a grid one voxel thick
        if probabilities.shape[axis] == 1:
            probabilities = torch.cat([probabilities, probabilities], dim=axis)
    n_classes = probabilities.shape[0]
    out = np.zeros((n_classes, *target_shape), dtype=np.float16)
    target_to_source = np.linalg.inv(source_affine) @ target_affine
    matrix = torch.as_tensor(target_to_source, dtype=torch.float32, device=device)
    nx, ny, nz = (int(n) for n in target_shape)
    if min(nx, ny, nz) <= 0:
        return out
    permutation = _axis_permutation(target_to_source)
    if permutation is not None:
        return _separable_probabilities(probabilities, matrix=matrix, permutation=permutation, out=out)
    ii = torch.arange(nx, dtype=torch.float32, device=device)[:, None]
    jj = torch.arange(ny, dtype=torch.float32, device=device)[None, :]
    size = torch.tensor(probabilities.shape[1:], dtype=torch.float32, device=device)
    k_step = max(1, slab_voxels // max(1, nx * ny))
    for k0 in range(0, nz, k_step):
        kk = torch.arange(k0, min(nz, k0 + k_step), dtype=torch.float32, device=device)[None, None, :]
        pos = torch.stack([matrix[a, 0] * ii[..., None] + matrix[a, 1] * jj[..., None] + matrix[a, 2] * kk
                           + matrix[a, 3] for a in range(3)], dim=-1)  # (nx, ny, nk, 3) source indices
        norm = pos * (2.0 / (size - 1).clamp(min=1)) - 1  # align_corners=True, as _interpolate_argmax
        grid = norm[..., [2, 1, 0]][None]  # grid_sample wants (W, H, D) = (Z, Y, X) coordinates
        sampled = torch.nn.functional.grid_sample(probabilities[None], grid, mode="bilinear",
                                                  padding_mode="zeros", align_corners=True)[0]
        near = ((pos > -1) & (pos < size)).all(dim=-1)[None]  # labels_on_grid's "near" rule
        total = sampled.sum(dim=0, keepdim=True) * near
        # within one voxel outside the grid only the inside corners weigh: their weighted mean
        # (the same argmax as the labels'); further out, background
        sampled = torch.where(total > 0, sampled / total.clamp(min=1e-12), torch.zeros_like(sampled))
        sampled[0] += (total[0] <= 0).float()
        out[:, :, :, k0:k0 + kk.shape[-1]] = sampled.cpu().numpy().astype(np.float16)
    return out


def _separable_probabilities(probabilities: torch.Tensor, *, matrix: torch.Tensor, permutation: list[int],
                              out: np.ndarray, rows: int = 16) -> np.ndarray:
    """:func:`probabilities_on_grid` for axis-aligned grids (``permutation``: the source axis each
    target axis moves along): trilinear interpolation with zero padding is the product of three 1D
    linear interpolations, done one axis after the other: two gathers along the first two axes, a
    product with the (source, target) interpolation matrix along the last (a gather there is slower
    than the matrix product), ``rows`` target planes at a time. A 512x512x600 CT: 95 s with
    grid_sample, about 18 s so (CPU here). Equal to the grid_sample path within float32 rounding.
    ``out``: (C, X, Y, Z) float16, filled and returned."""
    device = probabilities.device
    source = probabilities.permute(0, *(1 + a for a in permutation))  # source axes in target axis order
    taps, near = [], []
    for b, a in enumerate(permutation):
        n_src = source.shape[1 + b]
        pos = matrix[a, b] * torch.arange(out.shape[1 + b], dtype=torch.float32, device=device) + matrix[a, 3]
        i0 = pos.floor()
        w1 = pos - i0
        i0 = i0.long()
        # zero padding: a corner outside the source grid weighs nothing
        w0 = torch.where((i0 >= 0) & (i0 < n_src), 1.0 - w1, torch.zeros_like(w1))
        w1 = torch.where((i0 + 1 >= 0) & (i0 + 1 < n_src), w1, torch.zeros_like(w1))
        taps.append((i0.clamp(0, n_src - 1), (i0 + 1).clamp(0, n_src - 1), w0, w1))
        near.append((pos > -1) & (pos < n_src))

    def along(volume: torch.Tensor, axis: int, tap) -> torch.Tensor:
        lo, hi, w0, w1 = tap
        shape = [1] * volume.dim()
        shape[axis] = -1
        result = volume.index_select(axis, lo).mul_(w0.reshape(shape))
        return result.add_(volume.index_select(axis, hi).mul_(w1.reshape(shape)))

    lo, hi, w0, w1 = taps[2]
    columns = torch.arange(out.shape[3], device=device)
    last = torch.zeros(source.shape[3], out.shape[3], device=device)  # (Sz, Z): two weights a column
    last.index_put_((lo, columns), w0, accumulate=True)
    last.index_put_((hi, columns), w1, accumulate=True)
    first = along(source, 1, taps[0])  # (C, X, Sy, Sz): small against the output
    target = torch.from_numpy(out)
    for x0 in range(0, out.shape[1], rows):
        x1 = min(out.shape[1], x0 + rows)
        sampled = along(first[:, x0:x1], 2, taps[1]) @ last  # (C, rows, Y, Z)
        # renormalised where any corner is inside (the labels' rule); beyond, where every corner is
        # outside and all classes read 0, background
        total = sampled.sum(dim=0, keepdim=True)
        total *= near[0][x0:x1, None, None] & near[1][None, :, None] & near[2][None, None, :]
        sampled.mul_(torch.where(total > 0, 1.0 / total.clamp(min=1e-12), torch.zeros_like(total)))
        sampled[0] += (total[0] <= 0).float()
        target[:, x0:x1].copy_(sampled.cpu())
    return out


class VolumeLookup:
    """Values of one (X', Y', Z') network-grid volume at world points, by nearest voxel.

    Used for a lesion's confidence: the mean lesion probability over its voxels
    (:func:`spinelesion.measure.lesions.find_lesions` calls it with those voxels' positions).
    Points outside the grid read 0.
    """

    def __init__(self, volume: np.ndarray, *, affine: np.ndarray) -> None:
        self.volume = volume
        self.world_to_voxel = np.linalg.inv(np.asarray(affine, dtype=np.float64))

    def __call__(self, points_mm: np.ndarray) -> np.ndarray:
        """(N,) float32 values at (N, 3) RAS+ points in mm."""
        points = np.asarray(points_mm, dtype=np.float64)
        ijk = np.rint(points @ self.world_to_voxel[:3, :3].T + self.world_to_voxel[:3, 3]).astype(np.int64)
        inside = np.all((ijk >= 0) & (ijk < np.array(self.volume.shape)), axis=1)
        out = np.zeros(len(points), np.float32)
        i, j, k = ijk[inside].T
        out[inside] = self.volume[i, j, k]
        return out
