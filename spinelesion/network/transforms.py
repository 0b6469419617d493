"""MONAI transform chains: one preprocessing chain shared by training, validation and inference.

:func:`preprocessing_transforms` (orientation to RAS, resampling to ``spacing_mm``, modality-aware
intensity normalisation) is the only place these operations are defined; :func:`preprocess`
(inference) and :func:`train_transforms` / :func:`val_transforms` all build on it, so the
network sees the same numbers in training and at inference.

Keys of a training item: ``image`` (1, X, Y, Z) float32, ``label`` (1, X, Y, Z) class values of
label schema v1, ``annotated`` (NUM_CLASSES,) bool (which classes the case's dataset annotates),
``case_id`` str. The deterministic part ends before the first random transform, so CacheDataset /
PersistentDataset cache the preprocessed volume (and its per-class voxel indices for cropping).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.transforms import Transform

from spinelesion.errors import LabelMapError
from spinelesion.io.scan import Scan
from spinelesion.labels import NUM_CLASSES

IMAGE, LABEL, ANNOTATED, CASE = "image", "label", "annotated", "case"
INDICES = "label_cls_indices"


def scan_to_metatensor(scan: Scan, array: np.ndarray | None = None):
    """(1, X, Y, Z) MetaTensor of ``array`` (default the scan's voxels) carrying the scan's RAS affine."""
    from monai.data import MetaTensor

    voxels = scan.array if array is None else array
    return MetaTensor(torch.as_tensor(np.ascontiguousarray(voxels))[None],
                      affine=torch.as_tensor(scan.affine, dtype=torch.float64), meta={"space": "RAS"})


def intensity_transform(intensity: dict, *, keys: Sequence[str] = (IMAGE,)):
    """CT: clip HU to [min_hu, max_hu] and scale to [0, 1]. MR: map the lower/upper percentiles
    of the volume to [0, 1] and clip."""
    from monai.transforms import ScaleIntensityRanged, ScaleIntensityRangePercentilesd

    if intensity["kind"] == "ct_window":
        return ScaleIntensityRanged(keys=list(keys), a_min=float(intensity["min_hu"]),
                                    a_max=float(intensity["max_hu"]), b_min=0.0, b_max=1.0, clip=True)
    if intensity["kind"] in ("mr_percentile", "percentile"):
        return ScaleIntensityRangePercentilesd(keys=list(keys), lower=float(intensity["lower"]),
                                               upper=float(intensity["upper"]), b_min=0.0, b_max=1.0,
                                               clip=True)
    raise ValueError(f"unknown intensity kind {intensity['kind']!r}")


def preprocessing_transforms(preprocessing: dict, *, with_label: bool, tissue: bool = False) -> list:
    """Orientation (RAS), resampling to ``preprocessing["spacing_mm"]`` (image linear, label
    nearest), intensity normalisation of the image. ``preprocessing`` is the checkpoint's
    ``preprocessing`` record (:meth:`spinelesion.training.config.PreprocessingConfig.as_meta`).

    ``tissue``: the "image" is a tissue map (synthesis training): resampled nearest, not normalised."""
    from monai.transforms import Orientationd, Spacingd

    if preprocessing.get("orientation", "RAS") != "RAS":
        raise ValueError("only RAS orientation is supported")
    keys = [IMAGE, LABEL] if with_label else [IMAGE]
    modes = ["nearest" if tissue else "bilinear", "nearest"][: len(keys)]
    chain = [
        Orientationd(keys=keys, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        Spacingd(keys=keys, pixdim=[float(s) for s in preprocessing["spacing_mm"]], mode=modes,
                 padding_mode="border", dtype=np.float32),
    ]
    return chain if tissue else chain + [intensity_transform(preprocessing["intensity"])]


def preprocess(scan: Scan, *, preprocessing: dict) -> tuple[torch.Tensor, np.ndarray]:
    """The network input for ``scan``, exactly as training prepared it.

    Returns:
        (1, X', Y', Z') float32 tensor on the RAS grid at ``spacing_mm``, and the (4, 4) float64
        affine of that grid (voxel index -> RAS+ mm), to map predictions back to the input grid.
    """
    from monai.transforms import Compose

    out = Compose(preprocessing_transforms(preprocessing, with_label=False))(
        {IMAGE: scan_to_metatensor(scan, scan.array.astype(np.float32, copy=False))})
    image = out[IMAGE]
    affine = np.asarray(image.affine, dtype=np.float64)
    return image.as_tensor().float().contiguous(), affine


class LoadCased(Transform):
    """Item ``{"case": {...Case fields...}}`` -> image/label MetaTensors, annotated mask, case_id.

    Checks that the label map is on the image's grid (same shape) and holds only schema v1
    values; raises LabelMapError naming the label file otherwise. A MONAI ``Transform`` (so
    CacheDataset caches from here on) defined at module level (so workers can pickle it).
    """

    def __call__(self, item: dict) -> dict:
        from spinelesion.data.adapters import Case, get_adapter, load_case

        fields = dict(item[CASE])
        for key in ("image", "label"):
            if fields.get(key) is not None:
                fields[key] = Path(fields[key])
        case = Case(**fields)
        scan, labels, annotated = load_case(case)
        adapter = get_adapter(case.dataset)
        if hasattr(adapter, "to_tissue"):    # a label map: its "image" is the tissue map made from it
            scan = dataclasses.replace(scan, array=adapter.to_tissue(scan.array, labels=labels, case=case,
                                                     spacing_mm=scan.spacing_mm).astype(np.float32))
        if labels.shape != scan.array.shape:
            raise LabelMapError(f"{case.label}: label map shape {labels.shape} differs from image "
                                f"{case.image} shape {scan.array.shape}")
        top = int(labels.max()) if labels.size else 0
        if top >= NUM_CLASSES:
            bad = sorted(int(v) for v in np.unique(labels) if v >= NUM_CLASSES)
            raise LabelMapError(f"{case.label}: label values {bad[:10]} are outside the schema "
                                f"(0..{NUM_CLASSES - 1}) after the {case.dataset!r} mapping")
        return {IMAGE: scan_to_metatensor(scan, scan.array.astype(np.float32, copy=False)),
                LABEL: scan_to_metatensor(scan, labels.astype(np.float32)),
                ANNOTATED: torch.as_tensor(np.asarray(annotated, dtype=bool)),
                "case_id": str(case.case_id)}


def _deterministic(preprocessing: dict, *, patch_size: Sequence[int] | None, indices: bool,
                   tissue: bool = False) -> list:
    from monai.transforms import ClassesToIndicesd, EnsureTyped, SpatialPadd

    chain = [LoadCased(), *preprocessing_transforms(preprocessing, with_label=True, tissue=tissue)]
    if patch_size is not None:
        chain.append(SpatialPadd(keys=[IMAGE, LABEL], spatial_size=list(patch_size)))
    chain.append(EnsureTyped(keys=[IMAGE, LABEL], track_meta=False))
    if indices:
        chain.append(ClassesToIndicesd(keys=LABEL, num_classes=NUM_CLASSES))
    return chain


def train_transforms(*, preprocessing: dict, patch_size: Sequence[int], sampling, augment, tissue: bool = False,
                     whole_body_lesion_prob: float = 0.0):
    """Deterministic part (cached) then crops balanced by class and augmentation.

    ``sampling`` and ``augment`` are :class:`spinelesion.training.config.SamplingConfig` and
    :class:`~spinelesion.training.config.AugmentConfig`. Each item yields ``samples_per_volume`` patches.
    ``tissue``: items hold tissue maps as "image" (resampled and rotated nearest, no intensity
    augmentation): the training step synthesises the image (:mod:`spinelesion.synthesis`), after
    lesions are inserted into bone (a ``whole_body_lesion_prob`` share of them fill a vertebral body).
    """
    from monai import transforms as t

    keys = [IMAGE, LABEL]
    rotate = math.radians(augment.rotate_deg)
    chain = _deterministic(preprocessing, patch_size=patch_size, indices=True, tissue=tissue) + [
        t.RandCropByLabelClassesd(keys=keys, label_key=LABEL, spatial_size=list(patch_size),
                                  ratios=list(sampling.class_ratios), num_classes=NUM_CLASSES,
                                  num_samples=sampling.samples_per_volume, indices_key=INDICES,
                                  warn=False),
        t.DeleteItemsd(keys=INDICES),
    ]
    chain += [t.RandFlipd(keys=keys, prob=augment.flip_prob, spatial_axis=axis) for axis in augment.flip_axes]
    if augment.affine_prob > 0 and (rotate > 0 or augment.scale > 0):
        chain.append(t.RandAffined(keys=keys, prob=augment.affine_prob, rotate_range=(rotate,) * 3,
                                   scale_range=(augment.scale,) * 3,
                                   mode=["nearest" if tissue else "bilinear", "nearest"], padding_mode="border"))
    if tissue:
        from spinelesion.synthesis.lesions import RandInsertLesiond

        return t.Compose(chain + [t.EnsureTyped(keys=[IMAGE, LABEL], track_meta=False),
                                  RandInsertLesiond(keys=(IMAGE, LABEL), prob=0.3,
                                                    whole_body_prob=whole_body_lesion_prob)])
    chain += [
        t.RandScaleIntensityd(keys=IMAGE, factors=augment.intensity_scale, prob=augment.intensity_prob),
        t.RandShiftIntensityd(keys=IMAGE, offsets=augment.intensity_shift, prob=augment.intensity_prob),
        t.RandAdjustContrastd(keys=IMAGE, gamma=tuple(augment.gamma), prob=augment.gamma_prob),
        t.RandGaussianNoised(keys=IMAGE, std=augment.noise_std, prob=augment.noise_prob),
        t.EnsureTyped(keys=[IMAGE, LABEL], track_meta=False),
    ]
    return t.Compose(chain)


def val_transforms(*, preprocessing: dict):
    """Deterministic only: the whole preprocessed volume, for sliding-window validation."""
    from monai.transforms import Compose

    return Compose(_deterministic(preprocessing, patch_size=None, indices=False))


def case_item(case) -> dict:
    """The plain, picklable, hashable dataset item for one adapter ``Case``."""
    import dataclasses

    fields = dataclasses.asdict(case) if dataclasses.is_dataclass(case) else dict(case._asdict())
    return {CASE: {k: (str(v) if hasattr(v, "__fspath__") else v) for k, v in fields.items()}}
