"""Training configuration: typed, read-only views over a YAML file, validated on load.

A typo fails at load, not three hours into training (the nnU-Net ``ConfigurationManager`` idea):
every key is a field of a frozen dataclass below; an unknown key, a wrong type or a value out of
range raises :class:`~spinelesion.errors.ConfigError` naming the key path, e.g. ``optim.lr``.
Every key is explained in ``configs/README.md``.

Overrides (``--set key.sub=value``) are applied to the raw YAML before validation; list items are
addressed by index (``data.sources.0.root=runs/phantoms``) and each value is parsed with
``yaml.safe_load`` (so ``3``, ``1.0e-3``, ``true``, ``[64, 64, 64]`` and ``null`` work).
Relative paths in a config are relative to the current working directory.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from spinelesion.errors import ConfigError
from spinelesion.labels import NUM_CLASSES
from spinelesion.synthesis.settings import AppearanceSettings
from spinelesion.typed_yaml import Invalid as _Invalid
from spinelesion.typed_yaml import apply_override, build, plain, read_yaml


@dataclass(frozen=True, kw_only=True)
class DataSource:
    adapter: str
    root: str
    description: str | None = None

    def check(self) -> None:
        from spinelesion.data.adapters import ADAPTERS  # the one registry of adapters

        if self.adapter not in ADAPTERS:
            raise _Invalid("adapter", f"unknown adapter {self.adapter!r}; choose one of {', '.join(ADAPTERS)}")
        if self.description is not None and self.adapter != "labelmaps":
            raise _Invalid("description", "is read by the 'labelmaps' adapter only")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    sources: tuple[DataSource, ...]
    validation_sources: tuple[DataSource, ...] = ()
    val_fraction: float = 0.2
    cache: Literal["memory", "disk"] = "memory"
    cache_dir: str | None = None
    num_workers: int = 0

    def check(self) -> None:
        if not self.sources:
            raise _Invalid("sources", "needs at least one data source")
        if not 0.0 <= self.val_fraction < 1.0:
            raise _Invalid("val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        if self.cache == "disk" and not self.cache_dir:
            raise _Invalid("cache_dir", "is required when data.cache is 'disk'")
        if self.num_workers < 0:
            raise _Invalid("num_workers", "must be >= 0")


@dataclass(frozen=True, kw_only=True)
class IntensityConfig:
    kind: Literal["ct_window", "mr_percentile", "percentile"]
    min_hu: float = -1000.0
    max_hu: float = 1500.0
    lower: float = 0.5
    upper: float = 99.5

    def check(self) -> None:
        if self.kind == "ct_window" and not self.min_hu < self.max_hu:
            raise _Invalid("max_hu", f"must be above min_hu ({self.min_hu}), got {self.max_hu}")
        if self.kind in ("mr_percentile", "percentile") and not 0.0 <= self.lower < self.upper <= 100.0:
            raise _Invalid("upper", f"need 0 <= lower < upper <= 100, got {self.lower}, {self.upper}")

    def as_meta(self) -> dict:
        """The checkpoint's ``preprocessing.intensity`` record (only the keys of this kind)."""
        if self.kind == "ct_window":
            return {"kind": "ct_window", "min_hu": self.min_hu, "max_hu": self.max_hu}
        return {"kind": self.kind, "lower": self.lower, "upper": self.upper}


@dataclass(frozen=True, kw_only=True)
class PreprocessingConfig:
    modality: Literal["CT", "MR", "any"]
    spacing_mm: tuple[float, float, float]
    intensity: IntensityConfig

    def check(self) -> None:
        if any(s <= 0 for s in self.spacing_mm):
            raise _Invalid("spacing_mm", f"must be positive, got {list(self.spacing_mm)}")
        wanted = {"CT": "ct_window", "MR": "mr_percentile", "any": "percentile"}[self.modality]
        if self.intensity.kind != wanted and not (self.intensity.kind == "percentile" and self.modality != "CT"):
            raise _Invalid("intensity", f"kind {self.intensity.kind!r} does not suit modality "
                                        f"{self.modality}; use {wanted!r}")

    def as_meta(self) -> dict:
        """The checkpoint's ``preprocessing`` record, which :func:`transforms.preprocess` takes."""
        return {"orientation": "RAS", "spacing_mm": list(self.spacing_mm), "modality": self.modality,
                "intensity": self.intensity.as_meta()}


