"""``report.html``: one offline HTML file for a run, with the overlay PNGs referenced relatively.

Layout: disclaimer, cohort table (most worrying scans first), failed scans with their error, one
section per scan (overlays, flags, measurement tables), run information. No scripts, no network
resources. A case whose folder holds a viewer page (``viewer.html``, written by the case step:
``spinelesion.report.viewer``) is linked to it from its section and from its table rows
(``viewer.html#mm=x,y,z``: the crosshair at that vertebra, lesion or worst cord slice). The markup
is in ``templates/report.html.j2`` and its table macros in
``templates/report_tables.html.j2`` (autoescaped: every value is HTML-escaped); this module prepares
the values they show: formatted numbers, words, the cohort order and the links.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote

from spinelesion.io.atomic import write_text_atomic
from spinelesion.record_types import MeasurementRecord
from spinelesion.report.tables import (cohort_sort_key, flagged_vertebra_indices,
                                       max_body_destruction_pct, one_line)
from spinelesion.report.templating import macro, render
from spinelesion.report.viewer import VIEWER_PAGE, has_viewer

DISCLAIMER = ("Research tool, not for clinical use. Segmentations and measurements are produced "
              "automatically and have not been reviewed; they must not guide the care of patients.")

DEMONSTRATION_WARNING = (
    "Segmented by the default model shipped with spinelesion, trained on synthetic images only and "
    "never shown a real tumour (spinelesion/models/MODEL_CARD.md). On real scans of healthy volunteers "
    "it still reports false lesions on some and misses structures on others: read every lesion "
    "and flag here as a candidate to check. For research conclusions, train or fine-tune a model on "
    "data like yours (scripts/train.py) and pass it with --model.")

#: Case files linked from a scan's section when they exist.
CASE_FILES = ("measurements.json", "labels.nii.gz", "labels.seg.dcm", "measurements.sr.dcm")
_BILSKY_NOTE = ("Bilsky ESCC grade (Bilsky 2010); MSCC/MCC after Fehlings 1999; Genant 1993; "
                "SINS collapse (Fisher 2010).")
#: The page and its table macros, under spinelesion/report/templates.
TEMPLATE, TABLES = "report.html.j2", "report_tables.html.j2"

# Values for the templates: a string, or None where there is none (the template shows a dash).


def _s(value) -> str:
    return "" if value is None else str(value)


def _num(value, digits: int = 1) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _mm(point) -> str | None:
    return None if point is None else ", ".join(f"{float(c):.1f}" for c in point)


def _target(point) -> str | None:
    """A world RAS+ mm point as the viewer's "x,y,z" position (0.01 mm), None without one."""
    if point is None or len(point) != 3:
        return None
    return ",".join(f"{float(c):.2f}" for c in point)


def case_anchor(number: int, case: str) -> str:
    """A unique HTML id for the ``number``-th case."""
    return f"case-{number}-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", case).strip("-")[:60] or "x")


def _overlay_href(*, run_dir: Path, case_dir: Path | None, overlay) -> str:
    """Relative, URL-quoted link to an overlay given absolute or relative to run_dir or case_dir."""
    path = Path(overlay)
    if path.is_absolute():
        try:
            path = path.relative_to(run_dir)
        except ValueError:
            pass
    elif case_dir is not None and not (run_dir / path).exists():
        path = Path(case_dir) / path
    return quote(path.as_posix())


def _status(case: dict) -> str:
    return case.get("status") or ("ok" if case.get("record") is not None else "failed")


def _cohort_row(rank: int, number: int, case: dict) -> dict:
    """One row of the cohort table (``measured`` False: a scan without a record)."""
    record: MeasurementRecord | None = case.get("record")
    row = {"rank": rank, "anchor": case_anchor(number, str(case.get("case"))), "case": _s(case.get("case")),
           "status": _status(case), "measured": record is not None, "seconds": _num(case.get("seconds"))}
    if record is None:
        return {**row, "error": one_line(case.get("error"))}
    cord = record.cord
    return {**row, "flagged": bool(record.flags or cord.compression_flag),
            "modality": _text(record.scan.modality),
            "vertebrae": len(record.vertebrae), "lesions": len(record.lesions),
            "lesion_volume": _num(sum(x.volume_ml for x in record.lesions), 2),
            "bilsky": _text(cord.bilsky_grade), "mscc": _num(cord.mscc_pct),
            "destruction": _num(max_body_destruction_pct(record)), "compression": cord.compression_flag,
            "flags": list(record.flags)}


