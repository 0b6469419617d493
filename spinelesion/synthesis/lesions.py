"""Synthetic lesions inserted into training patches: more lesions, of every size, in any bone.

:class:`RandInsertLesiond` (a seeded MONAI transform on tissue-map patches) paints an ellipsoid of
lytic, blastic or mixed tissue into vertebral bone of the patch and labels it "lesion", so healthy
anatomy (real label maps, healthy phantoms) also teaches lesions, and lesions appear in every
part of a vertebra (body, pedicles, posterior elements).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import MapTransform, Randomizable
from scipy import ndimage

from spinelesion import labels as L
from spinelesion.synthesis.appearance import BONE_INTERIOR
from spinelesion.synthesis.tissues import ID


class RandInsertLesiond(Randomizable, MapTransform):
    """With probability ``prob``, one ellipsoid lesion (radii ``radius_vox`` voxels) in bone of the patch,
    or, in a ``whole_body_prob`` share of those, a lesion that fills one vertebral body inside its cortex.

    Keys: ``image`` a (1, X, Y, Z) tissue map, ``label`` (1, X, Y, Z) schema labels; only where the
    label is vertebral body or posterior elements does the lesion replace anything.
    """

    def __init__(self, keys=("image", "label"), *, prob: float = 0.3, radius_vox=(1.5, 7.0),
                 whole_body_prob: float = 0.0, min_body_vox: int = 300) -> None:
        MapTransform.__init__(self, keys)
        self.prob, self.radius_vox = prob, radius_vox
        self.whole_body_prob, self.min_body_vox = whole_body_prob, min_body_vox

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        tissue, label = d[self.keys[0]], d[self.keys[1]]
        if self.R.random() >= self.prob:
            return d
        bone = (label[0] == L.VERTEBRAL_BODY) | (label[0] == L.POSTERIOR_ELEMENTS)
        if self.whole_body_prob > 0 and self.R.random() < self.whole_body_prob:
            hit = self._whole_body(tissue[0], label[0])
        else:
            hit = self._ellipsoid(bone)
        if hit is None or not bool(hit.any()):
            return d
        kind = self.R.choice(["lytic", "blastic", "mixed"], p=[0.5, 0.3, 0.2])
        if kind == "mixed":
            speckle = torch.as_tensor(self.R.random(bone.shape) < 0.5)
            value = torch.where(speckle, ID["lytic"], ID["blastic"]).to(tissue.dtype)
        else:
            value = torch.full(bone.shape, ID[kind], dtype=tissue.dtype)
        tissue = tissue.clone()
        label = label.clone()
        tissue[0][hit] = value[hit]
        label[0][hit] = L.LESION
        d[self.keys[0]], d[self.keys[1]] = tissue, label
        return d

    def _ellipsoid(self, bone: torch.Tensor) -> torch.Tensor | None:
        """(X, Y, Z) bool: an ellipsoid of random radii round a random bone voxel, cut to the bone."""
        where = torch.nonzero(bone)
        if len(where) == 0:
            return None
        centre = where[self.R.randint(len(where))].float()
        radii = torch.as_tensor(self.R.uniform(*self.radius_vox, size=3), dtype=torch.float32)
        grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in bone.shape], indexing="ij")
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1.0
        return inside & bone

    def _whole_body(self, tissue: torch.Tensor, label: torch.Tensor) -> torch.Tensor | None:
        """(X, Y, Z) bool: the inside (marrow and mimics, not the cortex) of one vertebral body of the
        patch (a 6-connected component of the body label of at least ``min_body_vox`` voxels): a lesion
        that fills its body (an ivory vertebra, a wholly lytic body), with no marrow of its own to
        contrast with; only its neighbours tell it from a healthy body."""
        components, n = ndimage.label(label.cpu().numpy() == L.VERTEBRAL_BODY)
        sizes = np.bincount(components.ravel(), minlength=n + 1)[1:]
        big = np.flatnonzero(sizes >= self.min_body_vox) + 1
        if len(big) == 0:
            return None
        body = torch.as_tensor(components == big[self.R.randint(len(big))], device=label.device)
        interior = torch.isin(tissue.long(), torch.tensor([ID[t] for t in BONE_INTERIOR], device=tissue.device))
        return body & interior
