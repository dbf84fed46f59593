"""F23: a one-page case study of a single latent (REPLICATION.md §9.9): its top-activating contexts as text with the
activating token highlighted, its direct logit effect (top and bottom tokens) as bars, and its encoder and decoder
weights in the neuron basis. Token strings arrive already decoded; the caller chooses how to render bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

from figures._draw import as_1d, axes_or_gca
from figures._layout import place_legend
from figures.style import DEC_COLOR, ENC_COLOR, HIGHLIGHT_COLOR, PAGE, RARE_COLOR, SEED_COLORS, add_source, ensure_figure

CONTEXT_FONT = {"family": "monospace", "fontsize": 7.5, "parse_math": False}
"""Monospace, and no mathtext: '$' in code must stay a dollar sign."""
_ESCAPES = {"\n": "↵", "\r": "\\r", "\t": "→"}


def visible(token: str) -> str:
    """A token as it should be drawn: newlines and tabs as arrows, other control characters escaped, a whitespace-only
    token as '␣' per space, the empty token as '∅'."""
    token = str(token)  # numpy strings from a cache behave like str but repr differently
    out = "".join(_ESCAPES.get(ch, ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode()) for ch in token)
    return out if out.strip() else (out.replace(" ", "␣") or "∅")


def _row(ax: Axes, y: float, tokens: Sequence[str], pos: int, act: float, before: int, after: int) -> None:
    """One context: the activation value, then left context, highlighted token (centred at x = 0.55), right context."""
    if not 0 <= pos < len(tokens):
        raise ValueError(f"position {pos} is outside a context of {len(tokens)} tokens")
    left = visible("".join(tokens[:pos]))[-before:] if pos else ""
    right = visible("".join(tokens[pos + 1 :]))[:after] if pos + 1 < len(tokens) else ""
    ax.text(0.0, y, f"{act:8.3f}", va="center", color="0.3", **CONTEXT_FONT)
    box = {"boxstyle": "square,pad=0.1", "facecolor": HIGHLIGHT_COLOR, "edgecolor": "none"}
    token = ax.text(0.55, y, visible(tokens[pos]), ha="center", va="center", bbox=box, gid="activating-token", **CONTEXT_FONT)
    ax.annotate(left, xy=(0, 0.5), xycoords=token, ha="right", va="center", **CONTEXT_FONT)
    ax.annotate(right, xy=(1, 0.5), xycoords=token, ha="left", va="center", **CONTEXT_FONT)


def plot_top_contexts(
    contexts: Sequence[Sequence[str]],
    positions: Sequence[int],
    activations: Sequence[float],
    *,
    source: str,
    chars_before: int = 45,
    chars_after: int = 25,
    title: str = "Top-activating contexts",
    ax: Axes | None = None,
) -> Axes:
    """Each context on its own line, highest activation first as given, the activating token (`contexts[i][positions[i]]`)
    highlighted and aligned in one column; the activation is printed on the left."""
    ax = axes_or_gca(ax)
    acts = as_1d(activations, "activations")
    if not len(contexts) == len(positions) == len(acts):
        raise ValueError(f"{len(contexts)} contexts, {len(positions)} positions, {len(acts)} activations: need one each")
    step = min(0.9 / max(len(contexts) - 1, 1), 0.08)
    ys = 0.95 - step * np.arange(len(contexts))
    for y, tokens, pos, act in zip(ys, contexts, positions, acts):
        _row(ax, float(y), tokens, int(pos), float(act), chars_before, chars_after)
    ax.set_axis_off()
    ax.set_title(title, loc="left")
    add_source(ax, source)
    return ax


def plot_logit_effect(
    top_tokens: Sequence[str],
    top_values: np.ndarray,
    bottom_tokens: Sequence[str],
    bottom_values: np.ndarray,
    *,
    source: str,
    title: str = "Direct logit effect",
    ax: Axes | None = None,
) -> Axes:
    """Horizontal bars: the most promoted tokens (largest first, on top) then the most suppressed (most negative last)."""
    ax = axes_or_gca(ax)
    top, bottom = as_1d(top_values, "top_values"), as_1d(bottom_values, "bottom_values")
    if len(top_tokens) != len(top) or len(bottom_tokens) != len(bottom):
        raise ValueError("each token needs exactly one value")
    order_bottom = np.argsort(-bottom)  # least negative first, so the most negative ends at the bottom
    labels = [f"'{visible(t)}'" for t in top_tokens] + [f"'{visible(bottom_tokens[i])}'" for i in order_bottom]
    values = np.concatenate([top, bottom[order_bottom]])
    colors = [SEED_COLORS[0]] * len(top) + [RARE_COLOR] * len(bottom)
    rows = np.arange(len(values))[::-1]
    ax.barh(rows, values, color=colors)
    ax.set_yticks(rows, labels, fontfamily="monospace", fontsize=6.5)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set(xlabel="Logit effect (W_dec @ W_out @ W_U)", title=title)
    add_source(ax, source)
    return ax


def plot_neuron_weights(
    enc_weights: np.ndarray,
    dec_weights: np.ndarray,
    *,
    source: str,
    title: str = "Weights in the neuron basis",
    ax: Axes | None = None,
) -> Axes:
    """The latent's encoder column and decoder row over neuron index, as two lines (Neel's case-study panel)."""
    ax = axes_or_gca(ax)
    enc, dec = as_1d(enc_weights, "enc_weights"), as_1d(dec_weights, "dec_weights")
    if enc.shape != dec.shape:
        raise ValueError(f"encoder and decoder weights differ in length: {enc.shape} vs {dec.shape}")
    neurons = np.arange(len(enc))
    ax.plot(neurons, enc, color=ENC_COLOR, linewidth=0.8, label="encoder")
    ax.plot(neurons, dec, color=DEC_COLOR, linewidth=0.8, alpha=0.8, label="decoder")
    ax.set(xlabel="Neuron", ylabel="Weight", title=title)
    place_legend(ax)
    add_source(ax, source)
    return ax


@dataclass(frozen=True)
class CaseStudy:
    """Everything one case-study page shows, as plain Python/numpy values (built by paper_figures from sae_analysis)."""

    latent: int
    """Latent index."""
    contexts: Sequence[Sequence[str]]
    """Decoded tokens of each top-activating context window."""
    positions: Sequence[int]
    """Index of the activating token within each context."""
    activations: np.ndarray
    """Activation at that token, one per context (descending)."""
    top_tokens: Sequence[str]
    top_values: np.ndarray
    bottom_tokens: Sequence[str]
    bottom_values: np.ndarray
    enc_weights: np.ndarray
    """`W_enc[:, latent]`, one value per neuron."""
    dec_weights: np.ndarray
    """`W_dec[latent]`, one value per neuron."""
    stats: Mapping[str, float] = field(default_factory=dict)
    """Scalars printed in the page title, e.g. frequency and frac_of_fires_are_top_token."""


def _stats_line(stats: Mapping[str, float]) -> str:
    return "  ·  ".join(f"{k} = {v:.3g}" if isinstance(v, float) else f"{k} = {v}" for k, v in stats.items())


def plot_case_study(study: CaseStudy, *, source: str, fig: Figure | SubFigure | None = None) -> Figure | SubFigure:
    """F23 for one latent: contexts across the top, logit-effect bars bottom left, neuron-basis weights bottom right."""
    fig = ensure_figure(fig, PAGE)
    grid = fig.add_gridspec(2, 2, height_ratios=(1.3, 1.0))
    contexts_ax, logit_ax, weights_ax = fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    plot_top_contexts(study.contexts, study.positions, study.activations, source=source, ax=contexts_ax)
    plot_logit_effect(study.top_tokens, study.top_values, study.bottom_tokens, study.bottom_values, source=source, ax=logit_ax)
    plot_neuron_weights(study.enc_weights, study.dec_weights, source=source, ax=weights_ax)
    title = f"Latent {study.latent}"
    fig.suptitle(title + (f"\n{_stats_line(study.stats)}" if study.stats else ""), fontsize=10)
    return fig
