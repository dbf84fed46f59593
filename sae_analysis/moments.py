"""Excess kurtosis of each row of a matrix: how heavy-tailed a latent's weights are in the neuron basis (REPLICATION.md §9.2).

Neel's analysis.py calls `scipy.stats.kurtosis(W_dec.T)` with scipy's defaults (`axis=0, fisher=True, bias=True`): per latent,
over its d_in weights, the *excess* kurtosis with population (biased) moments and no small-sample correction,

    k = m4 / m2**2 - 3,   m_r = mean((w - mean(w))**r).

A Gaussian vector of length n gives k ≈ 0 with standard error ≈ sqrt(24 / n) (0.11 for n = 2048). Heavy tails (a few large
weights) give large positive k. The same statistic over the vocabulary of a latent's direct logit effect is the "vocab
kurtosis" of §9.9 (see `sae_analysis.case_study.vocab_kurtosis`).
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

DEFAULT_CHUNK = 4096


def excess_kurtosis(x: Float[Tensor, "*batch n"], *, chunk_size: int = DEFAULT_CHUNK) -> Float[Tensor, "*batch"]:
    """Excess kurtosis over the last axis, with scipy's conventions (`fisher=True, bias=True`).

    Computed in float32 (float64 for float64 input), chunked over rows to bound memory: agrees with scipy's float64 result
    to ~1e-6 relative on 2048-long rows. Edge case, as in scipy >= 1.9: a row with zero variance (constant, or all zeros)
    gives NaN. NaN inputs propagate to NaN.
    """
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    flat = x.reshape(-1, x.shape[-1])
    out = torch.empty(flat.shape[0], dtype=dtype, device=x.device)
    for start in range(0, flat.shape[0], chunk_size):
        out[start : start + chunk_size] = _kurtosis_rows(flat[start : start + chunk_size].to(dtype))
    return out.reshape(x.shape[:-1])


def _kurtosis_rows(rows: Float[Tensor, "rows n"]) -> Float[Tensor, " rows"]:
    mean = rows.mean(-1, keepdim=True)
    sq = (rows - mean).square()
    m2 = sq.mean(-1)
    m4 = sq.square().mean(-1)
    # scipy treats a row as constant when m2 is at the float resolution of its mean; do the same.
    constant = m2 <= (torch.finfo(rows.dtype).resolution * mean.squeeze(-1).abs()).square()
    k = m4 / m2.square() - 3.0
    return torch.where(constant, torch.full_like(k, math.nan), k)


def kurtosis_standard_error(n: int) -> float:
    """Approximate standard error of the excess kurtosis of n i.i.d. Gaussian samples: sqrt(24 / n)."""
    return math.sqrt(24.0 / n)


__all__ = ["excess_kurtosis", "kurtosis_standard_error"]
