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


def outlined_hist(
    ax: Axes, values: np.ndarray, *, bins: int | Sequence[float], color: str, label: str, percent: bool = False, **kw
) -> None:
    """One of several overlaid histograms: light bars and a solid step outline in the series' own colour, so that
    overlapping series stay distinct (two translucent fills alone blend into a third colour). Finite values only;
    `percent=True` draws percentages of the series instead of counts. The bars come first in `ax.patches`."""
    values = finite(values)
    if percent:
        kw["weights"] = np.full(values.shape, 100.0 / max(len(values), 1))
    ax.hist(values, bins=bins, color=color, alpha=0.18, linewidth=0, **kw)
    ax.hist(values, bins=bins, histtype="step", color=color, linewidth=1.4, label=label, **kw)


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
    draw_boxes(strip, groups, colors)
    strip.set_ylim(-len(groups) + 0.5, 0.5)
    strip.tick_params(labelbottom=False, bottom=False)
    return strip


def draw_boxes(ax: Axes, groups: Sequence[np.ndarray], colors: Sequence, *, vertical: bool = False) -> None:
    """One box per group (its finite values) on `ax`, at positions 0, -1, -2, ... (horizontal boxes, the first on top) or
    0, 1, 2, ... (vertical, left to right); medians carry gid 'median'. The box axis gets no ticks, grid or spines."""
    rows = [finite(np.asarray(g, dtype=np.float64)) for g in groups]
    drawn = [i for i, r in enumerate(rows) if len(r)]
    if drawn:
        parts = ax.boxplot(
            [rows[i] for i in drawn], positions=[i if vertical else -i for i in drawn], widths=0.6, patch_artist=True,
            orientation="vertical" if vertical else "horizontal",
            medianprops={"color": "black", "linewidth": 1.0, "gid": "median"},
            flierprops={"marker": ".", "markersize": 2, "alpha": 0.4},
        )  # fmt: skip
        for box, i in zip(parts["boxes"], drawn):
            box.set(facecolor=colors[i], alpha=0.6, edgecolor=colors[i])
        for flier, i in zip(parts["fliers"], drawn):
            flier.set(markeredgecolor=colors[i], markerfacecolor=colors[i])
    (ax.set_xticks if vertical else ax.set_yticks)([])
    ax.grid(False)
    for side in ("right", "top", "bottom" if vertical else "left"):
        ax.spines[side].set_visible(False)


ROBUST_QUANTILES = (0.5, 99.5)
"""Scatter panels take their axis limits from these percentiles of the data, widened by ROBUST_MARGIN (issue #16)."""
ROBUST_MARGIN = 0.25
"""Share of the percentile span added on each side, so a well-behaved tail stays on the axes and only outliers are clipped."""
EDGE_MARKERS = {"x0": "<", "x1": ">", "y0": "v", "y1": "^"}
"""Triangles pointing out of the axes, where the points beyond the limits are drawn."""


def robust_limits(
    values: np.ndarray, *, quantiles: tuple[float, float] = ROBUST_QUANTILES, margin: float = ROBUST_MARGIN
) -> tuple[float, float]:
    """[lo, hi]: the `quantiles` (percent) of the finite values widened by `margin` of their span on each side, never
    wider than the data; a constant or empty series gets a small symmetric range."""
    kept = finite(np.asarray(values, dtype=np.float64))
    if not len(kept):
        return 0.0, 1.0
    lo, hi = np.percentile(kept, quantiles)
    lo, hi = max(float(kept.min()), lo - margin * (hi - lo)), min(float(kept.max()), hi + margin * (hi - lo))
    if hi <= lo:
        pad = 0.05 * abs(lo) or 0.5
        return lo - pad, hi + pad
    return float(lo), float(hi)


