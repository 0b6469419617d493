#!/usr/bin/env python
"""Training throughput: the real data pipeline against the same steps on batches already in memory.

    python benchmarks/bench_train.py                      # small settings, synthetic data, < 1 min on CPU
    python benchmarks/bench_train.py --data runs/phantoms_ct --preset config --device cuda

Prints steps/s with the DataLoader (cached preprocessing + random crops + augmentation + collate +
host->device copy) and steps/s on pre-made batches already on the device; a ratio well below 1
means loading is the bottleneck (raise data.num_workers). Presets: ``small`` (patch 32, tiny UNet)
and ``config`` (the config file's own patch and network). Default: small on CPU, config on CUDA.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SMALL = ["patch_size=[32, 32, 32]", "network.params.channels=[8, 16, 32]", "network.params.strides=[2, 2]"]


def synthetic_msd(root: Path, *, n: int, shape=(64, 64, 80), spacing_mm: float = 1.0) -> Path:
    """n CT-like cases in MSD layout (random blocks of every class), for when no --data is given."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    entries = []
    for i in range(n):
        lab = np.zeros(shape, np.uint8)
        for value in range(1, 7):
            for _ in range(3):
                lo = [int(rng.integers(0, s - 12)) for s in shape]
                size = [int(rng.integers(4, 12)) for _ in shape]
                lab[lo[0]:lo[0] + size[0], lo[1]:lo[1] + size[1], lo[2]:lo[2] + size[2]] = value
        hu = np.array([0, 400, 600, 100, 30, 10, 80], np.float32)[lab] + rng.normal(0, 30, shape)
        affine = np.diag([spacing_mm] * 3 + [1.0])
        nib.save(nib.Nifti1Image(hu.astype(np.float32), affine), root / f"imagesTr/c{i}.nii.gz")
        nib.save(nib.Nifti1Image(lab, affine), root / f"labelsTr/c{i}.nii.gz")
        entries.append({"image": f"imagesTr/c{i}.nii.gz", "label": f"labelsTr/c{i}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps({"training": entries}))
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "phantom_ct.yaml"))
    parser.add_argument("--data", help="MSD folder (e.g. `spinelesion synth` output); default: synthetic")
    parser.add_argument("--cases", type=int, default=3, help="synthetic cases when no --data")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--preset", choices=["small", "config"], help="default: small on CPU, config on CUDA")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    import torch

    from spinelesion.training.config import load_config
    from spinelesion.labels import NUM_CLASSES
    from spinelesion.training.losses import MaskedDiceCELoss
    from spinelesion.network.factory import build_network
    from spinelesion.training.data import find_cases, make_datasets, make_loader
    from spinelesion.training.loop import make_step

    use_cuda = torch.cuda.is_available() if args.device == "auto" else args.device.startswith("cuda")
    device = torch.device("cuda" if use_cuda else "cpu")
    preset = args.preset or ("config" if use_cuda else "small")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else synthetic_msd(Path(tmp) / "data", n=args.cases)
        overrides = [f"data.sources.0.root={data}", f"output_dir={tmp}/out", "data.cache=memory",
                     "data.val_fraction=0", *(SMALL if preset == "small" else []), *args.overrides]
        config = load_config(args.config, overrides=overrides)
        train_cases, _ = find_cases(config)
        t0 = time.perf_counter()
        train_ds, _ = make_datasets(config, train_cases, [])
        cache_s = time.perf_counter() - t0
        loader, _, _ = make_loader(config, train_ds, pin_memory=use_cuda)

        torch.manual_seed(0)
        network = build_network(name=config.network.name, params=config.network.params).to(device)
        optimizer = torch.optim.AdamW(network.parameters(), lr=config.optim.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        amp = config.train.amp and use_cuda
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        loss_fn = MaskedDiceCELoss(num_classes=NUM_CLASSES, class_weights=config.loss.class_weights).to(device)
        step = make_step(config, model=network, network=network, loss_fn=loss_fn, optimizer=optimizer,
                         scheduler=scheduler, scaler=scaler, amp=amp, device=device)

        def batches():
            while True:
                yield from loader

        source = batches()
        sync = torch.cuda.synchronize if use_cuda else (lambda: None)
        for _ in range(2):  # warm-up (cuDNN autotune, allocator, worker start)
            step(next(source))
        sync()
        # alternate blocks of pipeline and in-memory steps so drifting machine load hits both alike
        in_memory = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in next(source).items()}
                     for _ in range(max(1, args.steps // 2))]
        seconds = {"pipeline": 0.0, "memory": 0.0}
        done = {"pipeline": 0, "memory": 0}
        for _ in range(2):
            sync()
            t0 = time.perf_counter()
            for _ in range(len(in_memory)):
                step(next(source))
            sync()
            seconds["pipeline"] += time.perf_counter() - t0
            done["pipeline"] += len(in_memory)
            t0 = time.perf_counter()
            for batch in in_memory:
                step(batch)
            sync()
            seconds["memory"] += time.perf_counter() - t0
            done["memory"] += len(in_memory)
        pipeline_sps = done["pipeline"] / seconds["pipeline"]
        memory_sps = done["memory"] / seconds["memory"]

    name = torch.cuda.get_device_name(0) if use_cuda else f"CPU ({torch.get_num_threads()} threads)"
    patches = config.train.batch_size * config.sampling.samples_per_volume
    print(f"device: {name}; preset {preset}: patch {list(config.patch_size)}, network {config.network.name} "
          f"{config.network.params}, {patches} patches/step, num_workers {config.data.num_workers}, "
          f"AMP {amp}; {len(train_cases)} cases cached in {cache_s:.1f} s")
    print(f"real data pipeline : {pipeline_sps:.2f} steps/s")
    print(f"tensors in memory  : {memory_sps:.2f} steps/s")
    print(f"ratio pipeline/memory: {pipeline_sps / memory_sps:.2f} (below ~0.8: loading is the bottleneck)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
