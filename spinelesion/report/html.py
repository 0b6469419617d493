"""``report.html``: one offline HTML file for a run, with the overlay PNGs referenced relatively.

Layout: disclaimer, cohort table (most worrying scans first), failed scans with their error, one
section per scan (overlays, flags, measurement tables), run information. No scripts, no network
resources; every value is HTML-escaped.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from urllib.parse import quote

from spinelesion.io.atomic import write_text_atomic
from spinelesion.report.tables import (cohort_sort_key, flagged_vertebra_indices,
                                       max_body_destruction_pct, one_line)
from spinelesion.vocabulary import SINS_COLLAPSE_WORDS, vertebra_name

DISCLAIMER = ("Research tool, not for clinical use. Segmentations and measurements are produced "
              "automatically and have not been reviewed; they must not guide the care of patients.")

DEMONSTRATION_WARNING = (
    "Segmented by the default model shipped with spinelesion, trained on synthetic images only and "
    "never shown a real tumour (spinelesion/models/MODEL_CARD.md). On real scans of healthy volunteers "
    "it still reports false lesions and, on two of ten, a false cord compression: read every lesion "
    "and flag here as a candidate to check. For research conclusions, train or fine-tune a model on "
    "data like yours (scripts/train.py) and pass it with --model.")

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1500px;
 padding:0 18px 40px;color:#1d1d1f;background:#fafafa}
h1{margin:18px 0 6px}h2{margin-top:34px;border-bottom:2px solid #ccc;padding-bottom:4px}
.disclaimer{background:#fff1c2;border:2px solid #d9a400;padding:8px 12px;font-weight:600}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px;background:#fff}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#eceff3;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.flagged td{background:#ffe5e5}tr.failed td{background:#eee;color:#555}
.status-failed{color:#b00000;font-weight:600}.flag{color:#b00000;font-weight:600}
.gallery{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
.gallery figure{margin:0;background:#000;padding:4px}
.gallery img{display:block;max-width:100%;height:auto}
.gallery figcaption{color:#ddd;font-size:12px;padding:2px}
.muted{color:#666}code{font-size:12px}
"""

#: Case files linked from a scan's section when they exist.
CASE_FILES = ("measurements.json", "labels.nii.gz", "labels.seg.dcm", "measurements.sr.dcm")
_BILSKY_NOTE = ("Bilsky ESCC grade (Bilsky 2010); MSCC/MCC after Fehlings 1999; Genant 1993; "
                "SINS collapse (Fisher 2010).")


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value, digits: int = 1) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return _e(value)


def _text(value) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return _e(value)


def _compression(flag) -> str:
    """The compression flag: YES, no, or "not measured" (None), never a negative it did not find."""
    if flag is None:
        return '<span class="muted">not measured</span>'
    return "<span class=flag>YES</span>" if flag else "no"


def _mm(point) -> str:
    return "&ndash;" if point is None else _e(", ".join(f"{float(c):.1f}" for c in point))


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


