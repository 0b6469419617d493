"""Refinement of the network output by anatomy, on the network grid, after the clean-up of
:mod:`spinelesion.inference.postprocess`: background inside the dural canal's outline becomes canal
(:func:`fill_canal`); on CT, posterior elements reach the bone they sit in (:func:`grow_into_bone`); on the
scan's own grid, the cord's outline follows the image (:func:`snap_cord_to_image`)."""

from __future__ import annotations

import numpy as np
import torch

from spinelesion import labels as L


def fill_canal(probabilities: torch.Tensor, *, spacing_mm, classes: torch.Tensor, join_mm: float = 5.0,
               min_canal_probability: float = 0.1) -> tuple[torch.Tensor, int]:
    """Background left inside the dural canal's outline becomes canal (cord or thecal sac).

    The thecal sac is an oval tube, convex in cross-section, and everything inside it is cord or
    CSF. Where the network labels the sac's rim but leaves part of its inside background (a cord
    as bright as the CSF around it on a T2* slab), each axial plane (the network grid is RAS: planes
    across the superior axis) takes the convex outline of its canal labels, pieces that come within
    twice ``join_mm`` of each other (each grown by ``join_mm``) counted as one outline (the two halves
    of a sac whose middle is unlabelled) and pieces farther apart each their own. A background voxel inside an outline to
    which the network gives the canal (cord + sac) at least ``min_canal_probability`` becomes the
    likelier of cord and sac, unless it finds another structure likelier still (an epidural tumour
    it missed in the notch the tumour makes in the sac stays background); background it gives the
    canal less (a ligament or disc bulging into a non-convex sac) stays background. Lesion and bone
    are never changed.

    Args:
        probabilities: (C, X, Y, Z) softmax output on the RAS network grid; changed in place.
        spacing_mm: (3,) voxel size of that grid.
        classes: (X, Y, Z) uint8 ``class_argmax(probabilities)``; kept equal to the arg-max of the
            result, in place.

    Returns:
        (``probabilities``, number of voxels given to the canal).
    """
    from spinelesion.measure.geometry import crop_box

    cord, sac = L.SPINAL_CORD, L.THECAL_SAC
    labels = classes.cpu().numpy()
    canal = (labels == cord) | (labels == sac)
    box = crop_box(canal, margin=0)
    if box is None:
        return probabilities, 0
    canal = canal[box]
    join_vox = np.maximum(np.rint(join_mm / np.asarray(spacing_mm, float)[:2]).astype(int), 0)
    inside = _convex_outlines(canal, join_vox=join_vox)
    probs, cls = probabilities[(slice(None),) + box], classes[box]  # views: filled in place
    canal_p = probs[cord] + probs[sac]
    others = [c for c in range(1, probs.shape[0]) if c not in (cord, sac)]
    likely = ((canal_p >= min_canal_probability) & (canal_p >= probs[others].amax(dim=0))).cpu().numpy()
    holes = inside & (labels[box] == 0) & likely
    n = int(np.count_nonzero(holes))
    if n == 0:
        return probabilities, 0
    where = torch.as_tensor(holes, device=probabilities.device)
    cord_wins = probs[cord] >= probs[sac]
    probs.masked_fill_(where, 0.0)  # every class of those voxels, then the winner certain
    probs[cord].masked_fill_(where & cord_wins, 1.0)
    probs[sac].masked_fill_(where & ~cord_wins, 1.0)
    cls.masked_fill_(where & cord_wins, cord)
    cls.masked_fill_(where & ~cord_wins, sac)
    return probabilities, n


def _convex_outlines(canal: np.ndarray, *, join_vox: np.ndarray) -> np.ndarray:
    """(X, Y, Z) bool: in each axial plane (fixed Z), the convex hulls (of voxel centres) of the
    plane's pieces of ``canal``, pieces that touch once each is grown by ``join_vox`` (X and Y
    voxels, a box) joined. Grouped in one pass over the volume (a structure without neighbours across planes)."""
    from scipy import ndimage
    from scipy.spatial import ConvexHull, QhullError

    grown = ndimage.maximum_filter(canal, size=(*(2 * join_vox + 1), 1)) if join_vox.any() else canal
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    groups, _ = ndimage.label(grown, structure=in_plane)
    out = canal.copy()
    for g, sl in enumerate(ndimage.find_objects(groups), start=1):
        if sl is None:
            continue
        piece = canal[sl][:, :, 0] & (groups[sl][:, :, 0] == g)
        points = np.argwhere(piece)
        if len(points) < 3:
            continue
        try:
            hull = ConvexHull(points)
        except QhullError:  # collinear: a line has no inside
            continue
        grid = np.stack(np.meshgrid(*(np.arange(n) for n in piece.shape), indexing="ij"), axis=-1).reshape(-1, 2)
        inside = (grid @ hull.equations[:, :2].T + hull.equations[:, 2] <= 1e-9).all(axis=1)
        out[sl][:, :, 0] |= inside.reshape(piece.shape)
    return out


#: Least HU of the bone :func:`grow_into_bone` extends posterior elements into, the usual bone
#: threshold of CT segmentation: cortex reads 400 and more in adults, muscle, blood and unenhanced
#: organs under 100; the blurred rim round dense cortex reads in between (lower thresholds reached
#: further into it on phantoms, higher ones recovered less of a real CT's processes: docs/benchmarks.md).
BONE_MIN_HU = 300.0


