"""Shared fixtures: seeded generators, tiny builders (from `tests.helpers`), figure cleanup. No test touches the network."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

from tests.helpers import tiny_model, tiny_sae  # noqa: E402


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded torch generator."""
    return torch.Generator().manual_seed(0)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator."""
    return np.random.default_rng(0)


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


@pytest.fixture(scope="session")
def model():
    """Session-wide tiny model (treat as read-only)."""
    return tiny_model()