def _cohort_table(ordered: list[tuple[int, dict]]) -> str:
    head = ("<tr><th>#</th><th>case</th><th>status</th><th>modality</th><th>vertebrae</th>"
            "<th>lesions</th><th>lesion volume (ml)</th><th>worst Bilsky</th><th>max MSCC (%)</th>"
            "<th>max body destruction (%)</th><th>cord compression</th><th>flags / error</th>"
            "<th>seconds</th></tr>")
    rows = []
    for rank, (number, case) in enumerate(ordered, start=1):
        record = case.get("record")
        status = case.get("status") or ("ok" if record else "failed")
        anchor = case_anchor(number, str(case.get("case")))
        link = f'<a href="#{anchor}">{_e(case.get("case"))}</a>'
        if record is None:
            rows.append(f'<tr class="failed"><td class="num">{rank}</td><td>{link}</td>'
                        f'<td class="status-{_e(status)}">{_e(status)}</td>' + "<td></td>" * 8 +
                        f'<td>{_e(one_line(case.get("error")))}</td>'
                        f'<td class="num">{_num(case.get("seconds"))}</td></tr>')
            continue
        cord = record.get("cord") or {}
        flags = record.get("flags") or []
        lesions = record.get("lesions") or []
        volume = sum(float(x.get("volume_ml") or 0.0) for x in lesions)
        klass = ' class="flagged"' if flags or cord.get("compression_flag") else ""
        rows.append(
            f'<tr{klass}><td class="num">{rank}</td><td>{link}</td><td>{_e(status)}</td>'
            f'<td>{_text((record.get("scan") or {}).get("modality"))}</td>'
            f'<td class="num">{len(record.get("vertebrae") or [])}</td><td class="num">{len(lesions)}</td>'
            f'<td class="num">{_num(volume, 2)}</td><td>{_text(cord.get("bilsky_grade"))}</td>'
            f'<td class="num">{_num(cord.get("mscc_pct"))}</td>'
            f'<td class="num">{_num(max_body_destruction_pct(record))}</td>'
            f'<td>{_compression(cord.get("compression_flag"))}</td>'
            f'<td>{"<br>".join(_e(f) for f in flags)}</td><td class="num">{_num(case.get("seconds"))}</td></tr>')
    return f'<table id="cohort"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _vertebra_table(record: dict) -> str:
    flagged = set(flagged_vertebra_indices(record))
    columns = ("index", "level", "body (ml)", "lesion (ml)", "destruction (%)", "height A / M / P (mm)",
               "height loss (%)", "Genant", "SINS collapse", "lesion type", "posterolateral")
    rows = []
    for v in record.get("vertebrae") or []:
        heights = " / ".join(_num(v.get(k)) for k in ("height_anterior_mm", "height_middle_mm",
                                                      "height_posterior_mm"))
        klass = ' class="flagged"' if v.get("index") in flagged else ""
        rows.append(
            f'<tr{klass}><td class="num">{_text(v.get("index"))}</td><td>{_text(v.get("level"))}</td>'
            f'<td class="num">{_num(v.get("body_volume_ml"), 2)}</td>'
            f'<td class="num">{_num(v.get("lesion_volume_ml"), 2)}</td>'
            f'<td class="num">{_num(v.get("body_destruction_pct"))}</td><td class="num">{heights}</td>'
            f'<td class="num">{_num(v.get("height_loss_pct"))}</td><td>{_text(v.get("genant_grade"))}</td>'
            f'<td>{_text(SINS_COLLAPSE_WORDS.get(v.get("sins_collapse"), v.get("sins_collapse")))}</td><td>{_text(v.get("lesion_type"))}</td>'
            f'<td>{_text(v.get("posterolateral"))}</td></tr>')
    if not rows:
        return '<p class="muted">No vertebrae found.</p>'
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    return f'<table class="vertebrae"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _lesion_table(record: dict) -> str:
    names = {v.get("index"): vertebra_name(v.get("level"), v.get("index"), short=True)
             for v in record.get("vertebrae") or []}
    rows = [f'<tr><td class="num">{_text(x.get("id"))}</td><td class="num">{_num(x.get("volume_ml"), 2)}</td>'
            f'<td>{_mm(x.get("centroid_mm"))}</td>'
            f'<td>{_text(names.get(x.get("vertebra_index"), x.get("vertebra_index")) if x.get("vertebra_index") is not None else x.get("location"))}</td>'
            f'<td>{_text(x.get("epidural"))}</td><td class="num">{_num(x.get("confidence"), 2)}</td></tr>'
            for x in record.get("lesions") or []]
    if not rows:
        return '<p class="muted">No lesions found.</p>'
    return ('<table class="lesions"><thead><tr><th>id</th><th>volume (ml)</th><th>centroid (RAS mm)</th>'
            '<th>vertebra</th><th>epidural</th><th title="mean lesion probability of the network over the '
            'lesion\'s voxels">confidence</th></tr></thead><tbody>'
            f'{"".join(rows)}</tbody></table>')


