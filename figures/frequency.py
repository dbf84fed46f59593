"""Latent-frequency figures: F1 (final histogram), F2 (histograms across checkpoints, the phase-transition curve) and
F3-F5 (per-latent frequency in one checkpoint against another). REPLICATION.md §9.8, §10.

Every input is a log frequency as `sae_analysis.metrics.log10_freq` returns it, log10(freq + 10^-6.5), so dead latents
sit at -6.5; token counts are raw token numbers (drawn in millions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

from figures._draw import as_1d, axes_or_gca, box_marginal, draw_boxes, finite, percent_hist, reference_vline, shade_unresolved
from figures._layout import place_legend, set_suptitle, set_title
from figures.style import (
    BASELINE_GREY,
    CHECKPOINT_CMAP,
    ENC_COLOR,
    JOINT,
    RARE_COLOR,
    SEED_COLORS,
    WIDE,
    add_source,
    ensure_figure,
    freq_text,
    joint_axes,
    tokens_text,
)


def plot_frequency_histogram(
    log10_freq: np.ndarray,
    *,
    source: str,
    bins: int = 100,
    rare_log10: float | None = None,
    title: str = "Frequencies for Final Checkpoint",
    resolution: tuple[float, int] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """F1: percent of latents per log10-frequency bin; with `rare_log10` (the caller's rare threshold, log10 of a
    frequency), that threshold marked and the share below it in the legend. `resolution` = (log10(1/N), N) shades the
    frequencies N tokens cannot resolve."""
    ax = axes_or_gca(ax)
    values = as_1d(log10_freq, "log10_freq")
    percent_hist(ax, values, bins=bins, color=SEED_COLORS[0])
    if rare_log10 is not None:
        kept = finite(values)
        share = 100.0 * np.mean(kept < rare_log10) if len(kept) else float("nan")
        reference_vline(ax, rare_log10, f"freq < {freq_text(10**rare_log10)}: {share:.1f}% of latents", color=RARE_COLOR)
    shade_unresolved(ax, resolution)
    ax.set(xlabel="Freq (Log10)", ylabel="Percent of latents")
    set_title(ax, title)
    if rare_log10 is not None or resolution is not None:
        place_legend(ax)
    add_source(ax, source)
    return ax


def _checkpoint_colors(tokens: np.ndarray) -> tuple[list, mpl.cm.ScalarMappable]:
    """One colour per checkpoint from the checkpoint colour map, ordered by tokens (in millions)."""
    millions = tokens / 1e6
    norm = mpl.colors.Normalize(vmin=float(millions.min()), vmax=float(millions.max()) + 1e-9)
    mappable = mpl.cm.ScalarMappable(norm=norm, cmap=CHECKPOINT_CMAP)
    return [mappable.to_rgba(m) for m in millions], mappable


def plot_frequency_histograms(
    edges: np.ndarray,
    percent: np.ndarray,
    tokens: Sequence[float],
    *,
    source: str,
    log10_freq: np.ndarray | None = None,
    title: str = "Frequencies for checkpoints",
    resolution: tuple[float, int] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """F2 (left): one outline per checkpoint, coloured by training tokens, with a colour bar. `percent[s]` is the percent
    of latents per log-frequency bin of checkpoint s over the shared bin `edges` (`sae_analysis.phase.log_freq_histograms`).
    `log10_freq` [n_checkpoints, d_sae], when given, adds a box per checkpoint above (earliest on top)."""
    ax = axes_or_gca(ax)
    edges_arr, tokens_arr = as_1d(edges, "edges"), as_1d(tokens, "tokens")
    heights = np.asarray(percent, dtype=np.float64)
    if heights.ndim != 2 or heights.shape != (len(tokens_arr), len(edges_arr) - 1) or len(tokens_arr) == 0:
        raise ValueError(f"percent must be [n_checkpoints={len(tokens_arr)}, n_bins={len(edges_arr) - 1}], got {heights.shape}")
    colors, mappable = _checkpoint_colors(tokens_arr)
    for row, color, n in zip(heights, colors, tokens_arr):
        ax.stairs(row, edges_arr, color=color, linewidth=1.2, label=tokens_text(n))
    if log10_freq is not None:
        per_ckpt = np.asarray(log10_freq, dtype=np.float64)
        if per_ckpt.ndim != 2 or per_ckpt.shape[0] != len(tokens_arr):
            raise ValueError(f"log10_freq must be [n_checkpoints={len(tokens_arr)}, d_sae], got {per_ckpt.shape}")
        box_marginal(ax, list(per_ckpt), colors)
    shade_unresolved(ax, resolution, label="inside")  # no legend: the colour bar names the checkpoints
    ax.figure.colorbar(mappable, ax=ax, label="million tokens")
    ax.set(xlabel="Freq (Log10)", ylabel="Percent of latents")
    set_title(ax, title)
    add_source(ax, source)
    return ax


def plot_phase_curve(
    tokens: Sequence[float],
    ulf_fraction: np.ndarray,
    *,
    source: str,
    median_log10_freq: np.ndarray | None = None,
    changepoint: float | None = None,
    markers: Mapping[str, float] | None = None,
    ulf_label: str = "rare",
    title: str = "Ultra-low-frequency cluster over training",
    resolution: tuple[float, int] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """F2 (right): the ULF fraction (percent, left axis) and optionally the ULF median log frequency (right axis) against
    tokens, with the estimated changepoint and named reference token counts (e.g. the data-exhaustion hypothesis).
    `ulf_label` names the caller's ULF cut, e.g. 'freq < 1e-4'. With `resolution` = (log10(1/N), N), medians below
    log10(1/N) are not drawn (a sample of N tokens cannot tell them from 0) and that band of the right axis is shaded."""
    ax = legend_ax = axes_or_gca(ax)
    millions = as_1d(tokens, "tokens") / 1e6
    ax.plot(
        millions, 100.0 * as_1d(ulf_fraction, "ulf_fraction"), marker="o", color=SEED_COLORS[0], label=f"ULF share ({ulf_label})"
    )
    ax.set(xlabel="Tokens (millions)", ylabel="Percent of latents in the ULF cluster")
    set_title(ax, title)
    if median_log10_freq is not None:
        twin = ax.twinx()
        median = as_1d(median_log10_freq, "median_log10_freq")
        if resolution is not None:
            median = np.where(median < resolution[0], np.nan, median)
            shown = [resolution[0], *finite(median).tolist()]
            twin.set_ylim(min(shown) - 0.5, max(shown) + 0.5)
        twin.plot(millions, median, marker="s", color=ENC_COLOR, label="ULF median freq")
        shade_unresolved(twin, resolution, axis="y", label="inside")
        twin.set_ylabel("Median ULF freq (Log10)")
        twin.grid(False)
        twin.spines["right"].set_visible(True)
        legend_ax = twin  # drawn above `ax`, so its legend is not hidden under the twin's lines
    if changepoint is not None:
        reference_vline(ax, changepoint / 1e6, f"changepoint ≈ {tokens_text(changepoint)} tokens", color="black")
    for name, where in (markers or {}).items():
        reference_vline(ax, where / 1e6, name, color=BASELINE_GREY)
    add_source(ax, source)  # first, so that a legend under the panel goes below it
    place_legend(legend_ax, *_merged_legend(ax), outside="below")  # checked against the points of both y axes
    return ax


def _merged_legend(ax: Axes) -> tuple[list, list]:
    """Handles and labels of an Axes and of any twin sharing its x axis, so a single legend lists all lines."""
    handles, labels = [], []
    for other in [ax, *[a for a in ax.figure.axes if a is not ax and a.get_shared_x_axes().joined(a, ax)]]:
        h, lab = other.get_legend_handles_labels()
        handles, labels = handles + h, labels + lab
    return handles, labels


def plot_phase_transition(
    edges: np.ndarray,
    percent: np.ndarray,
    tokens: Sequence[float],
    ulf_fraction: np.ndarray,
    *,
    source: str,
    median_log10_freq: np.ndarray | None = None,
    changepoint: float | None = None,
    markers: Mapping[str, float] | None = None,
    log10_freq: np.ndarray | None = None,
    ulf_label: str = "rare",
    resolution: tuple[float, int] | None = None,
    fig: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """F2 as one page: histograms across checkpoints (left; with a box per checkpoint when `log10_freq` is given) and the
    ULF curve with its changepoint (right); `resolution` = (log10(1/N), N) of the frequencies, when measured on N tokens."""
    fig = ensure_figure(fig, WIDE)
    left, right = fig.subplots(1, 2)
    plot_frequency_histograms(edges, percent, tokens, source=source, log10_freq=log10_freq, resolution=resolution, ax=left)
    plot_phase_curve(
        tokens,
        ulf_fraction,
        source=source,
        median_log10_freq=median_log10_freq,
        changepoint=changepoint,
        markers=markers,
        ulf_label=ulf_label,
        resolution=resolution,
        ax=right,
    )
    return fig


def plot_freq_vs_freq(
    log10_a: np.ndarray,
    log10_b: np.ndarray,
    *,
    source: str,
    label_a: str,
    label_b: str,
    title: str | None = None,
    bins: int = 50,
    marginal: str = "hist",
    resolution: tuple[float, int] | None = None,
    fig: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """F3-F5: per-latent log frequency in checkpoint B against checkpoint A, the y = x line, and marginal histograms
    (`marginal="hist"`) or box plots (`"box"`, the post's). A resampled index holds a different latent after the reset
    (REPLICATION.md §9.8), so off-diagonal points mix both. `resolution` = (log10(1/N), N) shades the frequencies N tokens
    cannot resolve, on both axes."""
    a, b = as_1d(log10_a, "log10_a"), as_1d(log10_b, "log10_b")
    if a.shape != b.shape:
        raise ValueError(f"both checkpoints need the same latents, got {a.shape} and {b.shape}")
    fig = ensure_figure(fig, JOINT)
    joint, top, right = joint_axes(fig, marginal_label="% of latents")
    joint.scatter(a, b, s=4, alpha=0.3, color=SEED_COLORS[0], linewidths=0, label="latents")
    both = finite(np.r_[a, b])
    if len(both):
        lo, hi = float(both.min()), float(both.max())
        joint.plot([lo, hi], [lo, hi], color=BASELINE_GREY, linestyle="--", linewidth=1.0, label="y = x")
    if marginal == "box":
        draw_boxes(top, [a], [SEED_COLORS[0]])
        draw_boxes(right, [b], [SEED_COLORS[0]], vertical=True)
    elif marginal == "hist":
        percent_hist(top, a, bins=bins, color=SEED_COLORS[0])
        percent_hist(right, b, bins=bins, color=SEED_COLORS[0], orientation="horizontal")
    else:
        raise ValueError(f"marginal must be 'hist' or 'box', got {marginal!r}")
    shade_unresolved(joint, resolution, label="inside")
    shade_unresolved(joint, resolution, axis="y", label=None)
    joint.set(xlabel=f"{label_a}: Freq (Log10)", ylabel=f"{label_b}: Freq (Log10)")
    set_suptitle(fig, title or f"Frequencies for {label_a} and {label_b}")
    place_legend(joint, outside="corner", markerscale=3)
    add_source(fig, source)
    return fig
