"""report.html in a real browser: Debian's headless ``chromium`` renders the cohort table and
loads every overlay image (skipped, with the reason, where no chromium binary is installed)."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import page_check_script
from test_report_html import make_run

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (apt-get install chromium)")]

CHECK_SCRIPT = page_check_script("cohort")


class _Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.body: dict = {}
        self.cohort_cells: list[list[str]] = []
        self._table = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        elif tag == "table":
            self._table = attrs.get("id")
        elif tag == "tr" and self._table == "cohort":
            self.cohort_cells.append([])
        elif tag in ("td", "th") and self._table == "cohort":
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.cohort_cells[-1].append(self._cell.strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _render_in_chromium(report: Path, profile: Path) -> _Dom:
    checked = report.with_name("report_browser_check.html")
    checked.write_text(report.read_text(encoding="utf-8").replace("</body>", CHECK_SCRIPT + "</body>"),
                       encoding="utf-8")
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
         "--dump-dom", checked.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = _Dom()
    dom.feed(result.stdout)
    return dom


def test_report_renders_in_chromium(tmp_path):
    run_dir = tmp_path / "run"
    make_run(run_dir)
    dom = _render_in_chromium(run_dir / "report.html", tmp_path / "profile")
    assert dom.body.get("data-images-total") == "8"
    assert json.loads(dom.body["data-images-broken"]) == []
    assert float(dom.body["data-table-height"]) > 50
    header, *rows = dom.cohort_cells
    assert header[:3] == ["#", "case", "status"]
    assert [row[1] for row in rows] == ["ct_case", "mr case <b>&</b>", "broken_scan"]
    assert [row[2] for row in rows] == ["ok", "ok", "failed"]

    # The check itself can fail: remove one overlay and it is reported broken.
    missing = next((run_dir / "ct_case").glob("axial_cord.png"))
    missing.unlink()
    dom = _render_in_chromium(run_dir / "report.html", tmp_path / "profile2")
    assert json.loads(dom.body["data-images-broken"]) == ["ct_case/axial_cord.png"]
