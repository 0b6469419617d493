"""Lesions as 3D connected components (cc3d), with volume, centroid, vertebra and epidural status."""

from __future__ import annotations

import cc3d
import numpy as np
from scipy import ndimage

from spinelesion import labels as L
from spinelesion.measure import geometry as G
from spinelesion.measure.settings import MeasureSettings
from spinelesion.measure.vertebrae import Vertebra


def find_lesions(*, classes: np.ndarray, affine: np.ndarray, vertebrae: list[Vertebra],
                 settings: MeasureSettings) -> tuple[list[dict], np.ndarray]:
    """Connected lesion components of at least ``settings.min_lesion_mm3``.

    A component is epidural when it touches the cord or thecal sac (26-neighbourhood) or reaches
    into the bony canal of its vertebra (behind the body's posterior wall, within the canal's width). Returns the lesion records (ids 1.., ordered by volume, largest first) and an
    (X, Y, Z) bool mask of the voxels of epidural components.
    """
    lesion = classes == L.LESION
    epidural_mask = np.zeros(classes.shape, bool)
    if not lesion.any():
        return [], epidural_mask
    comps, n = cc3d.connected_components(lesion, connectivity=26, return_N=True)
    voxel_mm3 = abs(np.linalg.det(affine[:3, :3]))
    stats = cc3d.statistics(comps)
    counts = np.asarray(stats["voxel_counts"])
    vert_of_voxel = np.full(classes.size, -1, np.int64)
    for v in vertebrae:
        vert_of_voxel[v.lesion_idx] = v.index
    flat = np.flatnonzero(comps)
    comp_of = comps.ravel()[flat]
    canal = (classes == L.SPINAL_CORD) | (classes == L.THECAL_SAC)
    epidural_ids = _in_canal_components(flat, comp_of, classes.shape, affine, vertebrae, vert_of_voxel)
    if canal.any():
        touching = ndimage.binary_dilation(canal, structure=np.ones((3, 3, 3), bool)) & lesion
        epidural_ids |= set(np.unique(comps[touching]).tolist()) - {0}
    records = []
    for k in np.argsort(-counts[1:]) + 1:
        if counts[k] * voxel_mm3 < settings.min_lesion_mm3:
            continue
        ijk = np.asarray(stats["centroids"][k], float)
        verts = vert_of_voxel[flat[comp_of == k]]
        verts = verts[verts >= 0]
        records.append({
            "id": len(records) + 1,
            "volume_ml": round(float(counts[k] * voxel_mm3 / 1000.0), 4),
            "centroid_mm": [round(float(x), 2) for x in affine[:3, :3] @ ijk + affine[:3, 3]],
            "vertebra_index": int(np.bincount(verts).argmax()) if verts.size else None,
            "epidural": bool(k in epidural_ids),
        })
        if k in epidural_ids:
            epidural_mask |= comps == k
    return records, epidural_mask


def _in_canal_components(flat, comp_of, shape, affine, vertebrae, vert_of_voxel) -> set[int]:
    ids: set[int] = set()
    for v in vertebrae:
        if v.canal_centre_mm is None or v.body_back_rel_mm is None:
            continue
        sel = vert_of_voxel[flat] == v.index
        rel = G.world_points(flat[sel], shape, affine) - v.canal_centre_mm
        a, r = rel @ v.anterior, rel @ v.right
        inside = (a < v.body_back_rel_mm - 1.0) & (a > -v.body_back_rel_mm) & (np.abs(r) < v.canal_half_width_mm - 1.0)
        ids |= set(np.unique(comp_of[sel][inside]).tolist())
    return ids
