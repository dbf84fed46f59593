"""Training curves (REPLICATION.md §10, "W"): the metrics a run logs (loss, L2, L1, L0, explained variance; reconstruction
score and dead / rare fractions at evaluations), one panel per metric and one line per run, against training tokens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure, SubFigure

from figures._draw import as_1d
from figures._layout import place_legend, set_suptitle, set_title
from figures.style import PAGE, add_source, ensure_figure, seed_color

Curve = tuple[np.ndarray, np.ndarray]
"""(tokens, values) of one metric in one run."""


def plot_training_curves(
    runs: Mapping[str, Mapping[str, Curve]],
    *,
    source: str,
    log_y: tuple[str, ...] = ("loss", "l2", "l1"),
    ncols: int = 3,
    title: str = "Training curves",
    fig: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """`runs[run][metric] = (tokens, values)`; one panel per metric (in first-seen order), one line per run in its seed
    colour. Metrics named in `log_y` get a log y axis when all their values are positive."""
    metrics = list(dict.fromkeys(m for curves in runs.values() for m in curves))
    if not metrics:
        raise ValueError("runs holds no curves; expected e.g. {'seed1': {'loss': (tokens, values)}}")
    fig = ensure_figure(fig, PAGE)
    ncols = min(ncols, len(metrics))
    axes = fig.subplots(math.ceil(len(metrics) / ncols), ncols, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics):
        positive = True
        for i, (run, curves) in enumerate(runs.items()):
            if metric in curves:
                x, y = as_1d(curves[metric][0], f"{run}/{metric} tokens"), as_1d(curves[metric][1], f"{run}/{metric}")
                ax.plot(x / 1e6, y, color=seed_color(i), linewidth=1.0, label=run)
                positive = positive and bool(np.all(y[np.isfinite(y)] > 0))
        ax.set(xlabel="Tokens (millions)", yscale="log" if metric in log_y and positive else "linear")
        set_title(ax, metric)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    set_suptitle(fig, title)
    for ax in axes[: len(metrics)]:
        place_legend(ax, outside="below", fontsize=7)
    add_source(fig, source)
    return fig
