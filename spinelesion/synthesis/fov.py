"""Partial field of view: a training patch seen as a slab of a few slices, as inference sees one.

An axial T2* slab of 20-40 mm, or a few thick sagittal slices, is thinner than the network's patch.
Inference normalises the slab's intensities on the slab alone and the sliding window pads it to the
patch by repeating its edge slices (``InferenceSettings.padding: replicate``). :func:`to_slab` makes a
share of the training patches look exactly like that: it keeps a slab of random thickness along a
random axis, normalises the slab on its own percentiles, and repeats its edge slices outward, in the
image and in the label alike (the padded region is discarded at inference; labelled as repeated, it
asks nothing of the network that the image does not show).

Shapes: images (N, 1, X, Y, Z) float32 in [0, 1]; labels (N, 1, X, Y, Z) integers; both returned in
the same shapes.
"""

from __future__ import annotations

import torch

from spinelesion.synthesis.appearance import normalise
from spinelesion.synthesis.settings import AppearanceSettings


def to_slab(image: torch.Tensor, label: torch.Tensor, *, generator: torch.Generator, spacing_mm,
            settings: AppearanceSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """(image, label) with each patch, at chance ``settings.slab_prob``, cut to a slab and edge-padded.

    The slab is ``settings.slab_mm`` thick (uniform in the range, at least one voxel, at most the patch)
    along an axis drawn uniformly among the three, at a uniform position inside the patch.
    """
    if settings.slab_prob <= 0:
        return image, label
    image, label = image.clone(), label.clone()
    dev = generator.device
    for n in range(image.shape[0]):
        draws = torch.rand(4, generator=generator, device=dev).tolist()
        if draws[0] >= settings.slab_prob:
            continue
        axis = min(2, int(3 * draws[1]))
        size = image.shape[2 + axis]
        lo_mm, hi_mm = settings.slab_mm
        width = int(round((lo_mm + (hi_mm - lo_mm) * draws[2]) / float(spacing_mm[axis])))
        width = max(1, min(size, width))
        start = min(size - width, int((size - width + 1) * draws[3]))
        keep = torch.arange(size, device=image.device).clamp(start, start + width - 1)
        dim = 1 + axis   # axis of the (1, X, Y, Z) item
        slab = image[n].narrow(dim, start, width)
        image[n] = normalise(slab).index_select(dim, keep - start)
        label[n] = label[n].index_select(dim, keep.to(label.device))
    return image, label
