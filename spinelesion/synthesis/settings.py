"""Ranges of the random appearance (no torch import: the training config builds on this)."""

from __future__ import annotations

from dataclasses import dataclass, field

from spinelesion.synthesis.tissues import FAMILIES


@dataclass(frozen=True, kw_only=True)
class AppearanceSettings:
    """Ranges of the random appearance (defaults: the issue's SynthSeg-style ranges).

    Attributes:
        families: family name -> probability (normalised); leave one out to hold it out.
        in_plane_mm, slice_mm: acquisition resolution ranges (mm) simulated on the patch grid.
        slice_prob: chance that a case has a thick-slice axis at all.
        bias_max: largest standard deviation of the log bias field.
        gamma_sd: standard deviation of log(gamma).
        noise_max: largest noise standard deviation (normalised units).
        ghost_prob, clip_prob: chance of motion ghosting / clipping of the brightest values.
        texture_max: largest texture amplitude (fraction of the image range).
        clutter_prob: chance that a case's soft tissues (fat, muscle, organs) are overpainted with
            random blobs, each of the intensity of a random tissue (bone and lesion included): shapes
            a real trunk has and the tissue maps do not, labelled background, so that intensity alone
            never says "vertebra" or "lesion" (SynthSeg's random background, for the spine's context).
        clutter_mm: range of the blobs' size (mm).
        marrow_var_max: largest standard deviation of a smooth log-factor field (cells of
            ``marrow_var_mm``) that multiplies everything inside bone (marrow, lesions, mimics): healthy
            marrow differs between vertebrae and within one (red and fatty marrow, age, basivertebral
            veins), and a lesion keeps its contrast to the marrow around it, so that a shift of the
            marrow's signal alone never says "lesion".
        marrow_var_mm: range of that field's cell size (mm).
        cortex_gap_prob: chance that part of the cortical shell (a smooth random region, up to half
            of it) takes the marrow's value: thin or partial-volumed cortex, the basivertebral
            foramen, osteoporosis. The label is unchanged.
        coarse_prob: chance that a case is acquired coarse in-plane as well (both in-plane axes at one
            pixel size from ``coarse_mm``, the slice axis at least as coarse): low-dose and thumbnail CT
            at 2-3.5 mm, coarser than the network's own grid, which ``in_plane_mm`` alone never reaches.
        coarse_mm: range of that pixel size (mm).
        low_cord_contrast_prob: chance (MR and random families) that the cord's signal is drawn close to
            the CSF's (a quarter of their drawn difference at most): T2* and thick slices where the cord
            is nearly as bright as the CSF round it, so that the canal's shape, not the cord's contrast,
            says where the cord is.
        slab_prob: chance that a patch is seen as a slab of a few slices (a partial field of view: an
            axial T2* slab, a few thick sagittal slices), cut along a random axis, normalised on its own
            and padded by repeating its edge slices, as inference pads a scan thinner than the patch
            (:func:`spinelesion.synthesis.fov.to_slab`).
        slab_mm: range of that slab's thickness (mm).
    """

    families: dict[str, float] = field(default_factory=lambda: {
        "ct": 0.3, "t1": 0.12, "t2": 0.12, "stir": 0.08, "t2star": 0.08, "random": 0.3})
    in_plane_mm: tuple[float, float] = (0.3, 1.5)
    slice_mm: tuple[float, float] = (1.0, 7.0)
    slice_prob: float = 0.7
    bias_max: float = 0.35
    gamma_sd: float = 0.25
    noise_max: float = 0.06
    ghost_prob: float = 0.1
    clip_prob: float = 0.15
    texture_max: float = 0.12
    clutter_prob: float = 0.0
    clutter_mm: tuple[float, float] = (6.0, 40.0)
    marrow_var_max: float = 0.0
    marrow_var_mm: tuple[float, float] = (15.0, 45.0)
    cortex_gap_prob: float = 0.0
    coarse_prob: float = 0.0
    coarse_mm: tuple[float, float] = (1.5, 3.5)
    low_cord_contrast_prob: float = 0.0
    slab_prob: float = 0.0
    slab_mm: tuple[float, float] = (15.0, 60.0)

    def __post_init__(self) -> None:
        unknown = set(self.families) - set(FAMILIES)
        if unknown or not self.families:
            raise ValueError(f"appearance families must be among {FAMILIES}, got {sorted(self.families)}")
        if any(p < 0 for p in self.families.values()) or sum(self.families.values()) <= 0:
            raise ValueError("family probabilities must be >= 0 and not all 0")
        for name in ("in_plane_mm", "slice_mm", "clutter_mm", "marrow_var_mm", "coarse_mm", "slab_mm"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} needs 0 < low <= high, got {lo}, {hi}")
        if self.marrow_var_max < 0 or not 0 <= self.cortex_gap_prob <= 1:
            raise ValueError("marrow_var_max must be >= 0 and cortex_gap_prob in [0, 1]")
        if not all(0 <= p <= 1 for p in (self.coarse_prob, self.low_cord_contrast_prob, self.slab_prob)):
            raise ValueError("coarse_prob, low_cord_contrast_prob and slab_prob are probabilities in [0, 1]")
