"""F21: per-latent weight statistics against frequency (encoder bias, encoder norm, decoder norm, weighted encoder bias,
encoder norm products), coloured by a rare mask, with an OLS trend line per panel (REPLICATION.md §10, F21). Published
decoder rows are not unit norm (§3.4), which the decoder-norm panel shows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

from figures._draw import as_1d, axes_or_gca, box_marginal, percent_hist
from figures.style import COMMON_COLOR, PAGE, RARE_COLOR, add_source, ensure_figure, seed_color


def _trend_line(ax: Axes, x: np.ndarray, y: np.ndarray) -> None:
    """Least-squares line y = a x + b over the finite points, drawn across their x range (seaborn's regplot, no band)."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return
    slope, intercept = np.polyfit(x[ok], y[ok], 1)
    xs = np.array([x[ok].min(), x[ok].max()])
    ax.plot(xs, slope * xs + intercept, color="black", linewidth=1.0, label=f"OLS: y = {slope:.3g} x + {intercept:.3g}")


def _draw_vs_frequency(
    ax: Axes, values: np.ndarray, log10_freq: np.ndarray, is_rare: np.ndarray, *, name: str, rare_label: str, y_label: str
) -> None:
    x, y, rare = as_1d(values, name), as_1d(log10_freq, "log10_freq"), np.asarray(is_rare, dtype=bool)
    if not (x.shape == y.shape == rare.shape):
        raise ValueError(f"{name}: values {x.shape}, log10_freq {y.shape} and is_rare {rare.shape} must match")
    ax.scatter(x[~rare], y[~rare], s=5, alpha=0.4, color=COMMON_COLOR, linewidths=0, label=f"common (n={(~rare).sum()})")
    ax.scatter(x[rare], y[rare], s=5, alpha=0.4, color=RARE_COLOR, linewidths=0, label=f"{rare_label} (n={rare.sum()})")
    _trend_line(ax, x, y)
    ax.set(xlabel=name, ylabel=y_label, title=f"{name} vs frequency")
    ax.legend(loc="best", fontsize=6, markerscale=2)


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
    add_source(ax, source)
    return ax


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
    """F21 as one page: `panels[name]` is a per-latent quantity (e.g. "Encoder bias"), one scatter panel each."""
    if not panels:
        raise ValueError("panels needs at least one quantity, e.g. {'Encoder bias': b_enc}")
    fig = ensure_figure(fig, PAGE)
    ncols = min(ncols, len(panels))
    axes = np.atleast_1d(fig.subplots(math.ceil(len(panels) / ncols), ncols, squeeze=False)).ravel()
    for ax, (name, values) in zip(axes, panels.items()):
        _draw_vs_frequency(ax, values, log10_freq, is_rare, name=name, rare_label=rare_label, y_label=y_label)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle("Encoder bias and norms vs frequency")
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
    percent_hist(ax, shown[common], bins=edges, color=COMMON_COLOR, alpha=0.6, label=f"{common_label} (n={common.sum()})")
    percent_hist(ax, shown[~common], bins=edges, color=RARE_COLOR, alpha=0.6, label=f"rest (n={(~common).sum()})")
    box_marginal(ax, [shown[common], shown[~common]], [COMMON_COLOR, RARE_COLOR])
    clipped = int((kept > hi).sum())
    xlabel = name + (f"\n({clipped} values above {hi:.3g} in the last bin)" if clipped else "")
    ax.set(xlabel=xlabel, ylabel="Percent of latents in the group")
    ax.legend(loc="upper right")


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
