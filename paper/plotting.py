"""Shared by the figure functions of `paper_figures.py` and `paper.inventory`: the one-Axes wrapper and the analysis
thresholds the figures draw. Thresholds have one home, `sae_analysis`; `thresholds()` reads them when a figure is drawn,
so `figures/` never holds a copy (issue #12, item 7)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import figures as F
from figures.style import freq_text
from sae_analysis import metrics, sparsity, ulf


def single(plot: Callable[..., Any], *data: Any, **style: Any) -> Any:
    """A one-Axes plot function drawn on a fresh figure of the house size; returns that Figure."""
    return plot(*data, ax=F.style.new_figure().gca(), **style).figure


@dataclass(frozen=True)
class Thresholds:
    """The cuts of REPLICATION.md §8-§9 as the figures draw them."""

    rare_freq: float
    """rare = freq < rare_freq (Neel's analysis.py, 1e-4)."""
    common_freq: float
    """common = freq > common_freq (Neel's scratch.py, 10^-3.5; also F21's 'Is Rare' colouring)."""
    log_freq_eps: float
    """Offset of the plotted log frequency (10^-6.5)."""
    scratch_log_freq_eps: float
    """Offset of F21's log frequency (1e-5)."""
    aligned_cos: float
    """Cosine with the mean rare direction above which a rare latent counts as aligned (0.95)."""
    top_1: float
    """1-sparse: fve_top_1 > top_1 ..."""
    next_9: float
    """... and fve_next_9 < next_9."""

    @property
    def rare_log10(self) -> float:
        return math.log10(self.rare_freq)

    @property
    def rare_label(self) -> str:
        return f"freq < {freq_text(self.rare_freq)}"

    @property
    def common_label(self) -> str:
        return f"freq > {freq_text(self.common_freq)}"

    @property
    def sparse_lines(self) -> tuple[float, float]:
        return self.top_1, self.next_9


def thresholds() -> Thresholds:
    """The library's current thresholds (module attributes read now, not at import)."""
    t = sparsity.SparsityThresholds()
    return Thresholds(
        rare_freq=metrics.RARE_FREQ,
        common_freq=metrics.COMMON_FREQ,
        log_freq_eps=metrics.LOG_FREQ_EPS,
        scratch_log_freq_eps=metrics.SCRATCH_LOG_FREQ_EPS,
        aligned_cos=ulf.ULF_COS_THRESHOLD,
        top_1=t.top_1,
        next_9=t.next_9,
    )
