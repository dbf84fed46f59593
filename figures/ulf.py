"""Ultra-low-frequency (ULF) cluster figures: F7 (cosine of each rare latent with the mean rare direction) and F8 (its
projection onto that direction), one histogram per seed/run, with the cross-seed cosine of the two mean directions.
REPLICATION.md §9.3-9.4.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

from figures._draw import as_1d, axes_or_gca, box_marginal, finite, percent_hist, reference_vline
from figures._layout import place_legend, set_title
from figures.style import WIDE, add_source, ensure_figure, seed_color


def _check_runs(by_run: Mapping[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    if not by_run:
        raise ValueError(f"{name} needs at least one run, e.g. {{'seed1': array}}")
    return {run: as_1d(values, f"{name}[{run!r}]") for run, values in by_run.items()}


def _direction_suffix(direction_cos: float | None) -> str:
    return "" if direction_cos is None else f"\ncross-seed cosine of the mean rare directions: {direction_cos:.3f}"


def plot_rare_cosine(
    cos_by_run: Mapping[str, np.ndarray],
    *,
    source: str,
    direction_cos: float | None = None,
    threshold: float | None = None,
    which: str = "encoder",
    bins: int = 50,
    ax: Axes | None = None,
) -> Axes:
    """F7: percent of rare latents per cosine bin, one outline per run, with a box per run above; the legend gives each
    run's count and, with `threshold` (the caller's alignment cut, Neel's 0.95), the share above it, marked by a dashed
    line; the title gives the cross-seed cosine of the mean rare directions when given."""
    ax = axes_or_gca(ax)
    runs = _check_runs(cos_by_run, "cos_by_run")
    edges = np.linspace(-1.0, 1.0, bins + 1)
    for i, (run, cos) in enumerate(runs.items()):
        kept = finite(cos)
        label = f"{run}: n={len(kept)}"
        if threshold is not None:
            share = 100.0 * np.mean(kept > threshold) if len(kept) else float("nan")
            label += f", {share:.1f}% > {threshold:g}"
        percent_hist(ax, kept, bins=edges, histtype="step", linewidth=1.5, color=seed_color(i), label=label)
    if threshold is not None:
        reference_vline(ax, threshold)
    box_marginal(ax, list(runs.values()), [seed_color(i) for i in range(len(runs))])
    ax.set(xlabel=f"Cosine of {which} direction with the mean rare direction", ylabel="Percent of rare latents")
    set_title(ax, "Cosine sim of rare features with mean rare direction" + _direction_suffix(direction_cos))
    place_legend(ax)
    add_source(ax, source)
    return ax


def plot_rare_projection(
    proj_by_run: Mapping[str, np.ndarray], *, source: str, which: str = "encoder", bins: int = 50, ax: Axes | None = None
) -> Axes:
    """F8: percent of rare latents per bin of the projection onto the (unit) mean rare direction, one outline per run."""
    ax = axes_or_gca(ax)
    runs = _check_runs(proj_by_run, "proj_by_run")
    pooled = np.concatenate([finite(v) for v in runs.values()])
    edges = np.histogram_bin_edges(pooled if len(pooled) else np.zeros(1), bins=bins)
    for i, (run, proj) in enumerate(runs.items()):
        percent_hist(
            ax, proj, bins=edges, histtype="step", linewidth=1.5, color=seed_color(i), label=f"{run}: n={len(finite(proj))}"
        )
    ax.set(xlabel=f"Projection of {which} direction onto the mean rare direction", ylabel="Percent of rare latents")
    set_title(ax, "Projection of rare features onto mean rare direction")
    place_legend(ax)
    add_source(ax, source)
    return ax


def plot_rare_scatter(
    values_by_run: Mapping[str, np.ndarray],
    log10_freq_by_run: Mapping[str, np.ndarray],
    *,
    source: str,
    quantity: str = "cos_with_mean",
    threshold: float | None = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """F9 / F10: each rare latent's cosine with (or projection onto) the mean rare direction (x) against its log
    frequency (y), one colour per run. Shows whether the aligned latents are also the rarest. `quantity` labels x;
    `threshold` (the caller's cosine cut, for F10) is drawn as a dashed line."""
    ax = axes_or_gca(ax)
    runs = _check_runs(values_by_run, "values_by_run")
    for i, (run, x) in enumerate(runs.items()):
        y = as_1d(log10_freq_by_run[run], f"log10_freq_by_run[{run!r}]")
        if x.shape != y.shape:
            raise ValueError(f"{run}: {len(x)} values but {len(y)} frequencies")
        ax.scatter(x, y, s=6, alpha=0.4, color=seed_color(i), linewidths=0, label=f"{run}: n={len(x)}")
    if threshold is not None:
        reference_vline(ax, threshold, f"cos = {threshold:g}")
    ax.set(xlabel=quantity, ylabel="Freq (Log10)")
    set_title(ax, title or f"Rare latents: {quantity} vs frequency")
    place_legend(ax, markerscale=2)
    add_source(ax, source)
    return ax


def plot_rare_directions(
    cos_by_run: Mapping[str, np.ndarray],
    proj_by_run: Mapping[str, np.ndarray],
    *,
    source: str,
    direction_cos: float | None = None,
    threshold: float | None = None,
    which: str = "encoder",
    fig: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """F7 and F8 side by side (`threshold`: the cosine cut of F7, from the caller)."""
    fig = ensure_figure(fig, WIDE)
    left, right = fig.subplots(1, 2)
    plot_rare_cosine(cos_by_run, source=source, direction_cos=direction_cos, threshold=threshold, which=which, ax=left)
    plot_rare_projection(proj_by_run, source=source, which=which, ax=right)
    return fig
