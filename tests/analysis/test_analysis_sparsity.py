"""Neuron-basis sparsity (§9.1), excess kurtosis (§9.2) and their Gaussian baselines: analytic, planted and naive checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from sae_analysis.baselines import baseline_kurtosis, baseline_neuron_sparsity, gaussian_like, random_null_fraction
from sae_analysis.moments import excess_kurtosis, kurtosis_standard_error
from sae_analysis.sparsity import (
    FVE_KS,
    SparsityThresholds,
    class_fractions,
    class_names,
    fve_top_k,
    neuron_frac_max,
    neuron_sparsity,
    sparsity_classes,
)


def planted_rows(d: int, gen: torch.Generator) -> tuple[torch.Tensor, list[str]]:
    """Rows built to be 1-sparse (one big neuron), 10-sparse (ten equal neurons) or dense (all equal), with small noise."""
    rows, labels = [], []
    for i in range(12):
        kind = ("1-sparse", "10-sparse", "dense")[i % 3]
        if kind == "1-sparse":
            w = torch.zeros(d)
            w[(5 * i) % d] = 3.0
        elif kind == "10-sparse":
            w = torch.zeros(d)
            w[torch.randperm(d, generator=gen)[:10]] = 1.0
        else:
            w = torch.ones(d)
        w = w * torch.sign(torch.randn(d, generator=gen)) + 0.01 * torch.randn(d, generator=gen)
        rows.append(w * (i + 1))  # per-row scale must not matter
        labels.append(kind)
    return torch.stack(rows), labels


def naive_fve(w: torch.Tensor, k: int) -> float:
    s = sorted((float(v) ** 2 for v in w), reverse=True)
    return sum(s[:k]) / sum(s)


@pytest.mark.parametrize("d", [48, 64])
def test_planted_classes_exact(gen, d):
    W, labels = planted_rows(d, gen)
    sp = neuron_sparsity(W)
    assert class_names(sp.classes) == labels
    fr = class_fractions(sp.classes)
    assert fr == {"1-sparse": 4 / 12, "10-sparse": 4 / 12, "dense": 4 / 12}


@pytest.mark.parametrize("d", [48, 64])
def test_fve_matches_naive_sort(gen, d):
    W = torch.randn(9, d, generator=gen) ** 3
    fve = fve_top_k(W, FVE_KS, chunk_size=4)
    for i in range(W.shape[0]):
        for j, k in enumerate(FVE_KS):
            assert fve[i, j].item() == pytest.approx(naive_fve(W[i], k), rel=1e-5)
    assert torch.allclose(fve[:, FVE_KS.index(100)], torch.ones(9))  # k > d clips to the whole row


def test_one_hot_and_scale_sign_invariance(gen):
    w = torch.zeros(1, 32)
    w[0, 7] = -2.5
    assert fve_top_k(w)[0, 0].item() == 1.0
    W = torch.randn(5, 32, generator=gen)
    scaled = W * torch.tensor([[-3.0], [0.1], [7.0], [-1.0], [2.0]])
    assert torch.allclose(fve_top_k(W), fve_top_k(scaled), atol=1e-6)


def test_permuting_latents_permutes_results(gen):
    W, _ = planted_rows(40, gen)
    perm = torch.randperm(W.shape[0], generator=gen)
    a, b = neuron_sparsity(W), neuron_sparsity(W[perm])
    assert torch.equal(a.classes[perm], b.classes)
    assert torch.allclose(a.fve_top[perm], b.fve_top)


def test_zero_row_is_nan_and_dense():
    W = torch.zeros(2, 16)
    W[1, 3] = 1.0
    sp = neuron_sparsity(W)
    assert torch.isnan(sp.fve_top[0]).all()
    assert class_names(sp.classes) == ["dense", "1-sparse"]


def test_thresholds_are_configurable_and_validated():
    t1, n9, t10 = torch.tensor([0.3]), torch.tensor([0.05]), torch.tensor([0.4])
    assert class_names(sparsity_classes(t1, n9, t10)) == ["10-sparse"]
    assert class_names(sparsity_classes(t1, n9, t10, SparsityThresholds(top_1=0.25))) == ["1-sparse"]
    assert class_names(sparsity_classes(t1, n9, t10, SparsityThresholds(top_10=0.5))) == ["dense"]
    with pytest.raises(ValueError):
        SparsityThresholds(top_1=1.5)


def test_class_fractions_with_mask():
    classes = torch.tensor([0, 0, 1, 2, 2, 2])
    mask = torch.tensor([True, False, True, True, False, False])
    assert class_fractions(classes, mask) == {"1-sparse": 1 / 3, "10-sparse": 1 / 3, "dense": 1 / 3}
    assert all(math.isnan(v) for v in class_fractions(classes, torch.zeros(6, dtype=torch.bool)).values())


@pytest.mark.parametrize("n", [48, 64, 257])
def test_kurtosis_matches_scipy(rng, n):
    x = rng.standard_t(df=5, size=(13, n)).astype(np.float32)
    ours = excess_kurtosis(torch.from_numpy(x), chunk_size=5).numpy()
    ref = scipy.stats.kurtosis(x.astype(np.float64), axis=1, fisher=True, bias=True)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_kurtosis_analytic_and_edge_cases():
    # two-point symmetric distribution: m4 / m2^2 = 1, so excess kurtosis = -2
    assert excess_kurtosis(torch.tensor([[1.0, -1.0, 1.0, -1.0]])).item() == pytest.approx(-2.0)
    out = excess_kurtosis(torch.tensor([[2.0, 2.0, 2.0], [0.0, 0.0, 0.0], [float("nan"), 1.0, 2.0]]))
    assert torch.isnan(out).all()  # constant rows -> NaN as in scipy >= 1.9; NaN propagates


def test_gaussian_rows_have_zero_excess_kurtosis(gen):
    n = 2048
    k = excess_kurtosis(torch.randn(64, n, generator=gen))
    se = kurtosis_standard_error(n)
    assert se == pytest.approx(0.108, abs=1e-3)
    assert k.abs().max().item() < 5 * se
    assert abs(k.mean().item()) < 4 * se / math.sqrt(64)


def test_baselines_are_seeded_gaussians_of_the_right_shape():
    W = torch.zeros(40, 256)
    g = gaussian_like(W, seed=3)
    assert g.shape == W.shape and torch.equal(g, gaussian_like(W, seed=3)) and not torch.equal(g, gaussian_like(W, seed=4))
    assert abs(baseline_kurtosis(W).median().item()) < 3 * kurtosis_standard_error(256)
    sp = baseline_neuron_sparsity(W)
    assert class_fractions(sp.classes)["1-sparse"] == 0.0  # a random direction is never 1-sparse at d = 256
    assert random_null_fraction(2048, 512) == 0.75
    with pytest.raises(ValueError):
        random_null_fraction(4, 5)


def test_neuron_frac_max_is_the_signed_max_over_the_l1_norm(gen):
    """Neel's scratch.py F22 "Neuron Frac Max": max_j w_j / sum_j |w_j| (a signed max, an L1 share)."""
    w = torch.tensor([[3.0, -1.0, 0.0, 0.0], [-4.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [-1.0, -1.0, -2.0, 0.0]])
    out = neuron_frac_max(w)
    np.testing.assert_allclose(out[[0, 1, 3]].numpy(), [0.75, 0.2, 0.0])  # a large negative entry does not count
    assert torch.isnan(out[2])  # zero row
    x = torch.randn(50, 33, generator=gen)
    naive = [row.max().item() / row.abs().sum().item() for row in x]
    np.testing.assert_allclose(neuron_frac_max(x).numpy(), naive, rtol=1e-6)
    np.testing.assert_allclose(neuron_frac_max(7.0 * x).numpy(), neuron_frac_max(x).numpy(), rtol=1e-6)  # scale-free
    one_hot = torch.eye(5)
    np.testing.assert_allclose(neuron_frac_max(one_hot).numpy(), 1.0)  # the 1-sparse extreme
