"""Small synthetic box spines for the report tests (tests/test_report*.py): a scan, its label map
and a record, in any voxel order, with bright markers that show where anterior, superior and right
end up."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from records import complete

from spinelesion.io.scan import Scan


SPACING_MM = (0.8, 0.8, 3.0)
LEVELS = ("L5", "L4", "L3", "L2", "L1")
#: Bright markers (RAS voxel boxes) that show where anterior, superior and right end up.
MARKER_SAGITTAL = (slice(36, 44), slice(94, 100), slice(45, 50))   # midline, anterior, superior
MARKER_CORONAL = (slice(72, 79), slice(68, 82), slice(45, 50))     # right, mid-body depth, superior
MARKER_AXIAL = (slice(70, 77), slice(90, 97), slice(21, 29))       # right, anterior, at vertebra 2


def _ras_spine(modality: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y, Z) = (80, 100, 50) RAS image and schema-v1 labels of a five-level box spine.

    Bodies at z 10k+1..10k+7, discs between, canal (sac and cord) behind the bodies, posterior
    elements behind the canal; vertebra 2 holds a body lesion and an epidural lesion.
    """
    labels = np.zeros((80, 100, 50), np.uint8)
    for k in range(5):
        z = slice(10 * k + 1, 10 * k + 8)
        labels[22:58, 58:92, z] = 1
        labels[25:55, 20:30, z] = 2
        labels[24:30, 30:58, z] = 2
        labels[50:56, 30:58, z] = 2
        labels[37:43, 5:20, z] = 2
        labels[22:58, 58:92, 10 * k + 8:10 * k + 10] = 6
    labels[31:49, 30:52, :] = 5
    labels[35:45, 36:46, :] = 4
    labels[26:44, 62:84, 22:27] = 3
    labels[33:47, 48:55, 22:27] = 3
    values = {"CT": {0: 40, 1: 300, 2: 500, 3: 30, 4: 40, 5: 5, 6: 90},
              "MR": {0: 300, 1: 400, 2: 350, 3: 900, 4: 500, 5: 1500, 6: 800}}[modality]
    lut = np.array([values[v] for v in range(7)], np.float32)
    image = lut[labels] + np.random.default_rng(seed).normal(0, 10, labels.shape).astype(np.float32)
    bright = 3000.0 if modality == "CT" else 5000.0
    for marker in (MARKER_SAGITTAL, MARKER_CORONAL, MARKER_AXIAL):
        image[marker] = bright
    return image.astype(np.float32), labels


def _reorient(array: np.ndarray, affine: np.ndarray, axcodes: str) -> tuple[np.ndarray, np.ndarray]:
    """``array`` on an RAS grid re-stored with voxel axes ``axcodes`` (same world positions)."""
    ornt = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"),
                                           nib.orientations.axcodes2ornt(tuple(axcodes)))
    image = nib.Nifti1Image(array, affine).as_reoriented(ornt)
    return np.asarray(image.dataobj), image.affine


def _record(labels: np.ndarray, affine: np.ndarray, modality: str) -> dict:
    """A hand-made docs/contracts.md section 2 record (JSON, complete: tests/records.py) whose centroids
    come from ``labels`` and ``affine``."""
    ras_body = np.isin(labels, (1, 3))
    vertebrae = []
    for k, level in enumerate(LEVELS):
        zs = np.zeros(labels.shape[2], bool)
        zs[10 * k + 1:10 * k + 8] = True
        ijk = np.argwhere(ras_body & zs[None, None, :])
        centroid = (affine @ np.append(ijk.mean(axis=0), 1.0))[:3]
        lesion = k == 2
        vertebrae.append({
            "index": k, "level": level, "centroid_mm": centroid.tolist(), "body_volume_ml": 8.5,
            "lesion_volume_ml": 1.9 if lesion else 0.0, "body_destruction_pct": 22.0 if lesion else 0.0,
            "height_anterior_mm": 21.0, "height_middle_mm": 21.0, "height_posterior_mm": 21.0,
            "height_loss_pct": 0.0, "genant_grade": 0,
            "sins_collapse": "no_collapse_over_50pct_involved" if lesion else "none",
            "lesion_type": "lytic" if lesion and modality == "CT" else None, "posterolateral": "none"})
    cord_mm = (affine @ np.array([39.5, 40.5, 24.5, 1.0]))[:3]
    return complete({
            "schema_version": 1,
            "scan": {"shape": list(labels.shape), "spacing_mm": list(SPACING_MM), "orientation": "RAS",
                     "modality": modality},
            "vertebrae": vertebrae,
            "lesions": [{"id": 1, "volume_ml": 2.4, "centroid_mm": vertebrae[2]["centroid_mm"],
                         "vertebra_index": 2, "epidural": True}],
            "cord": {"mscc_pct": 31.0, "mcc_pct": 40.0, "worst_centroid_mm": cord_mm.tolist(),
                     "bilsky_grade": "2", "compression_flag": True},
            "findings": [{"kind": "cord_compression", "vertebra_index": 2, "level": None, "value": 31.0,
                          "unit": "%", "threshold": None, "grade": "2", "lesion_type": None}],
            "flags": ["cord compression, Bilsky 2, at vertebra 2"]})


def synthetic_case(*, modality: str = "CT", axcodes: str = "RAS", oblique_deg: float = 0.0):
    """(scan, labels, record) of the box spine stored with voxel axes ``axcodes``.

    ``oblique_deg`` rotates the grid about the superior axis (the record follows the rotation)."""
    image, labels = _ras_spine(modality)
    affine = np.diag([*SPACING_MM, 1.0])
    affine[:3, 3] = (-30.0, -40.0, -75.0)
    if oblique_deg:
        c, s = np.cos(np.radians(oblique_deg)), np.sin(np.radians(oblique_deg))
        rot = np.eye(4)
        rot[:2, :2] = [[c, -s], [s, c]]
        affine = rot @ affine
    record = _record(labels, affine, modality)
    stored_image, stored_affine = _reorient(image, affine, axcodes)
    stored_labels, _ = _reorient(labels, affine, axcodes)
    scan = Scan(array=stored_image.astype(np.float32), affine=stored_affine, modality=modality,
                source="synthetic")
    return scan, stored_labels.astype(np.uint8), record
