"""The clinical vocabulary every module shares: level names and order, Bilsky grades, SINS words.

One place for each list, so that a level or grade added here is known to measurement, reports,
evaluation, adapters and phantoms alike (label values live in :mod:`spinelesion.labels`).
"""

from __future__ import annotations

#: Vertebral levels from inferior to superior (S5 ... S1, L5 ... L1, T12 ... T1, C7 ... C1): the
#: order in which ``--lowest-level`` names vertebrae by counting up.
LEVEL_ORDER: tuple[str, ...] = (tuple(f"S{i}" for i in range(5, 0, -1)) + tuple(f"L{i}" for i in range(5, 0, -1))
                                + tuple(f"T{i}" for i in range(12, 0, -1)) + tuple(f"C{i}" for i in range(7, 0, -1)))

#: Mobile-spine vertebrae with S1, superior to inferior (C1 ... S1): what TotalSegmentator labels
#: one by one (its ``vertebrae_*`` classes).
VERTEBRAE_C1_TO_S1: tuple[str, ...] = tuple(reversed(LEVEL_ORDER[4:]))

#: Levels whose shape is not that of a typical vertebra (no body, dens, fused sacrum): their heights
#: are not compared with their neighbours'.
ATYPICAL_LEVELS: tuple[str, ...] = ("C1", "C2", "S1", "S2", "S3", "S4", "S5")

#: Bilsky epidural spinal cord compression grades, mildest first (Bilsky et al., J Neurosurg Spine 2010).
BILSKY_GRADES: tuple[str, ...] = ("0", "1a", "1b", "1c", "2", "3")


def bilsky_rank(grade) -> int:
    """Position of a Bilsky grade in :data:`BILSKY_GRADES` (-1 for None or an unknown grade)."""
    return BILSKY_GRADES.index(str(grade)) if grade is not None and str(grade) in BILSKY_GRADES else -1


def vertebra_name(level: str | None, index: int | None, *, short: bool = False) -> str:
    """A vertebra's name in reports and flags: its level when known, else "vertebra N" (``short``:
    "vN", for tables and overlays), N its index in the record (0 = most inferior found)."""
    if level:
        return str(level)
    return f"v{index}" if short else f"vertebra {index}"


#: SINS vertebral body collapse categories (record values, Fisher et al., Spine 2010) in words for people.
SINS_COLLAPSE_WORDS: dict[str, str] = {
    "over_50pct": "over 50 % collapse",
    "under_50pct": "under 50 % collapse",
    "no_collapse_over_50pct_involved": "no collapse, over 50 % of the body involved",
    "none": "no collapse",
}
