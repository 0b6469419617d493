"""Which vertebrae bear ribs, from a CT's bone around the labelled column.

Radiologists check the count of a spine by its ribs: T1 to T12 carry them, C7 and L1 do not. Ribs
are not in label schema v1, but on CT they are bone in Hounsfield units, so they are found in the
image: bone (>= ``BONE_HU``) outside the labelled vertebrae, in connected pieces that

- touch a vertebra's own labelled bone (within ``CONTACT_MM``: the costovertebral and
  costotransverse joints: within ``CONTACT_RADIAL_MAX_MM`` of the column's centre line, at least
  ``-FORWARD_MAX_MM`` behind the vertebra's centroid);
- run out from the column: reach at least ``REACH_MM`` from its centre line, at least
  ``RUN_MM`` farther out than where they touch;
- are no larger than a rib (``RIB_MAX_ML``: the pelvis and the sacrum below S1 are one piece of
  hundreds of millilitres, where an adult rib holds 20-40 ml);
- and do not rise as they run out: a rib falls from its head towards its angle and front end,
  where the ilium rises from the sacrum (and from the lower lumbar transverse processes it may
  touch) to the iliac crest, and the skull base rises from the atlas. Out there (beyond
  ``REACH_MM``, within ``NEAR_MM`` of the contact's height) the piece's mean height along the vertebra
  is at most ``RISE_MAX_MM`` above the contact's.

A transverse process the labels missed stops short of ``REACH_MM``; a scapula or a sternum does
not touch a vertebra. A piece that could be a rib but leaves the scan before ``REACH_MM`` (a
narrow field of view cuts every rib at the same distance) leaves its vertebra undecided (None), and
no level is named across an undecided vertebra. The bone is looked at on a grid of about
``GRID_MM`` (block means), so the cost does not grow with the scan's resolution. MR has no
intensity unit to call bone by: there the answer is None (not looked at), as it is without an image.
"""

from __future__ import annotations

import cc3d
import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from spinelesion.measure import geometry as G
from spinelesion.measure.column import Vertebra

#: Bone threshold (HU) on the block-mean image: rib marrow and cortex averaged over a 2-3 mm block.
BONE_HU = 200.0
#: A CT in HU holds fat (-100) or air (-1000) around the spine: where the 1st percentile of the
#: looked-at region is above this, the image is not in HU and the ribs are not looked for.
NOT_HU_ABOVE = -50.0
#: Spacing (mm) of the grid the bone is looked at on (block means of the scan's voxels).
GRID_MM = 2.5
#: How far (mm) beyond the labelled column the image is looked at.
MARGIN_MM = 90.0
#: A rib touches its vertebra's labelled bone within this distance (mm), on the coarse grid.
CONTACT_MM = 5.0
#: Where it touches, a rib is at most this far (mm) from the column's centre line (its head at the
#: body, its tubercle at the transverse process's tip).
CONTACT_RADIAL_MAX_MM = 60.0
#: A rib reaches at least this far (mm) from the column's centre line (an adult's ribs, the twelfth
#: too, run on 100 mm and more; lumbar transverse processes end within 50 mm) ...
REACH_MM = 70.0
#: ... and at least this much (mm) farther out than where it touches the vertebra.
RUN_MM = 20.0
#: Largest piece (ml, on the coarse grid) taken for a rib.
RIB_MAX_ML = 80.0
#: Out beyond ``REACH_MM``, a rib's bone within this distance (mm, along the column) of the contact's
#: height ...
NEAR_MM = 60.0
#: ... lies on average at most this far (mm) above the contact.
RISE_MAX_MM = 5.0
#: Where a rib touches its vertebra (the costal facets at the back of the body, the transverse
#: process behind it), the contact's centre lies at least this far (mm) behind the vertebra's
#: centroid: calcified vessels lie in front or beside the body, the ilium beside the sacral ala, a
#: rib passing the next vertebra up at the side of its body.
FORWARD_MAX_MM = -10.0


