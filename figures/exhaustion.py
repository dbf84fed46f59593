"""The data-exhaustion experiment (REPLICATION.md §6.2, issue #13): what the latent-frequency distribution does once fresh
training data runs out, under each `end_of_data` policy, against a run that never runs out.

Inputs per policy: snapshot token counts, the ULF share and the dead share of every snapshot (fractions), and the
log10(freq + 10^-6.5) histograms of the last snapshot before exhaustion and the final one (`sae_analysis.phase`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure, SubFigure

from figures._draw import as_1d, reference_vline
from figures.style import BASELINE_GREY, SEED_COLORS, add_source, ensure_figure, tokens_text

EXHAUSTION_SIZE = (13.0, 3.8)


def _series(ax, curves: Mapping[str, tuple[np.ndarray, np.ndarray]], colors: dict[str, str], ylabel: str, title: str) -> None:
    for name, (tokens, share) in curves.items():
        ax.plot(as_1d(tokens, "tokens") / 1e6, 100.0 * as_1d(share, name), marker="o", ms=3, color=colors[name], label=name)
    ax.set(xlabel="Tokens (millions)", ylabel=ylabel, title=title)


def plot_data_exhaustion(
    ulf_share: Mapping[str, tuple[np.ndarray, np.ndarray]],
    dead_share: Mapping[str, tuple[np.ndarray, np.ndarray]],
    histograms: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    edges: np.ndarray,
    exhausted_tokens: float,
    resample_tokens: Sequence[float] = (),
    source: str,
    ulf_label: str = "freq < 1e-4",
    dead_label: str = "dead",
    fig: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """Three panels: ULF share and dead share against tokens (one line per policy, the exhaustion point and the resamples
    marked), and per policy the log-frequency histogram at the last snapshot before exhaustion (dashed) and the final one
    (solid). `histograms[name] = (percent_before, percent_final)` over the shared bin `edges`."""
    names = list(dict.fromkeys([*ulf_share, *dead_share, *histograms]))
    if not names:
        raise ValueError("no policies to draw")
    colors = {n: SEED_COLORS[i % len(SEED_COLORS)] for i, n in enumerate(names)}
    fig = ensure_figure(fig, EXHAUSTION_SIZE)
    left, mid, right = fig.subplots(1, 3)
    _series(left, ulf_share, colors, f"Percent of latents ({ulf_label})", "ULF share")
    _series(mid, dead_share, colors, f"Percent of latents ({dead_label})", "Dead share")
    for ax in (left, mid):
        reference_vline(ax, exhausted_tokens / 1e6, f"data exhausted ({tokens_text(exhausted_tokens)})", color="black")
        for i, t in enumerate(resample_tokens):
            ax.axvline(t / 1e6, color=BASELINE_GREY, linestyle=":", label="resample" if i == 0 else None)
    left.legend(loc="best", fontsize="small")
    edges_arr = as_1d(edges, "edges")
    for name, (before, final) in histograms.items():
        right.stairs(np.asarray(before, float), edges_arr, color=colors[name], linestyle="--", linewidth=1)
        right.stairs(np.asarray(final, float), edges_arr, color=colors[name], linewidth=1.4, label=f"{name} (final)")
    right.set(xlabel="Freq (Log10)", ylabel="Percent of latents", title="Before exhaustion (dashed) vs final")
    right.legend(loc="best", fontsize="small")
    add_source(fig, source)
    return fig
