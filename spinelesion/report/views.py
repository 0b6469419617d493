"""2D views for overlays: reorient a scan to RAS, follow the spinal column, cut planes.

Every view is a pair of (H, V) arrays (image and labels) indexed [horizontal, vertical] with its
pixel spacing in mm, so the drawing code can keep the physical aspect ratio of anisotropic voxels.
Display follows the radiological convention: patient's right on the viewer's left (coronal and
axial), anterior on the left (sagittal), head up, anterior up (axial).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from spinelesion.record_types import MeasurementRecord

#: Classes (schema v1) whose left-right centre marks the midline of the column.
MIDLINE_CLASSES = (1, 4, 5, 6)
#: Classes whose antero-posterior centre marks the vertebral bodies.
BODY_CLASSES = (1, 6)
CURVE_SMOOTHING_MM = 10.0


@dataclass(frozen=True)
class Canonical:
    """A scan and its label map turned to the closest RAS+ voxel order (no resampling).

    image, labels: (X, Y, Z) arrays, +X right, +Y anterior, +Z superior (views, not copies).
    affine: (4, 4) voxel -> RAS+ mm for the reordered arrays.
    """

    image: np.ndarray
    labels: np.ndarray
    affine: np.ndarray

    @property
    def spacing_mm(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @functools.cached_property
    def label_bbox(self) -> tuple[np.ndarray, np.ndarray] | None:
        """:func:`spine_bbox` of ``labels``, computed once for all views."""
        return spine_bbox(self.labels)

    def voxel_of(self, world_mm) -> np.ndarray:
        """(3,) float voxel coordinates of a RAS+ world point."""
        point = np.append(np.asarray(world_mm, dtype=float), 1.0)
        return (np.linalg.inv(self.affine) @ point)[:3]


@dataclass
class Mark:
    """A text beside a point: ``anchor`` and ``text_at`` are (h_mm, v_mm) in the view."""

    text: str
    anchor: tuple[float, float]
    text_at: tuple[float, float]
    emphasis: bool = False


@dataclass
class View:
    """One 2D cut. ``image``/``labels``: (H, V); pixel (i, j) centre sits at ((h0+i)*sh, (v0+j)*sv) mm."""

    name: str
    title: str
    image: np.ndarray
    labels: np.ndarray
    spacing_mm: tuple[float, float]
    origin_index: tuple[int, int]
    flip_h: bool
    letters: tuple[str, str, str, str]  # left, right, bottom, top, as displayed
    marks: list[Mark] = field(default_factory=list)

    def extent_mm(self) -> tuple[float, float, float, float]:
        (sh, sv), (h0, v0) = self.spacing_mm, self.origin_index
        nh, nv = self.image.shape
        return ((h0 - 0.5) * sh, (h0 + nh - 0.5) * sh, (v0 - 0.5) * sv, (v0 + nv - 0.5) * sv)


def to_canonical(*, array: np.ndarray, labels: np.ndarray, affine: np.ndarray) -> Canonical:
    """Reorder (X, Y, Z) ``array`` and ``labels`` to the closest RAS+ axes (as nibabel's
    ``as_closest_canonical``: axis permutations and flips only, oblique grids stay oblique)."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    new_affine = affine @ nib.orientations.inv_ornt_aff(ornt, array.shape)
    return Canonical(image=nib.orientations.apply_orientation(array, ornt),
                     labels=nib.orientations.apply_orientation(labels, ornt), affine=new_affine)


