"""Images synthesised from tissue maps (spinelesion.synthesis) and the context phantoms they come from."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from spinelesion.synthesis.appearance import synthesize
from spinelesion.synthesis.settings import AppearanceSettings
from spinelesion.synthesis.appearance import _acquire, _paint_clutter, draw_appearance, render
from spinelesion.synthesis.tissues import ID, N_TISSUES

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "synth_spine.yaml"


def _tissue_block(shape=(24, 24, 24)) -> torch.Tensor:
    """(1, X, Y, Z) tissue map: soft tissue with a marrow cube in a cortex shell and a CSF tube."""
    t = torch.full(shape, ID["soft"], dtype=torch.long)
    t[6:18, 6:18, 4:20] = ID["cortex"]
    t[7:17, 7:17, 5:19] = ID["marrow"]
    t[10:14, 19:23, :] = ID["csf"]
    return t[None]


def test_same_seed_same_image_and_range():
    tissue = _tissue_block()[None]
    a = synthesize(tissue, generator=torch.Generator().manual_seed(4), spacing_mm=(1.5,) * 3)
    b = synthesize(tissue, generator=torch.Generator().manual_seed(4), spacing_mm=(1.5,) * 3)
    c = synthesize(tissue, generator=torch.Generator().manual_seed(5), spacing_mm=(1.5,) * 3)
    assert a.shape == tissue.shape and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_ct_family_orders_tissues_by_hounsfield():
    """A CT appearance without blur or noise keeps bone brighter than marrow brighter than CSF."""
    settings = AppearanceSettings(families={"ct": 1.0}, slice_prob=0.0, in_plane_mm=(0.3, 0.3), noise_max=0.0,
                                  bias_max=0.0, gamma_sd=0.0, ghost_prob=0.0, clip_prob=0.0, texture_max=0.0)
    tissue = _tissue_block()
    appearance = draw_appearance(torch.Generator().manual_seed(0), settings=settings)
    appearance["spreads"] = [0.0] * N_TISSUES
    image = render(tissue, appearance=appearance, spacing_mm=(1.5,) * 3)[0]
    t = tissue[0]
    cortex, marrow, csf = (float(image[t == ID[n]].mean()) for n in ("cortex", "marrow", "csf"))
    assert cortex > marrow > csf


def test_random_family_draws_every_order():
    """The 'random' family is contrast-agnostic: marrow is brighter than CSF in some cases, darker in others."""
    g = torch.Generator().manual_seed(1)
    settings = AppearanceSettings(families={"random": 1.0})
    brighter = [draw_appearance(g, settings=settings)["means"] for _ in range(40)]
    order = [m[ID["marrow"]] > m[ID["csf"]] for m in brighter]
    assert 5 < sum(order) < 35


def test_thick_slices_blur_only_their_axis():
    """A 6 mm slice axis smears an edge along that axis; the fine axes keep it sharp."""
    image = torch.zeros((32, 32, 32))
    image[:, :, 16:] = 1.0
    image[:, 16:, :] = image[:, 16:, :] + 1.0
    out = _acquire(image, resolution_mm=[0.5, 0.5, 6.0], spacing_mm=[1.0] * 3, slice_axis=2, thick=True)
    along_z = out[8, 8, 12:20]
    along_y = out[8, 12:20, 8]
    assert float(along_z.diff().abs().max()) < 0.5          # the z edge is spread over several voxels
    assert float(along_y.diff().abs().max()) > 0.9          # the y edge stays a step


def test_clutter_paints_soft_tissue_only_and_is_off_by_default():
    """Clutter blobs take part of the soft tissue, in several intensities; bone and CSF keep theirs."""
    plain = AppearanceSettings(families={"random": 1.0}, slice_prob=0.0, in_plane_mm=(0.3, 0.3), noise_max=0.0,
                               bias_max=0.0, gamma_sd=0.0, ghost_prob=0.0, clip_prob=0.0, texture_max=0.0)
    assert draw_appearance(torch.Generator().manual_seed(3), settings=plain)["clutter"] is None
    cluttered = dataclasses.replace(plain, clutter_prob=1.0, clutter_mm=(6.0, 6.0))
    a = draw_appearance(torch.Generator().manual_seed(3), settings=plain)
    b = draw_appearance(torch.Generator().manual_seed(3), settings=cluttered)
    assert {k: v for k, v in b.items() if k != "clutter"} == {k: v for k, v in a.items() if k != "clutter"}
    b["spreads"] = a["spreads"] = [0.0] * N_TISSUES
    b["clutter"]["fraction"] = 0.5
    tissue = _tissue_block((40, 40, 40))
    idx = tissue[0]
    mean_image = torch.tensor(a["means"], dtype=torch.float32)[idx]
    painted = _paint_clutter(mean_image, idx, clutter=b["clutter"], scale=b["scale"], spacing_mm=(1.5,) * 3,
                             generator=torch.Generator().manual_seed(0))
    soft = idx == ID["soft"]
    changed = painted != mean_image
    assert not bool(changed[~soft].any())                      # cortex, marrow, CSF untouched
    assert 0.3 < float(changed[soft].float().mean()) < 0.7     # about the drawn fraction of the soft tissue
    assert len(torch.unique(painted[changed])) >= 3            # blobs of several intensities
    image = render(tissue, appearance=b, spacing_mm=(1.5,) * 3)
    assert image.shape == tissue.shape and float(image.min()) >= 0.0 and float(image.max()) <= 1.0


def test_settings_refuse_unknown_family():
    with pytest.raises(ValueError, match="families"):
        AppearanceSettings(families={"pet": 1.0})


def test_context_phantom_has_unlabelled_bone_and_keeps_old_phantoms():
    """Context phantoms hold bone with label 0 (ribs, pelvis) and a tissue map; default phantoms are unchanged."""
    from spinelesion.data.phantoms import make_phantom

    old = make_phantom(seed=3, modality="ct", shape_limit_vox=64)
    again = make_phantom(seed=3, modality="ct", shape_limit_vox=64)
    assert np.array_equal(old.labels, again.labels) and "context" not in old.params
    ph = make_phantom(seed=11, modality="ct", context=True, shape_limit_vox=96, orientation="RAS", oblique=False)
    assert ph.tissue.shape == ph.labels.shape
    bone = np.isin(ph.tissue, [ID["cortex"], ID["marrow"]])
    assert np.count_nonzero(bone & (ph.labels == 0)) > 200       # ribs or pelvis: bone that is not vertebra
    assert np.all(ph.labels[ph.tissue == ID["metal"]] == 0)
    vertebral = np.isin(ph.labels, [1, 2])
    assert np.all(np.isin(ph.tissue[vertebral], [ID[n] for n in ("cortex", "marrow", "haemangioma", "bone_island",
                                                                    "modic", "nucleus")]))



def test_training_on_tissue_maps_gives_one_model_for_ct_and_mr(tmp_path):
    """`train` with synthesis on a context dataset: checkpoint for any modality, usable on CT and MR scans."""
    import yaml

    from spinelesion.network.checkpoint import load_checkpoint
    from spinelesion.cli import main
    from spinelesion.data.phantoms import make_phantom, write_dataset
    from spinelesion.inference.predictor import Predictor

    write_dataset(tmp_path / "tissue", n=3, modality="ct", seed=2, progress=False, shape_limit_vox=40, context=True)
    raw = {"output_dir": str(tmp_path / "run"),
           "data": {"sources": [{"adapter": "tissue", "root": str(tmp_path / "tissue")}]},
           "preprocessing": {"modality": "any", "spacing_mm": [3.0, 3.0, 3.0],
                             "intensity": {"kind": "percentile", "lower": 0.5, "upper": 99.5}},
           "patch_size": [16, 16, 16], "synthesis": {"enabled": True, "slab_prob": 0.5},
           "network": {"name": "unet", "params": {"channels": [4, 8, 16], "strides": [2, 2]}},
           "train": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 1, "tensorboard": False}}
    config = tmp_path / "synth.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["train", "--config", str(config), "--device", "cpu"]) == 0
    _, meta = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert meta["preprocessing"]["modality"] == "any"
    assert meta["config"]["synthesis"]["enabled"] is True
    predictor = Predictor(model=tmp_path / "run", device="cpu")
    for modality in ("ct", "t2"):
        ph = make_phantom(seed=1, modality=modality, shape_limit_vox=40)
        assert predictor.predict(ph.scan).labels.shape == ph.scan.shape


def test_config_ties_tissue_sources_to_synthesis(tmp_path):
    from spinelesion.training.config import load_config
    from spinelesion.errors import ConfigError

    with pytest.raises(ConfigError, match="synthesis.enabled"):
        load_config(CONFIG, overrides=["synthesis.enabled=false"])
    with pytest.raises(ConfigError, match="adapter 'tissue'"):
        load_config(CONFIG, overrides=["data.sources=[{adapter: msd, root: x}]"])
    with pytest.raises(ConfigError, match="families"):
        load_config(CONFIG, overrides=["synthesis.families={pet: 1.0}"])
    with pytest.raises(ConfigError, match="slab_prob"):
        load_config(CONFIG, overrides=["synthesis.slab_prob=1.5"])
    assert load_config(CONFIG).synthesis.enabled


def test_label_map_folders_become_labels_and_tissue(tmp_path):
    """A folder of label maps + description: schema labels, annotated classes, tissue with context."""
    import json

    import nibabel as nib

    from spinelesion.data.adapters import get_adapter, load_case
    from spinelesion.errors import DatasetError

    raw = np.zeros((20, 20, 20), np.uint8)
    raw[5:15, 5:15, 2:18] = 1          # vertebral body
    raw[8:11, 16:19, :] = 2            # cord
    raw[0:4, :, :] = 3                 # lung (context)
    folder = tmp_path / "maps"
    folder.mkdir()
    nib.save(nib.Nifti1Image(raw, np.diag([1.5, 1.5, 1.5, 1.0])), folder / "case_a.nii.gz")
    desc = tmp_path / "desc.json"
    desc.write_text(json.dumps({"values": {"1": "vertebral_body", "2": "spinal_cord", "3": "lung"}}))
    adapter = get_adapter("labelmaps")
    (case,) = adapter.find_cases(folder, description=desc)
    assert case.annotated_classes == (0, 1, 3, 4)          # lesion too: healthy maps, inserted lesions only
    scan, labels, annotated = load_case(case)
    assert labels[6, 6, 6] == 1 and labels[9, 17, 5] == 4 and labels[1, 1, 1] == 0
    tissue = adapter.to_tissue(scan.array, labels=labels, case=case, spacing_mm=scan.spacing_mm)
    assert tissue[1, 1, 1] == ID["lung"] and tissue[9, 17, 5] == ID["cord"]
    assert tissue[9, 9, 9] == ID["marrow"] and tissue[5, 9, 9] == ID["cortex"]
    desc.write_text(json.dumps({"values": {"1": "tumour"}}))
    with pytest.raises(DatasetError, match="unknown structure 'tumour'"):
        adapter.find_cases(folder, description=desc)
    with pytest.raises(DatasetError, match="description not found"):
        adapter.find_cases(folder)


def test_inserted_lesions_replace_bone_only():
    from spinelesion.synthesis.lesions import RandInsertLesiond

    tissue = torch.full((1, 24, 24, 24), float(ID["soft"]))
    label = torch.zeros((1, 24, 24, 24))
    tissue[0, 6:18, 6:18, 6:18] = ID["marrow"]
    label[0, 6:18, 6:18, 6:18] = 1
    insert = RandInsertLesiond(keys=("image", "label"), prob=1.0, radius_vox=(3.0, 5.0))
    insert.set_random_state(0)
    out = insert({"image": tissue, "label": label})
    lesion = out["label"][0] == 3
    assert lesion.sum() > 20
    assert torch.all(label[0][lesion] == 1)                     # only where bone was
    assert torch.all(torch.isin(out["image"][0][lesion], torch.tensor([float(ID["lytic"]), float(ID["blastic"])])))
    assert torch.equal(out["label"][0][~lesion], label[0][~lesion])


def test_monai_transform_is_seeded():
    from spinelesion.synthesis.transform import SynthesizeImaged

    tissue = _tissue_block().float()
    a = SynthesizeImaged(keys=("image",), spacing_mm=(1.5,) * 3).set_random_state(7)({"image": tissue})["image"]
    b = SynthesizeImaged(keys=("image",), spacing_mm=(1.5,) * 3).set_random_state(7)({"image": tissue})["image"]
    assert a.shape == tissue.shape and torch.equal(a, b)


def test_random_family_keeps_lesions_visible():
    from spinelesion.synthesis.appearance import MIN_LESION_CONTRAST

    g = torch.Generator().manual_seed(2)
    settings = AppearanceSettings(families={"random": 1.0})
    for _ in range(200):
        means = draw_appearance(g, settings=settings)["means"]
        for name in ("lytic", "blastic"):
            assert abs(means[ID[name]] - means[ID["marrow"]]) >= MIN_LESION_CONTRAST - 1e-9


def test_the_cord_ends_at_the_conus():
    from types import SimpleNamespace

    from spinelesion.data.phantoms.context import conus_s

    line = SimpleNamespace(vertebra_s=np.array([0.0, 30.0, 60.0]))
    column = lambda *levels: {"vertebrae": [{"level": lv, "height_mm": 25.0} for lv in levels]}  # noqa: E731
    assert conus_s(line, column("L2", "L1", "T12"), {"conus_offset_mm": 0.0}) == 30.0 - 12.5   # the L1/L2 disc
    assert conus_s(line, column("L2", "L1", "T12"), {"conus_offset_mm": -5.0}) == 12.5
    assert conus_s(line, column("L5", "L4", "L3"), {"conus_offset_mm": 0.0}) == float("inf")  # no cord at all
    assert conus_s(line, column("C7", "C6", "C5"), {"conus_offset_mm": 0.0}) is None


def test_marrow_variation_and_cortex_gaps_touch_bone_only_and_are_off_by_default():
    """Marrow variation scales marrow and lesion together (the lesion keeps its contrast), cortex gaps
    give part of the cortex the marrow's value; soft tissue and CSF are untouched; both off by default."""
    from spinelesion.synthesis.appearance import _thin_cortex, _vary_marrow

    plain = AppearanceSettings(families={"t2": 1.0})
    a = draw_appearance(torch.Generator().manual_seed(3), settings=plain)
    assert a["marrow_var"] is None and a["cortex_gap"] == 0.0
    varied = dataclasses.replace(plain, marrow_var_max=0.5, cortex_gap_prob=1.0)
    b = draw_appearance(torch.Generator().manual_seed(3), settings=varied)
    assert {k: v for k, v in b.items() if k not in ("marrow_var", "cortex_gap")} == \
        {k: v for k, v in a.items() if k not in ("marrow_var", "cortex_gap")}
    assert 0.0 <= b["marrow_var"]["sd"] <= 0.5 and 0.1 <= b["cortex_gap"] <= 0.5

    tissue = _tissue_block((40, 40, 40))
    idx = tissue[0].clone()
    idx[10:13, 10:13, 10:13] = ID["lytic"]
    means = torch.rand(N_TISSUES, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    image = means[idx]
    out = _vary_marrow(image, idx, marrow_var={"sd": 0.5, "cell_mm": 15.0}, spacing_mm=(1.5,) * 3,
                       generator=torch.Generator().manual_seed(1))
    marrow, lytic = idx == ID["marrow"], idx == ID["lytic"]
    assert torch.equal(out[~(marrow | lytic)], image[~(marrow | lytic)])
    assert float(out[marrow].std()) > 0.01                                   # marrow no longer uniform
    ratio = out[12, 12, 12] / out[12, 12, 13]                                # lesion vs the marrow beside it
    assert abs(float(ratio) / float(means[ID["lytic"]] / means[ID["marrow"]]) - 1) < 0.1

    gaps = _thin_cortex(image, idx, fraction=0.3, marrow=means[ID["marrow"]], spacing_mm=(1.5,) * 3,
                        generator=torch.Generator().manual_seed(2))
    cortex = idx == ID["cortex"]
    changed = gaps != image
    assert not bool(changed[~cortex].any())
    assert 0.15 < float(changed[cortex].float().mean()) < 0.45
    assert torch.allclose(gaps[changed], means[ID["marrow"]].expand(int(changed.sum())))
    rendered = render(tissue, appearance=b, spacing_mm=(1.5,) * 3)
    assert float(rendered.min()) >= 0.0 and float(rendered.max()) <= 1.0


def test_signal_mimics_are_told_from_lesions_by_their_signal():
    """CT: a bone island is denser than a blastic lesion, a haemangioma (fat) darker than a lytic one,
    and every lesion meets the record's lytic/blastic HU margins; in the random family, where signal
    means nothing, haemangioma and bone island stay within half the lesion contrast of the marrow."""
    from spinelesion.synthesis.appearance import CT_BLASTIC_MIN_HU, CT_LYTIC_MIN_HU, MIN_LESION_CONTRAST

    g = torch.Generator().manual_seed(3)
    ct = [draw_appearance(g, settings=AppearanceSettings(families={"ct": 1.0}))["means"] for _ in range(200)]
    for m in ct:
        assert m[ID["lytic"]] <= m[ID["marrow"]] - CT_LYTIC_MIN_HU + 1e-9
        assert m[ID["blastic"]] >= m[ID["marrow"]] + CT_BLASTIC_MIN_HU - 1e-9
    mean = lambda name: float(np.mean([m[ID[name]] for m in ct]))  # noqa: E731
    assert mean("bone_island") > mean("blastic") + 300 and mean("haemangioma") < mean("lytic") - 50
    for _ in range(200):
        m = draw_appearance(g, settings=AppearanceSettings(families={"random": 1.0}))["means"]
        for name in ("haemangioma", "bone_island"):
            assert abs(m[ID[name]] - m[ID["marrow"]]) <= 0.5 * MIN_LESION_CONTRAST + 1e-9


def test_whole_body_lesions_fill_one_body_inside_its_cortex():
    from spinelesion.synthesis.lesions import RandInsertLesiond

    tissue = torch.full((1, 24, 24, 40), float(ID["soft"]))
    label = torch.zeros((1, 24, 24, 40))
    for z0 in (2, 22):                                   # two bodies: cortex shell round marrow
        tissue[0, 4:20, 4:20, z0:z0 + 14] = ID["cortex"]
        tissue[0, 5:19, 5:19, z0 + 1:z0 + 13] = ID["marrow"]
        label[0, 4:20, 4:20, z0:z0 + 14] = 1
    insert = RandInsertLesiond(keys=("image", "label"), prob=1.0, whole_body_prob=1.0)
    insert.set_random_state(1)
    out = insert({"image": tissue, "label": label})
    lesion = out["label"][0] == 3
    marrow_of = [(tissue[0] == ID["marrow"]) & (torch.arange(40) < 20 if k == 0 else torch.arange(40) >= 20)
                 for k in (0, 1)]
    filled = [bool(torch.equal(lesion & m, m)) for m in marrow_of]
    assert sum(filled) == 1                              # one body's whole marrow, the other untouched
    assert torch.equal(lesion, marrow_of[filled.index(True)])
    assert torch.all(out["image"][0][tissue[0] == ID["cortex"]] == ID["cortex"])   # cortex kept
    off = RandInsertLesiond(keys=("image", "label"), prob=1.0, radius_vox=(3.0, 5.0))   # default: ellipsoids only
    off.set_random_state(1)
    assert int((off({"image": tissue, "label": label})["label"][0] == 3).sum()) < int(marrow_of[0].sum())


def test_ct_marrow_varies_less_than_mr_marrow():
    from spinelesion.synthesis.appearance import CT_MARROW_VAR_SCALE

    settings = {f: AppearanceSettings(families={f: 1.0}, marrow_var_max=0.4) for f in ("ct", "t2")}
    sds = {f: [draw_appearance(torch.Generator().manual_seed(s), settings=settings[f])["marrow_var"]["sd"]
               for s in range(60)] for f in settings}
    assert max(sds["ct"]) <= 0.4 * CT_MARROW_VAR_SCALE + 1e-9 < max(sds["t2"])


def test_coarse_cases_are_coarse_in_plane_and_off_by_default():
    """With coarse_prob, a share of cases has both in-plane axes at one pixel size of coarse_mm (the slice
    axis at least that); without it, no case is coarser in-plane than in_plane_mm and the other draws
    are those of the old settings."""
    plain = AppearanceSettings(in_plane_mm=(0.3, 1.5))
    coarse = AppearanceSettings(in_plane_mm=(0.3, 1.5), coarse_prob=0.5, coarse_mm=(2.0, 3.5))
    n_coarse = 0
    for seed in range(40):
        a = draw_appearance(torch.Generator().manual_seed(seed), settings=plain)
        b = draw_appearance(torch.Generator().manual_seed(seed), settings=coarse)
        in_plane = [r for axis, r in enumerate(a["resolution_mm"]) if not (a["thick"] and axis == a["slice_axis"])]
        assert max(in_plane) <= 1.5
        assert a["means"] == b["means"] and a["slice_axis"] == b["slice_axis"] and a["thick"] == b["thick"]
        if b["resolution_mm"] != a["resolution_mm"]:
            n_coarse += 1
            others = [r for axis, r in enumerate(b["resolution_mm"]) if not (b["thick"] and axis == b["slice_axis"])]
            assert len(set(others)) == 1 and 2.0 <= others[0] <= 3.5
            assert min(b["resolution_mm"]) == others[0]
    assert 8 <= n_coarse <= 32


def test_low_cord_contrast_brings_the_cord_to_the_csf_on_mr_only():
    """low_cord_contrast_prob=1 puts every MR/random cord within a quarter of its drawn gap to the CSF;
    CT keeps its Hounsfield table (cord and CSF already 30 HU apart)."""
    for family in ("t2star", "t2", "random", "ct"):
        for seed in range(10):
            base = draw_appearance(torch.Generator().manual_seed(seed),
                                   settings=AppearanceSettings(families={family: 1.0}))
            low = draw_appearance(torch.Generator().manual_seed(seed),
                                  settings=AppearanceSettings(families={family: 1.0}, low_cord_contrast_prob=1.0))
            gap = base["means"][ID["cord"]] - base["means"][ID["csf"]]
            new_gap = low["means"][ID["cord"]] - low["means"][ID["csf"]]
            if family == "ct":
                assert new_gap == gap
            else:
                assert abs(new_gap) <= 0.25 * abs(gap) + 1e-12 and new_gap * gap >= 0
