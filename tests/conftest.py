"""Shared fixtures: seeded generators, tiny builders, figure cleanup. No test touches the network."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

from sae_analysis import SAE, SAEConfig  # noqa: E402


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded torch generator."""
    return torch.Generator().manual_seed(0)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator."""
    return np.random.default_rng(0)


def tiny_sae(d_in: int = 8, d_sae: int = 32, *, seed: int = 0, **overrides) -> SAE:
    """A small randomly initialised SAE with non-zero biases, so that every bias path is exercised."""
    torch.manual_seed(seed)
    sae = SAE(SAEConfig(d_in=d_in, d_sae=d_sae, **overrides))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
        sae.b_dec.normal_(0, 0.1)
    return sae


@pytest.fixture
def make_sae():
    """Builder fixture: `make_sae(d_in=8, d_sae=32, **cfg_overrides)`."""
    return tiny_sae


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


def tiny_model(seed: int = 0, **overrides):
    """A randomly initialised one-layer GELU HookedTransformer shaped like gelu-1l but tiny (no download)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    kw = dict(n_layers=1, d_model=32, d_mlp=64, n_heads=2, d_head=16, n_ctx=16, d_vocab=50, act_fn="gelu",
              normalization_type="LN", seed=seed, device="cpu")
    kw.update(overrides)
    return HookedTransformer(HookedTransformerConfig(**kw)).eval()


@pytest.fixture(scope="session")
def model():
    """Session-wide tiny model (treat as read-only)."""
    return tiny_model()
