"""Choose the lesion clean-up thresholds on validation data and store them in the checkpoint.

:func:`lesion_operating_points` runs the network once per validation case, then applies the rule of
:func:`~spinelesion.inference.postprocess.keep_spinal_lesions` with every (minimum volume, highest
probability, mean probability, canal contact) setting of a grid and counts lesion-wise detections
and false positives on the network grid (the definitions of :mod:`spinelesion.training.validation`).
:func:`choose_operating_point` takes the most sensitive setting whose false positives per scan stay
within a budget (ties: fewer false positives, then lesions allowed to touch only the canal, then the
smaller thresholds). :func:`store_postprocess` writes the choice and the
whole table (the lesion-wise FROC) into the checkpoint's metadata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MIN_LESION_MM3 = (0.0, 30.0, 65.0, 130.0, 250.0)
LESION_PROBABILITY = (0.5, 0.6, 0.7, 0.8, 0.9)
MEAN_PROBABILITY = (0.0, 0.6, 0.7, 0.75, 0.8, 0.85)


def lesion_operating_points(*, checkpoint: Path, cases: list, device: str = "cpu",
                            min_lesion_mm3=MIN_LESION_MM3, lesion_probability=LESION_PROBABILITY,
                            mean_probability=MEAN_PROBABILITY) -> list[dict]:
    """One row per (min_lesion_mm3, lesion_probability, mean_probability, touch_canal): sensitivity,
    FP per scan, counts.

    ``cases``: adapter :class:`~spinelesion.data.adapters.Case` objects with images and labels. The
    network runs once per case; each setting then keeps or drops the same lesion components
    (:class:`~spinelesion.inference.postprocess.LesionComponents`), so the grid costs no more runs.
    """
    import torch

    from spinelesion.inference.postprocess import keep_spine_structure, lesion_components
    from spinelesion.inference.predictor import Predictor, mirror_axes
    from spinelesion.network.transforms import case_item, val_transforms

    predictor = Predictor(model=checkpoint, device=device)
    net, meta = predictor.network(Path(checkpoint))
    prep = meta["preprocessing"]
    spacing = prep["spacing_mm"]
    transform = val_transforms(preprocessing=prep)
    grid = [(size, prob, mean, canal) for size in min_lesion_mm3 for prob in lesion_probability
            for mean in mean_probability for canal in (True, False)]
    totals = {key: [0, 0, 0] for key in grid}   # lesions in truth, detected, false positives
    for case in cases:
        item = transform(case_item(case))
        probabilities = predictor.sliding_window(net, torch.as_tensor(item["image"]).float(),
                                                 patch_size=meta["patch_size"], mirror_axes=mirror_axes(meta))
        found = lesion_components(keep_spine_structure(probabilities, spacing_mm=spacing), spacing_mm=spacing)
        truth = np.asarray(item["label"][0]).astype(np.int64) == 3
        for key, counts in zip(grid, _detections(found, truth, grid)):
            totals[key] = [a + b for a, b in zip(totals[key], counts)]
    rows = []
    for (size, prob, mean, canal), (n_truth, detected, fp) in totals.items():
        rows.append({"min_lesion_mm3": size, "lesion_probability": prob, "mean_probability": mean,
                     "touch_canal": canal, "lesions_truth": n_truth, "lesions_detected": detected,
                     "false_positives": fp, "cases": len(cases),
                     "sensitivity": detected / n_truth if n_truth else None,
                     "fp_per_scan": fp / len(cases) if cases else None})
    return rows


def _detections(found, truth: np.ndarray, grid) -> list[tuple[int, int, int]]:
    """(lesions in truth, detected, false positives) of one case for each setting of ``grid``.

    A true lesion (26-connected component of ``truth``) is detected when a kept predicted
    component overlaps it; a kept component overlapping no true lesion is a false positive (the
    definitions of :func:`spinelesion.training.validation.case_stats`)."""
    import cc3d

    true_ids, n_truth = cc3d.connected_components(truth.astype(np.uint8), connectivity=26, return_N=True)
    both = (found.components > 0) & (true_ids > 0)
    pairs = np.unique(np.stack([found.components[both], true_ids[both]], axis=1), axis=0)
    hits_truth = np.zeros(found.volume_mm3.size, bool)
    hits_truth[pairs[:, 0]] = True
    out = []
    for size, prob, mean, canal in grid:
        kept, _ = found.keep(min_lesion_mm3=size, lesion_probability=prob, mean_probability=mean, touch_canal=canal)
        detected = np.unique(pairs[kept[pairs[:, 0]], 1]).size if len(pairs) else 0
        out.append((int(n_truth), int(detected), int(np.count_nonzero(kept & ~hits_truth))))
    return out


def choose_operating_point(rows: list[dict], *, max_fp_per_scan: float) -> dict:
    """The most sensitive row with ``fp_per_scan <= max_fp_per_scan`` (else the fewest false positives)."""
    within = [r for r in rows if r["fp_per_scan"] is not None and r["fp_per_scan"] <= max_fp_per_scan]
    if not within:
        return min(rows, key=lambda r: (r["fp_per_scan"], -(r["sensitivity"] or 0)))
    return max(within, key=lambda r: ((r["sensitivity"] or 0), -r["fp_per_scan"], r.get("touch_canal", True),
                                      -r["min_lesion_mm3"], -r["lesion_probability"], -r.get("mean_probability", 0.0)))


def store_postprocess(checkpoint: Path, *, out: Path, chosen: dict, rows: list[dict], chosen_on: str) -> Path:
    """Write ``checkpoint`` again to ``out`` with ``meta["postprocess"]`` set (atomic)."""
    from spinelesion.network.checkpoint import load_checkpoint, save_checkpoint

    state, meta = load_checkpoint(checkpoint)
    meta.pop("schema_version", None)
    meta["postprocess"] = {"min_lesion_mm3": chosen["min_lesion_mm3"],
                           "lesion_probability": chosen["lesion_probability"],
                           "mean_probability": chosen.get("mean_probability", 0.0),
                           "touch_canal": bool(chosen.get("touch_canal", True)),
                           "chosen_on": chosen_on, "operating_points": rows}
    return save_checkpoint(out, state_dict=state, meta=meta)
