"""``SynthesizeImaged``: image synthesis as a seeded MONAI dictionary transform.

Training synthesises in the step, on the training device (``spinelesion/training/loop.py``); this wrapper
serves MONAI pipelines that want the image made in the data loader instead (CPU workers,
previews, custom training loops). ``set_random_state(seed)`` makes it repeatable, as any MONAI
randomisable transform.
"""

from __future__ import annotations

import torch
from monai.transforms import MapTransform, Randomizable

from spinelesion.synthesis.appearance import draw_appearance, render
from spinelesion.synthesis.settings import AppearanceSettings


class SynthesizeImaged(Randomizable, MapTransform):
    """Replace the (1, X, Y, Z) tissue map under each key by a synthesised (1, X, Y, Z) float32 image."""

    def __init__(self, keys=("image",), *, spacing_mm, settings: AppearanceSettings | None = None) -> None:
        MapTransform.__init__(self, keys)
        self.spacing_mm = tuple(float(s) for s in spacing_mm)
        self.settings = settings or AppearanceSettings()

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            tissue = torch.as_tensor(d[key]).round().long()
            generator = torch.Generator(device=tissue.device).manual_seed(int(self.R.randint(0, 2**31 - 1)))
            appearance = draw_appearance(generator, settings=self.settings)
            d[key] = render(tissue, appearance=appearance, spacing_mm=self.spacing_mm)
        return d
