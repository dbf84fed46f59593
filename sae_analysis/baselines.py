"""Random baselines for the weight analyses (REPLICATION.md §9.1, §9.2, §9.6).

Neel's analysis.py compares every neuron-basis statistic with the same statistic on `torch.randn_like(W)`: a standard
Gaussian matrix of the same shape, whose rows are uniformly random directions. A random direction in d_mlp dimensions puts
an expected (d_mlp - rank) / d_mlp of its squared norm in the null space of a rank-`rank` map (0.75 for gelu-1l's W_out,
2048 x 512).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from sae_analysis.moments import excess_kurtosis
from sae_analysis.sparsity import FVE_KS, NeuronSparsity, SparsityThresholds, neuron_sparsity

BASELINE_SEED = 0


def gaussian_like(weights: Float[Tensor, "n d"], *, seed: int = BASELINE_SEED) -> Float[Tensor, "n d"]:
    """A standard-normal float32 matrix with the shape of `weights`, drawn from its own seeded generator (reproducible)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(weights.shape), generator=gen, dtype=torch.float32).to(weights.device)


def baseline_neuron_sparsity(
    weights: Float[Tensor, "n d"],
    thresholds: SparsityThresholds = SparsityThresholds(),
    *,
    seed: int = BASELINE_SEED,
    ks: tuple[int, ...] = FVE_KS,
) -> NeuronSparsity:
    """`neuron_sparsity` of a Gaussian matrix shaped like `weights` (the F16 baseline)."""
    return neuron_sparsity(gaussian_like(weights, seed=seed), thresholds, ks)


def baseline_kurtosis(weights: Float[Tensor, "n d"], *, seed: int = BASELINE_SEED) -> Float[Tensor, " n"]:
    """Excess kurtosis of each row of a Gaussian matrix shaped like `weights` (the F17 baseline)."""
    return excess_kurtosis(gaussian_like(weights, seed=seed))


def random_null_fraction(d: int, rank: int) -> float:
    """Expected share of a uniformly random direction in R^d lying in a (d - rank)-dimensional subspace."""
    if not 0 <= rank <= d:
        raise ValueError(f"need 0 <= rank <= d, got rank={rank}, d={d}")
    return (d - rank) / d


__all__ = ["BASELINE_SEED", "gaussian_like", "baseline_neuron_sparsity", "baseline_kurtosis", "random_null_fraction"]