def grow_into_bone(probabilities: torch.Tensor, *, classes: torch.Tensor, affine: np.ndarray, hu_at,
                   reach_mm: float = 3.0, min_hu: float = BONE_MIN_HU) -> tuple[torch.Tensor, int]:
    """CT: posterior elements reach the edge of their bone.

    The network draws the thin cortical posterior elements (pedicles, laminae, processes) short of
    their bone (on the example CT most of the reference vertebra volume it leaves background is
    posterior bone by its HU). Background voxels of at least ``min_hu`` HU joined to posterior
    elements through such voxels, within ``reach_mm`` (steps of one voxel, 6-connected), become
    posterior elements. The short reach keeps rib heads and contrast-filled vessels touching a
    process to a rim. Bodies are not grown: the blur of their cortex puts a rim of bone-like HU
    outside them, and growing into it cost body Dice on phantoms (docs/benchmarks.md). Lesion,
    disc, canal and every other class are never changed; bone under ``min_hu`` is not grown into.

    Args:
        probabilities: (C, X, Y, Z) softmax output on the network grid; changed in place.
        classes: (X, Y, Z) uint8 ``class_argmax(probabilities)``; kept equal to the arg-max, in place.
        affine: (4, 4) voxel -> RAS+ mm of the network grid.
        hu_at: callable, (N, 3) RAS+ mm points -> (N,) HU of the scan (nearest voxel).

    Returns:
        (``probabilities``, number of voxels added to the posterior elements).
    """
    from scipy import ndimage

    from spinelesion.measure.geometry import crop_box

    affine = np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    steps = max(1, int(round(reach_mm / float(spacing.min()))))
    labels = classes.cpu().numpy()
    box = crop_box(labels == L.POSTERIOR_ELEMENTS, margin=steps)
    if box is None:
        return probabilities, 0
    local = labels[box]
    posterior = local == L.POSTERIOR_ELEMENTS
    shell = ndimage.binary_dilation(posterior, iterations=steps) & (local == 0)
    ijk = np.argwhere(shell) + np.array([b.start for b in box])
    bone = np.zeros_like(shell)
    bone[shell] = hu_at(ijk @ affine[:3, :3].T + affine[:3, 3]) >= min_hu
    added = ndimage.binary_dilation(posterior, iterations=steps, mask=bone | posterior) & ~posterior
    n = int(np.count_nonzero(added))
    if n == 0:
        return probabilities, 0
    assign_class(probabilities, classes=classes, box=box, mask=added, label=L.POSTERIOR_ELEMENTS)
    return probabilities, n


def assign_class(probabilities: torch.Tensor, *, classes: torch.Tensor, box: tuple, mask: np.ndarray,
                 label: int) -> None:
    """Make the voxels of ``mask`` (bool, the shape of the ``box`` slices of the grid) class ``label``
    with certainty: probability 1 for it and 0 for every other class, ``classes`` set alike (in place)."""
    probs, cls = probabilities[(slice(None),) + box], classes[box]  # views: filled in place
    where = torch.as_tensor(mask, device=probabilities.device)
    probs.masked_fill_(where, 0.0)
    probs[label].masked_fill_(where, 1.0)
    cls.masked_fill_(where, label)


def snap_cord_to_image(labels: np.ndarray, *, image: np.ndarray) -> tuple[np.ndarray, int]:
    """The cord's outline moved to the image's half-way edge between cord and CSF.

    A voxel is cord when it holds at least half cord: its signal at least half-way from the CSF's to the
    cord's (:func:`spinelesion.measure.cord_edge.cord_shares`, the share of cord read from the image's partial
    volume, >= 0.5). The half-way level is where a blurred edge lies whatever the blur (the half-maximum
    rule), so the outline the network drew on its 1.5 mm grid and resampled to the scan's comes to the
    scan's own edge. Only cord and thecal sac voxels within two voxels of the cord's outline and away
    from any other tissue are relabelled (cord <-> sac); none where the image does not show the cord
    against the CSF or reads a cord volume 20 % off the labels' (``cord_shares`` returns None).

    Args:
        labels: (X, Y, Z) uint8 label map on the scan's grid; changed in place.
        image: (X, Y, Z) the scan's voxels.

    Returns:
        (``labels``, number of voxels relabelled).
    """
    from spinelesion.measure.cord_edge import CORD_EDGE_BAND_VOXELS, cord_shares
    from spinelesion.measure.geometry import crop_box

    # the canal's box with the room cord_shares takes round it: no pass over the whole scan after this one
    in_canal = labels == L.SPINAL_CORD
    in_canal |= labels == L.THECAL_SAC
    box = crop_box(in_canal, margin=CORD_EDGE_BAND_VOXELS + 2)
    if box is None:
        return labels, 0
    local = labels[box]  # a view: relabelled in place
    cord, sac = local == L.SPINAL_CORD, local == L.THECAL_SAC
    if not cord.any() or not sac.any():
        return labels, 0
    canal = cord | sac
    shares = cord_shares(cord=cord, sac=sac, image=np.asarray(image)[box], flat=np.flatnonzero(canal))
    if shares is None:
        return labels, 0
    now = np.where(shares >= 0.5, L.SPINAL_CORD, L.THECAL_SAC).astype(labels.dtype)
    changed = int(np.count_nonzero(local[canal] != now))
    local[canal] = now  # boolean-mask order is C order, as flatnonzero's
    return labels, changed
