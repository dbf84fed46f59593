"""feature_table / summarize / compare_summary: documented keys, invariances, planted values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sae_analysis import SAE, SAEConfig
from sae_analysis.case_study import ULFTokenStats
from sae_analysis.frequency import FrequencyResult
from sae_analysis.reconstruction import ReconstructionLosses
from sae_analysis.table import COMPARE_KEYS, KEYS, compare_summary, feature_table, stored_frequencies, summarize

REQUIRED_COLUMNS = {"fve_top_1", "fve_next_9", "sparsity_class", "kurtosis", "frequency"}
REQUIRED_KEYS = {"d_sae", "frac_1_sparse", "frac_10_sparse", "frac_dense", "median_kurtosis", "frequency_source", "l0",
                 "frac_dead", "frac_below_1e-5", "frac_below_1e-6", "ulf_fraction", "ulf_enc_cos_with_mean_median",
                 "ulf_dec_cos_with_mean_median", "frac_1_sparse_nonrare", "frac_10_sparse_nonrare", "frac_dense_nonrare",
                 "recons_score"}  # fmt: skip


def freq_result(freq: torch.Tensor, source: str = "test") -> FrequencyResult:
    return FrequencyResult(freq.double(), torch.full(freq.shape, -1, dtype=torch.int64), 0, float(freq.sum()), source)


@pytest.fixture
def planted(make_sae, gen):
    """d_in 32, d_sae 64: latents 0-15 have one-hot decoders, 16-39 are ULF with a shared encoder direction."""
    sae = make_sae(d_in=32, d_sae=64)
    with torch.no_grad():
        sae.W_dec[:16] = torch.eye(32)[:16] * 2.0
        sae.W_enc[:, 16:40] = torch.randn(32, 1, generator=gen) * (1 + torch.rand(24, generator=gen))
    freq = torch.full((64,), 1e-2, dtype=torch.float64)
    freq[16:40] = 1e-6
    freq[40] = 0.0
    return sae, freq_result(freq)


def test_summarize_returns_exactly_the_documented_keys(planted, gen):
    sae, freq = planted
    recon = ReconstructionLosses(3.0, 3.2, 5.0, 4.0, 0.9, 0.8, 100)
    frac = torch.tensor([[0.0, 0.25, float("nan")], [0.75, 0.5, 0.0]])  # fraction of ULF latents active per token
    cofire = ULFTokenStats(torch.zeros(2, 3), frac)
    full = summarize(sae, freq=freq, W_out=torch.randn(32, 8, generator=gen), recon=recon, ulf_tokens=cofire)
    assert list(full) == list(KEYS) and REQUIRED_KEYS <= set(full)
    assert full["ulf_max_frac_active"] == 0.75 and full["ulf_tokens_searched"] == 6
    weights_only = summarize(sae)
    assert {"d_sae", "frac_dense", "median_kurtosis"} <= set(weights_only) and "l0" not in weights_only
    assert set(weights_only) < set(KEYS) and all(isinstance(v, str) and v for v in KEYS.values())
    assert full["recons_score"] == 0.9 and full["frequency_source"] == "test"


def test_summary_values_on_planted_sae(planted):
    sae, freq = planted
    s = summarize(sae, freq=freq)
    assert s["frac_1_sparse"] == 16 / 64 and s["baseline_frac_1_sparse"] == 0.0  # Kaiming rows at d_in 32 are never 1-sparse
    assert s["frac_1_sparse_nonrare"] >= 16 / 39 - 1e-9  # non-rare = latents 0-15 and 41-63
    assert s["ulf_fraction"] == pytest.approx(25 / 64) and s["frac_dead"] == pytest.approx(1 / 64)
    assert s["ulf_enc_cos_with_mean_median"] > 0.95 and s["ulf_enc_frac_cos_above_095"] >= 24 / 25
    assert s["ulf_dec_cos_with_mean_median"] < 0.9
    assert s["l0"] == pytest.approx(float(freq.freq.sum()))


def test_feature_table_columns_and_permutation_invariance(planted, gen):
    sae, freq = planted
    W_out, W_U = torch.randn(32, 8, generator=gen), torch.randn(8, 20, generator=gen)
    df = feature_table(sae, freq=freq, W_out=W_out, W_U=W_U)
    assert REQUIRED_COLUMNS <= set(df.columns) and len(df) == 64 and df.index.name == "latent"
    assert {"enc_null_frac", "dec_null_frac", "vocab_kurtosis", "ulf_enc_cos_with_mean"} <= set(df.columns)
    assert (df["sparsity_class"][:16] == "1-sparse").all() and df.attrs["frequency_source"] == "test"
    assert df["ulf_enc_cos_with_mean"][:16].isna().all() and df["ulf_enc_cos_with_mean"][16:41].notna().all()
    perm = torch.randperm(64, generator=gen)
    permuted = SAE.from_weights(sae.cfg, W_enc=sae.W_enc.detach()[:, perm], W_dec=sae.W_dec.detach()[perm],
                                b_enc=sae.b_enc.detach()[perm], b_dec=sae.b_dec.detach())  # fmt: skip
    dfp = feature_table(permuted, freq=freq_result(freq.freq[perm]), W_out=W_out, W_U=W_U)
    numeric = [c for c in df.columns if df[c].dtype.kind == "f"]
    np.testing.assert_allclose(dfp[numeric].to_numpy(), df[numeric].to_numpy()[perm.numpy()], rtol=1e-4, atol=1e-5)
    a, b = summarize(sae, freq=freq), summarize(permuted, freq=freq_result(freq.freq[perm]))
    for k in a:
        assert a[k] == (pytest.approx(b[k], rel=1e-4, abs=1e-6, nan_ok=True) if isinstance(a[k], float) else b[k]), k


def test_without_frequencies_the_column_is_nan(make_sae):
    df = feature_table(make_sae(d_in=16, d_sae=24))
    assert df["frequency"].isna().all() and df.attrs["frequency_source"] is None


def test_stored_frequencies_name_their_source(make_sae):
    sae = make_sae(d_in=8, d_sae=4)
    assert stored_frequencies(sae) is None
    sae.log10_density = torch.tensor([-1.0, -2.0, float("-inf"), 0.0])
    sae.meta = {"format": "saelens", "path": "runs/seed1"}
    fr = stored_frequencies(sae)
    assert fr.freq.tolist() == pytest.approx([0.1, 0.01, 0.0, 1.0]) and "runs/seed1" in fr.source
    assert summarize(sae, freq=fr)["frequency_source"] == fr.source


def test_compare_summary_planted_permutation(planted, gen):
    sae, freq = planted
    perm = torch.randperm(64, generator=gen)
    other = SAE.from_weights(sae.cfg, W_enc=sae.W_enc.detach()[:, perm] * 2, W_dec=sae.W_dec.detach()[perm],
                             b_enc=sae.b_enc.detach()[perm], b_dec=sae.b_dec.detach())  # fmt: skip
    c = compare_summary(sae, other, freq_a=freq, freq_b=freq_result(freq.freq[perm]))
    assert list(c) == list(COMPARE_KEYS)
    for k in ("ulf_direction_cos", "enc_best_match_cos_median", "dec_best_match_cos_median", "enc_best_match_cos_median_common"):
        assert c[k] == pytest.approx(1.0, abs=1e-5), k
    unknown = compare_summary(sae, SAE(SAEConfig(d_in=32, d_sae=48)))
    assert math.isnan(unknown["ulf_direction_cos"]) and unknown["frequency_source_a"] is None and unknown["d_sae_b"] == 48
    assert unknown["enc_best_match_cos_median"] < 0.9


def test_hostile_inputs_zero_rows_and_nan_frequencies(make_sae):
    sae = make_sae(d_in=16, d_sae=24)
    with torch.no_grad():
        sae.W_dec[3] = 0.0
        sae.W_enc[:, 5] = 0.0
    freq = torch.full((24,), 1e-2, dtype=torch.float64)
    freq[:6] = 1e-6
    freq[6] = float("nan")
    df = feature_table(sae, freq=freq_result(freq))
    assert np.isnan(df.loc[3, "fve_top_1"]) and df.loc[3, "sparsity_class"] == "dense" and np.isnan(df.loc[3, "kurtosis"])
    assert np.isnan(df.loc[5, "enc_dec_cos"]) and not df.loc[6, "is_rare"]
    s = summarize(sae, freq=freq_result(freq))
    assert s["ulf_fraction"] == pytest.approx(6 / 24) and np.isfinite(s["median_kurtosis"])
    assert np.isfinite(s["ulf_enc_cos_with_mean_median"])  # the zero encoder column is skipped by the median
