"""Geometry (§9.5, §9.6) and frequency dynamics (§9.8): analytic subspaces, planted steps, naive references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sae_analysis.frequency import FrequencyResult
from sae_analysis.geometry import encoder_decoder_cosine, is_centred, null_space, null_space_fraction
from sae_analysis.phase import (
    changepoint,
    frequency_change,
    log_freq_histograms,
    segment_sse,
    snapshots_from_log10,
    stack_snapshots,
    ulf_fraction_over_time,
    ulf_median_over_time,
)


def test_encoder_decoder_cosine_matches_naive(gen):
    W_enc, W_dec = torch.randn(12, 30, generator=gen), torch.randn(30, 12, generator=gen)
    cos = encoder_decoder_cosine(W_enc, W_dec)
    for i in range(30):
        e, d = W_enc[:, i], W_dec[i]
        assert cos[i].item() == pytest.approx(float(e @ d / (e.norm() * d.norm())), abs=1e-6)
    assert torch.allclose(encoder_decoder_cosine(W_dec.T * 3, W_dec), torch.ones(30))  # tied weights


def test_null_space_fraction_analytic_and_naive(gen):
    d_mlp, d_model = 64, 16
    W_out = torch.randn(d_mlp, d_model, generator=gen)
    ns = null_space(W_out)
    assert ns.rank == d_model and ns.random_fraction == 0.75 and ns.singular_values.shape == (d_model,)
    inside = torch.randn(5, d_model, generator=gen) @ W_out.T  # rows in W_out's column space
    assert null_space_fraction(inside, ns).max().item() < 1e-4
    Q, _ = torch.linalg.qr(W_out.double(), mode="complete")
    outside = (torch.randn(5, d_mlp - d_model, generator=gen).double() @ Q[:, d_model:].T).float()
    assert torch.allclose(null_space_fraction(outside, ns), torch.ones(5), atol=1e-4)
    # Neel's formula with the full U: |v U[:, d_model:]|^2 / |v|^2
    V = torch.randn(7, d_mlp, generator=gen)
    U = torch.linalg.svd(W_out.double(), full_matrices=True).U
    naive = (V.double() @ U[:, d_model:]).square().sum(-1) / V.double().square().sum(-1)
    assert torch.allclose(null_space_fraction(V, ns).double(), naive, atol=1e-5)
    random = null_space_fraction(torch.randn(2000, d_mlp, generator=gen), ns)
    assert random.mean().item() == pytest.approx(0.75, abs=0.01)
    assert torch.isnan(null_space_fraction(torch.zeros(1, d_mlp), ns)).all()


def test_centred_w_out_rank_is_recorded(gen):
    W_out = torch.randn(64, 16, generator=gen)
    centred = W_out - W_out.mean(-1, keepdim=True)  # TransformerLens's centre_writing_weights
    ns = null_space(centred)
    assert ns.rank == 15 and ns.random_fraction == 0.75
    assert null_space(centred, k=ns.rank).random_fraction == pytest.approx(49 / 64)
    with pytest.raises(ValueError):
        null_space(centred, k=17)


def test_is_centred_detects_transformer_lens_centring(gen):
    W_out = torch.randn(64, 16, generator=gen) + 0.3  # an offset: rows do not sum to zero
    centred = W_out - W_out.mean(-1, keepdim=True)
    assert is_centred(centred) and is_centred(centred.double()) and not is_centred(W_out)
    nearly = centred + 1e-3 * W_out.abs().mean()  # row means at 1e-3 of the weight scale: not centred
    assert not is_centred(nearly) and is_centred(nearly, rtol=1e-2)
    assert not is_centred(torch.empty(0, 16))


def test_segment_sse_matches_naive(gen):
    y = torch.randn(9, generator=gen, dtype=torch.float64)
    sse = segment_sse(y)
    for s in range(1, 9):
        naive = ((y[:s] - y[:s].mean()) ** 2).sum() + ((y[s:] - y[s:].mean()) ** 2).sum()
        assert sse[s - 1].item() == pytest.approx(naive.item(), abs=1e-9)


@pytest.mark.parametrize("step_at", [3, 13, 18])
def test_planted_change_is_located(gen, step_at):
    tokens = torch.arange(20) * 122_880_000 + 122_880_000
    series = torch.where(torch.arange(20) < step_at, 0.2, 0.6) + 0.02 * torch.randn(20, generator=gen, dtype=torch.float64)
    cp = changepoint(tokens, series)
    assert cp.index == step_at
    assert tokens[step_at - 1] < cp.tokens < tokens[step_at]
    assert cp.before == pytest.approx(0.2, abs=0.03) and cp.after == pytest.approx(0.6, abs=0.03)
    assert cp.sse_reduction > 0.95
    with pytest.raises(ValueError):
        changepoint(tokens[:1], series[:1])


def planted_snapshots(gen: torch.Generator, n_snap: int = 8, d_sae: int = 200, change: int = 5) -> torch.Tensor:
    """Frequencies whose ULF share jumps from 20% to 60% at snapshot `change`."""
    freq = 10 ** (-3 + 0.3 * torch.randn(n_snap, d_sae, generator=gen, dtype=torch.float64))
    n_ulf = torch.where(torch.arange(n_snap) < change, 40, 120)
    for s in range(n_snap):
        freq[s, : n_ulf[s]] = 10 ** (-6 + 0.2 * torch.randn(int(n_ulf[s]), generator=gen, dtype=torch.float64))
    return freq


def test_ulf_curves_match_naive_and_find_the_transition(gen):
    freq = planted_snapshots(gen)
    frac = ulf_fraction_over_time(freq)
    med = ulf_median_over_time(freq)
    for s in range(freq.shape[0]):
        rare = freq[s][freq[s] < 1e-4]
        assert frac[s].item() == pytest.approx(rare.numel() / 200)
        assert med[s].item() == pytest.approx(float(np.median(rare.numpy())))
    tokens = torch.arange(8) * 1000
    assert changepoint(tokens, frac).index == 5
    assert torch.isnan(ulf_median_over_time(torch.ones(1, 4, dtype=torch.float64))).all()


def test_log_freq_histograms_match_numpy(gen):
    freq = planted_snapshots(gen)
    freq[0, :10] = 0.0  # dead latents sit at -6.5, the first bin
    h = log_freq_histograms(freq, bins=20)
    assert torch.allclose(h.percent.sum(-1), torch.full((8,), 100.0, dtype=torch.float64))
    for s in range(8):
        x = np.clip(np.log10(freq[s].numpy() + 10**-6.5), -6.5, 0.0)
        ref, _ = np.histogram(x, bins=h.edges.numpy())
        np.testing.assert_allclose(h.percent[s].numpy(), 100 * ref / 200)
    assert h.percent[0, 0] >= 5.0


def test_snapshot_builders_sort_by_tokens():
    results = [FrequencyResult(torch.full((3,), f, dtype=torch.float64), torch.zeros(3, dtype=torch.int64), 10, 3 * f, "x")
               for f in (0.1, 0.2)]  # fmt: skip
    snaps = stack_snapshots([200, 100], results)
    assert snaps.tokens.tolist() == [100, 200] and snaps.freq[:, 0].tolist() == [0.2, 0.1]
    stored = snapshots_from_log10(np.array([20, 10]), np.array([[-1.0, -np.inf], [-2.0, 0.0]]), source="log")
    assert stored.tokens.tolist() == [10, 20]
    assert torch.allclose(stored.freq, torch.tensor([[0.01, 1.0], [0.1, 0.0]], dtype=torch.float64))
    plotted = snapshots_from_log10([5], np.log10(np.array([[0.0, 1e-3]]) + 10**-6.5), source="log", eps=10**-6.5)
    assert plotted.freq[0, 0].item() < 1e-15 and plotted.freq[0, 1].item() == pytest.approx(1e-3)
    with pytest.raises(ValueError):
        snapshots_from_log10([1], np.zeros((2, 3)), source="bad")


def test_frequency_change(gen):
    a = 10 ** (-5 + 3 * torch.rand(50, generator=gen, dtype=torch.float64))
    same = frequency_change(a, a)
    assert same.correlation == pytest.approx(1.0) and not same.became_ulf.any() and not same.left_ulf.any()
    b = a.clone()
    b[a >= 1e-4] = 1e-6
    ch = frequency_change(a, b)
    assert torch.equal(ch.became_ulf, a >= 1e-4) and not ch.left_ulf.any()
