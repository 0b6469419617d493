"""Inference mechanics: outputs on each input's exact grid, batch failures recorded, reruns skip.

These tests use a tiny network with random weights: they check geometry and bookkeeping, not
segmentation quality (tests/test_default_model.py checks the shipped model on phantoms).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import ct_volume, make_affine, rotation, write_ct_series
from spinelesion.pipeline.batch import run_batch
from spinelesion.inference.predictor import Predictor
from spinelesion.io.load import load_scan
from spinelesion.io.scan import Scan
from spinelesion.labels import NUM_CLASSES

REPO = Path(__file__).resolve().parents[1]


def _nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(array.astype(np.float32), affine), str(path))
    return path


def _oblique_lps_affine() -> np.ndarray:
    direction = np.diag([-1.0, -1.0, 1.0]) @ rotation("x", 12) @ rotation("z", -7)
    return make_affine(direction, (1.3, 0.9, 2.5), (40.0, -12.0, 30.0))


@pytest.mark.parametrize("affine", [np.diag([1.1, 1.1, 2.0, 1.0]), _oblique_lps_affine()],
                         ids=["ras", "oblique_lps"])
def test_prediction_lands_on_input_grid(tiny_model, affine):
    volume = ct_volume((30, 26, 14)).astype(np.float32)
    scan = Scan(array=volume, affine=affine, modality="CT", source="test")
    prediction = Predictor(model=tiny_model, device="cpu").predict(scan)
    assert prediction.labels.shape == scan.shape
    assert prediction.labels.dtype == np.uint8
    assert prediction.labels.max() < NUM_CLASSES
    assert set(prediction.seconds) == {"preprocess", "network", "postprocess"}


def _bad_and_good_folder(root: Path) -> Path:
    root.mkdir()
    lps = _oblique_lps_affine()
    _nifti(root / "good_oblique.nii.gz", ct_volume((30, 26, 14), seed=1), lps)
    (root / "sub").mkdir()
    _nifti(root / "sub" / "good_ras.nii", ct_volume((24, 24, 12), seed=2), np.diag([1.2, 1.2, 2.0, 1.0]))
    write_ct_series(root / "dicom_ok", ct_volume((24, 20, 9), seed=3), make_affine(np.eye(3), (1, 1, 2), (0, 0, 0)),
                    series_uid="1.2.3.4.5.6", study_uid="1.2.3.4.5")
    write_ct_series(root / "dicom_gap", ct_volume((24, 20, 9), seed=4), make_affine(np.eye(3), (1, 1, 2), (0, 0, 0)),
                    series_uid="1.2.3.4.5.7", study_uid="1.2.3.4.5", skip=(4,))
    (root / "corrupt.nii.gz").write_bytes(b"\x1f\x8b" + os.urandom(200))
    (root / "notes.txt").write_text("not an image")
    _nifti(root / "flat2d.nii.gz", ct_volume((20, 20, 1))[..., 0], np.eye(4))
    (root / "README.md").write_text("ignored sidecar")
    return root


def test_batch_runs_good_scans_and_records_bad_ones(tmp_path, tiny_model):
    inputs = _bad_and_good_folder(tmp_path / "in")
    out = tmp_path / "out"
    result = run_batch(input_path=inputs, out_dir=out, model=tiny_model, device="cpu", progress=False)
    with open(out / "summary.csv", newline="") as f:
        rows = {r["case"]: r for r in csv.DictReader(f)}
    ok = {c for c, r in rows.items() if r["status"] == "ok"}
    failed = {c: r["error"] for c, r in rows.items() if r["status"] == "failed"}
    assert len(ok) == 3 and any(c.startswith("dicom_ok") for c in ok)
    assert {"good_oblique", "sub__good_ras"} <= ok
    assert set(failed) == {"corrupt", "notes.txt", "flat2d", *[c for c in rows if c.startswith("dicom_gap")]}
    assert all(err and "\n" not in err for err in failed.values())
    assert "2D" in failed["flat2d"]
    assert result.exit_code == 1 and result.n_failed == 4 and not result.demonstration_models
    # every good case's labels sit on the input's exact grid (NIfTI affine as the source file's)
    src = nib.load(str(inputs / "good_oblique.nii.gz"))
    out_img = nib.load(str(out / "good_oblique" / "labels.nii.gz"))
    assert out_img.shape == src.shape
    np.testing.assert_allclose(out_img.affine, src.affine, atol=1e-5)
    dicom_case = next(c for c in ok if c.startswith("dicom_ok"))
    assert (out / dicom_case / "labels.seg.dcm").is_file()
    scan = load_scan(inputs / "dicom_ok")
    np.testing.assert_allclose(nib.load(str(out / dicom_case / "labels.nii.gz")).affine, scan.affine, atol=1e-4)
    for case in ok:
        record = json.loads((out / case / "measurements.json").read_text())
        assert record["schema_version"] == 1
    run = json.loads((out / "run.json").read_text())
    assert run["demonstration_models"] is False  # the test's own checkpoint
    assert run["n_failed"] == 4 and run["n_ok"] == 3 and "network" in run["seconds_by_stage"]
    assert (out / "report.html").is_file()
    assert not list(out.rglob("*.tmp*")), "temporary files left behind"
    # patient name planted by write_ct_series never reaches our outputs (except inside the DICOM SEG)
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".csv", ".html", ".txt"):
            assert "Doe" not in path.read_text(errors="ignore"), path

    # rerun: finished cases are skipped, failed ones retried (and fail again)
    again = run_batch(input_path=inputs, out_dir=out, model=tiny_model, device="cpu", progress=False)
    assert again.n_skipped == 3 and again.n_failed == 4


def test_finishing_workers_do_not_change_outputs(tmp_path, tiny_model):
    """Cases finished in worker threads while the network runs on the next one (finish_workers
    1 and 3) give the same files as one case at a time (0); a bad scan among them is still recorded."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(4):
        _nifti(inputs / f"s{i}.nii.gz", ct_volume((22, 20, 10), seed=i), np.diag([1.0, 1.1, 2.0, 1.0]))
    (inputs / "s2_bad.nii.gz").write_bytes(b"garbage")
    outputs = {}
    for workers in (0, 1, 3):
        out = tmp_path / f"out{workers}"
        result = run_batch(input_path=inputs, out_dir=out, model=tiny_model, device="cpu", progress=False,
                           finish_workers=workers)
        assert result.n_ok == 4 and result.n_failed == 1
        outputs[workers] = {
            case: (np.asarray(nib.load(str(out / case / "labels.nii.gz")).dataobj),
                   json.loads((out / case / "measurements.json").read_text()),
                   sorted(p.name for p in (out / case).glob("*.png")))
            for case in (f"s{i}" for i in range(4))}
        assert json.loads((out / "s2_bad" / "status.json").read_text())["status"] == "failed"
        assert not list(out.rglob("*.tmp*"))
    for workers in (1, 3):
        for case, (labels, record, pngs) in outputs[workers].items():
            ref_labels, ref_record, ref_pngs = outputs[0][case]
            np.testing.assert_array_equal(labels, ref_labels)
            assert record == ref_record and pngs == ref_pngs and pngs


