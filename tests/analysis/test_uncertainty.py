"""Bootstrap intervals (sae_analysis.uncertainty): coverage on planted data over repeated seeded draws, degenerate cases,
and the vectorised statistics against a per-resample loop on the same draws."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sae_analysis.uncertainty import (
    MIN_THRESHOLD_FIRINGS,
    RULE_OF_THREE,
    bootstrap_indices,
    category_fraction_intervals,
    dead_fraction,
    recovered_interval,
    threshold_fraction_intervals,
)

N_BLOCKS, BLOCK_TOKENS = 40, 250


def planted_rates(rng: np.random.Generator, t: float, d: int) -> np.ndarray:
    """Latent frequencies log-uniform over half a decade either side of the threshold t."""
    return 10 ** rng.uniform(np.log10(t) - 0.5, np.log10(t) + 0.5, d)


def test_threshold_fraction_covers_the_truth_at_about_the_nominal_rate():
    rng = np.random.default_rng(1)
    n = N_BLOCKS * BLOCK_TOKENS
    t = (2 * MIN_THRESHOLD_FIRINGS + 0.5) / n  # not an integer count: c < t n is then unambiguous in floating point
    p = planted_rates(rng, t, 800)
    truth = stats.binom.cdf(np.ceil(t * n) - 1, n, p).mean()  # E[share of latents with count < t n]
    hits, est, half = 0, [], []
    for k in range(100):
        counts = rng.binomial(BLOCK_TOKENS, p, size=(N_BLOCKS, p.size))
        iv = threshold_fraction_intervals(counts, np.full(N_BLOCKS, BLOCK_TOKENS), [t], n_resamples=200, seed=k)[t]
        hits += iv.low <= truth <= iv.high
        est.append(iv.estimate)
        half.append((iv.high - iv.low) / 2)
    assert 0.88 <= hits / 100 <= 1.0
    assert 0.8 <= np.mean(half) / (1.96 * np.std(est)) <= 1.6  # the spread is the sampling spread, not uselessly wide
    assert iv.resampled == "sequence blocks" and iv.n_units == N_BLOCKS and iv.n_resamples == 200


def test_threshold_fraction_refuses_thresholds_the_sample_cannot_resolve():
    """Below MIN_THRESHOLD_FIRINGS expected firings a block bootstrap is biased (it covers nothing here): NaN interval."""
    counts = np.random.default_rng(0).binomial(BLOCK_TOKENS, 1e-4, size=(N_BLOCKS, 50))
    n = N_BLOCKS * BLOCK_TOKENS
    just_below, at = (MIN_THRESHOLD_FIRINGS - 0.5) / n, (MIN_THRESHOLD_FIRINGS + 1e-6) / n
    got = threshold_fraction_intervals(counts, np.full(N_BLOCKS, BLOCK_TOKENS), [just_below, at], n_resamples=50)
    assert np.isnan(got[just_below].low) and np.isfinite(got[just_below].estimate)
    assert np.isfinite(got[at].low) and got[at].low <= got[at].estimate <= got[at].high


def test_threshold_fraction_vectorised_matches_a_loop_over_resamples():
    rng = np.random.default_rng(3)
    counts = rng.poisson(rng.uniform(0, 4, 30), size=(12, 30))
    tokens = rng.integers(50, 80, 12)
    t = 0.03
    got = threshold_fraction_intervals(counts, tokens, [t], n_resamples=64, seed=5)[t]
    naive = []
    for chunk in bootstrap_indices(12, 64, 5):
        for row in chunk:
            c, n = counts[row].sum(0), tokens[row].sum()
            naive.append(np.mean(c / n < t))
    assert (got.low, got.high) == pytest.approx(tuple(np.quantile(naive, [0.025, 0.975])))
    assert got.estimate == np.mean(counts.sum(0) / tokens.sum() < t)


def test_category_fractions_cover_planted_proportions():
    rng = np.random.default_rng(2)
    truth = {"1-sparse": 0.04, "10-sparse": 0.04, "dense": 0.92}
    hits = dict.fromkeys(truth, 0)
    for k in range(100):
        labels = rng.choice(list(truth), size=1000, p=list(truth.values()))
        got = category_fraction_intervals(labels, list(truth), n_resamples=200, seed=k)
        for c in truth:
            hits[c] += got[c].low <= truth[c] <= got[c].high
    assert all(0.88 <= h / 100 <= 1.0 for h in hits.values()), hits
    assert got["dense"].resampled == "latents" and got["dense"].n_units == 1000


def test_category_fractions_with_a_mask_match_a_loop():
    rng = np.random.default_rng(4)
    labels, mask = rng.choice(["a", "b"], size=40), rng.random(40) < 0.6
    got = category_fraction_intervals(labels, ["a", "b"], mask=mask, n_resamples=50, seed=9)
    naive = [np.sum((labels[r] == "a") & mask[r]) / np.sum(mask[r]) for ch in bootstrap_indices(40, 50, 9) for r in ch]
    assert (got["a"].low, got["a"].high) == pytest.approx(tuple(np.quantile(naive, [0.025, 0.975])))
    assert got["a"].estimate == pytest.approx(np.sum((labels == "a") & mask) / mask.sum())


def test_recovered_interval_covers_the_population_score():
    """Per-sequence mean losses ~ N(mu_k, 0.3): population score (Z - R) / (Z - C) = (5 - 3.4) / (5 - 3) = 0.8."""
    rng = np.random.default_rng(5)
    hits = 0
    for k in range(100):
        n_pred = np.full(128, 31)
        per_seq = {key: rng.normal(mu, 0.3, 128) * n_pred for key, mu in (("clean", 3.0), ("recon", 3.4), ("zero", 5.0))}
        iv = recovered_interval(per_seq, n_pred, n_resamples=300, seed=k)
        hits += iv.low <= 0.8 <= iv.high
    assert 0.88 <= hits / 100 <= 1.0 and iv.resampled == "sequences" and iv.n_units == 128


def test_recovered_interval_vectorised_matches_a_loop():
    rng = np.random.default_rng(6)
    n_pred = rng.integers(5, 20, 10)
    per_seq = {k: rng.uniform(1, 2, 10) * n_pred * s for k, s in (("clean", 1.0), ("recon", 1.3), ("zero", 2.0))}
    got = recovered_interval(per_seq, n_pred, n_resamples=40, seed=2)
    naive = []
    for r in (r for ch in bootstrap_indices(10, 40, 2) for r in ch):
        c, rc, z = (per_seq[k][r].sum() / n_pred[r].sum() for k in ("clean", "recon", "zero"))
        naive.append((z - rc) / (z - c))
    assert (got.low, got.high) == pytest.approx(tuple(np.quantile(naive, [0.025, 0.975])))


def test_degenerate_cases():
    # every latent dead: the dead share is 1 in every resample, and no threshold fraction can move
    dead = dead_fraction(np.zeros(64, int), 1000, n_resamples=100)
    assert (dead["estimate"], dead["low"], dead["high"], dead["n_dead"]) == (1.0, 1.0, 1.0, 64)
    assert dead["resolution"] == 1e-3 and dead["dead_freq_bound_95"] == RULE_OF_THREE / 1000
    none_dead = dead_fraction(np.ones(64, int), 1000, n_resamples=100)
    assert (none_dead["estimate"], none_dead["low"], none_dead["high"]) == (0.0, 0.0, 0.0)
    zeros = np.zeros((N_BLOCKS, 8), int)
    iv = threshold_fraction_intervals(zeros, np.full(N_BLOCKS, BLOCK_TOKENS), [1e-2], n_resamples=50)[1e-2]
    assert (iv.estimate, iv.low, iv.high) == (1.0, 1.0, 1.0)
    # identical sequences: zero variance, the interval is the point
    same = {k: np.full(16, v) for k, v in (("clean", 3.0), ("recon", 3.5), ("zero", 5.0))}
    iv = recovered_interval(same, np.ones(16), n_resamples=50)
    assert iv.low == pytest.approx(iv.estimate) and iv.high == pytest.approx(0.75)
    # one unit cannot be resampled; an ablation that changes nothing has no score
    one = threshold_fraction_intervals(np.ones((1, 4), int), np.array([100]), [0.5], n_resamples=20)[0.5]
    assert np.isnan(one.low) and one.n_units == 1
    flat = recovered_interval({k: np.full(16, 3.0) for k in ("clean", "recon", "zero")}, np.ones(16), n_resamples=20)
    assert np.isnan(flat.estimate) and np.isnan(flat.low)


def test_bootstrap_indices_are_seeded_and_complete():
    a = np.concatenate(list(bootstrap_indices(7, 1000, 3)))
    b = np.concatenate(list(bootstrap_indices(7, 1000, 3)))
    assert a.shape == (1000, 7) and np.array_equal(a, b) and set(np.unique(a)) == set(range(7))
    assert not np.array_equal(a, np.concatenate(list(bootstrap_indices(7, 1000, 4))))
