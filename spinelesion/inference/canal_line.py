"""The spinal canal is one tube: pieces of "cord" or "thecal sac" off its line and outside the vertebrae go.

The network mistakes other tubes and round organs for the canal: the aorta in front of the bodies, the
kidneys beside them, the vena cava (context phantoms: 5-16 ml pieces on most CT and T1 scans, 45-80 mm off
the canal's line; docs/benchmarks.md). The canal of a scan is one connected piece except where a lesion or a
gap in the labels cuts it, and then its pieces stay on its line or between the vertebral arches:
:func:`keep_canal_in_line`.
"""

from __future__ import annotations

import numpy as np
import torch

from spinelesion import labels as L

#: A piece of canal whose voxels lie at a median distance of at most this from posterior elements is
#: enclosed by the vertebrae (the canal lies against the pedicles and laminae: 6-13 mm on the real and
#: phantom scans measured; the aorta and kidneys 14-63 mm).
ENCLOSED_MM = 10.0


def keep_canal_in_line(probabilities: torch.Tensor, *, classes: torch.Tensor, affine: np.ndarray,
                       max_off_line_mm: float = 15.0) -> tuple[torch.Tensor, int]:
    """Drop the pieces of canal (cord and thecal sac, 26-connected) that are neither on the main canal's line
    nor enclosed by the vertebrae.

    The main canal is the largest piece; its line is a quadratic in the superior (z) coordinate through its
    slices' centroids (straight with under 10 slices), held at its end points beyond them. Another piece is
    kept when its centroid lies within ``max_off_line_mm`` of that line at its height, or when its voxels'
    median distance to the posterior elements is at most :data:`ENCLOSED_MM` (a canal piece beyond the main
    one's ends, across a lordosis). Dropped voxels lose their cord, sac and lesion probabilities (it runs after
    the lesions' clean-up, which a new lesion would escape) and take their next most likely class.

    Args:
        probabilities: (C, X, Y, Z) softmax output on the RAS network grid; changed in place.
        classes: (X, Y, Z) uint8 ``class_argmax(probabilities)``; kept equal to the arg-max, in place.
        affine: (4, 4) voxel -> RAS+ mm of the network grid (z: superior).

    Returns:
        (``probabilities``, number of voxels dropped).
    """
    import cc3d

    from spinelesion.inference.resample import class_argmax

    affine = np.asarray(affine, dtype=np.float64)
    labels = classes.cpu().numpy()
    pieces, n = cc3d.connected_components((labels == L.SPINAL_CORD) | (labels == L.THECAL_SAC), connectivity=26,
                                          return_N=True)
    if n < 2:
        return probabilities, 0
    stats = cc3d.statistics(pieces)
    main = int(np.argmax(stats["voxel_counts"][1:])) + 1
    line = _centre_line(np.argwhere(pieces[stats["bounding_boxes"][main]] == main)
                        + [b.start for b in stats["bounding_boxes"][main]], affine=affine)
    drop = []
    for k in range(1, n + 1):
        if k == main:
            continue
        centre = np.append(stats["centroids"][k], 1.0) @ affine.T
        if np.hypot(*(centre[:2] - line(centre[2]))) <= max_off_line_mm:
            continue
        if _enclosed(pieces, labels, k, box=stats["bounding_boxes"][k], affine=affine):
            continue
        drop.append(k)
    if not drop:
        return probabilities, 0
    mask = torch.as_tensor(np.isin(pieces, drop), device=probabilities.device)
    for label in (L.SPINAL_CORD, L.THECAL_SAC, L.LESION):  # not lesion either: the lesions' clean-up has run
        probabilities[label].masked_fill_(mask, 0.0)
    classes[mask] = class_argmax(probabilities[:, mask])
    return probabilities, int(mask.sum())


def _centre_line(ijk: np.ndarray, *, affine: np.ndarray):
    """z (mm) -> (2,) x, y (mm) of the line through the centroids of the (N, 3) voxels' slices of equal z."""
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    heights, slice_of = np.unique(np.round(world[:, 2], 1), return_inverse=True)
    counts = np.bincount(slice_of)
    xs, ys = (np.bincount(slice_of, weights=world[:, a]) / counts for a in (0, 1))
    degree = 2 if len(heights) >= 10 else min(1, len(heights) - 1)
    fit_x, fit_y = np.polyfit(heights, xs, degree), np.polyfit(heights, ys, degree)
    lo, hi = float(heights[0]), float(heights[-1])

    def line(z_mm: float) -> np.ndarray:
        z = min(max(z_mm, lo), hi)
        return np.array([np.polyval(fit_x, z), np.polyval(fit_y, z)])

    return line


def _enclosed(pieces: np.ndarray, labels: np.ndarray, k: int, *, box: tuple, affine: np.ndarray) -> bool:
    """True when piece ``k``'s voxels lie at a median distance of at most :data:`ENCLOSED_MM` from posterior
    elements (searched in its bounding ``box`` widened by that distance)."""
    from scipy import ndimage

    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    reach = np.ceil(ENCLOSED_MM / spacing).astype(int) + 1
    wide = tuple(slice(max(0, b.start - r), min(s, b.stop + r)) for b, r, s in zip(box, reach, labels.shape))
    posterior = labels[wide] == L.POSTERIOR_ELEMENTS
    if not posterior.any():
        return False
    distance = ndimage.distance_transform_edt(~posterior, sampling=spacing)
    return float(np.median(distance[pieces[wide] == k])) <= ENCLOSED_MM
