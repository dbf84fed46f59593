"""Batch metrics and thresholds on hand-checkable cases."""

from __future__ import annotations

import math

import numpy as np
import torch

from sae_analysis.metrics import (
    LOG_FREQ_EPS,
    explained_variance,
    firing_counts,
    frequency_fractions,
    l0,
    log10_freq,
)


def test_l0_and_counts_hand_case():
    acts = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 3.0], [0.0, -1.0, 0.0]])
    assert float(l0(acts)) == (2 + 1 + 0) / 3
    assert firing_counts(acts).tolist() == [0, 1, 2]
    assert firing_counts(acts).dtype == torch.int64


def test_explained_variance_bounds():
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    assert float(explained_variance(x, x)) == 1.0
    assert math.isclose(float(explained_variance(x, x.mean(0).expand_as(x))), 0.0, abs_tol=1e-6)
    # half the residual of the mean predictor -> 1 - 1/4 of variance
    x_hat = x.mean(0) + 0.5 * (x - x.mean(0))
    assert math.isclose(float(explained_variance(x, x_hat)), 0.75, rel_tol=1e-6)  # x_hat is built in fp32


def test_log10_freq_dead_at_minus_6_5_for_tensor_and_array():
    assert math.isclose(float(log10_freq(torch.tensor([0.0]))[0]), -6.5)
    out = log10_freq(np.array([0.0, 1.0]))
    assert isinstance(out, np.ndarray) and math.isclose(out[1], math.log10(1 + LOG_FREQ_EPS))


def test_frequency_fractions_hand_case():
    freq = torch.tensor([0.0, 5e-7, 5e-6, 1e-3])
    assert frequency_fractions(freq) == {"frac_dead": 0.25, "frac_below_1e-5": 0.75, "frac_below_1e-6": 0.5}
