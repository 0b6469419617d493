"""Partial field of view in training (spinelesion.synthesis.fov.to_slab): a patch cut to a slab and
padded by repeating its edge slices, as inference pads a scan thinner than the patch."""

from __future__ import annotations

import pytest
import torch

from spinelesion.synthesis.fov import to_slab
from spinelesion.synthesis.settings import AppearanceSettings

SPACING_MM = (1.5, 1.5, 1.5)


def _batch(n: int = 6, shape=(20, 24, 28)) -> tuple[torch.Tensor, torch.Tensor]:
    """(image, label), (n, 1, *shape): a random image in [0, 1] and a label with structure on every axis."""
    g = torch.Generator().manual_seed(0)
    image = torch.rand((n, 1, *shape), generator=g)
    label = torch.randint(0, 7, (n, 1, *shape), generator=g)
    return image, label


def _slab_of(before: torch.Tensor, after: torch.Tensor):
    """(axis, start, width) of the slab that ``after`` (1, X, Y, Z) repeats from ``before``, else None."""
    for axis in range(3):
        dim = 1 + axis
        size = before.shape[dim]
        for start in range(size):
            for width in range(1, size - start + 1):
                keep = torch.arange(size).clamp(start, start + width - 1)
                if torch.equal(after, before.index_select(dim, keep)):
                    if width < size:
                        return axis, start, width
    return None


def test_no_slab_when_the_chance_is_zero():
    image, label = _batch()
    out_image, out_label = to_slab(image, label, generator=torch.Generator().manual_seed(1), spacing_mm=SPACING_MM,
                                   settings=AppearanceSettings())
    assert out_image is image and out_label is label


def test_every_patch_becomes_an_edge_padded_slab_of_the_drawn_thickness():
    image, label = _batch()
    settings = AppearanceSettings(slab_prob=1.0, slab_mm=(6.0, 15.0))
    out_image, out_label = to_slab(image, label, generator=torch.Generator().manual_seed(3), spacing_mm=SPACING_MM,
                                   settings=settings)
    assert out_image.shape == image.shape and out_label.shape == label.shape
    assert out_label.dtype == label.dtype
    axes = set()
    for n in range(image.shape[0]):
        found = _slab_of(label[n], out_label[n])
        assert found is not None, f"patch {n}: the label is not a repeated slab of the input"
        axis, start, width = found
        axes.add(axis)
        assert 4 <= width <= 10   # 6-15 mm at 1.5 mm
        dim = 1 + axis
        keep = torch.arange(image.shape[2 + axis]).clamp(start, start + width - 1)
        slab = out_image[n].narrow(dim, start, width)
        # the image repeats the same slab, renormalised on its own content to [0, 1]
        assert torch.equal(out_image[n], slab.index_select(dim, keep - start))
        assert float(slab.min()) == 0.0 and float(slab.max()) == 1.0
        original = image[n].narrow(dim, start, width)
        assert torch.corrcoef(torch.stack([slab.flatten(), original.flatten()]))[0, 1] > 0.99
    assert len(axes) >= 2   # the axis is drawn, not fixed


def test_slabs_are_seeded_and_the_input_is_left_alone():
    image, label = _batch()
    copy_image, copy_label = image.clone(), label.clone()
    settings = AppearanceSettings(slab_prob=0.5)
    a = to_slab(image, label, generator=torch.Generator().manual_seed(9), spacing_mm=SPACING_MM, settings=settings)
    b = to_slab(image, label, generator=torch.Generator().manual_seed(9), spacing_mm=SPACING_MM, settings=settings)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(image, copy_image) and torch.equal(label, copy_label)


@pytest.mark.parametrize("bad", [{"slab_prob": 1.5}, {"slab_prob": -0.1}, {"slab_mm": (0.0, 10.0)},
                                 {"slab_mm": (30.0, 10.0)}])
def test_bad_slab_settings_are_refused(bad):
    with pytest.raises(ValueError):
        AppearanceSettings(**bad)
