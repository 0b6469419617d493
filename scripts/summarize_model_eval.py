"""Print the model card's tables from a `scripts/evaluate_model.sh` (or `evaluate_real.sh`) work folder.

    python scripts/summarize_model_eval.py WORK_DIR

Reads only what `spinelesion evaluate` and evaluate_real.sh wrote (cases.csv, summary.json,
flags.txt): cord Dice per real MRI, the example CT's vertebra/body/disc Dice, false lesions and
compression flags on the healthy scans, and, when present, the phantom and held-out family tables.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

CLASSES = ("vertebral_body", "posterior_elements", "lesion", "spinal_cord", "thecal_sac", "disc")


def _dice(work: Path, name: str, cls: str) -> str:
    rows = [r for r in csv.DictReader(open(work / name / "cases.csv")) if r["class"] == cls and r["dice"]]
    return ", ".join(f"{float(r['dice']):.2f}" for r in rows) or "-"


def real(work: Path) -> None:
    cord = [r for r in csv.DictReader(open(work / "eval_cord" / "cases.csv")) if r["class"] == "spinal_cord"]
    dice = [float(r["dice"] or 0) for r in cord]
    print("| scan | cord Dice |\n|---|---|")
    for r, d in zip(cord, dice):
        print(f"| {r['case']} | {d:.2f} |")
    print(f"| mean of {len(dice)} | {sum(dice) / len(dice):.2f} |\n")
    print(f"example CT: vertebra Dice {_dice(work, 'eval_ct_vertebra', 'vertebra')}, body "
          f"{_dice(work, 'eval_ct_body_disc', 'vertebral_body')}, disc {_dice(work, 'eval_ct_body_disc', 'disc')}\n")
    big, flagged, graded, lines = 0, 0, 0, (work / "flags.txt").read_text().splitlines()
    for line in lines:
        m = re.search(r">= 5 mm: (\d+)\), compression (\w+)", line)
        big += int(m.group(1))
        flagged += m.group(2) == "True"
        g = re.search(r"Genant >= 1: (\d+)", line)   # flags.txt of session 9 on
        graded += int(g.group(1)) if g else 0
    print(f"healthy scans: {big} lesions of 5 mm or more on {len(lines)} scans, compression flagged on {flagged}, "
          f"{graded} vertebrae given a Genant grade (a false fracture)\n")


def _cell(summary: dict, cls: str) -> str:
    d = (summary["segmentation"].get(cls) or {}).get("dice") or {}
    return "-" if d.get("value") is None else f"{d['value']:.2f}"


def grouped(path: Path, title: str) -> None:
    s = json.loads(path.read_text())
    groups = {"all": s["all"], **s.get("groups", {})}
    print(f"{title}\n\n| group (cases) | " + " | ".join(CLASSES) + " | lesion sensitivity | FP / scan |")
    print("|---" * (len(CLASSES) + 3) + "|")
    for name, g in groups.items():
        les = g["lesions"]
        sens = les["sensitivity"]["value"]
        print(f"| {name} ({g['n_cases']}) | " + " | ".join(_cell(g, c) for c in CLASSES)
              + f" | {'-' if sens is None else f'{sens:.2f}'} ({les['tp']}/{les['reference_lesions']}) "
              f"| {les['fp_per_scan']['value']:.2f} |")
    print()


def holdout(work: Path, *, unseen_family: str = "stir") -> None:
    """The held-out appearance criterion: per class, Dice of the unseen family (thin slices), of the unseen
    thickness (seen families, 5-7 mm) and, when evaluated, of the unseen field of view (seen families, 1-4 mm,
    slabs of 20-40 mm across the column) against the seen families at 1-4 mm; a loss over 0.05 fails."""
    thin = json.loads((work / "ho_thin_eval" / "summary.json").read_text())["groups"]
    thick = json.loads((work / "ho_thick_eval" / "summary.json").read_text())["groups"]
    slab_path = work / "ho_slab_eval" / "summary.json"
    slab = json.loads(slab_path.read_text())["groups"] if slab_path.exists() else None
    seen = [g for name, g in thin.items() if name != unseen_family]

    def dice(g: dict, cls: str) -> float | None:
        return ((g["segmentation"].get(cls) or {}).get("dice") or {}).get("value")

    def mean(groups: list, cls: str) -> float | None:
        values = [v for v in (dice(g, cls) for g in groups) if v is not None]
        return sum(values) / len(values) if values else None

    rows = {"seen families, 1-4 mm": lambda c: mean(seen, c),
            f"{unseen_family} (unseen), 1-4 mm": lambda c: dice(thin[unseen_family], c),
            "seen families, 5-7 mm (unseen)": lambda c: mean([g for n, g in thick.items() if n != unseen_family], c),
            f"{unseen_family}, 5-7 mm (both unseen)": lambda c: dice(thick[unseen_family], c)}
    if slab is not None:
        rows["seen families, 1-4 mm, 20-40 mm slab (unseen)"] = \
            lambda c: mean([g for n, g in slab.items() if n != unseen_family], c)
    print("Held-out appearance (Dice, mean over families):\n\n| images | " + " | ".join(CLASSES) + " |")
    print("|---" * (len(CLASSES) + 1) + "|")
    base = {c: rows["seen families, 1-4 mm"](c) for c in CLASSES}
    for name, fn in rows.items():
        cells = []
        for c in CLASSES:
            v = fn(c)
            gap = "" if v is None or base[c] is None or name == "seen families, 1-4 mm" else f" ({v - base[c]:+.2f})"
            cells.append("-" if v is None else f"{v:.2f}{gap}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()


def main(work: Path) -> None:
    real_dir = work / "real" if (work / "real" / "flags.txt").exists() else work
    if (real_dir / "flags.txt").exists():
        real(real_dir)
    if (work / "ph_eval" / "summary.json").exists():
        grouped(work / "ph_eval" / "summary.json", "Phantoms of the classic renderer:")
    if (work / "st_eval" / "summary.json").exists():
        grouped(work / "st_eval" / "summary.json", "Held-out family test set:")
    if (work / "ho_thick_eval" / "summary.json").exists():
        holdout(work)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
