"""Flat per-scan summary rows (summary.csv) and the helpers that rank and flag records.

Records follow the measurement record of docs/contracts.md section 2.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from spinelesion.io.atomic import write_text_atomic
from spinelesion.measure.findings import DESTRUCTION_FLAG_PCT
from spinelesion.vocabulary import bilsky_rank

SUMMARY_COLUMNS = (
    "case", "input", "status", "error", "modality", "n_vertebrae", "n_lesions", "lesion_volume_ml",
    "worst_bilsky", "max_mscc_pct", "max_body_destruction_pct", "compression_flag", "flags", "seconds",
)
STATUSES = ("ok", "partial", "failed", "skipped")

#: Spreadsheet programs run cells starting with these as formulas (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def max_body_destruction_pct(record: dict) -> float | None:
    """Highest ``body_destruction_pct`` over the record's vertebrae; None when there is none."""
    values = [v.get("body_destruction_pct") for v in record.get("vertebrae") or []]
    values = [float(x) for x in values if x is not None]
    return max(values) if values else None


def flagged_vertebra_indices(record: dict) -> list[int]:
    """Indices of vertebrae worth an axial view (drawn red in the report), ascending.

    A vertebra is flagged when it holds at least the smallest lesion kept
    (``record["settings"]["min_lesion_mm3"]``, default that of MeasureSettings: a speck of a few
    voxels flags nothing) or has DESTRUCTION_FLAG_PCT of its body destroyed, has a Genant grade of 1 or more, posterolateral involvement, a lesion
    of the ``lesions`` list (all at least that size) points at it, or a finding is about it
    (``findings``: the worst cord cross-section's vertebra).
    """
    known = {int(v["index"]) for v in record.get("vertebrae") or [] if v.get("index") is not None}
    flagged: set[int] = set()
    min_ml = min_lesion_ml(record)
    for v in record.get("vertebrae") or []:
        if v.get("index") is None:
            continue
        if ((v.get("lesion_volume_ml") or 0) >= min_ml
                or (v.get("body_destruction_pct") or 0) >= DESTRUCTION_FLAG_PCT
                or (v.get("genant_grade") or 0) >= 1
                or v.get("posterolateral") not in (None, "none")):
            flagged.add(int(v["index"]))
    for lesion in record.get("lesions") or []:
        if lesion.get("vertebra_index") is not None:
            flagged.add(int(lesion["vertebra_index"]))
    flagged.update(int(f["vertebra_index"]) for f in record.get("findings") or [] if f.get("vertebra_index") is not None)
    return sorted(flagged & known)


def min_lesion_ml(record: dict) -> float:
    """The smallest lesion the record's measurement kept, in ml (its settings, else the default)."""
    from spinelesion.measure.settings import MeasureSettings

    value = (record.get("settings") or {}).get("min_lesion_mm3")
    return float(MeasureSettings().min_lesion_mm3 if value is None else value) / 1000.0


def cohort_sort_key(*, record: dict | None, status: str, case: str) -> tuple:
    """Sort key putting the most worrying scans first.

    Order: scans with a record before failed ones; then compression flag, worst Bilsky grade,
    highest body destruction, number of flags (all descending); then case name.
    """
    if record is None:
        return (1, 0, 0, 0.0, 0, case)
    cord = record.get("cord") or {}
    destruction = max_body_destruction_pct(record)
    return (0, -int(bool(cord.get("compression_flag"))), -bilsky_rank(cord.get("bilsky_grade")),
            -(destruction if destruction is not None else -1.0), -len(record.get("flags") or []), case)


def one_line(text: str | None, *, max_chars: int | None = None) -> str:
    """``text`` on one line (newlines and runs of spaces collapsed), cut at ``max_chars``; "" for None."""
    return " ".join(str(text).split())[:max_chars] if text else ""


def _round(value, digits: int):
    return None if value is None else round(float(value), digits)


def summary_row(*, case: str, record: dict | None, status: str, error: str | None,
                input_label: str, seconds: float) -> dict:
    """One summary.csv row (keys ``SUMMARY_COLUMNS``) for a scan.

    Args:
        case: the case folder name (no patient data).
        record: the measurement record (docs/contracts.md section 2), None when the scan failed.
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
        cord = record.get("cord") or {}
        lesions = record.get("lesions") or []
        row.update(
            modality=(record.get("scan") or {}).get("modality"),
            n_vertebrae=len(record.get("vertebrae") or []),
            n_lesions=len(lesions),
            lesion_volume_ml=_round(sum(float(x.get("volume_ml") or 0.0) for x in lesions), 3),
            worst_bilsky=cord.get("bilsky_grade"),
            max_mscc_pct=_round(cord.get("mscc_pct"), 1),
            max_body_destruction_pct=_round(max_body_destruction_pct(record), 1),
            compression_flag=cord.get("compression_flag"),  # None: not measured
            flags="; ".join(one_line(f) for f in record.get("flags") or []),
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
