"""``spinelesion measure``: measure vertebrae, lesions and cord compression from a label map."""

from __future__ import annotations

import argparse
import json

from spinelesion.record_types import MeasurementRecord


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", required=True, help="the scan (NIfTI/MHA/NRRD file or DICOM folder)")
    parser.add_argument("--labels", required=True, help="label map on the image's grid")
    parser.add_argument("--label-map", default=None,
                        help="schema of the labels: schema (default), vertebra, cord, totalsegmentator, "
                             "or a JSON mapping file")
    parser.add_argument("--lowest-level", default=None, help="level of the lowest vertebra, e.g. L5, to name levels (default: counted from "
                        "S1 or C2 where the label map shows either end of the column)")
    parser.add_argument("--min-lesion-mm3", type=float, default=None, help="smallest lesion kept (mm^3, default 30)")
    parser.add_argument("--out", required=True, help="output JSON record (written atomically)")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from spinelesion.io.atomic import write_text_atomic
    from spinelesion.measure import MeasureSettings, measure_files

    settings = MeasureSettings()
    if args.min_lesion_mm3 is not None:
        settings = dataclasses.replace(settings, min_lesion_mm3=args.min_lesion_mm3)
    record = measure_files(image_path=args.image, labels_path=args.labels, label_map=args.label_map,
                           lowest_level=args.lowest_level, settings=settings)
    write_text_atomic(args.out, json.dumps(record, indent=2) + "\n")
    print(format_summary(MeasurementRecord.from_json(record)))
    print(f"record written to {args.out}")
    return 0


def format_summary(record: MeasurementRecord) -> str:
    """Flags, then one line per vertebra (inferior -> superior), how levels were named, and the cord figures."""
    lines = [f"flag: {f}" for f in record.flags] or ["flag: none"]
    if record.vertebrae:
        lines.append(f"{'vertebra':<10}{'destr %':>8}{'Ha':>7}{'Hm':>7}{'Hp':>7}{'loss %':>8}{'Genant':>7}  SINS collapse")
        for v in record.vertebrae:
            cell = lambda x, f="{:.1f}": "-" if x is None else f.format(x)  # noqa: E731
            lines.append(f"{v.short_name:<10}{cell(v.body_destruction_pct):>8}"
                         f"{cell(v.height_anterior_mm):>7}{cell(v.height_middle_mm):>7}"
                         f"{cell(v.height_posterior_mm):>7}{cell(v.height_loss_pct):>8}"
                         f"{cell(v.genant_grade, '{}'):>7}  {v.sins_collapse_words or '-'}")
    c = record.cord
    lines.append(f"cord: MSCC {c.mscc_pct} %, MCC {c.mcc_pct} %, Bilsky {c.bilsky_grade}, "
                 f"compression {compression_text(c.compression_flag)}")
    return "\n".join(lines)


def compression_text(flag: bool | None) -> str:
    """"YES", "no", or "not measured" (None: never read as a negative finding)."""
    return "not measured" if flag is None else "YES" if flag else "no"
