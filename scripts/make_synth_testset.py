#!/usr/bin/env python3
"""Render held-out tissue maps with each appearance family: a test set for `spinelesion evaluate --by`.

    python scripts/make_synth_testset.py --data runs/tissue_ct --out runs/synth_test [--families ct t1 t2 stir t2star random]
        [--slice-mm LO HI] [--slab-mm LO HI] [--no-renderer]

For each 'validation' case of a tissue dataset (`spinelesion synth --context`; never trained on), writes
OUT/images/<case>__<family>.nii.gz (synthesised at the tissue map's own grid), OUT/labels/<same name>
(the case's labels), OUT/truth/<same name>.json, and OUT/groups.csv (case,group = family) for --by. The
rendered image of the classic phantom renderer (an appearance no family draws) is added as family
"renderer" (unless --no-renderer). --slice-mm gives every image a thick-slice axis drawn from that range (slice
thickness as a held-out condition); by default the synthesis' own ranges. --slab-mm crops every image and label map
to a slab across the column (LO-HI mm along the map's longest axis, centred on a vertebral-body voxel drawn at
random): a field of view that training never draws (the gm_challenge kind of scan); truth files are left out
then (they describe the whole column). Seeded: the same call writes the same files.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, action="append")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--families", nargs="+", default=["ct", "t1", "t2", "stir", "t2star", "random"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slice-mm", type=float, nargs=2, metavar=("LO", "HI"),
                        help="every image has a thick-slice axis of LO-HI mm (default: the synthesis' ranges)")
    parser.add_argument("--slab-mm", type=float, nargs=2, metavar=("LO", "HI"),
                        help="crop to a slab of LO-HI mm across the column (a held-out field of view)")
    parser.add_argument("--no-renderer", action="store_true", help="leave out the classic renderer's image")
    args = parser.parse_args(argv)
    import nibabel as nib
    import numpy as np
    import torch

    from spinelesion.io.load import load_scan
    from spinelesion.io.save import save_image, save_labels
    from spinelesion.synthesis.appearance import AppearanceSettings, draw_appearance, render

    for sub in ("images", "labels", "truth"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    ranges = {} if args.slice_mm is None else {"slice_mm": tuple(args.slice_mm), "slice_prob": 1.0}
    rows = []
    for root in args.data:
        datalist = json.loads((root / "dataset.json").read_text())
        for k, entry in enumerate(datalist.get("validation", [])):
            name = Path(entry["image"]).name.removesuffix(".nii.gz")
            tissue_img = nib.load(root / entry["tissue"])
            tissue = torch.as_tensor(np.asarray(tissue_img.dataobj).astype(np.int64))[None]
            like = load_scan(root / entry["image"])
            labels = np.asarray(nib.load(root / entry["label"]).dataobj)
            outputs = {} if args.no_renderer else {"renderer": like.array}
            for j, family in enumerate(args.families):
                gen = torch.Generator().manual_seed(args.seed * 1000 + k * 10 + j)
                appearance = draw_appearance(gen, settings=AppearanceSettings(families={family: 1.0}, **ranges))
                image = render(tissue, appearance=appearance, spacing_mm=like.spacing_mm)[0].numpy()
                outputs[family] = image * 1000.0          # a 0..1000 "MR-like" range; CT-like values are not HU
            box, affine = (slice(None),) * 3, like.affine
            if args.slab_mm is not None:
                box, affine = _slab(labels, affine=like.affine, spacing_mm=like.spacing_mm, slab_mm=args.slab_mm,
                                    rng=np.random.default_rng(args.seed * 1000 + k))
            for family, array in outputs.items():
                case = f"{name}__{family}"
                scan = like.__class__(array=np.ascontiguousarray(np.asarray(array, np.float32)[box]), affine=affine,
                                      modality="CT" if family in ("ct",) or (family == "renderer" and like.modality == "CT") else "MR")
                save_image(scan, path=args.out / "images" / f"{case}.nii.gz", dtype=np.float32)
                save_labels(np.ascontiguousarray(labels[box]), like=scan, path=args.out / "labels" / f"{case}.nii.gz")
                if args.slab_mm is None:
                    shutil.copy(root / entry["truth"], args.out / "truth" / f"{case}.json")
                rows.append({"case": case, "group": family})
    with open(args.out / "groups.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["case", "group"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} images to {args.out}")
    return 0


def _slab(labels, *, affine, spacing_mm, slab_mm, rng):
    """(index box, affine of the box's first voxel): a slab of ``slab_mm`` (LO, HI) drawn uniformly,
    across the longest physical axis of (X, Y, Z) ``labels``, centred on a random vertebral-body voxel."""
    import numpy as np

    from spinelesion.measure.geometry import cropped_affine

    spacing = np.asarray(spacing_mm, float)
    axis = int(np.argmax(np.asarray(labels.shape) * spacing))
    body = np.argwhere(labels == 1)
    centre = int(body[rng.integers(len(body)), axis]) if len(body) else labels.shape[axis] // 2
    half = max(1, int(round(rng.uniform(*slab_mm) / spacing[axis] / 2)))
    box = [slice(0, n) for n in labels.shape]
    box[axis] = slice(max(0, centre - half), min(labels.shape[axis], centre + half))
    return tuple(box), cropped_affine(np.asarray(affine, float), tuple(box))


if __name__ == "__main__":
    sys.exit(main())
