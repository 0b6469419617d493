"""MR: lesions the network left as marrow, found on T1-weighted scans by the disc sign.

On a T1-weighted scan adult marrow is mostly fat and reads well above the intervertebral disc; tumour
that replaces it reads at or under the disc. Carroll et al. (J Magn Reson Imaging 1997;7:394-8): of 41
marrow foci iso- or hypointense to a non-degenerated disc on T1, 40 were infiltrative (biopsy or
follow-up), and all 12 hyperintense to it were normal red marrow. The default network misses most
lesions that fill much of a body, on MR as on CT (spinelesion/models/MODEL_CARD.md), and gives them no
lesion probability; and where it calls healthy marrow lesion, that "lesion" reads as bright as the marrow
around it. The disc, which every spine scan shows, gives the scale that MR lacks, both ways:
:func:`t1_disc_sign`. Other weightings (T2, STIR, T2*) have no such reference (a T2 lesion can be brighter
or darker than marrow) and are left to the network.
"""

from __future__ import annotations

import numpy as np
import torch

from spinelesion import labels as L
from spinelesion.inference.ct_density import ball, voxel_mean

#: The disc sign is read only where the column's inner marrow is at least this many times the disc's
#: signal: fatty marrow on a T1-weighted scan. Red marrow, diffuse infiltration, fat suppression and
#: other weightings bring the marrow near or under the disc, and then marrow texture alone crosses it
#: (a T1 phantom with marrow 1.2 times its disc had 9 false cores: docs/benchmarks.md).
MIN_MARROW_OVER_DISC = 1.5

#: A core this many times longer than wide (standard deviations along its first two principal axes) is
#: a straight tube: a pedicle screw's signal void, not a metastasis (metal is dark on every weighting).
MAX_ELONGATION = 3.0

#: Fewest voxels of a class whose median signal is taken as a reference.
MIN_REFERENCE_VOXELS = 50


def t1_disc_sign(probabilities: torch.Tensor, *, classes: torch.Tensor, affine: np.ndarray, signal_at,
                 min_core_mm3: float | None = 250.0, min_dark_share: float | None = 0.1,
                 depth_mm: float = 3.0) -> tuple[torch.Tensor, int, int]:
    """On a T1-weighted scan, lesion where the marrow reads at or under the discs, not where it reads above.

    The scan is judged T1-weighted with fatty marrow from its own labels, on the network grid: the thecal
    sac's median signal under the discs' (CSF is dark on T1 and the brightest tissue of the canal on T2,
    STIR and T2*) and the bodies' inner median at least :data:`MIN_MARROW_OVER_DISC` times the discs'.
    Otherwise nothing changes. Signals are means over each network voxel.

    Bright "lesions" (``min_dark_share`` not None): a lesion component of the network (26-connected) of
    which under ``min_dark_share`` of the voxels reach the discs' median is marrow hyperintense to disc,
    normal by the sign: its voxels lose their lesion probability and take their next most likely class.

    Dark foci (``min_core_mm3`` not None): inner body voxels (deeper than ``depth_mm`` in the body, lesion
    counted as body: away from the partial volume of cortex, disc and epidural fat) at or under the discs'
    median form 26-connected cores. A core becomes lesion when it holds at least ``min_core_mm3`` (the small
    dark channels of healthy bodies, basivertebral veins, stay) and is no straight tube (elongation under
    :data:`MAX_ELONGATION`: a screw's void). It then grows through the body voxels at or under the disc
    signal joined to it, up to ``depth_mm`` (to the body's edge), and is set to lesion with probability 1, as
    the other anatomy rules do; canal, discs and posterior elements are never changed.

    Args:
        probabilities: (C, X, Y, Z) softmax output on the RAS network grid; changed in place.
        classes: (X, Y, Z) uint8 ``class_argmax(probabilities)``; kept equal to the arg-max, in place.
        affine: (4, 4) voxel -> RAS+ mm of the network grid.
        signal_at: callable, (N, 3) RAS+ mm points -> (N,) signal of the scan (nearest voxel).

    Returns:
        (``probabilities``, number of voxels made lesion, number of voxels that lost it).
    """
    from scipy import ndimage

    from spinelesion.measure.geometry import crop_box

    affine = np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    labels = classes.cpu().numpy()
    box = crop_box(np.isin(labels, (L.VERTEBRAL_BODY, L.LESION, L.DISC, L.THECAL_SAC)), margin=1)
    if box is None:
        return probabilities, 0, 0
    local = labels[box]
    origin = np.array([b.start for b in box])

    def median_signal(mask: np.ndarray) -> float | None:
        if np.count_nonzero(mask) < MIN_REFERENCE_VOXELS:
            return None
        return float(np.median(voxel_mean(signal_at, np.argwhere(mask) + origin, affine=affine)))

    disc, csf = median_signal(local == L.DISC), median_signal(local == L.THECAL_SAC)
    if disc is None or csf is None or not csf < disc:
        return probabilities, 0, 0
    body = local == L.VERTEBRAL_BODY
    bone = body | (local == L.LESION)
    inner = body & ndimage.binary_erosion(bone, structure=ball(depth_mm, spacing), border_value=0)
    if np.count_nonzero(inner) < MIN_REFERENCE_VOXELS:
        return probabilities, 0, 0
    # read once for every body and lesion voxel: the lesions dropped below become body and are judged again
    signal = np.full(local.shape, np.nan, np.float32)
    signal[bone] = voxel_mean(signal_at, np.argwhere(bone) + origin, affine=affine)
    if not np.median(signal[inner]) >= MIN_MARROW_OVER_DISC * disc:
        return probabilities, 0, 0
    dropped = 0
    if min_dark_share is not None:
        dropped = _drop_bright_lesions(probabilities, classes=classes, box=box, local=local, disc=disc,
                                       dark_share=min_dark_share, signal=signal)
        if dropped:  # the dropped voxels' new classes (mostly body) are judged below
            local = classes[box].cpu().numpy()
            body = local == L.VERTEBRAL_BODY
            inner = body & ndimage.binary_erosion(body | (local == L.LESION), structure=ball(depth_mm, spacing),
                                                  border_value=0)
    added = 0
    if min_core_mm3 is not None:
        added = _add_dark_cores(probabilities, classes=classes, box=box, body=body, inner=inner, disc=disc,
                                signal=signal, min_voxels=min_core_mm3 / float(np.prod(spacing)),
                                spacing=spacing, depth_mm=depth_mm)
    return probabilities, added, dropped