def _cord_table(record: dict) -> str:
    cord = record.get("cord") or {}
    scan = record.get("scan") or {}
    items = [("MSCC (%)", _num(cord.get("mscc_pct"))), ("MCC (%)", _num(cord.get("mcc_pct"))),
             ("Bilsky grade", _text(cord.get("bilsky_grade"))),
             ("cord compression", _compression(cord.get("compression_flag"))),
             ("worst slice centre (RAS mm)", _mm(cord.get("worst_centroid_mm"))),
             ("scan", _e(f"{scan.get('modality') or '?'} {scan.get('shape')} voxels, spacing "
                         f"{scan.get('spacing_mm')} mm, {scan.get('orientation') or '?'}"))]
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in items)
    return f'<table class="cord"><tbody>{body}</tbody></table>'


def _truth_table(record: dict, truth: dict) -> str:
    """Measured beside true values of a case whose truth is known (the demo's phantoms)."""
    from spinelesion.evaluation.measurements import compare_records

    paired = compare_records(pred=record, truth=truth)

    def pair(measured, true, digits=1):
        return f'<td class="num">{_num(measured, digits)}</td><td class="num">{_num(true, digits)}</td>'

    rows = [f'<tr><td>{_text(v.get("level"))}</td>{pair(v["pred_destroyed_fraction_pct"], v["truth_destroyed_fraction_pct"])}'
            f'{pair(v["pred_height_loss_pct"], v["truth_height_loss_pct"])}{pair(v["pred_genant"], v["truth_genant"], 0)}</tr>'
            for v in paired["vertebrae"]]
    head = ('<tr><th rowspan="2">vertebra (true level)</th><th colspan="2">body destroyed (%)</th>'
            '<th colspan="2">height loss (%)</th><th colspan="2">Genant grade</th></tr>'
            + "<tr>" + "<th>measured</th><th>true</th>" * 3 + "</tr>")
    flags = [_compression(x) for x in paired["compression_flag"]]
    summary = [("vertebrae found", _num(len(record.get("vertebrae") or []), 0), _num(len(truth.get("vertebrae") or []), 0)),
               ("lesions", _num(len(record.get("lesions") or []), 0), _num(len(truth.get("lesions") or []), 0)),
               ("MSCC (%)", *(_num(x) for x in paired["mscc_pct"])), ("Bilsky grade", *(_text(x) for x in paired["bilsky"])),
               ("cord compression", *flags)]
    cells = "".join(f'<tr><th>{_e(k)}</th><td class="num">{m}</td><td class="num">{t}</td></tr>' for k, m, t in summary)
    return ('<p class="muted">This scan is a phantom whose truth is known: measured values beside the true '
            f'ones ({paired["n_paired"]} vertebrae paired by centroid).</p>'
            f'<table class="truth"><thead><tr><th></th><th>measured</th><th>true</th></tr></thead><tbody>{cells}</tbody></table>'
            f'<table class="truth"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>')


def _case_section(*, number: int, case: dict, run_dir: Path) -> str:
    name = str(case.get("case"))
    record = case.get("record")
    status = case.get("status") or ("ok" if record else "failed")
    case_dir = Path(case["case_dir"]) if case.get("case_dir") is not None else None
    files = [f'<a href="{_e(quote((case_dir / n).as_posix()))}">{_e(n)}</a>' for n in CASE_FILES
             if case_dir is not None and (run_dir / case_dir / n).is_file()]
    parts = [f'<section class="case" id="{case_anchor(number, name)}"><h2>{_e(name)}</h2>',
             f'<p>status: <span class="status-{_e(status)}">{_e(status)}</span>, '
             f'{_num(case.get("seconds"))} s' + (" &middot; files: " + ", ".join(files) if files else "") +
             ' &middot; <a href="#cohort">back to the cohort table</a></p>']
    if record is None:
        parts.append(f'<p class="status-failed">{_e(one_line(case.get("error")) or "no result")}</p></section>')
        return "".join(parts)
    flags = record.get("flags") or []
    if flags:
        parts.append("<ul>" + "".join(f'<li class="flag">{_e(f)}</li>' for f in flags) + "</ul>")
    figures = []
    for overlay in case.get("overlays") or []:
        href = _overlay_href(run_dir=run_dir, case_dir=case_dir, overlay=overlay)
        label = Path(overlay).stem
        figures.append(f'<figure><a href="{_e(href)}"><img src="{_e(href)}" alt="{_e(label)} overlay of '
                       f'{_e(name)}"></a><figcaption>{_e(label)}</figcaption></figure>')
    parts.append(f'<div class="gallery">{"".join(figures)}</div>' if figures
                 else '<p class="muted">No overlays.</p>')
    parts += ["<h3>Vertebrae</h3>", _vertebra_table(record), "<h3>Lesions</h3>", _lesion_table(record),
              "<h3>Cord and canal</h3>", _cord_table(record)]
    if case.get("truth"):
        parts += ["<h3>Measured against the truth</h3>", _truth_table(record, case["truth"])]
    return "".join(parts + ["</section>"])


