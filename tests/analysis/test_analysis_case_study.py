"""Case studies (§9.9) and streamed frequencies on a tiny HookedTransformer: naive references and hand cases."""

from __future__ import annotations

import math

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from sae_analysis.activations import hook_activations
from sae_analysis.case_study import (
    context_window,
    direct_logit_effect,
    firing_stats,
    latent_activations,
    top_activating_contexts,
    top_bottom_tokens,
    ulf_token_stats,
    vocab_kurtosis,
)
from sae_analysis.frequency import latent_frequencies
from sae_analysis.moments import excess_kurtosis
from tests.helpers import tiny_sae

HOOK = "blocks.0.mlp.hook_post"


@pytest.fixture(scope="module")
def model() -> HookedTransformer:
    cfg = HookedTransformerConfig(n_layers=1, d_model=32, d_mlp=64, n_heads=2, d_head=16, n_ctx=16, d_vocab=50,
                                  act_fn="gelu", normalization_type="LN", seed=0)  # fmt: skip
    return HookedTransformer(cfg).eval()


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    return torch.randint(0, 50, (10, 16), generator=torch.Generator().manual_seed(1))


def test_latent_activations_match_full_encode(model, tokens):
    sae = tiny_sae(d_in=64, d_sae=96, hook_name=HOOK)
    acts = latent_activations(model, sae, tokens, 5, batch_size=3)
    ref = sae.encode(hook_activations(model, tokens, HOOK))[..., 5]
    assert acts.shape == (10, 16) and torch.allclose(acts, ref, atol=1e-5)


def test_frequency_counts_do_not_depend_on_batch_size(model, tokens):
    sae = tiny_sae(d_in=64, d_sae=96, hook_name=HOOK)
    results = [latent_frequencies(model, sae, tokens, batch_size=b) for b in (1, 3, 10)]
    assert all(torch.equal(r.counts, results[0].counts) for r in results)
    assert results[0].n_tokens == 160 and 0 < results[0].l0 < 96


def test_top_contexts_match_sort():
    acts = torch.tensor([[0.0, 3.0, 1.0], [5.0, 0.0, 2.0]])
    top = top_activating_contexts(acts, k=3)
    assert top.acts.tolist() == [5.0, 3.0, 2.0] and top.seq.tolist() == [1, 0, 1] and top.pos.tolist() == [0, 1, 2]
    assert top_activating_contexts(acts, k=100).acts.numel() == 6
    toks = torch.arange(20).reshape(2, 10)
    assert context_window(toks, 1, 2, before=5, after=1).tolist() == [10, 11, 12, 13]


def test_firing_stats_hand_case():
    # token 7 carries the max activation; fires: 4 tokens, 3 of them token 7; token 7 occurs 4 times, 3 firing.
    tokens = torch.tensor([[7, 1, 7, 2], [7, 3, 7, 4]])
    acts = torch.tensor([[1.0, 0.0, 10.0, 0.0], [0.0, 0.5, 4.0, 0.0]])
    s = firing_stats(acts, tokens)
    assert s.top_token == 7 and s.n_top_token == 4
    assert s.frac_of_fires_are_top_token == pytest.approx(3 / 4)
    assert s.frac_big_firing_on_top_token == pytest.approx(1.0)  # big = act > 2: only 10 and 4, both token 7
    assert s.frac_of_top_token_are_fires == pytest.approx(3 / 4)
    assert s.freq_per_seq.tolist() == [0.5, 0.5]
    assert s.mean_act_per_seq.tolist() == pytest.approx([11 / 4, 4.5 / 4])
    assert s.mean_act_when_firing_per_seq.tolist() == pytest.approx([5.5, 2.25])
    silent = firing_stats(torch.zeros(1, 3), torch.tensor([[1, 2, 3]]))
    assert math.isnan(silent.frac_of_fires_are_top_token) and math.isnan(silent.mean_act_when_firing_per_seq[0].item())


def test_direct_logit_effect_and_vocab_kurtosis(model, gen):
    W_dec = torch.randn(9, 64, generator=gen)
    W_out, W_U = model.W_out[0].detach(), model.W_U.detach()
    eff = direct_logit_effect(W_dec, W_out, W_U)
    assert eff.shape == (9, 50)
    assert torch.allclose(eff[4], (W_dec[4] @ W_out) @ W_U, atol=1e-5)
    vk = vocab_kurtosis(W_dec, W_out, W_U, chunk_size=2)
    assert torch.allclose(vk, excess_kurtosis(eff), atol=1e-4)
    tb = top_bottom_tokens(eff[0], k_top=3, k_bottom=2)
    order = torch.argsort(eff[0], descending=True)
    assert tb.top_tokens.tolist() == order[:3].tolist() and tb.bottom_tokens.tolist() == order[-2:].flip(0).tolist()


def test_ulf_token_stats_match_naive(model, tokens):
    sae = tiny_sae(d_in=64, d_sae=96, hook_name=HOOK)
    mask = torch.arange(96) % 3 == 0
    mu = sae.W_enc.detach()[:, mask].mean(-1)
    stats = ulf_token_stats(model, sae, tokens, mu, mask, batch_size=4)
    acts = hook_activations(model, tokens, HOOK)
    assert torch.allclose(stats.rare_proj, acts @ mu, atol=1e-4)
    f = sae.encode(acts)
    naive = torch.tensor([[float((f[i, j, mask] > 0).float().mean()) for j in range(16)] for i in range(10)])
    assert torch.allclose(stats.frac_rare_active, naive)