def within(x: np.ndarray, y: np.ndarray, xlim: tuple[float, float], ylim: tuple[float, float]) -> np.ndarray:
    """Mask of the points inside [xlim] x [ylim] (NaN is outside)."""
    return (x >= xlim[0]) & (x <= xlim[1]) & (y >= ylim[0]) & (y <= ylim[1])


def scatter_within(ax: Axes, groups: Sequence[tuple[np.ndarray, np.ndarray, dict]], *, pad: float = 0.03, **limits) -> tuple:
    """Scatter each group `(x, y, style)` inside robust limits over all groups (`robust_limits(**limits)` per axis); the
    points beyond them are drawn at the nearest edge as triangles pointing outward, in their group's colour, and counted
    in one legend entry. Sets the axis limits (with `pad` of the span as margin) and returns (xlim, ylim)."""
    xs = np.concatenate([np.asarray(g[0], dtype=np.float64) for g in groups])
    ys = np.concatenate([np.asarray(g[1], dtype=np.float64) for g in groups])
    xlim, ylim = robust_limits(xs, **limits), robust_limits(ys, **limits)
    n_out, labelled = 0, False
    for x, y, style in groups:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        inside = within(x, y, xlim, ylim)
        ax.scatter(x[inside], y[inside], **style)
        out = ok & ~inside
        n_out += int(out.sum())
        cx, cy = np.clip(x[out], *xlim), np.clip(y[out], *ylim)
        side = np.where(x[out] < xlim[0], "x0", np.where(x[out] > xlim[1], "x1", np.where(y[out] < ylim[0], "y0", "y1")))
        for key, marker in EDGE_MARKERS.items():
            sel = side == key
            if sel.any():
                ax.scatter(cx[sel], cy[sel], marker=marker, s=22, color=style.get("color"), edgecolors="black",
                           linewidths=0.5, zorder=3, label=None if labelled else "_edge")  # fmt: skip
                labelled = True
    for coll in ax.collections:
        if coll.get_label() == "_edge":
            coll.set_label(f"beyond the axes, drawn at the edge (n={n_out})")
    ax.set_xlim(xlim[0] - pad * (xlim[1] - xlim[0]), xlim[1] + pad * (xlim[1] - xlim[0]))
    ax.set_ylim(ylim[0] - pad * (ylim[1] - ylim[0]), ylim[1] + pad * (ylim[1] - ylim[0]))
    return xlim, ylim


def shade_unresolved(
    ax: Axes, resolution: tuple[float, int] | None, *, axis: str = "x", label: str | None = "legend", compact: bool = False
) -> None:
    """Grey the log10 frequencies below log10(1/N), which a sample of N tokens cannot resolve (a latent that fires
    less often than once in the sample reads as 0). `resolution` = (log10(1/N), N), from the caller; None draws nothing.
    `label`: "legend" (an entry; `compact` puts it on three short lines), "inside" (written along the band, for panels
    whose legend has no room) or None."""
    if resolution is None:
        return
    from figures.style import tokens_text

    floor, n = resolution
    parts = ("below 1/N", f"N = {tokens_text(n)} tokens", "not resolved")
    entry = ("\n".join(parts) if compact else f"{parts[0]}, {parts[1]}: {parts[2]}") if label == "legend" else None
    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    span = ax.axvspan if axis == "x" else ax.axhspan
    span(min(lo, floor), floor, color=BASELINE_GREY, alpha=0.15, linewidth=0, label=entry)
    (ax.set_xlim if axis == "x" else ax.set_ylim)(lo, hi)
    if label == "inside" and floor > lo:
        middle, text = (min(lo, floor) + floor) / 2, f"{parts[2]}\n(< 1/N, N = {tokens_text(n)})"
        where = dict(x=middle, y=0.5, rotation=90, transform=ax.get_xaxis_transform()) if axis == "x" else dict(
            x=0.5, y=middle, rotation=0, transform=ax.get_yaxis_transform())  # fmt: skip
        ax.text(s=text, ha="center", va="center", fontsize=7, color="0.35", **where)
