"""CT: lesions the network left as marrow, found by their density inside the vertebral bodies.

A lytic metastasis replaces trabecular bone by soft tissue: on CT it reads at soft-tissue density
(about 20-60 HU) inside marrow of 150-300 HU, the record's own definition of a lytic voxel being
100 HU or more under the marrow (:class:`~spinelesion.measure.settings.MeasureSettings`); a blastic one
fills the marrow with new bone, 150 HU or more over it, and when it fills a whole body the body reads
far denser than its neighbours (an "ivory vertebra"). The default network misses most lesions that fill
much of a body (its training varies healthy marrow from body to body, so a body unlike its neighbours
reads as healthy marrow; spinelesion/models/MODEL_CARD.md), and gives them no lesion probability at all,
so no threshold on its output finds them. Density does: :func:`add_density_lesions`.
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

#: Fat: voxels under this HU (fat reads -150 to -50; -20 leaves room for the partial volume of trabeculae)
#: are fat, and a lytic core with :data:`FAT_MIN_SHARE` of them holds fat: a haemangioma or focal fat, benign.
FAT_MAX_HU = -20.0
FAT_MIN_SHARE = 0.1

#: A body is compared with its neighbours when at least this much of it lies deeper than the depth.
MIN_BODY_INNER_MM3 = 1000.0

#: Least HU read as metal (screws, cement with contrast): a body holding any is not judged sclerotic.
METAL_MIN_HU = 2000.0


def add_density_lesions(probabilities: torch.Tensor, *, classes: torch.Tensor, affine: np.ndarray, hu_at,
                        min_core_mm3: float | None = 250.0, sclerotic_bodies: bool = True, depth_mm: float = 3.0,
                        min_hu: float = 0.0, lytic_hu_below_marrow: float = _MEASURE.lytic_hu_below_marrow,
                        blastic_hu_above_marrow: float = _MEASURE.blastic_hu_above_marrow,
                        marrow_reach_mm: float = 30.0) -> tuple[torch.Tensor, int]:
    """Vertebral-body voxels of a lytic focus or of a sclerotic body become lesion.

    Only the inside of the bodies is judged: voxels deeper than ``depth_mm`` in the body (lesion
    counted as body), away from the partial volume of cortex, disc, canal and fat round the body, their
    HU the mean over each network voxel. The column's marrow is the median of those inner voxels under
    :data:`MARROW_MAX_HU`.

    Lytic foci (``min_core_mm3`` not None): an inner voxel is lytic when it lies ``lytic_hu_below_marrow``
    under the column's marrow. A 26-connected lytic core is a lesion when

    * it holds at least ``min_core_mm3`` (250 mm³: a ball of 7.8 mm across; the small dark channels
      of healthy bodies, basivertebral veins, stay),
    * its median HU lies ``lytic_hu_below_marrow`` under the marrow round it (the inner body voxels
      under :data:`MARROW_MAX_HU` outside any core within ``marrow_reach_mm`` of its box: the
      neighbouring bodies when it fills its own), and
    * its median HU is at least ``min_hu`` and under :data:`FAT_MIN_SHARE` of its voxels read as fat
      (under :data:`FAT_MAX_HU`): a focus holding fat is a haemangioma or focal fat, benign (a lytic
      metastasis is soft tissue).

    Sclerotic bodies (``sclerotic_bodies``): with three or more bodies (6-connected pieces of body with at
    least :data:`MIN_BODY_INNER_MM3` inside) to compare, a body whose inner median lies
    ``blastic_hu_above_marrow`` over the median of the bodies' medians is sclerotic (healthy bodies of one
    column sit within tens of HU of each other; bone islands and endplate sclerosis are too small to move
    a body's median), unless metal (over :data:`METAL_MIN_HU`) is inside it: its inner voxels that much
    over the column's median are lesion.

    What is found grows through the lytic (or dense) body voxels joined to it, up to ``depth_mm`` (to the
    body's edge). Voxels found are set to lesion with probability 1, as the other anatomy rules do; the
    network's lesions, canal, discs and posterior elements are never changed.

    Args:
        probabilities: (C, X, Y, Z) softmax output on the RAS network grid; changed in place.
        classes: (X, Y, Z) uint8 ``class_argmax(probabilities)``; kept equal to the arg-max, in place.
        affine: (4, 4) voxel -> RAS+ mm of the network grid.
        hu_at: callable, (N, 3) RAS+ mm points -> (N,) HU of the scan (nearest voxel).

    Returns:
        (``probabilities``, number of voxels made lesion).
    """
    from scipy import ndimage

    from spinelesion.inference.refine import assign_class
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
    deep = ndimage.binary_erosion(body | (local == L.LESION), structure=ball(depth_mm, spacing), border_value=0)
    origin = np.array([b.start for b in box])
    hu = np.full(local.shape, np.nan, np.float32)
    hu[body] = voxel_mean(hu_at, np.argwhere(body) + origin, affine=affine)
    inner = body & deep
    marrow_like = inner & (hu < MARROW_MAX_HU)
    if np.count_nonzero(marrow_like) < 100:
        return probabilities, 0
    marrow = float(np.median(hu[marrow_like]))
    found = np.zeros_like(body)
    grow_through = np.zeros_like(body)
    voxel_mm3 = float(np.prod(spacing))
    if min_core_mm3 is not None:
        lytic = body & (hu < marrow - lytic_hu_below_marrow)  # NaN compares false
        reach_vox = np.ceil(marrow_reach_mm / spacing).astype(int)
        found |= _lytic_cores(hu, inner=inner, lytic=lytic, marrow_like=marrow_like,
                              min_voxels=min_core_mm3 / voxel_mm3, reach_vox=reach_vox, min_hu=min_hu,
                              below=lytic_hu_below_marrow)
        grow_through |= lytic
    if sclerotic_bodies:
        sclerotic, level = _sclerotic_bodies(hu, body=body, inner=inner, min_voxels=MIN_BODY_INNER_MM3 / voxel_mm3,
                                             above=blastic_hu_above_marrow)
        if sclerotic.any():
            dense = sclerotic & (hu > level)
            found |= dense & inner
            grow_through |= dense
    if not found.any():
        return probabilities, 0
    steps = max(1, int(np.ceil(depth_mm / float(spacing.min()))))
    found = ndimage.binary_dilation(found, iterations=steps, mask=grow_through | found)
    assign_class(probabilities, classes=classes, box=box, mask=found, label=L.LESION)
    return probabilities, int(np.count_nonzero(found))


def _lytic_cores(hu: np.ndarray, *, inner: np.ndarray, lytic: np.ndarray, marrow_like: np.ndarray, min_voxels: float,
                 reach_vox: np.ndarray, min_hu: float, below: float) -> np.ndarray:
    """(X, Y, Z) bool: the lytic cores of :func:`add_density_lesions` that pass its conditions."""
    import cc3d

    cores, n = cc3d.connected_components(inner & lytic, connectivity=26, return_N=True)
    found = np.zeros_like(inner)
    if n == 0:
        return found
    sizes = np.bincount(cores.ravel(), minlength=n + 1)
    quiet = marrow_like & (cores == 0)
    for k, sl in enumerate(cc3d.statistics(cores)["bounding_boxes"]):
        if k == 0 or sizes[k] < min_voxels:
            continue
        own = cores[sl] == k
        values = hu[sl][own]
        median = float(np.median(values))
        if median < min_hu or np.mean(values < FAT_MAX_HU) >= FAT_MIN_SHARE:
            continue
        near = tuple(slice(max(0, s.start - r), min(m, s.stop + r)) for s, r, m in zip(sl, reach_vox, hu.shape))
        around = hu[near][quiet[near]]
        if around.size < 100 or median >= float(np.median(around)) - below:
            continue
        found[sl] |= own
    return found


def _sclerotic_bodies(hu: np.ndarray, *, body: np.ndarray, inner: np.ndarray, min_voxels: float,
                      above: float) -> tuple[np.ndarray, float]:
    """((X, Y, Z) bool voxels of the sclerotic bodies of :func:`add_density_lesions`, the HU over which
    their voxels are dense: the bodies' median plus ``above``)."""
    import cc3d
    from scipy import ndimage

    pieces, n = cc3d.connected_components(body, connectivity=6, return_N=True)
    ids, values = pieces[inner], hu[inner]  # the inner voxels alone: a fraction of the box
    judged = np.flatnonzero(np.bincount(ids, minlength=n + 1)[1:] >= min_voxels) + 1
    if len(judged) < 3:
        return np.zeros_like(body), float("inf")
    medians = np.asarray(ndimage.median(values, labels=ids, index=judged))
    peaks = np.asarray(ndimage.maximum(values, labels=ids, index=judged))
    level = float(np.median(medians)) + above
    dense = judged[(medians > level) & (peaks <= METAL_MIN_HU)]
    return np.isin(pieces, dense), level


def voxel_mean(value_at, ijk: np.ndarray, *, affine: np.ndarray) -> np.ndarray:
    """(N,) mean of the scan's values (HU on CT) over each network voxel of (N, 3) indices: ``value_at`` read
    at 8 points a quarter voxel from its centre along each axis (a 1.5 mm voxel holds several voxels of a
    thin-slice scan; one nearest-voxel read would carry their noise)."""
    centres = ijk @ affine[:3, :3].T + affine[:3, 3]
    offsets = np.array([[x, y, z] for x in (-0.25, 0.25) for y in (-0.25, 0.25) for z in (-0.25, 0.25)])
    total = np.zeros(len(ijk), np.float64)
    for offset in offsets @ affine[:3, :3].T:
        total += value_at(centres + offset)
    return (total / len(offsets)).astype(np.float32)


def ball(radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Bool structuring element: the voxel offsets within ``radius_mm`` on a grid of ``spacing`` (3,) mm."""
    reach = np.maximum(np.floor(radius_mm / spacing).astype(int), 1)
    offsets = np.stack(np.meshgrid(*(np.arange(-r, r + 1) for r in reach), indexing="ij"), axis=-1) * spacing
    return np.linalg.norm(offsets, axis=-1) <= radius_mm
