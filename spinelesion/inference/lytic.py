"""CT: lytic foci inside vertebral bodies that the network left as marrow become lesion.

A lytic metastasis replaces trabecular bone by soft tissue: on CT it reads at soft-tissue density
(about 20-60 HU) inside marrow of 150-300 HU, the record's own definition of a lytic voxel being
100 HU or more under the marrow (:class:`~spinelesion.measure.settings.MeasureSettings`). The default
network misses most lytic lesions that fill much of a body (its training varies healthy marrow from
body to body, so a darker body reads as healthy marrow; spinelesion/models/MODEL_CARD.md), and gives
them no lesion probability at all, so no threshold on its output finds them. Density does.
"""

from __future__ import annotations

import numpy as np
import torch

from spinelesion import labels as L
from spinelesion.measure.settings import MeasureSettings

_MEASURE = MeasureSettings()

#: Densest HU counted as marrow: adult trabecular bone reads 100-400 HU; cortex, sclerosis, blastic
#: lesions and metal read more, and a network that labels them "body" would otherwise raise the marrow
#: a lytic focus is judged against until healthy marrow read lytic (a case with screws and blastic
#: lesions among the context phantoms: docs/benchmarks.md).
MARROW_MAX_HU = 500.0


def add_lytic_foci(probabilities: torch.Tensor, *, classes: torch.Tensor, affine: np.ndarray, hu_at,
                   min_core_mm3: float = 250.0, depth_mm: float = 3.0, min_hu: float = 0.0,
                   lytic_hu_below_marrow: float = _MEASURE.lytic_hu_below_marrow,
                   marrow_reach_mm: float = 30.0) -> tuple[torch.Tensor, int]:
    """Vertebral-body voxels of a lytic focus become lesion.

    Only the inside of the bodies is searched: voxels deeper than ``depth_mm`` in the body (lesion
    counted as body), away from the partial volume of cortex, disc, canal and fat round the body.
    There a voxel is lytic when its HU (the mean over its network voxel) lies ``lytic_hu_below_marrow``
    under the column's marrow (the median of those inner voxels under :data:`MARROW_MAX_HU`). A
    26-connected lytic core is a lesion when

    * it holds at least ``min_core_mm3`` (250 mm³: a ball of 7.8 mm across; the small dark channels
      of healthy bodies, basivertebral veins, stay),
    * its median HU lies ``lytic_hu_below_marrow`` under the marrow round it (the inner body voxels
      under :data:`MARROW_MAX_HU` outside any core within ``marrow_reach_mm`` of its box: the
      neighbouring bodies when it fills its own), and
    * its median HU is at least ``min_hu``: a focus of fat density is a haemangioma or focal fat,
      benign (a lytic metastasis is soft tissue).

    A core found grows through the lytic body voxels joined to it (up to ``depth_mm``, to the body's
    edge). Voxels found are set to lesion with probability 1, as the other anatomy rules do; the
    network's lesions, canal, discs and posterior elements are never changed.

    Args:
        probabilities: (C, X, Y, Z) softmax output on the RAS network grid; changed in place.
        classes: (X, Y, Z) uint8 ``class_argmax(probabilities)``; kept equal to the arg-max, in place.
        affine: (4, 4) voxel -> RAS+ mm of the network grid.
        hu_at: callable, (N, 3) RAS+ mm points -> (N,) HU of the scan (nearest voxel).

    Returns:
        (``probabilities``, number of voxels made lesion).
    """
    import cc3d
    from scipy import ndimage

    from spinelesion.measure.geometry import crop_box

    affine = np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    labels = classes.cpu().numpy()
    box = crop_box(labels == L.VERTEBRAL_BODY, margin=1)
    if box is None:
        return probabilities, 0
    local = labels[box]
    body = local == L.VERTEBRAL_BODY
    # deeper than depth_mm: no other tissue within a ball of that radius (an erosion, a tenth of a
    # distance transform's time on the bodies of a 512x512x600 CT)
    deep = ndimage.binary_erosion(body | (local == L.LESION), structure=_ball(depth_mm, spacing), border_value=0)
    origin = np.array([b.start for b in box])
    hu = np.full(local.shape, np.nan, np.float32)
    hu[body] = _voxel_mean_hu(hu_at, np.argwhere(body) + origin, affine=affine)
    inner = body & deep
    marrow_like = inner & (hu < MARROW_MAX_HU)
    if np.count_nonzero(marrow_like) < 100:
        return probabilities, 0
    marrow = float(np.median(hu[marrow_like]))
    lytic = body & (hu < marrow - lytic_hu_below_marrow)  # NaN compares false
    cores, n = cc3d.connected_components(inner & lytic, connectivity=26, return_N=True)
    if n == 0:
        return probabilities, 0
    voxel_mm3 = float(np.prod(spacing))
    sizes = np.bincount(cores.ravel(), minlength=n + 1)
    reach = np.ceil(marrow_reach_mm / spacing).astype(int)
    quiet = marrow_like & (cores == 0)
    found = np.zeros_like(body)
    for k, sl in enumerate(cc3d.statistics(cores)["bounding_boxes"]):
        if k == 0 or sizes[k] * voxel_mm3 < min_core_mm3:
            continue
        own = cores[sl] == k
        median = float(np.median(hu[sl][own]))
        near = tuple(slice(max(0, s.start - r), min(m, s.stop + r)) for s, r, m in zip(sl, reach, local.shape))
        around = hu[near][quiet[near]]
        if median < min_hu or around.size < 100 or median >= float(np.median(around)) - lytic_hu_below_marrow:
            continue
        found[sl] |= own
    if not found.any():
        return probabilities, 0
    steps = max(1, int(np.ceil(depth_mm / float(spacing.min()))))
    found = ndimage.binary_dilation(found, iterations=steps, mask=lytic | found)
    n_found = int(np.count_nonzero(found))
    probs, cls = probabilities[(slice(None),) + box], classes[box]  # views: filled in place
    where = torch.as_tensor(found, device=probabilities.device)
    probs.masked_fill_(where, 0.0)
    probs[L.LESION].masked_fill_(where, 1.0)
    cls.masked_fill_(where, L.LESION)
    return probabilities, n_found


def _voxel_mean_hu(hu_at, ijk: np.ndarray, *, affine: np.ndarray) -> np.ndarray:
    """(N,) mean HU over each network voxel of (N, 3) indices: the scan read at 8 points a quarter voxel
    from its centre along each axis (a 1.5 mm voxel holds several voxels of a thin-slice CT; one
    nearest-voxel read would carry their noise)."""
    centres = ijk @ affine[:3, :3].T + affine[:3, 3]
    offsets = np.array([[x, y, z] for x in (-0.25, 0.25) for y in (-0.25, 0.25) for z in (-0.25, 0.25)])
    total = np.zeros(len(ijk), np.float64)
    for offset in offsets @ affine[:3, :3].T:
        total += hu_at(centres + offset)
    return (total / len(offsets)).astype(np.float32)


def _ball(radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Bool structuring element: the voxel offsets within ``radius_mm`` on a grid of ``spacing`` (3,) mm."""
    reach = np.maximum(np.floor(radius_mm / spacing).astype(int), 1)
    offsets = np.stack(np.meshgrid(*(np.arange(-r, r + 1) for r in reach), indexing="ij"), axis=-1) * spacing
    return np.linalg.norm(offsets, axis=-1) <= radius_mm
