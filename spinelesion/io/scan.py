"""The in-memory scan: voxels, their world geometry and PHI-free metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Flips of the first two world axes that turn DICOM/ITK LPS+ coordinates into RAS+ (the world of a
#: :class:`Scan`), and back (it is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True, kw_only=True)
class DicomReference:
    """What a DICOM SEG needs to reference its source series (no patient data).

    ``slice_files[k]`` is the file whose pixels are ``Scan.array[:, :, k]`` for a classic series;
    a multi-frame source has a single file and ``frame_numbers`` (1-based) per ``k``.
    """

    study_instance_uid: str
    series_instance_uid: str
    slice_files: tuple[Path, ...]
    frame_numbers: tuple[int, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class Scan:
    """One 3D scan.

    Attributes:
        array: (X, Y, Z) float32 voxels, in the source's own voxel order (CT in HU).
        affine: (4, 4) float64 map from voxel indices (i, j, k, 1) to RAS+ world millimetres.
        modality: "CT", "MR" or None when the source does not say.
        source: plain description of where it came from (format and file name), no PHI.
        dicom: references a DICOM SEG needs, for DICOM sources only.
    """

    array: np.ndarray
    affine: np.ndarray
    modality: str | None = None
    source: str = ""
    dicom: DicomReference | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Scan.array must be 3D, got shape {self.array.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"Scan.affine must be 4x4, got {self.affine.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along each array axis, in mm (column norms of the affine)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def orientation(self) -> str:
        """Axis codes such as "RAS", "LPS" or "PSR" (nearest to each voxel axis)."""
        import nibabel as nib

        return "".join(nib.aff2axcodes(self.affine))

    @property
    def voxel_volume_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0
