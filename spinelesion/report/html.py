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
from spinelesion.report.tables import (cohort_sort_key, flagged_vertebra_indices,
                                       max_body_destruction_pct, one_line)
from spinelesion.report.templating import macro, render
from spinelesion.report.viewer import VIEWER_PAGE, has_viewer
from spinelesion.vocabulary import SINS_COLLAPSE_WORDS, vertebra_name

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
    return case.get("status") or ("ok" if case.get("record") else "failed")


def _cohort_row(rank: int, number: int, case: dict) -> dict:
    """One row of the cohort table (``measured`` False: a scan without a record)."""
    record = case.get("record")
    row = {"rank": rank, "anchor": case_anchor(number, str(case.get("case"))), "case": _s(case.get("case")),
           "status": _status(case), "measured": record is not None, "seconds": _num(case.get("seconds"))}
    if record is None:
        return {**row, "error": one_line(case.get("error"))}
    cord = record.get("cord") or {}
    flags = record.get("flags") or []
    lesions = record.get("lesions") or []
    return {**row, "flagged": bool(flags or cord.get("compression_flag")),
            "modality": _text((record.get("scan") or {}).get("modality")),
            "vertebrae": len(record.get("vertebrae") or []), "lesions": len(lesions),
            "lesion_volume": _num(sum(float(x.get("volume_ml") or 0.0) for x in lesions), 2),
            "bilsky": _text(cord.get("bilsky_grade")), "mscc": _num(cord.get("mscc_pct")),
            "destruction": _num(max_body_destruction_pct(record)), "compression": cord.get("compression_flag"),
            "flags": [str(f) for f in flags]}


def _vertebra_rows(record: dict) -> list[dict]:
    flagged = set(flagged_vertebra_indices(record))
    return [{"flagged": v.get("index") in flagged, "index": _text(v.get("index")), "level": _text(v.get("level")),
             "body_volume": _num(v.get("body_volume_ml"), 2), "lesion_volume": _num(v.get("lesion_volume_ml"), 2),
             "destruction": _num(v.get("body_destruction_pct")),
             "heights": [_num(v.get(k)) for k in ("height_anterior_mm", "height_middle_mm", "height_posterior_mm")],
             "height_loss": _num(v.get("height_loss_pct")), "genant": _text(v.get("genant_grade")),
             "sins_collapse": _text(SINS_COLLAPSE_WORDS.get(v.get("sins_collapse"), v.get("sins_collapse"))),
             "lesion_type": _text(v.get("lesion_type")), "posterolateral": _text(v.get("posterolateral")),
             "target": _target(v.get("centroid_mm"))}
            for v in record.get("vertebrae") or []]


def _lesion_rows(record: dict) -> list[dict]:
    names = {v.get("index"): vertebra_name(v.get("level"), v.get("index"), short=True)
             for v in record.get("vertebrae") or []}
    return [{"id": _text(x.get("id")), "volume": _num(x.get("volume_ml"), 2), "centroid": _mm(x.get("centroid_mm")),
             "where": _text(names.get(x.get("vertebra_index"), x.get("vertebra_index"))
                            if x.get("vertebra_index") is not None else x.get("location")),
             "epidural": _text(x.get("epidural")), "confidence": _num(x.get("confidence"), 2),
             "tta_sd": _num(x.get("tta_sd"), 2), "target": _target(x.get("centroid_mm"))}
            for x in record.get("lesions") or []]


def _cord_view(record: dict) -> dict:
    cord = record.get("cord") or {}
    scan = record.get("scan") or {}
    return {"mscc": _num(cord.get("mscc_pct")), "mcc": _num(cord.get("mcc_pct")),
            "bilsky": _text(cord.get("bilsky_grade")), "compression": cord.get("compression_flag"),
            "worst_centroid": _mm(cord.get("worst_centroid_mm")),
            "worst_target": _target(cord.get("worst_centroid_mm")),
            "scan": f"{scan.get('modality') or '?'} {scan.get('shape')} voxels, spacing "
                    f"{scan.get('spacing_mm')} mm, {scan.get('orientation') or '?'}"}


def case_tables(record: dict) -> dict:
    """A record's table rows as report.html and viewer.html show them: ``flags`` (sentences),
    ``vertebrae``, ``lesions`` (rows) and ``cord`` (one view), each row with its ``target`` position."""
    return {"flags": [str(f) for f in record.get("flags") or []], "vertebrae": _vertebra_rows(record),
            "lesions": _lesion_rows(record), "cord": _cord_view(record)}


def _cord_table(record: dict) -> str:
    """The cord and canal table of ``record`` as HTML (the section's macro on its own)."""
    return str(macro(TABLES, "cord_table")(_cord_view(record)))


def _truth_view(record: dict, truth: dict) -> dict:
    """Measured beside true values of a case whose truth is known (the demo's phantoms)."""
    from spinelesion.evaluation.measurements import compare_records

    paired = compare_records(pred=record, truth=truth)
    rows = [{"level": _text(v.get("level")),
             "pairs": [(_num(v["pred_destroyed_fraction_pct"]), _num(v["truth_destroyed_fraction_pct"])),
                       (_num(v["pred_height_loss_pct"]), _num(v["truth_height_loss_pct"])),
                       (_num(v["pred_genant"], 0), _num(v["truth_genant"], 0))]}
            for v in paired["vertebrae"]]
    return {"n_paired": paired["n_paired"], "rows": rows,
            "vertebrae": [_num(len(r.get("vertebrae") or []), 0) for r in (record, truth)],
            "lesions": [_num(len(r.get("lesions") or []), 0) for r in (record, truth)],
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
    return {**view, "flags": [str(f) for f in record.get("flags") or []], "figures": figures,
            "vertebrae": _vertebra_rows(record), "lesions": _lesion_rows(record), "cord": _cord_view(record),
            "truth": _truth_view(record, case["truth"]) if case.get("truth") else None}


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
              "flagged": sum(1 for c in cases if c.get("record") and (c["record"].get("flags") or (
                  c["record"].get("cord") or {}).get("compression_flag")))}
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
            ``error`` (one line or None), ``record`` (docs/contracts.md section 2 record, None on failure),
            ``case_dir`` (folder relative to ``run_dir``), ``overlays`` (PNG paths: absolute, relative
            to ``run_dir``, or relative to ``case_dir``), ``seconds``; optionally ``truth`` (the
            true record of a phantom: its section then shows measured beside true values).
        run_info: model, versions, timings... shown as nested tables.
    """
    run_dir = Path(run_dir)
    path = run_dir / "report.html"
    write_text_atomic(path, render_report(run_dir=run_dir, cases=cases, run_info=run_info))
    return path
