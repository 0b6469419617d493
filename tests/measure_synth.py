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


def cauda_column(affine: np.ndarray, shape, *, conus_z_mm: float, indent_mm: float, vertebra: int = 1,
                 half_length_mm: float = 6.0, n_vertebrae: int = 5) -> np.ndarray:
    """:func:`column` whose cord ends at ``conus_z_mm`` (the sac alone below, as round the cauda equina),
    with an anterior epidural mass at ``vertebra`` indenting the sac (AP 14 mm) by ``indent_mm``."""
    out = column(affine, shape, n_vertebrae=n_vertebrae).reshape(-1)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    x, y, z = (ijk @ affine[:3, :3].T + affine[:3, 3]).T
    out[(out == 4) & (z < conus_z_mm)] = 5
    zone = np.abs(z - vertebra * (BODY_HEIGHT_MM + DISC_MM)) <= half_length_mm
    mass = zone & (np.hypot(x, y - CANAL_Y) <= 9) & (y > CANAL_Y + 7 - indent_mm) & (np.abs(x) <= 7)
    out[mass & np.isin(out, (0, 5))] = 3
    return out.reshape(shape)


def body_height_profile(profile: dict | None, x: np.ndarray, y: np.ndarray, h0: float) -> np.ndarray:
    """Body height (mm) at lateral ``x`` and anterior ``y`` (vertebra frame) for a profile:
    None / {"kind": "none"} (h0), {"kind": "wedge", "anterior": Ha, "posterior": Hp} (linear in y
    through Hp at y = -12 and Ha at y = +12, i.e. 10 % and 90 % of the 30 mm depth), {"kind": "crush",
    "height": h}, {"kind": "biconcave", "rim": r, "middle": m} (an elliptic central dip)."""
    kind = "none" if profile is None else profile["kind"]
    if kind == "none":
        return np.full(np.shape(x), h0)
    if kind == "wedge":
        ha, hp = profile["anterior"], profile["posterior"]
        return 0.5 * (ha + hp) + (ha - hp) * y / 24.0
    if kind == "crush":
        return np.full(np.shape(x), profile["height"])
    if kind == "biconcave":
        q = np.minimum(1.0, (y / 15.0) ** 2 + (x / 20.0) ** 2)
        return profile["rim"] - (profile["rim"] - profile["middle"]) * (1.0 - q)
    raise ValueError(kind)


def true_heights(profile: dict | None, h0: float) -> tuple[float, float, float]:
    """(anterior, middle, posterior) heights at y = +12, 0, -12 on the mid-sagittal plane."""
    h = body_height_profile(profile, np.zeros(3), np.array([12.0, 0.0, -12.0]), h0)
    return float(h[0]), float(h[1]), float(h[2])


