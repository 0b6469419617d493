"""Compression of the cauda equina: below the conus the thecal sac is graded in the cord's place.

Metastatic spinal cord compression includes compression of the cauda equina by epidural tumour
(NICE guideline NG234, 2023: "spinal cord or cauda equina compression"). Below the conus medullaris
the dural sac holds nerve roots in CSF, not cord: there is no cord AP diameter to take MSCC from, and
a model that ends the cord at the conus (as anatomy does) would otherwise never flag a lumbar
compression. There the sac is graded on the canal's midline AP extent, MCC (design.md: the same
formula as MSCC, on the canal), against the sac above and below the tumour.

- Cross-sections below the conus: canal cross-sections without cord on the caudal side (lower RAS S)
  of the cord's last one, less ``TRIM_MM`` next to the conus and at the sac's end (both taper).
- Grade at the tumour: 2 where MCC reaches ``cauda_compressed_mcc_pct`` and the tumour touches the
  sac (the roots are compressed; the labels cannot show whether CSF is left round them, as the sac
  label holds roots and CSF alike, so 3 is never given here); 1b where it touches the sac and MCC
  reaches ``sac_deformed_mcc_pct``; 1a otherwise (1c, tumour touching the cord, has no meaning here).
"""

from __future__ import annotations

import numpy as np

from spinelesion.measure.settings import MeasureSettings

#: Length of canal (mm) left out next to the conus and at the sac's caudal end, where each tapers.
TRIM_MM = 5.0
#: Bilsky grades in increasing severity, to keep the worse of the cord's and the cauda's.
BILSKY_ORDER = ("0", "1a", "1b", "1c", "2", "3")


def cauda_sections(*, has_cord: np.ndarray, has_canal: np.ndarray, centre_mm: np.ndarray, step_mm: float) -> np.ndarray:
    """(M,) bool: the cross-sections below the conus.

    Args:
        has_cord: (M,) bool, cross-sections holding cord.
        has_canal: (M,) bool, cross-sections where the canal's AP extent was measured.
        centre_mm: (M, 3) centreline points, RAS+ mm (+S is cranial).
        step_mm: arc length between cross-sections.
    """
    out = np.zeros(len(has_canal), bool)
    cord = np.flatnonzero(has_cord)
    if cord.size == 0:
        return out
    first, last = int(cord[0]), int(cord[-1])
    order = np.arange(len(has_canal))
    below = order < first if centre_mm[first, 2] < centre_mm[last, 2] else order > last
    run = np.flatnonzero(below & has_canal)
    trim = int(np.ceil(TRIM_MM / step_mm))
    if run.size <= 2 * trim:
        return out
    out[run[(run - run.min() >= trim) & (run.max() - run >= trim)]] = True  # the run's ends: the conus, the sac's end
    return out


def cauda_grade(*, cauda: np.ndarray, near: np.ndarray, mcc: np.ndarray, touches_sac: np.ndarray,
                settings: MeasureSettings) -> tuple[str, int | None]:
    """(grade, worst cross-section or None) of epidural tumour below the conus.

    Args:
        cauda: (M,) bool, :func:`cauda_sections`.
        near: (M,) bool, cross-sections at epidural tumour; ``cauda & near`` holds at least one.
        mcc: (M,) the canal's narrowing (%) over the cauda's cross-sections (NaN elsewhere).
        touches_sac: (M,) bool, cross-sections where the tumour touches the thecal sac.
    """
    at = cauda & near
    measured = np.flatnonzero(at & np.isfinite(mcc))
    if measured.size == 0:
        return "1a", None
    worst = int(measured[np.argmax(mcc[measured])])
    touching = bool(touches_sac[at].any())
    threshold = settings.cauda_compressed_mcc_pct
    if touching and threshold is not None and mcc[worst] >= threshold:
        return "2", worst
    if touching and mcc[worst] >= settings.sac_deformed_mcc_pct:
        return "1b", worst
    return "1a", worst
