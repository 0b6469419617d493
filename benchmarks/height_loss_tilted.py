"""Heights and height loss on synthetic columns tilted in the scan and bent along their length
(tests/measure_synth.py ``curved_column``): 20-40 deg sagittal and coronal tilt, lordosis,
kyphosis with scoliosis, one sharp L5/S1-like angle, with a wedge, a biconcave body and a crush.

Run: python benchmarks/height_loss_tilted.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import measure_synth as S  # noqa: E402

FRACTURES = [{"kind": "wedge", "anterior": 11.0, "posterior": 19.0}, None,
             {"kind": "biconcave", "rim": 19.5, "middle": 13.0}, None, {"kind": "crush", "height": 13.0}, None]
CASES = {
    "tilt 30 sag": dict(base_tilt_deg=(30, 0)),
    "tilt 40 sag + 20 cor": dict(base_tilt_deg=(40, 20)),
    "lordosis 8/level": dict(bends_deg=[(8, 0)] * 5),
    "kyphosis 10 + scoliosis 5/level": dict(bends_deg=[(-10, 5)] * 5),
    "L5/S1-like 35 at the bottom": dict(bends_deg=[(35, 0)] + [(5, 0)] * 4),
    "30 sag + 12 cor mid-column": dict(bends_deg=[(0, 0), (0, 0), (30, 12), (0, 0), (0, 0)]),
    "fractures, tilt 30/20, bend 8/3": dict(profiles=FRACTURES, bends_deg=[(8, 3)] * 5, base_tilt_deg=(30, 20)),
    "fractures, L5/S1-like 35": dict(profiles=FRACTURES, bends_deg=[(35, 0)] + [(5, 0)] * 4),
}


def main() -> None:
    from spinelesion.measure import measure_labels

    all_h, all_l = [], []
    for name, kw in CASES.items():
        labels, affine, truth = S.curved_column(n_vertebrae=6, spacing_mm=(0.9, 0.9, 1.5), **kw)
        r = measure_labels(labels=labels, affine=affine)
        h_err = [abs(m[k] - t) for m, tr in zip(r["vertebrae"], truth)
                 for k, t in zip(("height_anterior_mm", "height_middle_mm", "height_posterior_mm"), tr["heights"])]
        l_err = [abs(m["height_loss_pct"] - tr["loss_pct"]) for m, tr in zip(r["vertebrae"], truth)]
        all_h += h_err
        all_l += l_err
        print(f"{name:34s} heights max err {max(h_err):4.1f} mm, loss max err {max(l_err):5.1f} "
              f"(per vertebra {[round(e, 1) for e in l_err]})")
    print(f"all: heights max {max(all_h):.1f} mm, mean {np.mean(all_h):.2f}; loss max {max(all_l):.1f}, "
          f"mean {np.mean(all_l):.2f}")


if __name__ == "__main__":
    main()