def test_label_maps_among_scans_are_skipped_with_a_clear_reason(tmp_path, tiny_model):
    """A segmentation beside the scans (here a cord mask and a multi-class map, as in
    ../shared/data/real) is not segmented as if it were an MR: it is skipped (not failed) with a
    one-line note."""
    from spinelesion.io.checks import require_image

    inputs = tmp_path / "in"
    inputs.mkdir()
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    _nifti(inputs / "scan.nii.gz", ct_volume((22, 20, 10)), affine)
    mask = np.zeros((22, 20, 10), np.uint8)
    mask[8:12, 8:12, :] = 1
    _nifti(inputs / "scan_seg.nii.gz", mask, affine)
    _nifti(inputs / "scan_totalseg.nii.gz", (np.arange(22 * 20 * 10).reshape(22, 20, 10) % 40).astype(np.float32), affine)
    result = run_batch(input_path=inputs, out_dir=tmp_path / "out", model=tiny_model, device="cpu", progress=False,
                       overlays=False)
    assert result.n_ok == 1 and result.n_failed == 0 and result.n_not_scans == 2 and result.exit_code == 0
    for case in ("scan_seg", "scan_totalseg"):
        status = json.loads((tmp_path / "out" / case / "status.json").read_text())
        assert status["status"] == "skipped" and "looks like a segmentation" in status["error"], status
    # images with few grey levels are still images: negative values, fractions, or many values
    for array in (np.round(ct_volume((16, 16, 8))), np.linspace(0, 1, 16 * 16 * 8).reshape(16, 16, 8)):
        require_image(Scan(array=array.astype(np.float32), affine=np.eye(4), modality=None, source="t"))


