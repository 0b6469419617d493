"""A case's viewer page, ``<case>/viewer.html``, written with its viewer image by the case step.

The page shows ``viewer_image.nii.gz`` under ``labels.nii.gz`` (both beside it) with NiiVue, beside
the case's tables (the report's own table macros, rows from :func:`spinelesion.report.html.case_tables`);
a row with a position links to ``#mm=x,y,z`` and the page's script (``static/viewer.js``) moves the
crosshair there. Its settings (classes and colours, window presets, the record's vertebrae, lesions and
worst cord slice in world RAS+ mm) travel in one JSON block. Its scripts come from ``../_viewer/``,
which ``spinelesion review`` serves from the package: opened as a file, or from another server, the
page says how to open it instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from spinelesion.io.atomic import write_text_atomic
from spinelesion.labels import LABEL_COLOURS, LABEL_NAMES, LESION
from spinelesion.report.html import DISCLAIMER, case_tables
from spinelesion.report.templating import render
from spinelesion.report.viewer import ASSETS_URL, LABELS, VIEWER_IMAGE, VIEWER_PAGE
from spinelesion.record_types import MeasurementRecord

#: Version of the page's JSON settings that static/viewer.js reads.
CONFIG_VERSION = 1
#: CT window presets, HU (low, high): bone W1800/L400, soft tissue W400/L40. Every modality also gets
#: "auto" (NiiVue's robust range); MR, whose intensities have no unit, also "full" (the whole range).
CT_WINDOWS = {"bone": (-500.0, 1300.0), "soft tissue": (-160.0, 240.0)}
#: Opacity of the label overlay at first (0..1; a slider changes it).
LABEL_OPACITY = 0.5
TEMPLATE = "viewer.html.j2"


def _point(value) -> list[float] | None:
    return None if value is None else [round(float(c), 2) for c in value]


def _round(value, digits: int):
    return None if value is None else round(float(value), digits)


def viewer_config(*, record: MeasurementRecord | None, modality: str | None = None) -> dict:
    """The page script's settings (JSON-ready) from a typed measurement record (None: no tables)
    and the scan's modality (the record's when it has one).

    Keys: ``version``, ``modality``, ``image``, ``labels`` (file names beside the page), ``lesion_value``,
    ``classes`` [{value,
    name, colour (R, G, B 0..255)}], ``windows`` {name: [low, high]} and ``default_window``,
    ``opacity``, ``vertebrae`` [{index, name, centroid}] by index, ``lesions`` [{id, centroid,
    volume_ml, where, type, epidural, confidence, tta_sd}], ``cord_worst`` (a point or None);
    points are world RAS+ mm.
    """
    modality = (record.scan.modality if record is not None else None) or modality
    vertebrae = sorted(record.vertebrae, key=lambda v: v.index) if record is not None else []
    lesions = []
    for x in record.lesions if record is not None else ():
        vertebra = record.vertebra(x.vertebra_index)
        kind = [vertebra.lesion_type] if vertebra is not None and vertebra.lesion_type else []
        kind.append("epidural" if x.epidural else "not epidural")
        lesions.append({
            "id": x.id, "centroid": _point(x.centroid_mm), "volume_ml": _round(x.volume_ml, 2),
            "where": vertebra.short_name if vertebra is not None else x.location,
            "type": ", ".join(kind), "epidural": x.epidural,
            "confidence": _round(x.confidence, 2), "tta_sd": _round(x.tta_sd, 2)})
    windows = {name: list(w) for name, w in CT_WINDOWS.items()} if modality == "CT" else {}
    return {
        "version": CONFIG_VERSION, "modality": modality, "image": VIEWER_IMAGE, "labels": LABELS,
        "lesion_value": LESION,
        "classes": [{"value": value, "name": name.replace("_", " "), "colour": list(LABEL_COLOURS[value])}
                    for value, name in LABEL_NAMES.items() if value],
        "windows": windows, "window_names": [*windows, "auto"] + ([] if windows else ["full"]),
        "default_window": "bone" if windows else "auto", "opacity": LABEL_OPACITY,
        "vertebrae": [{"index": v.index, "name": v.short_name, "centroid": _point(v.centroid_mm)} for v in vertebrae],
        "lesions": lesions,
        "cord_worst": _point(record.cord.worst_centroid_mm) if record is not None else None,
    }


def write_viewer_page(*, case_dir: str | os.PathLike, record: MeasurementRecord | None,
                      modality: str | None = None) -> Path:
    """Write ``case_dir/viewer.html`` atomically (the run folder is ``case_dir``'s parent) and return it."""
    case_dir = Path(case_dir)
    config = viewer_config(record=record, modality=modality)
    tables = case_tables(record)
    text = render(TEMPLATE, case=case_dir.name, modality=config["modality"], report_href="../report.html",
                  disclaimer=DISCLAIMER, assets=f"../{ASSETS_URL}/", run_folder=case_dir.resolve().parent.name,
                  window_names=config["window_names"], default_window=config["default_window"],
                  opacity=config["opacity"], classes=config["classes"], measured=record is not None,
                  flags=tables["flags"], vertebrae=tables["vertebrae"], lesions=tables["lesions"],
                  cord=tables["cord"], config=config)
    path = case_dir / VIEWER_PAGE
    write_text_atomic(path, text)
    return path
