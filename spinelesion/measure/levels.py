"""Naming vertebral levels from the anatomy in view: counting up from S1 or down from C2.

A radiologist names levels by counting from a vertebra that names itself: the sacrum (S1, the
lowest mobile-looking body, fused to the sacrum below: no disc under it) or the axis (C2, whose
body carries the dens: no disc above it, with the atlas and skull base above). A label map in
schema v1 shows both without level labels:

- **S1**: no disc of the column's size lies below the lowest vertebra found, and the scan goes on
  below its body for at least ``END_ROOM_MM`` (a disc and a further body would be in view if the
  column went on: discs are 4-12 mm high);
- **C2**: no disc of the column's size lies above the highest vertebra found, the scan goes on
  above it for at least ``END_ROOM_MM``, and its body (with the dens) is at least
  ``DENS_HEIGHT_DEPTH_RATIO`` times as tall as it is deep (C2 with the dens: ~35-40 mm tall, ~15 mm
  deep; every other body is about as tall as deep or less).

Both ends are large bodies: C2 with its dens outweighs C3, S1 is at least as large as L5. An end
body under ``END_MIN_NEIGHBOUR_FRACTION`` of its neighbour's volume is a fragment (a model's piece of
the atlas or the sacrum, split off by a false disc) and names nothing: counted from it, every level
would be one off. S1 is also the largest body of the spine in absolute terms (an adult's 25-45 ml,
a cervical body's 3-8 ml): a lowest body under ``S1_MIN_BODY_ML`` is not S1, whatever lies below it
(pieces of cervical bodies on an axial slab of the neck, with no disc labelled between them, end
such a column as S1 would).

"Of the column's size": at least ``DISC_MIN_FRACTION`` of the median volume of the discs between
the vertebrae found; a rudimentary S1/S2 disc, or a few voxels called disc in the sacrum, are less.
An end body cut at its sides (a sagittal slab narrower than the body) still ends the column; one cut
at its end has no room beyond it.

Counting stops at a gap: where consecutive vertebrae lie over ``GAP_SPACING_FACTOR`` times the
column's median spacing apart, a vertebra is missing (not labelled by the model); where they lie
under ``CROWD_SPACING_FACTOR`` times it, one of them is a fragment (a piece split off by a false
disc), and neither is named. The vertebrae beyond stay unnamed (a note says so).

With both ends in view the counts must agree (C2 to S1 is 24 vertebrae); they disagree with a
transitional lumbosacral vertebra, 11 or 13 thoracic vertebrae, or a level the model missed or
merged: levels are then named from C2 (as whole-spine MRI is read) and a note says so.

Ribs (on CT, found in the image by :mod:`.ribs`; they are not in the label schema) check the count,
and name the levels where neither end does: the thoracolumbar junction is where the ribs stop, so
the lowest rib-bearing vertebra with rib-free ones under it is T12, and the highest with rib-free
ones over it is T1. Each junction must be seen over ``RIB_FREE_MIN`` rib-free vertebrae (T12, L1, L2;
for T1 with two rib-bearing ones: T2, T1, C7, C6) with no gap, and be the only one of its kind;
11 or 13 pairs of ribs (a few per cent of people) shift every name by one, which the note says.
Where names from S1 or C2 and from the ribs disagree, the names from S1 or C2 stay and the note says so. Where nothing in
view fixes the levels, they stay unnamed (v0, v1, ...): ``--lowest-level`` names them.
"""

from __future__ import annotations

import numpy as np

from spinelesion.measure import geometry as G
from spinelesion.measure.column import LevelNaming, Vertebra
from spinelesion.vocabulary import LEVEL_ORDER

#: Scan beyond an end vertebra's body (mm, along the column) that shows the column ends there.
END_ROOM_MM = 20.0

#: Disc volume beyond an end vertebra, as a fraction of the column's median disc, from which the
#: column goes on there.
DISC_MIN_FRACTION = 0.4

#: Spacing of consecutive vertebrae (centroids along the column), over the column's median spacing,
#: from which a vertebra is missing between them.
GAP_SPACING_FACTOR = 1.6

