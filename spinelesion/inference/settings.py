"""How ``spinelesion infer`` runs the network, as one validated object reachable from the CLI and YAML.

A settings file (``spinelesion infer --settings run.yaml``) has two optional sections::

    inference:                 # InferenceSettings (this module)
      overlap: 0.5
      tta: false
    measure:                   # spinelesion.measure.settings.MeasureSettings
      min_lesion_mm3: 65

Unknown keys and values out of range fail at load, naming the key.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from spinelesion.errors import ConfigError

#: Sliding-window padding modes (torch.nn.functional.pad names) for scans thinner than the patch.
PADDING_MODES = ("replicate", "reflect", "constant")


@dataclass(frozen=True, kw_only=True)
class InferenceSettings:
    """Options of :class:`~spinelesion.inference.predictor.Predictor`.

    Attributes:
        overlap: sliding-window overlap between neighbouring patches, [0, 1). Default 0.5.
        sw_batch_size: patches per network call. Default 2.
        tta: mirror test-time augmentation (the mean of the image and its mirror images along the
            axes the model was trained mirrored along: left-right for the default model, 2x the
            network time). Default false.
        amp: mixed precision on CUDA (ignored on the CPU). Default true.
        spine_margin_mm: foreground islands farther than this from the column are removed
            (:func:`~spinelesion.inference.postprocess.keep_spine_structure`); null keeps all. Default 10.
        padding: how the sliding window fills a scan thinner than the patch (an axial slab of a
            few slices): ``replicate`` (the edge slices continue, as the anatomy does; default),
            ``reflect`` or ``constant`` (zeros, dark as air). Measured on the axial T2* slabs of
            ``../shared/data/real/gm_challenge``: replicate gives the cord more voxels than zeros
            (docs/benchmarks.md has the figures).
        ct_lesion_min_typed_fraction: on CT, a lesion component is kept when at least this fraction
            of its voxels outside the canal is lytic or blastic against the marrow around it (the
            measurements' definitions: 100 HU under, 150 HU over), else dropped: a CT shows a bone
            lesion by its density (:meth:`~spinelesion.inference.postprocess.LesionComponents.isodense_on_ct`);
            null keeps them all. Part of the checkpoint's lesion clean-up: off where that is (``spine_margin_mm``
            null, or a checkpoint without one). Default 0.5.
        canal_fill_min_probability: background inside the dural canal's outline in an axial plane
            becomes cord or thecal sac where the network gives the canal at least this probability
            (:func:`~spinelesion.inference.refine.fill_canal`); null leaves it. Off with the
            rest of the clean-up (``spine_margin_mm`` null). Default 0.1.
        canal_max_off_line_mm: a piece of canal (cord and thecal sac) apart from the main one is kept when its
            centroid lies within this of the main canal's line or it lies between posterior elements
            (:func:`~spinelesion.inference.canal_line.keep_canal_in_line`); otherwise it is another tube the
            network mistook (aorta, kidney) and is dropped. null keeps every piece. Off with the rest of the
            clean-up. Default 15.
        ct_bone_reach_mm: on CT, posterior elements grow up to this far into the bone (HU >= 300)
            they touch (:func:`~spinelesion.inference.refine.grow_into_bone`); null leaves them as
            the network drew them. Off with the rest of the clean-up. Default 3.
        snap_cord_to_image: on the scan's own grid, the cord's outline moves to where the image's
            signal lies half-way between the cord's and the CSF's (the classic half-maximum edge), within
            two voxels of the network's outline and only between cord and thecal sac
            (:func:`~spinelesion.inference.refine.snap_cord_to_image`); where the scan does not show the
            cord against the CSF (a T2* cord as bright as its CSF) nothing changes; CT is not tried (a plain
            CT never shows the cord against the CSF, and finding the canal in a 512x512x600 CT costs 0.6-1 s).
            false leaves the network's outline. Off with the rest of the clean-up. Default true.
        ct_lytic_min_core_mm3: on CT, a lytic focus inside a vertebral body (soft-tissue density, 100 HU or
            more under the marrow, deeper than 3 mm in the body) becomes lesion when its core holds at least
            this many mm³ (:func:`~spinelesion.inference.ct_density.add_density_lesions`); null: not searched.
            Off with the rest of the clean-up. Default 250.
        ct_sclerotic_bodies: on CT, a vertebral body whose inner median lies 150 HU or more over the median of
            the column's bodies (three or more to compare; none holding metal) has its dense inner voxels made
            lesion (an "ivory vertebra"; :func:`~spinelesion.inference.ct_density.add_density_lesions`); false:
            not searched. Off with the rest of the clean-up. Default true.
        t1_marrow_min_core_mm3: on MR judged T1-weighted with fatty marrow from its own labels (CSF darker
            than the discs, marrow 1.5 times the discs), a focus deeper than 3 mm in a vertebral body at or
            under the discs' signal (the disc sign of marrow replacement) becomes lesion when its core holds
            at least this many mm³ (:func:`~spinelesion.inference.t1_marrow.t1_disc_sign`); null: not
            searched. Off with the rest of the clean-up. Default 250.
        t1_lesion_min_dark_share: on the same T1-weighted scans, a lesion component of the network of which
            under this share of voxels reach the discs' signal is marrow hyperintense to the disc, normal by
            the disc sign, and is dropped (:func:`~spinelesion.inference.t1_marrow.t1_disc_sign`); null: kept.
            Off with the rest of the clean-up. Default 0.1.
    """

    overlap: float = 0.5
    sw_batch_size: int = 2
    tta: bool = False
    amp: bool = True
    spine_margin_mm: float | None = 10.0
    padding: str = "replicate"
    ct_lesion_min_typed_fraction: float | None = 0.5
    canal_fill_min_probability: float | None = 0.1
    canal_max_off_line_mm: float | None = 15.0
    ct_bone_reach_mm: float | None = 3.0
    snap_cord_to_image: bool = True
    ct_lytic_min_core_mm3: float | None = 250.0
    ct_sclerotic_bodies: bool = True
    t1_marrow_min_core_mm3: float | None = 250.0
    t1_lesion_min_dark_share: float | None = 0.1

    def check(self) -> None:
        from spinelesion.typed_yaml import Invalid

        if not 0.0 <= self.overlap < 1.0:
            raise Invalid("overlap", f"must be in [0, 1), got {self.overlap}")
        if self.sw_batch_size < 1:
            raise Invalid("sw_batch_size", f"must be >= 1, got {self.sw_batch_size}")
        if self.spine_margin_mm is not None and self.spine_margin_mm < 0:
            raise Invalid("spine_margin_mm", f"must be >= 0 or null, got {self.spine_margin_mm}")
        if self.ct_lesion_min_typed_fraction is not None and not 0.0 <= self.ct_lesion_min_typed_fraction <= 1.0:
            raise Invalid("ct_lesion_min_typed_fraction",
                          f"must be in [0, 1] or null, got {self.ct_lesion_min_typed_fraction}")
        if self.canal_fill_min_probability is not None and not 0.0 <= self.canal_fill_min_probability <= 1.0:
            raise Invalid("canal_fill_min_probability",
                          f"must be in [0, 1] or null, got {self.canal_fill_min_probability}")
        if self.canal_max_off_line_mm is not None and self.canal_max_off_line_mm < 0:
            raise Invalid("canal_max_off_line_mm", f"must be >= 0 or null, got {self.canal_max_off_line_mm}")
        if self.ct_bone_reach_mm is not None and self.ct_bone_reach_mm < 0:
            raise Invalid("ct_bone_reach_mm", f"must be >= 0 or null, got {self.ct_bone_reach_mm}")
        if self.ct_lytic_min_core_mm3 is not None and self.ct_lytic_min_core_mm3 < 0:
            raise Invalid("ct_lytic_min_core_mm3", f"must be >= 0 or null, got {self.ct_lytic_min_core_mm3}")
        if self.t1_marrow_min_core_mm3 is not None and self.t1_marrow_min_core_mm3 < 0:
            raise Invalid("t1_marrow_min_core_mm3", f"must be >= 0 or null, got {self.t1_marrow_min_core_mm3}")
        if self.t1_lesion_min_dark_share is not None and not 0.0 <= self.t1_lesion_min_dark_share <= 1.0:
            raise Invalid("t1_lesion_min_dark_share", f"must be in [0, 1] or null, got {self.t1_lesion_min_dark_share}")
        if self.padding not in PADDING_MODES:
            raise Invalid("padding", f"must be one of {', '.join(PADDING_MODES)}, got {self.padding!r}")


@dataclass(frozen=True, kw_only=True)
class _RunFile:
    inference: InferenceSettings = dataclasses.field(default_factory=InferenceSettings)
    measure: dict[str, Any] = dataclasses.field(default_factory=dict)


def load_run_settings(path: str | os.PathLike | None, *, overrides: dict | None = None):
    """(InferenceSettings, MeasureSettings) from a settings file (None: the defaults), with
    ``overrides`` (InferenceSettings field -> value, e.g. from CLI flags) applied last.

    Raises:
        ConfigError: unreadable file, bad YAML, an unknown key or a value out of range.
    """
    from spinelesion.measure.settings import settings_from_dict
    from spinelesion.typed_yaml import build, read_yaml

    raw = (read_yaml(path, what="settings") or {}) if path is not None else {}
    source = "settings" if path is None else str(path)
    run = build(_RunFile, raw, "", source)
    inference = run.inference
    if overrides:
        inference = build(InferenceSettings, {**dataclasses.asdict(inference), **overrides}, "inference", source)
    try:
        measure = settings_from_dict(run.measure)
    except ConfigError as err:
        raise ConfigError(f"{source}: measure: {err}") from None
    return inference, measure
