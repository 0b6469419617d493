"""Thresholds and options of the measurement step, validated when made.

Every number here has a unit in its name and a documented default. ``MeasureSettings`` is frozen:
change a value with ``dataclasses.replace(settings, min_lesion_mm3=100.0)`` or build one from a dict
with :func:`settings_from_dict`, which rejects unknown keys (so a typo fails at once).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from spinelesion.errors import ConfigError
from spinelesion.vocabulary import BILSKY_GRADES



@dataclass(frozen=True, kw_only=True)
class MeasureSettings:
    """Configuration of :func:`spinelesion.measure.measure_labels`.

    Lesions and vertebrae:
        min_lesion_mm3: smallest lesion component kept (a 5 mm sphere is 65 mm^3). Default 30.
        min_disc_mm3: smallest disc component used to split the column. Default 50.
        min_vertebra_fraction: a vertebra candidate whose bone volume is under this fraction of the
            median candidate is dropped (slivers at the field-of-view edge). Default 0.25.
        reference_max_destruction_pct: a vertebra with at most this destruction may serve as a
            normal reference for the expected heights. Default 100 (a lesion alone does not
            change a body's height; collapse is tested separately).
        normal_min_height_ratio: ... and only if none of its heights is under this fraction of
            what the other references predict for it. Default 0.85 (0.9 excluded normal
            bodies whose smallest height read 1-1.5 mm low on 1-1.7 mm slices, which then lost
            their own reference role; collapse starts at 20 %).
        collapse_min_pct: height loss from which SINS counts the body as collapsed (Fisher 2010
            has no lower limit; this absorbs measurement noise; 20 % is where Genant 1993 starts grading). Default 20.
        posterolateral_min_mm3: lesion volume on one side, behind the body and lateral to the canal,
            that counts as posterolateral involvement (SINS). Default 20.
        lytic_hu_below_marrow: a lesion voxel is lytic when its HU is this far under normal marrow.
            Default 100.
        blastic_hu_above_marrow: a lesion voxel is blastic when its HU is this far above normal
            marrow. Default 150.
        mixed_min_fraction: a lesion is "mixed" when both lytic and blastic voxels make up at least
            this fraction of it. Default 0.2.

    Cord (Fehlings 1999; windows as in the Spinal Cord Toolbox ``sct_compute_compression``):
        cross_section_step_mm: spacing of the cross-sections along the centreline. Default 1.
        smoothing_mm: length of centreline over which diameters are averaged (running mean) before
            MSCC / MCC, against voxel noise: on ~1 mm voxels one cross-section's AP diameter of an
            8 mm cord is off by 0.2-0.4 mm depending on how the cord meets the grid, and the same
            error persists over the slices where it meets the grid alike; 7 mm spans several grid
            phases. A focal compression shorter than this reads a little low. Default 7.
        mscc_window_start_mm: distance from the compressed slice to the start of each normal
            window (SCT ``-distance``). Default 10.
        mscc_window_length_mm: length of each normal window (SCT ``-extent``). Default 20.
        cord_edge_from_image: with the image given, the voxels on the cord's edge count by their
            share of cord read from its signal between the cord's and the CSF's (partial volume;
            ``cord_edge.cord_shares``), where the image shows the cord against the CSF (MR, not plain
            CT). False: the labels' outline alone. Default true.
        cord_compressed_mscc_pct: MSCC from which the cord counts as compressed (Bilsky 2/3).
            Default 15.
        sac_deformed_mcc_pct: canal narrowing from which the thecal sac counts as deformed
            (Bilsky 1b, with the tumour touching the sac). Default 5.
        csf_visible_min_fraction: CSF (thecal sac label) area over canal area at the worst slice
            under which no CSF is visible around the cord (Bilsky 3). Default 0.08.
        cauda_compressed_mcc_pct: below the conus (no cord in the canal, caudal to it), the canal
            narrowing (MCC) at epidural tumour touching the sac from which the cauda equina counts as
            compressed (Bilsky 2 on the sac; ``cauda.py``): a third of the sac's AP diameter, as a
            15 mm lumbar sac narrowed to the 10 mm under which lumbar stenosis is called absolute
            (Verbiest). None: epidural tumour below the conus is not graded. Default 33.
        compression_bilsky_grades: Bilsky grades that raise the compression flag. Default 2, 3.
        compression_mscc_pct: an MSCC at or above this also raises the flag, with or without a
            lesion; None (default) turns that rule off.
    """

    min_lesion_mm3: float = 30.0
    min_disc_mm3: float = 50.0
    min_vertebra_fraction: float = 0.25
    reference_max_destruction_pct: float = 100.0
    normal_min_height_ratio: float = 0.85
    collapse_min_pct: float = 20.0
    posterolateral_min_mm3: float = 20.0
    lytic_hu_below_marrow: float = 100.0
    blastic_hu_above_marrow: float = 150.0
    mixed_min_fraction: float = 0.2
    auto_levels: bool = True
    cross_section_step_mm: float = 1.0
    smoothing_mm: float = 7.0
    mscc_window_start_mm: float = 10.0
    mscc_window_length_mm: float = 20.0
    cord_edge_from_image: bool = True
    cord_compressed_mscc_pct: float = 15.0
    sac_deformed_mcc_pct: float = 5.0
    csf_visible_min_fraction: float = 0.08
    cauda_compressed_mcc_pct: float | None = 33.0
    compression_bilsky_grades: tuple[str, ...] = ("2", "3")
    compression_mscc_pct: float | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "compression_bilsky_grades":
                if isinstance(value, str) or not all(g in BILSKY_GRADES for g in value):
                    raise ConfigError(f"measure setting {f.name}: each grade must be one of "
                                      f"{', '.join(BILSKY_GRADES)}, got {value!r}")
                object.__setattr__(self, f.name, tuple(value))
                continue
            if value is None and f.name in ("compression_mscc_pct", "cauda_compressed_mcc_pct"):
                continue
            if f.name in ("auto_levels", "cord_edge_from_image"):
                if not isinstance(value, bool):
                    raise ConfigError(f"measure setting {f.name}: expected true or false, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"measure setting {f.name}: expected a number, got {value!r}")
            if not value >= 0:
                raise ConfigError(f"measure setting {f.name}: must be >= 0, got {value!r}")
        for name in ("min_vertebra_fraction", "normal_min_height_ratio", "csf_visible_min_fraction",
                     "mixed_min_fraction"):
            if getattr(self, name) > 1:
                raise ConfigError(f"measure setting {name}: a fraction, must be <= 1, got {getattr(self, name)}")
        if self.cross_section_step_mm <= 0 or self.mscc_window_length_mm <= 0:
            raise ConfigError("measure settings cross_section_step_mm and mscc_window_length_mm must be > 0")


def settings_from_dict(values: dict) -> MeasureSettings:
    """Build settings from a plain dict (e.g. a YAML section); unknown keys raise ConfigError."""
    known = {f.name for f in dataclasses.fields(MeasureSettings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown measure setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return MeasureSettings(**values)
