"""Neuron-basis sparsity figures: F13 (encoder) and F15 (decoder) top neuron vs next 9, and F17 neuron kurtosis.
Definitions in REPLICATION.md §9.1-9.2; the arrays come from `sae_analysis` (fve_top_1, fve_next_9, sparsity classes,
excess kurtosis, and the same quantities on a Gaussian matrix of the same shape as the baseline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

from figures._draw import as_1d, axes_or_gca, box_marginal, clip_to, median_text, outlined_hist, percent_hist
from figures._layout import place_legend, set_suptitle, set_title
from figures.style import (
    BASELINE_GREY,
    JOINT,
    PAGE,
    SEED_COLORS,
    SPARSITY_COLORS,
    WIDE,
    add_source,
    ensure_figure,
    joint_axes,
    seed_color,
    source_text,
)

Which = Literal["encoder", "decoder"]
TOP_VS_NEXT9_TITLES = {
    "encoder": "Fraction of Squared Sum Explained by Top Neuron vs Next 9 Neurons",
    "decoder": "Fraction of Squared Decoder Sum Explained by Top Neuron vs Next 9 Neurons",
}


def _class_scatter(ax: Axes, x: np.ndarray, y: np.ndarray, classes: Sequence[str] | None, alpha: float) -> None:
    """One scatter per sparsity class (legend: class, count, percent), or a single one when classes are unknown."""
    if classes is None:
        ax.scatter(x, y, s=6, alpha=alpha, color=SEED_COLORS[0], linewidths=0, label=f"latents (n={len(x)})")
        return
    labels = np.asarray(classes)
    if labels.shape != x.shape:
        raise ValueError(f"classes must have one entry per latent, got {labels.shape} for {x.shape}")
    unknown = set(labels.tolist()) - set(SPARSITY_COLORS)
    if unknown:
        raise ValueError(f"unknown sparsity classes {sorted(unknown)}; expected {list(SPARSITY_COLORS)}")
    for name, color in SPARSITY_COLORS.items():
        sel = labels == name
        share = 100.0 * sel.mean() if len(sel) else 0.0
        ax.scatter(x[sel], y[sel], s=6, alpha=alpha, color=color, linewidths=0, label=f"{name} (n={sel.sum()}, {share:.1f}%)")


def _marginals(
    top: Axes, right: Axes, x: np.ndarray, y: np.ndarray, baseline: tuple[np.ndarray, np.ndarray] | None, bins: int
) -> None:
    """Percent histograms of both coordinates on the marginal axes; the baseline as a grey outline."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    percent_hist(top, x, bins=edges, color=SEED_COLORS[0])
    percent_hist(right, y, bins=edges, color=SEED_COLORS[0], orientation="horizontal")
    if baseline is not None:
        percent_hist(top, baseline[0], bins=edges, histtype="step", color=BASELINE_GREY)
        percent_hist(right, baseline[1], bins=edges, histtype="step", color=BASELINE_GREY, orientation="horizontal")