def rib_bearing(vertebrae: list[Vertebra], *, image: np.ndarray, affine: np.ndarray, box: tuple[slice, ...],
                grid: G.Grid) -> list[bool | None] | None:
    """Whether each vertebra bears a rib (either side), found on a CT in HU; None for a vertebra
    where a piece that could be its rib leaves the scan before it runs far enough to tell.

    Args:
        vertebrae: the column (inferior -> superior); their index arrays are flat indices of ``grid``.
        image: (X, Y, Z) the whole CT in HU (any voxel order).
        affine: (4, 4) voxel -> RAS+ mm of ``image``.
        box: the slices of ``image`` that ``grid`` covers (the measurement crop).
        grid: the cropped grid of the vertebrae's index arrays.

    Returns:
        One bool (or None) per vertebra, or None where fewer than two vertebrae are in view or the
        image is not in HU.
    """
    if len(vertebrae) < 2:
        return None
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    k = np.maximum(1, np.floor(GRID_MM / spacing + 1e-6)).astype(int)  # block size per axis
    margin = np.ceil(MARGIN_MM / spacing).astype(int)
    lo = np.maximum(0, [b.start - m for b, m in zip(box, margin)])
    hi = np.minimum(image.shape, [b.stop + m for b, m in zip(box, margin)])
    hi = lo + (hi - lo) // k * k  # whole blocks
    if np.any(hi - lo < k):
        return None
    shape = tuple(int(n) for n in (hi - lo) // k)
    coarse = _block_means(image[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], k=k)
    if float(np.percentile(coarse, 1)) > NOT_HU_ABOVE:
        return None
    coarse_affine = affine.copy()
    coarse_affine[:3, :3] = affine[:3, :3] * k
    coarse_affine[:3, 3] = affine[:3, :3] @ (lo + (k - 1) / 2.0) + affine[:3, 3]

    # each vertebra's labelled voxels (body, posterior elements, lesion) on the coarse grid: id = index + 1
    owner = np.zeros(shape, np.int32)
    crop_lo = np.array([b.start for b in box])
    for v in vertebrae:
        flat = np.concatenate([v.body_idx, v.posterior_idx, v.lesion_idx])
        if flat.size == 0:
            continue
        ijk = (grid.ijk(flat) + crop_lo - lo) // k
        inside = G.in_bounds(ijk, shape)
        owner[tuple(ijk[inside].T)] = v.index + 1
    labelled = owner > 0
    free_bone = (coarse >= BONE_HU) & ~ndimage.binary_dilation(labelled)
    if not free_bone.any():
        return [False] * len(vertebrae)
    pieces = cc3d.connected_components(free_bone, connectivity=26)
    # the coarse grid's faces that are the scan's own border: a piece there runs out of the scan
    edge = np.zeros(shape, bool)
    for axis, (first, last) in enumerate(zip(lo == 0, hi > np.asarray(image.shape) - k)):
        index = [slice(None)] * 3
        for at, on in ((0, first), (-1, last)):
            if on:
                index[axis] = at
                edge[tuple(index)] = True
    cut = np.zeros(int(pieces.max()) + 1, bool)
    cut[np.unique(pieces[edge & free_bone])] = True
    contacts = _contacts(vertebrae, free_bone=free_bone, pieces=pieces, owner=owner, affine=coarse_affine)
    bearing: list[bool | None] = [False] * len(vertebrae)
    for c in contacts:
        verdict = _is_rib(c, cut=bool(cut[c["piece"]]))
        if verdict or (verdict is None and bearing[c["vertebra"]] is False):
            bearing[c["vertebra"]] = verdict
    return bearing


def _block_means(region: np.ndarray, *, k: np.ndarray) -> np.ndarray:
    """(X / k0, Y / k1, Z / k2) float32 means of the k0 x k1 x k2 blocks of an (X, Y, Z) ``region`` (a
    view: never copied whole) whose sides are whole multiples of ``k``: one block of planes at a time
    along the first axis, added plane to plane, then along the second and last axes in cache
    (4 times faster than adding the k0 k1 k2 strided views of the whole region)."""
    k0, k1, k2 = (int(n) for n in k)
    shape = tuple(int(n) // int(m) for n, m in zip(region.shape, k))
    coarse = np.empty(shape, np.float32)
    for i in range(shape[0]):
        plane = np.array(region[i * k0], dtype=np.float32)
        for a in range(1, k0):
            plane += region[i * k0 + a]
        rows = plane.reshape(shape[1], k1, shape[2] * k2)
        summed = rows[:, 0].copy()
        for b in range(1, k1):
            summed += rows[:, b]
        coarse[i] = summed.reshape(shape[1], shape[2], k2).sum(axis=2)
    coarse /= float(k0 * k1 * k2)
    return coarse


def _is_rib(contact: dict, *, cut: bool) -> bool | None:
    """Whether a piece of bone touching a vertebra is a rib (module docstring), from its
    :func:`_contacts` figures; None (cannot tell) where it could be one but leaves the scan (``cut``)
    before it reaches ``REACH_MM``."""
    where = (contact["volume_ml"] <= RIB_MAX_ML and contact["contact_radial_mm"] <= CONTACT_RADIAL_MAX_MM
             and contact["forward_mm"] <= FORWARD_MAX_MM)
    if where and cut and contact["reach_mm"] < REACH_MM:
        return None
    return (where and contact["reach_mm"] >= REACH_MM
            and contact["reach_mm"] - contact["contact_radial_mm"] >= RUN_MM
            and contact["rise_mm"] is not None and contact["rise_mm"] <= RISE_MAX_MM)


def _contacts(vertebrae: list[Vertebra], *, free_bone: np.ndarray, pieces: np.ndarray, owner: np.ndarray,
              affine: np.ndarray) -> list[dict]:
    """One dict per (piece of free bone, vertebra it touches) on the coarse grid: the vertebra's
    index, the piece's volume (ml) and reach from the column's centre line (mm), the contact's
    distance from that line (mm) and its offset in front of the vertebra's centroid (mm), and how far
    the piece's far part lies above the contact along the vertebra's own axis (mm, None without a far
    part near the contact's height).

    ``free_bone`` (X, Y, Z) bool, ``pieces`` its connected components (int, 0 = none) and ``owner``
    (vertebra index + 1 per labelled voxel, 0 elsewhere) share the coarse grid of ``affine``. A free
    bone voxel touches the vertebra of its nearest labelled voxel within ``CONTACT_MM`` (a k-d tree
    of the labelled voxels, queried only near them: the whole grid's distance transform took 5
    times longer)."""
    flat = np.flatnonzero(free_bone)
    piece = pieces.ravel()[flat]
    points = G.world_points(flat, free_bone.shape, affine)
    radial = _radial_mm(points, vertebrae)
    reach = np.zeros(piece.max() + 1)
    np.maximum.at(reach, piece, radial)
    volume_ml = np.bincount(piece) * abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    touch, toucher = _nearest_owner(free_flat=flat, owner=owner, affine=affine)
    far = radial >= REACH_MM
    # each piece's free-bone entries, ascending: members of piece p are by_piece[starts[p]:starts[p + 1]]
    by_piece = np.argsort(piece, kind="stable")
    starts = np.searchsorted(piece[by_piece], np.arange(piece.max() + 2))
    out = []
    for p, who in sorted(set(zip(piece[touch].tolist(), toucher.tolist()))):
        contact = touch[(piece[touch] == p) & (toucher == who)]
        v = vertebrae[who]
        centre = G.centroid(points[contact])
        members = by_piece[starts[p]:starts[p + 1]]
        out_there = members[far[members]]
        above = (points[out_there] - centre) @ v.superior  # heights along the vertebra's own axis
        beyond = np.abs(above) <= NEAR_MM
        out.append({"vertebra": who, "piece": p, "volume_ml": float(volume_ml[p]), "reach_mm": float(reach[p]),
                    "contact_radial_mm": float(radial[contact].min()),
                    "forward_mm": float((centre - v.centroid_mm) @ v.anterior),
                    "rise_mm": float(above[beyond].mean()) if beyond.any() else None})
    return out


def _nearest_owner(*, free_flat: np.ndarray, owner: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions in ``free_flat`` of the free-bone voxels within ``CONTACT_MM`` of a labelled voxel
    (M,), the vertebra index of the nearest labelled voxel of each (M,)). ``free_flat``: (N,) flat
    indices of free bone on the grid of ``owner`` (X, Y, Z; vertebra index + 1, 0 = unlabelled)."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    reach_vox = np.ceil(CONTACT_MM / spacing).astype(int)
    near = ndimage.maximum_filter(owner > 0, size=2 * reach_vox + 1)  # a box round the ball (separable)
    candidates = np.flatnonzero(near.ravel()[free_flat])
    labelled = np.flatnonzero(owner)
    if candidates.size == 0 or labelled.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # index space scaled by the spacing: Euclidean mm as the coarse grid's voxel centres give it
    labelled_mm = np.stack(np.unravel_index(labelled, owner.shape), axis=1) * spacing
    query_mm = np.stack(np.unravel_index(free_flat[candidates], owner.shape), axis=1) * spacing
    reach = CONTACT_MM * (1 + 1e-9)  # a distance equal to CONTACT_MM touches, as with <= on a distance transform
    distance, nearest = cKDTree(labelled_mm).query(query_mm, distance_upper_bound=reach)
    hit = distance <= reach
    return candidates[hit], owner.ravel()[labelled[nearest[hit]]].astype(np.int64) - 1


def _radial_mm(points: np.ndarray, vertebrae: list[Vertebra]) -> np.ndarray:
    """(N,) distance (mm) of (N, 3) points from the column's centre line: the vertebrae's centroids
    joined in order, going on straight beyond the end ones."""
    centres = np.array([v.centroid_mm for v in vertebrae])
    axis = centres[-1] - centres[0]
    axis = axis / max(float(np.linalg.norm(axis)), 1e-6)
    t_c = centres @ axis
    order = np.argsort(t_c)
    t_c, centres = t_c[order], centres[order]
    t = points @ axis
    line = np.stack([np.interp(t, t_c, centres[:, i]) for i in range(3)], axis=1)
    rel = points - line
    rel -= np.outer(rel @ axis, axis)
    return np.linalg.norm(rel, axis=1)
