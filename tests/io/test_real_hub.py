"""Opt-in checks against the real Hugging Face Hub (`pytest -m hub`, needs network; skipped by default and in CI).

They pin what REPLICATION-level facts say about the published gelu-1l SAEs: shapes 2048 -> 16384, run 1's seed 52,
decoder rows that are not unit norm, and evaluation tokens cut as 8 x 128 with BOS first."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.hub


@pytest.fixture(autouse=True)
def online(monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)


def test_run1_loads_with_published_shapes_and_config():
    from sae_analysis import load_sae

    sae = load_sae("NeelNanda/sparse_autoencoder", "run1")
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (2048, 16384)
    assert sae.cfg.hook_name == "blocks.0.mlp.hook_post" and sae.meta["format"] == "original"
    norms = sae.decoder_norms()
    assert not torch.allclose(norms, torch.ones_like(norms), atol=1e-3)  # trained without renormalisation
    x = torch.rand(4, 2048)
    assert sae(x).x_hat.shape == (4, 2048)


def test_c4_code_tokens_are_cut_with_bos_first():
    from sae_analysis.io import hub_tokens

    seqs = hub_tokens(n_seq=16, seq_len=128, bos_token_id=0)
    assert seqs.shape == (16, 128) and bool((seqs[:, 0] == 0).all())
