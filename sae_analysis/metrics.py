"""Batch-level metrics and the named frequency thresholds (REPLICATION.md §8). The trainer logs these; analyses reuse them."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

RARE_FREQ = 1e-4
"""Rare / ultra-low-frequency cut of Neel's analysis.py: rare = freq < 1e-4, non-rare = freq >= 1e-4."""
COMMON_FREQ = 10**-3.5
"""'Common' cut of Neel's scratch.py (freq > 10^-3.5); also the 'Is Rare' colouring threshold of F21."""
NEEL_RESAMPLE_FREQ = 10**-5.5
"""Resampling threshold of Neel's train.py: latents with freq < 10^-5.5 are re-initialised (REPLICATION.md §7.1)."""
LOG_FREQ_EPS = 10**-6.5
"""Offset of the log-frequency plots: log10(freq + 10^-6.5), so dead latents sit at -6.5 (REPLICATION.md §10)."""
SPARSITY_EPS = 1e-10
"""Offset of a stored log10 density (SAELens's sparsity.safetensors, and ours): log10(freq + 1e-10), so a dead latent is
stored as -10. Readers subtract it again (`freq_from_log10`); a plain 10**d would turn a dead latent into 1e-10."""
ROUNDING_TOLERANCE = 1e-4
"""Relative tolerance, in units of the offset, below which `freq_from_log10` returns exactly 0: a float32 log10 carries an
absolute error of a few 1e-7 (≈ 2e-6 relative after 10**d), so a dead latent comes back within ~1e-5 of the offset. No
resolvable frequency is that small (it would take ~1e14 tokens at SPARSITY_EPS, ~3e10 at LOG_FREQ_EPS)."""
SCRATCH_LOG_FREQ_EPS = 1e-5
"""Offset of Neel's scratch.py weight-vs-frequency panels (F21): log10(freq + 1e-5), not the histograms' 10^-6.5."""
LOGGED_THRESHOLDS = (1e-5, 1e-6)
"""Frequencies below which Neel's training logs count latents ('below_1e-5', 'below_1e-6')."""

ArrayT = TypeVar("ArrayT", Tensor, np.ndarray)


def l0(acts: Float[Tensor, "batch d_sae"]) -> Float[Tensor, ""]:
    """Mean number of active (> 0) latents per token. On a token sample it equals the sum of latent frequencies."""
    return (acts > 0).sum(-1, dtype=torch.float64).mean()


def explained_variance(x: Float[Tensor, "batch d_in"], x_hat: Float[Tensor, "batch d_in"]) -> Float[Tensor, ""]:
    """Fraction of the batch's variance explained: 1 - sum (x - x_hat)^2 / sum (x - mean_batch x)^2, in fp64."""
    x, x_hat = x.double(), x_hat.double()
    resid = (x - x_hat).pow(2).sum()
    total = (x - x.mean(0)).pow(2).sum()
    return 1 - resid / total


EXACT_FLOAT_COUNT = 1 << 24
"""Below this many rows, a float32 sum of 0/1 values is an exact integer (the mantissa has 24 bits)."""


def firing_counts(acts: Float[Tensor, "batch d_sae"] | Bool[Tensor, "batch d_sae"]) -> Int[Tensor, " d_sae"]:
    """Number of tokens on which each latent is active (> 0; or True for a boolean mask), as exact int64 counts
    (`grouped_firing_counts` with one group)."""
    fired = acts if acts.dtype == torch.bool else acts > 0
    if fired.ndim != 2:
        return fired.sum(0, dtype=torch.int64)
    return grouped_firing_counts(fired, fired.shape[0])[0]


def grouped_firing_counts(
    fired: Float[Tensor, "batch d_sae"] | Bool[Tensor, "batch d_sae"], group_rows: int
) -> Int[Tensor, "n_groups d_sae"]:
    """Firing counts per consecutive group of `group_rows` rows (e.g. the positions of one sequence), exact int64, from a
    boolean or 0/1 float mask: a batch of [1, group_rows] x [group_rows, d_sae] products (`bmm` with ones), exact because
    each count is at most group_rows < EXACT_FLOAT_COUNT, with memory linear in the batch. On a CPU this is an order of
    magnitude faster than a boolean reduction (4,096 x 16,384 in groups of 128 on 2 cores: 22 ms, against 38 ms for a
    float `sum(1)`, 186 ms for one block-diagonal product and 331 ms for a bool mask's row sum plus per-sequence sum); a
    0/1 float32 mask (`SAE.fires(x, as_float=True)`) needs no conversion at all."""
    rows = fired.shape[0]
    if group_rows <= 0 or rows % group_rows:
        raise ValueError(f"{rows} rows do not split into groups of {group_rows}")
    if group_rows >= EXACT_FLOAT_COUNT:
        return fired.reshape(-1, group_rows, fired.shape[-1]).sum(1, dtype=torch.int64)
    mask = fired if fired.dtype in (torch.float32, torch.float64) else fired.float()
    ones = mask.new_ones(rows // group_rows, 1, group_rows)
    return torch.bmm(ones, mask.reshape(-1, group_rows, mask.shape[-1]))[:, 0].round_().to(torch.int64)


def log10_freq(freq: ArrayT, eps: float = LOG_FREQ_EPS) -> ArrayT:
    """log10(freq + eps), the plotted log frequency (dead latents at log10(eps) = -6.5 by default)."""
    if isinstance(freq, Tensor):
        return torch.log10(freq.double() + eps)
    return np.log10(np.asarray(freq, dtype=np.float64) + eps)


def freq_from_log10(stored: ArrayT, eps: float) -> ArrayT:
    """Inverse of log10(freq + eps), in float64: max(10**stored - eps, 0), and exactly 0 where the difference is within
    `ROUNDING_TOLERANCE * eps` (the rounding of a stored dead latent). -inf (never fired, eps = 0) gives 0."""
    if isinstance(stored, Tensor):
        freq = torch.pow(10.0, stored.double()) - eps
        return torch.where(freq > ROUNDING_TOLERANCE * eps, freq, torch.zeros_like(freq))
    freq = np.power(10.0, np.asarray(stored, dtype=np.float64)) - eps
    return np.where(freq > ROUNDING_TOLERANCE * eps, freq, 0.0)


def below_key(threshold: float) -> str:
    """The summary key of the fraction of latents below a logged threshold: 1e-5 -> 'frac_below_1e-5'."""
    return f"frac_below_{threshold:.0e}".replace("e-0", "e-")


def frequency_fractions(freq: Float[Tensor, " d_sae"]) -> dict[str, float]:
    """Neel's logged fractions: dead (frequency exactly 0 in the sample), below 1e-5 and below 1e-6.

    'dead' depends on the sample size (REPLICATION.md §8): report the token count alongside it.
    """
    freq = freq.double()
    out = {"frac_dead": float((freq == 0).double().mean())}
    for t in LOGGED_THRESHOLDS:
        out[below_key(t)] = float((freq < t).double().mean())
    return out
