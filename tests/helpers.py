"""Shared builders for the tests, imported one way: `from tests.helpers import tiny_sae, tiny_model`
(the Hub-protocol server lives in `tests.hubserver`)."""

from __future__ import annotations

import torch

from sae_analysis import SAE, SAEConfig


def tiny_sae(d_in: int = 8, d_sae: int = 32, *, seed: int = 0, **overrides) -> SAE:
    """A small randomly initialised SAE with non-zero biases, so that every bias path is exercised."""
    torch.manual_seed(seed)
    sae = SAE(SAEConfig(d_in=d_in, d_sae=d_sae, **overrides))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
        sae.b_dec.normal_(0, 0.1)
    return sae


def tiny_model(seed: int = 0, **overrides):
    """A randomly initialised one-layer GELU HookedTransformer shaped like gelu-1l but tiny (no download)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    kw = dict(n_layers=1, d_model=32, d_mlp=64, n_heads=2, d_head=16, n_ctx=16, d_vocab=50, act_fn="gelu",
              normalization_type="LN", seed=seed, device="cpu")
    kw.update(overrides)
    return HookedTransformer(HookedTransformerConfig(**kw)).eval()
