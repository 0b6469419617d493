#!/usr/bin/env python
"""Image synthesis cost in a training step, against the step's own network forward + backward.

A synthesis-trained model draws a new image for every patch in the training step
(:func:`spinelesion.synthesis.synthesize`); this measures that against the reference in the same
run: one forward + backward of the config's network on the same batch. Ratio well below 1 means
the device is kept busy by the network, not by making images.

    python benchmarks/bench_synthesis.py [--config configs/synth_spine.yaml] [--device cuda] [--batch 4] [--repeat 10]
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/synth_spine.yaml")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=4, help="patches per step")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    from spinelesion.runtime import resolve_device
    from spinelesion.training.config import load_config
    from spinelesion.network.factory import build_network
    from spinelesion.synthesis.appearance import synthesize
    from spinelesion.synthesis.tissues import N_TISSUES

    config = load_config(args.config)
    device = torch.device(resolve_device(args.device))
    patch = tuple(config.patch_size)
    gen = torch.Generator(device=device).manual_seed(0)
    # blocky tissue maps: random classes on a coarse grid, upsampled (nearest) to the patch
    coarse = torch.randint(0, N_TISSUES, (args.batch, 1, *(p // 8 for p in patch)), generator=gen, device=device)
    tissue = torch.nn.functional.interpolate(coarse.float(), size=patch, mode="nearest").long()
    net = build_network(name=config.network.name, params=config.network.params).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    settings = config.synthesis.settings()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn) -> float:
        fn()
        sync()
        t0 = time.perf_counter()
        for _ in range(args.repeat):
            fn()
        sync()
        return (time.perf_counter() - t0) / args.repeat

    image = synthesize(tissue, generator=gen, spacing_mm=config.preprocessing.spacing_mm, settings=settings)

    def synth():
        synthesize(tissue, generator=gen, spacing_mm=config.preprocessing.spacing_mm, settings=settings)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            loss = net(image).float().mean()
        loss.backward()
        opt.step()

    t_synth, t_step = timed(synth), timed(step)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device {name}; {args.batch} patches of {patch}; mean of {args.repeat}")
    print(f"synthesis            {t_synth * 1000:8.1f} ms per step")
    print(f"network fwd+bwd      {t_step * 1000:8.1f} ms per step (reference)")
    print(f"synthesis / network  {t_synth / t_step:8.2f}")


if __name__ == "__main__":
    main()
