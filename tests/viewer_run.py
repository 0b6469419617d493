"""A run folder with viewers (three measured box spines, their viewer images and pages, the report),
and the fixtures that serve it: shared by tests/test_viewer.py and tests/test_review_server.py
(import the fixtures into a test module to use them)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from records import typed
from report_synth import synthetic_case
from spinelesion.io.save import save_labels
from spinelesion.report import write_report_html
from spinelesion.report.review_server import make_server
from spinelesion.report.viewer import VIEWER_IMAGE, save_viewer_image
from spinelesion.report.viewer.image import label_box
from spinelesion.report.viewer.page import write_viewer_page

REPO = Path(__file__).resolve().parents[1]


def make_viewer_run(run_dir: Path) -> dict:
    """A measured run of three box spines (CT on an RAS grid, CT on an oblique PSR grid, MR on an LPS
    grid), each with labels, record, viewer image and page, and the report; returns {case: record}."""
    from spinelesion.measure import measure_labels

    records = {}
    for name, modality, axcodes, oblique in (("ct_ras", "CT", "RAS", 0.0), ("ct_oblique", "CT", "PSR", 25.0),
                                             ("mr_lps", "MR", "LPS", 0.0)):
        scan, labels, _ = synthetic_case(modality=modality, axcodes=axcodes, oblique_deg=oblique)
        record = measure_labels(labels=labels, affine=scan.affine, image=scan.array, modality=modality,
                                lowest_level="L5")
        case_dir = run_dir / name
        save_labels(labels, like=scan, path=case_dir / "labels.nii.gz")
        (case_dir / "measurements.json").write_text(json.dumps(record), encoding="utf-8")
        save_viewer_image(scan, path=case_dir / VIEWER_IMAGE, box=label_box(labels, scan.affine))  # as infer does
        write_viewer_page(case_dir=case_dir, record=typed(record), modality=modality)
        records[name] = record
    write_report_html(run_dir=run_dir, cases=[
        {"case": name, "status": "ok", "error": None, "record": typed(record), "case_dir": Path(name), "overlays": [],
         "seconds": 1.0} for name, record in records.items()], run_info={})
    return records


@pytest.fixture(scope="module")
def viewer_run(tmp_path_factory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("viewer_run") / "run"
    return run_dir, make_viewer_run(run_dir)


@pytest.fixture(scope="module")
def served(viewer_run):
    """(base URL, run folder, records) of the viewer run served by `spinelesion review`'s server."""
    run_dir, records = viewer_run
    server = make_server(run_dir=run_dir, port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", run_dir, records
    server.shutdown()
    server.server_close()
