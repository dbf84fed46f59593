"""Geometry of latent directions: encoder-decoder cosine and the share of each direction in the null space of the model's
MLP output map (REPLICATION.md §9.5, §9.6; Neel's analysis.py).

* `encoder_decoder_cosine`: cos_i = e_i . d_i / (|e_i| |d_i|) with e_i = W_enc[:, i], d_i = W_dec[i]. Median ~0.5 for
  non-rare gelu-1l latents [Neel]. NaN when either vector is zero.
* `null_space_fraction`: with W_out [d_mlp, d_model] = U S V^T (singular values descending),
  null_frac(v) = |v U[:, k:]|^2 / |v|^2, the share of a neuron-space vector that W_out sends to zero. Neel takes
  k = d_model (U[:, 512:]); a random direction then gives (d_mlp - d_model) / d_mlp = 0.75. TransformerLens's weight centring
  makes W_out rank <= d_model - 1, so `NullSpace` records the numerical rank too. We use the identity
  |v U[:, k:]|^2 = |v|^2 - |v U[:, :k]|^2, so only the reduced SVD is needed.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor

from sae_analysis.baselines import random_null_fraction


def encoder_decoder_cosine(W_enc: Float[Tensor, "d_in d_sae"], W_dec: Float[Tensor, "d_sae d_in"]) -> Float[Tensor, " d_sae"]:
    """Cosine between each latent's encoder column and decoder row; NaN for a zero vector."""
    e, d = W_enc.T.float().contiguous(), W_dec.float()  # contiguous rows: strided elementwise products are ~3x slower
    return torch.linalg.vecdot(e, d) / (torch.linalg.vector_norm(e, dim=-1) * torch.linalg.vector_norm(d, dim=-1))


class NullSpace(NamedTuple):
    """The range of W_out's left singular vectors, as used by `null_space_fraction`."""

    range_basis: Float[Tensor, "d_mlp k"]
    """U[:, :k]: directions W_out does *not* send to zero (k = d_model by Neel's convention)."""
    singular_values: Float[Tensor, " s"]
    """All singular values of W_out, descending (F19)."""
    rank: int
    """Numerical rank of W_out: singular values above max(S) * max(shape) * eps of W_out's dtype (numpy's default)."""
    random_fraction: float
    """Expected null_frac of a random direction: (d_mlp - k) / d_mlp."""


def null_space(W_out: Float[Tensor, "d_mlp d_model"], *, k: int | None = None) -> NullSpace:
    """SVD of W_out; the first `k` left singular vectors span the range (default k = d_model, Neel's U[:, 512:] cut).

    Pass `k=ns.rank` from a first call to use the numerical rank instead (relevant for centred W_out, REPLICATION.md §9.6).
    """
    # float32 unless given float64: LAPACK's float64 SVD of 2048 x 512 is >10x slower here, for no gain at fp32 weights
    W = W_out.detach().to(torch.float64 if W_out.dtype == torch.float64 else torch.float32)
    U, S, _ = torch.linalg.svd(W, full_matrices=False)
    k = W.shape[1] if k is None else k
    if not 0 <= k <= min(W.shape):
        raise ValueError(f"k must lie in [0, {min(W.shape)}], got {k}")
    # numerical rank at the *input's* precision (a float32 W_out centred in float32 keeps a ~1e-7 singular value)
    eps = torch.finfo(W_out.dtype).eps if W_out.is_floating_point() else torch.finfo(torch.float64).eps
    rank = int((S > S.max() * max(W.shape) * eps).sum()) if S.numel() else 0
    return NullSpace(U[:, :k].float(), S.float(), rank, random_null_fraction(W.shape[0], k))


def null_space_fraction(vectors: Float[Tensor, "n d_mlp"], ns: NullSpace) -> Float[Tensor, " n"]:
    """Share of each row's squared norm in the null space of W_out; NaN for zero rows. Clamped to [0, 1] (rounding)."""
    v = vectors.float()
    total = v.square().sum(-1)
    kept = (v @ ns.range_basis.to(v.device)).square().sum(-1)
    return ((total - kept) / total).clamp(0.0, 1.0)


def is_centred(W_out: Float[Tensor, "d_mlp d_model"], *, rtol: float = 1e-4) -> bool:
    """Whether W_out's writing weights are centred, as TransformerLens's `center_writing_weights` leaves them: every row
    (one neuron's output vector) has mean ~0 over d_model, i.e. max |row mean| <= rtol x mean |W_out|. Then W_out's rank is
    at most d_model - 1 (REPLICATION.md §9.6)."""
    W = W_out.detach().double()
    return bool(W.mean(-1).abs().max() <= rtol * W.abs().mean()) if W.numel() else False


__all__ = ["encoder_decoder_cosine", "NullSpace", "null_space", "null_space_fraction", "is_centred"]