def _vertebra_rows(record: MeasurementRecord) -> list[dict]:
    flagged = set(flagged_vertebra_indices(record))
    return [{"flagged": v.index in flagged, "index": _text(v.index), "level": _text(v.level),
             "body_volume": _num(v.body_volume_ml, 2), "lesion_volume": _num(v.lesion_volume_ml, 2),
             "destruction": _num(v.body_destruction_pct),
             "heights": [_num(h) for h in (v.height_anterior_mm, v.height_middle_mm, v.height_posterior_mm)],
             "height_loss": _num(v.height_loss_pct), "genant": _text(v.genant_grade),
             "sins_collapse": _text(v.sins_collapse_words),
             "lesion_type": _text(v.lesion_type), "posterolateral": _text(v.posterolateral),
             "target": _target(v.centroid_mm)}
            for v in record.vertebrae]


def _lesion_rows(record: MeasurementRecord) -> list[dict]:
    def where(lesion) -> str | None:
        if lesion.vertebra_index is None:
            return _text(lesion.location)
        vertebra = record.vertebra(lesion.vertebra_index)
        return vertebra.short_name if vertebra is not None else _text(lesion.vertebra_index)

    return [{"id": _text(x.id), "volume": _num(x.volume_ml, 2), "centroid": _mm(x.centroid_mm), "where": where(x),
             "epidural": _text(x.epidural), "confidence": _num(x.confidence, 2),
             "tta_sd": _num(x.tta_sd, 2), "target": _target(x.centroid_mm)}
            for x in record.lesions]


def _cord_view(record: MeasurementRecord) -> dict:
    cord, scan = record.cord, record.scan
    return {"mscc": _num(cord.mscc_pct), "mcc": _num(cord.mcc_pct),
            "bilsky": _text(cord.bilsky_grade), "compression": cord.compression_flag,
            "worst_centroid": _mm(cord.worst_centroid_mm),
            "worst_target": _target(cord.worst_centroid_mm),
            "scan": f"{scan.modality or '?'} {list(scan.shape)} voxels, spacing "
                    f"{list(scan.spacing_mm)} mm, {scan.orientation or '?'}"}


def case_tables(record: MeasurementRecord | None) -> dict:
    """A record's table rows as report.html and viewer.html show them: ``flags`` (sentences),
    ``vertebrae``, ``lesions`` (rows) and ``cord`` (one view, None without a record), each row with
    its ``target`` position."""
    if record is None:
        return {"flags": [], "vertebrae": [], "lesions": [], "cord": None}
    return {"flags": list(record.flags), "vertebrae": _vertebra_rows(record),
            "lesions": _lesion_rows(record), "cord": _cord_view(record)}


def _cord_table(record: MeasurementRecord) -> str:
    """The cord and canal table of ``record`` as HTML (the section's macro on its own)."""
    return str(macro(TABLES, "cord_table")(_cord_view(record)))


def _truth_view(record: MeasurementRecord, truth: dict) -> dict:
    """Measured beside true values of a case whose truth is known (the demo's phantoms; ``truth``:
    the phantom's own truth record, JSON)."""
    from spinelesion.evaluation.measurements import compare_records

    paired = compare_records(pred=record, truth=truth)
    rows = [{"level": _text(v.get("level")),
             "pairs": [(_num(v["pred_destroyed_fraction_pct"]), _num(v["truth_destroyed_fraction_pct"])),
                       (_num(v["pred_height_loss_pct"]), _num(v["truth_height_loss_pct"])),
                       (_num(v["pred_genant"], 0), _num(v["truth_genant"], 0))]}
            for v in paired["vertebrae"]]
    return {"n_paired": paired["n_paired"], "rows": rows,
            "vertebrae": [_num(paired["n_pred_vertebrae"], 0), _num(paired["n_truth_vertebrae"], 0)],
            "lesions": [_num(len(record.lesions), 0), _num(len(truth.get("lesions") or []), 0)],
            "mscc": [_num(x) for x in paired["mscc_pct"]], "bilsky": [_text(x) for x in paired["bilsky"]],
            "compression": list(paired["compression_flag"])}