def _info_table(info: dict, depth: int = 0) -> str:
    rows = []
    for key, value in info.items():
        if isinstance(value, dict) and depth < 3:
            cell = _info_table(value, depth + 1)
        elif isinstance(value, (list, tuple)):
            cell = _e(", ".join(str(x) for x in value))
        elif isinstance(value, (dict, float)):
            cell = _e(json.dumps(value) if isinstance(value, dict) else f"{value:.3g}")
        else:
            cell = _e(value)
        rows.append(f"<tr><th>{_e(key)}</th><td>{cell}</td></tr>")
    return f'<table class="info"><tbody>{"".join(rows)}</tbody></table>'


def render_report(*, run_dir: Path, cases: list[dict], run_info: dict) -> str:
    """The report as an HTML string (see :func:`write_report_html`)."""
    numbered = list(enumerate(cases))
    ordered = sorted(numbered, key=lambda nc: cohort_sort_key(
        record=nc[1].get("record"), status=str(nc[1].get("status")), case=str(nc[1].get("case"))))
    failed = [(n, c) for n, c in numbered if c.get("record") is None and c.get("status") != "skipped"]
    skipped = sum(1 for _, c in numbered if c.get("status") == "skipped")
    partial = sum(1 for _, c in numbered if c.get("status") == "partial")
    flagged = sum(1 for _, c in numbered if c.get("record") and
                  ((c["record"].get("flags")) or (c["record"].get("cord") or {}).get("compression_flag")))
    parts = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>spinelesion report</title><style>{CSS}</style></head><body>",
             "<h1>spinelesion review report</h1>", f'<p class="disclaimer" id="disclaimer">{_e(DISCLAIMER)}</p>',
             (f'<p class="disclaimer" id="demonstration-model">{_e(DEMONSTRATION_WARNING)}</p>'
              if run_info.get("demonstration_models") else ""),
             f"<p>{len(cases)} input{'' if len(cases) == 1 else 's'}: "
             f"{sum(1 for _, c in numbered if c.get('record') is not None)} measured, {len(failed)} failed, "
             + (f"{partial} partial (some outputs missing), " if partial else "")
             + (f"{skipped} skipped (segmentations, not scans), " if skipped else "") +
             f"{flagged} flagged. Sorted with flagged scans first (cord compression, worst Bilsky grade, "
             "highest body destruction).</p>",
             "<h2>Cohort</h2>", _cohort_table(ordered)]
    if failed:
        parts.append('<h2 id="failed">Failed scans</h2><ul class="failed">' + "".join(
            f'<li><a href="#{case_anchor(n, str(c.get("case")))}">{_e(c.get("case"))}</a>: '
            f'{_e(one_line(c.get("error")) or "no result")}</li>' for n, c in failed) + "</ul>")
    parts += [_case_section(number=n, case=c, run_dir=run_dir) for n, c in ordered]
    parts += ['<h2 id="run-info">Run information</h2>', _info_table(run_info),
              f'<p class="muted">{_e(_BILSKY_NOTE)} Coordinates are RAS+ world millimetres.</p>',
              f'<p class="disclaimer">{_e(DISCLAIMER)}</p></body></html>']
    return "\n".join(parts)


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
