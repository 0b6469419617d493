#!/usr/bin/env python
"""Issue 16 throughput on the CPU: ``measure`` and the report stage on 512 x 512 x 600 inputs.

Two inputs, made once and cached (``--cache``, .npz): a CT phantom zoomed to fill a 512 x 512 x 600
grid at 0.7 x 0.7 x 0.8 mm (image trilinear, its exact labels nearest-neighbour: the worst case for
every stage that works on the spine's box, as in ``bench_infer.py --big``), and the real example CT
with its TotalSegmentator vertebra map resampled the same way (measured with that label map).
Per input it times ``measure_labels``, ``write_overlays`` and ``write_viewer`` (the viewer's image
copy and page), each ``--repeat`` times, and prints medians. Targets: measure <= 1.0 s; overlays +
report <= 0.5 s per scan.

To compare two versions in one run (the machine may be loaded): ``--versions OLD NEW`` (folders
that hold a ``spinelesion`` package); each repeat runs every version in turn, each in its own
process, so load drifts hit both alike.

    python benchmarks/bench_throughput.py [--repeat 3] [--versions /tmp/old /work/main] [--profile]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPE = (512, 512, 600)
SPACING_MM = (0.7, 0.7, 0.8)
REAL = Path(__file__).resolve().parents[1].parent / "shared/data/real/totalseg_ct"


def phantom_input() -> dict:
    """A CT phantom (image and exact labels) zoomed onto ``SHAPE`` at ``SPACING_MM`` (RAS)."""
    from scipy.ndimage import zoom

    from spinelesion.data.phantoms import make_phantom

    ph = make_phantom(seed=0, modality="ct", orientation="RAS", oblique=False)
    factors = [t / s for t, s in zip(SHAPE, ph.scan.shape)]
    image = zoom(ph.scan.array, factors, order=1).astype(np.float32)
    labels = zoom(np.asarray(ph.labels, np.uint8), factors, order=0)
    return {"image": image, "labels": labels, "affine": np.diag([*SPACING_MM, 1.0]), "label_map": "schema"}


def real_input() -> dict | None:
    """The real example CT and its TotalSegmentator map resampled onto ``SHAPE`` (None when absent)."""
    from scipy.ndimage import zoom

    from spinelesion.io.grid import labels_on_image_grid
    from spinelesion.io.load import load_scan

    if not (REAL / "example_ct.nii.gz").is_file():
        return None
    scan = load_scan(REAL / "example_ct.nii.gz", modality="CT")
    seg = labels_on_image_grid(load_scan(REAL / "example_ct_totalseg.nii.gz"), like=scan,
                               path=REAL / "example_ct_totalseg.nii.gz")
    factors = np.array([t / s for t, s in zip(SHAPE, scan.shape)])
    affine = scan.affine.copy()
    affine[:3, :3] = scan.affine[:3, :3] / factors[None, :]
    affine[:3, 3] = scan.affine[:3, 3] + scan.affine[:3, :3] @ (0.5 / factors - 0.5)
    return {"image": zoom(scan.array, factors, order=1).astype(np.float32),
            "labels": zoom(np.asarray(seg, np.uint8), factors, order=0), "affine": affine,
            "label_map": "totalsegmentator"}


def cached_inputs(cache: Path) -> dict[str, Path]:
    """Make (once) and return the .npz of each input."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, make in (("phantom", phantom_input), ("real_ct", real_input)):
        path = cache / f"{name}_{'x'.join(map(str, SHAPE))}.npz"
        if not path.is_file():
            data = make()
            if data is None:
                continue
            np.savez(path, **data)
        paths[name] = path
    return paths


def time_stages(npz: Path, *, profile: bool = False) -> dict:
    """Seconds of measure, overlays and viewer on one cached input (in this process's spinelesion)."""
    from spinelesion.io.scan import Scan
    from spinelesion.measure import measure_labels
    from spinelesion.record_types import MeasurementRecord
    from spinelesion.report import write_overlays
    from spinelesion.report.viewer.page import write_viewer

    import matplotlib.figure  # noqa: F401 - imported once per run, not per scan: not timed

    data = np.load(npz)
    labels, image, affine = data["labels"], data["image"], data["affine"]
    scan = Scan(array=image, affine=affine, modality="CT", source="benchmark")
    label_map = str(data["label_map"])
    seconds = {}
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory() as parent:
        tmp = Path(parent) / "run" / "case"  # fixed names: the viewer page names its folders
        t = time.perf_counter()
        if profiler:
            profiler.enable()
        record = measure_labels(labels=labels, affine=affine, image=image, modality="CT", label_map=label_map)
        seconds["measure"] = time.perf_counter() - t
        typed = MeasurementRecord.from_json(record)
        if label_map != "schema":  # overlays and viewer draw schema v1 labels (inference's output)
            labels = np.where(labels > 0, 1, 0).astype(np.uint8)
        t = time.perf_counter()
        write_overlays(scan=scan, labels=labels, record=typed, out_dir=tmp)
        seconds["overlays"] = time.perf_counter() - t
        t = time.perf_counter()
        write_viewer(scan=scan, labels=labels, record=typed, case_dir=tmp)
        seconds["viewer"] = time.perf_counter() - t
        seconds["viewer_mb"] = os.path.getsize(tmp / "viewer_image.nii.gz") / 1e6
        seconds["outputs"] = {p.name: hashlib.sha256(gzip.decompress(p.read_bytes()) if p.suffix == ".gz"
                                                     else p.read_bytes()).hexdigest()
                              for p in sorted(tmp.iterdir()) if p.suffix in (".gz", ".png", ".html")}
        if profiler:
            profiler.disable()
            import pstats

            pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(45)
    seconds["record"] = json.dumps({k: v for k, v in record.items() if k != "provenance"}, sort_keys=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--versions", nargs="*", default=[], help="folders holding a spinelesion package")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "spinelesion_bench_throughput"))
    parser.add_argument("--profile", action="store_true", help="cProfile of one run per input (stderr)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(time_stages(Path(args.child[0]), profile=args.child[1] == "profile")))
        return
    inputs = cached_inputs(Path(args.cache))
    versions = args.versions or [str(Path(__file__).resolve().parents[1])]
    results: dict = {}
    for _ in range(args.repeat):
        for name, npz in inputs.items():
            for version in versions:
                env = dict(os.environ, PYTHONPATH=version)
                out = subprocess.run([sys.executable, __file__, "--child", str(npz),
                                      "profile" if args.profile else "-"], env=env, check=True,
                                     stdout=subprocess.PIPE, text=True).stdout
                results.setdefault((name, version), []).append(json.loads(out.strip().splitlines()[-1]))
    for (name, version), runs in results.items():
        med = {k: float(np.median([r[k] for r in runs])) for k in ("measure", "overlays", "viewer", "viewer_mb")}
        each = "; ".join(f"{k} " + ", ".join(f"{r[k]:.2f}" for r in runs) for k in ("measure", "overlays", "viewer"))
        print(f"{name} {version}: measure {med['measure']:.2f} s, overlays {med['overlays']:.2f} s, "
              f"viewer {med['viewer']:.2f} s ({med['viewer_mb']:.0f} MB) (medians of {len(runs)}; each: {each})")
    for name in inputs:
        for what in ("record", "outputs"):  # the record; the viewer image (uncompressed), page and PNGs
            seen = {json.dumps(r[what], sort_keys=True) for v in versions for r in results[(name, v)]}
            print(f"{name}: {what} {'identical' if len(seen) == 1 else 'DIFFER'} across versions and runs")


if __name__ == "__main__":
    main()
