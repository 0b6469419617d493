"""Training: loss masking, checkpoints, preprocessing geometry, CLI end to end, resume, bad inputs, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from spinelesion.cli import main
from spinelesion.errors import CheckpointError
from spinelesion.labels import LESION, NUM_CLASSES

REPO = Path(__file__).resolve().parents[1]


# --- tiny MSD-layout dataset ----------------------------------------------------------------

def make_msd(root: Path, *, n: int = 4, shape=(24, 24, 24), spacing_mm: float = 2.0, seed: int = 0) -> Path:
    """n CT-like cases (last one in "validation"): a column of body/posterior/cord/disc and a lesion."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(seed)
    affine = np.diag([spacing_mm] * 3 + [1.0])
    x, y, z = np.indices(shape)
    cx, cy = shape[0] // 2, shape[1] // 2
    entries = []
    for i in range(n):
        lab = np.zeros(shape, np.uint8)
        lab[(abs(x - cx) < 5) & (abs(y - cy + 3) < 4)] = 1
        lab[(abs(x - cx) < 5) & (abs(y - cy - 4) < 2)] = 2
        lab[(abs(x - cx) < 2) & (abs(y - cy - 1) < 2)] = 4
        lab[(z % 8 == 0) & (lab == 1)] = 6
        c = rng.integers(5, shape[2] - 5)
        lab[((x - cx) ** 2 + (y - cy + 3) ** 2 + (z - c) ** 2) < 7] = LESION
        hu = np.array([40, 400, 600, 100, 30, 10, 80], np.float32)[lab] + rng.normal(0, 20, shape)
        name = f"case{i:02d}.nii.gz"
        nib.save(nib.Nifti1Image(hu.astype(np.float32), affine), root / "imagesTr" / name)
        nib.save(nib.Nifti1Image(lab, affine), root / "labelsTr" / name)
        entries.append({"image": f"imagesTr/{name}", "label": f"labelsTr/{name}"})
    (root / "dataset.json").write_text(json.dumps(
        {"modality": {"0": "CT"}, "training": entries[:-1], "validation": entries[-1:]}))
    return root


def tiny_config(tmp_path: Path, data: Path, out: Path, **train) -> Path:
    raw = {
        "output_dir": str(out),
        "data": {"sources": [{"adapter": "msd", "root": str(data)}]},
        "preprocessing": {"modality": "CT", "spacing_mm": [2.0, 2.0, 2.0],
                          "intensity": {"kind": "ct_window", "min_hu": -200, "max_hu": 1000}},
        "patch_size": [16, 16, 16],
        "network": {"name": "unet", "params": {"channels": [4, 8, 16], "strides": [2, 2]}},
        "train": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "tensorboard": False, **train},
        "validation": {"interval": 1},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def data(tmp_path):
    return make_msd(tmp_path / "data")


# --- loss ------------------------------------------------------------------------------------

def _loss(**kw):
    from spinelesion.training.losses import MaskedDiceCELoss

    return MaskedDiceCELoss(num_classes=NUM_CLASSES, **kw)


def test_unannotated_class_is_not_pushed_to_background():
    torch.manual_seed(0)
    logits = torch.randn(2, NUM_CLASSES, 6, 6, 6, requires_grad=True)
    target = torch.zeros(2, 1, 6, 6, 6, dtype=torch.long)
    target[:, :, :3] = 1
    no_lesion = torch.ones(2, NUM_CLASSES, dtype=torch.bool)
    no_lesion[:, LESION] = False

    _loss()(logits, target, no_lesion).backward()
    masked_grad = logits.grad[:, LESION].clone()
    logits.grad = None
    _loss()(logits, target, None).backward()
    plain_grad = logits.grad[:, LESION]
    background = target[:, 0] == 0
    # plain loss: gradient descent lowers the lesion logit on background voxels (grad > 0)
    assert (plain_grad[background] > 0).all()
    # masked: never lowers it (grad <= 0: lesion shares background's probability mass)
    assert (masked_grad[background] <= 1e-7).all()


