"""Validation during training: sliding-window prediction and the per-class / lesion-wise metrics.

Metrics are computed on the preprocessed grid (RAS, training spacing), per case, then pooled:

- Dice per class c: ``2|P∩T| / (|P| + |T|)`` per case, averaged over the cases that annotate c
  and hold c in truth or prediction (a case where both are empty gives no number).
  ``mean_dice`` is the mean over the foreground classes that have a number.
- Lesion-wise sensitivity: connected components (26-connectivity, cc3d) of the truth lesion
  class; a component is detected when any predicted lesion voxel overlaps it. Pooled over cases
  that annotate lesions: detected / truth components.
- False positives per scan: predicted lesion components touching no truth lesion voxel, averaged
  over the cases that annotate lesions.
"""

from __future__ import annotations

import numpy as np
import torch

from spinelesion.labels import LABEL_NAMES, LESION, NUM_CLASSES


def predict_volume(model: torch.nn.Module, image: torch.Tensor, *, patch_size, sw_batch_size: int,
                   overlap: float, amp: bool) -> torch.Tensor:
    """Label map (X, Y, Z) int64 for one (1, 1, X, Y, Z) image by Gaussian-weighted sliding window."""
    from monai.inferers import sliding_window_inference

    with torch.no_grad(), torch.autocast(device_type=image.device.type, dtype=torch.float16, enabled=amp):
        logits = sliding_window_inference(image, roi_size=list(patch_size), sw_batch_size=sw_batch_size,
                                          predictor=model, overlap=overlap, mode="gaussian")
    return logits.argmax(dim=1)[0]


def case_stats(pred: np.ndarray, truth: np.ndarray, annotated: np.ndarray) -> dict:
    """Counts for one case. pred, truth: (X, Y, Z) integer maps; annotated: (NUM_CLASSES,) bool."""
    import cc3d

    stats = {"intersection": [], "pred": [], "truth": [], "annotated": [bool(a) for a in annotated]}
    for c in range(NUM_CLASSES):
        p, t = pred == c, truth == c
        stats["intersection"].append(int(np.count_nonzero(p & t)))
        stats["pred"].append(int(np.count_nonzero(p)))
        stats["truth"].append(int(np.count_nonzero(t)))
    p_lesion, t_lesion = pred == LESION, truth == LESION
    t_comp = cc3d.connected_components(t_lesion.astype(np.uint8), connectivity=26)
    p_comp = cc3d.connected_components(p_lesion.astype(np.uint8), connectivity=26)
    stats["lesions_truth"] = int(t_comp.max())
    stats["lesions_detected"] = int(np.unique(t_comp[p_lesion & (t_comp > 0)]).size)
    touching = np.unique(p_comp[t_lesion & (p_comp > 0)])
    stats["lesions_false_positive"] = int(p_comp.max()) - int(touching.size)
    return stats


def summarise(all_stats: list[dict]) -> dict:
    """Pool per-case stats into the metrics recorded in metrics.csv and in checkpoints."""
    metrics: dict[str, float | int | None] = {}
    per_class = []
    for c in range(1, NUM_CLASSES):
        values = [2 * s["intersection"][c] / (s["pred"][c] + s["truth"][c]) for s in all_stats
                  if s["annotated"][c] and s["pred"][c] + s["truth"][c] > 0]
        dice = float(np.mean(values)) if values else None
        metrics[f"dice_{LABEL_NAMES[c]}"] = dice
        if dice is not None:
            per_class.append(dice)
    metrics["mean_dice"] = float(np.mean(per_class)) if per_class else None
    metrics["lesion_dice"] = metrics[f"dice_{LABEL_NAMES[LESION]}"]
    lesion_cases = [s for s in all_stats if s["annotated"][LESION]]
    n_truth = sum(s["lesions_truth"] for s in lesion_cases)
    metrics["lesions_truth"] = n_truth
    metrics["lesion_sensitivity"] = (sum(s["lesions_detected"] for s in lesion_cases) / n_truth
                                     if n_truth else None)
    metrics["lesion_fp_per_scan"] = (sum(s["lesions_false_positive"] for s in lesion_cases)
                                     / len(lesion_cases) if lesion_cases else None)
    metrics["val_cases"] = len(all_stats)
    return metrics


def validate(model: torch.nn.Module, loader, *, device: torch.device, patch_size, sw_batch_size: int,
             overlap: float, amp: bool) -> list[dict]:
    """Per-case stats for every item of ``loader`` (batch size 1, whole preprocessed volumes)."""
    was_training = model.training
    model.eval()
    out = []
    for batch in loader:
        image = batch["image"].to(device)
        pred = predict_volume(model, image, patch_size=patch_size, sw_batch_size=sw_batch_size,
                              overlap=overlap, amp=amp).cpu().numpy()
        truth = batch["label"][0, 0].cpu().numpy().astype(np.int64)
        out.append(case_stats(pred, truth, batch["annotated"][0].cpu().numpy()))
    model.train(was_training)
    return out