#: Spacing of consecutive vertebrae, over the column's median spacing, under which one of them is a
#: fragment (a piece of a vertebra split off by a false disc): counting stops there too.
CROWD_SPACING_FACTOR = 0.6

#: Smallest body volume of an end vertebra (C2, S1), as a fraction of its neighbour's.
END_MIN_NEIGHBOUR_FRACTION = 0.8

#: Smallest labelled body volume (ml) of a lowest vertebra named S1: under a third of a small adult
#: S1 (a model may label only part of it: 21 ml of the example CT's S1), over any cervical body.
S1_MIN_BODY_ML = 8.0

#: Height over AP depth of a body from which it is C2 with its dens.
DENS_HEIGHT_DEPTH_RATIO = 1.5

#: Namings the ribs check or replace (not the label map's own levels, nor a level the user gave).
RIB_CHECKED_NAMINGS = ("sacrum", "axis", "none")

#: A rib junction names levels where at least this many rib-free vertebrae (L1 and L2 under T12,
#: C7 and C6 over T1) meet rib-bearing ones with no gap between them: a single rib missed inside a
#: run of ribs would otherwise pass for a junction ...
RIB_FREE_MIN = 2
#: ... and at least this many rib-bearing ones for T1 (T1, T2): the ilium beside S1 can pass for a
#: rib, and S1 under rib-free lumbar vertebrae would otherwise pass for T1 under C7 and C6.
T1_RIBS_MIN = 2


def name_from_lowest(vertebrae: list[Vertebra], lowest_level: str) -> LevelNaming:
    """Name levels upward from the lowest vertebra's given level (e.g. "L5")."""
    _count_up(vertebrae, LEVEL_ORDER.index(lowest_level))
    return LevelNaming("lowest_level", f"levels counted up from the lowest vertebra, given as {lowest_level}")


def name_from_anatomy(vertebrae: list[Vertebra], *, grid: G.Grid, disc_mm: np.ndarray,
                      scan_lo: np.ndarray, scan_hi: np.ndarray, axis: np.ndarray) -> LevelNaming:
    """Name the levels of ``vertebrae`` (inferior -> superior) in place from S1 or C2 where the
    anatomy in view fixes them (module docstring), else leave them None.

    Args:
        grid: the cropped grid the vertebrae's flat indices refer to.
        disc_mm: (N, 3) world points of disc voxels.
        scan_lo, scan_hi: (3,) the whole scan's first and last voxel index in ``grid``'s index
            space (the crop's origin is inside the scan: ``scan_lo`` <= 0).
        axis: (3,) unit column axis, pointing superior.
    """
    if len(vertebrae) < 2:
        return LevelNaming("none", "levels not named: fewer than two vertebrae in view")
    s_disc = disc_mm @ axis
    s_vert = np.array([v.centroid_mm @ axis for v in vertebrae])
    gaps = [np.sum((s_disc > a) & (s_disc < b)) for a, b in zip(s_vert[:-1], s_vert[1:])]
    column_disc = float(np.median(gaps)) if gaps else 0.0  # voxels
    ends = {side: _is_end(v, side, grid=grid, disc_beyond=int(np.sum(side * (s_disc - v.centroid_mm @ axis) > 0)),
                          column_disc=column_disc, scan_lo=scan_lo, scan_hi=scan_hi, axis=axis)
            for side, v in ((-1, vertebrae[0]), (1, vertebrae[-1]))}
    fragments = [name for side, name, end, neighbour in ((-1, "lowest", vertebrae[0], vertebrae[1]),
                                                         (1, "highest", vertebrae[-1], vertebrae[-2]))
                 if ends[side] and not _not_a_fragment(end, neighbour)]
    small_s1 = ends[-1] and _body_ml(vertebrae[0], grid) < S1_MIN_BODY_ML
    s1 = ends[-1] and "lowest" not in fragments and not small_s1
    c2 = ends[1] and "highest" not in fragments and _tall(vertebrae[-1], grid)
    s1_rank, c2_rank = LEVEL_ORDER.index("S1"), LEVEL_ORDER.index("C2")
    gap = _gaps(vertebrae, axis)
    if c2:
        first = int(np.flatnonzero(gap)[-1]) + 1 if gap.any() else 0  # lowest vertebra counted from C2
        _count_up(vertebrae, c2_rank - (len(vertebrae) - 1), first=first, skip=_crowded(vertebrae, axis))
        detail = "levels counted down from C2 (the top body carries the dens, no disc above it, the scan goes on above)"
        if first:
            detail += (f"; a vertebra is missing or split below {vertebrae[first].level}: the {first} below it "
                       "are unnamed")
        elif s1 and len(vertebrae) != c2_rank - s1_rank + 1:
            detail += (f"; counting up from S1 would disagree by {len(vertebrae) - (c2_rank - s1_rank + 1):+d} "
                       "(a transitional vertebra, or a level missed or merged): check the levels")
        return LevelNaming("axis", detail)
    if s1:
        last = int(np.flatnonzero(gap)[0]) if gap.any() else len(vertebrae) - 1  # highest counted from S1
        _count_up(vertebrae, s1_rank, last=last, skip=_crowded(vertebrae, axis))
        detail = "levels counted up from S1 (no disc below the lowest body, the scan goes on below)"
        if last < len(vertebrae) - 1:
            detail += (f"; a vertebra is missing or split above {vertebrae[last].level}: "
                       f"the {len(vertebrae) - 1 - last} above it are unnamed")
        return LevelNaming("sacrum", detail)
    if small_s1 and not fragments:
        return LevelNaming("none", f"levels not named: the lowest body ends the column but holds "
                                   f"{_body_ml(vertebrae[0], grid):.1f} ml, less than any adult S1 "
                                   f"({S1_MIN_BODY_ML:g} ml); give --lowest-level to name them")
    if fragments:
        return LevelNaming("none", f"levels not named: the {' and the '.join(fragments)} body ends the column but is "
                                   "smaller than its neighbour (a fragment, or an end vertebra only partly labelled); "
                                   "give --lowest-level to name them")
    return LevelNaming("none", "levels not named: neither S1 nor C2 is in view (give --lowest-level to name them)")


