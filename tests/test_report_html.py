"""The run report (report.html): links, escaping, ordering, the demonstration warning, a phantom's
truth beside its measurements, and the Jinja2 templates it is made from."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from report_synth import synthetic_case
from records import typed  # noqa: E402
from spinelesion.report import write_overlays, write_report_html
from spinelesion.report.html import _overlay_href



class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.ids, self.links, self.cohort_rows, self._in_cohort = [], set(), [], [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "a":
            self.links.append(attrs.get("href"))
        if tag == "table":
            self._in_cohort = attrs.get("id") == "cohort"
        if tag == "tr" and self._in_cohort:
            self.cohort_rows.append(attrs.get("class"))


def make_run(run_dir: Path) -> list[dict]:
    """A run folder with three scans (two measured, one failed), overlays and a report."""
    cases = []
    for name, modality, axcodes, flagged in (("mr case <b>&</b>", "MR", "PSR", False),
                                             ("ct_case", "CT", "LPS", True)):
        scan, labels, record = synthetic_case(modality=modality, axcodes=axcodes)
        if not flagged:
            record["cord"].update(compression_flag=False, bilsky_grade="0", mscc_pct=2.0)
            record["flags"] = []
        case_dir = Path(re.sub(r"[^a-z_]", "", name) or "case")
        overlays = write_overlays(scan=scan, labels=labels, record=typed(record), out_dir=run_dir / case_dir)
        (run_dir / case_dir / "measurements.json").write_text(json.dumps(record), encoding="utf-8")
        # Overlay paths as the caller may hold them: names inside case_dir, or absolute paths.
        listed = [p.name for p in overlays] if modality == "MR" else overlays
        cases.append({"case": name, "status": "ok", "error": None, "record": typed(record), "case_dir": case_dir,
                      "overlays": listed, "seconds": 1.5})
    cases.append({"case": "broken_scan", "status": "failed", "record": None, "case_dir": None,
                  "overlays": [], "seconds": 0.1,
                  "error": "broken.nii.gz: not an image <script>alert(1)</script>"})
    write_report_html(run_dir=run_dir, cases=cases,
                      run_info={"model": "demo.safetensors", "versions": {"spinelesion": "0.1.0"},
                                "timings_s": {"network": 1.25, "total": 3.5}})
    return cases


def test_report_html(tmp_path):
    make_run(tmp_path)
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "research tool, not for clinical use" in text.lower()
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "mr case &lt;b&gt;&amp;&lt;/b&gt;" in text
    page = _Page()
    page.feed(text)
    assert len(page.images) == 8
    for src in page.images:   # relative links to files that exist
        assert not src.startswith(("/", "http", "file:")) and (tmp_path / src).is_file()
    for href in page.links:   # in-page anchors and relative file links resolve
        if href.startswith("#"):
            assert href[1:] in page.ids
        else:
            assert (tmp_path / unquote(href)).is_file(), href
    assert sum(h.endswith("measurements.json") for h in page.links) == 2
    # Header row, then the flagged CT case first, the failed scan last.
    assert page.cohort_rows == [None, "flagged", None, "failed"]
    assert text.index("ct_case") < text.index("mr case") < text.index("Failed scans")
    assert "demo.safetensors" in text and "1.25" in text
    assert "not an image" in text
    assert 'id="demonstration-model"' not in text  # a run with the user's own model
    href = _overlay_href(run_dir=tmp_path, case_dir=Path("ct_case"), overlay=Path("ct_case/sagittal.png"))
    assert href == "ct_case/sagittal.png"



def test_report_warns_when_the_demonstration_models_segmented(tmp_path):
    write_report_html(run_dir=tmp_path, cases=[], run_info={"demonstration_models": True})
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert 'id="demonstration-model"' in text and "trained on synthetic images only" in text


def test_report_shows_a_phantoms_truth_beside_its_measurements(tmp_path):
    """A case with a true record (the demo's phantoms) gets measured and true values side by side."""
    import copy

    _, _, record = synthetic_case()
    truth = copy.deepcopy(record)
    truth["vertebrae"][2]["body_destruction_pct"] = 35.5          # the measurement read 22.0
    truth["cord"].update(bilsky_grade="1c", compression_flag=False)
    case = {"case": "phantom", "status": "ok", "error": None, "record": typed(record), "case_dir": None,
            "overlays": [], "seconds": 1.0}
    write_report_html(run_dir=tmp_path, cases=[case], run_info={})
    assert "Measured against the truth" not in (tmp_path / "report.html").read_text(encoding="utf-8")
    write_report_html(run_dir=tmp_path, cases=[{**case, "truth": truth}], run_info={})
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Measured against the truth" in text
    assert f"{len(record['vertebrae'])} vertebrae paired" in text
    assert '<td class="num">22.0</td><td class="num">35.5</td>' in text
    assert "<th>Bilsky grade</th><td class=\"num\">2</td><td class=\"num\">1c</td>" in text


# ---------------------------------------------------------------- templates


def test_report_templates_ship_inside_the_package():
    from importlib.resources import files

    folder = files("spinelesion.report") / "templates"
    names = {p.name for p in folder.iterdir()}
    assert {"base.html.j2", "report.html.j2", "report_tables.html.j2", "evaluation.html.j2"} <= names


def test_report_autoescapes_every_value(tmp_path):
    """Markup in a case name, flag, lesion location, overlay name or run information is shown as text."""
    evil = '<script>alert("x")</script>'
    _, _, record = synthetic_case()
    record["flags"] = [f"flag {evil}"]
    record["scan"]["modality"] = evil
    record["lesions"].append({"id": 2, "volume_ml": 0.1, "centroid_mm": [0.0, 0.0, 0.0], "vertebra_index": None,
                              "location": evil, "epidural": False})
    case_dir = Path("case")
    (tmp_path / case_dir).mkdir()
    (tmp_path / case_dir / "measurements.json").write_text("{}", encoding="utf-8")
    case = {"case": evil, "status": "ok", "error": None, "record": typed(record), "case_dir": case_dir,
            "overlays": [f"{evil}.png"], "seconds": 1.0}
    failed = {"case": f"failed {evil}", "status": "failed", "record": None, "case_dir": None, "overlays": [],
              "seconds": 0.1, "error": evil}
    write_report_html(run_dir=tmp_path, cases=[case, failed],
                      run_info={evil: evil, "nested": {"key": [evil, 1]}, "deep": {"a": {"b": {"c": {evil: 1}}}}})
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert text.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") >= 10
    page = _Page()
    page.feed(text)
    assert all(href[1:] in page.ids for href in page.links if href.startswith("#"))


def test_a_missing_template_variable_raises():
    import jinja2

    from spinelesion.report.html import _cord_table
    from spinelesion.report.templating import environment, macro, render

    assert environment().undefined is jinja2.StrictUndefined
    with pytest.raises(jinja2.UndefinedError, match="counts"):
        render("report.html.j2", disclaimer="d", demonstration_warning=None, bilsky_note="n", cohort=[],
               failed=[], cases=[], run_info=[])
    with pytest.raises(jinja2.UndefinedError, match="mcc"):
        macro("report_tables.html.j2", "cord_table")({"mscc": "1.0"})
    assert "not measured" in _cord_table(typed({"cord": {"compression_flag": None}}))


def test_report_templates_are_declared_as_package_data():
    """The templates have no __init__.py: a wheel ships them only if pyproject.toml lists them."""
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"report/templates/*.j2"' in text


def test_report_says_how_the_levels_were_named(tmp_path):
    scan, labels, record = synthetic_case(modality="CT", axcodes="RAS")
    record["column"] = {"split_method": "discs", "axis": [0.0, 0.0, 1.0], "label_map": "schema",
                        "level_naming": {"method": "ribs", "detail": "levels counted from T12, the lowest vertebra "
                                                                     "with ribs <i>"}}
    case = {"case": "ct", "status": "ok", "error": None, "record": typed(record), "case_dir": None,
            "overlays": [], "seconds": 1.0}
    write_report_html(run_dir=tmp_path, cases=[case], run_info={})
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Levels: levels counted from T12, the lowest vertebra with ribs &lt;i&gt;." in text
