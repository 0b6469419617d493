#!/usr/bin/env python
"""Batch throughput: wall seconds per scan of ``run_batch`` over copies of one CT, by number of
finishing workers, against the network's own sliding-window time on that CT (the reference).

In a batch the next scan is read while the current one runs, and with finishing workers a
case's measurements, files and overlays are made while the network runs on the next case, so
the wall time per scan of a batch is what a user waits per scan, not the sum of the stages.

    python benchmarks/bench_batch.py [--device auto] [--copies 4] [--workers 0 1 2] [--shape 512 512 600]

Input: the real TotalSegmentator example CT (thorax to pelvis, ../shared/data/real) resampled to
``--shape`` (int16 NIfTI), or a phantom CT when that file is absent (``--real-ct``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_infer import REAL_CT, network_seconds, real_ct, synthetic_ct  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default=None)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 600])
    parser.add_argument("--real-ct", default=str(REAL_CT))
    args = parser.parse_args()

    from spinelesion.inference.batch import run_batch
    from spinelesion.inference.predictor import Predictor, resolve_device
    from spinelesion.io.save import save_image

    device = resolve_device(args.device)
    shape = tuple(args.shape)
    scan = real_ct(shape, Path(args.real_ct)) or synthetic_ct(shape, (0.7, 0.7, 0.8))
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        first = save_image(scan, path=inputs / "ct0.nii.gz", dtype=np.int16)
        for k in range(1, args.copies):
            (inputs / f"ct{k}.nii.gz").write_bytes(first.read_bytes())
        predictor = Predictor(model=args.model, device=device)
        network_seconds(predictor, scan)  # warm-up
        network_s = network_seconds(predictor, scan)
        print(f"{device} {scan.source} {'x'.join(map(str, shape))}, {args.copies} copies; "
              f"network alone {network_s:.2f} s per scan", flush=True)
        for workers in args.workers:
            t = time.perf_counter()
            result = run_batch(input_path=inputs, out_dir=Path(tmp) / f"out{workers}", model=args.model,
                               device=device, progress=False, finish_workers=workers)
            per_scan = (time.perf_counter() - t) / args.copies
            print(f"  finish_workers {workers}: {per_scan:.2f} s per scan (batch wall / scans, "
                  f"{result.n_ok} ok) | per scan / network alone {per_scan / network_s:.2f}", flush=True)


if __name__ == "__main__":
    main()