def with_ribs(vertebrae: list[Vertebra], naming: LevelNaming, bearing: list[bool | None] | None, *,
              axis: np.ndarray) -> LevelNaming:
    """Check the names from S1 or C2 against the ribs, or name the levels from the ribs where
    nothing else did (module docstring). ``bearing``: whether each vertebra (inferior -> superior)
    bears a rib (None: cannot tell), from :func:`.ribs.rib_bearing`; None where the ribs were not
    looked at."""
    if bearing is None or naming.method not in RIB_CHECKED_NAMINGS:
        return naming
    gap = _gaps(vertebrae, axis)
    anchors = _rib_anchors(bearing, gap)
    if not anchors:
        if naming.method == "none":
            return LevelNaming("none", f"{naming.detail}; the CT was looked at for ribs: no place in view where they "
                                       "stop or start")
        return naming
    if len(anchors) == 2:
        (i12, _), (i1, _) = sorted(anchors.items())
        if i1 - i12 != LEVEL_ORDER.index("T1") - LEVEL_ORDER.index("T12") or gap[i12:i1].any():
            detail = (f"the ribs (CT) give T12 at v{i12} and T1 at v{i1}, not 12 vertebrae apart "
                      "(11 or 13 pairs of ribs, or a level missed or merged)")
            if naming.method == "none":
                return LevelNaming("none", f"levels not named: {detail}")
            return LevelNaming(naming.method, f"{naming.detail}; {detail}: check the levels")
    index, level = min(anchors.items())  # T12 (the lower one) where both are in view and agree
    if naming.method != "none":
        named = vertebrae[index].level
        if named is None:  # beyond a gap or in a crowded pair: nothing to check
            return naming
        if named == level:
            return LevelNaming(naming.method, f"{naming.detail}; the ribs (CT, on {_listed(vertebrae, bearing)}) "
                                              f"agree: {level} is where they {'stop' if level == 'T12' else 'start'}")
        return LevelNaming(naming.method, f"{naming.detail}; the ribs (CT) disagree: the vertebra they make {level} "
                                          f"is named {named} (11 or 13 pairs of ribs, a transitional "
                                          "vertebra, or a level missed or merged): check the levels")
    first = int(np.flatnonzero(gap[:index])[-1]) + 1 if gap[:index].any() else 0
    last = index + int(np.flatnonzero(gap[index:])[0]) if gap[index:].any() else len(vertebrae) - 1
    crowded = _crowded(vertebrae, axis)
    _count_up(vertebrae, LEVEL_ORDER.index(level) - index, first=first, last=last, skip=crowded)
    if level == "T12":
        where, variant = "the lowest vertebra with ribs, rib-free ones below", "11 or 13 pairs of ribs"
    else:
        where, variant = "the highest vertebra with ribs, rib-free ones above", "a cervical rib on C7"
    detail = f"levels counted from {level}, {where} (ribs found on the CT; {variant} would shift every name by one)"
    if first or last < len(vertebrae) - 1 or crowded.any():
        detail += ("; vertebrae beyond a gap (a vertebra missing or split) and pieces too close to tell apart "
                   "are unnamed")
    return LevelNaming("ribs", f"{detail}; ribs on {_listed(vertebrae, bearing)}")