def test_a_blank_scan_fails_with_a_reason_and_the_batch_goes_on(tmp_path, tiny_model):
    """One value in every voxel (a blank export) is no image: the network would still draw a spine in it."""
    from spinelesion.errors import NotAScanError, ScanLoadError
    from spinelesion.io.checks import require_image, require_signal

    inputs = tmp_path / "in"
    inputs.mkdir()
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    _nifti(inputs / "scan.nii.gz", ct_volume((22, 20, 10)), affine)
    _nifti(inputs / "blank.nii.gz", np.full((22, 20, 10), -1000.0, np.float32), affine)
    result = run_batch(input_path=inputs, out_dir=tmp_path / "out", model=tiny_model, device="cpu", progress=False,
                       overlays=False)
    assert result.n_ok == 1 and result.n_failed == 1
    status = json.loads((tmp_path / "out" / "blank" / "status.json").read_text())
    assert status["status"] == "failed" and "every voxel holds the same value (-1000)" in status["error"], status
    assert not (tmp_path / "out" / "blank" / "labels.nii.gz").exists()
    for value in (0.0, 3.0, 0.25):  # non-negative integers too: blank, not a label map
        blank = Scan(array=np.full((30, 30, 30), value, np.float32), affine=np.eye(4), modality=None, source="t")
        require_image(blank)
        with pytest.raises(ScanLoadError) as info:
            require_signal(blank)
        assert not isinstance(info.value, NotAScanError)
    require_signal(Scan(array=ct_volume((16, 16, 8)), affine=np.eye(4), modality=None, source="t"))


def test_cli_infer_exit_codes(tmp_path, tiny_model):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _nifti(inputs / "a.nii.gz", ct_volume((24, 22, 12)), np.diag([1.0, 1.0, 2.0, 1.0]))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "spinelesion", "infer", str(inputs), "--out", str(tmp_path / "o"),
           "--model", str(tiny_model), "--device", "cpu", "--quiet", "--no-overlays"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "1 ok, 0 failed" in done.stdout
    (inputs / "b.nii.gz").write_bytes(b"garbage")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    missing = subprocess.run(cmd[:4] + [str(tmp_path / "nope")] + cmd[5:], capture_output=True, text=True,
                             env=env, timeout=300)
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr


def test_settings_file_reaches_the_network_and_the_measurements(tmp_path, tiny_model, capsys):
    import json

    from spinelesion.cli import main

    inputs = tmp_path / "in"
    inputs.mkdir()
    _nifti(inputs / "a.nii.gz", ct_volume((24, 22, 12)), np.diag([1.0, 1.0, 2.0, 1.0]))
    settings = tmp_path / "run.yaml"
    settings.write_text("inference: {overlap: 0.25, spine_margin_mm: null}\nmeasure: {min_lesion_mm3: 123}\n")
    args = ["infer", str(inputs), "--out", str(tmp_path / "out"), "--model", str(tiny_model), "--device", "cpu",
            "--quiet", "--no-overlays", "--settings", str(settings), "--tta"]
    assert main(args) == 0
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["inference_settings"] == {"overlap": 0.25, "sw_batch_size": 2, "tta": True, "amp": True,
                                         "spine_margin_mm": None, "padding": "replicate",
                                         "ct_lesion_min_typed_fraction": 0.5, "canal_fill_min_probability": 0.1,
                                         "canal_max_off_line_mm": 15.0,
                                         "ct_bone_reach_mm": 3.0, "snap_cord_to_image": True,
                                         "ct_lytic_min_core_mm3": 250.0, "ct_sclerotic_bodies": True,
                                         "t1_marrow_min_core_mm3": 250.0, "t1_lesion_min_dark_share": 0.1}
    record = json.loads((tmp_path / "out" / "a" / "measurements.json").read_text())
    assert record["settings"]["min_lesion_mm3"] == 123
    capsys.readouterr()
    rerun = [*args[:2], "--out", str(tmp_path / "profiled"), *args[4:], "--profile"]
    assert main(rerun) == 0
    printed = capsys.readouterr().out
    assert "profile (1 scan processed" in printed and "network" in printed and "measure" in printed
    settings.write_text("inference: {overlapp: 0.25}\n")
    assert main(args) == 2
    assert "overlapp" in capsys.readouterr().err
    settings.write_text("inference: {overlap: 1.5}\n")
    assert main(args) == 2
    assert "inference.overlap" in capsys.readouterr().err
    settings.write_text("inference: {padding: zeros}\n")
    assert main(args) == 2
    assert "inference.padding" in capsys.readouterr().err
    settings.write_text("inference: {ct_lesion_min_typed_fraction: 1.5}\n")
    assert main(args) == 2
    assert "inference.ct_lesion_min_typed_fraction" in capsys.readouterr().err


