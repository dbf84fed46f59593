"""Comparing the latents of two SAEs (two seeds or runs) by the cosine of their directions (REPLICATION.md §9.4).

* `best_match`: for every latent i of A, max_j cos(a_i, b_j) over the latents j of B (optionally only those in `b_mask`).
  Neel's analysis compares **encoder** columns, restricted to run-2 latents with freq > 10^-3.5 (`COMMON_FREQ`); decoder
  cosines are an extension (label them so).
* `one_to_one_match`: a one-to-one assignment maximising the summed cosine (`scipy.optimize.linear_sum_assignment`, the
  Hungarian-type solver); an extension, Neel matches without it.
* `direction_cosine`: the cosine of two vectors, e.g. the ULF mean encoder directions of two runs.

The d_A x d_B cosine matrix is never held whole by `best_match`: it is built `chunk_size` rows at a time (16384 x 16384 in
float32 would be 1 GiB). `one_to_one_match` needs the whole (restricted) matrix, in float64 for scipy: restrict it by
frequency for large SAEs (16384 x 16384 costs 2 GiB and minutes of solver time).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from scipy.optimize import linear_sum_assignment
from torch import Tensor

DEFAULT_CHUNK = 2048


def unit_rows(x: Float[Tensor, "n d"]) -> Float[Tensor, "n d"]:
    """Rows scaled to unit L2 norm in float32; zero rows become NaN (so their cosines are NaN, never a spurious 0)."""
    x = x.float()
    return x / x.norm(dim=-1, keepdim=True)


def direction_cosine(u: Float[Tensor, " d"], v: Float[Tensor, " d"]) -> float:
    """cos(u, v); NaN when either vector is zero or contains NaN."""
    u, v = u.double(), v.double()
    return float(u @ v / (u.norm() * v.norm()))


class BestMatch(NamedTuple):
    """For each latent of A, its most similar latent of B."""

    index: Int[Tensor, " n_a"]
    """Index into B (the full B, even when a mask restricted the search); -1 when no candidate exists."""
    cos: Float[Tensor, " n_a"]
    """The best cosine; NaN when no candidate exists or the row of A is zero."""


def _masked_b(b: Float[Tensor, "n_b d"], b_mask: Bool[Tensor, " n_b"] | None) -> tuple[Tensor, Tensor]:
    """Unit rows of the selected part of B, with their original indices. Zero rows of B are dropped as candidates."""
    keep = torch.ones(b.shape[0], dtype=torch.bool, device=b.device) if b_mask is None else b_mask.to(b.device)
    keep = keep & (b.norm(dim=-1) > 0)
    idx = torch.nonzero(keep).squeeze(-1)
    return unit_rows(b[idx]), idx


def best_match(
    a: Float[Tensor, "n_a d"],
    b: Float[Tensor, "n_b d"],
    *,
    b_mask: Bool[Tensor, " n_b"] | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> BestMatch:
    """max_j cos(a_i, b_j) for every row i of A, over rows j of B in `b_mask`; chunked, O(chunk_size * n_b) memory.

    Pass directions as rows: `sae.W_enc.T` for encoders, `sae.W_dec` for decoders.
    """
    ub, idx_b = _masked_b(b, b_mask)
    n_a = a.shape[0]
    if idx_b.numel() == 0:
        return BestMatch(torch.full((n_a,), -1, dtype=torch.int64), torch.full((n_a,), float("nan")))
    best_cos = torch.empty(n_a, dtype=torch.float32, device=a.device)
    best_idx = torch.empty(n_a, dtype=torch.int64, device=a.device)
    for start in range(0, n_a, chunk_size):
        sims = unit_rows(a[start : start + chunk_size]) @ ub.T.to(a.device)
        best_cos[start : start + chunk_size], j = sims.max(dim=-1)
        best_idx[start : start + chunk_size] = idx_b.to(a.device)[j]
    nan_rows = torch.isnan(best_cos)
    best_idx[nan_rows] = -1
    return BestMatch(best_idx.cpu(), best_cos.cpu())


class Matching(NamedTuple):
    """A one-to-one matching between selected latents of A and of B (min(n_a, n_b) pairs), sorted by index_a."""

    index_a: Int[Tensor, " n_pairs"]
    index_b: Int[Tensor, " n_pairs"]
    cos: Float[Tensor, " n_pairs"]


def cosine_matrix(
    a: Float[Tensor, "n_a d"], b: Float[Tensor, "n_b d"], *, chunk_size: int = DEFAULT_CHUNK
) -> Float[Tensor, "n_a n_b"]:
    """The full cosine matrix, built in row chunks (float32). Zero rows give NaN rows/columns."""
    ub = unit_rows(b).T
    out = torch.empty(a.shape[0], b.shape[0], dtype=torch.float32)
    for start in range(0, a.shape[0], chunk_size):
        out[start : start + chunk_size] = (unit_rows(a[start : start + chunk_size]) @ ub.to(a.device)).cpu()
    return out


def one_to_one_match(
    a: Float[Tensor, "n_a d"],
    b: Float[Tensor, "n_b d"],
    *,
    a_mask: Bool[Tensor, " n_a"] | None = None,
    b_mask: Bool[Tensor, " n_b"] | None = None,
) -> Matching:
    """One-to-one assignment maximising the total cosine (extension of §9.4). NaN cosines (zero rows) count as -1."""
    ia = torch.arange(a.shape[0]) if a_mask is None else torch.nonzero(a_mask.cpu()).squeeze(-1)
    ib = torch.arange(b.shape[0]) if b_mask is None else torch.nonzero(b_mask.cpu()).squeeze(-1)
    sims = cosine_matrix(a[ia.to(a.device)], b[ib.to(b.device)])
    cost = np.nan_to_num(sims.double().numpy(), nan=-1.0)
    rows, cols = linear_sum_assignment(cost, maximize=True)
    rows_t, cols_t = torch.from_numpy(rows), torch.from_numpy(cols)
    return Matching(ia[rows_t], ib[cols_t], sims[rows_t, cols_t])


__all__ = ["unit_rows", "direction_cosine", "BestMatch", "best_match", "Matching", "cosine_matrix", "one_to_one_match"]
