"""Draw an appearance and render a tissue map into an image, in torch, on the batch's device.

:func:`draw_appearance` takes every random choice for one case (a plain dict of numbers, so it
can be logged and replayed); :func:`render` turns a tissue map into an image with those choices,
deterministically; :func:`synthesize` does both for a batch. The steps follow SynthSeg (Billot
et al., Med Image Anal 2023) adapted to CT and MR of the spine:

1. per-tissue mean and spread from the case's family (CT HU tables, MR contrasts, random);
2. texture: a smooth random field scaled per tissue (trabecular marrow, lesion heterogeneity);
3. acquisition resolution: Gaussian blur for the in-plane resolution and slice thickness along
   a random slice axis, then down-sampling to the slice spacing and back (partial volume);
4. multiplicative bias field (smooth, exp of a low-resolution Gaussian field);
5. normalisation to [0, 1] (percentiles, as inference does), gamma, Gaussian or Rician noise,
   motion ghosting along the phase axis, clipping of the brightest values;
6. final percentile normalisation, so the network sees what ``mr_percentile``/``percentile``
   preprocessing gives at inference.

Shapes: tissue maps are (N, 1, X, Y, Z) integer tensors; images (N, 1, X, Y, Z) float32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from spinelesion.measure.settings import MeasureSettings
from spinelesion.synthesis.settings import AppearanceSettings
from spinelesion.synthesis.tissues import CT_HU, MR_SIGNAL, N_TISSUES, TEXTURED, TISSUES

#: Smallest difference (fraction of the range) between a lesion tissue's and marrow's mean in the
#: "random" family: SynthSeg's classes are told apart by shape, but a lesion is a blob whose only
#: sign is that it looks unlike the marrow around it.
MIN_LESION_CONTRAST = 0.15
#: CT: a lesion is lytic at least this many HU under the marrow, blastic at least this many over it
#: (the measurement record's own definitions, the defaults of ``MeasureSettings``); a drawn lesion
#: closer to the marrow is moved out to that distance.
CT_LYTIC_MIN_HU = MeasureSettings().lytic_hu_below_marrow
CT_BLASTIC_MIN_HU = MeasureSettings().blastic_hu_above_marrow
#: Mimics told from lesions by their signal only (a haemangioma's fat, a bone island's density).
#: In the "random" family, where no tissue keeps its signal, they are drawn within half of
#: MIN_LESION_CONTRAST of the marrow: otherwise they would be lesions in all but their label.
SIGNAL_MIMICS = ("haemangioma", "bone_island")
#: CT: the marrow variation's spread is this fraction of the drawn one. Hounsfield units are calibrated:
#: adjacent healthy bodies differ by tens of HU, where MR marrow signal follows fat fraction, coil and
#: bias; at the full spread a healthy CT body could sit 130 HU under its neighbour, the lytic
#: definition (session 8).
CT_MARROW_VAR_SCALE = 0.25

#: Tissues that random blobs may overpaint (``clutter_prob``): the trunk's soft tissues, never bone,
#: disc, canal or epidural space, whose look is what the labels are about.
CLUTTER_HOSTS = ("fat", "soft", "muscle", "liver", "kidney", "bowel_wall", "unknown")
#: Number of blob intensities per case.
CLUTTER_BLOBS = 6
#: Tissues inside bone that the marrow variation field (``marrow_var_max``) scales together, so a
#: lesion or mimic keeps its contrast to the marrow around it.
BONE_INTERIOR = ("marrow", "lytic", "blastic", "haemangioma", "bone_island", "modic")
#: Cell size (mm) of the field that picks which part of the cortex thins (``cortex_gap_prob``).
CORTEX_GAP_CELL_MM = 10.0


def draw_appearance(generator: torch.Generator, *, settings: AppearanceSettings) -> dict:
    """Every random choice of one case's appearance (numbers only; see the module docstring)."""
    dev = generator.device

    def rand(*shape, dtype=torch.float32):
        return torch.rand(shape, generator=generator, device=dev, dtype=dtype).cpu()

    def randn(*shape, dtype=torch.float32):
        return torch.randn(shape, generator=generator, device=dev, dtype=dtype).cpu()

    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(rand())

    names = list(settings.families)
    probs = torch.tensor([settings.families[n] for n in names], dtype=torch.float64)
    cumulative = torch.cumsum(probs / probs.sum(), 0)
    family = names[min(int(torch.searchsorted(cumulative, float(rand()))), len(names) - 1)]
    z = randn(N_TISSUES, dtype=torch.float64)
    if family == "ct":
        means = [CT_HU[t][0] + CT_HU[t][1] * float(z[i]) for i, t in enumerate(TISSUES)]
        marrow, lytic, blastic = (TISSUES.index(t) for t in ("marrow", "lytic", "blastic"))
        means[lytic] = min(means[lytic], means[marrow] - CT_LYTIC_MIN_HU)
        means[blastic] = max(means[blastic], means[marrow] + CT_BLASTIC_MIN_HU)
        scale = 3000.0
    elif family == "random":
        means = rand(N_TISSUES, dtype=torch.float64).tolist()
        scale = 1.0
    else:
        col = ("t1", "t2", "stir", "t2star").index(family)
        means = [max(0.0, MR_SIGNAL[t][col] * (1.0 + 0.25 * float(z[i])) + 0.03 * float(z[i]))
                 for i, t in enumerate(TISSUES)]
        scale = 1.0
    if family == "random":   # a lesion must differ from the marrow it replaces, or its label is noise
        marrow = means[TISSUES.index("marrow")]
        for name in ("lytic", "blastic", "epidural"):
            i = TISSUES.index(name)
            gap = means[i] - marrow
            if abs(gap) < MIN_LESION_CONTRAST:
                sign = 1.0 if gap >= 0 else -1.0
                if not 0.0 <= marrow + sign * MIN_LESION_CONTRAST <= 1.0:
                    sign = -sign
                means[i] = marrow + sign * (MIN_LESION_CONTRAST + 0.5 * float(rand()) * (1 - MIN_LESION_CONTRAST))
                means[i] = min(1.0, max(0.0, means[i]))
        for name in SIGNAL_MIMICS:
            offset = 0.5 * MIN_LESION_CONTRAST * (2.0 * float(rand()) - 1.0)
            means[TISSUES.index(name)] = min(1.0, max(0.0, marrow + offset))
    spreads = (rand(N_TISSUES, dtype=torch.float64) * 0.04 * scale).tolist()
    slice_axis = min(2, int(3 * float(rand())))
    thick = bool(rand() < settings.slice_prob)
    resolution = [uniform(*settings.in_plane_mm) for _ in range(3)]
    if thick:
        resolution[slice_axis] = uniform(*settings.slice_mm)
    appearance = {
        "family": family, "means": means, "spreads": spreads, "scale": scale,
        "texture": uniform(0.0, settings.texture_max), "resolution_mm": resolution,
        "slice_axis": slice_axis, "thick": thick,
        "bias": uniform(0.0, settings.bias_max), "gamma": math.exp(settings.gamma_sd * float(randn())),
        "noise": uniform(0.0, settings.noise_max), "rician": family != "ct" and bool(rand() < 0.5),
        "ghost": uniform(0.05, 0.2) if rand() < settings.ghost_prob else 0.0,
        "ghost_axis": min(2, int(3 * float(rand()))),
        "clip": uniform(0.9, 0.99) if rand() < settings.clip_prob else 1.0,
        "field_seed": int(float(rand(dtype=torch.float64)) * (2**31 - 1)),
    }
    appearance["clutter"] = None
    if settings.clutter_prob > 0 and float(rand()) < settings.clutter_prob:   # drawn last: other draws unchanged
        sources = (rand(CLUTTER_BLOBS) * N_TISSUES).long().clamp(max=N_TISSUES - 1).tolist()
        jitter = randn(CLUTTER_BLOBS).tolist()
        appearance["clutter"] = {
            "values": [means[t] + 0.05 * scale * j for t, j in zip(sources, jitter)],
            "blob_mm": uniform(*settings.clutter_mm), "fraction": uniform(0.2, 0.9),
        }
    appearance["marrow_var"] = None   # drawn after clutter, for the same reason
    if settings.marrow_var_max > 0:
        spread = CT_MARROW_VAR_SCALE if family == "ct" else 1.0
        appearance["marrow_var"] = {"sd": uniform(0.0, settings.marrow_var_max) * spread,
                                    "cell_mm": uniform(*settings.marrow_var_mm)}
    appearance["cortex_gap"] = 0.0
    if settings.cortex_gap_prob > 0 and float(rand()) < settings.cortex_gap_prob:
        appearance["cortex_gap"] = uniform(0.1, 0.5)
    # drawn last, so that the draws above (and older configs' cases) are unchanged
    if settings.coarse_prob > 0 and float(rand()) < settings.coarse_prob:
        pixel = uniform(*settings.coarse_mm)
        resolution = [max(pixel, r) if axis == slice_axis and thick else pixel for axis, r in enumerate(resolution)]
        appearance["resolution_mm"] = resolution
    if (settings.low_cord_contrast_prob > 0 and float(rand()) < settings.low_cord_contrast_prob
            and family != "ct"):
        cord, csf = TISSUES.index("cord"), TISSUES.index("csf")
        drawn = appearance["means"]
        drawn[cord] = drawn[csf] + uniform(0.0, 0.25) * (drawn[cord] - drawn[csf])
    return appearance