def test_padding_mode_reaches_the_sliding_window(tiny_model):
    """A slab thinner than the patch is padded as the settings say (replicate by default)."""
    from spinelesion.inference.predictor import Predictor
    from spinelesion.inference.settings import InferenceSettings
    from spinelesion.io.scan import Scan

    volume = ct_volume((24, 22, 12))[:, :, 4:7]
    scan = Scan(array=volume.astype(np.float32), affine=np.diag([1.0, 1.0, 2.0, 1.0]), modality="CT")
    results = {}
    for mode in ("replicate", "constant"):
        predictor = Predictor(model=tiny_model, device="cpu", keep_probabilities=True,
                              settings=InferenceSettings(padding=mode, spine_margin_mm=None))
        results[mode] = predictor.predict(scan).probabilities
    assert Predictor(model=tiny_model, device="cpu").settings.padding == "replicate"
    assert results["replicate"].shape == results["constant"].shape
    assert not np.allclose(results["replicate"], results["constant"])


def test_tta_spread_of_the_lesion_probability(tiny_model):
    """With TTA the predictor also gives the lesion probability's spread over the mirror passes."""
    import torch

    from spinelesion.inference.predictor import Predictor
    from spinelesion.inference.settings import InferenceSettings

    image = torch.rand((1, 20, 18, 16), generator=torch.Generator().manual_seed(0))
    plain = Predictor(model=tiny_model, device="cpu", settings=InferenceSettings(tta=False))
    net, meta = plain.network(plain.checkpoint_for("CT"))
    mean, spread = plain.sliding_window(net, image, patch_size=meta["patch_size"], with_spread=True)
    assert spread is None and mean.shape[1:] == image.shape[1:]
    tta = Predictor(model=tiny_model, device="cpu", settings=InferenceSettings(tta=True))
    mean, spread = tta.sliding_window(net, image, patch_size=meta["patch_size"], with_spread=True)
    assert spread.shape == image.shape[1:]
    assert float(spread.min()) >= 0.0 and float(spread.max()) <= 0.5 and float(spread.max()) > 0.0
    assert torch.allclose(mean, tta.sliding_window(net, image, patch_size=meta["patch_size"]))


def test_tta_mirrors_only_along_the_axes_the_model_was_trained_mirrored_along(tiny_model):
    """The default model was trained with left-right flips only: TTA shows it the image and its
    left-right mirror, never the column upside down or back to front."""
    import torch

    from spinelesion.inference.predictor import Predictor, checkpoint_meta, mirror_axes
    from spinelesion.inference.settings import InferenceSettings

    import spinelesion

    shipped = Path(spinelesion.__file__).parent / "models" / "spine_any.safetensors"
    assert mirror_axes(checkpoint_meta(shipped)) == (0,)
    assert mirror_axes({}) == (0,) and mirror_axes({"config": {"augment": {"flip_axes": [0, 2]}}}) == (0, 2)
    image = torch.rand((1, 20, 18, 16), generator=torch.Generator().manual_seed(1))
    plain = Predictor(model=tiny_model, device="cpu", settings=InferenceSettings(tta=False))
    net, meta = plain.network(plain.checkpoint_for("CT"))
    tta = Predictor(model=tiny_model, device="cpu", settings=InferenceSettings(tta=True))
    once = plain.sliding_window(net, image, patch_size=meta["patch_size"])
    mirrored = torch.flip(plain.sliding_window(net, torch.flip(image, (1,)), patch_size=meta["patch_size"]), (1,))
    expected = (once + mirrored) / 2
    assert torch.allclose(tta.sliding_window(net, image, patch_size=meta["patch_size"], mirror_axes=(0,)), expected,
                          atol=1e-6)


def test_shipped_settings_file_holds_every_default():
    import dataclasses

    from spinelesion.inference.settings import InferenceSettings, load_run_settings
    from spinelesion.measure.settings import MeasureSettings

    inference, measure = load_run_settings(REPO / "configs" / "infer.yaml")
    assert inference == InferenceSettings() and measure == MeasureSettings()
    text = (REPO / "configs" / "infer.yaml").read_text()
    for f in dataclasses.fields(MeasureSettings) + dataclasses.fields(InferenceSettings):
        assert f"  {f.name}:" in text, f.name


@pytest.mark.slow
def test_torchrun_shards_cases_across_two_processes(tmp_path, tiny_model):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(4):
        _nifti(inputs / f"s{i}.nii.gz", ct_volume((20, 20, 10), seed=i), np.diag([1.0, 1.0, 2.0, 1.0]))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(REPO / "scripts" / "infer.py"), str(inputs), "--out", str(out), "--model", str(tiny_model),
           "--device", "cpu", "--quiet", "--no-overlays"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["world_size"] == 2 and run["n_ok"] == 4
    with open(out / "summary.csv", newline="") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["ok"] * 4


