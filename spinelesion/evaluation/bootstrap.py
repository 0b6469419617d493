"""Seeded percentile bootstrap over cases: the 95 % confidence interval of any summary figure.

Cases are the resampling unit (a cluster bootstrap: lesions, vertebrae and classes of one case
stay together), so intervals reflect how the figure would vary with another sample of scans.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

#: Resamples drawn for each interval (``--bootstrap``).
DEFAULT_RESAMPLES = 2000
#: Seed of the generator; the same seed and inputs give the same intervals.
DEFAULT_SEED = 0


def bootstrap_ci(*, units: Sequence, statistic: Callable[[list], float | None],
                 n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                 level: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile interval of ``statistic`` over ``n_resamples`` resamples of ``units`` with
    replacement (each the size of ``units``).

    Args:
        units: the resampling units, usually one item per case.
        statistic: maps a list of units to a number, or None / NaN where the resample gives none
            (such resamples are left out).
        n_resamples: 0 turns the bootstrap off.

    Returns:
        (low, high), or (None, None) with fewer than 2 units, no resamples or no defined values.
    """
    units = list(units)
    if len(units) < 2 or n_resamples <= 0:
        return None, None
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(units), size=(n_resamples, len(units)))
    values = []
    for row in draws:
        value = statistic([units[i] for i in row])
        if value is not None and not math.isnan(value):
            values.append(float(value))
    if not values:
        return None, None
    alpha = (1.0 - level) / 2.0
    low, high = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def figure(*, units: Sequence, statistic: Callable[[list], float | None], n_resamples: int = DEFAULT_RESAMPLES,
           seed: int = DEFAULT_SEED, n: int | None = None, digits: int = 4) -> dict:
    """``{"value": statistic(units), "ci95": [low, high], "n": n}`` rounded to ``digits``."""
    value = statistic(list(units))
    if value is not None and math.isnan(value):
        value = None
    low, high = (None, None) if value is None else bootstrap_ci(units=units, statistic=statistic,
                                                                 n_resamples=n_resamples, seed=seed)
    return {"value": _round(value, digits), "ci95": [_round(low, digits), _round(high, digits)],
            "n": len(units) if n is None else n}


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(float(x), digits)
