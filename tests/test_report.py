"""Review outputs: overlays (geometry, orientation, aspect), summary.csv, colour tables.

Synthetic cases are small box spines (tests/report_synth.py); real scans (``../shared/data/real``)
check that overlays of a PSR MR and an RAS CT come out the right way up. The HTML report:
tests/test_report_html.py.
"""

from __future__ import annotations

import csv
import re

import nibabel as nib
import numpy as np
import pytest

from report_synth import LEVELS, SPACING_MM, _ras_spine, _record, synthetic_case
from records import typed  # noqa: E402
from spinelesion.errors import LabelMapError
from spinelesion.io.scan import Scan
from spinelesion.labels import LABEL_COLOURS, LABEL_NAMES
from spinelesion.report import summary_row, write_colour_tables, write_overlays, write_summary_csv
from spinelesion.report.overlays import AXIAL_MAX_PX, CURVED_MAX_PX, LEGEND_PX, MARGIN_PX, build_views
from spinelesion.report.tables import SUMMARY_COLUMNS, cohort_sort_key, flagged_vertebra_indices


# ---------------------------------------------------------------- overlays: geometry


@pytest.mark.parametrize("axcodes", ["LPS", "PSR", "SAL"])
def test_views_do_not_depend_on_voxel_order(axcodes):
    def views(axcodes):
        scan, labels, record = synthetic_case(axcodes=axcodes)
        return build_views(scan=scan, labels=labels, record=typed(record))

    ras, other = views("RAS"), views(axcodes)
    assert [v.name for v in ras] == [v.name for v in other] == [
        "sagittal", "coronal", "axial_v2", "axial_cord"]
    for a, b in zip(ras, other):
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.image, b.image)
        np.testing.assert_allclose(a.spacing_mm, b.spacing_mm)
        np.testing.assert_allclose(np.array([m.text_at for m in a.marks], dtype=float).reshape(-1, 2),
                                   np.array([m.text_at for m in b.marks], dtype=float).reshape(-1, 2))


def test_the_cord_view_names_a_compression_below_the_conus():
    scan, labels, record = synthetic_case(axcodes="RAS")
    titles = {v.name: v.title for v in build_views(scan=scan, labels=labels, record=typed(record))}
    assert titles["axial_cord"].startswith("Axial at worst cord compression: MSCC")
    record = {**record, "cord": {**record["cord"], "mscc_pct": None, "mcc_pct": 41.0, "bilsky_grade": "2"},
              "findings": [{"kind": "cauda_equina_compression", "vertebra_index": 2, "level": None, "value": 41.0,
                            "unit": "%", "threshold": 33.0, "grade": "2"}]}
    titles = {v.name: v.title for v in build_views(scan=scan, labels=labels, record=typed(record))}
    assert titles["axial_cord"] == "Axial at cauda equina compression (below the conus): sac narrowed 41 %, Bilsky 2"


def test_views_put_anatomy_where_the_display_convention_says():
    scan, labels, record = synthetic_case(axcodes="PSR")
    views = {v.name: v for v in build_views(scan=scan, labels=labels, record=typed(record))}
    # Every view is drawn with its horizontal axis flipped (larger index on the viewer's left).
    assert all(v.flip_h for v in views.values())
    sag, cor, axial = views["sagittal"], views["coronal"], views["axial_v2"]
    assert sag.letters == ("A", "P", "I", "S") and cor.letters == ("R", "L", "I", "S")
    assert axial.letters == ("R", "L", "P", "A")
    for view in (sag, cor, axial):   # the bright marker sits at large h (left) and large v (top)
        h, v = np.unravel_index(np.argmax(view.image), view.image.shape)
        assert h > 0.7 * view.image.shape[0] and v > 0.7 * view.image.shape[1], view.name
    # Sagittal: bodies (class 1) anterior (larger h) of the cord; pixel spacing (y, z) in mm.
    body_h = np.argwhere(sag.labels == 1)[:, 0].mean()
    cord_h = np.argwhere(sag.labels == 4)[:, 0].mean()
    assert body_h > cord_h
    assert sag.spacing_mm == pytest.approx((0.8, 3.0)) and axial.spacing_mm == pytest.approx((0.8, 0.8))
    # Level names beside their vertebrae, inferior (L5) to superior (L1); flagged L3 emphasised.
    assert [m.text for m in sag.marks] == list(LEVELS)
    heights = [m.anchor[1] for m in sag.marks]
    assert heights == sorted(heights)
    assert heights[2] == pytest.approx(24.0 * 3.0)
    assert [m.emphasis for m in sag.marks] == [False, False, True, False, False]
    assert all(m.text_at[0] > 91 * 0.8 for m in sag.marks)      # anterior of the bodies
    assert all(m.text_at[0] < 22 * 0.8 for m in cor.marks)      # at the patient's left of them
    # The axial slice at vertebra 2 cuts its lesion; the cord view holds the cord.
    assert (axial.labels == 3).any() and (views["axial_cord"].labels == 4).any()


