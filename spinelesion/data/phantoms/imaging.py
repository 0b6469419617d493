"""Imaging: the output grid (spacing, orientation, oblique tilt) and tissue -> intensity (CT, T1, T2).

Tissue intensities follow textbook values: CT in HU (cortical bone 1000-1500, red/yellow marrow
150-300, lytic metastasis 30-80, blastic 800-1200, muscle ~45, fat ~-100, air -1000, CSF ~10);
T1-weighted spin echo (fat and fatty marrow bright, metastases and CSF dark); T2 with fat
suppression / STIR (CSF and lytic metastases bright, marrow and fat dark, blastic lesions dark).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from spinelesion.synthesis.tissues import CT_HU, MR_SIGNAL, N_TISSUES, TISSUES

# tissue classes (uint8), rendered by the lookup tables below; ids from spinelesion.synthesis.tissues
AIR, FAT, SOFT, MUSCLE, LUNG, CORTEX, MARROW, ANNULUS, NUCLEUS, CSF, CORD, LYTIC, BLASTIC, EPIDURAL, \
    VESSEL, EPIDURAL_FAT = range(16)

#: name -> (CT HU, T1, T2-STIR) for each tissue class, in class order. MR values are relative.
TISSUE_VALUES: dict[str, tuple[float, float, float]] = {
    "air": (-1000, 0.0, 0.0), "fat": (-100, 1.0, 0.12), "soft": (40, 0.45, 0.35),
    "muscle": (50, 0.38, 0.22), "lung": (-850, 0.03, 0.05), "cortex": (1250, 0.06, 0.05),
    "marrow": (240, 0.78, 0.2), "annulus": (90, 0.36, 0.3), "nucleus": (75, 0.42, 0.75),
    "csf": (8, 0.16, 1.0), "cord": (35, 0.5, 0.5), "lytic": (55, 0.24, 0.78),
    "blastic": (1000, 0.08, 0.12), "epidural": (60, 0.3, 0.7), "vessel": (45, 0.3, 0.2),
    "epidural_fat": (-90, 0.95, 0.12),
}
# context tissues (phantoms drawn with context): the synthesis tables' CT mean, T1 and STIR values
TISSUE_VALUES.update({name: (CT_HU[name][0], MR_SIGNAL[name][0], MR_SIGNAL[name][2])
                      for name in TISSUES[len(TISSUE_VALUES):]})
assert tuple(TISSUE_VALUES) == TISSUES
ORIENTATIONS: dict[str, np.ndarray] = {  # columns: world direction of array axes 0, 1, 2 (RAS+)
    "RAS": np.eye(3),
    "LPS": np.diag([-1.0, -1.0, 1.0]),
    "PSR": np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
}


def draw_grid(rng: np.random.Generator, *, modality: str, orientation: str | None, oblique: bool | None) -> dict:
    """Draw orientation, oblique tilt and spacing. Axis 2 is the slice (through-plane) axis."""
    if orientation is None:
        orientation = str(rng.choice(list(ORIENTATIONS)))
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {sorted(ORIENTATIONS)}, got {orientation!r}")
    if oblique is None:
        oblique = bool(rng.random() < 0.3)
    rotvec = [0.0, 0.0, 0.0]
    if oblique:
        axis = rng.normal(size=3)
        rotvec = [float(x) for x in axis / np.linalg.norm(axis) * np.radians(rng.uniform(4, 15))]
    in_plane = float(rng.uniform(0.8, 1.2))
    slice_mm = float(rng.uniform(1.0, 2.0) if modality == "ct" else rng.uniform(1.5, 3.0))
    return {"orientation": orientation, "oblique": oblique, "oblique_rotvec": rotvec,
            "spacing_mm": [in_plane, in_plane, slice_mm],
            "margin_mm": [float(x) for x in rng.uniform(4, 25, 6)]}


def fit_grid(grid: dict, points_mm: np.ndarray, *, shape_limit_vox: int) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Affine (4, 4) and shape of a grid of the drawn orientation covering ``points_mm`` (N, 3).

    Spacing grows on an axis only where the field of view would exceed ``shape_limit_vox`` voxels."""
    direction = Rotation.from_rotvec(grid["oblique_rotvec"]).as_matrix() @ ORIENTATIONS[grid["orientation"]]
    q = points_mm @ direction                      # coordinates along the array axes
    margin = np.asarray(grid["margin_mm"]).reshape(3, 2)
    lo, hi = q.min(axis=0) - margin[:, 0], q.max(axis=0) + margin[:, 1]
    spacing = np.asarray(grid["spacing_mm"], float)
    shape = np.floor((hi - lo) / spacing).astype(int) + 1
    for ax in range(3):
        if shape[ax] > shape_limit_vox:
            spacing[ax] = (hi[ax] - lo[ax]) / (shape_limit_vox - 1)
            shape[ax] = shape_limit_vox
    grid["spacing_mm"] = [float(s) for s in spacing]
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing[None, :]
    affine[:3, 3] = direction @ lo
    return affine, (int(shape[0]), int(shape[1]), int(shape[2]))