def test_moving_mass_between_background_and_unannotated_class_costs_nothing():
    torch.manual_seed(1)
    logits = torch.randn(1, NUM_CLASSES, 5, 5, 5)
    target = torch.randint(0, 3, (1, 1, 5, 5, 5))
    annotated = torch.ones(1, NUM_CLASSES, dtype=torch.bool)
    annotated[0, [LESION, 5]] = False
    moved = logits.clone()
    total = torch.logsumexp(logits[:, [0, LESION, 5]], dim=1)
    moved[:, 0] = total - np.log(10.0)               # background now holds 1/10 of the set's mass,
    moved[:, LESION] = total + np.log(0.6)           # lesion 6/10 and thecal sac 3/10
    moved[:, 5] = total + np.log(0.3)
    loss = _loss()
    assert loss(moved, target, annotated) == pytest.approx(float(loss(logits, target, annotated)), rel=1e-5)
    assert abs(float(loss(moved, target, None)) - float(loss(logits, target, None))) > 1e-3


def test_fully_annotated_ce_matches_torch_weighted_ce():
    torch.manual_seed(2)
    logits = torch.randn(2, NUM_CLASSES, 4, 4, 4)
    target = torch.randint(0, NUM_CLASSES, (2, 1, 4, 4, 4))
    weights = [0.5, 1, 1, 3, 1, 2, 1]
    ours = _loss(class_weights=weights, dice_weight=0.0)(logits, target, None)
    reference = torch.nn.functional.cross_entropy(logits, target[:, 0], weight=torch.tensor(weights))
    assert float(ours) == pytest.approx(float(reference), rel=1e-5)


# --- networks and checkpoints ----------------------------------------------------------------

@pytest.mark.parametrize("name, params", [
    ("unet", {"channels": [4, 8], "strides": [2]}),
    ("dynunet", {"kernel_size": [3, 3, 3], "strides": [1, 2, 2], "upsample_kernel_size": [2, 2],
                 "filters": [4, 8, 16]}),
    ("segresnet", {"init_filters": 8, "blocks_down": [1, 1], "blocks_up": [1]}),
])
def test_network_factory(name, params):
    from spinelesion.network.factory import build_network, check_network

    check_network(name=name, params=params, patch_size=(16, 16, 16))
    out = build_network(name=name, params=params)(torch.zeros(1, 1, 16, 16, 16))
    assert out.shape == (1, NUM_CLASSES, 16, 16, 16)


def test_network_parameters_are_checked_at_config_time():
    from spinelesion.errors import ConfigError
    from spinelesion.network.factory import check_network

    with pytest.raises(ConfigError, match="DynUNet"):
        check_network(name="dynunet", params={"kernel_size": [3, 3], "strides": [1, 2],
                                              "upsample_kernel_size": [2]}, patch_size=(16, 16, 16))
    with pytest.raises(ConfigError, match="network.params.in_channels"):
        check_network(name="unet", params={"channels": [4, 8], "strides": [2], "in_channels": 2},
                      patch_size=(16, 16, 16))


class _Evil:
    def __reduce__(self):
        return (os.mkdir, (str(Path(os.environ["SPINELESION_EVIL_DIR"]) / "pwned"),))


def test_checkpoint_round_trip_and_loading_runs_no_code(tmp_path, monkeypatch):
    from safetensors import safe_open

    from spinelesion.network.checkpoint import build_from_checkpoint, load_checkpoint, load_resume, save_checkpoint
    from spinelesion.network.factory import build_network

    params = {"channels": [4, 8], "strides": [2]}
    net = build_network(name="unet", params=params)
    meta = {"label_names": {"0": "background", "3": "lesion"}, "network": {"name": "unet", "params": params},
            "preprocessing": {"orientation": "RAS", "spacing_mm": [2.0, 2.0, 2.0], "modality": "CT",
                              "intensity": {"kind": "ct_window", "min_hu": -200.0, "max_hu": 1000.0}},
            "patch_size": [16, 16, 16], "epoch": 3, "metrics": {"mean_dice": 0.5}}
    path = save_checkpoint(tmp_path / "m.safetensors", state_dict=net.state_dict(), meta=meta)
    with safe_open(str(path), framework="pt") as f:  # really a safetensors file
        assert json.loads(f.metadata()["spinelesion"])["epoch"] == 3
    state, loaded = load_checkpoint(path)
    assert loaded["schema_version"] == 1 and loaded["label_names"] == {0: "background", 3: "lesion"}
    assert loaded["preprocessing"] == meta["preprocessing"] and loaded["metrics"] == meta["metrics"]
    for key, value in net.state_dict().items():
        assert torch.equal(state[key], value)
    model, _ = build_from_checkpoint(path, device="cpu")
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), net.eval()(x))
    assert list(tmp_path.glob(".*tmp*")) == []  # atomic write left nothing behind

    # a pickle that would run code: neither loader executes it
    monkeypatch.setenv("SPINELESION_EVIL_DIR", str(tmp_path))
    torch.save({"x": _Evil()}, tmp_path / "evil.safetensors")
    torch.save({"x": _Evil()}, tmp_path / "resume.pt")
    with pytest.raises(CheckpointError, match="evil.safetensors"):
        load_checkpoint(tmp_path / "evil.safetensors")
    with pytest.raises(CheckpointError, match="resume.pt"):
        load_resume(tmp_path / "resume.pt")
    assert not (tmp_path / "pwned").exists()


