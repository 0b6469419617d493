"""Config loading: typed views, unknown keys, wrong types, ranges, --set overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from spinelesion.training.config import Config, apply_override, config_from_dict, load_config
from spinelesion.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

MINIMAL = {
    "output_dir": "runs/x",
    "data": {"sources": [{"adapter": "msd", "root": "runs/phantoms"}]},
    "preprocessing": {"modality": "CT", "spacing_mm": [2.0, 2.0, 2.0],
                      "intensity": {"kind": "ct_window", "min_hu": -200, "max_hu": 1000}},
    "patch_size": [32, 32, 32],
    "network": {"name": "unet", "params": {"channels": [4, 8, 16], "strides": [2, 2]}},
    "train": {"epochs": 2},
}


def write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("name", ["phantom_ct.yaml", "phantom_mr.yaml"])
def test_shipped_configs_load(name):
    config = load_config(REPO / "configs" / name)
    assert isinstance(config, Config)
    assert config.preprocessing.modality == ("CT" if "ct" in name else "MR")
    assert config.to_dict()["patch_size"] == list(config.patch_size)
    # the round trip through the plain dict (what a checkpoint stores) gives the same config
    assert config_from_dict(config.to_dict()) == config


def test_minimal_config_fills_defaults(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.optim.lr == pytest.approx(1e-3)
    assert config.sampling.samples_per_volume == 2
    assert config.preprocessing.as_meta() == {
        "orientation": "RAS", "spacing_mm": [2.0, 2.0, 2.0], "modality": "CT",
        "intensity": {"kind": "ct_window", "min_hu": -200.0, "max_hu": 1000.0}}


@pytest.mark.parametrize("section, key, named", [
    (None, "ouput_dir", "ouput_dir"),
    ("optim", "lrr", "optim.lrr"),
    ("train", "epoch", "train.epoch"),
])
def test_unknown_key_is_named(tmp_path, section, key, named):
    raw = yaml.safe_load(yaml.safe_dump(MINIMAL))
    (raw if section is None else raw.setdefault(section, {}))[key] = 1
    with pytest.raises(ConfigError, match=rf"'{named}'"):
        load_config(write(tmp_path, raw))


def test_typo_suggests_the_right_key(tmp_path):
    raw = {**MINIMAL, "optim": {"lrr": 0.1}}
    with pytest.raises(ConfigError, match=r"did you mean 'optim.lr'"):
        load_config(write(tmp_path, raw))


@pytest.mark.parametrize("override, named", [
    ("optim.lr=fast", "optim.lr"),
    ("train.epochs=2.5", "train.epochs"),
    ("train.amp=yes please", "train.amp"),
    ("patch_size=[32, 32]", "patch_size"),
    ("preprocessing.modality=PET", "preprocessing.modality"),
    ("optim.lr=-1", "optim.lr"),
    ("data.val_fraction=1.5", "data.val_fraction"),
    ("sampling.class_ratios=[1, 1]", "sampling.class_ratios"),
    ("data.sources.0.adapter=kaggle", "data.sources.0.adapter"),
    ("preprocessing.intensity.kind=mr_percentile", "preprocessing.intensity"),
    ("network.params.chanels=[4, 8]", "network.params.chanels"),
    ("patch_size=[30, 32, 32]", "patch_size"),
])
def test_wrong_type_or_range_is_named(tmp_path, override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(write(tmp_path, MINIMAL), overrides=[override])


def test_set_overrides_nested_and_list_items(tmp_path):
    config = load_config(write(tmp_path, MINIMAL), overrides=[
        "data.sources.0.root=elsewhere/phantoms", "optim.lr=3e-4", "train.amp=false",
        "patch_size=[16, 16, 16]", "loss.class_weights=[1, 1, 1, 2, 1, 1, 1]",
        "train.steps_per_epoch=5"])
    assert config.data.sources[0].root == "elsewhere/phantoms"
    assert config.optim.lr == pytest.approx(3e-4)  # "3e-4" is a YAML string; floats accept it
    assert config.train.amp is False
    assert config.patch_size == (16, 16, 16)
    assert config.loss.class_weights == (1, 1, 1, 2, 1, 1, 1)
    assert config.train.steps_per_epoch == 5


@pytest.mark.parametrize("item", ["no_equals_sign", "data.sources.5.root=x", "output_dir.sub=1"])
def test_bad_override_is_an_error(item):
    raw = yaml.safe_load(yaml.safe_dump(MINIMAL))
    with pytest.raises(ConfigError, match="--set"):
        apply_override(raw, item)


def test_missing_required_key_is_named(tmp_path):
    raw = {k: v for k, v in MINIMAL.items() if k != "patch_size"}
    with pytest.raises(ConfigError, match="missing config key 'patch_size'"):
        load_config(write(tmp_path, raw))


def test_missing_file_and_bad_yaml_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)


def test_config_is_read_only(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    with pytest.raises(Exception):
        config.optim.lr = 1.0  # type: ignore[misc]
