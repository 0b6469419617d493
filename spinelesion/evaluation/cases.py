"""Find the predicted and reference cases, pair them by name, and load a pair onto one grid.

PRED is either an ``infer`` output folder (``PRED/<case>/labels.nii.gz`` with
``measurements.json`` and, with ``--save-probabilities``, ``probabilities.nii.gz`` beside it) or a
folder (tree) of label maps. REF is a folder (tree) of label maps. Case names are those ``infer``
gives: the path under the folder, extension removed, folders joined by ``__`` (so a reference tree
laid out like the input tree of ``infer`` pairs with its output). Truth records are
``TRUTH/<case>.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spinelesion.errors import RecordError, SpinelesionError
from spinelesion.record_types import MeasurementRecord


class CaseMatchError(SpinelesionError):
    """Predicted, reference and truth cases do not pair up by name."""


@dataclass(frozen=True, kw_only=True)
class EvaluationCase:
    """Files of one case (None where absent)."""

    case: str
    pred_labels: Path
    ref_labels: Path
    pred_record: Path | None = None
    probabilities: Path | None = None
    truth: Path | None = None
    status: Path | None = None


def find_predictions(pred_dir: str | Path) -> dict[str, dict]:
    """{case: {"labels", "record", "probabilities", "status"}} of an infer output folder or a
    folder of label maps."""
    root = Path(pred_dir)
    if not root.is_dir():
        raise CaseMatchError(f"--pred {root}: no such folder")
    infer_dirs = sorted(p.parent for p in root.glob("*/labels.nii.gz"))
    if infer_dirs:
        return {d.name: {"labels": d / "labels.nii.gz", "record": _file(d / "measurements.json"),
                         "probabilities": _file(d / "probabilities.nii.gz"), "status": _file(d / "status.json")}
                for d in infer_dirs}
    return {case: {"labels": path, "record": None, "probabilities": None, "status": None}
            for case, path in find_label_maps(root, what="--pred").items()}


def find_label_maps(root: str | Path, *, what: str = "--ref") -> dict[str, Path]:
    """{case: path} of the label maps (NIfTI, MHA, NRRD) under ``root``, named as ``infer`` names cases."""
    from spinelesion.io.discover import discover_cases

    root = Path(root)
    if not root.is_dir():
        raise CaseMatchError(f"{what} {root}: no such folder")
    try:
        found = discover_cases(root)
    except SpinelesionError as err:
        raise CaseMatchError(f"{what} {root}: no label maps found ({err})") from None
    return {c.case_id: c.path for c in found if c.path.is_file()}


def pair_cases(*, pred_dir: str | Path, ref_dir: str | Path, truth_dir: str | Path | None = None,
               only_ref_cases: bool = False) -> tuple[list[EvaluationCase], list[str]]:
    """Pair predictions, references (and truth records) by case name.

    Args:
        only_ref_cases: predictions without a reference are skipped (returned) instead of an error.

    Returns:
        (cases sorted by name, names of the predictions skipped).

    Raises:
        CaseMatchError listing, on one line, the cases found on one side only.
    """
    preds = find_predictions(pred_dir)
    refs = find_label_maps(ref_dir)
    pred_only = sorted(set(preds) - set(refs))
    ref_only = sorted(set(refs) - set(preds))
    if ref_only or (pred_only and not only_ref_cases):
        raise CaseMatchError(
            f"cases do not pair up by name: {len(pred_only)} only in --pred {pred_dir} ({_names(pred_only)}), "
            f"{len(ref_only)} only in --ref {ref_dir} ({_names(ref_only)})"
            + ("" if ref_only else "; --only-ref-cases skips predictions without a reference"))
    names = sorted(set(preds) & set(refs))
    truths: dict[str, Path] = {}
    if truth_dir is not None:
        truth_root = Path(truth_dir)
        if not truth_root.is_dir():
            raise CaseMatchError(f"--truth {truth_root}: no such folder")
        truths = {p.name[: -len(".json")]: p for p in truth_root.glob("*.json")}
        missing = [n for n in names if n not in truths]
        if missing:
            raise CaseMatchError(f"{len(missing)} case(s) without a truth record in --truth {truth_root} "
                                 f"({_names(missing)}); truth records are named <case>.json")
    cases = [EvaluationCase(case=n, pred_labels=preds[n]["labels"], ref_labels=refs[n],
                            pred_record=preds[n]["record"], probabilities=preds[n]["probabilities"],
                            truth=truths.get(n), status=preds[n]["status"]) for n in names]
    return cases, (pred_only if only_ref_cases else [])


@dataclass(frozen=True)
class LoadedCase:
    """One case on the prediction's grid.

    Attributes:
        pred: predicted labels mapped to our classes (``MappedLabels``), (X, Y, Z).
        ref: reference labels mapped to our classes, moved onto the prediction's grid, (X, Y, Z).
        affine: (4, 4) voxel -> RAS+ mm of the grid.
        spacing_mm: (3,) voxel size.
        probability: (X, Y, Z) float32 lesion probability 0..1, or None.
        record: the prediction's typed measurement record or None; truth: the truth record (JSON) or None.
        modality: "CT", "MR" or None.
    """

    pred: object
    ref: object
    affine: np.ndarray
    spacing_mm: tuple[float, float, float]
    probability: np.ndarray | None
    record: MeasurementRecord | None
    truth: dict | None
    modality: str | None


def load_case(case: EvaluationCase, *, ref_map, pred_map="schema") -> LoadedCase:
    """Read a case's files; the reference may store the prediction's voxels in another axis order
    or direction (``labels_on_image_grid``), any other grid difference is a LabelMapError."""
    from spinelesion.io.grid import labels_on_image_grid
    from spinelesion.io.load import load_scan
    from spinelesion.measure.label_maps import apply_label_map

    pred_scan = load_scan(case.pred_labels)
    ref_scan = load_scan(case.ref_labels)
    ref_array = labels_on_image_grid(ref_scan, like=pred_scan, path=case.ref_labels)
    pred = apply_label_map(_integers(pred_scan.array), pred_map)
    ref = apply_label_map(_integers(ref_array), ref_map)
    probability = None
    if case.probabilities is not None:
        import nibabel as nib

        from spinelesion.labels import LESION

        img = nib.load(str(case.probabilities))
        probability = np.asarray(img.dataobj[..., LESION], dtype=np.float32)
        if probability.shape != pred_scan.shape:
            probability = None
    record = _record(case.pred_record)
    truth = _json(case.truth)
    modality = (record.scan.modality if record is not None else None) or (_json(case.status) or {}).get("modality")
    return LoadedCase(pred=pred, ref=ref, affine=pred_scan.affine, spacing_mm=pred_scan.spacing_mm,
                      probability=probability, record=record, truth=truth, modality=modality)


def _integers(array: np.ndarray) -> np.ndarray:
    """Label values as integers (float 0/1 masks, as some tools write them, rounded)."""
    return np.rint(array).astype(np.int32) if array.dtype.kind == "f" else array.astype(np.int32)


def _json(path: Path | None) -> dict | None:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CaseMatchError(f"{path}: cannot read JSON ({err})") from None


def _record(path: Path | None) -> MeasurementRecord | None:
    """The prediction's typed measurement record; CaseMatchError when unreadable or invalid."""
    if path is None:
        return None
    try:
        return MeasurementRecord.read(path)
    except RecordError as err:
        raise CaseMatchError(str(err)) from None


def _file(path: Path) -> Path | None:
    return path if path.is_file() else None


def _names(names: list[str], most: int = 8) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:most])
    return shown + (f", ... {len(names) - most} more" if len(names) > most else "")
