"""Phantom generation speed (seconds per case, split by stage) and the docs figure.

    python benchmarks/bench_synth.py --n 20 --modality ct          # timing
    python benchmarks/bench_synth.py --figure docs/phantoms.png     # CT, T1, T2 views with labels

Prints figures; asserts nothing (timings depend on the machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def bench(n: int, modality: str, seed: int) -> None:
    from spinelesion.data.phantoms import draw_params, render_phantom
    from spinelesion.data.phantoms.dataset import case_seed, write_image
    from spinelesion.io.save import save_labels

    stages: dict[str, float] = {}
    voxels, t0 = 0, time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            t = time.perf_counter()
            params = draw_params(seed=case_seed(seed, i), modality=modality)
            stages["draw"] = stages.get("draw", 0.0) + time.perf_counter() - t
            ph = render_phantom(params, timings=stages)
            t = time.perf_counter()
            write_image(ph.scan, Path(tmp) / f"{i}.nii.gz")
            save_labels(ph.labels, like=ph.scan, path=Path(tmp) / f"{i}_seg.nii.gz")
            (Path(tmp) / f"{i}.json").write_text(json.dumps(ph.truth))
            stages["write"] = stages.get("write", 0.0) + time.perf_counter() - t
            voxels += int(np.prod(ph.scan.shape))
    total = time.perf_counter() - t0
    print(f"{n} {modality} phantoms in {total:.1f} s: {total / n:.2f} s per case, "
          f"mean {voxels / n / 1e6:.2f} Mvoxel per case")
    for name, sec in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"  {name:18s} {sec / n:6.3f} s/case  ({100 * sec / total:4.1f} %)")


def _plane(ph, centre, e1, e2, half, step=0.5):
    from scipy import ndimage

    a, b = np.arange(-half[0], half[0], step), np.arange(-half[1], half[1], step)
    grid = centre + a[:, None, None] * e1 + b[None, :, None] * e2
    inv = np.linalg.inv(ph.scan.affine)
    coords = np.moveaxis(grid @ inv[:3, :3].T + inv[:3, 3], -1, 0)
    img = ndimage.map_coordinates(ph.scan.array, coords, order=1, cval=np.nan)
    lab = ndimage.map_coordinates(ph.labels, coords, order=0, cval=0)
    return img.T, lab.T


def figure(path: str, seeds: list[int]) -> None:
    """Mid-sagittal and axial (through the worst cord level) views of a CT, a T1 and a T2 phantom,
    resampled on world-aligned planes, each beside its label map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spinelesion.data.phantoms import make_phantom
    from spinelesion.labels import LABEL_COLOURS, LABEL_NAMES

    lut = np.array([LABEL_COLOURS[i] for i in range(len(LABEL_NAMES))]) / 255
    cases = [("ct", seeds[0], "3"), ("t1", seeds[1], "2"), ("t2", seeds[2], "1b")]
    fig, axs = plt.subplots(3, 4, figsize=(11, 13), gridspec_kw={"width_ratios": [1, 1, 1.25, 1.25]})
    for row, (modality, seed, grade) in enumerate(cases):
        ph = make_phantom(seed=seed, modality=modality, bilsky=grade)
        t = ph.truth
        cents = np.array([v["centroid_mm"] for v in t["vertebrae"]])
        worst = np.array(t["cord"]["worst_centroid_mm"])
        sag, sag_lab = _plane(ph, np.array([worst[0], cents[:, 1].mean() - 15, cents[:, 2].mean()]),
                              np.array([0, 1.0, 0]), np.array([0, 0, 1.0]), (60, 115))
        ax_img, ax_lab = _plane(ph, worst + [0, 12, 0], np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), (60, 60))
        window = dict(vmin=-250, vmax=1300) if modality == "ct" else \
            dict(vmin=0, vmax=float(np.nanpercentile(ph.scan.array, 99.7)))
        for col, (img, lab) in enumerate([(sag, sag_lab), (ax_img, ax_lab)]):
            axs[row, 2 * col].imshow(img, cmap="gray", origin="lower", **window)
            axs[row, 2 * col + 1].imshow(lut[lab], origin="lower")
        sp = "x".join(f"{s:.2g}" for s in ph.scan.spacing_mm)
        axs[row, 0].set_title(f"{modality.upper()} seed {seed}: {ph.scan.orientation}, {sp} mm\n"
                              f"{t['vertebrae'][-1]['level']}-{t['vertebrae'][0]['level']}, "
                              f"Bilsky {t['cord']['bilsky_grade']}, MSCC {t['cord']['mscc_pct']:.0f} %", fontsize=9)
        axs[row, 2].set_title("axial at the worst cord level (anterior up)", fontsize=9)
    for a in axs.ravel():
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--modality", default="ct", choices=["ct", "t1", "t2"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", help="write the CT/T1/T2 figure here instead of timing")
    parser.add_argument("--figure-seeds", type=int, nargs=3, default=[1, 2, 3])
    args = parser.parse_args(argv)
    if args.figure:
        figure(args.figure, args.figure_seeds)
    else:
        bench(args.n, args.modality, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
