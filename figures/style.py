"""One shared look for every figure: sizes, fonts, colours, the "source: ..." label and the joint-plot layout.

Colours are keyed by meaning, not by figure, so a 1-sparse latent, seed 2 or the Gaussian baseline looks the same
everywhere. `use_style()` is a context manager over `matplotlib.rc_context`; nothing here changes global state.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.layout_engine import ConstrainedLayoutEngine

SPARSITY_COLORS: dict[str, str] = {"1-sparse": "#d62728", "10-sparse": "#ff7f0e", "dense": "#1f77b4"}
"""Decoder/encoder neuron-basis classes (REPLICATION.md §9.1)."""
SEED_COLORS: tuple[str, ...] = ("#1f77b4", "#e377c2", "#2ca02c", "#9467bd")
"""First, second, ... seed or run (run1/seed1 first)."""
BASELINE_GREY = "#9a9a9a"
"""Gaussian / random baselines and reference lines."""
ENC_COLOR, DEC_COLOR = "#17becf", "#8c564b"
"""Encoder columns vs decoder rows when both are drawn together."""
RARE_COLOR, COMMON_COLOR = "#7b4173", "#1f77b4"
"""Latents below / above the rare threshold named by the figure."""
HIGHLIGHT_COLOR = "#ffd54f"
"""Background of the activating token in case-study contexts."""
CHECKPOINT_CMAP = "viridis"
"""Colour map for checkpoints ordered by training tokens."""

SINGLE = (5.0, 3.6)
WIDE = (9.0, 3.6)
JOINT = (5.6, 5.2)
PAGE = (11.0, 8.5)
"""Figure sizes in inches: one axes, two side by side, a scatter with marginals, a multi-panel page."""

SOURCE_FONTSIZE = 6.5
SOURCE_PREFIX = "source: "

RC: dict[str, object] = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "figure.constrained_layout.use": True,
    "image.cmap": CHECKPOINT_CMAP,
}
"""rcParams applied by `use_style()`."""


@contextmanager
def use_style() -> Iterator[None]:
    """Apply the house style for the duration of a `with` block (figures created inside pick it up)."""
    with mpl.rc_context(RC):
        yield


def seed_color(index: int) -> str:
    """Colour of the index-th seed/run (0-based), cycling if there are more runs than colours."""
    return SEED_COLORS[index % len(SEED_COLORS)]


def source_text(source: str) -> str:
    """The label text: 'source: <source>' (an empty source is an error: every figure must say where it came from)."""
    if not source or not source.strip():
        raise ValueError("every figure needs a non-empty source label, e.g. 'embedded demo (seed1)'")
    return SOURCE_PREFIX + source


def add_source(target: Axes | Figure | SubFigure, source: str) -> None:
    """Attach the small grey 'source: ...' label: under an Axes (bottom left, below the x label) or in the bottom
    right corner of a Figure/SubFigure."""
    text = source_text(source)
    style = {"fontsize": SOURCE_FONTSIZE, "color": "0.4", "parse_math": False}
    if isinstance(target, Axes):  # wrapped to the panel's width, so a long label does not squeeze the panel
        width_in = target.get_position().width * target.get_figure(root=True).get_figwidth()
        text = "\n".join(textwrap.fill(line, max(30, int(width_in * 72 / (0.5 * SOURCE_FONTSIZE)))) for line in text.split("\n"))
        target.annotate(
            text, xy=(0, 0), xycoords="axes fraction", xytext=(0, -30), textcoords="offset points", ha="left", va="top", **style
        )
    else:
        engine = target.get_layout_engine() if isinstance(target, Figure) else None
        if isinstance(engine, ConstrainedLayoutEngine):
            engine.set(rect=(0.0, 0.025, 1.0, 0.975))  # keep a strip free under the axes for the label
        target.text(0.995, 0.003, text, ha="right", va="bottom", **style)


def new_figure(size: tuple[float, float] = SINGLE) -> Figure:
    """A fresh constrained-layout pyplot Figure (shown inline in notebooks; the caller closes it after saving)."""
    return plt.figure(figsize=size, layout="constrained")


def ensure_figure(fig: Figure | SubFigure | None, size: tuple[float, float]) -> Figure | SubFigure:
    """`fig` if given, otherwise a new Figure of `size`."""
    return new_figure(size) if fig is None else fig


def joint_axes(fig: Figure | SubFigure, *, marginal_label: str = "") -> tuple[Axes, Axes, Axes]:
    """A scatter axes with a marginal axes on top (shared x) and on the right (shared y): (joint, top, right).
    `marginal_label` names what the marginals count (top: y axis, right: x axis), e.g. "Percent of latents"."""
    grid = fig.add_gridspec(2, 2, width_ratios=(4, 1), height_ratios=(1, 4))
    joint = fig.add_subplot(grid[1, 0])
    top = fig.add_subplot(grid[0, 0], sharex=joint)
    right = fig.add_subplot(grid[1, 1], sharey=joint)
    top.tick_params(labelbottom=False)
    right.tick_params(labelleft=False)
    top.set_ylabel(marginal_label, fontsize="small")
    right.set_xlabel(marginal_label, fontsize="small")
    return joint, top, right


def freq_text(freq: float) -> str:
    """A frequency threshold for labels: '1e-4' for a power of ten, '10^-3.5' for a fractional one, else '0.0002'.
    Thresholds are the caller's (sae_analysis's constants); this only writes them."""
    exponent = float(np.log10(freq)) if freq > 0 else float("nan")
    if np.isfinite(exponent) and abs(exponent - round(exponent)) < 1e-9:
        return f"1e{round(exponent)}"
    if np.isfinite(exponent) and abs(2 * exponent - round(2 * exponent)) < 1e-9:
        return f"10^{exponent:g}"
    return f"{freq:g}"


def tokens_text(n: float) -> str:
    """A token count for labels: '1.70B', '7.5M', '65,536'."""
    if abs(n) >= 1e9:
        return f"{n / 1e9:.3g}B"
    if abs(n) >= 1e6:
        return f"{n / 1e6:.3g}M"
    return f"{n:,.0f}"
