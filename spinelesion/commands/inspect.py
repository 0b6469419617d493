"""``spinelesion inspect PATH``: what the loader sees, without patient data."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="NIfTI/MHA/NRRD file, DICOM file, or folder of DICOM files")
    parser.add_argument("--series-uid", help="SeriesInstanceUID to load when a folder holds several")
    parser.add_argument("--volume", type=int, help="volume index of a 4D image")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run(args: argparse.Namespace) -> int:
    from spinelesion.io.inspect import describe

    info = describe(args.path, series_uid=args.series_uid, volume_index=args.volume)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for series in info.get("series", []):
        mark = "*" if series["series_instance_uid"] == info.get("series_instance_uid") else " "
        print(f"{mark} series {series['series_instance_uid']}  {series['modality'] or '?'}  "
              f"{series['n_files']} files  {series['description']}")
    print(f"{info['source']}: shape {tuple(info['shape'])}, spacing "
          f"{'x'.join(f'{s:.3g}' for s in info['spacing_mm'])} mm, orientation {info['orientation']}, "
          f"modality {info['modality']} ({info['modality_source']}), intensity "
          f"{info['intensity_min']:.6g}..{info['intensity_max']:.6g} "
          f"(p1 {info['intensity_p1']:.6g}, p99 {info['intensity_p99']:.6g})"
          + (" OBLIQUE" if info["oblique"] else ""))
    return 0
