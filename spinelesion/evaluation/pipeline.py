"""``evaluate_folders``: pair cases, score each one, pool the figures, write the outputs."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from spinelesion.evaluation.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED
from spinelesion.evaluation.cases import CaseMatchError, LoadedCase, load_case, pair_cases
from spinelesion.evaluation.lesions import DEFAULT_SIZE_BINS_ML, case_lesions
from spinelesion.evaluation.measurements import compare_records
from spinelesion.evaluation.metrics import DEFAULT_TOLERANCE_MM, SCORABLE_CLASSES, class_mask, overlap_metrics
from spinelesion.evaluation.summary import summarise
from spinelesion.evaluation.vertebrae import level_detection, predicted_vertebrae


def annotated_classes(ref_map, extra=()) -> list[str]:
    """Scored class names a reference label map annotates, in SCORABLE_CLASSES order: the classes
    its mapping names, ``vertebra`` when it names levels, plus ``extra`` (classes the reference
    annotates as empty, e.g. ``lesion`` on scans of healthy subjects)."""
    from spinelesion.measure.label_maps import load_label_map

    mapping = load_label_map(ref_map)
    named = set(mapping.get("classes", {}).values()) | ({"vertebra"} if mapping.get("levels") else set())
    unknown = set(extra) - set(SCORABLE_CLASSES)
    if unknown:
        raise CaseMatchError(f"--annotates: unknown class(es) {sorted(unknown)}; choose from {', '.join(SCORABLE_CLASSES)}")
    return [name for name in SCORABLE_CLASSES if name in named | set(extra)]


def classes_in_case(ref_classes, *, classes: list[str], always=None) -> list[str]:
    """The classes scored on one case: of ``classes`` (those the reference map names), the ones in
    ``always`` (None: all) and the others only where the reference holds them. A reference in our
    own schema annotates every class (absent means absent: ``always`` None); a reference in another
    map (TotalSegmentator, a cord mask, a custom map) often holds a subset of what its map can
    name, so a class it names but does not hold is not scored there, unless ``--annotates`` says
    the reference does annotate it.

    Args:
        ref_classes: (X, Y, Z) mapped reference classes.
    """
    if always is None:
        return list(classes)
    present = set(np.unique(ref_classes).tolist())
    return [c for c in classes if c in always or present & set(SCORABLE_CLASSES[c])]


def evaluate_case(loaded: LoadedCase, *, classes: list[str], tolerance_mm: float = DEFAULT_TOLERANCE_MM,
                  min_iou: float = 0.0, size_bins_ml=DEFAULT_SIZE_BINS_ML) -> dict:
    """Scores of one case: a row per scored class in ``classes`` (:func:`classes_in_case`), lesions
    (when ``lesion`` is scored), vertebra levels (when the reference names levels), measurements
    (when there is a truth record and a predicted record)."""
    pred, ref = loaded.pred.classes, loaded.ref.classes
    rows = [{"class": name, **overlap_metrics(pred=class_mask(pred, name), ref=class_mask(ref, name),
                                              spacing_mm=loaded.spacing_mm, tolerance_mm=tolerance_mm)}
            for name in classes]
    result = {"class_rows": rows, "lesions": None, "levels": None, "measurements": None,
              "modality": loaded.modality, "ignored_reference_values": list(loaded.ref.ignored_values)}
    if "lesion" in classes:
        result["lesions"] = case_lesions(pred_mask=class_mask(pred, "lesion"), ref_mask=class_mask(ref, "lesion"),
                                         affine=loaded.affine, probability=loaded.probability, min_iou=min_iou,
                                         size_bins_ml=size_bins_ml)
    if loaded.ref.levels is not None and loaded.ref.level_names:
        result["levels"] = level_detection(
            ref_levels=loaded.ref.levels, level_names=loaded.ref.level_names, affine=loaded.affine,
            pred_vertebrae=predicted_vertebrae(record=loaded.record, pred_classes=pred, affine=loaded.affine))
    if loaded.truth is not None and loaded.record is not None:
        result["measurements"] = compare_records(pred=loaded.record, truth=loaded.truth)
    return result


def case_groups(names: list[str], *, by: str | None, modalities: dict[str, str | None]) -> dict[str, str]:
    """{case: group} for ``--by``: None (one group "all"), ``modality`` (CT / MR from the
    prediction's record), ``dataset`` (the first folder of the case's path, the part of its name
    before ``__``) or a CSV file with columns ``case`` and ``group``."""
    if by is None:
        return {n: "all" for n in names}
    if by == "modality":
        return {n: modalities.get(n) or "unknown" for n in names}
    if by == "dataset":
        return {n: n.split("__")[0] if "__" in n else "(top level)" for n in names}
    path = Path(by)
    if not path.is_file():
        raise CaseMatchError(f"--by {by}: neither modality, dataset nor an existing CSV file")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"case", "group"} <= set(reader.fieldnames):
            raise CaseMatchError(f"--by {by}: the CSV needs the columns case and group")
        groups = {row["case"]: row["group"] for row in reader}
    missing = [n for n in names if n not in groups]
    if missing:
        raise CaseMatchError(f"--by {by}: {len(missing)} case(s) not listed ({', '.join(missing[:8])})")
    return {n: groups[n] for n in names}


def evaluate_folders(*, pred_dir: str | os.PathLike, ref_dir: str | os.PathLike, out_dir: str | os.PathLike,
                     ref_map: str | os.PathLike | dict = "schema", pred_map: str | os.PathLike | dict = "schema",
                     truth_dir: str | os.PathLike | None = None, by: str | None = None, annotates=(),
                     tolerance_mm: float = DEFAULT_TOLERANCE_MM, min_iou: float = 0.0,
                     size_bins_ml=DEFAULT_SIZE_BINS_ML, n_resamples: int = DEFAULT_RESAMPLES,
                     seed: int = DEFAULT_SEED, only_ref_cases: bool = False, command: str | None = None,
                     progress=None) -> dict:
    """Evaluate every predicted case against its reference; write OUT/cases.csv, OUT/lesions.csv,
    OUT/summary.json and OUT/evaluation.html (with OUT/plots/*.png). Returns the summary.

    Raises:
        CaseMatchError: the cases do not pair up; LabelMapError / ScanLoadError: a file is unusable.
    """
    from spinelesion.evaluation.report import write_outputs

    cases, skipped = pair_cases(pred_dir=pred_dir, ref_dir=ref_dir, truth_dir=truth_dir, only_ref_cases=only_ref_cases)
    classes = annotated_classes(ref_map, annotates)
    always = None if ref_map in ("schema", None) else set(annotates)
    results = []
    for case in cases:
        if progress is not None:
            progress(case.case)
        loaded = load_case(case, ref_map=ref_map, pred_map=pred_map)
        scored = classes_in_case(loaded.ref.classes, classes=classes, always=always)
        result = evaluate_case(loaded, classes=scored, tolerance_mm=tolerance_mm, min_iou=min_iou,
                               size_bins_ml=size_bins_ml)
        results.append({"case": case.case, **result})
    groups = case_groups([r["case"] for r in results], by=by, modalities={r["case"]: r["modality"] for r in results})
    for r in results:
        r["group"] = groups[r["case"]]
    settings = {"pred": str(pred_dir), "ref": str(ref_dir), "truth": None if truth_dir is None else str(truth_dir),
                "ref_map": ref_map if isinstance(ref_map, (str, dict)) else str(ref_map),
                "pred_map": pred_map if isinstance(pred_map, (str, dict)) else str(pred_map),
                "scored_classes": classes, "classes_always_annotated": "all" if always is None else sorted(always),
                "by": by, "surface_tolerance_mm": tolerance_mm,
                "lesion_match": {"connectivity": 26, "min_iou_exclusive": min_iou, "assignment": "greedy by IoU, one-to-one"},
                "size_bins_ml": list(size_bins_ml), "bootstrap": {"n_resamples": n_resamples, "seed": seed, "level": 0.95,
                                                                  "unit": "case"}}
    kw = {"classes": classes, "size_bins_ml": size_bins_ml, "n_resamples": n_resamples, "seed": seed}
    from spinelesion import __version__

    summary = {"spinelesion_version": __version__, "command": command, "settings": settings,
               "cases": [r["case"] for r in results], "skipped_predictions": skipped,
               "ignored_reference_values": {r["case"]: r["ignored_reference_values"] for r in results
                                            if r["ignored_reference_values"]},
               "all": summarise(results, **kw)}
    if by is not None:
        names = sorted(set(groups.values()))
        summary["groups"] = {g: summarise([r for r in results if r["group"] == g], **kw) for g in names}
    write_outputs(out_dir=Path(out_dir), results=results, summary=summary)
    return summary
