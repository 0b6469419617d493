"""Time ``measure_labels`` on a 512 x 512 x 300 label map (issue 4 target: under 5 s).

The map is a phantom's label map placed (nearest-neighbour upsampled x2 along each axis) in a
512 x 512 x 300 grid, as a CT scan of the trunk would hold it. Run: python benchmarks/bench_measure.py
"""

from __future__ import annotations

import time

import numpy as np


def build(seed: int = 7) -> tuple[np.ndarray, np.ndarray, dict]:
    from spinelesion.data.phantoms import make_phantom

    ph = make_phantom(seed=seed, modality="ct", bilsky="2", orientation="RAS", oblique=False)
    small = ph.labels
    up = small.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
    shape = (512, 512, 300)
    labels = np.zeros(shape, np.uint8)
    sub = tuple(slice(0, min(n, m)) for n, m in zip(up.shape, shape))
    off = tuple((m - min(n, m)) // 2 for n, m in zip(up.shape, shape))
    labels[tuple(slice(o, o + s.stop) for o, s in zip(off, sub))] = up[sub]
    affine = ph.scan.affine.copy()
    affine[:3, :3] /= 2.0  # half the spacing: same anatomy in world mm
    affine[:3, 3] -= affine[:3, :3] @ np.array(off, float)
    return labels, affine, ph.truth


def main() -> None:
    from spinelesion.measure import measure_labels

    labels, affine, truth = build()
    print(f"label map {labels.shape}, foreground {np.count_nonzero(labels)} voxels, "
          f"spacing {np.round(np.linalg.norm(affine[:3, :3], axis=0), 3).tolist()} mm")
    # C order (in memory after inference) and Fortran order (as nibabel reads a NIfTI file)
    for order, array in (("C", labels), ("Fortran", np.asfortranarray(labels))):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            record = measure_labels(labels=array, affine=affine, modality="CT")
            times.append(time.perf_counter() - t0)
        print(f"measure_labels, {order}-order map: best {min(times):.2f} s, median {np.median(times):.2f} s "
              f"over {len(times)} runs")
    print(f"vertebrae {len(record['vertebrae'])} (truth {len(truth['vertebrae'])}), "
          f"Bilsky {record['cord']['bilsky_grade']} (truth {truth['cord']['bilsky_grade']}), "
          f"MSCC {record['cord']['mscc_pct']} (truth {truth['cord']['mscc_pct']:.1f})")


if __name__ == "__main__":
    main()