def test_oblique_grid_still_reads():
    scan, labels, record = synthetic_case(axcodes="LPS", oblique_deg=15.0)
    views = {v.name: v for v in build_views(scan=scan, labels=labels, record=typed(record))}
    assert set(views) == {"sagittal", "coronal", "axial_v2", "axial_cord"}
    sag = views["sagittal"]
    # The plane follows the canal: the cord runs through the whole column height.
    rows_with_cord = (sag.labels == 4).any(axis=0)
    assert rows_with_cord.mean() > 0.9
    assert (views["axial_v2"].labels == 3).any()


def test_curved_sagittal_follows_a_scoliotic_column():
    image, labels = _ras_spine("CT")
    shifted_labels, shifted_image = np.zeros_like(labels), np.zeros_like(image)
    for z in range(labels.shape[2]):   # the column drifts 12 voxels to the right from bottom to top
        shift = int(round(12 * z / (labels.shape[2] - 1)))
        shifted_labels[shift:, :, z] = labels[:labels.shape[0] - shift, :, z]
        shifted_image[shift:, :, z] = image[:labels.shape[0] - shift, :, z]
    affine = np.diag([*SPACING_MM, 1.0])
    scan = Scan(array=shifted_image, affine=affine, modality="CT")
    views = build_views(scan=scan, labels=shifted_labels, record=typed(_record(shifted_labels, affine, "CT")))
    sag = views[0]
    assert (sag.labels == 4).any(axis=0).mean() > 0.9   # a straight plane would leave the cord


