"""One row per latent (`feature_table`) and the headline numbers (`summarize`, `compare_summary`) under documented keys.

`KEYS` and `COMPARE_KEYS` map every summary key to a one-line description; the CLI's JSON output and the README use them,
and the tests check that the functions return exactly these keys (optional groups only when their inputs are given).
Undefined numbers (e.g. no ULF latents) are NaN; the CLI writes them as JSON null.

Column naming: the decoder is the headline object of §9.1, so `fve_top_k`, `fve_next_9`, `sparsity_class` and `kurtosis`
describe decoder rows; `enc_*` columns describe encoder columns. (Neel's analysis.py names them the other way round:
`fve_top_1` is the encoder there and `fve_top_1_dec` the decoder.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from sae_analysis.baselines import gaussian_like
from sae_analysis.case_study import ULFTokenStats
from sae_analysis.frequency import FrequencyResult, frequencies_from_log10
from sae_analysis.geometry import encoder_decoder_cosine, null_space, null_space_fraction
from sae_analysis.metrics import COMMON_FREQ, RARE_FREQ, frequency_fractions, log10_freq
from sae_analysis.moments import excess_kurtosis
from sae_analysis.reconstruction import ReconstructionLosses
from sae_analysis.sae import SAE
from sae_analysis.similarity import best_match, direction_cosine
from sae_analysis.sparsity import NeuronSparsity, SparsityThresholds, class_fractions, class_names, neuron_sparsity
from sae_analysis.ulf import ULF_COS_THRESHOLD, auto_ulf_split, ulf_cluster, ulf_mask

_WEIGHT_KEYS = {
    "d_in": "input width (gelu-1l: 2048 MLP neurons)",
    "d_sae": "number of latents",
    "frac_1_sparse": "fraction of ALL latents whose decoder is 1-sparse (fve_top_1 > 0.35 and fve_next_9 < 0.1; §9.1)",
    "frac_10_sparse": "fraction of ALL latents whose decoder is 10-sparse (fve_top_10 > 0.35, not 1-sparse)",
    "frac_dense": "fraction of ALL latents whose decoder is dense (neither)",
    "enc_frac_1_sparse": "as frac_1_sparse, for encoder columns",
    "enc_frac_10_sparse": "as frac_10_sparse, for encoder columns",
    "enc_frac_dense": "as frac_dense, for encoder columns",
    "median_kurtosis": "median excess neuron kurtosis of decoder rows (scipy conventions; §9.2)",
    "enc_median_kurtosis": "median excess neuron kurtosis of encoder columns",
    "baseline_frac_1_sparse": "frac_1_sparse of a same-shape standard Gaussian matrix (seed 0)",
    "baseline_frac_dense": "frac_dense of the Gaussian baseline",
    "baseline_median_kurtosis": "median excess kurtosis of the Gaussian baseline rows (≈ 0)",
    "enc_dec_cos_median": "median cosine between each latent's encoder column and decoder row, all latents (§9.5)",
    "dec_norm_median": "median decoder row norm (published gelu-1l rows are not unit norm; §3.4)",
}
_FREQ_KEYS = {
    "frequency_source": "where frequencies came from: 'model: N tokens' or 'stored: <file>'",
    "n_freq_tokens": "tokens the frequencies were counted on (0 when read from a checkpoint)",
    "l0": "mean number of active latents per token (= sum of frequencies)",
    "frac_dead": "fraction of latents that never fired in the sample (sample-size dependent)",
    "frac_below_1e-5": "fraction of latents with frequency < 1e-5",
    "frac_below_1e-6": "fraction of latents with frequency < 1e-6",
    "ulf_threshold": "frequency below which a latent is ultra-low-frequency / rare (Neel's analysis.py: 1e-4)",
    "ulf_fraction": "fraction of latents with frequency < ulf_threshold",
    "ulf_enc_cos_with_mean_median": "median cosine of ULF encoder columns with their mean direction (§9.3)",
    "ulf_dec_cos_with_mean_median": "median cosine of ULF decoder rows with their mean direction (expected low)",
    "ulf_enc_frac_cos_above_095": "fraction of ULF latents whose encoder cosine with the mean exceeds 0.95",
    "ulf_auto_threshold": "ULF threshold from a two-Gaussian fit to the log10-frequency histogram",
    "ulf_auto_fraction": "fraction of latents below ulf_auto_threshold",
    "ulf_auto_separation": "separation of the two fitted modes (|Δmean| / pooled std; < 1: hardly bimodal)",
    "frac_1_sparse_nonrare": "frac_1_sparse over non-rare latents (frequency >= 1e-4) only",
    "frac_10_sparse_nonrare": "frac_10_sparse over non-rare latents",
    "frac_dense_nonrare": "frac_dense over non-rare latents",
    "median_kurtosis_nonrare": "median_kurtosis over non-rare latents",
    "enc_dec_cos_median_nonrare": "enc_dec_cos_median over non-rare latents (Neel: ≈ 0.5)",
}
_MODEL_KEYS = {
    "w_out_rank": "numerical rank of the model's W_out (centred TL weights: d_model - 1)",
    "null_frac_random": "expected W_out null-space fraction of a random direction ((d_mlp - d_model) / d_mlp)",
    "enc_null_frac_median": "median share of encoder columns in W_out's null space (§9.6)",
    "dec_null_frac_median": "median share of decoder rows in W_out's null space",
}
_RECON_KEYS = {
    "recons_score": "(L_zero - L_recon) / (L_zero - L_clean): CE loss recovered vs zero ablation (§8)",
    "recons_score_mean": "the same against mean ablation",
    "loss_clean": "mean next-token CE of the clean model",
    "loss_recon": "mean next-token CE with the hook replaced by the SAE reconstruction",
    "loss_zero": "mean next-token CE with the hook zero-ablated",
    "loss_mean": "mean next-token CE with the hook mean-ablated",
    "n_recon_tokens": "predicted tokens the losses average over",
}
_ULF_TOKEN_KEYS = {
    "ulf_max_frac_active": "share of ULF latents active on the one token where most of them are active (max over tokens "
    "of §9.3's frac_rare_active; Neel: '95% of ULF latents fire on one input')",
    "ulf_tokens_searched": "tokens over which that maximum was taken",
}
KEYS: dict[str, str] = {**_WEIGHT_KEYS, **_FREQ_KEYS, **_MODEL_KEYS, **_RECON_KEYS, **_ULF_TOKEN_KEYS}
"""Every key `summarize` can return; weight keys always, the others when frequencies / W_out / losses / ULF token
statistics are given."""

COMPARE_KEYS: dict[str, str] = {
    "d_sae_a": "latents in A",
    "d_sae_b": "latents in B",
    "frequency_source_a": "where A's frequencies came from (null if unknown)",
    "frequency_source_b": "where B's frequencies came from (null if unknown)",
    "ulf_direction_cos": "cosine between the ULF mean encoder directions of A and B (§9.4; NaN without frequencies)",
    "enc_best_match_cos_median": "median over A's latents of the max encoder cosine with any latent of B",
    "dec_best_match_cos_median": "the same for decoder rows (an extension of Neel's encoder comparison)",
    "enc_best_match_cos_median_common": "Neel's variant: B restricted to freq > 10^-3.5, median over A's such latents",
}


def stored_frequencies(sae: SAE) -> FrequencyResult | None:
    """Frequencies carried by a loaded checkpoint (`sae.log10_density`), or None. The source names the checkpoint."""
    if sae.log10_density is None:
        return None
    meta = sae.meta
    where = meta.get("frequency_file") or meta.get("path") or meta.get("repo") or meta.get("source") or "checkpoint"
    return frequencies_from_log10(sae.log10_density, f"{where} (log10 density)")


def _sparsity_columns(sp: NeuronSparsity, prefix: str) -> dict[str, Any]:
    cols: dict[str, Any] = {f"{prefix}fve_top_{k}": sp.fve(k).numpy() for k in sp.ks}
    cols[f"{prefix}fve_next_9"] = sp.fve_next_9.numpy()
    cols[f"{prefix}sparsity_class"] = pd.Categorical(class_names(sp.classes), categories=["1-sparse", "10-sparse", "dense"])
    return cols


def _ulf_columns(sae: SAE, freq: Tensor, threshold: float) -> dict[str, np.ndarray]:
    mask = ulf_mask(freq, threshold)
    cols = {}
    for prefix, directions in (("enc", sae.W_enc.detach().T), ("dec", sae.W_dec.detach())):
        cluster = ulf_cluster(directions, mask)
        full = torch.full((freq.shape[0],), float("nan"))
        full[mask] = cluster.cos_with_mean
        cols[f"ulf_{prefix}_cos_with_mean"] = full.numpy()
    return cols


def feature_table(
    sae: SAE,
    *,
    freq: FrequencyResult | None = None,
    W_out: Tensor | None = None,
    W_U: Tensor | None = None,
    thresholds: SparsityThresholds = SparsityThresholds(),
    ulf_threshold: float = RARE_FREQ,
) -> pd.DataFrame:
    """One row per latent (index `latent`) with every per-latent quantity; `df.attrs` holds 'frequency_source' (provenance)
    and, with `W_out`, 'w_out_rank' and 'null_frac_random'.

    Always: fve_top_{1,2,5,10,100}, fve_next_9, sparsity_class, kurtosis (decoder) and their enc_* versions, enc_dec_cos,
    enc_norm, dec_norm, b_enc, frequency (NaN if unknown). With `freq`: log10_freq, is_rare (< ulf_threshold),
    ulf_enc_cos_with_mean, ulf_dec_cos_with_mean (NaN outside the cluster). With `W_out` [d_mlp, d_model]: enc_null_frac,
    dec_null_frac. With `W_out` and `W_U`: vocab_kurtosis. Use `sae.W_dec` as is (no renormalisation; fve is scale-free).
    """
    W_enc, W_dec = sae.W_enc.detach().float().cpu(), sae.W_dec.detach().float().cpu()
    enc_rows = W_enc.T.contiguous()  # latent-major copy: every row-wise pass below runs on contiguous memory
    cols: dict[str, Any] = _sparsity_columns(neuron_sparsity(W_dec, thresholds), "")
    cols["kurtosis"] = excess_kurtosis(W_dec).numpy()
    cols.update(_sparsity_columns(neuron_sparsity(enc_rows, thresholds), "enc_"))
    cols["enc_kurtosis"] = excess_kurtosis(enc_rows).numpy()
    cols["enc_dec_cos"] = encoder_decoder_cosine(W_enc, W_dec).numpy()
    cols["enc_norm"], cols["dec_norm"] = enc_rows.norm(dim=-1).numpy(), W_dec.norm(dim=-1).numpy()
    cols["b_enc"] = sae.b_enc.detach().float().cpu().numpy()
    attrs: dict[str, Any] = {"frequency_source": None if freq is None else freq.source}
    cols["frequency"] = np.full(sae.cfg.d_sae, np.nan) if freq is None else freq.freq.double().cpu().numpy()
    if freq is not None:
        cols["log10_freq"] = log10_freq(cols["frequency"])
        cols["is_rare"] = cols["frequency"] < ulf_threshold
        cols.update(_ulf_columns(sae, freq.freq.double().cpu(), ulf_threshold))
    if W_out is not None:
        ns = null_space(W_out.detach().cpu())
        attrs.update(w_out_rank=ns.rank, null_frac_random=ns.random_fraction)
        cols["enc_null_frac"] = null_space_fraction(enc_rows, ns).numpy()
        cols["dec_null_frac"] = null_space_fraction(W_dec, ns).numpy()
        if W_U is not None:
            from sae_analysis.case_study import vocab_kurtosis

            cols["vocab_kurtosis"] = vocab_kurtosis(W_dec, W_out.detach().cpu(), W_U.detach().cpu()).numpy()
    df = pd.DataFrame(cols, index=pd.RangeIndex(sae.cfg.d_sae, name="latent"))
    df.attrs.update(attrs)
    return df


def _median(x: Any) -> float:
    return _reduce_finite(x, np.nanmedian)


def _reduce_finite(x: Any, reduce: Any) -> float:
    arr = np.asarray(x, dtype=np.float64)
    return float(reduce(arr)) if np.isfinite(arr).any() else float("nan")


def _class_fracs(classes: pd.Series, prefix: str, suffix: str = "") -> dict[str, float]:
    n = len(classes)
    out = {}
    for name in ("1-sparse", "10-sparse", "dense"):
        out[f"{prefix}frac_{name.replace('-', '_')}{suffix}"] = float((classes == name).sum()) / n if n else float("nan")
    return out


def _weight_summary(sae: SAE, df: pd.DataFrame, thresholds: SparsityThresholds) -> dict[str, Any]:
    gauss = gaussian_like(sae.W_dec.detach().cpu())  # one draw serves both baselines
    base = class_fractions(neuron_sparsity(gauss, thresholds).classes)
    out: dict[str, Any] = {"d_in": sae.cfg.d_in, "d_sae": sae.cfg.d_sae}
    out.update(_class_fracs(df["sparsity_class"], ""))
    out.update(_class_fracs(df["enc_sparsity_class"], "enc_"))
    out["median_kurtosis"], out["enc_median_kurtosis"] = _median(df["kurtosis"]), _median(df["enc_kurtosis"])
    out["baseline_frac_1_sparse"], out["baseline_frac_dense"] = base["1-sparse"], base["dense"]
    out["baseline_median_kurtosis"] = _median(excess_kurtosis(gauss).numpy())
    out["enc_dec_cos_median"], out["dec_norm_median"] = _median(df["enc_dec_cos"]), _median(df["dec_norm"])
    return out


def _ulf_summary(df: pd.DataFrame, freq: FrequencyResult, threshold: float) -> dict[str, Any]:
    """ULF numbers from the table's ULF columns (computed once there), plus the automatic split."""
    members = df[df["is_rare"]]
    enc_cos = members["ulf_enc_cos_with_mean"].to_numpy()
    out: dict[str, Any] = {"ulf_threshold": threshold, "ulf_fraction": len(members) / len(df)}
    out["ulf_enc_cos_with_mean_median"] = _median(enc_cos)
    out["ulf_dec_cos_with_mean_median"] = _median(members["ulf_dec_cos_with_mean"])
    out["ulf_enc_frac_cos_above_095"] = float((enc_cos > ULF_COS_THRESHOLD).mean()) if len(members) else float("nan")
    try:
        split = auto_ulf_split(freq.freq.cpu())
        auto = (split.threshold, float((freq.freq < split.threshold).double().mean()), split.separation)
    except ValueError:  # fewer than two distinct frequencies: no mixture to fit
        auto = (float("nan"),) * 3
    out["ulf_auto_threshold"], out["ulf_auto_fraction"], out["ulf_auto_separation"] = auto
    return out


