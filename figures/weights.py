"""F21: per-latent weight statistics against frequency (encoder bias, encoder norm, decoder norm, weighted encoder bias,
encoder norm products), coloured by a rare mask, with an OLS trend line per panel (REPLICATION.md §10, F21). Published
decoder rows are not unit norm (§3.4), which the decoder-norm panel shows.

Axis limits come from percentiles of the data (`_draw.scatter_within`): a handful of outlier latents (b_enc ≈ -10 at full
scale) are drawn as triangles at the edge and counted, and the trend line is fitted on the points inside the axes, so
they cannot flatten a panel (issue #16).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.legend import Legend

from figures._draw import as_1d, axes_or_gca, outlined_hist, scatter_within, within
from figures._layout import place_legend, set_suptitle, set_title
from figures.style import COMMON_COLOR, PAGE, RARE_COLOR, add_source, ensure_figure

F21_Y_LABEL = "log10(freq + 1e-5)"
"""Neel's scratch.py plots these panels against log10(freq + 1e-5) (a different offset from the histograms' 10^-6.5)."""


def _trend_line(ax: Axes, x: np.ndarray, y: np.ndarray) -> None:
    """Least-squares line y = a x + b over the given finite points (the caller passes those inside the axes), drawn
    across their x range (seaborn's regplot, no band); the label says which points it was fitted on."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return
    slope, intercept = np.polyfit(x[ok], y[ok], 1)
    xs = np.array([x[ok].min(), x[ok].max()])
    label = f"OLS on the points inside the axes:\ny = {slope:.3g} x {intercept:+.3g}"
    ax.plot(xs, slope * xs + intercept, color="black", linewidth=1.0, label=label)


def _draw_vs_frequency(
    ax: Axes, values: np.ndarray, log10_freq: np.ndarray, is_rare: np.ndarray, *, name: str, rare_label: str, y_label: str
) -> None:
    """One panel without its legend: common and rare latents inside robust limits, outliers at the edge, trend line."""
    x, y, rare = as_1d(values, name), as_1d(log10_freq, "log10_freq"), np.asarray(is_rare, dtype=bool)
    if not (x.shape == y.shape == rare.shape):
        raise ValueError(f"{name}: values {x.shape}, log10_freq {y.shape} and is_rare {rare.shape} must match")
    dots = {"s": 5, "alpha": 0.4, "linewidths": 0}
    groups = [
        (x[~rare], y[~rare], dots | {"color": COMMON_COLOR, "label": f"common (n={(~rare).sum()})"}),
        (x[rare], y[rare], dots | {"color": RARE_COLOR, "label": f"{rare_label} (n={rare.sum()})"}),
    ]
    xlim, ylim = scatter_within(ax, groups)
    inside = within(x, y, xlim, ylim)
    _trend_line(ax, x[inside], y[inside])
    ax.set(xlabel=name, ylabel=y_label)
    set_title(ax, f"{name} vs frequency")


def plot_vs_frequency(
    values: np.ndarray,
    log10_freq: np.ndarray,
    is_rare: np.ndarray,
    *,
    source: str,
    name: str,
    rare_label: str = "freq < 10^-3.5",
    y_label: str = F21_Y_LABEL,
    ax: Axes | None = None,
) -> Axes:
    """One F21 panel: a per-latent quantity (x) against log frequency (y), rare latents in their own colour, OLS line."""
    ax = axes_or_gca(ax)
    _draw_vs_frequency(ax, values, log10_freq, is_rare, name=name, rare_label=rare_label, y_label=y_label)
    _opaque_markers(place_legend(ax, fontsize=6, markerscale=2))
    add_source(ax, source)
    return ax


def _opaque_markers(legend: Legend) -> Legend:
    for handle in legend.legend_handles:
        handle.set_alpha(1.0)
    return legend


def plot_bias_norm_panels(
    panels: Mapping[str, np.ndarray],
    log10_freq: np.ndarray,
    is_rare: np.ndarray,
    *,
    source: str,
    rare_label: str = "freq < 10^-3.5",
    y_label: str = F21_Y_LABEL,
    ncols: int = 3,
    fig: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """F21 as one page: `panels[name]` is a per-latent quantity (e.g. "Encoder bias"), one scatter panel each. Each panel's
    legend holds its trend line and its count of outliers drawn at the edge; the common / rare key is shown once, in the
    first free grid cell (or in the first panel's legend when the grid is full)."""
    if not panels:
        raise ValueError("panels needs at least one quantity, e.g. {'Encoder bias': b_enc}")
    fig = ensure_figure(fig, PAGE)
    ncols = min(ncols, len(panels))
    axes = np.atleast_1d(fig.subplots(math.ceil(len(panels) / ncols), ncols, squeeze=False)).ravel()
    for ax, (name, values) in zip(axes, panels.items()):
        _draw_vs_frequency(ax, values, log10_freq, is_rare, name=name, rare_label=rare_label, y_label=y_label)
    set_suptitle(fig, "Encoder bias and norms vs frequency")
    spare = axes[len(panels) :]
    for ax in spare:
        ax.set_axis_off()
    for i, ax in enumerate(axes[: len(panels)]):
        entries = list(zip(*ax.get_legend_handles_labels()))
        is_key = [label.startswith(("common (", f"{rare_label} (")) for _, label in entries]
        if i == 0 and len(spare):  # the common / rare key, once, in the spare cell
            key = [e for e, k in zip(entries, is_key) if k]
            _opaque_markers(spare[0].legend(*zip(*key), loc="center", markerscale=3, title="latents"))
        own = [e for e, k in zip(entries, is_key) if not k or (i == 0 and not len(spare))]
        _opaque_markers(place_legend(ax, *zip(*own), outside="below", fontsize=6, markerscale=2))
    add_source(fig, source)
    return fig


def plot_by_commonness(
    values: np.ndarray,
    is_common: np.ndarray,
    *,
    source: str,
    name: str,
    common_label: str = "freq > 10^-3.5",
    bins: int = 60,
    ax: Axes | None = None,
) -> Axes:
    """F22: percent histograms of one per-latent metric (neuron kurtosis, neuron frac max, vocab kurtosis, ...) for common
    and for rare latents, on shared bins (Neel's scratch.py colours by is_common = freq > 10^-3.5)."""
    ax = axes_or_gca(ax)
    x, common = as_1d(values, name), np.asarray(is_common, dtype=bool)
    if x.shape != common.shape:
        raise ValueError(f"{name}: {x.shape} values but {common.shape} is_common flags")
    kept = x[np.isfinite(x)]
    edges = np.histogram_bin_edges(kept if len(kept) else np.zeros(1), bins=bins)
    outlined_hist(ax, x[common], bins=edges, color=COMMON_COLOR, label=f"{common_label} (n={common.sum()})", percent=True)
    outlined_hist(ax, x[~common], bins=edges, color=RARE_COLOR, label=f"rest (n={(~common).sum()})", percent=True)
    ax.set(xlabel=name, ylabel="Percent of latents in the group")
    set_title(ax, f"{name} by frequency group")
    place_legend(ax)
    add_source(ax, source)
    return ax