def column_curve(labels: np.ndarray, *, axis: int, classes: tuple[int, ...],
                 spacing_mm: np.ndarray) -> tuple[np.ndarray, str]:
    """(Z,) float voxel coordinate along ``axis`` (0: x, 1: y) of the column's centre at each z,
    and what placed it: "classes", "labels" (any label, when ``classes`` are absent) or "middle".

    The centre is the mean position of ``classes`` voxels per axial slice (falling back to any
    label, then to the volume's middle), filled across empty slices and smoothed over about
    ``CURVE_SMOOTHING_MM``. Labels are subsampled in-plane to about 2 mm for speed.
    """
    from scipy.ndimage import gaussian_filter1d

    nz = labels.shape[2]
    step = [max(1, int(round(2.0 / max(float(s), 1e-6)))) for s in spacing_mm[:2]]
    coarse = labels[::step[0], ::step[1], :]
    for class_set in (classes, None):
        mask = coarse > 0 if class_set is None else np.isin(coarse, class_set)
        per_axis = mask.sum(axis=1 - axis)  # (n_axis, Z)
        counts = per_axis.sum(axis=0)
        if counts.any():
            break
    else:
        return np.full(nz, (labels.shape[axis] - 1) / 2.0), "middle"
    positions = np.arange(per_axis.shape[0]) * step[axis]
    has = counts > 0
    centre = np.zeros(nz)
    centre[has] = (positions @ per_axis[:, has]) / counts[has]
    z = np.arange(nz)
    centre = np.interp(z, z[has], centre[has])
    sigma = CURVE_SMOOTHING_MM / float(spacing_mm[2])
    smooth = gaussian_filter1d(centre, sigma, mode="nearest") if nz > 1 else centre
    return smooth, "classes" if class_set is not None else "labels"