@dataclass(frozen=True, kw_only=True)
class SamplingConfig:
    samples_per_volume: int = 2
    class_ratios: tuple[float, ...] = (1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0)

    def check(self) -> None:
        if self.samples_per_volume < 1:
            raise _Invalid("samples_per_volume", "must be >= 1")
        if len(self.class_ratios) != NUM_CLASSES or any(r < 0 for r in self.class_ratios):
            raise _Invalid("class_ratios", f"needs {NUM_CLASSES} non-negative numbers (one per class)")
        if sum(self.class_ratios) <= 0:
            raise _Invalid("class_ratios", "must not all be zero")


@dataclass(frozen=True, kw_only=True)
class AugmentConfig:
    flip_prob: float = 0.5
    flip_axes: tuple[int, ...] = (0,)
    rotate_deg: float = 10.0
    scale: float = 0.1
    affine_prob: float = 0.2
    intensity_scale: float = 0.1
    intensity_shift: float = 0.1
    intensity_prob: float = 0.5
    gamma: tuple[float, float] = (0.7, 1.5)
    gamma_prob: float = 0.15
    noise_std: float = 0.02
    noise_prob: float = 0.15

    def check(self) -> None:
        for name in ("flip_prob", "affine_prob", "intensity_prob", "gamma_prob", "noise_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise _Invalid(name, f"is a probability in [0, 1], got {getattr(self, name)}")
        if any(a not in (0, 1, 2) for a in self.flip_axes):
            raise _Invalid("flip_axes", f"axes are 0, 1, 2 (RAS), got {list(self.flip_axes)}")
        if not 0 < self.gamma[0] <= self.gamma[1]:
            raise _Invalid("gamma", f"needs 0 < low <= high, got {list(self.gamma)}")
        for name in ("rotate_deg", "scale", "intensity_scale", "intensity_shift", "noise_std"):
            if getattr(self, name) < 0:
                raise _Invalid(name, "must be >= 0")


@dataclass(frozen=True, kw_only=True)
class SynthesisConfig(AppearanceSettings):
    """Images synthesised from tissue maps in the training step (``tissue``/``labelmaps`` sources);
    the other keys are those of :class:`~spinelesion.synthesis.settings.AppearanceSettings`.

    ``whole_body_lesion_prob``: share of the inserted lesions (:class:`~spinelesion.synthesis.lesions.
    RandInsertLesiond`) that fill a whole vertebral body inside its cortex instead of an ellipsoid."""

    enabled: bool = False
    whole_body_lesion_prob: float = 0.0

    def __post_init__(self) -> None:  # checked by check(), which names the key
        pass

    def check(self) -> None:
        try:
            AppearanceSettings.__post_init__(self)
        except ValueError as err:
            raise _Invalid("families", str(err)) from None
        for name in ("slice_prob", "ghost_prob", "clip_prob", "clutter_prob", "whole_body_lesion_prob", "cortex_gap_prob",
                     "coarse_prob", "low_cord_contrast_prob", "slab_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise _Invalid(name, f"is a probability in [0, 1], got {getattr(self, name)}")

    def settings(self) -> AppearanceSettings:
        """The appearance settings alone (without ``enabled``)."""
        return AppearanceSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(AppearanceSettings)})


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        from spinelesion.network.factory import NETWORKS  # the one registry of networks

        if self.name not in NETWORKS:
            raise _Invalid("name", f"unknown network {self.name!r}; choose one of {', '.join(NETWORKS)}")


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    dice_weight: float = 1.0
    ce_weight: float = 1.0
    class_weights: tuple[float, ...] | None = None
    mask_unannotated: bool = True

    def check(self) -> None:
        if self.dice_weight < 0 or self.ce_weight < 0 or self.dice_weight + self.ce_weight == 0:
            raise _Invalid("dice_weight", "dice_weight and ce_weight must be >= 0, not both 0")
        if self.class_weights is not None and (len(self.class_weights) != NUM_CLASSES
                                               or any(w < 0 for w in self.class_weights)):
            raise _Invalid("class_weights", f"needs {NUM_CLASSES} non-negative numbers or null")


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-5
    momentum: float = 0.99
    schedule: Literal["cosine", "poly", "constant"] = "cosine"
    warmup_epochs: int = 0

    def check(self) -> None:
        if self.lr <= 0:
            raise _Invalid("lr", f"must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.warmup_epochs < 0:
            raise _Invalid("weight_decay", "weight_decay and warmup_epochs must be >= 0")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    epochs: int
    steps_per_epoch: int | None = None
    batch_size: int = 2
    amp: bool = True
    grad_clip_norm: float | None = 12.0
    deterministic: bool = False
    tensorboard: bool = True
    init_from: str | None = None

    def check(self) -> None:
        if self.init_from is not None and not str(self.init_from).strip():
            raise _Invalid("init_from", "must be a checkpoint path or null")
        if self.epochs < 1 or self.batch_size < 1:
            raise _Invalid("epochs", "epochs and batch_size must be >= 1")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise _Invalid("steps_per_epoch", "must be >= 1 or null (one pass over the data)")
        if self.grad_clip_norm is not None and self.grad_clip_norm <= 0:
            raise _Invalid("grad_clip_norm", "must be > 0 or null (no clipping)")


@dataclass(frozen=True, kw_only=True)
class ValidationConfig:
    interval: int = 1
    metric: Literal["mean_dice", "lesion_dice", "lesion_sensitivity"] = "mean_dice"
    sw_batch_size: int = 2
    overlap: float = 0.25

    def check(self) -> None:
        if self.interval < 1 or self.sw_batch_size < 1:
            raise _Invalid("interval", "interval and sw_batch_size must be >= 1")
        if not 0.0 <= self.overlap < 1.0:
            raise _Invalid("overlap", f"must be in [0, 1), got {self.overlap}")


@dataclass(frozen=True, kw_only=True)
class Config:
    """One training experiment. Shapes and units are in the field names; see configs/README.md."""

    output_dir: str
    seed: int = 0
    data: DataConfig
    preprocessing: PreprocessingConfig
    patch_size: tuple[int, int, int]
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    network: NetworkConfig
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)

    def check(self) -> None:
        if any(p < 8 for p in self.patch_size):
            raise _Invalid("patch_size", f"each side must be >= 8 voxels, got {list(self.patch_size)}")
        tissue = [s.adapter in ("tissue", "labelmaps") for s in self.data.sources]
        if self.synthesis.enabled and not all(tissue):
            raise _Invalid("data.sources", "synthesis.enabled trains on tissue maps only: every source "
                                           "needs adapter 'tissue' or 'labelmaps'")
        if any(tissue) and not self.synthesis.enabled:
            raise _Invalid("synthesis.enabled", "'tissue' and 'labelmaps' sources need synthesis.enabled: true")
        if self.synthesis.enabled and self.preprocessing.intensity.kind == "ct_window":
            raise _Invalid("preprocessing.intensity", "synthesised images are percentile-normalised: "
                                                      "use kind 'percentile' (modality 'any')")

    def to_dict(self) -> dict:
        """Plain JSON/YAML-ready dict (tuples become lists)."""
        return plain(dataclasses.asdict(self))


def load_config(path: str | os.PathLike, *, overrides: typing.Sequence[str] = ()) -> Config:
    """Read, override and validate a YAML config.

    Args:
        path: the YAML file.
        overrides: ``"key.sub=value"`` strings applied in order before validation.

    Raises:
        ConfigError: missing/unreadable file, bad YAML, bad override, unknown key, wrong type,
            out-of-range value or network parameter; the message names the file or key path.
    """
    raw = read_yaml(path, what="config")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    for item in overrides:
        apply_override(raw, item)
    return config_from_dict(raw, source=str(path))


def config_from_dict(raw: dict, *, source: str = "config") -> Config:
    """Validate a plain dict (as read from YAML, or a checkpoint's ``meta["config"]``)."""
    config = build(Config, raw, "", source)
    from spinelesion.network.factory import check_network  # the network's own parameter names and patch rules

    try:
        check_network(name=config.network.name, params=config.network.params, patch_size=config.patch_size)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return config
