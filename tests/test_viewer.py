"""The interactive viewer (issue 14): the viewer page and its links, `infer` writing it, and the page in a
real headless Chromium driven by Selenium through Debian's chromedriver (skipped, with the reason,
without them). The viewer's image copy: tests/test_viewer_image.py; `spinelesion review`:
tests/test_review_server.py."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import unquote

import nibabel as nib
import numpy as np
import pytest

from conftest import OBLIQUE_AFFINE, ct_volume, write_ct_series
from report_synth import synthetic_case
from records import typed  # noqa: E402
from spinelesion.cli import main
from spinelesion.io.save import save_labels
from spinelesion.report.review_server import make_server
from spinelesion.report.viewer import VIEWER_IMAGE, VIEWER_PAGE
from spinelesion.report.viewer.image import label_box
from spinelesion.report.viewer.page import write_viewer_page
from viewer_run import served, viewer_run  # noqa: F401 (fixtures)

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
CHROMEDRIVER = shutil.which("chromedriver")
#: Headless Chromium without a GPU: WebGL2 (which NiiVue needs) through ANGLE's SwiftShader (CPU) backend.
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--use-angle=swiftshader",
                  "--enable-unsafe-swiftshader", "--window-size=1400,900", "--force-device-scale-factor=1")


def _browser_missing() -> str | None:
    if CHROMIUM is None or CHROMEDRIVER is None:
        return "no chromium and chromedriver on PATH (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e .[dev])"
    return None


BROWSER = pytest.mark.skipif(_browser_missing() is not None, reason=_browser_missing() or "")


def test_infer_writes_the_viewer_image_and_page_on_the_input_grid(tmp_path, tiny_model, request, capsys):
    """`spinelesion infer` (a random tiny model) on an oblique DICOM series: the viewer image's affine
    is the input's, and (with Chromium) its viewer loads through `review` with no console error."""
    from spinelesion.io import load_scan

    write_ct_series(tmp_path / "in" / "series", ct_volume((40, 36, 16)), OBLIQUE_AFFINE)
    assert main(["infer", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--model", str(tiny_model),
                 "--device", "cpu", "--quiet"]) == 0
    assert f"interactive viewer: spinelesion review {tmp_path / 'out'}" in capsys.readouterr().out
    (case_dir,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    status = json.loads((case_dir / "status.json").read_text())
    assert {VIEWER_IMAGE, VIEWER_PAGE} <= set(status["outputs"]) and "report" in status["seconds"]
    scan = load_scan(tmp_path / "in" / "series")
    image = nib.load(case_dir / VIEWER_IMAGE)
    labels = nib.load(case_dir / "labels.nii.gz")
    np.testing.assert_allclose(labels.affine, scan.affine, atol=1e-6)
    # the labelled region and its margin, each voxel where the input's is
    box = label_box(np.asarray(labels.dataobj), labels.affine)
    assert box is not None and image.shape == tuple(b.stop - b.start for b in box)
    shifted = scan.affine.copy()
    shifted[:3, 3] += scan.affine[:3, :3] @ [b.start for b in box]
    np.testing.assert_allclose(image.affine, shifted, atol=1e-6)
    assert np.array_equal(np.asarray(image.dataobj), np.round(scan.array[box]))
    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert f'href="{case_dir.name}/{VIEWER_PAGE}"' in report and "<script" not in report
    if _browser_missing() is None:
        browser = request.getfixturevalue("browser")
        server = make_server(run_dir=tmp_path / "out", port=0)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        try:
            assert _open(browser, f"http://127.0.0.1:{server.server_address[1]}/{case_dir.name}/{VIEWER_PAGE}") == []
            assert np.allclose([float(c) for c in _readout(browser)["mm"].split(",")], _crosshair(browser), atol=0.01)
        finally:
            server.shutdown()
            server.server_close()


# ---------------------------------------------------------------- pages and links (no browser)


def _config(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    return json.loads(re.search(r'<script type="application/json" id="viewer-config">(.*?)</script>', text, re.S)[1])


def test_report_links_each_case_to_its_viewer_at_the_records_positions(viewer_run):
    run_dir, records = viewer_run
    text = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "<script" not in text  # the report itself stays script-free
    links = re.findall(r'href="([^"#]+)#mm=([-\d.]+),([-\d.]+),([-\d.]+)"', text)
    for case, record in records.items():
        assert f'href="{case}/{VIEWER_PAGE}"' in text
        targets = {tuple(round(float(c), 2) for c in xyz) for href, *xyz in links
                   if unquote(href) == f"{case}/{VIEWER_PAGE}"}
        expected = {tuple(round(c, 2) for c in v["centroid_mm"]) for v in record["vertebrae"]}
        expected |= {tuple(round(c, 2) for c in x["centroid_mm"]) for x in record["lesions"]}
        expected.add(tuple(round(c, 2) for c in record["cord"]["worst_centroid_mm"]))
        assert targets == expected, case
    assert all((run_dir / unquote(href)).is_file() for href, *_ in links)
    config = _config(run_dir / "ct_oblique" / VIEWER_PAGE)
    lesions = records["ct_oblique"]["lesions"]
    assert [x["id"] for x in config["lesions"]] == [x["id"] for x in lesions] == [1, 2]
    assert config["lesions"][0]["where"] == "L3" and config["lesions"][0]["type"] == "lytic, not epidural"
    assert config["windows"] == {"bone": [-500.0, 1300.0], "soft tissue": [-160.0, 240.0]}
    assert _config(run_dir / "mr_lps" / VIEWER_PAGE)["window_names"] == ["auto", "full"]


def test_viewer_page_escapes_record_text(tmp_path):
    scan, labels, record = synthetic_case()
    record["lesions"].append({"id": 2, "volume_ml": 0.1, "centroid_mm": [0, 0, 0], "vertebra_index": None,
                              "location": "</script><script>alert(1)</script>", "epidural": False})
    record["flags"] = ["<b>flag</b>"]
    save_labels(labels, like=scan, path=tmp_path / "case" / "labels.nii.gz")
    write_viewer_page(case_dir=tmp_path / "case", record=typed(record), modality=scan.modality)
    text = (tmp_path / "case" / VIEWER_PAGE).read_text(encoding="utf-8")
    assert "<script>alert" not in text and "<b>flag" not in text
    assert _config(tmp_path / "case" / VIEWER_PAGE)["lesions"][1]["where"] == "</script><script>alert(1)</script>"


# ---------------------------------------------------------------- in headless Chromium


@pytest.fixture(scope="module")
def browser():
    if _browser_missing():
        pytest.skip(_browser_missing())
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _open(driver, url: str, *, state: str = "ready") -> list[dict]:
    """Load ``url``, wait for the viewer to settle; returns the console's error entries."""
    driver.get_log("browser")  # drop earlier entries
    driver.get(url)
    deadline = time.time() + 40
    while time.time() < deadline:
        now = driver.execute_script("return document.body.getAttribute('data-viewer')")
        if now not in (None, "loading"):
            break
        time.sleep(0.1)
    assert now == state, (now, driver.execute_script("return (window.spinelesionViewer || {}).error"))
    driver.execute_script("document.getElementById('markers').style.display = 'none'")  # pixels of the slices only
    time.sleep(0.3)
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _crosshair(driver) -> np.ndarray:
    return np.array(driver.execute_script("return window.spinelesionViewer.crosshairMM()"))


def _readout(driver) -> dict:
    return driver.execute_script("""var r = document.getElementById('readout');
        return {label: r.getAttribute('data-label'), level: r.getAttribute('data-level'),
                lesion: r.getAttribute('data-lesion'), mm: r.getAttribute('data-mm')};""")


def _pixels(driver, *points, axcorsag: int = 0) -> list[np.ndarray]:
    """RGB of one screenshot where each world point (mm) is drawn in the tile ``axcorsag`` (0 axial)."""
    from io import BytesIO

    from PIL import Image

    shot = Image.open(BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    out = []
    for mm in points:
        point = driver.execute_script("return window.spinelesionViewer.canvasPoint(arguments[0], arguments[1])",
                                      [float(c) for c in mm], axcorsag)
        assert point is not None, mm
        out.append(np.array(shot.getpixel((int(round(point[0])), int(round(point[1]))))).astype(int))
    return out


def _move(driver, mm) -> None:
    driver.execute_script("window.spinelesionViewer.moveTo(arguments[0])", [float(c) for c in mm])
    time.sleep(0.3)


@BROWSER
@pytest.mark.parametrize("case", ["ct_ras", "ct_oblique", "mr_lps"])
def test_viewer_loads_without_console_errors_and_shows_the_labels_in_place(served, browser, case):
    base, _, records = served
    assert _open(browser, f"{base}{case}/{VIEWER_PAGE}") == []
    record = records[case]
    body = np.array(record["vertebrae"][0]["centroid_mm"])
    _move(browser, body)
    assert np.allclose(_crosshair(browser), body, atol=0.05)
    assert _readout(browser)["label"] == "vertebral body" and _readout(browser)["level"] == "L5"
    # 4 mm right and anterior of the body's centre, off the crosshair lines: the body's colour
    # (241, 214, 145) over grey; 22 mm to the right, beside the body: no label, grey.
    on_body, beside = _pixels(browser, body + [4.0, 4.0, 0.0], body + [22.0, 4.0, 0.0])
    assert on_body[0] - on_body[2] > 25 and on_body[1] - on_body[2] > 15, on_body
    assert abs(beside[0] - beside[2]) < 8 and abs(beside[1] - beside[2]) < 8, beside
    lesion = record["lesions"][0]
    _move(browser, lesion["centroid_mm"])
    assert _readout(browser)["label"] == "lesion" and _readout(browser)["lesion"] == str(lesion["id"])
    (red,) = _pixels(browser, np.array(lesion["centroid_mm"]) + [3.0, 3.0, 0.0])
    assert red[0] - red[1] > 50 and red[0] - red[2] > 50, red


@BROWSER
def test_clicking_a_table_row_moves_the_crosshair_there(served, browser):
    from selenium.webdriver.common.by import By

    base, _, records = served
    record = records["ct_oblique"]
    _open(browser, f"{base}ct_oblique/{VIEWER_PAGE}")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.lesions tr[data-mm]")
    assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == ["1", "2"]
    for row, lesion in reversed(list(zip(rows, record["lesions"]))):
        row.find_elements(By.TAG_NAME, "td")[1].click()  # anywhere on the row
        time.sleep(0.4)
        assert np.allclose(_crosshair(browser), lesion["centroid_mm"], atol=0.05)
        assert _readout(browser)["lesion"] == str(lesion["id"])
    vertebra = record["vertebrae"][3]
    browser.find_elements(By.CSS_SELECTOR, "table.vertebrae a.goto")[3].click()
    time.sleep(0.4)
    assert np.allclose(_crosshair(browser), vertebra["centroid_mm"], atol=0.05)
    assert _readout(browser)["level"] == vertebra["level"] == "L2"
    browser.find_element(By.CSS_SELECTOR, "table.cord a.goto").click()
    time.sleep(0.4)
    assert np.allclose(_crosshair(browser), record["cord"]["worst_centroid_mm"], atol=0.05)
    # from report.html: a lesion's link opens the viewer with the crosshair on it
    browser.get(f"{base}report.html")
    link = browser.find_element(By.CSS_SELECTOR, f'a.goto[href^="ct_oblique/{VIEWER_PAGE}#mm="]')
    target = [float(c) for c in link.get_attribute("href").split("#mm=")[1].split(",")]
    link.click()
    _open(browser, browser.current_url)
    assert np.allclose(_crosshair(browser), target, atol=0.05)


@BROWSER
def test_hover_window_presets_and_class_switches(served, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    base, _, records = served
    lesion = records["ct_ras"]["lesions"][0]
    _open(browser, f"{base}ct_ras/{VIEWER_PAGE}")
    _move(browser, lesion["centroid_mm"])
    spot = np.array(lesion["centroid_mm"]) + [3.0, 3.0, 0.0]
    point = browser.execute_script("return window.spinelesionViewer.canvasPoint(arguments[0], 0)", spot.tolist())
    canvas = browser.find_element(By.ID, "viewer-canvas")
    rect = canvas.rect
    ActionChains(browser).move_to_element_with_offset(canvas, int(point[0] - rect["x"] - rect["width"] / 2),
                                                      int(point[1] - rect["y"] - rect["height"] / 2)).perform()
    time.sleep(0.3)
    tip = browser.find_element(By.ID, "hover")
    assert tip.is_displayed() and tip.get_attribute("data-lesion") == "1"
    assert all(word in tip.text for word in ("lesion 1", "3.8 ml", "L3", "lytic", "confidence")), tip.text
    ActionChains(browser).move_to_element(browser.find_element(By.TAG_NAME, "h1")).perform()  # off the canvas
    time.sleep(0.2)
    assert not tip.is_displayed()
    browser.find_element(By.CSS_SELECTOR, 'button[data-window="soft tissue"]').click()
    limits = browser.execute_script("var v = window.spinelesionViewer.nv.volumes[0]; return [v.cal_min, v.cal_max]")
    assert limits == [-160, 240]
    (before,) = _pixels(browser, spot)
    browser.find_element(By.CSS_SELECTOR, f'input[data-class="{3}"]').click()  # lesions off
    time.sleep(0.3)
    (after,) = _pixels(browser, spot)
    assert before[0] - before[1] > 50 and abs(after[0] - after[1]) < 8, (before, after)


@BROWSER
def test_a_viewer_opened_as_a_file_says_to_use_spinelesion_review(served, browser):
    from selenium.webdriver.common.by import By

    _, run_dir, _ = served
    browser.get((run_dir / "ct_ras" / VIEWER_PAGE).as_uri())  # returns once loaded: scripts failed or ran
    banner = browser.find_element(By.ID, "file-banner")
    assert banner.is_displayed() and f"spinelesion review {run_dir.name}" in banner.text
