"""Tissue classes of a tissue map, and the appearance families that give them intensities.

The first 16 classes are those the phantom renderer has always drawn
(:mod:`spinelesion.data.phantoms.imaging` takes its ids from here); the rest add the context and
mimics of real scans. Which output label a tissue voxel gets is not decided here: a rib is
``CORTEX``/``MARROW`` tissue with label 0, a haemangioma is ``HAEMANGIOMA`` tissue with label
"vertebral body". Labels travel beside the tissue map.

Families (how intensities are drawn per case, :mod:`spinelesion.synthesis.appearance`):

* ``ct``: Hounsfield units from :data:`CT_HU` (mean, spread), each tissue perturbed;
* ``t1``, ``t2``, ``stir``, ``t2star``: relative MR signal from :data:`MR_SIGNAL`, perturbed;
* ``random``: every tissue an independent uniform value (SynthSeg's "any contrast").

Values are textbook figures, rounded: CT HU (cortical bone 1000-1500, red marrow 150-300, lytic
metastasis 30-80, fat -100, air -1000, contrast-filled bowel 200-400, metal > 2000); MR relative
to the brightest tissue of each weighting (fat bright on T1 and T2 TSE, suppressed on STIR; CSF
bright on T2/STIR/T2*, dark on T1; cortex and metal signal voids; haemangioma bright on T1 and T2,
metastasis dark on T1 and bright on STIR).

The benign mimics carry the signs by which radiologists tell them from metastases (without them a
mimic is a lesion in all but its label):

* bone island against blastic metastasis on CT: enostoses 1190 +- 239 HU mean attenuation,
  untreated osteoblastic metastases 654 +- 176 HU (Ulano et al., AJR 2016;207:362-8; 885 HU
  separated them with 95 % sensitivity and 96 % specificity); bone islands are also small (the
  context phantoms draw them at most 4 mm in radius);
* haemangioma against lytic metastasis on CT: fatty stroma between thickened trabeculae, so a
  hypodense (fat-containing) focus with coarse texture (Gaudino et al., Skeletal Radiol
  2015;44:25-36), where a lytic metastasis has soft-tissue density; on MR, bright on T1 where a
  metastasis is dark. Lipid-poor "atypical" haemangiomas are ambiguous in real scans too.
"""

from __future__ import annotations

#: Tissue names in class order (class id = position).
TISSUES: tuple[str, ...] = (
    "air", "fat", "soft", "muscle", "lung", "cortex", "marrow", "annulus", "nucleus", "csf", "cord",
    "lytic", "blastic", "epidural", "vessel", "epidural_fat",
    # context and mimics (not drawn by the phantom renderer before schema of tissues v2)
    "liver", "kidney", "bowel_wall", "bowel_gas", "bowel_contrast", "plaque", "metal",
    "haemangioma", "bone_island", "modic", "fluid", "unknown",
)
N_TISSUES = len(TISSUES)
ID = {name: i for i, name in enumerate(TISSUES)}

FAMILIES: tuple[str, ...] = ("ct", "t1", "t2", "stir", "t2star", "random")

#: name -> (mean HU, spread HU between cases).
CT_HU: dict[str, tuple[float, float]] = {
    "air": (-1000, 20), "fat": (-100, 20), "soft": (40, 15), "muscle": (50, 10), "lung": (-850, 50),
    "cortex": (1250, 250), "marrow": (240, 90), "annulus": (90, 20), "nucleus": (75, 20),
    "csf": (8, 6), "cord": (35, 8), "lytic": (55, 30), "blastic": (680, 200), "epidural": (60, 20),
    "vessel": (45, 120), "epidural_fat": (-90, 20), "liver": (60, 40), "kidney": (40, 80),
    "bowel_wall": (40, 20), "bowel_gas": (-950, 50), "bowel_contrast": (300, 120),
    "plaque": (700, 250), "metal": (2800, 300), "haemangioma": (-30, 35), "bone_island": (1190, 220),
    "modic": (300, 150), "fluid": (10, 10), "unknown": (30, 80),
}

#: name -> relative signal (0..1) on T1, T2 (TSE, fat bright), STIR / T2 fat-suppressed, T2*.
MR_SIGNAL: dict[str, tuple[float, float, float, float]] = {
    "air": (0.0, 0.0, 0.0, 0.0), "fat": (1.0, 0.8, 0.1, 0.5), "soft": (0.45, 0.35, 0.35, 0.35),
    "muscle": (0.38, 0.22, 0.2, 0.25), "lung": (0.03, 0.03, 0.05, 0.02),
    "cortex": (0.05, 0.04, 0.04, 0.03), "marrow": (0.75, 0.55, 0.18, 0.2),
    "annulus": (0.35, 0.25, 0.25, 0.3), "nucleus": (0.4, 0.8, 0.75, 0.6),
    "csf": (0.15, 1.0, 1.0, 0.9), "cord": (0.5, 0.45, 0.45, 0.55), "lytic": (0.25, 0.7, 0.8, 0.5),
    "blastic": (0.08, 0.1, 0.12, 0.08), "epidural": (0.3, 0.6, 0.7, 0.45),
    "vessel": (0.25, 0.15, 0.3, 0.6), "epidural_fat": (0.95, 0.75, 0.12, 0.45),
    "liver": (0.55, 0.3, 0.3, 0.2), "kidney": (0.4, 0.6, 0.6, 0.4), "bowel_wall": (0.4, 0.45, 0.45, 0.4),
    "bowel_gas": (0.0, 0.0, 0.0, 0.0), "bowel_contrast": (0.3, 0.8, 0.8, 0.5),
    "plaque": (0.05, 0.05, 0.05, 0.03), "metal": (0.0, 0.0, 0.0, 0.0),
    "haemangioma": (0.9, 0.85, 0.6, 0.5), "bone_island": (0.05, 0.05, 0.05, 0.04),
    "modic": (0.3, 0.7, 0.75, 0.4), "fluid": (0.1, 0.95, 0.95, 0.85), "unknown": (0.4, 0.4, 0.4, 0.4),
}

#: Tissues whose signal varies in space (trabecular texture, lesion heterogeneity), relative weight.
TEXTURED: dict[str, float] = {"marrow": 1.0, "lytic": 0.6, "blastic": 0.8, "epidural": 0.5,
                              "soft": 0.4, "liver": 0.3, "bowel_wall": 0.6, "bowel_contrast": 0.8,
                              "haemangioma": 1.0, "modic": 0.6, "unknown": 1.0, "fat": 0.2}

assert set(CT_HU) == set(TISSUES) == set(MR_SIGNAL), "every tissue needs a CT and an MR value"
