"""GPU paths: inference on CUDA (AMP) agrees with the CPU, and a training step runs with AMP.

Skipped without a CUDA GPU; ``scripts/gpu_check.sh`` runs them on the lent GPU machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spinelesion.io.scan import Scan

pytestmark = pytest.mark.gpu


def _scan(seed=0, shape=(48, 44, 40)) -> Scan:
    rng = np.random.default_rng(seed)
    array = rng.normal(0, 300, shape).astype(np.float32)
    array[10:30, 10:30, :] += 900
    return Scan(array=array, affine=np.diag([1.5, 1.5, 2.0, 1.0]), modality="CT", source="gpu test")


def test_cuda_inference_matches_cpu(tmp_path):
    from spinelesion.network.checkpoint import save_checkpoint
    from spinelesion.inference.predictor import Predictor
    from spinelesion.labels import LABEL_NAMES
    from spinelesion.network.factory import build_network

    torch.manual_seed(0)
    params = {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1}
    net = build_network(name="unet", params=params)
    meta = {"label_names": {str(k): v for k, v in LABEL_NAMES.items()},
            "network": {"name": "unet", "params": params},
            "preprocessing": {"orientation": "RAS", "spacing_mm": [2.0, 2.0, 2.0], "modality": "CT",
                              "intensity": {"kind": "ct_window", "min_hu": -200.0, "max_hu": 1300.0}},
            "patch_size": [32, 32, 32], "config": {}}
    path = save_checkpoint(tmp_path / "m.safetensors", state_dict=net.state_dict(), meta=meta)
    scan = _scan()
    cpu = Predictor(model=path, device="cpu").predict(scan).labels
    gpu = Predictor(model=path, device="cuda").predict(scan).labels
    assert gpu.shape == scan.shape
    # AMP (float16) may flip near-tied voxels only
    assert (cpu == gpu).mean() > 0.99


def test_amp_training_step_on_cuda():
    from spinelesion.training.losses import MaskedDiceCELoss
    from spinelesion.network.factory import build_network

    net = build_network(name="unet", params={"channels": [8, 16, 32], "strides": [2, 2]}).cuda()
    loss_fn = MaskedDiceCELoss(num_classes=7)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda")
    x = torch.randn(2, 1, 32, 32, 32, device="cuda")
    y = torch.randint(0, 7, (2, 1, 32, 32, 32), device="cuda")
    annotated = torch.ones(2, 7, dtype=torch.bool, device="cuda")
    losses = []
    for _ in range(5):
        opt.zero_grad()
        with torch.autocast("cuda", dtype=torch.float16):
            loss = loss_fn(net(x), y, annotated)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(float(loss))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
