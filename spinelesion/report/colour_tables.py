"""Colour tables that name the label classes in 3D Slicer and ITK-SNAP.

Formats:
- ITK-SNAP label description file ("Segmentation > Import Label Descriptions"): one line per label,
  ``IDX R G B A VIS MSH "LABEL"`` with R, G, B in 0..255, A (opacity) in 0..1, VIS and MSH 0/1.
- 3D Slicer colour table (``.ctbl``, header ``# Color table file``): one line per label,
  ``value name R G B A`` with all colour components in 0..255 and no spaces in the name
  (Slicer developer guide, "Colors: Color table file format (.txt, .ctbl)").
"""

from __future__ import annotations

from pathlib import Path

from spinelesion.io.atomic import write_text_atomic
from spinelesion.labels import LABEL_COLOURS, LABEL_NAMES, SCHEMA_VERSION

ITKSNAP_FILE_NAME = "labels_itksnap.txt"
SLICER_FILE_NAME = "labels_ColorTable.ctbl"


def itksnap_label_text() -> str:
    """The ITK-SNAP label description file for schema v1, as text."""
    lines = [
        "################################################",
        "# ITK-SnAP Label Description File",
        f"# spinelesion label schema v{SCHEMA_VERSION}",
        "# File format:",
        "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL",
        "# Fields:",
        "#    IDX:   Zero-based index",
        "#    -R-:   Red color component (0..255)",
        "#    -G-:   Green color component (0..255)",
        "#    -B-:   Blue color component (0..255)",
        "#    -A-:   Label transparency (0.00 .. 1.00)",
        "#    VIS:   Label visibility (0 or 1)",
        "#    MSH:   Label mesh visibility (0 or 1)",
        "#  LABEL:   Label description",
        "################################################",
    ]
    for value, name in LABEL_NAMES.items():
        r, g, b = LABEL_COLOURS[value]
        visible = 0 if value == 0 else 1
        opacity = 0 if value == 0 else 1
        lines.append(f"{value:5d} {r:5d} {g:4d} {b:4d} {opacity:8d} {visible:2d} {visible:2d}    \"{name}\"")
    return "\n".join(lines) + "\n"


def slicer_colour_table_text() -> str:
    """The 3D Slicer discrete colour table (.ctbl) for schema v1, as text."""
    lines = ["# Color table file spinelesion_labels_v%d" % SCHEMA_VERSION, f"# {len(LABEL_NAMES)} values"]
    for value, name in LABEL_NAMES.items():
        r, g, b = LABEL_COLOURS[value]
        alpha = 0 if value == 0 else 255
        lines.append(f"{value} {name.replace(' ', '_')} {r} {g} {b} {alpha}")
    return "\n".join(lines) + "\n"


def write_colour_tables(*, out_dir: Path) -> list[Path]:
    """Write the ITK-SNAP label descriptions and the Slicer colour table into ``out_dir``.

    Returns:
        [ITK-SNAP ``labels_itksnap.txt``, Slicer ``labels_ColorTable.ctbl``], written atomically.
    """
    out_dir = Path(out_dir)
    itksnap = out_dir / ITKSNAP_FILE_NAME
    slicer = out_dir / SLICER_FILE_NAME
    write_text_atomic(itksnap, itksnap_label_text())
    write_text_atomic(slicer, slicer_colour_table_text())
    return [itksnap, slicer]