def _listed(vertebrae: list[Vertebra], bearing: list[bool | None]) -> str:
    """The rib-bearing vertebrae by name (v<index> where unnamed), for the record's sentence."""
    return ", ".join(v.level or f"v{v.index}" for v, b in zip(vertebrae, bearing) if b is True)


def _rib_anchors(bearing: list[bool | None], gap: np.ndarray) -> dict[int, str]:
    """{vertebra index: "T12" or "T1"} where the ribs stop (T12) or start (T1), each seen over
    ``RIB_FREE_MIN`` rib-free vertebrae (and ``T1_RIBS_MIN`` rib-bearing ones for T1) without a gap;
    nothing where a kind of junction is seen twice or T1 lies under T12 (something else passed for a rib)."""
    found: dict[str, list[int]] = {"T12": [], "T1": []}
    n = len(bearing)
    for i in range(n):
        if bearing[i] is not True:
            continue
        for level, step in (("T12", -1), ("T1", 1)):  # the rib-free side: below T12, above T1
            free = _run(bearing, gap, i + step, step, False)
            ribs = _run(bearing, gap, i, -step, True)
            if free >= RIB_FREE_MIN and ribs >= (T1_RIBS_MIN if level == "T1" else 1):
                found[level].append(i)
    if len(found["T12"]) > 1 or len(found["T1"]) > 1:
        return {}  # two junctions of one kind: something else passes for a rib, so no junction is trusted
    anchors = {ids[0]: level for level, ids in found.items() if ids}
    if len(anchors) == 2 and found["T1"][0] < found["T12"][0]:
        return {}  # T1 under T12
    return anchors


def _run(bearing: list[bool | None], gap: np.ndarray, start: int, step: int, value: bool) -> int:
    """How many vertebrae from ``start`` on, stepping by ``step``, have ``bearing is value`` with no gap
    between them (and between the first and the one before it); an undecided one (None) ends the run."""
    count, i = 0, start
    while 0 <= i < len(bearing) and bearing[i] is value:
        prev = i - step
        if 0 <= prev < len(bearing) and gap[min(prev, i)]:
            break
        count += 1
        i += step
    return count


def _gaps(vertebrae: list[Vertebra], axis: np.ndarray) -> np.ndarray:
    """(N - 1,) bool: gap[i] where vertebrae i and i + 1 lie over ``GAP_SPACING_FACTOR`` times the
    column's median spacing apart (a vertebra missing between them) or too close (a fragment):
    counting stops there."""
    far, close = _spacing_flags(vertebrae, axis)
    return far | close


def _crowded(vertebrae: list[Vertebra], axis: np.ndarray) -> np.ndarray:
    """(N,) bool: both vertebrae of each pair too close (which of the two is the fragment cannot be
    told: neither is named)."""
    close = _spacing_flags(vertebrae, axis)[1]
    out = np.zeros(len(vertebrae), bool)
    out[:-1] |= close
    out[1:] |= close
    return out


