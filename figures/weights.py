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

from figures._draw import as_1d, axes_or_gca, box_marginal, outlined_hist, scatter_within, within
from figures._layout import place_legend, set_suptitle, set_title
from figures.style import COMMON_COLOR, PAGE, RARE_COLOR, add_source, ensure_figure, seed_color

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
    rare_label: str = "rare",
    y_label: str = "Freq (Log10)",
    ax: Axes | None = None,
) -> Axes:
    """One F21 panel: a per-latent quantity (x) against log frequency (y), rare latents in their own colour, OLS line.
    The caller names its rare cut (`rare_label`, e.g. 'freq < 10^-3.5') and its log offset (`y_label`)."""
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
    rare_label: str = "rare",
    y_label: str = "Freq (Log10)",
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
    common_label: str = "common",
    bins: int = 60,
    title: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """F22: percent histograms of one per-latent metric (neuron kurtosis, neuron frac max, vocab kurtosis, ...) for common
    and for the rest, on shared bins (Neel's scratch.py colours by is_common = freq > 10^-3.5; the caller names its cut
    in `common_label`). Bins span the finite values up to their 99.5th percentile; the heavier tail piles up in the last
    bin (the x label says where), also in the box per group above."""
    ax = axes_or_gca(ax)
    _by_commonness(ax, values, is_common, name=name, common_label=common_label, bins=bins)
    ax.set_title(title or f"{name} by frequency group")
    add_source(ax, source)
    return ax


def _by_commonness(ax: Axes, values: np.ndarray, is_common: np.ndarray, *, name: str, common_label: str, bins: int) -> None:
    x, common = as_1d(values, name), np.asarray(is_common, dtype=bool)
    if x.shape != common.shape:
        raise ValueError(f"{name}: {x.shape} values but {common.shape} is_common flags")
    kept = x[np.isfinite(x)]
    hi = float(np.quantile(kept, 0.995)) if len(kept) else 1.0
    edges = np.histogram_bin_edges(np.clip(kept, None, hi) if len(kept) else np.zeros(1), bins=bins)
    shown = np.where(np.isfinite(x), np.minimum(x, hi), x)
    outlined_hist(ax, shown[common], bins=edges, color=COMMON_COLOR, label=f"{common_label} (n={common.sum()})", percent=True)
    outlined_hist(ax, shown[~common], bins=edges, color=RARE_COLOR, label=f"rest (n={(~common).sum()})", percent=True)
    box_marginal(ax, [shown[common], shown[~common]], [COMMON_COLOR, RARE_COLOR])
    clipped = int((kept > hi).sum())
    xlabel = name + (f"\n({clipped} values above {hi:.3g} in the last bin)" if clipped else "")
    ax.set(xlabel=xlabel, ylabel="Percent of latents in the group")
    place_legend(ax)


def plot_top_features(
    weights: np.ndarray,
    latents: np.ndarray,
    *,
    source: str,
    ranked_by: str = "encoder kurtosis",
    title: str = "Top Features in Neuron Basis",
    ax: Axes | None = None,
) -> Axes:
    """F22 (last panel): the encoder columns of the top latents (`weights[i]` of latent `latents[i]`, best first) as one
    line each over neuron index, as Neel's scratch.py draws the 20 latents of highest neuron kurtosis."""
    ax = axes_or_gca(ax)
    _top_features(ax, weights, latents, ranked_by=ranked_by, title=title)
    add_source(ax, source)
    return ax


def _top_features(ax: Axes, weights: np.ndarray, latents: np.ndarray, *, ranked_by: str, title: str) -> None:
    w, ids = np.asarray(weights, dtype=np.float64), np.asarray(latents)
    if w.ndim != 2 or w.shape[0] != len(ids):
        raise ValueError(f"weights must be [n_latents={len(ids)}, d_in], got {w.shape}")
    for i, (row, latent) in enumerate(zip(w, ids)):
        ax.plot(np.arange(w.shape[1]), row, linewidth=0.8, alpha=0.7, color=seed_color(i), label=f"latent {latent}")
    if 0 < len(ids) <= 10:
        ax.legend(loc="upper right", fontsize=6)
    ax.set(xlabel="Neuron", ylabel="Encoder weight", title=f"{title}\n(top {len(ids)} latents by {ranked_by})")


def plot_commonness_page(
    metrics: Mapping[str, np.ndarray],
    is_common: np.ndarray,
    top_weights: np.ndarray,
    top_latents: np.ndarray,
    *,
    source: str,
    common_label: str = "common",
    ranked_by: str = "encoder kurtosis",
    fig: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """F22 as one page: one `plot_by_commonness` panel per metric (`metrics[title] = per-latent values`, e.g. "Neuron
    Kurtosis") and the "Top Features in Neuron Basis" panel."""
    fig = ensure_figure(fig, PAGE)
    axes = fig.subplots(2, 2).ravel()
    if len(metrics) != 3:
        raise ValueError(f"expected three metrics (neuron kurtosis, neuron frac max, vocab kurtosis), got {list(metrics)}")
    for ax, (name, values) in zip(axes, metrics.items()):
        _by_commonness(ax, values, is_common, name=name, common_label=common_label, bins=60)
        ax.set_title(name)
    _top_features(axes[3], top_weights, top_latents, ranked_by=ranked_by, title="Top Features in Neuron Basis")
    fig.suptitle("Latent statistics by frequency group")
    add_source(fig, source)
    return fig
