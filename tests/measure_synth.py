"""Small synthetic spines for the measurement tests: shapes evaluated at voxel centres in world mm.

Anatomy (world RAS mm): the column runs along +z; vertebra k has an elliptic-cylinder body
(width 40, depth 30) centred at (0, 0, z_k), a bony ring behind it around the canal (centre
y = -24), a spinous process, discs between bodies, a thecal sac (radius 7) and a cord (AP 7 mm,
width 10 mm) in the canal. The grid (any orientation, oblique or not) is given by an affine.
"""

from __future__ import annotations

import numpy as np

BODY_HEIGHT_MM = 20.0
DISC_MM = 6.0
CANAL_Y = -24.0


def rotation(deg_x: float = 0.0, deg_y: float = 0.0, deg_z: float = 0.0) -> np.ndarray:
    ax, ay, az = np.radians([deg_x, deg_y, deg_z])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def grid(*, n_vertebrae: int = 5, spacing_mm=(1.0, 1.0, 1.0), orientation: str = "RAS",
         rotation_matrix: np.ndarray | None = None) -> tuple[np.ndarray, tuple[int, int, int]]:
    """An affine and shape covering the phantom: ``orientation`` of the voxel axes, optional tilt."""
    codes = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}
    lo = np.array([-30.0, -52.0, -BODY_HEIGHT_MM / 2 - 6])
    hi = np.array([30.0, 24.0, (n_vertebrae - 1) * (BODY_HEIGHT_MM + DISC_MM) + BODY_HEIGHT_MM / 2 + 6])
    rot = np.eye(3) if rotation_matrix is None else rotation_matrix
    direction = np.zeros((3, 3))
    for col, code in enumerate(orientation):
        axis, sign = codes[code]
        direction[axis, col] = sign
    direction = rot @ direction
    spacing = np.asarray(spacing_mm, float)
    centre = (lo + hi) / 2
    extent = np.abs(direction.T) @ (hi - lo) + 2
    shape = tuple(int(np.ceil(e / s)) for e, s in zip(extent, spacing))
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing
    affine[:3, 3] = centre + 0.3 - affine[:3, :3] @ ((np.array(shape) - 1) / 2)  # no boundary on a voxel centre
    return affine, shape


def column(affine: np.ndarray, shape, *, n_vertebrae: int = 5, heights=None, merged: bool = False,
           lesion: tuple[int, float] | None = None, compression: dict | None = None,
           cord: bool = True, sac: bool = True, discs: bool = True) -> np.ndarray:
    """Schema-v1 label map (uint8, ``shape``) on the grid.

    heights: body height of each vertebra (mm); lesion: (vertebra, fraction) replaces the top
    ``fraction`` of that body's height with lesion; compression: {"vertebra": k, "cord_ap_mm": ap,
    "no_csf": bool, "half_length_mm": h}: an anterior epidural mass at that level flattening the cord.
    """
    heights = [BODY_HEIGHT_MM] * n_vertebrae if heights is None else list(heights)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    x, y, z = (ijk @ affine[:3, :3].T + affine[:3, 3]).T
    out = np.zeros(len(x), np.uint8)
    body_xy = (x / 20.0) ** 2 + (y / 15.0) ** 2 <= 1
    rc = np.hypot(x, y - CANAL_Y)
    for k, h in enumerate(heights):
        zk = k * (BODY_HEIGHT_MM + DISC_MM)
        in_z = np.abs(z - zk) <= h / 2
        ring = (rc >= 9) & (rc <= 13) & (y <= -15) & (np.abs(z - zk) <= BODY_HEIGHT_MM / 2 - 2)
        ring |= (np.abs(x) <= 3) & (y <= -20) & (y >= -45) & (rc > 9) & (np.abs(z - zk) <= 5)
        out[ring] = 2
        out[body_xy & in_z] = 1
        if lesion is not None and lesion[0] == k:
            out[body_xy & in_z & (z > zk + h / 2 - lesion[1] * h)] = 3
        if discs and k + 1 < len(heights):
            z0, z1 = zk + h / 2, (k + 1) * (BODY_HEIGHT_MM + DISC_MM) - heights[k + 1] / 2
            out[body_xy & (z > z0) & (z < z1)] = 6
    sac_in = rc <= 7
    cord_semi_ap = np.full(len(x), 3.5)
    if compression is not None:
        zc = compression["vertebra"] * (BODY_HEIGHT_MM + DISC_MM)
        zone = np.abs(z - zc) <= compression.get("half_length_mm", 5.0)
        cord_semi_ap[zone] = compression["cord_ap_mm"] / 2
        cord_post = CANAL_Y - 3.5
        in_cord = (x / 5.0) ** 2 + ((y - cord_post - cord_semi_ap) / cord_semi_ap) ** 2 <= 1
        mass = zone & (rc <= 9) & (y > cord_post + 2 * cord_semi_ap) & ~in_cord
        if compression.get("no_csf"):
            mass |= zone & sac_in & ~in_cord
    else:
        in_cord = (x / 5.0) ** 2 + ((y - CANAL_Y) / 3.5) ** 2 <= 1
        mass = np.zeros(len(x), bool)
    if sac:
        out[sac_in & (out == 0)] = 5
    if compression is not None:
        out[mass & np.isin(out, (0, 5))] = 3
    if cord:
        out[in_cord] = 4
    if merged:
        out[out == 2] = 1
    return out.reshape(shape)
