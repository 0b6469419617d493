"""What finding the column produces: :class:`Vertebra` and :class:`Column`, and the working points
(:class:`VertebraPoints`) that :mod:`.canal` and :mod:`.vertebrae` pass between them while finding it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spinelesion.measure import geometry as G

DEFAULT_CANAL_HALF_WIDTH_MM = 8.0


@dataclass
class Vertebra:
    """One vertebra in a cropped label volume. Index arrays are flat indices into that volume;
    frame vectors are unit RAS+ directions; ``*_rel_mm`` are anterior offsets from the canal centre."""

    index: int
    level: str | None
    body_idx: np.ndarray
    posterior_idx: np.ndarray
    lesion_idx: np.ndarray
    superior: np.ndarray
    anterior: np.ndarray
    right: np.ndarray
    centroid_mm: np.ndarray
    canal_centre_mm: np.ndarray | None = None
    canal_source: str = "none"
    canal_half_width_mm: float = DEFAULT_CANAL_HALF_WIDTH_MM
    bony_canal_half_width_mm: float | None = None  # the bony canal's, also where its ring is open
    canal_front_rel_mm: float | None = None
    body_back_rel_mm: float | None = None
    truncated: bool = False
    _body_mm: tuple | None = field(default=None, repr=False, compare=False)

    def body_points(self, grid: G.Grid) -> np.ndarray:
        """(N, 3) RAS+ mm of ``body_idx`` on ``grid``, computed once for each ``body_idx`` array and
        grid (five steps read every body's points; each conversion costs as much as a pass)."""
        cached = self._body_mm
        if (cached is None or cached[0] is not self.body_idx or cached[1] != grid.shape
                or not np.array_equal(cached[2], grid.affine)):
            cached = (self.body_idx, grid.shape, grid.affine.copy(), grid.points(self.body_idx))
            self._body_mm = cached
        return cached[3]


@dataclass(frozen=True)
class LevelNaming:
    """How a record's levels were named: ``method`` one of "label_map" (the map's own level
    labels), "lowest_level" (given by the user), "sacrum" (counted up from S1), "axis" (counted
    down from C2), "ribs" (counted from T12 or T1, where a CT's ribs stop or start), "none"; ``detail``:
    the sentence saying why."""

    method: str
    detail: str

    def as_record(self) -> dict:
        return {"method": self.method, "detail": self.detail}


@dataclass
class Column:
    """The vertebrae found (inferior -> superior), the column's unit axis (superior), how the column
    was split (``method``), notes, and how its levels were named (``naming``: a
    :class:`LevelNaming`, None where nothing was found)."""

    vertebrae: list[Vertebra]
    axis: np.ndarray
    method: str
    notes: list[str] = field(default_factory=list)
    naming: LevelNaming | None = None


@dataclass(frozen=True)
class VertebraPoints:
    """Working state of one vertebra while the column is being found (not part of the result).

    ``merged_idx``: flat indices (crop) of bone labelled "vertebra" (body and posterior elements
    not told apart) in the vertebra's slab; ``canal_mm`` (N, 3): world points of cord/sac voxels
    in the slab; ``bone_mm`` (M, 3): world points of its bone.
    """

    merged_idx: np.ndarray
    canal_mm: np.ndarray
    bone_mm: np.ndarray

    @property
    def label_centre_mm(self) -> np.ndarray | None:
        """(3,) centre of the cord/sac labels in the slab, or None with fewer than 20 voxels."""
        return G.centroid(self.canal_mm) if len(self.canal_mm) >= 20 else None