def plot_top_vs_next9(
    fve_top_1: np.ndarray,
    fve_next_9: np.ndarray,
    *,
    source: str,
    classes: Sequence[str] | None = None,
    baseline: tuple[np.ndarray, np.ndarray] | None = None,
    thresholds: tuple[float, float] | None = None,
    which: Which = "decoder",
    alpha: float = 0.2,
    bins: int = 50,
    title: str | None = None,
    fig: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """F13 / F15: fraction of squared weight in the top neuron (x) vs the next 9 (y), one colour per sparsity class, the
    Gaussian baseline in grey, the caller's 1-sparse `thresholds` (top_1, next_9; Neel's 0.35, 0.1) as dashed lines, and
    marginal histograms. Pass non-rare latents to match Neel's scatter."""
    x, y = as_1d(fve_top_1, "fve_top_1"), as_1d(fve_next_9, "fve_next_9")
    if x.shape != y.shape:
        raise ValueError(f"fve_top_1 and fve_next_9 differ in length: {x.shape} vs {y.shape}")
    fig = ensure_figure(fig, JOINT)
    joint, top, right = joint_axes(fig, marginal_label="% of latents")
    if baseline is not None:
        bx, by = as_1d(baseline[0], "baseline[0]"), as_1d(baseline[1], "baseline[1]")
        joint.scatter(bx, by, s=6, alpha=alpha, color=BASELINE_GREY, linewidths=0, label=f"Gaussian baseline (n={len(bx)})")
        baseline = (bx, by)
    _class_scatter(joint, x, y, classes, alpha)
    if thresholds is not None:
        joint.axvline(thresholds[0], color="black", linestyle="--", linewidth=0.8)
        joint.axhline(thresholds[1], color="black", linestyle="--", linewidth=0.8)
    _marginals(top, right, x, y, baseline, bins)
    joint.set(xlim=(0, 1), ylim=(0, 1), xlabel="Frac Explained by Top Neuron", ylabel="Frac Explained by Next 9 Neurons")
    set_suptitle(fig, title or TOP_VS_NEXT9_TITLES[which])
    legend = place_legend(joint, outside="corner", markerscale=2.5)
    for handle in legend.legend_handles:
        handle.set_alpha(1.0)
    add_source(fig, source)
    return fig


def plot_kurtosis(
    kurtosis: np.ndarray,
    baseline: np.ndarray | None = None,
    *,
    source: str,
    which: Which = "decoder",
    clip: tuple[float, float] = (-5.0, 50.0),
    bins: int = 500,
    ax: Axes | None = None,
) -> Axes:
    """F17: histogram of the per-latent excess kurtosis over neurons (scipy convention, REPLICATION.md §9.2), real vs the
    Gaussian baseline, clipped into `clip` so the heavy tail piles up in the last bin instead of vanishing; a box per
    series (of the clipped values) above."""
    ax = axes_or_gca(ax)
    lo, hi = clip
    real = as_1d(kurtosis, "kurtosis")
    boxes = [(clip_to(as_1d(baseline, "baseline"), lo, hi), BASELINE_GREY)] if baseline is not None else []
    boxes.append((clip_to(real, lo, hi), SEED_COLORS[0]))
    box_marginal(ax, [b for b, _ in boxes], [c for _, c in boxes])
    if baseline is not None:
        outlined_hist(ax, clip_to(as_1d(baseline, "baseline"), lo, hi), bins=bins, range=clip, color=BASELINE_GREY,
                      label="random baseline")  # fmt: skip
    outlined_hist(ax, clip_to(real, lo, hi), bins=bins, range=clip, color=SEED_COLORS[0], label=f"real ({median_text(real, 2)})")
    ax.set(xlabel=f"Excess kurtosis of {which} weights over neurons", ylabel="Count of latents")
    set_title(ax, f"Neuron Kurtosis (real vs random baseline, clipped at {hi:g})")
    place_legend(ax)
    add_source(ax, source)
    return ax


def plot_fve_histograms(
    fve_by_k: Mapping[int, np.ndarray],
    *,
    source: str,
    baseline_by_k: Mapping[int, np.ndarray] | None = None,
    cumulative: bool = True,
    which: Which = "encoder",
    bins: int = 100,
    title: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """F12 / F16: distribution of fve_top_k (share of squared weight in the top k neurons) for several k, as cumulative
    percent curves by default (Neel draws top 1/5/10 cumulatively); the Gaussian baseline as dashed grey-toned curves."""
    ax = axes_or_gca(ax)
    _fve_curves(ax, fve_by_k, baseline_by_k, cumulative=cumulative, which=which, bins=bins)
    ax.set_title(title or f"{which.capitalize()} neuron-basis sparsity (fve_top_k)")
    add_source(ax, source)
    return ax


def _fve_curves(
    ax: Axes,
    fve_by_k: Mapping[int, np.ndarray],
    baseline_by_k: Mapping[int, np.ndarray] | None,
    *,
    cumulative: bool,
    which: Which,
    bins: int,
) -> None:
    edges = np.linspace(0.0, 1.0, bins + 1)
    style = {"histtype": "step", "cumulative": cumulative, "linewidth": 1.3}
    for i, (k, values) in enumerate(fve_by_k.items()):
        percent_hist(ax, as_1d(values, f"fve_top_{k}"), bins=edges, color=seed_color(i), label=f"top {k}", **style)
        if baseline_by_k is not None and k in baseline_by_k:
            baseline = as_1d(baseline_by_k[k], f"baseline fve_top_{k}")
            percent_hist(ax, baseline, bins=edges, color=seed_color(i), linestyle="--", alpha=0.6,
                         label=f"top {k}, Gaussian baseline", **style)  # fmt: skip
    ylabel = "Cumulative percent of latents" if cumulative else "Percent of latents"
    ax.set(xlabel=f"Share of squared {which} weight in the top k neurons", ylabel=ylabel, xlim=(0, 1))
    place_legend(ax)


def plot_enc_vs_dec_top1(enc_fve_top_1: np.ndarray, dec_fve_top_1: np.ndarray, *, source: str, ax: Axes | None = None) -> Axes:
    """F14: each latent's top-neuron share in its encoder column (x) against its decoder row (y), with y = x."""
    ax = axes_or_gca(ax)
    x, y = as_1d(enc_fve_top_1, "enc_fve_top_1"), as_1d(dec_fve_top_1, "dec_fve_top_1")
    if x.shape != y.shape:
        raise ValueError(f"encoder and decoder arrays differ in length: {x.shape} vs {y.shape}")
    ax.scatter(x, y, s=5, alpha=0.3, color=SEED_COLORS[0], linewidths=0, label=f"latents (n={len(x)})")
    ax.plot([0, 1], [0, 1], color=BASELINE_GREY, linestyle="--", linewidth=1.0, label="y = x")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="Encoder: Frac Explained by Top Neuron",
        ylabel="Decoder: Frac Explained by Top Neuron",
    )
    set_title(ax, "Top-neuron share, encoder vs decoder")
    place_legend(ax, markerscale=2)
    add_source(ax, source)
    return ax


def plot_fve_page(
    fve_by_k: Mapping[int, np.ndarray],
    *,
    source: str,
    which: Which = "encoder",
    cumulative_ks: Sequence[int] = (1, 5, 10),
    percent_k: int = 100,
    what: str = "all latents",
    fig: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """F12 (and, on a Gaussian matrix, the left half of F16): fve_top_1/5/10 as cumulative percent curves (left) and
    fve_top_100 as a percent histogram (right), as Neel drew them. `what` names the rows, e.g. 'all latents'."""
    missing = [k for k in (*cumulative_ks, percent_k) if k not in fve_by_k]
    if missing:
        raise ValueError(f"fve_by_k lacks k = {missing}; has {sorted(fve_by_k)}")
    fig = ensure_figure(fig, WIDE)
    _fve_page(fig, fve_by_k, which=which, cumulative_ks=cumulative_ks, percent_k=percent_k, what=what)
    add_source(fig, source)
    return fig


def _fve_page(
    fig: Figure | SubFigure, fve_by_k: Mapping[int, np.ndarray], *, which: Which, cumulative_ks: Sequence[int], percent_k: int,
    what: str
) -> None:  # fmt: skip
    left, right = fig.subplots(1, 2)
    _fve_curves(left, {k: fve_by_k[k] for k in cumulative_ks}, None, cumulative=True, which=which, bins=100)
    _fve_curves(right, {percent_k: fve_by_k[percent_k]}, None, cumulative=False, which=which, bins=100)
    left.set_title(f"fve_top_{'/'.join(map(str, cumulative_ks))}, cumulative")
    right.set_title(f"fve_top_{percent_k}")
    fig.suptitle(f"{which.capitalize()} neuron-basis sparsity ({what})")


def plot_baseline_sparsity(
    fve_by_k: Mapping[int, np.ndarray],
    classes: Sequence[str] | None = None,
    *,
    source: str,
    thresholds: tuple[float, float] | None = None,
    which: Which = "encoder",
    fig: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """F16: F12 and F13 drawn on a standard-Gaussian matrix of the encoder's shape (Neel's randn baseline): the fve
    panels on the left, top neuron vs next 9 (with `classes` and the caller's 1-sparse `thresholds`) on the right."""
    if 1 not in fve_by_k or 10 not in fve_by_k:
        raise ValueError(f"fve_by_k needs k = 1 and 10 for the top-vs-next-9 panel; has {sorted(fve_by_k)}")
    fig = ensure_figure(fig, (PAGE[0] + 2, 5.5))
    body, strip = fig.subfigures(2, 1, height_ratios=(0.965, 0.035))  # the strip holds the one source label
    left, right = body.subfigures(1, 2, width_ratios=(1.4, 1.0))
    _fve_page(left, fve_by_k, which=which, cumulative_ks=(1, 5, 10), percent_k=100, what="Gaussian rows")
    top_1, top_10 = as_1d(fve_by_k[1], "fve_by_k[1]"), as_1d(fve_by_k[10], "fve_by_k[10]")
    plot_top_vs_next9(top_1, top_10 - top_1, classes=classes, thresholds=thresholds, which=which, fig=right, source=source,
                      title="Top neuron vs next 9 (Gaussian rows)")  # fmt: skip
    for text in [t for t in right.texts if t.get_text() == source_text(source)]:
        text.remove()  # drawn once, in the strip below both halves
    add_source(strip, source)
    body.suptitle(f"Gaussian baseline of the {which} neuron-basis sparsity (same-shape randn)")
    return fig