def _freq_summary(df: pd.DataFrame, freq: FrequencyResult, threshold: float) -> dict[str, Any]:
    out: dict[str, Any] = {"frequency_source": freq.source, "n_freq_tokens": freq.n_tokens, "l0": freq.l0}
    out.update(frequency_fractions(freq.freq.cpu()))
    out.update(_ulf_summary(df, freq, threshold))
    common = df[df["frequency"] >= RARE_FREQ]
    out.update(_class_fracs(common["sparsity_class"], "", "_nonrare"))
    out["median_kurtosis_nonrare"] = _median(common["kurtosis"])
    out["enc_dec_cos_median_nonrare"] = _median(common["enc_dec_cos"])
    return out


def _recon_summary(recon: ReconstructionLosses) -> dict[str, Any]:
    return {
        "recons_score": recon.score_zero,
        "recons_score_mean": recon.score_mean,
        "loss_clean": recon.clean,
        "loss_recon": recon.recon,
        "loss_zero": recon.zero,
        "loss_mean": recon.mean,
        "n_recon_tokens": recon.n_tokens,
    }


def summarize(
    sae: SAE,
    *,
    freq: FrequencyResult | None = None,
    W_out: Tensor | None = None,
    recon: ReconstructionLosses | None = None,
    ulf_tokens: ULFTokenStats | None = None,
    thresholds: SparsityThresholds = SparsityThresholds(),
    ulf_threshold: float = RARE_FREQ,
) -> dict[str, Any]:
    """Headline numbers under the keys of `KEYS` (see there). Frequency keys need `freq`, null-space keys `W_out`
    (the model's `W_out[layer]`), reconstruction keys `recon` (from `reconstruction_losses`), co-firing keys
    `ulf_tokens` (from `case_study.ulf_token_stats` with the mask `ulf_mask(freq, ulf_threshold)`)."""
    df = feature_table(sae, freq=freq, W_out=W_out, thresholds=thresholds, ulf_threshold=ulf_threshold)
    out = _weight_summary(sae, df, thresholds)
    if freq is not None:
        out.update(_freq_summary(df, freq, ulf_threshold))
    if W_out is not None:
        out["w_out_rank"], out["null_frac_random"] = df.attrs["w_out_rank"], df.attrs["null_frac_random"]
        out["enc_null_frac_median"], out["dec_null_frac_median"] = _median(df["enc_null_frac"]), _median(df["dec_null_frac"])
    if recon is not None:
        out.update(_recon_summary(recon))
    if ulf_tokens is not None:
        frac = ulf_tokens.frac_rare_active.double()
        out["ulf_max_frac_active"] = _reduce_finite(frac, np.nanmax)
        out["ulf_tokens_searched"] = int(frac.numel())
    return {k: out[k] for k in KEYS if k in out}


