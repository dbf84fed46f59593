"""The ultra-low-frequency (ULF) cluster of latents and its shared encoder direction (REPLICATION.md §9.3; Neel's analysis.py).

Membership, two ways:

* `ulf_mask`: freq < threshold, default `RARE_FREQ` = 1e-4 as in Neel's analysis.py.
* `auto_ulf_split`: fit a two-component 1-D Gaussian mixture (EM) to log10(freq + 10^-6.5) and split where the posterior
  of the low component falls to 1/2. Suited to the bimodal log-frequency histogram (Anthropic: a ULF cluster near 1e-7, the
  rest near 1e-5 to 1e-3); on a unimodal histogram the split is arbitrary, so check `separation`.

Shared direction (`ulf_cluster`): mu = mean of the members' directions (encoder columns `W_enc[:, R]`, or decoder rows),

    cos_with_mean_i  = mu . v_i / (|mu| |v_i|)
    proj_onto_mean_i = mu . v_i / |mu|

and the fraction of members with cos > 0.95. Neel finds the encoder directions of most ULF latents nearly identical, and
not the decoder directions. Latents with NaN frequency are never members (every comparison with NaN is false).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from sae_analysis.metrics import LOG_FREQ_EPS, RARE_FREQ, log10_freq

ULF_COS_THRESHOLD = 0.95
"""Neel's analysis.py prints the fraction of rare latents with cos_with_mean > 0.95."""


def ulf_mask(freq: Float[Tensor, " d_sae"], threshold: float = RARE_FREQ) -> Bool[Tensor, " d_sae"]:
    """Members of the ULF cluster by threshold: freq < threshold (NaN frequencies excluded)."""
    return freq < threshold


class ULFCluster(NamedTuple):
    """The ULF members' shared direction and each member's alignment with it."""

    mask: Bool[Tensor, " d_sae"]
    mean_direction: Float[Tensor, " d_in"]
    """mu, the (unnormalised) mean of the members' directions; NaN if there are no members."""
    cos_with_mean: Float[Tensor, " n_ulf"]
    proj_onto_mean: Float[Tensor, " n_ulf"]
    frac_above: float
    """Fraction of members with cos_with_mean > cos_threshold (NaN if none)."""


def ulf_cluster(
    directions: Float[Tensor, "d_sae d_in"], mask: Bool[Tensor, " d_sae"], *, cos_threshold: float = ULF_COS_THRESHOLD
) -> ULFCluster:
    """Mean direction of the rows of `directions` selected by `mask`, and each member's cosine/projection onto it.

    Pass `sae.W_enc.T` for encoders (Neel's analysis) or `sae.W_dec` for decoders. Zero member rows give NaN cosines.
    """
    members = directions[mask.to(directions.device)].float()
    if members.shape[0] == 0:
        empty = torch.empty(0)
        return ULFCluster(mask, torch.full((directions.shape[1],), math.nan), empty, empty, math.nan)
    mu = members.mean(0)
    proj = members @ mu / mu.norm()
    cos = proj / members.norm(dim=-1)
    return ULFCluster(mask, mu.cpu(), cos.cpu(), proj.cpu(), float((cos > cos_threshold).double().mean()))


class AutoSplit(NamedTuple):
    """A two-component Gaussian mixture on log10(freq + 10^-6.5) and the split it implies."""

    threshold: float
    """Split frequency: latents with freq < threshold belong to the low (ULF) component."""
    log10_threshold: float
    means: tuple[float, float]
    """Component means in log10 frequency, low first."""
    stds: tuple[float, float]
    weights: tuple[float, float]
    separation: float
    """|mean_high - mean_low| / sqrt(std_low^2 + std_high^2): below ~1 the histogram is hardly bimodal."""


def _em_two_gaussians(x: np.ndarray, n_iter: int, tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EM for a 1-D two-component Gaussian mixture, initialised at the 10th and 90th percentiles (deterministic).

    numpy, single-threaded: on a shared CPU, torch's threaded kernels on [d_sae, 2] tensors cost more in synchronisation
    than the arithmetic. Stops when the mean log-likelihood improves by less than `tol`.
    """
    mean = np.quantile(x, [0.1, 0.9])
    std = np.full(2, x.std() / 2 + 1e-3)
    weight = np.full(2, 0.5)
    last = -np.inf
    for _ in range(n_iter):
        log_p = np.log(weight) - np.log(std) - 0.5 * ((x[:, None] - mean) / std) ** 2
        top = log_p.max(-1, keepdims=True)
        log_norm = top + np.log(np.exp(log_p - top).sum(-1, keepdims=True))
        resp = np.exp(log_p - log_norm)
        nk = resp.sum(0) + 1e-12
        weight, mean = nk / x.size, (resp * x[:, None]).sum(0) / nk
        std = np.maximum(np.sqrt((resp * (x[:, None] - mean) ** 2).sum(0) / nk), 1e-3)
        ll = float(log_norm.mean())
        if ll - last < tol:
            break
        last = ll
    return mean, std, weight


def _posterior_crossing(mean: np.ndarray, std: np.ndarray, weight: np.ndarray) -> float:
    """The point between the two means where both weighted densities are equal (bisection on the log-ratio)."""
    lo, hi = float(mean[0]), float(mean[1])

    def low_wins(t: float) -> bool:
        log_p = np.log(weight) - np.log(std) - 0.5 * ((t - mean) / std) ** 2
        return bool(log_p[0] > log_p[1])

    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if low_wins(mid) else (lo, mid)
    return (lo + hi) / 2


def auto_ulf_split(freq: Float[Tensor, " d_sae"], *, n_iter: int = 500) -> AutoSplit:
    """Split latents into a low- and a high-frequency mode of the log10 frequency histogram (NaN frequencies ignored)."""
    x = log10_freq(freq.double().cpu()).numpy()
    x = x[np.isfinite(x)]
    if x.size < 2 or float(x.max() - x.min()) == 0.0:
        raise ValueError("need at least two distinct finite frequencies to fit a two-component mixture")
    mean, std, weight = _em_two_gaussians(x, n_iter)
    order = np.argsort(mean)
    mean, std, weight = mean[order], std[order], weight[order]
    t = _posterior_crossing(mean, std, weight)
    sep = float((mean[1] - mean[0]) / np.sqrt((std**2).sum()))
    # undo the offset of log10_freq: log10(freq + eps) < t  <=>  freq < 10^t - eps
    threshold = 10.0**t - LOG_FREQ_EPS
    return AutoSplit(threshold, t, _pair(mean), _pair(std), _pair(weight), sep)


def _pair(t: np.ndarray) -> tuple[float, float]:
    return float(t[0]), float(t[1])


__all__ = ["ULF_COS_THRESHOLD", "ulf_mask", "ULFCluster", "ulf_cluster", "AutoSplit", "auto_ulf_split"]
