"""Clean-up of network output on the network grid, before it is mapped back to the input grid."""

from __future__ import annotations

import numpy as np
import torch


def keep_spine_structure(probabilities: torch.Tensor, *, spacing_mm, margin_mm: float = 10.0) -> torch.Tensor:
    """Drop foreground far from the spinal column (the usual "largest component" clean-up).

    The column (vertebrae, discs, canal contents, lesions) forms one large connected structure;
    network false positives elsewhere (bowel, other bones) form separate islands. Foreground
    components (26-connected, any non-background class) are kept when they lie within
    ``margin_mm`` of the largest one, so detached spinous processes and lesions beside the
    column survive; everything else becomes background (probability 1 for class 0).

    Args:
        probabilities: (C, X, Y, Z) softmax output on the network grid.
        spacing_mm: (3,) voxel size of that grid.

    Returns:
        (C, X, Y, Z) probabilities with far islands set to background (a new tensor).
    """
    import cc3d
    from scipy.ndimage import distance_transform_edt

    from spinelesion.inference.resample import class_argmax

    foreground = (class_argmax(probabilities) > 0).cpu().numpy()
    if not foreground.any():
        return probabilities
    components, n = cc3d.connected_components(foreground.astype(np.uint8), connectivity=26, return_N=True)
    if n <= 1:
        return probabilities
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    largest = components == int(sizes.argmax())
    # distances only inside the largest component's box grown by the margin: a voxel outside it
    # lies farther than the margin along one axis already (same result, a fraction of the work)
    spacing = np.array([float(s) for s in spacing_mm])
    grow = np.ceil(margin_mm / spacing).astype(int) + 1
    nonzero = np.argwhere(largest)
    lo = np.maximum(nonzero.min(axis=0) - grow, 0)
    hi = np.minimum(nonzero.max(axis=0) + grow + 1, largest.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    near = np.zeros(largest.shape, bool)
    near[box] = distance_transform_edt(~largest[box], sampling=spacing) <= margin_mm
    keep_ids = np.unique(components[near & foreground])
    remove = foreground & ~np.isin(components, keep_ids)
    if not remove.any():
        return probabilities
    cleaned = probabilities.clone()
    mask = torch.as_tensor(remove, device=probabilities.device)
    cleaned[:, mask] = 0.0
    cleaned[0, mask] = 1.0
    return cleaned
