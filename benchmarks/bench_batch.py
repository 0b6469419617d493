#!/usr/bin/env python
"""Batch throughput: wall seconds per scan of ``run_batch`` over copies of one CT, by number of
finishing workers, against the network's own sliding-window time on that CT (the reference).

In a batch the next scan is read while the current one runs, and with finishing workers a
case's measurements, files and overlays are made while the network runs on the next case, so
the wall time per scan of a batch is what a user waits per scan, not the sum of the stages.

    python benchmarks/bench_batch.py [--device auto] [--copies 4] [--workers 0 1 2 auto] [--shape 512 512 600]

Each setting runs in a fresh child process, so its peak RSS is its own.

Input: the real TotalSegmentator example CT (thorax to pelvis, ../shared/data/real) resampled to
``--shape`` (int16 NIfTI), or a phantom CT when that file is absent (``--real-ct``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_infer import REAL_CT, network_seconds, real_ct, synthetic_ct  # noqa: E402


def _one_setting(inputs: Path, out: Path, *, model, device: str, workers: int | None) -> dict:
    """Run the batch once (in a fresh child process: its peak RSS is this setting's own)."""
    import resource

    from spinelesion.pipeline.batch import default_finish_workers, run_batch

    n = len(list(inputs.glob("*.nii.gz")))
    t = time.perf_counter()
    result = run_batch(input_path=inputs, out_dir=out, model=model, device=device, progress=False,
                       finish_workers=workers)
    return {"per_scan_s": (time.perf_counter() - t) / n, "ok": result.n_ok,
            "workers": default_finish_workers(device=device) if workers is None else workers,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default=None)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--workers", nargs="+", default=["0", "1", "2", "auto"],
                        help="finishing-thread counts to compare ('auto': the default for the device)")
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 600])
    parser.add_argument("--real-ct", default=str(REAL_CT))
    parser.add_argument("--child", nargs=3, metavar=("INPUTS", "OUT", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    from spinelesion.inference.predictor import Predictor
    from spinelesion.runtime import resolve_device
    from spinelesion.io.save import save_image

    device = resolve_device(args.device)
    if args.child:
        inputs, out, workers = args.child
        print(json.dumps(_one_setting(Path(inputs), Path(out), model=args.model, device=device,
                                      workers=None if workers == "auto" else int(workers))))
        return
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
        del predictor, scan
        print(f"{device} {'x'.join(map(str, shape))} CT, {args.copies} copies; "
              f"network alone {network_s:.2f} s per scan", flush=True)
        for workers in args.workers:
            cmd = [sys.executable, __file__, "--device", device, "--child", str(inputs), str(Path(tmp) / f"out{workers}"),
                   workers] + (["--model", args.model] if args.model else [])
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            print(f"  finish_workers {workers} ({r['workers']}): {r['per_scan_s']:.2f} s per scan (batch wall / scans, "
                  f"{r['ok']} ok) | per scan / network alone {r['per_scan_s'] / network_s:.2f} | "
                  f"peak RSS {r['peak_rss_gib']:.2f} GiB", flush=True)


if __name__ == "__main__":
    main()
