"""Label schema version 1 (docs/contracts.md section 1): one integer map per scan on its own grid."""

from __future__ import annotations

SCHEMA_VERSION = 1

BACKGROUND = 0
VERTEBRAL_BODY = 1
POSTERIOR_ELEMENTS = 2
LESION = 3
SPINAL_CORD = 4
THECAL_SAC = 5
DISC = 6

#: value -> name, in value order.
LABEL_NAMES: dict[int, str] = {
    BACKGROUND: "background",
    VERTEBRAL_BODY: "vertebral_body",
    POSTERIOR_ELEMENTS: "posterior_elements",
    LESION: "lesion",
    SPINAL_CORD: "spinal_cord",
    THECAL_SAC: "thecal_sac",
    DISC: "disc",
}
NUM_CLASSES = len(LABEL_NAMES)

#: RGB colours (0-255) used by overlays and the ITK-SNAP / Slicer colour tables.
LABEL_COLOURS: dict[int, tuple[int, int, int]] = {
    BACKGROUND: (0, 0, 0),
    VERTEBRAL_BODY: (241, 214, 145),
    POSTERIOR_ELEMENTS: (177, 122, 101),
    LESION: (230, 30, 30),
    SPINAL_CORD: (255, 255, 0),
    THECAL_SAC: (80, 160, 255),
    DISC: (111, 184, 210),
}
