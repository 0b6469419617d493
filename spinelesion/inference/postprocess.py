"""Clean-up of network output on the network grid, before it is mapped back to the input grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from spinelesion.measure.settings import MeasureSettings


def keep_spine_structure(probabilities: torch.Tensor, *, spacing_mm, margin_mm: float = 10.0,
                         classes: torch.Tensor | None = None) -> torch.Tensor:
    """Drop foreground far from the spinal column (the usual "largest component" clean-up).

    The column (vertebrae, discs, canal contents, lesions) forms one large connected structure;
    network false positives elsewhere (bowel, other bones) form separate islands. Foreground
    components (26-connected, any non-background class) are kept when they lie within
    ``margin_mm`` of the largest one, so detached spinous processes and lesions beside the
    column survive; everything else becomes background (probability 1 for class 0).

    Args:
        probabilities: (C, X, Y, Z) softmax output on the network grid; changed in place (a copy
            of a whole-scan output costs a few hundred MB and a noticeable share of a CPU run).
        spacing_mm: (3,) voxel size of that grid.
        classes: (X, Y, Z) uint8 ``class_argmax(probabilities)`` where the caller has it (computed
            otherwise); kept equal to the arg-max of the result (far islands set to 0), in place: each
            whole-volume arg-max costs 0.1-0.4 s on a CPU, and the clean-up and the mapping back need one.

    Returns:
        ``probabilities``, with far islands set to background.
    """
    import cc3d

    from spinelesion.inference.resample import class_argmax

    if classes is None:
        classes = class_argmax(probabilities)
    foreground = (classes > 0).cpu().numpy()
    if not foreground.any():
        return probabilities
    components, n = cc3d.connected_components(foreground.astype(np.uint8), connectivity=26, return_N=True)
    if n <= 1:
        return probabilities
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    largest = int(sizes.argmax())
    keep = components_near(components, n=n, target=components == largest, spacing_mm=spacing_mm,
                           distance_mm=margin_mm)
    keep[0] = True  # background stays as it is
    keep[largest] = True
    if keep.all():
        return probabilities
    mask = torch.as_tensor(~keep[components], device=probabilities.device)
    probabilities.masked_fill_(mask, 0.0)
    probabilities[0].masked_fill_(mask, 1.0)
    classes.masked_fill_(mask, 0)
    return probabilities


def components_near(components: np.ndarray, *, n: int, target: np.ndarray, spacing_mm,
                    distance_mm: float) -> np.ndarray:
    """(n + 1,) bool: which components (ids 1..n of an (X, Y, Z) int map; entry 0 False) hold a voxel
    within ``distance_mm`` of a ``target`` voxel ((X, Y, Z) bool, disjoint from the components).

    The same answer as a distance transform of ``~target`` read at the components' voxels (centre to
    centre, Euclidean mm on a grid of ``spacing_mm``), but from the sets' surfaces: the voxel of a set
    nearest any point outside it lies on its surface (an inner voxel has a neighbour one step closer),
    so a k-d tree of the target's surface voxels answers for the components' surface voxels. The
    network's foreground is sparse (0.3 M of 18 M voxels on a whole-trunk CT): the distance transform
    over the column's box took 0.5-0.7 s there, this takes a few hundredths."""
    from scipy.spatial import cKDTree

    from spinelesion.measure.geometry import crop_box

    near = np.zeros(n + 1, bool)
    spacing = np.array([float(x) for x in spacing_mm])
    # only the target within reach of the components' box matters (its edges there count as surface)
    box = crop_box(components, margin=0)
    if box is None or not target.any():
        return near
    grow = np.ceil(distance_mm / spacing).astype(int) + 1
    box = tuple(slice(max(0, b.start - g), min(m, b.stop + g)) for b, g, m in zip(box, grow, target.shape))
    target, components = target[box], components[box]
    ends = np.flatnonzero(_surface(target))
    if ends.size == 0:
        return near
    query = np.flatnonzero(_surface((components > 0) & ~target))
    tree = cKDTree(np.stack(np.unravel_index(ends, target.shape), axis=1) * spacing)
    reach = distance_mm * (1 + 1e-9)  # a distance equal to distance_mm counts, as with <= on the transform
    distance, _ = tree.query(np.stack(np.unravel_index(query, target.shape), axis=1) * spacing,
                             distance_upper_bound=reach)
    near[components.ravel()[query[distance <= reach]]] = True
    near[0] = False
    return near


def _surface(mask: np.ndarray) -> np.ndarray:
    """(X, Y, Z) bool: voxels of ``mask`` with a 6-neighbour outside it (or on the array's edge)."""
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask)


#: Label values a lesion must lie in or touch: vertebral bone, or cord and thecal sac (epidural tumour).
_BONE_CLASSES = (1, 2)
_CANAL_CLASSES = (4, 5)
#: The measurements' definitions of lytic and blastic voxels (HU margins against the marrow).
_MEASURE = MeasureSettings()