def compare_summary(
    sae_a: SAE,
    sae_b: SAE,
    *,
    freq_a: FrequencyResult | None = None,
    freq_b: FrequencyResult | None = None,
    ulf_threshold: float = RARE_FREQ,
    common_freq: float = COMMON_FREQ,
) -> dict[str, Any]:
    """Cross-SAE numbers under the keys of `COMPARE_KEYS` (§9.4). Frequency-based keys are NaN without both frequencies."""
    enc_a, enc_b = sae_a.W_enc.detach().T.cpu(), sae_b.W_enc.detach().T.cpu()
    out: dict[str, Any] = {"d_sae_a": sae_a.cfg.d_sae, "d_sae_b": sae_b.cfg.d_sae}
    out["frequency_source_a"] = None if freq_a is None else freq_a.source
    out["frequency_source_b"] = None if freq_b is None else freq_b.source
    out["enc_best_match_cos_median"] = _median(best_match(enc_a, enc_b).cos.numpy())
    out["dec_best_match_cos_median"] = _median(best_match(sae_a.W_dec.detach().cpu(), sae_b.W_dec.detach().cpu()).cos.numpy())
    out["ulf_direction_cos"] = out["enc_best_match_cos_median_common"] = float("nan")
    if freq_a is not None and freq_b is not None:
        mu_a = ulf_cluster(enc_a, ulf_mask(freq_a.freq.cpu(), ulf_threshold)).mean_direction
        mu_b = ulf_cluster(enc_b, ulf_mask(freq_b.freq.cpu(), ulf_threshold)).mean_direction
        out["ulf_direction_cos"] = direction_cosine(mu_a, mu_b)
        common = best_match(enc_a[freq_a.freq.cpu() > common_freq], enc_b, b_mask=freq_b.freq.cpu() > common_freq)
        out["enc_best_match_cos_median_common"] = _median(common.cos.numpy())
    return {k: out[k] for k in COMPARE_KEYS}


__all__ = ["KEYS", "COMPARE_KEYS", "stored_frequencies", "feature_table", "summarize", "compare_summary", "ULF_COS_THRESHOLD"]