def curved_column(*, n_vertebrae: int = 6, sizes=None, profiles=None, bends_deg=None,
                  base_tilt_deg=(0.0, 0.0), spacing_mm=(1.0, 1.0, 1.0),
                  rotation_matrix: np.ndarray | None = None, margin_mm: float = 8.0):
    """A column whose vertebrae each have their own tilt: a label map, its affine and the truth.

    Vertebra k has its own frame R_k = R_{k-1} @ rotation(*bends_deg[k - 1]) (sagittal, coronal
    degrees at the disc below it; R_0 = rotation(*base_tilt_deg)), so a lordosis, kyphosis or
    scoliosis, or one sharp angle as at L5/S1, bends the column; heights are exact along each
    vertebra's own axis. Bodies, discs, bony rings, thecal sac and cord as in :func:`column`,
    each in its vertebra's frame (a voxel outside the bodies takes the frame of the vertebra whose
    mid-plane is nearest). ``sizes``: undeformed body heights (mm); ``profiles``: per vertebra a
    :func:`body_height_profile` dict or None. The grid is RAS (``rotation_matrix`` turns it).

    Returns (labels (X, Y, Z) uint8, affine, truth: list of dicts with h0 and the three heights).
    """
    sizes = [BODY_HEIGHT_MM] * n_vertebrae if sizes is None else list(sizes)
    profiles = [None] * n_vertebrae if profiles is None else list(profiles)
    bends = [(0.0, 0.0)] * (n_vertebrae - 1) if bends_deg is None else [tuple(b) for b in bends_deg]
    rots = [rotation(*base_tilt_deg)]
    for sag, cor in bends:
        rots.append(rots[-1] @ rotation(sag, cor))
    centres = [np.zeros(3)]
    for k in range(1, n_vertebrae):
        gap = DISC_MM + 15.0 * np.tan(np.radians(np.hypot(*bends[k - 1])))
        centres.append(centres[-1] + rots[k - 1][:, 2] * (sizes[k - 1] / 2 + gap / 2)
                       + rots[k][:, 2] * (gap / 2 + sizes[k] / 2))
    corners = np.array([c + r @ np.array([x, y, z]) for c, r, h in zip(centres, rots, sizes)
                        for x in (-30, 30) for y in (-52, 24) for z in (-h / 2 - 6, h / 2 + 6)])
    rot = np.eye(3) if rotation_matrix is None else rotation_matrix
    direction = rot * np.asarray(spacing_mm, float)[None, :]
    q = corners @ np.linalg.inv(direction).T
    lo = np.floor(q.min(axis=0) - margin_mm) + 0.3
    shape = tuple(int(n) for n in np.ceil(q.max(axis=0) + margin_mm - lo))
    affine = np.eye(4)
    affine[:3, :3] = direction
    affine[:3, 3] = direction @ lo
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    world = ijk @ direction.T + affine[:3, 3]
    local = np.stack([(world - c) @ r for c, r in zip(centres, rots)])  # (n, N, 3)
    nearest = np.argmin(np.abs(local[:, :, 2]) - np.array(sizes)[:, None] / 2, axis=0)
    out = np.zeros(len(world), np.uint8)
    own = local[nearest, np.arange(len(world))]
    x, y, z = own.T
    rc = np.hypot(x, y - CANAL_Y)
    in_ellipse = (x / 20.0) ** 2 + (y / 15.0) ** 2 <= 1
    zk_ok = np.zeros(len(world), bool)
    for k in range(n_vertebrae):
        mine = nearest == k
        ring = mine & (rc >= 9) & (rc <= 13) & (y <= -15) & (np.abs(z) <= sizes[k] / 2 - 2)
        ring |= mine & (np.abs(x) <= 3) & (y <= -20) & (y >= -45) & (rc > 9) & (np.abs(z) <= 5)
        out[ring] = 2
        zk_ok |= mine
    for k in range(n_vertebrae):
        lx, ly, lz = local[k].T
        h = body_height_profile(profiles[k], lx, ly, sizes[k])
        out[((lx / 20.0) ** 2 + (ly / 15.0) ** 2 <= 1) & (np.abs(lz) <= h / 2)] = 1
    for k in range(n_vertebrae - 1):
        (ax, ay, az), (bx, by, bz) = local[k].T, local[k + 1].T
        inside = ((ax / 20.0) ** 2 + (ay / 15.0) ** 2 <= 1) | ((bx / 20.0) ** 2 + (by / 15.0) ** 2 <= 1)
        inside &= ((0.5 * (ax + bx)) / 20.0) ** 2 + ((0.5 * (ay + by)) / 15.0) ** 2 <= 1
        above = az > body_height_profile(profiles[k], ax, ay, sizes[k]) / 2
        below = bz < -body_height_profile(profiles[k + 1], bx, by, sizes[k + 1]) / 2
        out[inside & above & below & (out == 0)] = 6
    out[(rc <= 7) & (out == 0)] = 5
    out[((x / 5.0) ** 2 + ((y - CANAL_Y) / 3.5) ** 2 <= 1) & (out != 1) & (out != 6)] = 4
    del in_ellipse, zk_ok
    truth = [{"h0": h0, "heights": true_heights(p, h0),
              "loss_pct": max(0.0, 100.0 * (1 - min(true_heights(p, h0)) / h0))}
             for h0, p in zip(sizes, profiles)]
    return out.reshape(shape), affine, truth
