"""Corpus-side helpers of the demo build: the bigram baseline the demo model must beat.

The corpus itself (stdlib bytes, split by file, BOS-first rows) lives in `sae_analysis.io.demo`, so that the library can read
it without importing this build package.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sae_analysis.io.demo import D_VOCAB


def bigram_counts(tokens: Int[Tensor, "n_seq pos"], d_vocab: int = D_VOCAB) -> Int[Tensor, "d_vocab d_vocab"]:
    """counts[a, b] = number of positions where token a is immediately followed by token b (within a row)."""
    prev, nxt = tokens[:, :-1].reshape(-1), tokens[:, 1:].reshape(-1)
    return torch.bincount(prev * d_vocab + nxt, minlength=d_vocab * d_vocab).reshape(d_vocab, d_vocab)


def bigram_log_probs(counts: Int[Tensor, "d_vocab d_vocab"]) -> Float[Tensor, "d_vocab d_vocab"]:
    """log P(next = b | prev = a) with add-one (Laplace) smoothing: (counts + 1) / (row total + d_vocab)."""
    smoothed = counts.double() + 1.0
    return (smoothed / smoothed.sum(dim=1, keepdim=True)).log()


def bigram_loss(train_tokens: Int[Tensor, "n_train pos"], eval_tokens: Int[Tensor, "n_eval eval_pos"]) -> float:
    """Mean next-token cross-entropy (nats) on `eval_tokens` of the add-one bigram model fitted on `train_tokens`.

    Scored on the same positions as the language model's loss (every position after the first of each row)."""
    log_p = bigram_log_probs(bigram_counts(train_tokens))
    prev, nxt = eval_tokens[:, :-1].reshape(-1), eval_tokens[:, 1:].reshape(-1)
    return float(-log_p[prev, nxt].mean())