def spine_bbox(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(lo, hi) inclusive voxel bounds of all labelled voxels, or None for an empty map."""
    from spinelesion.measure.geometry import crop_box

    box = crop_box(labels if labels.dtype.kind in "ub" else labels > 0, margin=0)
    if box is None:
        return None
    return np.array([b.start for b in box]), np.array([b.stop - 1 for b in box])


def _range(lo_mm: float, hi_mm: float, spacing: float, n: int) -> slice:
    lo = max(0, int(np.floor(lo_mm / spacing)))
    hi = min(n, int(np.ceil(hi_mm / spacing)) + 1)
    return slice(lo, max(hi, lo + 1)) if lo < n else slice(max(0, n - 1), n)


def curved_view(canon: Canonical, *, name: str, record: MeasurementRecord | None, flagged: set[int]) -> View:
    """Sagittal (``name="sagittal"``: through the canal) or coronal (through the bodies) view that
    follows the column: at each axial slice z the plane sits on the smoothed column centre.
    Image and labels come from the same voxels (no slab averaging, so every structure seen in the
    image is drawn with the label it has there)."""
    sagittal = name == "sagittal"
    axis = 0 if sagittal else 1          # the axis the curve moves along
    keep = 1 if sagittal else 0          # the in-plane horizontal axis
    spacing = canon.spacing_mm
    curve, placed_by = column_curve(canon.labels, axis=axis, spacing_mm=spacing,
                                    classes=MIDLINE_CLASSES if sagittal else BODY_CLASSES)
    n_axis = canon.labels.shape[axis]
    centre = np.clip(np.round(curve).astype(int), 0, n_axis - 1)

    bbox = canon.label_bbox
    nz, nk = canon.labels.shape[2], canon.labels.shape[keep]
    if bbox is None:
        keep_slice, z_slice = slice(0, nk), slice(0, nz)
    else:
        lo_mm, hi_mm = bbox[0] * spacing, bbox[1] * spacing
        margin_h = 45.0
        keep_slice = _range(lo_mm[keep] - margin_h, hi_mm[keep] + margin_h, spacing[keep], nk)
        z_slice = _range(lo_mm[2] - 25.0, hi_mm[2] + 25.0, spacing[2], nz)
    zs = np.arange(z_slice.start, z_slice.stop)
    ks = np.arange(keep_slice.start, keep_slice.stop)

    def sample(volume: np.ndarray) -> np.ndarray:
        if sagittal:
            return volume[centre[zs][None, :], ks[:, None], zs[None, :]]
        return volume[ks[:, None], centre[zs][None, :], zs[None, :]]

    image = sample(canon.image).astype(np.float32)
    labels = sample(canon.labels)

    view_spacing = (float(spacing[keep]), float(spacing[2]))
    marks = []
    for vertebra in record.vertebrae if record is not None else ():
        voxel = canon.voxel_of(vertebra.centroid_mm)
        anchor = (voxel[keep] * spacing[keep], voxel[2] * spacing[2])
        # Beside the body: anterior of it (sagittal) or at the patient's left of it (coronal).
        text_h = _beside_labels(labels, anchor=anchor, spacing_mm=view_spacing,
                                origin_index=(int(ks[0]), int(zs[0])), larger=sagittal)
        h_lo, h_hi = ks[0] * spacing[keep], ks[-1] * spacing[keep]
        inset = min(6.0, (h_hi - h_lo) / 2)   # keep the name inside the picture
        text_h = float(np.clip(text_h, h_lo + inset, h_hi - inset))
        marks.append(Mark(text=vertebra.short_name, anchor=anchor, text_at=(text_h, anchor[1]),
                          emphasis=vertebra.index in flagged))
    title = ("Sagittal" if sagittal else "Coronal") + {
        "classes": ", curved along the column midline" if sagittal else
                   ", curved through the vertebral bodies",
        "labels": ", curved along the labelled structures",
        "middle": ", middle of the volume (no labels)"}[placed_by]
    letters = ("A", "P", "I", "S") if sagittal else ("R", "L", "I", "S")
    return View(name=name, title=title, image=image, labels=labels, spacing_mm=view_spacing,
                origin_index=(int(ks[0]), int(zs[0])), flip_h=True, letters=letters, marks=marks)


def _beside_labels(labels: np.ndarray, *, anchor: tuple[float, float], spacing_mm: tuple[float, float],
                   origin_index: tuple[int, int], larger: bool, gap_mm: float = 9.0) -> float:
    """Horizontal mm position just past the labelled pixels near ``anchor``'s height.

    ``larger``: past the largest horizontal coordinate (else the smallest). Looks at rows within
    5 mm of the anchor; with no labels there, 28 mm from the anchor.
    """
    (sh, sv), (i0, j0) = spacing_mm, origin_index
    row = anchor[1] / sv - j0
    rows = slice(max(0, int(np.floor(row - 5.0 / sv))), max(0, int(np.ceil(row + 5.0 / sv)) + 1))
    band = labels[:, rows]
    cols = np.flatnonzero(np.isin(band, (1, 2, 3, 6)).any(axis=1)) if band.size else np.array([])
    if cols.size == 0:
        return anchor[0] + (28.0 if larger else -28.0)
    edge = ((cols[-1] if larger else cols[0]) + i0) * sh
    return edge + (gap_mm if larger else -gap_mm)


def axial_view(canon: Canonical, *, name: str, title: str, centre_mm, half_width_mm: float,
               anterior_mm: float, posterior_mm: float) -> View | None:
    """Axial slice through the world point ``centre_mm`` (RAS+), cropped around it.

    Returns None when the point lies outside the volume (more than half a voxel)."""
    voxel = canon.voxel_of(centre_mm)
    shape = np.array(canon.labels.shape)
    if np.any(voxel < -0.5) or np.any(voxel > shape - 0.5):
        return None
    spacing = canon.spacing_mm
    k = int(np.clip(np.round(voxel[2]), 0, shape[2] - 1))
    cx, cy = voxel[0] * spacing[0], voxel[1] * spacing[1]
    xs = _range(cx - half_width_mm, cx + half_width_mm, spacing[0], shape[0])
    ys = _range(cy - posterior_mm, cy + anterior_mm, spacing[1], shape[1])
    return View(name=name, title=title, image=np.asarray(canon.image[xs, ys, k], dtype=np.float32),
                labels=np.asarray(canon.labels[xs, ys, k]),
                spacing_mm=(float(spacing[0]), float(spacing[1])),
                origin_index=(xs.start, ys.start), flip_h=True, letters=("R", "L", "P", "A"))