@dataclass(frozen=True)
class LesionComponents:
    """The lesion components of a network output and what the clean-up judges them by.

    ``components``: (X, Y, Z) int component ids (26-connected voxels whose most likely class is
    lesion; 0 elsewhere); per id ``k`` (index 0 unused): ``volume_mm3[k]``, ``peak[k]`` and
    ``mean[k]`` (highest and mean lesion probability), ``touches_spine[k]`` (in or within ``touch_mm``
    of vertebral bone, the cord or the thecal sac) and ``touches_bone[k]`` (of vertebral bone alone;
    None when not computed: one distance pass fewer when the canal counts); ``classes``: the (X, Y, Z)
    class arg-max the components come from.
    """

    components: np.ndarray
    volume_mm3: np.ndarray
    peak: np.ndarray
    mean: np.ndarray
    touches_spine: np.ndarray
    touches_bone: np.ndarray | None
    classes: np.ndarray

    def keep(self, *, min_lesion_mm3: float, lesion_probability: float, mean_probability: float = 0.0,
             touch_canal: bool = True) -> tuple[np.ndarray, dict]:
        """(n + 1,) bool: which components the clean-up keeps with these thresholds, and the counts
        of kept and dropped components by the first reason that drops them."""
        counts = {"kept": 0, "outside_spine": 0, "too_small": 0, "low_probability": 0}
        if not touch_canal and self.touches_bone is None:
            raise ValueError("bone contact was not computed (lesion_components(bone_apart=True))")
        touching = self.touches_spine if touch_canal else self.touches_bone
        reasons = [("outside_spine", ~touching), ("too_small", self.volume_mm3 < min_lesion_mm3),
                   ("low_probability", (self.peak < lesion_probability) | (self.mean < mean_probability))]
        kept = np.ones(self.volume_mm3.size, bool)
        kept[0] = False
        for name, dropped in reasons:
            counts[name] = int(np.count_nonzero(kept & dropped))
            kept &= ~dropped
        counts["kept"] = int(np.count_nonzero(kept))
        return kept, counts

    def isodense_on_ct(self, *, which: np.ndarray, affine: np.ndarray, hu_at, min_typed_fraction: float,
                       lytic_hu_below_marrow: float = _MEASURE.lytic_hu_below_marrow,
                       blastic_hu_above_marrow: float = _MEASURE.blastic_hu_above_marrow,
                       marrow_reach_mm: float = 15.0, canal_margin_mm: float = 3.0) -> np.ndarray:
        """(n + 1,) bool: which of the components ``which`` (n + 1,) bool a CT cannot show as a lesion.

        CT shows a bone lesion by its density: a voxel is lytic under, blastic over the marrow by the
        measurement settings' margins (100 and 150 HU by default: the record's own definitions of the
        lytic/blastic/mixed types), the marrow being the median HU of the vertebral-body voxels within
        ``marrow_reach_mm`` of the component. A component is isodense when under ``min_typed_fraction``
        of its voxels outside the canal (farther than ``canal_margin_mm`` from the cord and thecal sac,
        whose CSF would read lytic) are lytic or blastic. Never isodense: a mixed lesion (lytic and
        blastic voxels, a median near marrow), an epidural mass with too few voxels outside the canal to
        judge (under a third, or under 10), a component with no body voxel near it.

        Args:
            affine: (4, 4) voxel -> RAS+ mm of the grid of ``classes``.
            hu_at: callable, (N, 3) RAS+ mm points -> (N,) HU of the scan (nearest voxel).
        """
        import cc3d

        labels, components = self.classes, self.components
        affine = np.asarray(affine, dtype=np.float64)
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        reach = np.ceil(marrow_reach_mm / spacing).astype(int)
        canal_reach = np.ceil(canal_margin_mm / spacing).astype(int)
        out = np.zeros(self.volume_mm3.size, bool)
        boxes = cc3d.statistics(components)["bounding_boxes"]
        for k in np.flatnonzero(which[: len(boxes)]):
            grown = tuple(slice(max(0, b.start - r), min(m, b.stop + r))
                          for b, r, m in zip(boxes[k], reach, labels.shape))
            own = components[grown] == k
            near_body = (labels[grown] == 1) & _within(own, reach)
            canal = np.isin(labels[grown], _CANAL_CLASSES)
            judged = own & ~(_within(canal, canal_reach) if canal.any() else np.zeros_like(canal))
            if near_body.sum() < 20 or judged.sum() < max(10, own.sum() / 3):
                continue
            origin = np.array([g.start for g in grown])

            def hu(mask: np.ndarray) -> np.ndarray:
                ijk = np.argwhere(mask) + origin
                return hu_at(ijk @ affine[:3, :3].T + affine[:3, 3])

            marrow = float(np.median(hu(near_body)))
            values = hu(judged)
            typed = np.mean((values < marrow - lytic_hu_below_marrow) | (values > marrow + blastic_hu_above_marrow))
            out[k] = typed < min_typed_fraction
        return out


