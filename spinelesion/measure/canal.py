"""The spinal canal of each vertebra: its centre, width and anterior wall, and the body's posterior wall.

The canal comes from the hole the bony ring leaves in an axial projection of the vertebra's bone
(it does not move when an epidural mass displaces the thecal sac), else from the cord/thecal-sac
labels. The functions fill the canal fields of :class:`~spinelesion.measure.column.Vertebra`
during :func:`~spinelesion.measure.vertebrae.find_vertebrae`, which passes each vertebra's
working points (:class:`~spinelesion.measure.column.VertebraPoints`: cord/sac and bone) beside it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from spinelesion.measure import geometry as G
from spinelesion.measure.column import Vertebra, VertebraPoints


def find_canal(v: Vertebra, points: VertebraPoints, affine: np.ndarray) -> None:
    """Canal centre, half-width and anterior wall, then the anterior direction (body side).

    The bony ring (hole in the bone's axial projection) is preferred: it does not move when an
    epidural mass displaces the thecal sac. Cord/sac labels are the fallback.
    """
    canal = points.canal_mm
    centre, pixels = _canal_from_hole(points.bone_mm, v.superior, affine, points.label_centre_mm)
    if centre is not None:
        _set_canal(v, centre=centre, points=pixels, source="ring", affine=affine)
    elif len(canal) >= 20:
        _set_canal(v, centre=G.centroid(canal), points=canal, source="labels", affine=affine)
    else:
        v.canal_source = "none"


def _set_canal(v: Vertebra, *, centre: np.ndarray, points: np.ndarray, source: str, affine: np.ndarray) -> None:
    """Canal fields of ``v`` from its (3,) centre and (N, 3) points (hole pixels or cord/sac voxels),
    and the vertebra's anterior direction from the canal towards the body."""
    v.anterior = G.perpendicular(v.centroid_mm - centre, v.superior, fallback=v.anterior)
    v.right = np.cross(v.anterior, v.superior)
    rel = points - centre
    v.canal_centre_mm, v.canal_source = centre, source
    q = 100 if source == "ring" else 98  # the hole is a clean 2D image; labels may be noisy
    v.canal_half_width_mm = float(np.percentile(np.abs(rel @ v.right), q)) + 0.5 * G.step_along_mm(v.right, affine)
    v.canal_front_rel_mm = float(np.percentile(rel @ v.anterior, q)) + 0.5 * G.step_along_mm(v.anterior, affine)


def check_rings(vertebrae: list[Vertebra], work: list[VertebraPoints], affine: np.ndarray) -> None:
    """Reject a ring whose canal reaches far further forward than the others' (a lesion through
    the body's posterior wall merges with the canal): use the cord/sac labels there instead, or
    the typical anterior wall when there are none."""
    fronts = [v.canal_front_rel_mm for v in vertebrae if v.canal_source == "ring"]
    if len(fronts) < 2:
        return
    typical = float(np.median(fronts))
    for v, points in zip(vertebrae, work):
        if v.canal_source != "ring" or v.canal_front_rel_mm <= typical + max(3.0, 0.25 * typical):
            continue
        canal = points.canal_mm
        if len(canal) >= 20:
            _set_canal(v, centre=G.centroid(canal), points=canal, source="labels", affine=affine)
        else:
            v.canal_front_rel_mm = typical


def bony_canal_widths(vertebrae: list[Vertebra]) -> None:
    """Half-width of the bony canal of each vertebra (``bony_canal_half_width_mm``).

    From a closed ring it is the canal's half-width. Where the canal comes from the cord/sac
    labels (the ring is open) that half-width is the dural sac's, narrower than the bony canal,
    so tumour beside the sac inside the canal would read as lateral to it (posterolateral
    involvement): there it is at least the mean of the two nearest vertebrae with a closed ring
    (the canal's width changes slowly along the column). The epidural test keeps the narrower
    one: a lesion replacing a pedicle's inner wall is not taken for epidural tumour.
    """
    rings = [v for v in vertebrae if v.canal_source == "ring"]
    for v in vertebrae:
        v.bony_canal_half_width_mm = v.canal_half_width_mm
        if v.canal_source == "labels" and rings:
            nearest = sorted(rings, key=lambda r: abs(r.index - v.index))[:2]
            v.bony_canal_half_width_mm = max(v.canal_half_width_mm,
                                             float(np.mean([r.canal_half_width_mm for r in nearest])))


def body_back_walls(vertebrae: list[Vertebra], work: list[VertebraPoints], grid: G.Grid) -> None:
    """Posterior wall of each body (anterior offset from the canal centre).

    From the bony ring it is the canal's anterior wall. Where the ring is open (the body's wall
    destroyed) and the canal comes from cord/sac labels, the wall is placed in front of the dural
    sac's posterior edge by the distance the intact vertebrae (median) have between the two. The
    posterior edge is used, not the sac's centre: an anterior epidural mass replaces the front of
    the sac and pushes it back, but leaves its back on the laminae. Without intact vertebrae the
    wall is the body's own most posterior voxels.
    In every case the wall lies no further forward than the body's own bone in front of the canal
    (1st percentile of its labelled voxels within the canal's width, within 3 mm of the canal
    centre's level): a lytic lesion that destroys part of the posterior wall widens the
    ring's hole forward, and would otherwise leave the lesion's back in the canal.
    """
    backs = {id(v): _sac_back_rel(v, p.canal_mm) for v, p in zip(vertebrae, work)}
    offsets = [v.canal_front_rel_mm - backs[id(v)] for v in vertebrae
               if v.canal_source == "ring" and backs[id(v)] is not None]
    for v in vertebrae:
        if v.canal_source not in ("ring", "labels"):
            continue
        bone_back = None
        if v.body_idx.size >= 20:
            rel = v.body_points(grid) - v.canal_centre_mm
            # the wall in front of the canal, at the canal centre's level (the wall leans with the column)
            facing = (np.abs(rel @ v.right) < v.canal_half_width_mm) & (np.abs(rel @ v.superior) <= 3.0)
            if facing.sum() >= 20:
                bone_back = float(np.percentile(rel[facing] @ v.anterior, 1)) - 0.5 * G.step_along_mm(v.anterior, grid.affine)
        if v.canal_source == "ring":
            wall = v.canal_front_rel_mm
        elif offsets and backs[id(v)] is not None:
            wall = backs[id(v)] + float(np.median(offsets))
        else:
            wall = bone_back if bone_back is not None else v.canal_front_rel_mm
        v.body_back_rel_mm = wall if bone_back is None else min(wall, bone_back)


def _sac_back_rel(v: Vertebra, canal: np.ndarray, half_band_mm: float = 6.0) -> float | None:
    """Anterior offset (mm) of the cord/sac labels' posterior edge from the canal centre (2nd
    percentile over the labels within ``half_band_mm`` of the body's centroid along the vertebra's
    axis, clear of the canal's curve beyond it), or None without a canal or enough labelled voxels."""
    if v.canal_centre_mm is None or len(canal) < 20:
        return None
    canal = canal[np.abs((canal - v.centroid_mm) @ v.superior) <= half_band_mm]
    if len(canal) < 20:
        return None
    return float(np.percentile((canal - v.canal_centre_mm) @ v.anterior, 2))


def _canal_from_hole(bone: np.ndarray, superior: np.ndarray, affine: np.ndarray, label_centre=None):
    """The vertebral foramen as a hole in the bone's projection along ``superior``.

    The hole that holds the cord/sac labels' centre (``label_centre``, world mm) when given,
    else the largest (a lesion through the whole body height also leaves a hole).
    Returns (centre (3,), (M, 3) hole pixel centres in world mm), or (None, None).
    """
    if len(bone) < 50:
        return None, None
    e1 = G.perpendicular(G.ANTERIOR, superior)
    e2 = np.cross(superior, e1)
    origin = G.centroid(bone)
    uv = (bone - origin) @ np.stack([e1, e2], axis=1)
    pixel = max(min(G.step_along_mm(e1, affine), G.step_along_mm(e2, affine)), 0.5)
    lo = G.column_min(uv)
    ij = np.floor((uv - lo) / pixel).astype(int)
    image = np.zeros(tuple(G.column_max(ij) + 1), bool)
    image[ij[:, 0], ij[:, 1]] = True
    for closing in (0, 1):  # a ring with a pinhole gap is closed by one pixel of closing
        img = ndimage.binary_closing(np.pad(image, 2), iterations=closing)[2:-2, 2:-2] if closing else image
        holes, n = ndimage.label(ndimage.binary_fill_holes(img) & ~img)
        if n:
            sizes = np.bincount(holes.ravel())[1:]
            k = int(np.argmax(sizes)) + 1
            if label_centre is not None:
                lij = np.floor(((label_centre - origin) @ np.stack([e1, e2], axis=1) - lo) / pixel).astype(int)
                inside = all(0 <= lij[d] < holes.shape[d] for d in range(2))
                k = int(holes[lij[0], lij[1]]) if inside else 0
            if k and sizes[k - 1] * pixel * pixel >= 20.0:
                break
    else:
        return None, None
    if closing:  # give the pixel that closing took back to the hole
        holes = ndimage.binary_dilation(holes == k) & ~image
        k = True
    hi, hj = np.nonzero(holes == k)
    huv = np.stack([hi, hj], axis=1) * pixel + pixel / 2 + lo
    hole_pts = origin + huv[:, :1] * e1 + huv[:, 1:] * e2
    return G.centroid(hole_pts), hole_pts
