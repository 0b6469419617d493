"""Outputs of a whole run: summary.csv, report.html, run.json and the label colour tables."""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path

from spinelesion import __version__
from spinelesion.errors import RecordError
from spinelesion.io.atomic import write_text_atomic
from spinelesion.record_types import MeasurementRecord
from spinelesion.pipeline.case import STAGES
from spinelesion.io.discover import CaseInput

def write_run_outputs(*, out_dir: Path, input_path: Path, cases: list[CaseInput], statuses: list[dict | None],
                      predictor, seconds_total: float, world_size: int, finish_workers: int = 0,
                      demonstration_models: bool = False, truth_dir: str | Path | None = None) -> Path:
    """summary.csv, report.html, run.json and the colour tables for the whole run.

    ``truth_dir``: folder of true records (``<case>.json``, as the demo writes them); a case with
    one gets its measured values beside the true ones in the report."""
    import monai
    import numpy as np
    import torch

    from spinelesion.report import summary_row, write_colour_tables, write_report_html, write_summary_csv

    rows, report_cases = [], []
    for case, status in zip(cases, statuses):
        status = status or {"status": "failed", "error": "no status written (process died?)", "seconds": {}}
        record = None
        if status["status"] in ("ok", "partial") and "measurements.json" in status.get("outputs", []):
            try:
                record = MeasurementRecord.read(out_dir / case.case_id / "measurements.json")
            except RecordError:
                status = {**status, "status": "partial" if status.get("outputs") else "failed",
                          "error": "measurements.json missing, unreadable or not a valid record"}
        elif status["status"] == "ok":
            status = {**status, "status": "partial", "error": "measurements.json not written"}
        seconds = (status.get("seconds") or {}).get("total", 0.0)
        rows.append(summary_row(case=case.case_id, record=record, status=status["status"],
                                error=status.get("error"), input_label=case.label, seconds=seconds))
        report_cases.append({"case": case.case_id, "status": status["status"], "error": status.get("error"),
                             "record": record, "case_dir": Path(case.case_id),
                             "overlays": [o for o in status.get("outputs", []) if o.endswith(".png")],
                             "seconds": seconds, "truth": _truth(truth_dir, case.case_id)})
    write_summary_csv(rows=rows, path=out_dir / "summary.csv")
    write_colour_tables(out_dir=out_dir)
    stage_totals = {stage: float(sum(((s or {}).get("seconds") or {}).get(stage, 0.0) for s in statuses))
                    for stage in (*STAGES, "total")}
    run_info = {
        "spinelesion_version": __version__,
        "input": str(input_path.name),
        "models": {m: p.name for m, p in predictor.paths.items()},
        "model_meta": {p.name: _model_summary(predictor, p) for p in predictor.paths.values()},
        "demonstration_models": demonstration_models,
        "device": predictor.device, "tta": predictor.settings.tta,
        "inference_settings": dataclasses.asdict(predictor.settings), "world_size": world_size, "finish_workers": finish_workers,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "monai": monai.__version__, "numpy": np.__version__},
        "n_cases": len(cases),
        "n_ok": sum(r["status"] == "ok" for r in rows),
        "n_partial": sum(r["status"] == "partial" for r in rows),
        "n_failed": sum(r["status"] == "failed" for r in rows),
        "n_skipped_not_scans": sum(r["status"] == "skipped" for r in rows),
        "seconds_total": seconds_total,
        "seconds_by_stage": stage_totals,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_text_atomic(out_dir / "run.json", json.dumps(run_info, indent=2))
    return write_report_html(run_dir=out_dir, cases=report_cases, run_info=run_info)


def _truth(truth_dir: str | Path | None, case_id: str) -> dict | None:
    path = None if truth_dir is None else Path(truth_dir) / f"{case_id}.json"
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _model_summary(predictor, path: Path) -> dict:
    from spinelesion.inference.predictor import checkpoint_meta

    meta = checkpoint_meta(path)
    return {k: meta.get(k) for k in ("network", "preprocessing", "patch_size", "epoch", "metrics", "training")}
