"""Diameter profiles along the canal's centreline: running means and narrowing against normal windows.

A profile is one value per cross-section (M,), at arc lengths ``s`` (M,) in mm, with a (M,) bool
``valid`` marking the cross-sections that hold the structure measured (cord, or the sac below the conus).
"""

from __future__ import annotations

import warnings

import numpy as np

from spinelesion.measure.settings import MeasureSettings


def smooth_valid(values: np.ndarray, valid: np.ndarray, window: int) -> np.ndarray:
    """Running mean over ``window`` cross-sections of the valid values (NaN elsewhere)."""
    v = np.where(valid, values, 0.0)
    w = valid.astype(float)
    kernel = np.ones(window)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.convolve(v, kernel, mode="same") / np.convolve(w, kernel, mode="same")
    return np.where(valid, out, np.nan)


def narrowing_pct(ap: np.ndarray, s: np.ndarray, valid: np.ndarray, settings: MeasureSettings) -> np.ndarray:
    """Per cross-section (1 - ap_i / mean of the normal windows' means) x 100 (MSCC on the cord's AP
    diameters, MCC on the canal's; Fehlings 1999): windows of ``settings.mscc_window_length_mm`` starting
    ``mscc_window_start_mm`` above and below, over valid cross-sections only; one window alone where the
    other lies outside them; NaN where neither covers a quarter of its length."""
    out = np.full(len(ap), np.nan)
    idx = np.flatnonzero(valid & np.isfinite(ap))
    if idx.size == 0:
        return out
    start, length = settings.mscc_window_start_mm, settings.mscc_window_length_mm
    ds = s[idx][None, :] - s[idx][:, None]  # (i, j): arc distance from slice i to slice j
    step = np.median(np.diff(s)) if len(s) > 1 else 1.0
    refs = []
    for sign in (1, -1):
        win = (sign * ds >= start) & (sign * ds <= start + length)
        n = win.sum(axis=1)
        mean = (win * ap[idx][None, :]).sum(axis=1) / np.maximum(n, 1)
        refs.append(np.where(n * step >= 0.25 * length, mean, np.nan))
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = np.nanmean(np.stack(refs), axis=0)
        out[idx] = 100.0 * (1.0 - ap[idx] / ref)
    return out
