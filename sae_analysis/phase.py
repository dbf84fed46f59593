"""Frequency dynamics over training: the "phase transition" curves (REPLICATION.md §6.2, §9.8, F2-F5).

Input: per-latent frequency snapshots at known token counts (from a training log, or `latent_frequencies` on several
checkpoints), stacked as `freq [n_snap, d_sae]` with `tokens [n_snap]` ascending.

* `log_freq_histograms`: the histogram of log10(freq + 10^-6.5) per snapshot, in percent of latents (F2).
* `ulf_fraction_over_time`, `ulf_median_over_time`: the share of latents below the ULF threshold, and the median frequency
  of those latents, per snapshot.
* `changepoint`: **least-squares two-segment piecewise-constant fit.** For each split s in 1..n-1 the series is modelled as
  mean(y[:s]) before and mean(y[s:]) after; the split with the smallest total squared error wins (first one on ties). The
  change is placed halfway between tokens[s-1] and tokens[s], so its resolution is the snapshot spacing. Apply it to the
  ULF fraction (or median log-frequency) series; Neel reports a transition near 1.6B tokens (unconfirmed; §6.2 suggests
  data exhaustion at ~1.6955B).
* `frequency_change`: per-latent log frequency at two checkpoints (F3-F5). A resample between them puts a new latent at
  the same index (§9.8): compare indices across a resample with care.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from sae_analysis.frequency import FrequencyResult
from sae_analysis.metrics import LOG_FREQ_EPS, RARE_FREQ, freq_from_log10, log10_freq


class FrequencySnapshots(NamedTuple):
    """Per-latent frequencies at several token counts."""

    tokens: Int[Tensor, " n_snap"]
    freq: Float[Tensor, "n_snap d_sae"]
    source: str


def stack_snapshots(tokens: Sequence[int], results: Sequence[FrequencyResult], *, source: str = "") -> FrequencySnapshots:
    """Stack FrequencyResults taken at the given token counts, sorted by tokens."""
    if len(tokens) != len(results) or not results:
        raise ValueError(f"need one FrequencyResult per token count, got {len(tokens)} counts and {len(results)} results")
    t = torch.tensor(list(tokens), dtype=torch.int64)
    order = torch.argsort(t)
    freq = torch.stack([results[i].freq.double() for i in order.tolist()])
    return FrequencySnapshots(t[order], freq, source or "; ".join(r.source for r in results))


def snapshots_from_log10(
    tokens: Sequence[int] | Tensor | np.ndarray,
    log10_freq: Float[Tensor, "n_snap d_sae"] | np.ndarray,
    *,
    source: str,
    eps: float = 0.0,
) -> FrequencySnapshots:
    """Snapshots from stored log10 frequencies (e.g. a training log's float16 snapshots); -inf means never fired.

    Values are log10(freq + eps): eps = SPARSITY_EPS (1e-10) for stored densities (SAELens's sparsity.safetensors),
    eps = LOG_FREQ_EPS for values stored in the plotted convention log10(freq + 10^-6.5), eps = 0 for plain log10
    frequencies. freq = `metrics.freq_from_log10` (a stored dead latent comes back as exactly 0).
    """
    lf = torch.as_tensor(np.asarray(log10_freq), dtype=torch.float64)
    if lf.ndim != 2 or lf.shape[0] != len(tokens):
        raise ValueError(f"need log10 frequencies of shape [n_snap={len(tokens)}, d_sae], got {tuple(lf.shape)}")
    t = torch.as_tensor(np.asarray(tokens), dtype=torch.int64)
    order = torch.argsort(t)
    return FrequencySnapshots(t[order], freq_from_log10(lf[order], eps), source)


class LogFreqHistogram(NamedTuple):
    edges: Float[Tensor, " n_edges"]
    percent: Float[Tensor, "n_snap n_bins"]
    """Percent of latents per bin in each snapshot (NaN frequencies not counted, so rows may sum to < 100)."""


def log_freq_histograms(
    freq: Float[Tensor, "n_snap d_sae"], *, bins: int = 50, low: float = -6.5, high: float = 0.0
) -> LogFreqHistogram:
    """Histogram of log10(freq + 10^-6.5) per snapshot over [low, high]; values outside are clamped into the end bins."""
    edges = torch.linspace(low, high, bins + 1, dtype=torch.float64)
    x = log10_freq(freq.double()).clamp(low, high)
    idx = torch.bucketize(x, edges[1:-1], right=True)
    percent = torch.zeros(freq.shape[0], bins, dtype=torch.float64)
    ok = ~torch.isnan(x)
    percent.scatter_add_(1, torch.where(ok, idx, 0), ok.double())
    return LogFreqHistogram(edges, 100.0 * percent / freq.shape[1])


def ulf_fraction_over_time(freq: Float[Tensor, "n_snap d_sae"], threshold: float = RARE_FREQ) -> Float[Tensor, " n_snap"]:
    """Fraction of latents with freq < threshold in each snapshot."""
    return (freq < threshold).double().mean(-1)


def ulf_median_over_time(freq: Float[Tensor, "n_snap d_sae"], threshold: float = RARE_FREQ) -> Float[Tensor, " n_snap"]:
    """Median frequency of the latents below threshold in each snapshot (NaN when there are none)."""
    masked = torch.where(freq < threshold, freq.double(), torch.nan)
    return torch.nanquantile(masked, 0.5, dim=-1)


class Changepoint(NamedTuple):
    """A least-squares two-segment piecewise-constant fit of a series over tokens."""

    index: int
    """First snapshot of the second segment."""
    tokens: float
    """Estimated change: halfway between the last snapshot before and the first after."""
    before: float
    after: float
    sse: float
    """Residual sum of squares of the two-segment fit."""
    sse_reduction: float
    """1 - sse / (sse of one constant): near 1 for a clean step, near 0 for no change."""


def segment_sse(y: Float[Tensor, " n"]) -> Float[Tensor, " n_minus_1"]:
    """Total squared error of the best two-segment piecewise-constant fit, for every split s = 1..n-1 (vectorised)."""
    y = y.double()
    n = y.numel()
    c1, c2 = torch.cumsum(y, 0), torch.cumsum(y.square(), 0)
    s = torch.arange(1, n, dtype=torch.float64)
    left = c2[:-1] - c1[:-1].square() / s
    right = (c2[-1] - c2[:-1]) - (c1[-1] - c1[:-1]).square() / (n - s)
    return (left + right).clamp_min(0.0)


def changepoint(tokens: Int[Tensor, " n"], series: Float[Tensor, " n"]) -> Changepoint:
    """Locate one step change in `series` (NaN entries must be removed first). Needs at least two points."""
    if series.numel() < 2 or torch.isnan(series).any():
        raise ValueError("changepoint needs at least two points and no NaN")
    y = series.double().cpu()
    sse = segment_sse(y)
    s = int(torch.argmin(sse)) + 1
    total = float((y - y.mean()).square().sum())
    t = tokens.double().cpu()
    reduction = 1.0 - float(sse[s - 1]) / total if total > 0 else 0.0
    mid = float((t[s - 1] + t[s]) / 2)
    return Changepoint(s, mid, float(y[:s].mean()), float(y[s:].mean()), float(sse[s - 1]), reduction)


class FrequencyChange(NamedTuple):
    """Per-latent log frequency at two checkpoints and summary movement across the ULF threshold."""

    log10_freq_a: Float[Tensor, " d_sae"]
    log10_freq_b: Float[Tensor, " d_sae"]
    correlation: float
    """Pearson correlation of the two log frequencies."""
    became_ulf: Bool[Tensor, " d_sae"]
    left_ulf: Bool[Tensor, " d_sae"]


def frequency_change(
    freq_a: Float[Tensor, " d_sae"], freq_b: Float[Tensor, " d_sae"], threshold: float = RARE_FREQ
) -> FrequencyChange:
    """Compare two frequency snapshots of the same SAE (F3-F5), in log10(freq + 10^-6.5)."""
    a, b = log10_freq(freq_a.double(), LOG_FREQ_EPS), log10_freq(freq_b.double(), LOG_FREQ_EPS)
    corr = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    return FrequencyChange(a, b, corr, (freq_a >= threshold) & (freq_b < threshold), (freq_a < threshold) & (freq_b >= threshold))


__all__ = [
    "FrequencySnapshots",
    "stack_snapshots",
    "snapshots_from_log10",
    "LogFreqHistogram",
    "log_freq_histograms",
    "ulf_fraction_over_time",
    "ulf_median_over_time",
    "Changepoint",
    "segment_sse",
    "changepoint",
    "FrequencyChange",
    "frequency_change",
]
