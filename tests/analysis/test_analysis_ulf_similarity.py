"""ULF cluster (§9.3) and cross-SAE comparison (§9.4): planted directions and permutations, naive references."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from sae_analysis.similarity import best_match, cosine_matrix, direction_cosine, one_to_one_match
from sae_analysis.ulf import auto_ulf_split, ulf_cluster, ulf_mask


def planted_ulf(gen: torch.Generator, d_in: int = 32, d_sae: int = 96, n_ulf: int = 40):
    """Encoder columns of the first n_ulf latents share one direction (plus noise); their decoders are random."""
    shared = torch.randn(d_in, generator=gen)
    W_enc = torch.randn(d_in, d_sae, generator=gen)
    scales = torch.rand(n_ulf, generator=gen) + 0.5
    W_enc[:, :n_ulf] = shared[:, None] * scales + 0.02 * torch.randn(d_in, n_ulf, generator=gen)
    W_dec = torch.randn(d_sae, d_in, generator=gen)
    freq = torch.full((d_sae,), 1e-2, dtype=torch.float64)
    freq[:n_ulf] = 10 ** (-6 + torch.rand(n_ulf, generator=gen, dtype=torch.float64))
    return shared, W_enc, W_dec, freq


def test_planted_shared_encoder_direction_is_recovered(gen):
    shared, W_enc, W_dec, freq = planted_ulf(gen)
    mask = ulf_mask(freq)
    assert mask.sum() == 40 and mask[:40].all()
    enc = ulf_cluster(W_enc.T, mask)
    assert direction_cosine(enc.mean_direction, shared) > 0.999
    assert enc.frac_above == 1.0 and enc.cos_with_mean.min() > 0.99
    dec = ulf_cluster(W_dec, mask)
    assert dec.frac_above == 0.0 and dec.cos_with_mean.median() < 0.5


def test_ulf_cluster_matches_naive_loop(gen):
    W = torch.randn(20, 8, generator=gen)
    mask = torch.rand(20, generator=gen) < 0.5
    c = ulf_cluster(W, mask)
    members = [W[i] for i in range(20) if mask[i]]
    mu = sum(members) / len(members)
    for j, v in enumerate(members):
        assert c.cos_with_mean[j].item() == pytest.approx(float(mu @ v / (mu.norm() * v.norm())), abs=1e-5)
        assert c.proj_onto_mean[j].item() == pytest.approx(float(mu @ v / mu.norm()), abs=1e-5)


def test_ulf_edge_cases():
    freq = torch.tensor([1e-3, float("nan"), 0.0, 5e-5], dtype=torch.float64)
    assert ulf_mask(freq).tolist() == [False, False, True, True]
    empty = ulf_cluster(torch.randn(4, 3), torch.zeros(4, dtype=torch.bool))
    assert torch.isnan(empty.mean_direction).all() and math.isnan(empty.frac_above) and empty.cos_with_mean.numel() == 0


def test_auto_split_finds_planted_bimodal_modes(gen):
    low = 10 ** (-6.0 + 0.2 * torch.randn(300, generator=gen, dtype=torch.float64))
    high = 10 ** (-2.5 + 0.4 * torch.randn(700, generator=gen, dtype=torch.float64))
    freq = torch.cat([low, high, torch.tensor([float("nan")], dtype=torch.float64)])
    split = auto_ulf_split(freq)
    assert -5.5 < split.log10_threshold < -3.5 and split.separation > 3
    assert split.weights[0] == pytest.approx(0.3, abs=0.02)
    assert torch.equal(ulf_mask(freq, split.threshold)[:1000], torch.arange(1000) < 300)
    with pytest.raises(ValueError):
        auto_ulf_split(torch.full((10,), 1e-3, dtype=torch.float64))


@pytest.mark.parametrize("chunk", [3, 4096])
def test_planted_permutation_is_matched_with_cosine_one(gen, chunk):
    A = torch.randn(50, 16, generator=gen)
    perm = torch.randperm(50, generator=gen)
    B = A[perm] * (torch.rand(50, 1, generator=gen) + 0.1)  # positive rescaling keeps directions
    inv = torch.argsort(perm)
    bm = best_match(A, B, chunk_size=chunk)
    assert torch.equal(bm.index, inv) and torch.allclose(bm.cos, torch.ones(50), atol=1e-5)
    m = one_to_one_match(A, B)
    assert torch.equal(m.index_a, torch.arange(50)) and torch.equal(m.index_b, inv)
    assert torch.allclose(m.cos, torch.ones(50), atol=1e-5)


def test_best_match_matches_naive_and_respects_mask(gen):
    A, B = torch.randn(7, 5, generator=gen), torch.randn(11, 5, generator=gen)
    mask = torch.rand(11, generator=gen) < 0.6
    bm = best_match(A, B, b_mask=mask, chunk_size=2)
    for i in range(7):
        cands = [(float(A[i] @ B[j] / (A[i].norm() * B[j].norm())), j) for j in range(11) if mask[j]]
        c, j = max(cands)
        assert bm.index[i].item() == j and bm.cos[i].item() == pytest.approx(c, abs=1e-5)
    none = best_match(A, B, b_mask=torch.zeros(11, dtype=torch.bool))
    assert (none.index == -1).all() and torch.isnan(none.cos).all()


def test_zero_rows_never_match():
    A = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    B = torch.tensor([[0.0, 0.0], [2.0, 0.1]])
    bm = best_match(A, B)
    assert bm.index.tolist() == [1, -1] and math.isnan(bm.cos[1].item())
    assert torch.isnan(cosine_matrix(A, B)[:, 0]).all()


def test_one_to_one_beats_greedy_and_equals_brute_force(gen):
    A = torch.randn(5, 3, generator=gen)
    B = torch.randn(5, 3, generator=gen)
    sims = cosine_matrix(A, B)
    best = max(itertools.permutations(range(5)), key=lambda p: sum(float(sims[i, p[i]]) for i in range(5)))
    m = one_to_one_match(A, B)
    assert m.index_b.tolist() == list(best)
    assert m.cos.sum().item() == pytest.approx(sum(float(sims[i, best[i]]) for i in range(5)), abs=1e-5)


def test_one_to_one_with_masks_returns_original_indices(gen):
    A = torch.randn(6, 4, generator=gen)
    B = A[[3, 0, 5, 1, 4, 2]]
    a_mask = torch.tensor([True, False, True, False, False, True])
    m = one_to_one_match(A, B, a_mask=a_mask, b_mask=torch.ones(6, dtype=torch.bool))
    assert m.index_a.tolist() == [0, 2, 5] and m.index_b.tolist() == [1, 5, 2]


def test_direction_cosine_analytic():
    assert direction_cosine(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])) == pytest.approx(1 / math.sqrt(2))
    assert math.isnan(direction_cosine(torch.zeros(2), torch.ones(2)))
