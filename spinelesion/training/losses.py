"""Dice + cross-entropy for partially annotated data (marginal / label-set loss).

A dataset that does not annotate a class (VerSe has no lesions, Spine-Mets-CT-SEG no cord) writes
0 where that class truly is. A plain loss would teach the network that lesion is background. We
follow the *marginal loss* of Shi et al. 2021 ("Marginal loss and exclusion loss for partially
supervised multi-organ segmentation", Medical Image Analysis 70:101979) and the *label-set loss*
of Fidon et al. 2021 ("Label-set loss functions for partial supervision: application to fetal
brain 3D MRI parcellation", MICCAI 2021): for each case, the classes it does not annotate are
merged with background into one set, and the loss sees only the set's summed probability.

Concretely, for a case with annotated foreground classes A and unannotated classes U:

- Cross-entropy: a voxel labelled c in A costs ``-log p_c``; a voxel labelled 0 costs
  ``-log(p_0 + sum_{u in U} p_u)`` (computed stably with logsumexp). Moving probability between
  background and an unannotated class therefore changes nothing: no gradient pushes an
  unannotated class towards background. Class weights are the weight of the target label
  (PyTorch's weighted-mean convention: sum w_t * nll / sum w_t).
- Dice: soft Dice per foreground class over the batch ("batch Dice", as nnU-Net), summing only
  the samples that annotate that class; classes annotated by no sample in the batch are left
  out. Background and unannotated classes are not in the Dice term at all.

With every class annotated this is ordinary Dice (foreground) + weighted CE.
"""

from __future__ import annotations

import torch
from torch import nn


class MaskedDiceCELoss(nn.Module):
    """``dice_weight * (1 - mean batch Dice) + ce_weight * marginal CE``.

    Args:
        num_classes: C, including background (index 0).
        class_weights: (C,) CE weights per target class, or None for all 1.
        dice_weight, ce_weight: weights of the two terms.
        smooth: added to the Dice numerator and denominator.
    """

    def __init__(self, *, num_classes: int, class_weights=None, dice_weight: float = 1.0,
                 ce_weight: float = 1.0, smooth: float = 1e-5) -> None:
        super().__init__()
        weights = torch.ones(num_classes) if class_weights is None else torch.as_tensor(
            class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", weights.float(), persistent=False)
        self.num_classes = num_classes
        self.dice_weight, self.ce_weight, self.smooth = dice_weight, ce_weight, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                annotated: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            logits: (B, C, X, Y, Z) raw network output.
            target: (B, 1, X, Y, Z) or (B, X, Y, Z) integer labels in [0, C).
            annotated: (B, C) bool, True where the case annotates the class (background is
                always treated as annotated); None means every class is annotated.

        Returns:
            Scalar loss (float32).
        """
        logits = logits.float()
        b, c = logits.shape[:2]
        target = target.long()
        if target.ndim == logits.ndim:
            target = target[:, 0]
        if annotated is None:
            annotated = torch.ones(b, c, dtype=torch.bool, device=logits.device)
        annotated = annotated.to(device=logits.device, dtype=torch.bool).clone()
        annotated[:, 0] = True
        loss = logits.new_zeros(())
        if self.ce_weight:
            loss = loss + self.ce_weight * self._marginal_ce(logits, target, annotated)
        if self.dice_weight:
            loss = loss + self.dice_weight * self._masked_dice(logits, target, annotated)
        return loss

    def _marginal_ce(self, logits, target, annotated):
        log_p = torch.log_softmax(logits, dim=1)                      # (B, C, ...)
        spatial = (1,) * (logits.ndim - 2)
        # background set: class 0 and every class this case does not annotate
        in_bg_set = (~annotated).clone()
        in_bg_set[:, 0] = True
        bg_mask = in_bg_set.view(*in_bg_set.shape, *spatial)
        log_p_bg = torch.logsumexp(log_p.masked_fill(~bg_mask, float("-inf")), dim=1)  # (B, ...)
        log_p_target = log_p.gather(1, target.unsqueeze(1)).squeeze(1)
        log_p_target = torch.where(target == 0, log_p_bg, log_p_target)
        w = self.class_weights.to(logits.device)[target]
        return -(w * log_p_target).sum() / w.sum().clamp_min(1e-8)

    def _masked_dice(self, logits, target, annotated):
        p = torch.softmax(logits, dim=1)
        one_hot = nn.functional.one_hot(target, self.num_classes).movedim(-1, 1).to(p.dtype)
        dims = tuple(range(2, logits.ndim))
        intersection = (p * one_hot).sum(dims)                     # (B, C)
        denominator = p.sum(dims) + one_hot.sum(dims)               # (B, C)
        mask = annotated.to(p.dtype)
        mask[:, 0] = 0.0                                            # foreground classes only
        dice = (2 * (intersection * mask).sum(0) + self.smooth) / ((denominator * mask).sum(0) + self.smooth)
        used = mask.sum(0) > 0                                      # (C,)
        if not used.any():
            return logits.new_zeros(())
        return 1.0 - dice[used].mean()
