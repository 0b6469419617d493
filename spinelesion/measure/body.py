"""Per-vertebra body measurements besides heights: destruction, lesion position, SINS, lesion quality.

Definitions (docs/contracts.md §2):
- Destroyed fraction: lesion voxels inside the body / (body voxels + those lesion voxels) x 100.
  A lesion voxel is inside the body when it lies in front of the body's posterior wall (the
  canal's anterior wall) in the vertebra's own frame.
- SINS vertebral body collapse and posterolateral involvement, bone lesion quality (Fisher et
  al., Spine 2010;35:E1221-9): over 50 % collapse; under 50 %; no collapse with over 50 % of the
  body involved; none. Lytic / blastic / mixed from CT numbers inside the lesion against normal
  marrow of the same scan.

Heights are :mod:`.heights`; height loss and Genant's reading :mod:`.height_loss`.
"""

from __future__ import annotations

import numpy as np

from spinelesion.measure.column import Vertebra
from spinelesion.measure.settings import MeasureSettings


def lesion_in_body(v: Vertebra, lesion_pts: np.ndarray, body_pts: np.ndarray) -> np.ndarray:
    """(N,) bool: which of the vertebra's (N, 3) lesion points lie inside its body."""
    if len(lesion_pts) == 0:
        return np.zeros(0, bool)
    if v.canal_centre_mm is not None and v.body_back_rel_mm is not None:
        return (lesion_pts - v.canal_centre_mm) @ v.anterior > v.body_back_rel_mm
    if len(body_pts):
        return lesion_pts @ v.anterior >= np.percentile(body_pts @ v.anterior, 1)
    return np.ones(len(lesion_pts), bool)


#: Tolerance on the canal's lateral wall (mm): a lesion must lie this far beyond it to count as
#: posterolateral (the wall is known to a voxel; the epidural test uses the same margin inwards).
CANAL_WALL_TOLERANCE_MM = 1.0


def in_canal(v: Vertebra, lesion_pts: np.ndarray) -> np.ndarray:
    """(N,) bool: lesion points inside the vertebra's bony canal (behind the body, within the bony
    canal's width plus ``CANAL_WALL_TOLERANCE_MM`` and about as far behind the canal centre as its
    anterior wall is in front)."""
    if len(lesion_pts) == 0 or v.canal_centre_mm is None or v.body_back_rel_mm is None:
        return np.zeros(len(lesion_pts), bool)
    rel = lesion_pts - v.canal_centre_mm
    a = rel @ v.anterior
    half_width = (v.bony_canal_half_width_mm or v.canal_half_width_mm) + CANAL_WALL_TOLERANCE_MM
    return (a <= v.body_back_rel_mm) & (a > -abs(v.body_back_rel_mm)) & (np.abs(rel @ v.right) <= half_width)


def sins_collapse(loss_pct: float | None, destruction_pct: float | None, settings: MeasureSettings) -> str | None:
    """SINS vertebral body collapse category (Fisher 2010); None when the height loss was not
    measured (every category says whether the body collapsed)."""
    if loss_pct is None:
        return None
    loss = loss_pct
    if loss > 50:  # "over 50 %" (Fisher 2010); exactly 50 % is under
        return "over_50pct"
    if loss >= settings.collapse_min_pct:
        return "under_50pct"
    if (destruction_pct or 0.0) > 50:
        return "no_collapse_over_50pct_involved"
    return "none"


def lesion_type(lesion_hu: np.ndarray, marrow_hu: float | None, settings: MeasureSettings) -> str | None:
    """Lytic, blastic or mixed from the HU of a lesion's voxels against normal marrow (CT only)."""
    if marrow_hu is None or lesion_hu.size == 0:
        return None
    lytic = float(np.mean(lesion_hu < marrow_hu - settings.lytic_hu_below_marrow))
    blastic = float(np.mean(lesion_hu > marrow_hu + settings.blastic_hu_above_marrow))
    if min(lytic, blastic) >= settings.mixed_min_fraction:
        return "mixed"
    median = float(np.median(lesion_hu))
    return "blastic" if median > marrow_hu else "lytic"


def posterolateral(v: Vertebra, lesion_pts: np.ndarray, voxel_mm3: float, settings: MeasureSettings) -> str | None:
    """SINS posterolateral involvement: lesion behind the body and lateral to the bony canal (by
    more than ``CANAL_WALL_TOLERANCE_MM``), at least ``posterolateral_min_mm3`` per side. On the
    phantoms (42 cases, 252 vertebrae) this gets 249 right; reading the canal's width from the
    dural sac where the ring is open, and without the tolerance, got 237 (epidural tumour beside
    the sac read as posterolateral). "none" without lesion; None (not measured) when the vertebra
    has lesion but its canal or posterior wall was not found."""
    if len(lesion_pts) == 0:
        return "none"
    if v.canal_centre_mm is None or v.body_back_rel_mm is None:
        return None
    rel = lesion_pts - v.canal_centre_mm
    behind = rel @ v.anterior <= v.body_back_rel_mm
    r = rel @ v.right
    lateral = np.abs(r) > (v.bony_canal_half_width_mm or v.canal_half_width_mm) + CANAL_WALL_TOLERANCE_MM
    sides = [np.sum(behind & lateral & (r > 0)), np.sum(behind & lateral & (r < 0))]
    involved = sum(count * voxel_mm3 >= settings.posterolateral_min_mm3 for count in sides)
    return ("none", "unilateral", "bilateral")[involved]
