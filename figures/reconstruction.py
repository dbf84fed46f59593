"""F6: loss recovered when only latents above a frequency floor are kept (REPLICATION.md §9.7). The point of the figure:
ultra-low-frequency latents contribute almost nothing, so the curve stays flat until the floor passes the ULF cluster.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.axes import Axes

from figures._draw import as_1d, axes_or_gca, shade_unresolved
from figures._layout import place_legend, set_title
from figures.style import add_source, freq_text, seed_color


def plot_loss_vs_floor(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    source: str,
    rare_log10: float | None = None,
    title: str = "Scaled Reconstructed Loss vs minimum frequency checkpoint",
    resolution: tuple[float, int] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """One line per checkpoint: `curves[name] = (floors, score)`, floors in log10 frequency, score the zero-ablation loss
    recovered as a fraction (drawn in percent). Points are sorted by floor. `rare_log10`: the caller's rare threshold
    (log10 frequency), drawn as a dashed line when given. `resolution` = (log10(1/N), N) of the frequencies shades the
    floors N tokens cannot tell apart (every floor below log10(1/N) keeps the same latents)."""
    ax = axes_or_gca(ax)
    if not curves:
        raise ValueError("curves needs at least one (floors, score) pair")
    for i, (name, (floors, score)) in enumerate(curves.items()):
        x, y = as_1d(floors, f"{name} floors"), as_1d(score, f"{name} score")
        if x.shape != y.shape:
            raise ValueError(f"{name}: {len(x)} floors but {len(y)} scores")
        order = np.argsort(x)
        ax.plot(x[order], 100.0 * y[order], marker="o", color=seed_color(i), label=name)
    if rare_log10 is not None:
        ax.axvline(rare_log10, color="0.6", linestyle="--", linewidth=1.0, label=f"rare threshold ({freq_text(10**rare_log10)})")
    shade_unresolved(ax, resolution)
    ax.set(xlabel="Log freq floor", ylabel="% Loss Recovered")
    set_title(ax, title)
    place_legend(ax)
    add_source(ax, source)
    return ax