def render(tissue: torch.Tensor, *, appearance: dict, spacing_mm) -> torch.Tensor:
    """(1, X, Y, Z) float32 image in [0, 1] for a (1, X, Y, Z) integer tissue map (deterministic).

    ``spacing_mm`` is the tissue map's voxel size; resolutions finer than it only blur a little.
    """
    device = tissue.device
    shape = tissue.shape[1:]
    gen = torch.Generator(device=device).manual_seed(appearance["field_seed"])
    scale = appearance["scale"]
    idx = tissue.long().clamp(0, N_TISSUES - 1)[0]
    means = torch.tensor(appearance["means"], dtype=torch.float32, device=device) / scale
    spreads = torch.tensor(appearance["spreads"], dtype=torch.float32, device=device) / scale
    image = means[idx]
    if appearance.get("clutter"):
        image = _paint_clutter(image, idx, clutter=appearance["clutter"], scale=scale, spacing_mm=spacing_mm,
                               generator=gen)
    if appearance.get("cortex_gap"):
        image = _thin_cortex(image, idx, fraction=appearance["cortex_gap"], marrow=means[TISSUES.index("marrow")],
                             spacing_mm=spacing_mm, generator=gen)
    if appearance.get("marrow_var"):
        image = _vary_marrow(image, idx, marrow_var=appearance["marrow_var"], spacing_mm=spacing_mm, generator=gen)
    white = torch.randn(tuple(shape), generator=gen, device=device)
    image = image + spreads[idx] * white
    weights = torch.zeros(N_TISSUES, dtype=torch.float32, device=device)
    for name, w in TEXTURED.items():
        weights[TISSUES.index(name)] = w
    if appearance["texture"] > 0:
        image = image + appearance["texture"] * weights[idx] * _smooth_field(shape, cells=6, generator=gen, device=device)
    image = _acquire(image, resolution_mm=appearance["resolution_mm"], spacing_mm=spacing_mm,
                     slice_axis=appearance["slice_axis"], thick=appearance["thick"])
    if appearance["bias"] > 0:
        image = image * torch.exp(appearance["bias"] * _smooth_field(shape, cells=3, generator=gen, device=device))
    image = normalise(image)
    image = image.clamp(0, 1) ** appearance["gamma"]
    if appearance["noise"] > 0:
        noise = torch.randn(tuple(shape), generator=gen, device=device) * appearance["noise"]
        if appearance["rician"]:
            other = torch.randn(tuple(shape), generator=gen, device=device) * appearance["noise"]
            image = torch.sqrt((image + noise) ** 2 + other ** 2)
        else:
            image = image + noise
    if appearance["ghost"] > 0:
        ax = appearance["ghost_axis"]
        image = image + appearance["ghost"] * torch.roll(image, shifts=max(1, shape[ax] // 4), dims=ax)
    if appearance["clip"] < 1.0:
        top = torch.quantile(_sample(image), appearance["clip"])
        image = torch.minimum(image, top)
    return normalise(image)[None].float()


def synthesize(tissue: torch.Tensor, *, generator: torch.Generator, spacing_mm,
               settings: AppearanceSettings | None = None) -> torch.Tensor:
    """Images (N, 1, X, Y, Z) float32 in [0, 1] for tissue maps (N, 1, X, Y, Z), a new appearance each."""
    settings = settings or AppearanceSettings()
    return torch.stack([render(t, appearance=draw_appearance(generator, settings=settings), spacing_mm=spacing_mm)
                        for t in tissue])


# ---------------------------------------------------------------- pieces

def _paint_clutter(image: torch.Tensor, idx: torch.Tensor, *, clutter: dict, scale: float, spacing_mm,
                   generator: torch.Generator) -> torch.Tensor:
    """Overpaint part of the :data:`CLUTTER_HOSTS` voxels of an (X, Y, Z) mean image with blobs.

    Blobs are the arg-max regions of ``len(values)`` smooth random fields whose cells are about
    ``blob_mm`` wide; a further smooth field keeps ``fraction`` of the host voxels. Other tissues
    keep their values.
    """
    shape = tuple(image.shape)
    device = image.device
    host_ids = torch.tensor([TISSUES.index(t) for t in CLUTTER_HOSTS], device=device)
    host = torch.isin(idx, host_ids)
    if not bool(host.any()):
        return image
    cells = tuple(max(1, round(n * float(s) / clutter["blob_mm"])) for n, s in zip(shape, spacing_mm))
    values = torch.tensor(clutter["values"], dtype=image.dtype, device=device) / scale
    fields = torch.stack([_smooth_field(shape, cells=cells, generator=generator, device=device)
                          for _ in range(len(values))])
    region = fields.argmax(0)
    keep = _smooth_field(shape, cells=cells, generator=generator, device=device)
    cut = torch.quantile(_sample(keep[host]), 1.0 - float(clutter["fraction"]))
    paint = host & (keep >= cut)
    return torch.where(paint, values[region], image)


def _thin_cortex(image: torch.Tensor, idx: torch.Tensor, *, fraction: float, marrow: torch.Tensor, spacing_mm,
                 generator: torch.Generator) -> torch.Tensor:
    """Give about ``fraction`` of the cortex voxels of an (X, Y, Z) mean image the marrow's value,
    in smooth patches (cells of :data:`CORTEX_GAP_CELL_MM`); labels are not touched."""
    cortex = idx == TISSUES.index("cortex")
    if not bool(cortex.any()):
        return image
    shape = tuple(image.shape)
    cells = tuple(max(1, round(n * float(s) / CORTEX_GAP_CELL_MM)) for n, s in zip(shape, spacing_mm))
    field = _smooth_field(shape, cells=cells, generator=generator, device=image.device)
    cut = torch.quantile(_sample(field[cortex]), 1.0 - float(fraction))
    return torch.where(cortex & (field >= cut), marrow.to(image.dtype), image)


def _vary_marrow(image: torch.Tensor, idx: torch.Tensor, *, marrow_var: dict, spacing_mm,
                 generator: torch.Generator) -> torch.Tensor:
    """Multiply the :data:`BONE_INTERIOR` voxels of an (X, Y, Z) mean image by ``exp(sd * field)``,
    a smooth unit-spread field with cells of ``cell_mm``: marrow that differs between vertebrae."""
    shape = tuple(image.shape)
    cells = tuple(max(1, round(n * float(s) / marrow_var["cell_mm"])) for n, s in zip(shape, spacing_mm))
    field = _smooth_field(shape, cells=cells, generator=generator, device=image.device)
    inside = torch.isin(idx, torch.tensor([TISSUES.index(t) for t in BONE_INTERIOR], device=idx.device))
    return torch.where(inside, image * torch.exp(float(marrow_var["sd"]) * field), image)


def _smooth_field(shape, *, cells, generator: torch.Generator, device) -> torch.Tensor:
    """(X, Y, Z) smooth random field, unit spread: a Gaussian grid of ``cells`` (+1) points per axis
    (one number or one per axis), trilinear up-sampling."""
    per_axis = (cells,) * 3 if isinstance(cells, int) else tuple(cells)
    coarse = torch.randn((1, 1, *(c + 1 for c in per_axis)), generator=generator, device=device)
    return F.interpolate(coarse, size=tuple(shape), mode="trilinear", align_corners=True)[0, 0]


def _acquire(image: torch.Tensor, *, resolution_mm, spacing_mm, slice_axis: int, thick: bool) -> torch.Tensor:
    """Blur to the acquisition resolution; a thick-slice axis is also sampled at the slice spacing."""
    spacing = [float(s) for s in spacing_mm]
    sigmas = [0.425 * max(0.0, (r * r - s * s)) ** 0.5 / s for r, s in zip(resolution_mm, spacing)]  # FWHM -> sigma
    out = _gaussian_blur(image, sigmas)
    if thick:
        factor = resolution_mm[slice_axis] / spacing[slice_axis]
        n = out.shape[slice_axis]
        coarse_n = max(2, int(round(n / factor)))
        if coarse_n < n:
            size = list(out.shape)
            size[slice_axis] = coarse_n
            low = F.interpolate(out[None, None], size=tuple(size), mode="trilinear", align_corners=True)
            out = F.interpolate(low, size=tuple(image.shape), mode="trilinear", align_corners=True)[0, 0]
    return out


def _gaussian_blur(image: torch.Tensor, sigmas_vox) -> torch.Tensor:
    """Separable Gaussian blur of an (X, Y, Z) tensor, sigma per axis in voxels (edges replicated)."""
    out = image[None, None]
    for axis, sigma in enumerate(sigmas_vox):
        if sigma < 0.2:
            continue
        radius = max(1, int(math.ceil(3 * sigma)))
        x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=image.device)
        kernel = torch.exp(-0.5 * (x / sigma) ** 2)
        kernel = kernel / kernel.sum()
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = kernel.numel()
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        out = F.conv3d(F.pad(out, pad, mode="replicate"), kernel.view(shape))
    return out[0, 0]


def _sample(image: torch.Tensor, n: int = 200_000) -> torch.Tensor:
    """At most ``n`` values of ``image`` (evenly strided) for quantiles (torch.quantile's size limit)."""
    flat = image.reshape(-1)
    step = max(1, flat.numel() // n)
    return flat[::step].float()


def normalise(image: torch.Tensor, lower: float = 0.005, upper: float = 0.995) -> torch.Tensor:
    """Map the ``lower``/``upper`` quantiles to 0/1 and clip (the ``percentile`` preprocessing)."""
    q = torch.quantile(_sample(image), torch.tensor([lower, upper], device=image.device))
    lo, hi = float(q[0]), float(q[1])
    if hi - lo < 1e-6:
        return torch.zeros_like(image)
    return ((image - lo) / (hi - lo)).clamp(0, 1)
