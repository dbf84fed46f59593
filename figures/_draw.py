"""Small drawing helpers shared by the plot modules (no statistics beyond what a histogram, a box or a legend needs)."""

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


def box_marginal(ax: Axes, groups: Sequence[np.ndarray], colors: Sequence, *, height: float | None = None) -> Axes:
    """A strip of horizontal box plots just above `ax`, sharing its x axis: one box per group (its finite values), the
    first on top; whiskers at 1.5 IQR, outliers as small dots (the box marginal of the post's plotly histograms).
    `height`: of the strip, as a fraction of `ax` (default 0.07 per group, at most 0.3). Returns the strip's Axes; an
    empty group leaves its row blank."""
    if len(groups) != len(colors):
        raise ValueError(f"got {len(groups)} groups but {len(colors)} colors")
    height = min(0.3, 0.07 * max(len(groups), 1)) if height is None else height
    strip = ax.inset_axes((0.0, 1.02, 1.0, height), sharex=ax)
    rows = [finite(np.asarray(g, dtype=np.float64)) for g in groups]
    drawn = [i for i, r in enumerate(rows) if len(r)]
    if drawn:
        parts = strip.boxplot(
            [rows[i] for i in drawn], positions=[-i for i in drawn], orientation="horizontal", widths=0.6, patch_artist=True,
            medianprops={"color": "black", "linewidth": 1.0, "gid": "median"},
            flierprops={"marker": ".", "markersize": 2, "alpha": 0.4},
        )  # fmt: skip
        for box, i in zip(parts["boxes"], drawn):
            box.set(facecolor=colors[i], alpha=0.6, edgecolor=colors[i])
        for flier, i in zip(parts["fliers"], drawn):
            flier.set(markeredgecolor=colors[i], markerfacecolor=colors[i])
    strip.set_ylim(-len(groups) + 0.5, 0.5)
    strip.set_yticks([])
    strip.tick_params(labelbottom=False, bottom=False)
    strip.grid(False)
    for side in ("left", "right", "top"):
        strip.spines[side].set_visible(False)
    return strip


def shade_unresolved(ax: Axes, resolution: tuple[float, int] | None, *, axis: str = "x", label: bool = True) -> None:
    """Grey the log10 frequencies below log10(1/N), which a sample of N tokens cannot resolve (a latent that fires
    less often than once in the sample reads as 0). `resolution` = (log10(1/N), N), from the caller; None draws nothing."""
    if resolution is None:
        return
    from figures.style import tokens_text

    floor, n = resolution
    text = f"below 1/N, N = {tokens_text(n)} tokens: not resolved" if label else None
    if axis == "x":
        lo, hi = ax.get_xlim()
        ax.axvspan(min(lo, floor), floor, color=BASELINE_GREY, alpha=0.15, linewidth=0, label=text)
        ax.set_xlim(lo, hi)
    else:
        lo, hi = ax.get_ylim()
        ax.axhspan(min(lo, floor), floor, color=BASELINE_GREY, alpha=0.15, linewidth=0, label=text)
        ax.set_ylim(lo, hi)