# --- preprocessing geometry ------------------------------------------------------------------

PREP = {"orientation": "RAS", "spacing_mm": [2.0, 2.0, 2.0], "modality": "CT",
        "intensity": {"kind": "ct_window", "min_hu": 0.0, "max_hu": 1000.0}}


def _rotation(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


@pytest.mark.parametrize("axes", ["LPS", "PSR", "oblique"])
def test_preprocess_keeps_world_positions(axes):
    from spinelesion.io.scan import Scan
    from spinelesion.network.transforms import preprocess

    linear = {"LPS": np.diag([-1.0, -1.0, 1.0]) * 1.5,
              "PSR": np.array([[0, 0, 1.2], [-1.0, 0, 0], [0, -1.0, 0]]),
              "oblique": _rotation(20) @ np.diag([1.0, 1.5, 2.5])}[axes]
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = linear, [10.0, -20.0, 5.0]
    array = np.zeros((40, 36, 30), np.float32)
    array[22:27, 10:14, 18:21] = 1000.0  # an off-centre block
    scan = Scan(array=array, affine=affine, modality="CT")
    image, out_affine = preprocess(scan, preprocessing=PREP)
    assert image.dtype == torch.float32 and image.shape[0] == 1
    assert "".join(nib.aff2axcodes(out_affine)) == "RAS"
    assert np.allclose(np.linalg.norm(out_affine[:3, :3], axis=0), 2.0)
    assert float(image.max()) <= 1.0 and float(image.min()) >= 0.0

    def world_centroid(values, aff):
        idx = np.argwhere(values > 0.5 * values.max()).mean(axis=0)
        return aff[:3, :3] @ idx + aff[:3, 3]

    gap_mm = np.linalg.norm(world_centroid(image[0].numpy(), out_affine) - world_centroid(array, affine))
    assert gap_mm < 1.0


def test_preprocess_matches_the_validation_chain(data):
    from spinelesion.data.adapters import get_adapter, load_case
    from spinelesion.network.transforms import case_item, preprocess, val_transforms

    case = get_adapter("msd").find_cases(data)[0]
    item = val_transforms(preprocessing=PREP)(case_item(case))
    scan, _, _ = load_case(case)
    image, _ = preprocess(scan, preprocessing=PREP)
    assert torch.equal(image, item["image"].float())


# --- end to end through the CLI --------------------------------------------------------------

def _run_cli(args, capsys):
    code = main(["train", *args])
    return code, capsys.readouterr()


@pytest.mark.slow
def test_train_cli_writes_checkpoints_and_resume_matches_unbroken_run(tmp_path, data, capsys, monkeypatch):
    import spinelesion.network.checkpoint as checkpoint
    from spinelesion.network.checkpoint import build_from_checkpoint, load_checkpoint

    # interrupt the first run right after epoch 1 has been saved (as Ctrl-C would)
    original = checkpoint.save_resume

    def save_then_interrupt(path, state):
        original(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_resume", save_then_interrupt)
    config = tiny_config(tmp_path, data, tmp_path / "run", epochs=2)
    code, _ = _run_cli(["--config", str(config)], capsys)
    assert code == 130
    monkeypatch.setattr(checkpoint, "save_resume", original)
    out = tmp_path / "run"
    for name in ("best.safetensors", "last.safetensors", "resume.pt", "metrics.csv", "config.yaml"):
        assert (out / name).is_file(), name
    _, meta = load_checkpoint(out / "last.safetensors")
    assert meta["epoch"] == 1 and meta["patch_size"] == [16, 16, 16]
    assert meta["preprocessing"]["intensity"]["kind"] == "ct_window"
    assert meta["config"]["network"]["name"] == "unet" and meta["label_names"][LESION] == "lesion"
    assert set(meta["metrics"]) >= {"dice_lesion", "mean_dice", "lesion_sensitivity", "lesion_fp_per_scan"}
    assert meta["training"]["command"].startswith("spinelesion train")
    build_from_checkpoint(out / "best.safetensors", device="cpu")

    # a second start without --resume refuses to overwrite the run
    code, captured = _run_cli(["--config", str(config)], capsys)
    assert code == 2 and "--resume" in captured.err

    code, _ = _run_cli(["--config", str(config), "--resume"], capsys)
    assert code == 0
    rows = (out / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    resumed, meta = load_checkpoint(out / "last.safetensors")
    assert meta["epoch"] == 2

    # the same two epochs without the interruption give the same weights
    code, _ = _run_cli(["--config", str(config), "--output", str(tmp_path / "unbroken")], capsys)
    assert code == 0
    unbroken, _ = load_checkpoint(tmp_path / "unbroken" / "last.safetensors")
    for key in unbroken:
        assert torch.allclose(resumed[key], unbroken[key], atol=1e-5), key


def test_init_from_starts_from_a_checkpoint_and_checks_the_network(tmp_path, data, capsys):
    from spinelesion.network.checkpoint import load_checkpoint

    code, _ = _run_cli(["--config", str(tiny_config(tmp_path, data, tmp_path / "first"))], capsys)
    assert code == 0
    first, _ = load_checkpoint(tmp_path / "first" / "last.safetensors")
    still = ["--set", "optim.lr=1e-12", "--set", "optim.weight_decay=0"]   # a step that moves nothing
    config = tiny_config(tmp_path, data, tmp_path / "tuned", init_from=str(tmp_path / "first" / "last.safetensors"))
    code, _ = _run_cli(["--config", str(config), *still], capsys)
    assert code == 0
    tuned, meta = load_checkpoint(tmp_path / "tuned" / "last.safetensors")
    assert all(torch.allclose(tuned[k], first[k], atol=1e-6) for k in first)
    assert meta["config"]["train"]["init_from"].endswith("last.safetensors")
    config = tiny_config(tmp_path, data, tmp_path / "fresh")
    code, _ = _run_cli(["--config", str(config), *still], capsys)
    fresh, _ = load_checkpoint(tmp_path / "fresh" / "last.safetensors")
    assert not all(torch.allclose(fresh[k], first[k], atol=1e-6) for k in first)

    other = tiny_config(tmp_path, data, tmp_path / "other", init_from=str(tmp_path / "first" / "last.safetensors"))
    code, captured = _run_cli(["--config", str(other), "--set", "network.params.channels=[4,8,8]"], capsys)
    assert code == 2 and "train.init_from" in captured.err and "Traceback" not in captured.err


def _label(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(path)
    return np.asarray(img.dataobj), img.affine


@pytest.mark.parametrize("problem", ["missing_image", "label_value", "grid_shape", "grid_affine", "typo"])
def test_bad_inputs_fail_before_training_naming_the_file(tmp_path, data, capsys, problem):
    label_path = data / "labelsTr" / "case01.nii.gz"
    labels, affine = _label(label_path)
    extra = []
    if problem == "missing_image":
        (data / "imagesTr" / "case00.nii.gz").unlink()
        named = "case00.nii.gz"
    elif problem == "label_value":
        labels = labels.copy()
        labels[0, 0, 0] = 9
        nib.save(nib.Nifti1Image(labels, affine), label_path)
        named = "case01.nii.gz"
    elif problem == "grid_shape":
        nib.save(nib.Nifti1Image(labels[:20], affine), label_path)
        named = "case01.nii.gz"
    elif problem == "grid_affine":
        shifted = affine.copy()
        shifted[0, 3] += 3.0
        nib.save(nib.Nifti1Image(labels, shifted), label_path)
        named = "case01.nii.gz"
    else:
        extra, named = ["--set", "optim.learning_rate=0.1"], "optim.learning_rate"
    config = tiny_config(tmp_path, data, tmp_path / "run")
    code, captured = _run_cli(["--config", str(config), *extra], capsys)
    assert code == 2
    assert named in captured.err and "Traceback" not in captured.err
    assert not (tmp_path / "run" / "last.safetensors").exists()


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path, data):
    config = tiny_config(tmp_path, data, tmp_path / "ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(REPO / "scripts" / "train.py"), "--config", str(config), "--device", "cpu"],
        capture_output=True, text=True, timeout=170, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "x2" in result.stdout  # "training on cpu x2"
    rows = (tmp_path / "ddp" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("1,")
    assert (tmp_path / "ddp" / "best.safetensors").is_file()