def _case_view(*, number: int, case: dict, run_dir: Path) -> dict:
    name = str(case.get("case"))
    record = case.get("record")
    case_dir = Path(case["case_dir"]) if case.get("case_dir") is not None else None
    files = [{"href": quote((case_dir / n).as_posix()), "name": n} for n in CASE_FILES
             if case_dir is not None and (run_dir / case_dir / n).is_file()]
    view = {"anchor": case_anchor(number, name), "name": name, "status": _status(case),
            "seconds": _num(case.get("seconds")), "files": files, "measured": record is not None,
            "viewer": quote((case_dir / VIEWER_PAGE).as_posix()) if record is not None and has_viewer(
                run_dir=run_dir, case_dir=case_dir) else None}
    if record is None:
        return {**view, "error": one_line(case.get("error")) or "no result"}
    figures = [{"href": _overlay_href(run_dir=run_dir, case_dir=case_dir, overlay=overlay),
                "label": Path(overlay).stem} for overlay in case.get("overlays") or []]
    return {**view, "flags": list(record.flags), "figures": figures,
            "vertebrae": _vertebra_rows(record), "levels": _levels_sentence(record), "lesions": _lesion_rows(record),
            "cord": _cord_view(record), "truth": _truth_view(record, case["truth"]) if case.get("truth") else None}


def _levels_sentence(record: MeasurementRecord) -> str | None:
    """How the levels were named (the record's ``column.level_naming``), as the report says it."""
    naming = record.column.level_naming if record.column is not None else None
    return None if naming is None else f"Levels: {naming.detail}."


def _info_rows(info: dict, depth: int = 0) -> list[dict]:
    """Run information as rows {key, text, table}: a dict up to three levels deep is a nested table."""
    rows = []
    for key, value in info.items():
        table, text = None, None
        if isinstance(value, dict) and depth < 3:
            table = _info_rows(value, depth + 1)
        elif isinstance(value, (list, tuple)):
            text = ", ".join(str(x) for x in value)
        elif isinstance(value, (dict, float)):
            text = json.dumps(value) if isinstance(value, dict) else f"{value:.3g}"
        else:
            text = _s(value)
        rows.append({"key": _s(key), "text": text, "table": table})
    return rows


def render_report(*, run_dir: Path, cases: list[dict], run_info: dict) -> str:
    """The report as an HTML string (see :func:`write_report_html`)."""
    numbered = list(enumerate(cases))
    ordered = sorted(numbered, key=lambda nc: cohort_sort_key(
        record=nc[1].get("record"), status=str(nc[1].get("status")), case=str(nc[1].get("case"))))
    failed = [(n, c) for n, c in numbered if c.get("record") is None and c.get("status") != "skipped"]
    counts = {"inputs": len(cases), "measured": sum(1 for c in cases if c.get("record") is not None),
              "failed": len(failed), "partial": sum(1 for c in cases if c.get("status") == "partial"),
              "skipped": sum(1 for c in cases if c.get("status") == "skipped"),
              "flagged": sum(1 for c in cases if c.get("record") is not None and (
                  c["record"].flags or c["record"].cord.compression_flag))}
    return render(
        TEMPLATE, disclaimer=DISCLAIMER, counts=counts, bilsky_note=_BILSKY_NOTE,
        demonstration_warning=DEMONSTRATION_WARNING if run_info.get("demonstration_models") else None,
        cohort=[_cohort_row(rank, n, c) for rank, (n, c) in enumerate(ordered, start=1)],
        failed=[{"anchor": case_anchor(n, str(c.get("case"))), "case": _s(c.get("case")),
                 "error": one_line(c.get("error")) or "no result"} for n, c in failed],
        cases=[_case_view(number=n, case=c, run_dir=run_dir) for n, c in ordered],
        run_info=_info_rows(run_info), run_folder=Path(run_dir).resolve().name)


def write_report_html(*, run_dir: Path, cases: list[dict], run_info: dict) -> Path:
    """Write ``run_dir/report.html`` atomically and return its path.

    Args:
        run_dir: the run's output folder.
        cases: one dict per scan with keys ``case`` (name), ``status`` ("ok"/"failed"/"skipped"),
            ``error`` (one line or None), ``record`` (the typed measurement record, None on failure),
            ``case_dir`` (folder relative to ``run_dir``), ``overlays`` (PNG paths: absolute, relative
            to ``run_dir``, or relative to ``case_dir``), ``seconds``; optionally ``truth`` (the
            true record of a phantom: its section then shows measured beside true values).
        run_info: model, versions, timings... shown as nested tables.
    """
    run_dir = Path(run_dir)
    path = run_dir / "report.html"
    write_text_atomic(path, render_report(run_dir=run_dir, cases=cases, run_info=run_info))
    return path