def _drop_bright_lesions(probabilities: torch.Tensor, *, classes: torch.Tensor, box: tuple, local: np.ndarray,
                         disc: float, dark_share: float, signal: np.ndarray) -> int:
    """Lesion components of ``local`` with under ``dark_share`` of their voxels' ``signal`` at or under ``disc``
    lose their lesion probability (in place); returns the number of voxels dropped."""
    import cc3d

    from spinelesion.inference.resample import class_argmax

    components, n = cc3d.connected_components(local == L.LESION, connectivity=26, return_N=True)
    if n == 0:
        return 0
    ids = components[components > 0]
    dark = signal[components > 0] <= disc
    share = np.bincount(ids, weights=dark, minlength=n + 1)[1:] / np.bincount(ids, minlength=n + 1)[1:]
    bright = np.flatnonzero(share < dark_share) + 1
    if bright.size == 0:
        return 0
    mask = torch.as_tensor(np.isin(components, bright), device=probabilities.device)
    probs, cls = probabilities[(slice(None),) + box], classes[box]  # views: changed in place
    probs[L.LESION].masked_fill_(mask, 0.0)
    cls[mask] = class_argmax(probs[:, mask])
    return int(mask.sum())


def _add_dark_cores(probabilities: torch.Tensor, *, classes: torch.Tensor, box: tuple, body: np.ndarray,
                    inner: np.ndarray, disc: float, signal: np.ndarray, min_voxels: float, spacing: np.ndarray,
                    depth_mm: float) -> int:
    """The dark-focus half of :func:`t1_disc_sign` (in place; ``signal`` read at every ``body`` voxel); returns
    the number of voxels made lesion."""
    import cc3d
    from scipy import ndimage

    from spinelesion.inference.refine import assign_class

    dark = body & (signal <= disc)
    cores, n = cc3d.connected_components(inner & dark, connectivity=26, return_N=True)
    if n == 0:
        return 0
    sizes = np.bincount(cores.ravel(), minlength=n + 1)
    found = np.zeros_like(body)
    for k, sl in enumerate(cc3d.statistics(cores)["bounding_boxes"]):
        if k == 0 or sizes[k] < min_voxels:
            continue
        own = cores[sl] == k
        if _elongation(np.argwhere(own) * spacing) >= MAX_ELONGATION:
            continue
        found[sl] |= own
    if not found.any():
        return 0
    steps = max(1, int(np.ceil(depth_mm / float(spacing.min()))))
    found = ndimage.binary_dilation(found, iterations=steps, mask=dark | found)
    assign_class(probabilities, classes=classes, box=box, mask=found, label=L.LESION)
    return int(np.count_nonzero(found))


def _elongation(points_mm: np.ndarray) -> float:
    """Ratio of the spread of (N, 3) points along their first principal axis to the second's."""
    spread = np.sqrt(np.clip(np.linalg.eigvalsh(np.cov(points_mm.T)), 0.0, None))  # ascending
    return float(spread[2] / max(spread[1], 1e-6))
