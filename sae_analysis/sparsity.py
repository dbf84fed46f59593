"""Neuron-basis sparsity of latent directions: how much of each direction's squared weight sits in its top neurons
(REPLICATION.md §9.1; Neel's analysis.py).

For a direction w (a decoder row `W_dec[i]` or an encoder column `W_enc[:, i]`) with squared entries sorted in descending
order s_1 >= s_2 >= ...:

    fve_top_k  = (s_1 + ... + s_k) / sum_j s_j          k in (1, 2, 5, 10, 100)
    fve_next_9 = fve_top_10 - fve_top_1

Classes (Neel's analysis.py, applied to the decoder): **1-sparse** if fve_top_1 > 0.35 and fve_next_9 < 0.1; **10-sparse**
if fve_top_10 > 0.35 and not 1-sparse; **dense** otherwise. The measure is invariant to each row's scale and sign.
Neel prints class fractions over *all* latents and scatters the non-rare ones (freq >= 1e-4): `class_fractions` takes an
optional mask for the latter.

Edge cases: a zero-norm row has fve = NaN (0/0) and is classed dense (every comparison with NaN is false); k larger than
the row length is clipped to it (fve_top_k = 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

FVE_KS: tuple[int, ...] = (1, 2, 5, 10, 100)
SPARSITY_CLASSES: tuple[str, ...] = ("1-sparse", "10-sparse", "dense")
"""Class names; `sparsity_classes` returns codes indexing this tuple."""
ONE_SPARSE, TEN_SPARSE, DENSE = 0, 1, 2


@dataclass(frozen=True)
class SparsityThresholds:
    """Thresholds of the 1-sparse / 10-sparse / dense classes (defaults: Neel's analysis.py)."""

    top_1: float = 0.35
    """1-sparse needs fve_top_1 > top_1."""
    next_9: float = 0.1
    """... and fve_next_9 < next_9."""
    top_10: float = 0.35
    """10-sparse needs fve_top_10 > top_10 (and not 1-sparse)."""

    def __post_init__(self) -> None:
        for name in ("top_1", "next_9", "top_10"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"threshold {name} must lie in [0, 1], got {getattr(self, name)}")


class NeuronSparsity(NamedTuple):
    """Per-latent neuron-basis sparsity of a set of directions."""

    ks: tuple[int, ...]
    """The k of each column of `fve_top`."""
    fve_top: Float[Tensor, "n n_ks"]
    """fve_top[:, j] = share of squared weight in the top ks[j] neurons."""
    fve_next_9: Float[Tensor, " n"]
    """fve_top_10 - fve_top_1."""
    classes: Int[Tensor, " n"]
    """Codes into SPARSITY_CLASSES (0 = 1-sparse, 1 = 10-sparse, 2 = dense)."""

    def fve(self, k: int) -> Float[Tensor, " n"]:
        """The fve_top_k column."""
        return self.fve_top[:, self.ks.index(k)]


def fve_top_k(
    directions: Float[Tensor, "n d"], ks: tuple[int, ...] = FVE_KS, *, chunk_size: int = 4096
) -> Float[Tensor, "n n_ks"]:
    """Share of each row's squared L2 norm in its k largest-magnitude entries, for each k in `ks`.

    Uses `torch.topk` (largest max(ks) entries only, not a full sort) and works in chunks of rows. NaN for zero rows.
    """
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    d = directions.shape[-1]
    k_max = min(max(ks), d)
    idx = torch.tensor([min(k, d) - 1 for k in ks], device=directions.device)
    out = torch.empty(directions.shape[0], len(ks), dtype=torch.float32, device=directions.device)
    for start in range(0, directions.shape[0], chunk_size):
        sq = directions[start : start + chunk_size].float().square()
        top = sq.topk(k_max, dim=-1, sorted=True).values.cumsum(-1)
        out[start : start + chunk_size] = top[:, idx] / sq.sum(-1, keepdim=True)
    return out


def sparsity_classes(
    fve_top_1: Float[Tensor, " n"],
    fve_next_9: Float[Tensor, " n"],
    fve_top_10: Float[Tensor, " n"],
    thresholds: SparsityThresholds = SparsityThresholds(),
) -> Int[Tensor, " n"]:
    """Class codes (0 = 1-sparse, 1 = 10-sparse, 2 = dense) with Neel's rule; NaN rows are dense."""
    one = (fve_top_1 > thresholds.top_1) & (fve_next_9 < thresholds.next_9)
    ten = (fve_top_10 > thresholds.top_10) & ~one
    classes = torch.full(fve_top_1.shape, DENSE, dtype=torch.int64, device=fve_top_1.device)
    classes[ten] = TEN_SPARSE
    classes[one] = ONE_SPARSE
    return classes


def neuron_sparsity(
    directions: Float[Tensor, "n d"],
    thresholds: SparsityThresholds = SparsityThresholds(),
    ks: tuple[int, ...] = FVE_KS,
) -> NeuronSparsity:
    """fve_top_k for `ks` (which must include 1 and 10), fve_next_9 and the class of every row of `directions`.

    Pass `sae.W_dec` for the decoder (the headline measure) and `sae.W_enc.T` for the encoder.
    """
    if 1 not in ks or 10 not in ks:
        raise ValueError(f"ks must contain 1 and 10 to classify, got {ks}")
    fve = fve_top_k(directions, ks)
    top_1, top_10 = fve[:, ks.index(1)], fve[:, ks.index(10)]
    next_9 = top_10 - top_1
    return NeuronSparsity(ks, fve, next_9, sparsity_classes(top_1, next_9, top_10, thresholds))


def neuron_frac_max(directions: Float[Tensor, "n d"]) -> Float[Tensor, " n"]:
    """Neel's scratch.py "Neuron Frac Max" (F22): each row's largest *signed* entry over the sum of its absolute entries,
    max_j w_j / sum_j |w_j|. An L1 share, not the squared share fve_top_1: a row whose largest-magnitude entry is negative
    scores low (negative if every entry is). Scale-invariant for positive scales; NaN for a zero row."""
    w = directions.float()
    return w.amax(-1) / w.abs().sum(-1)


def class_fractions(classes: Int[Tensor, " n"], mask: Bool[Tensor, " n"] | None = None) -> dict[str, float]:
    """Fraction of latents in each class, over all latents or over `mask` (e.g. non-rare). NaN fractions if empty."""
    selected = classes if mask is None else classes[mask]
    n = selected.numel()
    counts = torch.bincount(selected, minlength=len(SPARSITY_CLASSES))
    return {name: (float(counts[i]) / n if n else float("nan")) for i, name in enumerate(SPARSITY_CLASSES)}


def class_names(classes: Int[Tensor, " n"]) -> list[str]:
    """Class codes -> names ('1-sparse', '10-sparse', 'dense')."""
    return [SPARSITY_CLASSES[c] for c in classes.tolist()]


__all__ = [
    "FVE_KS",
    "SPARSITY_CLASSES",
    "SparsityThresholds",
    "NeuronSparsity",
    "fve_top_k",
    "sparsity_classes",
    "neuron_sparsity",
    "neuron_frac_max",
    "class_fractions",
    "class_names",
]
