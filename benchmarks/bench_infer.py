#!/usr/bin/env python
"""Inference speed: seconds per scan by stage, and end-to-end time over the network's own time.

For each input size it times the whole per-scan path (load, preprocess, network, postprocess,
measure, write, overlays) through ``predict_case`` and ``finish_case`` and, on the same preprocessed tensor, the
bare sliding-window forward pass. Goal: end-to-end / network <= 1.3. With ``--big`` it also runs
two 512x512x600 CTs, each in a child process that reports its peak resident memory: a phantom
zoomed to fill the field of view (the spine is most of the volume: the worst case for the
stages that work on the spine's box) and the real TotalSegmentator example CT (thorax to pelvis,
../shared/data/real) resampled to that grid (the spine in its real share of a body CT).
CT inputs are written as int16 HU NIfTI (.nii.gz), as CT is stored. ``--save-probabilities``
also writes every class's probabilities on the input grid (as ``infer --save-probabilities``), the
memory target's harder case.

    python benchmarks/bench_infer.py [--device auto] [--model CKPT] [--big] [--save-probabilities]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_ct(shape, spacing_mm, seed=0):
    """A phantom CT resampled onto a grid of ``shape`` voxels at ``spacing_mm`` (RAS)."""
    from scipy.ndimage import zoom

    from spinelesion.data.phantoms import make_phantom
    from spinelesion.io.scan import Scan

    ph = make_phantom(seed=seed, modality="ct", orientation="RAS", oblique=False)
    factors = [t / s for t, s in zip(shape, ph.scan.shape)]
    array = zoom(ph.scan.array, factors, order=1).astype(np.float32)
    affine = np.diag([*spacing_mm, 1.0])
    return Scan(array=array, affine=affine, modality="CT", source="benchmark")


REAL_CT = Path(__file__).resolve().parents[1].parent / "shared/data/real/totalseg_ct/example_ct.nii.gz"


def real_ct(shape, path: Path = REAL_CT):
    """The real example CT (122x101x112 at 3 mm, thorax to pelvis) resampled trilinearly to ``shape``
    over the same field of view (None when the file is absent)."""
    from scipy.ndimage import zoom

    from spinelesion.io.load import load_scan
    from spinelesion.io.scan import Scan

    if not path.is_file():
        return None
    scan = load_scan(path, modality="CT")
    factors = [t / s for t, s in zip(shape, scan.shape)]
    affine = scan.affine.copy()
    affine[:3, :3] = scan.affine[:3, :3] / np.array(factors)[None, :]
    affine[:3, 3] = scan.affine[:3, 3] + scan.affine[:3, :3] @ (0.5 / np.array(factors) - 0.5)
    array = zoom(scan.array, factors, order=1).astype(np.float32)
    return Scan(array=array, affine=affine, modality="CT", source="benchmark (real CT resampled)")


def network_seconds(predictor, scan) -> float:
    """Seconds of the bare sliding window over ``scan`` preprocessed for the predictor's CT model:
    the reference the end-to-end times are compared with."""
    import torch

    from spinelesion.network.transforms import preprocess

    net, meta = predictor.network(predictor.checkpoint_for("CT"))
    image, _ = preprocess(scan, preprocessing=meta["preprocessing"])
    cuda = predictor.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    predictor.sliding_window(net, image, patch_size=meta["patch_size"])
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t


def time_case(scan, *, model, device, tmp: Path, save_probabilities: bool = False) -> dict:
    import torch

    from spinelesion.pipeline.case import finish_case, predict_case
    from spinelesion.io.discover import CaseInput
    from spinelesion.inference.predictor import Predictor
    from spinelesion.io.save import save_image

    path = save_image(scan, path=tmp / "scan.nii.gz", dtype=np.int16 if scan.modality == "CT" else np.float32)
    predictor = Predictor(model=model, device=device, keep_probabilities=save_probabilities)
    net, meta = predictor.network(predictor.checkpoint_for("CT"))
    # warm-up on a small input (kernel selection, lazy init)
    predictor.sliding_window(net, torch.zeros(1, *meta["patch_size"]), patch_size=meta["patch_size"])
    started = predict_case(CaseInput(case_id="bench", path=path), predictor=predictor)
    status = finish_case(started, case_dir=tmp / "out", overlays=True, save_probabilities=save_probabilities)
    if status["status"] != "ok":
        raise SystemExit(f"case failed: {status['error']}")
    network_only = network_seconds(predictor, scan)
    seconds = status["seconds"]
    return {"shape": list(scan.shape), "seconds": seconds, "network_only_s": network_only,
            "end_to_end_over_network": seconds["total"] / network_only}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default=None)
    parser.add_argument("--big", action="store_true", help="also 512x512x600 CT peak memory (child process)")
    parser.add_argument("--real-ct", default=str(REAL_CT), help="the real CT to resample (default: %(default)s)")
    parser.add_argument("--child-big", choices=("phantom", "real"), help=argparse.SUPPRESS)
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--save-probabilities", action="store_true",
                        help="also write the class probabilities on the input grid (peak memory's harder case)")
    args = parser.parse_args()
    from spinelesion.runtime import resolve_device

    device = resolve_device(args.device)
    cases = [("phantom", (128, 128, 160), (1.0, 1.0, 1.5)), ("phantom", (256, 256, 200), (0.8, 0.8, 1.5))]
    if args.child_big:
        cases = [(args.child_big, (512, 512, 600), (0.7, 0.7, 0.8))]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, shape, spacing in cases:
            scan = synthetic_ct(shape, spacing) if kind == "phantom" else real_ct(shape, Path(args.real_ct))
            if scan is None:
                print(f"{kind} {shape}: input not found, skipped")
                continue
            r = time_case(scan, model=args.model, device=device, tmp=Path(tmp),
                          save_probabilities=args.save_probabilities)
            r["input"] = kind
            if device.startswith("cuda"):
                import torch

                r["peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
            r["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            results.append(r)
            s = r["seconds"]
            print(f"{device} {kind} {'x'.join(map(str, shape))}: total {s['total']:.2f}s = "
                  + ", ".join(f"{k} {v:.2f}" for k, v in s.items() if k != "total")
                  + f" | network alone {r['network_only_s']:.2f}s | ratio {r['end_to_end_over_network']:.2f}"
                  + f" | peak RSS {r['peak_rss_gib']:.2f} GiB", flush=True)
    if args.big and not args.child_big:
        for kind in ("phantom", "real"):
            child_json = [] if not args.json else ["--json", f"{args.json}.{kind}.json"]
            cmd = [sys.executable, __file__, "--child-big", kind, "--device", device, "--real-ct", args.real_ct] + child_json + (
                ["--model", args.model] if args.model else []) + (
                ["--save-probabilities"] if args.save_probabilities else [])
            subprocess.run(cmd, check=False)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
