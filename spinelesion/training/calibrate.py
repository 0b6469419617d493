"""Choose the lesion clean-up thresholds on validation data and store them in the checkpoint.

:func:`lesion_operating_points` runs the network once per validation case, then applies
:func:`~spinelesion.inference.postprocess.keep_spinal_lesions` with every (minimum volume,
probability) pair of a grid and counts lesion-wise detections and false positives on the
network grid (the definitions of :mod:`spinelesion.training.validation`). :func:`choose_operating_point`
takes the most sensitive setting whose false positives per scan stay within a budget (ties:
fewer false positives, then lesions allowed to touch only the canal, then the smaller thresholds). :func:`store_postprocess` writes the choice and the
whole table (the lesion-wise FROC) into the checkpoint's metadata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MIN_LESION_MM3 = (0.0, 30.0, 65.0, 130.0, 250.0)
LESION_PROBABILITY = (0.5, 0.6, 0.7, 0.8, 0.9)


def lesion_operating_points(*, checkpoint: Path, cases: list, device: str = "cpu",
                            min_lesion_mm3=MIN_LESION_MM3, lesion_probability=LESION_PROBABILITY) -> list[dict]:
    """One row per (min_lesion_mm3, lesion_probability, touch_canal): sensitivity, FP per scan, counts.

    ``cases``: adapter :class:`~spinelesion.data.adapters.Case` objects with images and labels.
    """
    import torch

    from spinelesion.inference.postprocess import keep_spinal_lesions, keep_spine_structure
    from spinelesion.inference.predictor import Predictor
    from spinelesion.inference.resample import class_argmax
    from spinelesion.network.transforms import case_item, val_transforms
    from spinelesion.training.validation import case_stats

    predictor = Predictor(model=checkpoint, device=device)
    net, meta = predictor.network(Path(checkpoint))
    prep = meta["preprocessing"]
    spacing = prep["spacing_mm"]
    transform = val_transforms(preprocessing=prep)
    grid = [(size, prob, canal) for size in min_lesion_mm3 for prob in lesion_probability for canal in (True, False)]
    per_case = []
    for case in cases:
        item = transform(case_item(case))
        probabilities = predictor.sliding_window(net, torch.as_tensor(item["image"]).float(),
                                                 patch_size=meta["patch_size"])
        probabilities = keep_spine_structure(probabilities, spacing_mm=spacing)
        truth = np.asarray(item["label"][0]).astype(np.int64)
        annotated = np.asarray(item["annotated"], bool)
        row = {}
        for key in grid:
            size, prob, canal = key
            cleaned, _ = keep_spinal_lesions(probabilities, spacing_mm=spacing, min_lesion_mm3=size,
                                             lesion_probability=prob, touch_canal=canal)
            pred = class_argmax(cleaned).cpu().numpy()
            row[key] = case_stats(pred, truth, annotated)
        per_case.append(row)
    rows = []
    for size, prob, canal in grid:
        stats = [c[(size, prob, canal)] for c in per_case]
        n_truth = sum(s["lesions_truth"] for s in stats)
        detected = sum(s["lesions_detected"] for s in stats)
        fp = sum(s["lesions_false_positive"] for s in stats)
        rows.append({"min_lesion_mm3": size, "lesion_probability": prob, "touch_canal": canal,
                     "lesions_truth": n_truth, "lesions_detected": detected, "false_positives": fp,
                     "cases": len(stats), "sensitivity": detected / n_truth if n_truth else None,
                     "fp_per_scan": fp / len(stats) if stats else None})
    return rows


def choose_operating_point(rows: list[dict], *, max_fp_per_scan: float) -> dict:
    """The most sensitive row with ``fp_per_scan <= max_fp_per_scan`` (else the fewest false positives)."""
    within = [r for r in rows if r["fp_per_scan"] is not None and r["fp_per_scan"] <= max_fp_per_scan]
    if not within:
        return min(rows, key=lambda r: (r["fp_per_scan"], -(r["sensitivity"] or 0)))
    return max(within, key=lambda r: ((r["sensitivity"] or 0), -r["fp_per_scan"], r.get("touch_canal", True),
                                      -r["min_lesion_mm3"], -r["lesion_probability"]))


def store_postprocess(checkpoint: Path, *, out: Path, chosen: dict, rows: list[dict], chosen_on: str) -> Path:
    """Write ``checkpoint`` again to ``out`` with ``meta["postprocess"]`` set (atomic)."""
    from spinelesion.network.checkpoint import load_checkpoint, save_checkpoint

    state, meta = load_checkpoint(checkpoint)
    meta.pop("schema_version", None)
    meta["postprocess"] = {"min_lesion_mm3": chosen["min_lesion_mm3"],
                           "lesion_probability": chosen["lesion_probability"],
                           "touch_canal": bool(chosen.get("touch_canal", True)),
                           "chosen_on": chosen_on, "operating_points": rows}
    return save_checkpoint(out, state_dict=state, meta=meta)