def _spacing_flags(vertebrae: list[Vertebra], axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N - 1,) bool pairs (far, close): consecutive vertebrae over ``GAP_SPACING_FACTOR`` or under
    ``CROWD_SPACING_FACTOR`` times the column's median spacing along ``axis`` apart."""
    spacing = np.diff([v.centroid_mm @ axis for v in vertebrae])
    if spacing.size == 0:
        return np.zeros(0, bool), np.zeros(0, bool)
    median = float(np.median(spacing))
    return spacing > GAP_SPACING_FACTOR * median, spacing < CROWD_SPACING_FACTOR * median


def _count_up(vertebrae: list[Vertebra], lowest_rank: int, *, first: int = 0, last: int | None = None,
              skip: np.ndarray | None = None) -> None:
    """Name vertebrae ``first`` to ``last`` (indices, inclusive) by rank from the lowest's; the
    others, those ``skip`` marks (N,) and ranks past C1 None."""
    last = len(vertebrae) - 1 if last is None else last
    for v in vertebrae:
        k = lowest_rank + v.index
        named = first <= v.index <= last and 0 <= k < len(LEVEL_ORDER) and not (skip is not None and skip[v.index])
        v.level = LEVEL_ORDER[k] if named else None


def _is_end(v: Vertebra, side: int, *, grid: G.Grid, disc_beyond: int, column_disc: float,
            scan_lo: np.ndarray, scan_hi: np.ndarray, axis: np.ndarray) -> bool:
    """Whether vertebra ``v`` ends the column on ``side`` (+1 superior, -1 inferior): under
    ``DISC_MIN_FRACTION`` of the column's median disc (``column_disc`` voxels) beyond its centre
    (``disc_beyond`` voxels), and at least ``END_ROOM_MM`` of scan beyond its body."""
    if v.body_idx.size < 30 or disc_beyond >= DISC_MIN_FRACTION * column_disc:
        return False
    s_body = (v.body_points(grid) - v.centroid_mm) @ axis
    edge = float(s_body.max() if side > 0 else s_body.min())
    return _room_mm(v.centroid_mm, side * axis, grid=grid, scan_lo=scan_lo, scan_hi=scan_hi) - abs(edge) >= END_ROOM_MM


def _body_ml(v: Vertebra, grid: G.Grid) -> float:
    """Volume (ml) of vertebra ``v``'s body and lesion voxels (a body a tumour has replaced stays large)."""
    return (v.body_idx.size + v.lesion_idx.size) * abs(float(np.linalg.det(grid.affine[:3, :3]))) / 1000.0


def _not_a_fragment(end: Vertebra, neighbour: Vertebra) -> bool:
    """Whether the end body holds at least ``END_MIN_NEIGHBOUR_FRACTION`` of its neighbour's voxels."""
    return end.body_idx.size >= END_MIN_NEIGHBOUR_FRACTION * neighbour.body_idx.size


def _room_mm(point_mm: np.ndarray, direction: np.ndarray, *, grid: G.Grid, scan_lo: np.ndarray,
             scan_hi: np.ndarray) -> float:
    """Distance (mm) from ``point_mm`` along unit ``direction`` to where the ray leaves the scan."""
    inv = np.linalg.inv(grid.affine[:3, :3])
    q = inv @ (point_mm - grid.affine[:3, 3])
    d = inv @ direction  # voxels per mm
    t = np.inf
    for qi, di, lo, hi in zip(q, d, scan_lo - 0.5, scan_hi + 0.5):
        if di > 1e-9:
            t = min(t, (hi - qi) / di)
        elif di < -1e-9:
            t = min(t, (lo - qi) / di)
    return float(max(t, 0.0))


def _tall(v: Vertebra, grid: G.Grid) -> bool:
    """Whether the body is at least ``DENS_HEIGHT_DEPTH_RATIO`` times as tall as deep (C2 with its
    dens), from its 1st-99th percentile extents along its own superior and anterior axes."""
    rel = v.body_points(grid) - v.centroid_mm
    height = np.subtract(*np.percentile(rel @ v.superior, [99, 1]))
    depth = np.subtract(*np.percentile(rel @ v.anterior, [99, 1]))
    return bool(depth > 0 and height >= DENS_HEIGHT_DEPTH_RATIO * depth)