def lesion_components(probabilities: torch.Tensor, *, spacing_mm, touch_mm: float = 2.0,
                      bone_apart: bool = True, classes: torch.Tensor | None = None) -> LesionComponents:
    """The :class:`LesionComponents` of (C, X, Y, Z) softmax ``probabilities`` on a grid of ``spacing_mm``;
    ``bone_apart``: also contact with bone alone (needed to judge without canal contact); ``classes``:
    their (X, Y, Z) ``class_argmax`` where the caller has it."""
    import cc3d

    from spinelesion.inference.resample import class_argmax

    labels = (class_argmax(probabilities) if classes is None else classes).cpu().numpy()
    lesion = labels == 3
    components, n = cc3d.connected_components(lesion.astype(np.uint8), connectivity=26, return_N=True)
    voxel_mm3 = float(np.prod([float(s) for s in spacing_mm]))
    ids = components[lesion]
    p_lesion = probabilities[3].float().cpu().numpy()[lesion]
    counts = np.bincount(ids, minlength=n + 1)
    peak = np.zeros(n + 1, np.float32)
    np.maximum.at(peak, ids, p_lesion)
    mean = np.bincount(ids, weights=p_lesion, minlength=n + 1) / np.maximum(counts, 1)

    def touching(classes) -> np.ndarray:
        return components_near(components, n=n, target=np.isin(labels, classes), spacing_mm=spacing_mm,
                               distance_mm=touch_mm)

    return LesionComponents(components=components, volume_mm3=counts * voxel_mm3, peak=peak, mean=mean,
                            touches_spine=touching(_BONE_CLASSES + _CANAL_CLASSES),
                            touches_bone=touching(_BONE_CLASSES) if bone_apart else None, classes=labels)


def keep_spinal_lesions(probabilities: torch.Tensor, *, spacing_mm, min_lesion_mm3: float = 65.0,
                        lesion_probability: float = 0.5, mean_probability: float = 0.0, touch_mm: float = 2.0,
                        touch_canal: bool = True, ct_density: dict | None = None,
                        classes: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Drop lesion components that a spine lesion cannot be (anatomy-aware clean-up).

    A lesion component (26-connected voxels whose most likely class is "lesion") is kept only when
    all of these hold:

    * it lies in or within ``touch_mm`` of spinal bone (vertebral body, posterior elements) or,
      with ``touch_canal``, of the canal contents (cord, thecal sac: epidural tumour); a "lesion"
      in the liver, a rib or the bowel is not a spine lesion. Without ``touch_canal`` an epidural
      mass must reach bone too (as one from a vertebral metastasis does);
    * its volume is at least ``min_lesion_mm3`` (65 mm³ is a sphere of 5 mm diameter);
    * its highest lesion probability reaches ``lesion_probability`` and its mean lesion
      probability over its voxels reaches ``mean_probability`` (0: no condition);
    * on CT (``ct_density``: the keyword arguments of :meth:`LesionComponents.isodense_on_ct`
      but ``which``: ``affine``, ``hu_at``, ``min_typed_fraction``), it is not as dense as the marrow
      around it (counted as "isodense").

    Dropped voxels lose their lesion probability, so they take their next most likely class
    (marrow of a body stays body). The thresholds are stored in the checkpoint (``postprocess``)
    and chosen on validation data (see the model card).

    Args:
        probabilities: (C, X, Y, Z) softmax output on the network grid; changed in place (as in
            :func:`keep_spine_structure`).
        spacing_mm: (3,) voxel size of that grid.
        classes: (X, Y, Z) uint8 ``class_argmax(probabilities)`` where the caller has it; kept equal to
            the arg-max of the result, in place (as in :func:`keep_spine_structure`).

    Returns:
        (``probabilities`` with the dropped components' lesion probability 0, counts of kept and
        dropped components by reason).
    """
    from spinelesion.inference.resample import class_argmax

    found = lesion_components(probabilities, spacing_mm=spacing_mm, touch_mm=touch_mm, bone_apart=not touch_canal,
                              classes=classes)
    kept, counts = found.keep(min_lesion_mm3=min_lesion_mm3, lesion_probability=lesion_probability,
                              mean_probability=mean_probability, touch_canal=touch_canal)
    if ct_density is not None:
        isodense = found.isodense_on_ct(which=kept, **ct_density)
        counts["isodense"] = int(np.count_nonzero(isodense))
        counts["kept"] -= counts["isodense"]
        kept &= ~isodense
    drop = ~kept
    drop[0] = False
    if not drop.any():
        return probabilities, counts
    dropped = torch.as_tensor(drop[found.components], device=probabilities.device)
    probabilities[3].masked_fill_(dropped, 0.0)
    if classes is not None:  # the dropped voxels' next most likely class
        classes[dropped] = class_argmax(probabilities[:, dropped])
    return probabilities, counts


def _within(mask: np.ndarray, reach_vox: np.ndarray) -> np.ndarray:
    """Voxels within ``reach_vox`` (per axis, an ellipsoid) of ``mask``."""
    from scipy import ndimage

    scale = np.maximum(reach_vox, 1).astype(float)
    distance = ndimage.distance_transform_edt(~mask, sampling=1.0 / scale)
    return distance <= 1.0