def test_probabilities_are_saved_on_the_input_grid(tmp_path, tiny_model):
    inputs = tmp_path / "in"
    inputs.mkdir()
    affine = _oblique_lps_affine()
    _nifti(inputs / "p.nii.gz", ct_volume((26, 22, 12)), affine)
    run_batch(input_path=inputs, out_dir=tmp_path / "out", model=tiny_model, device="cpu", progress=False,
              overlays=False, save_probabilities=True)
    img = nib.load(str(tmp_path / "out" / "p" / "probabilities.nii.gz"))
    assert img.shape == (26, 22, 12, NUM_CLASSES)
    np.testing.assert_allclose(img.affine, affine, atol=1e-5)
    probs = np.asarray(img.dataobj, dtype=np.float32)  # nibabel applies scl_slope (1/255)
    labels = np.asarray(nib.load(str(tmp_path / "out" / "p" / "labels.nii.gz")).dataobj)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=0.05)  # every voxel, edges included
    # the saved labels are the argmax of the saved probabilities where 8-bit rounding cannot swap them
    top2 = np.sort(probs, axis=-1)[..., -2:]
    clear = top2[..., 1] - top2[..., 0] > 0.02
    assert clear.mean() > 0.3
    assert (probs.argmax(axis=-1)[clear] == labels[clear]).mean() > 0.99


def test_default_finish_workers_by_device_and_cores(monkeypatch):
    """Auto finishing threads: none on CPU; on a GPU one per 4 cores of this rank's share, 1..4."""
    from spinelesion.pipeline.batch import default_finish_workers

    assert default_finish_workers(device="cpu") == 0
    for cores, world, expected in ((16, 1, 4), (64, 1, 4), (8, 1, 2), (2, 1, 1), (16, 4, 1), (32, 2, 4)):
        monkeypatch.setattr("os.sched_getaffinity", lambda pid, n=cores: set(range(n)), raising=False)
        assert default_finish_workers(device="cuda", world_size=world) == expected, (cores, world)


def test_shipped_models_are_recognised_as_demonstration_models(tiny_model):
    from spinelesion.inference.predictor import is_demonstration_model, model_paths

    assert all(is_demonstration_model(p) for p in model_paths(None).values())
    assert not any(is_demonstration_model(p) for p in model_paths(tiny_model).values())


def test_cli_says_when_the_shipped_demonstration_models_segmented(tmp_path, capsys):
    """Without --model the shipped model runs: the CLI notes it on stderr and the report
    and run.json say so (a run with the user's checkpoint says nothing: test above)."""
    from spinelesion.cli import main

    inputs = tmp_path / "in"
    inputs.mkdir()
    _nifti(inputs / "ct.nii.gz", ct_volume((24, 22, 12)), np.diag([1.0, 1.1, 2.0, 1.0]))
    assert main(["infer", str(inputs), "--out", str(tmp_path / "out"), "--device", "cpu", "--quiet",
                 "--no-overlays"]) == 0
    assert "never shown a real tumour" in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "run.json").read_text())["demonstration_models"] is True
    assert 'id="demonstration-model"' in (tmp_path / "out" / "report.html").read_text()


def test_infer_names_levels_from_the_lowest_level(tmp_path, capsys):
    """`infer --lowest-level L5` names the vertebrae by counting up, as `measure` does; a bad name is a usage error."""
    from spinelesion.cli import main
    from spinelesion.data.phantoms import make_phantom
    from spinelesion.data.phantoms.dataset import write_image

    inputs = tmp_path / "in"
    ph = make_phantom(seed=3, modality="ct", healthy=True, shape_limit_vox=80)
    write_image(ph.scan, inputs / "ph.nii.gz")
    assert main(["infer", str(inputs), "--out", str(tmp_path / "out"), "--device", "cpu", "--quiet",
                 "--no-overlays", "--lowest-level", "L5"]) == 0
    record = json.loads((tmp_path / "out" / "ph" / "measurements.json").read_text())
    levels = [v["level"] for v in record["vertebrae"]]
    assert len(levels) >= 3 and levels[:3] == ["L5", "L4", "L3"]
    capsys.readouterr()
    assert main(["infer", str(inputs), "--out", str(tmp_path / "out2"), "--lowest-level", "L9"]) == 2
    assert "is not a level" in capsys.readouterr().err
