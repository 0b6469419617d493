"""Issue 13: bad inputs, partial failures and messages a user can act on (one test per defect)."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from conftest import OBLIQUE_AFFINE, ct_volume, make_affine, write_ct_series
from records import typed  # noqa: E402
from spinelesion.cli import main
from spinelesion.errors import DatasetError, DeviceError, LabelMapError, NotAScanError, ScanLoadError
from spinelesion.pipeline import batch
from spinelesion.pipeline.batch import run_batch
from spinelesion.io.load import load_scan

REPO = Path(__file__).resolve().parents[1]


def _nifti(path: Path, array, affine=np.diag([1.0, 1.0, 2.0, 1.0])) -> Path:
    nib.save(nib.Nifti1Image(np.asarray(array, np.float32), affine), str(path))
    return path


def _huge_header(path: Path) -> Path:
    """A valid small .nii whose header then claims 600 x 600 x 6000 voxels."""
    _nifti(path, ct_volume((20, 18, 8)))
    data = bytearray(path.read_bytes())
    struct.pack_into("<8h", data, 40, 3, 600, 600, 6000, 1, 1, 1, 1)
    path.write_bytes(bytes(data))
    return path


# --- Found with bad and unusual inputs -------------------------------------------------------

def test_header_claiming_more_voxels_than_the_file_holds_is_one_line(tmp_path, capsys):
    bad = _huge_header(tmp_path / "huge.nii")
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "header declares 600x600x6000 voxels" in err, err
    import gzip

    gz = tmp_path / "huge.nii.gz"
    gz.write_bytes(gzip.compress(bad.read_bytes()))
    with pytest.raises(ScanLoadError, match="cannot hold that many|header declares"):
        load_scan(gz)


def test_header_claiming_too_many_voxels_fails_in_infer_with_the_reason(tmp_path, tiny_model):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _huge_header(inputs / "huge.nii")
    _nifti(inputs / "good.nii.gz", ct_volume((22, 20, 10)))
    result = run_batch(input_path=inputs, out_dir=tmp_path / "out", model=tiny_model, device="cpu", progress=False,
                       overlays=False)
    status = json.loads((tmp_path / "out" / "huge" / "status.json").read_text())
    assert status["status"] == "failed" and "header declares" in status["error"] and "traceback" not in status
    assert result.n_ok == 1 and result.n_failed == 1


def _without(paths, keyword):
    for path in paths:
        ds = pydicom.dcmread(path)
        delattr(ds, keyword)
        ds.save_as(path)


def test_dicom_seg_written_when_type2_attributes_are_absent(tmp_path):
    from spinelesion.io.seg import read_dicom_seg, save_dicom_seg

    paths = write_ct_series(tmp_path / "s", ct_volume(), OBLIQUE_AFFINE)
    for keyword in ("PatientSex", "PatientBirthDate", "ReferringPhysicianName", "StudyID", "AccessionNumber",
                    "StudyDate", "StudyTime", "SliceThickness"):
        _without(paths, keyword)
    scan = load_scan(tmp_path / "s")
    labels = np.zeros(scan.shape, np.uint8)
    labels[5:10, 5:10, 2:5] = 1
    save_dicom_seg(labels, like=scan, path=tmp_path / "x.seg.dcm")
    assert np.array_equal(read_dicom_seg(tmp_path / "x.seg.dcm", like=scan), labels)
    assert pydicom.dcmread(tmp_path / "x.seg.dcm").PatientSex == ""


def test_one_failing_output_leaves_the_others_and_marks_the_case_partial(tmp_path, tiny_model, monkeypatch):
    import spinelesion.io.seg as seg

    def broken(*args, **kwargs):
        raise AttributeError("'FileDataset' object has no attribute 'Whatever'")

    monkeypatch.setattr(seg, "save_dicom_seg", broken)
    write_ct_series(tmp_path / "in" / "series", ct_volume((24, 20, 9)), make_affine(np.eye(3), (1, 1, 2), (0, 0, 0)))
    result = run_batch(input_path=tmp_path / "in", out_dir=tmp_path / "out", model=tiny_model, device="cpu",
                       progress=False)
    (case_dir,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    status = json.loads((case_dir / "status.json").read_text())
    assert status["status"] == "partial" and "labels.seg.dcm not written" in status["error"]
    assert set(status["output_errors"]) == {"labels.seg.dcm"}
    for name in ("labels.nii.gz", "measurements.json", "sagittal.png"):
        assert (case_dir / name).is_file() and name in status["outputs"], name
    assert result.n_partial == 1 and result.exit_code == 1
    assert result.problems[0][1] == "partial"
    row = (tmp_path / "out" / "summary.csv").read_text()
    assert ",partial," in row


def test_rerun_removes_stale_temporaries_and_old_outputs(tmp_path, tiny_model):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _nifti(inputs / "a.nii.gz", ct_volume((22, 20, 10)))
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    stale = [out / "a" / ".axial_v5.png.k3j_x9a2.tmp.png", out / "a" / ".labels.nii.gz.abcdefgh.tmp.nii.gz",
             out / ".summary.csv.zz9yy8xx.tmp.csv"]
    for path in stale:
        path.write_bytes(b"half written")
    (out / "a" / "axial_v5.png").write_bytes(b"from an earlier attempt")  # no status.json: unfinished
    run_batch(input_path=inputs, out_dir=out, model=tiny_model, device="cpu", progress=False, overlays=False)
    assert not [p for p in stale if p.exists()]
    assert not (out / "a" / "axial_v5.png").exists()
    assert not list(out.rglob("*.tmp*"))


def test_include_and_exclude_globs(tmp_path):
    from spinelesion.io.discover import discover_cases

    root = tmp_path / "ds"
    for rel in ("imagesTr/a.nii.gz", "labelsTr/a.nii.gz", "sub/b_t2.nii.gz", "sub/b_t2_seg.nii.gz"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    ids = lambda **kw: [c.case_id for c in discover_cases(root, **kw)]  # noqa: E731
    assert ids(exclude=["labelsTr", "*_seg*"]) == ["imagesTr__a", "sub__b_t2"]
    assert ids(include=["imagesTr"]) == ["imagesTr__a"]
    assert ids(include=["sub/*"], exclude=["*_seg.nii.gz"]) == ["sub__b_t2"]
    with pytest.raises(ScanLoadError, match="no scans left"):
        discover_cases(root, include=["nothing*"])



def test_a_case_folders_outputs_are_not_read_as_scans(tmp_path):
    """Rerunning over a folder that holds an earlier run: the viewer image, probabilities and labels
    beside a status.json are outputs, not scans; the same names elsewhere are scans."""
    from spinelesion.io.discover import discover_cases

    root = tmp_path / "ds"
    for rel in ("a.nii.gz", "out/a/status.json", "out/a/viewer_image.nii.gz", "out/a/probabilities.nii.gz",
                "out/a/labels.nii.gz", "other/viewer_image.nii.gz"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    assert [c.case_id for c in discover_cases(root)] == ["a", "other__viewer_image"]

# --- Messages ----------------------------------------------------------------------------------

def test_infer_prints_each_failed_reason_and_that_rerunning_resumes(tmp_path, tiny_model, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _nifti(inputs / "a.nii.gz", ct_volume((22, 20, 10)))
    (inputs / "b.nii.gz").write_bytes(b"garbage")
    mask = np.zeros((22, 20, 10))
    mask[8:12, 8:12] = 1
    _nifti(inputs / "a_seg.nii.gz", mask)
    code = main(["infer", str(inputs), "--out", str(tmp_path / "o"), "--model", str(tiny_model), "--device", "cpu",
                 "--quiet", "--no-overlays"])
    captured = capsys.readouterr()
    assert code == 1
    assert re.search(r"^failed: b: .*b\.nii\.gz: not a readable NIfTI", captured.err, re.M), captured.err
    assert re.search(r"^skipped: a_seg: .*looks like a segmentation", captured.err, re.M), captured.err
    assert "rerunning the same command resumes" in captured.err
    assert "1 ok, 1 failed, 0 partial, 1 skipped" in captured.out
    assert "Traceback" not in captured.err


def _tube(shape=(40, 40, 60)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[18:23, 18:23, 5:55] = 1  # a 5 x 5 mm cord, 50 mm long
    return mask


def test_measure_names_the_label_map_that_fits(tmp_path):
    from spinelesion.measure import measure_files

    image = _nifti(tmp_path / "img.nii.gz", ct_volume((40, 40, 60)), np.eye(4))
    cord = _nifti(tmp_path / "cord.nii.gz", _tube(), np.eye(4))
    with pytest.raises(LabelMapError, match="spinal cord mask.*--label-map cord"):
        measure_files(image_path=image, labels_path=cord)
    record = measure_files(image_path=image, labels_path=cord, label_map="cord")
    assert record["column"]["label_map"] == "cord"
    totalseg = np.zeros((40, 40, 60), np.uint8)
    totalseg[10:30, 10:30, 5:20], totalseg[10:30, 10:30, 25:40] = 31, 32
    ts = _nifti(tmp_path / "ts.nii.gz", totalseg, np.eye(4))
    with pytest.raises(LabelMapError, match="--label-map totalsegmentator"):
        measure_files(image_path=image, labels_path=ts)
    with pytest.raises(NotAScanError, match="--image takes the scan"):
        measure_files(image_path=cord, labels_path=cord, label_map="cord")
    assert main(["measure", "--image", str(cord), "--labels", str(cord), "--out", str(tmp_path / "m.json")]) == 2


def test_readme_lists_every_label_map():
    from spinelesion.measure.label_maps import BUILTIN_MAPS

    text = (REPO / "README.md").read_text()
    for name in BUILTIN_MAPS:
        assert f"`{name}`" in text or f"--label-map {name}" in text, name


def test_unmeasured_cord_reads_not_measured():
    from spinelesion.commands.measure import format_summary
    from spinelesion.measure import measure_labels
    from spinelesion.report.html import _cord_table
    from spinelesion.report.tables import summary_row

    labels = np.zeros((30, 30, 30), np.uint8)
    labels[10:20, 10:20, 5:12] = 1  # bone only: no cord labelled
    record = measure_labels(labels=labels, affine=np.eye(4))
    assert record["cord"]["compression_flag"] is None
    assert "compression not measured" in format_summary(typed(record))
    assert "not measured" in _cord_table(typed(record)) and ">no<" not in _cord_table(typed(record))
    assert summary_row(case="c", record=typed(record), status="ok", error=None, input_label="c",
                       seconds=1.0)["compression_flag"] is None


def test_a_speck_flags_no_vertebra_and_a_lesion_outside_says_where():
    from spinelesion.measure.lesions import outside_location
    from spinelesion.measure.column import Vertebra
    from spinelesion.report.tables import flagged_vertebra_indices

    record = {"vertebrae": [{"index": 0, "lesion_volume_ml": 0.02, "body_destruction_pct": 0.3},
                            {"index": 1, "lesion_volume_ml": 0.5, "body_destruction_pct": 6.0}],
              "lesions": [], "flags": []}
    assert flagged_vertebra_indices(typed(record)) == [1]
    record["settings"] = {"min_lesion_mm3": 10.0}
    assert flagged_vertebra_indices(typed(record)) == [0, 1]
    v = Vertebra.__new__(Vertebra)
    v.index, v.level, v.centroid_mm = 2, "L3", np.array([0.0, 0.0, 0.0])
    text = outside_location(np.array([2.0, 40.0, -12.0]), [v])
    assert "in no vertebra" in text and "40 mm anterior" in text and "12 mm inferior" in text and "L3" in text


def test_lesion_records_outside_a_vertebra_carry_a_location():
    from spinelesion.measure import measure_labels

    labels = np.zeros((40, 40, 40), np.uint8)
    labels[5:12, 5:12, 5:12] = 3  # a lesion alone: no vertebra
    record = measure_labels(labels=labels, affine=np.eye(4))
    (lesion,) = record["lesions"]
    assert lesion["vertebra_index"] is None and lesion["location"].startswith("in no vertebra")


def test_train_ends_naming_the_best_checkpoint_and_the_next_command(tmp_path):
    from spinelesion.commands.train import final_message

    (tmp_path / "best.safetensors").write_bytes(b"x")
    text = final_message({"best_value": 0.5, "epochs": 2, "seconds": 60, "metric": "mean_dice", "best_epoch": 2,
                          "output_dir": str(tmp_path)})
    assert f"best checkpoint: {tmp_path / 'best.safetensors'}" in text
    assert f"spinelesion infer SCANS --out OUT --model {tmp_path / 'best.safetensors'}" in text


# --- Found in the code -------------------------------------------------------------------------

def test_train_device_is_validated(tmp_path, capsys):
    from spinelesion.training.loop import train

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--config", "x.yaml", "--device", "foo"])
    assert exit_info.value.code == 2 and "invalid choice: 'foo'" in capsys.readouterr().err
    with pytest.raises(DeviceError, match="unknown device 'foo'"):
        train(config=None, device="foo")  # refused before the config is read


def test_exception_classes():
    from spinelesion.runtime import resolve_device
    from spinelesion.data.adapters import get_adapter
    from spinelesion.errors import CheckpointError

    with pytest.raises(DeviceError) as info:
        resolve_device("tpu")
    assert not isinstance(info.value, CheckpointError)
    with pytest.raises(DatasetError) as info:
        get_adapter("verse").find_cases(Path("/nonexistent/verse"))
    assert not isinstance(info.value, LabelMapError)


def test_sins_collapse_at_exactly_50_pct_is_under_50():
    from spinelesion.measure.body import sins_collapse
    from spinelesion.measure.settings import MeasureSettings

    assert sins_collapse(50.0, 0.0, MeasureSettings()) == "under_50pct"
    assert sins_collapse(50.1, 0.0, MeasureSettings()) == "over_50pct"


def test_probabilities_follow_the_labels_edge_rule_slab_by_slab(tmp_path):
    import tracemalloc

    from spinelesion.inference.resample import labels_on_grid, probabilities_on_grid
    from spinelesion.io.save import save_probabilities
    from spinelesion.io.scan import Scan

    torch.manual_seed(3)
    logits = torch.nn.functional.interpolate(torch.randn(1, 7, 4, 4, 4) * 5, size=(12, 10, 9), mode="trilinear")[0]
    probs = torch.softmax(logits, dim=0)
    source = make_affine(np.eye(3), (3.0, 3.0, 3.0), (0.0, 0.0, 0.0))
    target = make_affine(np.eye(3), (1.1, 0.9, 1.3), (-4.0, -3.0, -2.0))  # reaches past the source's edges
    shape = (40, 40, 26)
    labels = labels_on_grid(probs, source_affine=source, target_affine=target, target_shape=shape)
    tracemalloc.start()
    out = probabilities_on_grid(probs, source_affine=source, target_affine=target, target_shape=shape,
                                slab_voxels=2000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < out.nbytes + 200_000  # the output, no full-volume float64 coordinates
    as32 = out.astype(np.float32)
    top2 = np.sort(as32, axis=0)[-2:]
    clear = top2[1] - top2[0] > 0.01
    # the labels keep to the classes of each cell's corners; the probabilities are the plain interpolation,
    # whose arg-max differs only where a class no corner holds leads between them (13 of 41,144 here)
    assert (as32.argmax(axis=0)[clear] == labels[clear]).mean() > 0.999
    np.testing.assert_allclose(as32.sum(axis=0), 1.0, atol=0.01)
    scan = Scan(array=np.zeros(shape, np.float32), affine=target)
    path = save_probabilities(out, like=scan, path=tmp_path / "p.nii.gz")
    img = nib.load(str(path))
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    np.testing.assert_allclose(img.affine, target, atol=1e-5)
    assert not list(tmp_path.glob(".*tmp*"))


def test_run_outputs_survive_a_case_without_status(tmp_path, tiny_model, monkeypatch):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "b"):
        _nifti(inputs / f"{name}.nii.gz", ct_volume((22, 20, 10)))
    real = batch.read_status
    monkeypatch.setattr(batch, "read_status", lambda d: None if d.name == "b" else real(d))
    result = run_batch(input_path=inputs, out_dir=tmp_path / "out", model=tiny_model, device="cpu",
                       progress=False, overlays=False)
    assert result.n_failed == 1 and result.problems[0][:2] == ("b", "failed")


def test_recorded_training_command_keeps_arguments_equal_to_train():
    from spinelesion.commands.train import recorded_command

    argv = ["train", "--config", "c.yaml", "--output", "train", "--set", "name=train"]
    assert recorded_command(argv) == "spinelesion train --config c.yaml --output train --set name=train"
    assert recorded_command(["--config", "c.yaml"]) == "spinelesion train --config c.yaml"  # scripts/train.py


def test_tests_import_the_package_plainly_and_stay_in_the_repository():
    for path in sorted((REPO / "tests").glob("*.py")):
        text = path.read_text()
        assert not re.search(r"importorskip\(\s*[\"']spinelesion", text), f"{path.name}: importorskip of our own module"
        assert not re.search(r"Path\(\s*[\"']/work", text), f"{path.name}: absolute path outside the repository"


def test_dead_code_is_gone():
    from spinelesion.io import atomic
    from spinelesion.io.scan import Scan

    assert not hasattr(Scan, "with_array")
    assert not hasattr(atomic, "write_bytes_atomic")
    assert not hasattr(batch, "process_case")
