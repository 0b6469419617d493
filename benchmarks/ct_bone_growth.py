"""Posterior-element growth into bone on CT (``grow_into_bone``) by HU threshold: Dice against references.

For each threshold: the example CT's vertebra Dice against its TotalSegmentator labels, and the posterior
elements' Dice on CT phantoms against their exact label maps (``spinelesion synth`` folders). A threshold
above any HU (e.g. 100000) is the step switched off. Asserts nothing.

Run: python benchmarks/ct_bone_growth.py --phantoms PH/all --min-hu 200 300 400 500 100000
(PH/all as ``scripts/evaluate_model.sh`` builds it: images/, labels/; about 1 min per threshold on 2 cores.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REAL = Path(__file__).resolve().parents[1].parent / "shared/data/real/totalseg_ct"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantoms", type=Path, required=True, help="folder with images/ and labels/")
    parser.add_argument("--min-hu", type=float, nargs="+", default=[200.0, 300.0, 400.0, 500.0, 1e5])
    args = parser.parse_args()

    import spinelesion.inference.refine as post
    from spinelesion import labels as L
    from spinelesion.inference.predictor import Predictor
    from spinelesion.io.load import load_scan

    predictor = Predictor(device="cpu")
    grow = post.grow_into_bone
    reference = load_scan(REAL / "example_ct_totalseg.nii.gz").array > 0
    cases = sorted((args.phantoms / "images").glob("*ct*.nii.gz"))
    for min_hu in args.min_hu:
        post.grow_into_bone = lambda *a, _hu=min_hu, **k: grow(*a, **{**k, "min_hu": _hu})
        labels = predictor.predict(load_scan(REAL / "example_ct.nii.gz")).labels
        real = dice(np.isin(labels, [L.VERTEBRAL_BODY, L.POSTERIOR_ELEMENTS, L.LESION]), reference)
        posterior = []
        for case in cases:
            predicted = predictor.predict(load_scan(case)).labels
            truth = load_scan(args.phantoms / "labels" / case.name).array
            posterior.append(dice(predicted == L.POSTERIOR_ELEMENTS, truth == L.POSTERIOR_ELEMENTS))
        print(f"min_hu {min_hu:g}: example CT vertebra Dice {real:.3f}; phantoms' posterior Dice mean "
              f"{np.mean(posterior):.3f} ({', '.join(f'{d:.3f}' for d in posterior)})", flush=True)
    post.grow_into_bone = grow


if __name__ == "__main__":
    main()
