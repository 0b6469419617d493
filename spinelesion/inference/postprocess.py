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
    near = within_mm(largest, around=largest, spacing_mm=spacing_mm, distance_mm=margin_mm)
    keep_ids = np.unique(components[near & foreground])
    remove = foreground & ~np.isin(components, keep_ids)
    if not remove.any():
        return probabilities
    cleaned = probabilities.clone()
    mask = torch.as_tensor(remove, device=probabilities.device)
    cleaned[:, mask] = 0.0
    cleaned[0, mask] = 1.0
    return cleaned


def within_mm(mask: np.ndarray, *, around: np.ndarray, spacing_mm, distance_mm: float) -> np.ndarray:
    """Bool (X, Y, Z): voxels within ``distance_mm`` of ``mask``, computed only in the box of
    ``around`` grown by the distance (outside it the answer is not needed; False there)."""
    from scipy.ndimage import distance_transform_edt

    near = np.zeros(mask.shape, bool)
    if not mask.any() or not around.any():
        return near
    spacing = np.array([float(s) for s in spacing_mm])
    grow = np.ceil(distance_mm / spacing).astype(int) + 1
    idx = np.argwhere(around)
    lo = np.maximum(idx.min(axis=0) - grow, 0)
    hi = np.minimum(idx.max(axis=0) + grow + 1, mask.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    near[box] = distance_transform_edt(~mask[box], sampling=spacing) <= distance_mm
    return near


#: Label values a lesion must lie in or touch: vertebral bone, cord and thecal sac (epidural tumour).
_SPINE_CLASSES = (1, 2, 4, 5)
_BONE_CLASSES = (1, 2)


def keep_spinal_lesions(probabilities: torch.Tensor, *, spacing_mm, min_lesion_mm3: float = 65.0,
                        lesion_probability: float = 0.5, touch_mm: float = 2.0,
                        touch_canal: bool = True) -> tuple[torch.Tensor, dict]:
    """Drop lesion components that a spine lesion cannot be (anatomy-aware clean-up).

    A lesion component (26-connected voxels whose most likely class is "lesion") is kept only when
    all three hold:

    * it lies in or within ``touch_mm`` of spinal bone (vertebral body, posterior elements) or,
      with ``touch_canal``, of the canal contents (cord, thecal sac: epidural tumour); a "lesion"
      in the liver, a rib or the bowel is not a spine lesion. Without ``touch_canal`` an epidural
      mass must reach bone too (as one from a vertebral metastasis does);
    * its volume is at least ``min_lesion_mm3`` (65 mm³ is a sphere of 5 mm diameter);
    * its highest lesion probability reaches ``lesion_probability``.

    Dropped voxels lose their lesion probability, so they take their next most likely class
    (marrow of a body stays body). Both thresholds are stored in the checkpoint (``postprocess``)
    and chosen on validation data (see the model card).

    Args:
        probabilities: (C, X, Y, Z) softmax output on the network grid.
        spacing_mm: (3,) voxel size of that grid.

    Returns:
        ((C, X, Y, Z) probabilities (a new tensor when anything was dropped), counts of kept and
        dropped components by reason).
    """
    import cc3d

    from spinelesion.inference.resample import class_argmax

    counts = {"kept": 0, "outside_spine": 0, "too_small": 0, "low_probability": 0}
    labels = class_argmax(probabilities).cpu().numpy()
    lesion = labels == 3
    if not lesion.any():
        return probabilities, counts
    voxel_mm3 = float(np.prod([float(s) for s in spacing_mm]))
    components, n = cc3d.connected_components(lesion.astype(np.uint8), connectivity=26, return_N=True)
    anchors = _SPINE_CLASSES if touch_canal else _BONE_CLASSES
    near = within_mm(np.isin(labels, anchors), around=lesion, spacing_mm=spacing_mm, distance_mm=touch_mm)
    p_lesion = probabilities[3].float().cpu().numpy()
    stats = cc3d.statistics(components)
    drop = np.zeros(n + 1, bool)
    touching = np.zeros(n + 1, bool)
    touching[np.unique(components[near & lesion])] = True
    peak = np.zeros(n + 1, np.float32)
    np.maximum.at(peak, components[lesion], p_lesion[lesion])
    for c in range(1, n + 1):
        if not touching[c]:
            counts["outside_spine"] += 1
        elif stats["voxel_counts"][c] * voxel_mm3 < min_lesion_mm3:
            counts["too_small"] += 1
        elif peak[c] < lesion_probability:
            counts["low_probability"] += 1
        else:
            counts["kept"] += 1
            continue
        drop[c] = True
    if not drop.any():
        return probabilities, counts
    mask = torch.as_tensor(drop[components], device=probabilities.device)
    cleaned = probabilities.clone()
    cleaned[3, mask] = 0.0
    return cleaned, counts