def draw_imaging(rng: np.random.Generator, *, modality: str) -> dict:
    """Draw intensity jitter, noise, blur and bias field parameters (JSON-serialisable)."""
    return {
        "value_jitter": [float(x) for x in rng.uniform(-0.08, 0.08, N_TISSUES)],
        "noise": float(rng.uniform(10, 20)) if modality == "ct" else float(rng.uniform(0.015, 0.035)),
        "blur_sigma_vox": [float(rng.uniform(0.35, 0.6))] * 2 + [float(rng.uniform(0.25, 0.45))],
        "texture_amplitude": float(rng.uniform(0.6, 1.2)),
        "bias": [float(x) for x in rng.normal(0, 0.12, 9)] if modality != "ct" else [0.0] * 9,
        "mr_scale": float(rng.uniform(600, 1400)),
        "noise_seed": int(rng.integers(0, 2**31 - 1)),
    }


def tissue_lut(modality: str, jitter: list[float]) -> np.ndarray:
    """(N_TISSUES,) float32 intensity per tissue class for ``modality`` in {ct, t1, t2}."""
    col = {"ct": 0, "t1": 1, "t2": 2}[modality]
    base = np.array([vals[col] for vals in TISSUE_VALUES.values()], np.float32)
    if modality == "ct":
        scale = np.where(np.abs(base) > 500, 0.15, 0.5) * np.abs(base) + 15
        return base + np.asarray(jitter, np.float32) * scale
    return np.clip(base * (1 + np.asarray(jitter, np.float32)), 0, None)


def texture_field(rng: np.random.Generator, shape: tuple[int, ...], *, cell_vox: float = 2.5) -> np.ndarray:
    """Smooth random field (float32, unit spread) made on a coarse grid and upsampled linearly."""
    coarse = tuple(max(2, int(np.ceil(n / cell_vox)) + 1) for n in shape)
    field = rng.standard_normal(coarse).astype(np.float32)
    zoom = [n / c for n, c in zip(shape, coarse)]
    out = ndimage.zoom(field, zoom, order=1, prefilter=False, grid_mode=True, mode="nearest")
    return out[: shape[0], : shape[1], : shape[2]]


def render_intensity(tissue: np.ndarray, *, modality: str, imaging: dict, texture: np.ndarray,
                     n_sub: int) -> np.ndarray:
    """Intensities on the final grid from tissue classes on the slice-supersampled grid.

    Args:
        tissue: (X, Y, Z * n_sub) uint8 tissue classes.
        texture: same shape, float32 smooth noise (marrow trabecular texture, lesion heterogeneity).
        n_sub: sub-slices per output slice, averaged (partial volume across thick slices).

    Returns:
        (X, Y, Z) float32: CT in integer HU, MR in non-negative integer units.
    """
    rng = np.random.default_rng(imaging["noise_seed"])
    lut = tissue_lut(modality, imaging["value_jitter"])
    img = lut[tissue]
    amp = imaging["texture_amplitude"]
    if modality == "ct":
        tex_scale = np.zeros(N_TISSUES, np.float32)
        tex_scale[[MARROW, LYTIC, BLASTIC, EPIDURAL, SOFT]] = [45, 12, 120, 10, 8]
    else:
        tex_scale = np.zeros(N_TISSUES, np.float32)
        tex_scale[[MARROW, LYTIC, BLASTIC, EPIDURAL, SOFT, FAT]] = [0.06, 0.05, 0.02, 0.05, 0.03, 0.03]
    img += amp * tex_scale[tissue] * texture
    if n_sub > 1:
        img = img.reshape(img.shape[0], img.shape[1], -1, n_sub).mean(axis=3)
    img = ndimage.gaussian_filter(img, imaging["blur_sigma_vox"], mode="nearest")
    if modality == "ct":
        img += rng.normal(0, imaging["noise"], img.shape).astype(np.float32)
        return np.rint(np.clip(img, -1024, 3071)).astype(np.float32)
    img *= _bias_field(img.shape, imaging["bias"])
    sigma = imaging["noise"]
    re = img + rng.normal(0, sigma, img.shape).astype(np.float32)
    im = rng.normal(0, sigma, img.shape).astype(np.float32)
    img = np.sqrt(re * re + im * im) * imaging["mr_scale"]      # Rician magnitude
    return np.rint(img).astype(np.float32)


def _bias_field(shape: tuple[int, ...], coeffs: list[float]) -> np.ndarray:
    """Smooth multiplicative field exp(quadratic polynomial) over the normalised grid."""
    x, y, z = (np.linspace(-1, 1, n, dtype=np.float32) for n in shape)
    c = coeffs
    fx = c[0] * x + c[3] * x * x
    fy = c[1] * y + c[4] * y * y
    fz = c[2] * z + c[5] * z * z
    poly = fx[:, None, None] + fy[None, :, None] + fz[None, None, :]
    poly += c[6] * x[:, None, None] * y[None, :, None] + c[7] * y[None, :, None] * z[None, None, :]
    return np.exp(poly).astype(np.float32)
