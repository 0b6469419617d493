"""Height loss against phantom truth, per vertebra (issue 17's targets).

Runs ``measure_labels`` on the exact label maps of ``make_phantom(seed=s, modality=m)`` and
compares each vertebra's height loss with the truth (loss of the smallest of the three heights
against the vertebra's own undeformed height). Prints, per modality and in all:
- mean / max abs error of the height loss (points), all vertebrae and collapsed ones;
- false loss on intact vertebrae (truth 0): max, and how many read over 5 points;
- fracture (loss >= 20 %) sensitivity and specificity;
- issue 17's per-vertebra target: within max(5 points, one voxel step along the column's axis as a
  percentage of the vertebra's undeformed height);
- the misses, with their position in the column (end vertebra, beside a collapsed one).

Run: python benchmarks/height_loss.py --modalities ct,t2 --seeds 200-239 [--cache DIR]
(``--cache`` keeps the rendered phantoms as pickles: rendering takes 4-6 s each, measuring 0.1 s.)
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np


def _phantom(modality: str, seed: int, cache: Path | None) -> dict:
    path = None if cache is None else cache / f"{modality}_{seed}.pkl"
    if path is not None and path.exists():
        with open(path, "rb") as f:
            return pickle.load(f)
    from spinelesion.data.phantoms import make_phantom

    ph = make_phantom(seed=seed, modality=modality)
    out = {"labels": ph.labels, "affine": ph.scan.affine, "truth": ph.truth, "params": ph.params,
           "image": ph.scan.array.astype(np.float32), "modality": ph.scan.modality}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            pickle.dump(out, f)
    return out


def rows_for(ph: dict, record: dict, tag: str) -> list[dict]:
    from spinelesion.measure import geometry as G

    truth = ph["truth"]["vertebrae"]
    step = G.step_along_mm(np.asarray(record["column"]["axis"], float), ph["affine"])
    collapsed = [t["collapse_kind"] != "none" for t in truth]
    out = []
    for k, (m, t) in enumerate(zip(record["vertebrae"], truth)):
        if m["height_loss_pct"] is None:
            continue
        err = m["height_loss_pct"] - t["height_loss_pct"]
        out.append({"case": tag, "level": t["level"], "kind": t["collapse_kind"], "truth": t["height_loss_pct"],
                    "measured": m["height_loss_pct"], "error": err,
                    "allowed": max(5.0, 100.0 * step / t["height_undeformed_mm"]),
                    "end": k in (0, len(truth) - 1),
                    "beside_collapsed": any(collapsed[j] for j in (k - 1, k + 1) if 0 <= j < len(truth)),
                    "method": m.get("height_loss_comparison"), "confidence": m.get("height_loss_confidence")})
    return out


def summary(rows: list[dict], title: str) -> str:
    if not rows:
        return f"{title}: no vertebrae"
    err = np.array([r["error"] for r in rows])
    truth = np.array([r["truth"] for r in rows])
    meas = np.array([r["measured"] for r in rows])
    intact = np.array([r["kind"] == "none" for r in rows])
    kinds = np.array([r["kind"] for r in rows])
    within = np.abs(err) <= np.array([r["allowed"] for r in rows])
    frac_t, frac_m = truth >= 20, meas >= 20
    lines = [f"{title}: {len(rows)} vertebrae ({(~intact).sum()} collapsed)",
             f"  abs error: mean {np.abs(err).mean():.2f}, max {np.abs(err).max():.1f}; "
             f"collapsed mean {np.abs(err[~intact]).mean() if (~intact).any() else float('nan'):.2f}",
             f"  intact false loss: max {meas[intact].max():.1f}, >5: {(meas[intact] > 5).sum()}, "
             f"mean {meas[intact].mean():.2f}",
             f"  fracture >=20: sensitivity {(frac_m & frac_t).sum()}/{frac_t.sum()}, "
             f"specificity {(~frac_m & ~frac_t).sum()}/{(~frac_t).sum()}",
             "  by kind (mean abs error, n): " + ", ".join(
                 f"{k} {np.abs(err[kinds == k]).mean():.2f} ({(kinds == k).sum()})" for k in sorted(set(kinds))),
             f"  within max(5, one slice): {within.sum()}/{len(rows)}; within 5: {(np.abs(err) <= 5).sum()}/{len(rows)}"]
    return "\n".join(lines)


def main(argv=None) -> None:
    from spinelesion.measure import measure_labels

    p = argparse.ArgumentParser()
    p.add_argument("--modalities", default="ct,t2")
    p.add_argument("--seeds", default="200-239")
    p.add_argument("--cache", type=Path, default=None)
    p.add_argument("--misses", action="store_true", help="list every vertebra off by more than its allowance")
    p.add_argument("--collapsed", action="store_true", help="list every collapsed vertebra too")
    args = p.parse_args(argv)
    lo, hi = (int(x) for x in args.seeds.split("-"))
    every = []
    for modality in args.modalities.split(","):
        rows = []
        for seed in range(lo, hi + 1):
            ph = _phantom(modality, seed, args.cache)
            record = measure_labels(labels=ph["labels"], affine=ph["affine"], image=ph["image"],
                                    modality=ph["modality"])
            rows += rows_for(ph, record, f"{modality} {seed}")
        print(summary(rows, modality))
        every += rows
    print(summary(every, "all"))
    if args.misses:
        for r in every:
            if abs(r["error"]) > r["allowed"] or (r["kind"] == "none" and r["measured"] > 5) or (
                    args.collapsed and r["kind"] != "none"):
                print(f"  {r['case']} {r['level']}: {r['kind']} truth {r['truth']:.1f} read {r['measured']:.1f} "
                      f"(allowed {r['allowed']:.1f}; end {r['end']}, beside collapsed {r['beside_collapsed']}, "
                      f"{r['method']}, {r['confidence']})")


if __name__ == "__main__":
    main()
