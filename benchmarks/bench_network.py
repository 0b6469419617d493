#!/usr/bin/env python
"""Network-only inference time: sliding window over a preprocessed volume vs the bare forward passes.

The reference is the same number of patch forward passes run back to back on one patch batch
(no window bookkeeping, no Gaussian blending); the ratio shows what sliding-window costs on top.
Sizes are what a 512x512x300 and a 512x512x600 CT at 0.7 x 0.7 x 0.8 mm become at the
checkpoint's spacing (2 mm for the shipped models).

    python benchmarks/bench_network.py --checkpoint spinelesion/models/spine_any.safetensors [--device cuda] [--amp off]
"""

from __future__ import annotations

import argparse
import math
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", default="on", choices=("on", "off"))
    parser.add_argument("--slices", type=int, nargs="+", default=[300, 600])
    args = parser.parse_args()
    from spinelesion.inference.predictor import Predictor
    from spinelesion.inference.settings import InferenceSettings
    from spinelesion.runtime import resolve_device

    device = resolve_device(args.device)
    predictor = Predictor(model=args.checkpoint, device=device,
                          settings=InferenceSettings(overlap=0.5, amp=args.amp == "on"))
    net, meta = predictor.network(predictor.checkpoint_for(meta_modality(args.checkpoint)))
    spacing = meta["preprocessing"]["spacing_mm"]
    patch = meta["patch_size"]
    use_amp = args.amp == "on" and device.startswith("cuda")

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for n_slices in args.slices:
        shape = [math.ceil(512 * 0.7 / spacing[0]), math.ceil(512 * 0.7 / spacing[1]), math.ceil(n_slices * 0.8 / spacing[2])]
        image = torch.rand(1, *shape)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        predictor.sliding_window(net, image[:, :patch[0], :patch[1], :patch[2]], patch_size=patch)  # warm-up
        sync()
        t = time.perf_counter()
        predictor.sliding_window(net, image, patch_size=patch)
        sync()
        window_s = time.perf_counter() - t
        n_windows = math.prod(math.ceil((s - p) / (p * 0.5)) + 1 if s > p else 1 for s, p in zip(shape, patch))
        batch = torch.rand(predictor.settings.sw_batch_size, 1, *patch, device=device)
        n_batches = math.ceil(n_windows / predictor.settings.sw_batch_size)
        with torch.inference_mode(), torch.autocast(device_type="cuda", enabled=use_amp):
            net(batch)
            sync()
            t = time.perf_counter()
            for _ in range(n_batches):
                net(batch)
            sync()
            forward_s = time.perf_counter() - t
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
        print(f"{device} amp={'on' if use_amp else 'off'} CT 512x512x{n_slices} -> network grid {shape}: "
              f"sliding window {window_s:.3f}s, bare forwards ({n_windows} windows) {forward_s:.3f}s, "
              f"ratio {window_s / forward_s:.2f}, peak GPU mem {peak:.2f} GiB", flush=True)


def meta_modality(path: str) -> str:
    from spinelesion.inference.predictor import checkpoint_meta

    return checkpoint_meta(path)["preprocessing"]["modality"]


if __name__ == "__main__":
    main()
