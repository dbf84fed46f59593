"""Weight-geometry figures: F18 (encoder-decoder cosine per latent) and F20 (share of each latent in the null space of
the model's `W_out`). REPLICATION.md §9.5-9.6; pass non-rare latents (freq >= 1e-4) to match Neel's figures.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes

from figures._draw import as_1d, axes_or_gca, box_marginal, finite, median_text, outlined_hist, reference_vline
from figures._layout import place_legend, set_title
from figures.style import BASELINE_GREY, DEC_COLOR, ENC_COLOR, SEED_COLORS, add_source


def plot_enc_dec_cosine(
    cos: np.ndarray,
    *,
    source: str,
    bins: int = 60,
    ax: Axes | None = None,
    title: str = "Encoder Decoder Cosine Sim (non-rare features)",
) -> Axes:
    """F18: histogram (count) of cos(e_i, d_i), with the median marked (Neel: about 0.5, his argument against tied weights)."""
    ax = axes_or_gca(ax)
    values = finite(as_1d(cos, "cos"))
    ax.hist(values, bins=bins, range=(min(-0.1, float(values.min(initial=0))), 1.0), color=SEED_COLORS[0])
    if len(values):
        reference_vline(ax, float(np.median(values)), median_text(values), color="black")
    ax.set(xlabel="cos(encoder column, decoder row)", ylabel="Count of latents")
    set_title(ax, title)
    if len(values):
        place_legend(ax)
    add_source(ax, source)
    return ax


def plot_null_space(
    enc_null_frac: np.ndarray,
    dec_null_frac: np.ndarray,
    *,
    source: str,
    reference: float | None = None,
    bins: int = 60,
    ax: Axes | None = None,
    title: str = "Fraction of feature in W_out null space (non-rare)",
) -> Axes:
    """F20: overlaid histograms (count) of the null-space share of encoder and decoder directions, with the share a random
    direction would have, when given (`reference`, from the caller: (d_mlp - d_model) / d_mlp, 0.75 for gelu-1l); a box
    per series above."""
    ax = axes_or_gca(ax)
    series = ((enc_null_frac, ENC_COLOR, "encoder"), (dec_null_frac, DEC_COLOR, "decoder"))
    kept = [finite(as_1d(values, f"{name}_null_frac")) for values, _, name in series]
    for values, (_, color, name) in zip(kept, series):
        outlined_hist(ax, values, bins=bins, range=(0.0, 1.0), color=color, label=f"{name} ({median_text(values)})")
    box_marginal(ax, kept, [color for _, color, _ in series])
    if reference is not None:
        reference_vline(ax, reference, f"random direction: {reference:.4g}", color=BASELINE_GREY)
    ax.set(xlabel="Fraction of squared norm in the null space of W_out", ylabel="Count of latents")
    set_title(ax, title)
    place_legend(ax)
    add_source(ax, source)
    return ax


def plot_singular_values(
    singular_values: np.ndarray,
    *,
    source: str,
    rank: int | None = None,
    centred: bool | None = None,
    title: str = "Singular values of W_out",
    ax: Axes | None = None,
) -> Axes:
    """F19: singular values of the model's W_out (descending) against their 1-based index on a log y axis, with dashed
    lines at index n - 1 and n (n = number of values = d_model): a centred W_out (TransformerLens centres writing weights)
    has rank <= d_model - 1, so its last value drops to rounding level (REPLICATION.md §9.6). Exact zeros cannot sit on a
    log axis: they are left out and counted in the legend. `rank` (numerical) and `centred` go into legend and title."""
    ax = axes_or_gca(ax)
    values = np.sort(as_1d(singular_values, "singular_values"))[::-1]
    n, index, positive = len(values), np.arange(1, len(values) + 1), values > 0
    label = f"{n} singular values" + (f", numerical rank {rank}" if rank is not None else "")
    label += f" ({(~positive).sum()} exact zeros not drawn)" if not positive.all() else ""
    ax.plot(index[positive], values[positive], marker=".", markersize=3, color=SEED_COLORS[0], label=label)
    for at, color in ((n - 1, DEC_COLOR), (n, BASELINE_GREY)):
        if at >= 1:
            reference_vline(ax, at, f"rank {at}" + (" = d_model - 1" if at == n - 1 else " = d_model"), color=color)
    if centred is not None:
        title += " (centred: rank <= d_model - 1)" if centred else " (not centred)"
    ax.set(xlabel="Index", ylabel="Singular value", yscale="log" if positive.any() else "linear")
    set_title(ax, title)
    place_legend(ax)
    add_source(ax, source)
    return ax
