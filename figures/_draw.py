"""Small drawing helpers shared by the plot modules (no statistics beyond what a histogram or a legend needs)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.container import BarContainer

from figures.style import BASELINE_GREY


def axes_or_gca(ax: Axes | None) -> Axes:
    """The seaborn contract: `ax=None` means the current Axes."""
    return plt.gca() if ax is None else ax


def as_1d(values: object, name: str) -> np.ndarray:
    """A float64 1-D copy of `values`, or a ValueError naming the argument."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def finite(values: np.ndarray) -> np.ndarray:
    """`values` without NaN / inf (a histogram cannot place them; callers report them elsewhere)."""
    return values[np.isfinite(values)]


def percent_hist(
    ax: Axes, values: np.ndarray, *, bins: int | Sequence[float], hist_range: tuple[float, float] | None = None, **style
) -> BarContainer | list:
    """Histogram whose bar heights are percentages of `values` (finite ones), as Neel's `histogram(..., histnorm='percent')`."""
    values = finite(values)
    weights = np.full(values.shape, 100.0 / max(len(values), 1))
    return ax.hist(values, bins=bins, range=hist_range, weights=weights, **style)[2]


def reference_vline(ax: Axes, x: float, label: str | None = None, *, color: str = BASELINE_GREY) -> None:
    """A dashed vertical reference line (threshold, expected value, changepoint)."""
    ax.axvline(x, color=color, linestyle="--", linewidth=1.0, label=label)


def clip_to(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Clip finite values into [lo, hi] so out-of-range latents pile up in the edge bins instead of vanishing."""
    return np.clip(finite(values), lo, hi)


def median_text(values: np.ndarray, digits: int = 3) -> str:
    """'median 0.512, n=300' over the finite values, or 'n=0' when there are none (no warning, no NaN in a legend)."""
    kept = finite(values)
    return f"median {np.median(kept):.{digits}f}, n={len(kept)}" if len(kept) else "n=0"

