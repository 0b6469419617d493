"""Flat per-scan summary rows (summary.csv) and the helpers that rank and flag records.

Records are typed (:class:`spinelesion.record_types.MeasurementRecord`).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from spinelesion.io.atomic import write_text_atomic
from spinelesion.measure.findings import DESTRUCTION_FLAG_PCT
from spinelesion.record_types import MeasurementRecord
from spinelesion.vocabulary import bilsky_rank

SUMMARY_COLUMNS = (
    "case", "input", "status", "error", "modality", "n_vertebrae", "n_lesions", "lesion_volume_ml",
    "worst_bilsky", "max_mscc_pct", "max_body_destruction_pct", "compression_flag", "flags", "seconds",
)
STATUSES = ("ok", "partial", "failed", "skipped")

#: Spreadsheet programs run cells starting with these as formulas (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def max_body_destruction_pct(record: MeasurementRecord) -> float | None:
    """Highest ``body_destruction_pct`` over the record's vertebrae; None when there is none."""
    values = [v.body_destruction_pct for v in record.vertebrae if v.body_destruction_pct is not None]
    return float(max(values)) if values else None


def flagged_vertebra_indices(record: MeasurementRecord) -> list[int]:
    """Indices of vertebrae worth an axial view (drawn red in the report), ascending.

    A vertebra is flagged when it holds at least the smallest lesion kept
    (``record.settings.min_lesion_mm3``: a speck of a few voxels flags nothing) or has
    DESTRUCTION_FLAG_PCT of its body destroyed, has a Genant grade of 1 or more, posterolateral
    involvement, a lesion of the ``lesions`` list (all at least that size) points at it, or a
    finding is about it (``findings``: the worst cord cross-section's vertebra).
    """
    known = {v.index for v in record.vertebrae}
    min_ml = record.settings.min_lesion_mm3 / 1000.0
    flagged = {v.index for v in record.vertebrae
               if v.lesion_volume_ml >= min_ml or (v.body_destruction_pct or 0) >= DESTRUCTION_FLAG_PCT
               or (v.genant_grade or 0) >= 1 or v.posterolateral not in (None, "none")}
    flagged.update(x.vertebra_index for x in record.lesions if x.vertebra_index is not None)
    flagged.update(f.vertebra_index for f in record.findings if f.vertebra_index is not None)
    return sorted(flagged & known)


def cohort_sort_key(*, record: MeasurementRecord | None, status: str, case: str) -> tuple:
    """Sort key putting the most worrying scans first.

    Order: scans with a record before failed ones; then compression flag, worst Bilsky grade,
    highest body destruction, number of flags (all descending); then case name.
    """
    if record is None:
        return (1, 0, 0, 0.0, 0, case)
    destruction = max_body_destruction_pct(record)
    return (0, -int(bool(record.cord.compression_flag)), -bilsky_rank(record.cord.bilsky_grade),
            -(destruction if destruction is not None else -1.0), -len(record.flags), case)


def one_line(text: str | None, *, max_chars: int | None = None) -> str:
    """``text`` on one line (newlines and runs of spaces collapsed), cut at ``max_chars``; "" for None."""
    return " ".join(str(text).split())[:max_chars] if text else ""


def _round(value, digits: int):
    return None if value is None else round(float(value), digits)


def summary_row(*, case: str, record: MeasurementRecord | None, status: str, error: str | None,
                input_label: str, seconds: float) -> dict:
    """One summary.csv row (keys ``SUMMARY_COLUMNS``) for a scan.

    Args:
        case: the case folder name (no patient data).
        record: the typed measurement record, None when the scan failed.
        status: "ok", "partial" (some outputs failed), "failed" or "skipped" (a segmentation
            found among the scans).
        error: one-line reason for a failure, a partial case or a skipped input, else None.
        input_label: the input path relative to the run's input (no PHI).
        seconds: wall time spent on the scan.
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    row = dict.fromkeys(SUMMARY_COLUMNS)
    row.update(case=case, input=input_label, status=status, error=one_line(error),
               seconds=_round(seconds, 2))
    if record is not None:
        row.update(
            modality=record.scan.modality,
            n_vertebrae=len(record.vertebrae),
            n_lesions=len(record.lesions),
            lesion_volume_ml=_round(sum(x.volume_ml for x in record.lesions), 3),
            worst_bilsky=record.cord.bilsky_grade,
            max_mscc_pct=_round(record.cord.mscc_pct, 1),
            max_body_destruction_pct=_round(max_body_destruction_pct(record), 1),
            compression_flag=record.cord.compression_flag,  # None: not measured
            flags="; ".join(one_line(f) for f in record.flags),
        )
    return row


def _csv_cell(value) -> str:
    """A CSV cell: "" for None, text guarded against spreadsheet formula injection."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_summary_csv(*, rows: list[dict], path: Path) -> Path:
    """Write ``rows`` (from :func:`summary_row`) to ``path`` as CSV, atomically, in the given order.

    Columns are ``SUMMARY_COLUMNS``; missing keys are left empty, unknown keys are an error.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        unknown = set(row) - set(SUMMARY_COLUMNS)
        if unknown:
            raise ValueError(f"summary row has unknown columns {sorted(unknown)}")
        writer.writerow({key: _csv_cell(row.get(key)) for key in SUMMARY_COLUMNS})
    write_text_atomic(path, buffer.getvalue())
    return Path(path)
