"""``spinelesion evaluate`` end to end on folders built with known answers: an infer-like
prediction folder, references in another axis order, a cord-only reference, vertebra levels,
truth records, unmatched cases, determinism, and evaluation.html in a real headless Chromium."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import page_check_script
from records import complete  # noqa: E402
from spinelesion.cli import main

SHAPE = (20, 16, 24)
AFFINE = np.array([[1.0, 0, 0, -10], [0, 1.0, 0, 5], [0, 0, 2.0, 30], [0, 0, 0, 1]])
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)


def _save(array, path: Path, affine=AFFINE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))


def _reoriented(array, affine):
    """The same voxels stored with the axes permuted (Z, X, Y) and the first one reversed."""
    n = array.shape[2]
    stored = np.flip(np.transpose(array, (2, 0, 1)), axis=0)
    to_original = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [-1, 0, 0, n - 1], [0, 0, 0, 1]], float)
    return np.ascontiguousarray(stored), affine @ to_original


def _record(modality, vertebrae, mscc=0.0, bilsky="0", flag=False):
    return complete({"scan": {"modality": modality},
                     "vertebrae": [{"index": i, "level": lvl, "centroid_mm": list(c), "body_destruction_pct": d,
                                    "height_loss_pct": h, "genant_grade": g}
                                   for i, (lvl, c, d, h, g) in enumerate(vertebrae)],
                     "cord": {"mscc_pct": mscc, "bilsky_grade": bilsky, "compression_flag": flag}})


def _world(ijk):
    return tuple(float(x) for x in AFFINE[:3, :3] @ np.asarray(ijk, float) + AFFINE[:3, 3])


def make_folders(root: Path) -> dict[str, Path]:
    """pred/ (infer layout, two cases), ref/ (schema; ct_case stored in another axis order),
    cord_ref/ (cord-only masks), levels_ref/ (TotalSegmentator levels of ct_case), truth/."""
    # ct_case: body shifted one voxel, cord exact, one lesion found, one missed, one false positive
    ref = np.zeros(SHAPE, np.uint8)
    ref[4:10, 4:10, 4:10] = 1
    ref[2:6, 12:14, 2:22] = 4
    ref[12:15, 2:5, 2:5] = 3
    ref[12:15, 10:13, 14:17] = 3
    pred = np.zeros(SHAPE, np.uint8)
    pred[5:11, 4:10, 4:10] = 1
    pred[2:6, 12:14, 2:22] = 4
    pred[12:15, 2:5, 2:5] = 3
    pred[16:19, 10:13, 2:5] = 3
    prob = np.zeros((*SHAPE, 7), np.uint8)
    prob[12:15, 2:5, 2:5, 3] = 204  # 0.8
    prob[16:19, 10:13, 2:5, 3] = 102  # 0.4
    # mr_case: body exact, cord one voxel off along X, no lesions
    ref_mr = np.zeros(SHAPE, np.uint8)
    ref_mr[4:10, 4:10, 4:10] = 1
    ref_mr[2:6, 12:14, 2:22] = 4
    pred_mr = ref_mr.copy()
    pred_mr[2:6, 12:14, 2:22] = 0
    pred_mr[3:7, 12:14, 2:22] = 4
    prob_mr = np.zeros((*SHAPE, 7), np.uint8)

    d = {name: root / name for name in ("pred", "ref", "cord_ref", "levels_ref", "truth")}
    for case, labels, p, record, truth in (
            ("ct_case", pred, prob,
             _record("CT", [("L1", _world((7.5, 7, 7)), 20.0, 25.0, 2), ("L4", _world((16, 11, 16)), None, None, None)],
                     mscc=30.0, bilsky="1c", flag=False),
             _record("CT", [("L1", _world((7, 7, 7)), 10.0, 20.0, 1)], mscc=60.0, bilsky="2", flag=True)),
            ("mr_case", pred_mr, prob_mr, _record("MR", [("L1", _world((7, 7, 7)), 0.0, 0.0, 0)]),
             _record("MR", [("L1", _world((7, 7, 7)), 0.0, 4.0, 0)]))):
        _save(labels, d["pred"] / case / "labels.nii.gz")
        img = nib.Nifti1Image(p, AFFINE)
        img.header["scl_slope"], img.header["scl_inter"] = 1 / 255, 0
        nib.save(img, str(d["pred"] / case / "probabilities.nii.gz"))
        (d["pred"] / case / "measurements.json").write_text(json.dumps(record))
        (d["truth"]).mkdir(exist_ok=True)
        (d["truth"] / f"{case}.json").write_text(json.dumps(truth))
    stored, stored_affine = _reoriented(ref, AFFINE)
    _save(stored, d["ref"] / "ct_case.nii.gz", affine=stored_affine)
    _save(ref_mr, d["ref"] / "mr_case.nii.gz")
    # cord-only masks, float 0/1 as the Spinal Cord Toolbox writes them
    _save((ref == 4).astype(np.float32), d["cord_ref"] / "ct_case.nii.gz")
    _save((ref_mr == 4).astype(np.float32), d["cord_ref"] / "mr_case.nii.gz")
    # vertebra levels: 31 = L1 around the first body, 29 = L3 elsewhere, 30 = L2 with no prediction
    levels = np.zeros(SHAPE, np.uint8)
    levels[4:11, 4:10, 4:10] = 31
    levels[14:18, 9:13, 14:18] = 29
    levels[14:18, 2:6, 18:22] = 30
    _save(levels, d["levels_ref"] / "ct_case.nii.gz")
    return d


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def folders(tmp_path):
    return make_folders(tmp_path)


def test_evaluate_scores_known_answers(folders, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["evaluate", "--pred", str(folders["pred"]), "--ref", str(folders["ref"]), "--truth",
                 str(folders["truth"]), "--by", "modality", "--bootstrap", "200", "--out", str(out)]) == 0
    assert "vertebral_body" in capsys.readouterr().out
    rows = {(r["case"], r["class"]): r for r in _rows(out / "cases.csv")}
    assert {c for _, c in rows} == {"vertebral_body", "posterior_elements", "lesion", "spinal_cord", "thecal_sac", "disc"}
    body = rows["ct_case", "vertebral_body"]  # the reference was stored in another axis order
    assert float(body["dice"]) == pytest.approx(2 * 5 * 36 / 432, abs=1e-4)
    assert float(body["hd95_mm"]) == pytest.approx(1.0) and float(body["volume_error_ml"]) == 0.0
    assert float(rows["ct_case", "spinal_cord"]["dice"]) == 1.0
    assert float(rows["mr_case", "spinal_cord"]["dice"]) == pytest.approx(2 * 3 / 8)
    assert rows["ct_case", "disc"]["dice"] == ""  # absent in both: no number
    assert rows["ct_case", "vertebral_body"]["modality"] == "CT"

    lesions = _rows(out / "lesions.csv")
    assert sorted((r["source"], r["outcome"], r["score"]) for r in lesions) == [
        ("predicted", "FP", "0.4"), ("predicted", "TP", "0.8"), ("reference", "FN", ""), ("reference", "TP", "")]

    summary = json.loads((out / "summary.json").read_text())
    s = summary["all"]
    assert s["n_cases"] == 2
    assert s["segmentation"]["vertebral_body"]["dice"]["value"] == pytest.approx((0.8333 + 1.0) / 2, abs=1e-4)
    assert s["segmentation"]["disc"]["dice"]["value"] is None
    les = s["lesions"]
    assert (les["reference_lesions"], les["tp"], les["fn"], les["fp"]) == (2, 1, 1, 1)
    assert les["sensitivity"]["value"] == 0.5 and les["fp_per_scan"]["value"] == 0.5
    assert les["lesion_dice"]["value"] == 1.0
    froc = les["froc"]
    at = dict(zip(froc["thresholds"], zip(froc["sensitivity"], froc["fp_per_scan"])))
    assert at[0.4] == (0.5, 0.5) and at[0.5] == (0.5, 0.0) and at[0.82] == (0.0, 0.0)
    assert les["froc"]["sensitivity_at_fp"]["0.125"]["value"] == 0.5
    m = s["measurements"]
    assert m["paired_vertebrae"] == 2
    assert m["destroyed_fraction_pct"]["bias"]["value"] == pytest.approx(5.0)  # (+10, 0)
    assert m["mscc_pct"]["bias"]["value"] == pytest.approx(-15.0)  # (-30, 0)
    assert m["genant"]["matrix"][1][2] == 1 and m["genant"]["matrix"][0][0] == 1
    assert m["compression_flag"]["fn"] == 1 and m["compression_flag"]["sensitivity"]["value"] == 0.0
    assert set(summary["groups"]) == {"CT", "MR"}
    assert summary["groups"]["MR"]["lesions"]["fp"] == 0
    assert (out / "measurements.csv").is_file()
    for png in ("dice_boxplot", "froc", "bland_altman_mscc_pct", "confusion_genant", "confusion_bilsky"):
        assert (out / "plots" / f"{png}.png").stat().st_size > 1000

    # deterministic: the same command gives the same bytes
    again = tmp_path / "again"
    main(["evaluate", "--pred", str(folders["pred"]), "--ref", str(folders["ref"]), "--truth", str(folders["truth"]),
          "--by", "modality", "--bootstrap", "200", "--out", str(again)])
    for name in ("cases.csv", "lesions.csv", "summary.json", "evaluation.html", "plots/dice_boxplot.png",
                 "plots/froc.png"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name


def test_cord_only_reference_scores_only_the_cord(folders, tmp_path):
    out = tmp_path / "cord"
    assert main(["evaluate", "--pred", str(folders["pred"] / "ct_case" / ".."), "--ref", str(folders["cord_ref"]),
                 "--ref-map", "cord", "--bootstrap", "0", "--out", str(out)]) == 0
    rows = _rows(out / "cases.csv")
    assert [(r["case"], r["class"]) for r in rows] == [("ct_case", "spinal_cord"), ("mr_case", "spinal_cord")]
    assert float(rows[0]["dice"]) == 1.0
    assert _rows(out / "lesions.csv") == []
    # --annotates lesion: the healthy reference has no lesion, every predicted one is a false positive
    out2 = tmp_path / "cord_lesion"
    assert main(["evaluate", "--pred", str(folders["pred"]), "--ref", str(folders["cord_ref"]), "--ref-map", "cord",
                 "--annotates", "lesion", "--bootstrap", "0", "--out", str(out2)]) == 0
    les = json.loads((out2 / "summary.json").read_text())["all"]["lesions"]
    assert (les["reference_lesions"], les["fp"], les["fp_per_scan"]["value"]) == (0, 2, 1.0)


def test_vertebra_levels_detected_and_identified(folders, tmp_path):
    out = tmp_path / "levels"
    assert main(["evaluate", "--pred", str(folders["pred"]), "--ref", str(folders["levels_ref"]),
                 "--ref-map", "totalsegmentator", "--only-ref-cases", "--bootstrap", "0", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped_predictions"] == ["mr_case"]
    assert summary["settings"]["scored_classes"] == ["spinal_cord", "vertebra"]
    lev = summary["all"]["vertebra_levels"]
    assert lev["levels"] == 3
    assert lev["detection_rate"]["value"] == pytest.approx(2 / 3, abs=1e-4)  # L1 and L3 found, L2 not
    assert lev["identification_rate"]["value"] == pytest.approx(1 / 3, abs=1e-4)  # L3 was called L4
    assert {r["level"]: (r["detected"], r["identified"]) for r in _rows(out / "levels.csv")} == {
        "L1": ("True", "True"), "L2": ("False", "False"), "L3": ("True", "False")}
    # the reference names the cord (79) but holds none: the cord is not scored on this case
    assert [r["class"] for r in _rows(out / "cases.csv")] == ["vertebra"]
    vertebra = next(r for r in _rows(out / "cases.csv") if r["class"] == "vertebra")
    assert int(vertebra["ref_voxels"]) == 7 * 36 + 2 * 64 and int(vertebra["pred_voxels"]) == 216


def test_unmatched_cases_are_one_clear_error(folders, tmp_path, capsys):
    (folders["ref"] / "mr_case.nii.gz").rename(folders["ref"] / "other_case.nii.gz")
    code = main(["evaluate", "--pred", str(folders["pred"]), "--ref", str(folders["ref"]), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "only in --pred" in err and "mr_case" in err and "only in --ref" in err and "other_case" in err
    assert not (tmp_path / "x" / "summary.json").exists()


def test_a_reference_on_another_grid_is_refused(folders, tmp_path, capsys):
    shifted = AFFINE.copy()
    shifted[0, 3] += 0.5
    _save(np.zeros(SHAPE, np.uint8), folders["ref"] / "mr_case.nii.gz", affine=shifted)
    assert main(["evaluate", "--pred", str(folders["pred"]), "--ref", str(folders["ref"]), "--out", str(tmp_path / "x")]) == 2
    assert "label and image grids differ" in capsys.readouterr().err


def test_a_folder_of_label_maps_as_prediction(folders, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for case in ("ct_case", "mr_case"):
        shutil.copy(folders["pred"] / case / "labels.nii.gz", flat / f"{case}.nii.gz")
    out = tmp_path / "flat_out"
    assert main(["evaluate", "--pred", str(flat), "--ref", str(folders["ref"]), "--bootstrap", "0", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "froc" not in summary["all"]["lesions"] and summary["all"]["lesions"]["tp"] == 1


class _Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.body, self.tables, self._table, self._cell = {}, {}, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        elif tag == "table":
            self._table = attrs.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append(self._cell.strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


CHECK_SCRIPT = page_check_script("segmentation")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (apt-get install chromium)")
def test_evaluation_html_renders_in_chromium(folders, tmp_path):
    out = tmp_path / "out"
    assert main(["evaluate", "--pred", str(folders["pred"]), "--ref", str(folders["ref"]), "--truth",
                 str(folders["truth"]), "--bootstrap", "100", "--out", str(out)]) == 0
    page = out / "evaluation.html"
    checked = out / "evaluation_check.html"
    checked.write_text(page.read_text(encoding="utf-8").replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
    result = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
                             "--dump-dom", checked.as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = _Dom()
    dom.feed(result.stdout)
    assert dom.body.get("data-images-total") == "7"  # Dice, FROC, 3 Bland-Altman, 2 confusion matrices
    assert json.loads(dom.body["data-images-broken"]) == []
    assert float(dom.body["data-table-height"]) > 50
    header, *rows = dom.tables["segmentation"]
    assert header[:3] == ["class", "cases", "Dice"]
    assert rows[0][0] == "vertebral_body" and rows[0][2].startswith("0.917")
    assert [r[0] for r in dom.tables["cases"][1:]] == ["ct_case", "mr_case"]


def test_groups_from_a_csv_file(folders, tmp_path, capsys):
    groups = tmp_path / "groups.csv"
    groups.write_text("case,group\nct_case,site A\nmr_case,site B\n")
    out = tmp_path / "grouped"
    assert main(["evaluate", "--pred", str(folders["pred"]), "--ref", str(folders["cord_ref"]), "--ref-map", "cord",
                 "--by", str(groups), "--bootstrap", "0", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["groups"]["site A"]["segmentation"]["spinal_cord"]["dice"]["value"] == 1.0
    assert summary["groups"]["site B"]["segmentation"]["spinal_cord"]["dice"]["value"] == pytest.approx(0.75)
    assert {r["group"] for r in _rows(out / "cases.csv")} == {"site A", "site B"}
    groups.write_text("case,group\nct_case,site A\n")
    assert main(["evaluate", "--pred", str(folders["pred"]), "--ref", str(folders["cord_ref"]), "--ref-map", "cord",
                 "--by", str(groups), "--out", str(tmp_path / "y")]) == 2
    assert "mr_case" in capsys.readouterr().err


def test_evaluation_html_escapes_names(folders, tmp_path):
    """Group and case names reach evaluation.html as text, table ids included, never as markup."""
    evil = "<script>alert('x')</script>"
    groups = tmp_path / "groups.csv"
    groups.write_text(f'case,group\nct_case,"{evil}"\nmr_case,"site ""B"" & C"\n')
    out = tmp_path / "escaped"
    assert main(["evaluate", "--pred", str(folders["pred"]), "--ref", str(folders["cord_ref"]), "--ref-map", "cord",
                 "--by", str(groups), "--bootstrap", "0", "--out", str(out)]) == 0
    text = (out / "evaluation.html").read_text(encoding="utf-8")
    assert "<script" not in text and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in text
    dom = _Dom()
    dom.feed(text)
    assert {f"segmentation-{evil}", 'segmentation-site "B" & C', "segmentation", "cases"} <= set(dom.tables)
    assert [r[:2] for r in dom.tables["cases"][1:]] == [["ct_case", evil], ["mr_case", 'site "B" & C']]


def test_evaluation_template_refuses_a_missing_variable():
    import jinja2

    from spinelesion.report.templating import render

    with pytest.raises(jinja2.UndefinedError, match="settings"):
        render("evaluation.html.j2", n_cases=0, command=None, skipped_predictions=None, groups=[], plots=[],
               cases={"header": [], "rows": []})