def test_write_overlays_pngs(tmp_path):
    import matplotlib.image as mpimg

    scan, labels, record = synthetic_case(modality="MR", axcodes="PSR")
    paths = write_overlays(scan=scan, labels=labels, record=typed(record), out_dir=tmp_path / "case")
    assert [p.name for p in paths] == ["sagittal.png", "coronal.png", "axial_v2.png", "axial_cord.png"]
    assert sorted(p.name for p in (tmp_path / "case").iterdir()) == sorted(p.name for p in paths)
    views = {v.name: v for v in build_views(scan=scan, labels=labels, record=typed(record))}
    for path in paths:
        png = mpimg.imread(path)
        view = views[path.stem]
        h0, h1, v0, v1 = view.extent_mm()
        max_w, max_h = CURVED_MAX_PX if path.stem in ("sagittal", "coronal") else AXIAL_MAX_PX
        scale = min(max_w / (h1 - h0), max_h / (v1 - v0))
        image_w = png.shape[1] - 2 * MARGIN_PX - LEGEND_PX
        # The figure is sized so that one mm is as wide as it is tall (anisotropic voxels).
        assert image_w == pytest.approx((h1 - h0) * scale, abs=1.5)
        assert png.shape[0] >= (v1 - v0) * scale
        grey = png[..., :3].mean(axis=2)
        assert grey.std() > 0.05   # not blank
    # Sagittal PNG: the anterior-superior marker lands in the top-left corner of the image area.
    png = mpimg.imread(paths[0])[..., :3].mean(axis=2)
    image_w = png.shape[1] - 2 * MARGIN_PX - LEGEND_PX
    top = png.shape[0] - MARGIN_PX - int(round(image_w * (views["sagittal"].extent_mm()[3] - views[
        "sagittal"].extent_mm()[2]) / (views["sagittal"].extent_mm()[1] - views["sagittal"].extent_mm()[0])))
    corner = slice(MARGIN_PX + 2, MARGIN_PX + image_w // 8)
    rows = slice(top + 2, top + 2 + image_w // 8)
    far = slice(MARGIN_PX + image_w - image_w // 8, MARGIN_PX + image_w - 2)
    assert png[rows, corner].mean() > png[rows, far].mean() + 0.2


def test_write_overlays_rejects_mismatched_labels(tmp_path):
    scan, labels, record = synthetic_case()
    with pytest.raises(LabelMapError, match="shape"):
        write_overlays(scan=scan, labels=labels[:-1], record=typed(record), out_dir=tmp_path)


def test_empty_labels_and_empty_record(tmp_path):
    scan, labels, _ = synthetic_case(modality="MR")
    paths = write_overlays(scan=scan, labels=np.zeros_like(labels), record=None, out_dir=tmp_path)
    assert [p.name for p in paths] == ["sagittal.png", "coronal.png"]


def test_overlays_on_real_scans_are_head_up(real_data, tmp_path):
    """SCT T2 (PSR, healthy cord) and TotalSegmentator CT (RAS): levels stack the right way."""
    from spinelesion.io.load import load_scan

    t2 = load_scan(real_data / "sct_t2/t2.nii.gz")
    assert t2.orientation == "PSR"
    cord = np.asarray(nib.load(real_data / "sct_t2/t2_seg-manual.nii.gz").dataobj) > 0
    levels = np.asarray(nib.load(real_data / "sct_t2/t2_seg-manual_labeled.nii.gz").dataobj).astype(int)
    vertebrae = []
    for index, value in enumerate((5, 4, 3, 2)):   # C5 (inferior) ... C2
        centroid = (t2.affine @ np.append(np.argwhere(levels == value).mean(axis=0), 1.0))[:3]
        vertebrae.append({"index": index, "level": f"C{value}", "centroid_mm": centroid.tolist()})
    record = {"vertebrae": vertebrae, "cord": {"worst_centroid_mm": vertebrae[1]["centroid_mm"]}}
    labels = np.where(cord, 4, 0).astype(np.uint8)
    views = {v.name: v for v in build_views(scan=t2, labels=labels, record=typed(record))}
    heights = [m.anchor[1] for m in views["sagittal"].marks]
    assert heights == sorted(heights)       # C5 below C2
    assert (views["axial_cord"].labels == 4).sum() * 1.0 == pytest.approx(77, abs=15)  # ~69-85 mm2
    paths = write_overlays(scan=t2, labels=labels, record=typed(record), out_dir=tmp_path / "mr")
    assert [p.name for p in paths] == ["sagittal.png", "coronal.png", "axial_cord.png"]

    ct = load_scan(real_data / "totalseg_ct/example_ct.nii.gz")
    total = np.asarray(nib.load(real_data / "totalseg_ct/example_ct_totalseg.nii.gz").dataobj).astype(int)
    ct_labels = np.where((total >= 26) & (total <= 33), 1, 0).astype(np.uint8)
    names = {26: "S1", 27: "L5", 28: "L4", 29: "L3", 30: "L2", 31: "L1", 32: "T12", 33: "T11"}
    ct_vertebrae = [{"index": i, "level": names[value], "lesion_volume_ml": 1.0 if i == 3 else 0.0,
                     "centroid_mm": (ct.affine @ np.append(np.argwhere(total == value).mean(axis=0), 1))[:3].tolist()}
                    for i, value in enumerate(range(26, 34))]
    ct_views = build_views(scan=ct, labels=ct_labels, record=typed({"vertebrae": ct_vertebrae}))
    assert [v.name for v in ct_views] == ["sagittal", "coronal", "axial_v3"]
    sag_heights = [m.anchor[1] for m in ct_views[0].marks]
    assert sag_heights == sorted(sag_heights)
    assert ct_views[0].labels.any() and (ct_views[2].labels == 1).any()


@pytest.mark.slow
def test_overlays_on_an_oblique_phantom(tmp_path):
    """A project phantom (oblique LPS CT, Bilsky 1b) with its truth record."""
    from spinelesion.data import phantoms

    phantom = phantoms.make_phantom(seed=5, modality="ct", bilsky="1b", orientation="LPS", oblique=True,
                                    shape_limit_vox=80)
    record = phantom.truth
    views = {v.name: v for v in build_views(scan=phantom.scan, labels=phantom.labels, record=typed(record))}
    levels = [v["level"] for v in record["vertebrae"]]
    marks = views["sagittal"].marks
    assert [m.text for m in marks] == levels
    assert [m.anchor[1] for m in marks] == sorted(m.anchor[1] for m in marks)   # inferior -> superior
    for flag in record["flags"]:   # every vertebra a flag names gets its axial view
        for vertebra in record["vertebrae"]:
            if re.search(rf"\b{vertebra['level']}\b", flag):
                assert f"axial_v{vertebra['index']}" in views
    cord_view = views["axial_cord"]
    assert (cord_view.labels == 4).any() and (cord_view.labels == 3).any()   # epidural tumour by the cord
    paths = write_overlays(scan=phantom.scan, labels=phantom.labels, record=typed(record), out_dir=tmp_path)
    assert [p.stem for p in paths] == list(views)


# ---------------------------------------------------------------- tables and CSV


def test_flagged_vertebrae():
    """Vertebrae are flagged from the record's numbers and structured findings, never from sentences."""
    record = {"vertebrae": [{"index": i} for i in range(6)],
              "lesions": [{"vertebra_index": 1}, {"vertebra_index": None}],
              "findings": [{"kind": "cord_compression", "vertebra_index": 4, "level": None},
                           {"kind": "posterolateral", "vertebra_index": 99, "level": None}],
              "flags": ["cord compression, Bilsky 2, at vertebra 4", "vertebra 0 is named in a sentence only"]}
    record["vertebrae"][3].update(body_destruction_pct=12.0)
    record["vertebrae"][5].update(posterolateral="unilateral")
    record["vertebrae"][0].update(genant_grade=0, posterolateral="none", lesion_volume_ml=0.0)
    assert flagged_vertebra_indices(typed(record)) == [1, 3, 4, 5]
    record["findings"] = [{"kind": "height_loss", "vertebra_index": 2, "level": "T1"}]
    assert flagged_vertebra_indices(typed(record)) == [1, 2, 3, 5]


def test_summary_rows_and_csv(tmp_path):
    _, _, record = synthetic_case()
    ok = summary_row(case="case_001", record=typed(record), status="ok", error=None, input_label="a/b.nii.gz",
                     seconds=3.14159)
    failed = summary_row(case="=cmd|' /C calc'!A0", record=None, status="failed",
                         error="b.dcm: missing slice\nbetween 3 and 5", input_label="b", seconds=0.2)
    assert ok["n_vertebrae"] == 5 and ok["n_lesions"] == 1 and ok["worst_bilsky"] == "2"
    assert ok["lesion_volume_ml"] == pytest.approx(2.4) and ok["max_body_destruction_pct"] == 22.0
    assert ok["flags"] == "cord compression, Bilsky 2, at vertebra 2" and ok["compression_flag"] is True
    path = write_summary_csv(rows=[ok, failed], path=tmp_path / "summary.csv")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == SUMMARY_COLUMNS
    assert rows[0]["seconds"] == "3.14" and rows[0]["max_mscc_pct"] == "31.0"
    assert rows[1]["status"] == "failed" and rows[1]["error"] == "b.dcm: missing slice between 3 and 5"
    assert rows[1]["case"].startswith("'=") and rows[1]["n_vertebrae"] == ""
    with pytest.raises(ValueError):
        summary_row(case="x", record=None, status="done", error=None, input_label="x", seconds=1)
    with pytest.raises(ValueError, match="unknown"):
        write_summary_csv(rows=[{**ok, "patient_name": "x"}], path=tmp_path / "bad.csv")
    assert not (tmp_path / "bad.csv").exists()


def test_cohort_order():
    def rec(flag, bilsky, destruction):
        return {"cord": {"compression_flag": flag, "bilsky_grade": bilsky},
                "vertebrae": [{"index": 0, "body_destruction_pct": destruction}]}
    cases = {"failed": None, "clean": rec(False, None, 0.0), "b1c": rec(False, "1c", 10.0),
             "b2": rec(True, "2", 5.0), "b3": rec(True, "3", 1.0), "b1c_more": rec(False, "1c", 40.0)}
    order = sorted(cases, key=lambda c: cohort_sort_key(record=None if cases[c] is None else typed(cases[c]), status="ok", case=c))
    assert order == ["b3", "b2", "b1c_more", "b1c", "clean", "failed"]


# ---------------------------------------------------------------- colour tables


def test_colour_tables(tmp_path):
    itksnap, slicer = write_colour_tables(out_dir=tmp_path)
    entries = [line for line in itksnap.read_text().splitlines() if line and not line.startswith("#")]
    parsed = {int(p[0]): (tuple(int(x) for x in p[1:4]), p[-1].strip('"')) for p in map(str.split, entries)}
    assert parsed == {v: (LABEL_COLOURS[v], LABEL_NAMES[v]) for v in LABEL_NAMES}
    lines = slicer.read_text().splitlines()
    assert lines[0].startswith("# Color table file")
    rows = [line.split() for line in lines if not line.startswith("#")]
    assert {int(r[0]): (r[1], tuple(int(x) for x in r[2:5])) for r in rows} == {
        v: (LABEL_NAMES[v], LABEL_COLOURS[v]) for v in LABEL_NAMES}
    assert all(len(r) == 6 and 0 <= int(r[5]) <= 255 for r in rows)

