"""95% intervals for the measured fractions and the reconstruction score: percentile bootstraps (issue #12, item 6).

What is resampled, per quantity:

* **Frequency-threshold fractions** (ULF fraction = share of latents with freq < 1e-4, below 1e-5, ...): blocks of whole
  evaluation sequences (`FrequencyResult.block_counts`: firing counts per block, O(d_sae) memory per block). A resample
  draws as many blocks as there are, with replacement; each latent's frequency is then sum(w c) / sum(w n_tokens). Valid
  only when a latent at the threshold fires many times in the sample: below `MIN_THRESHOLD_FIRINGS` expected firings
  (threshold x tokens) the interval is NaN, because the resampled counts of rare latents are spread twice as widely as
  the counts themselves (a resample repeats blocks), which shifts threshold fractions near 0 firings.
* **The dead fraction** (no firing in the sample): for the same reason a sequence bootstrap is biased here (a resample
  covers only ~63% distinct blocks, so more latents look dead), so it is resampled over **latents**, like the class
  fractions, and reported with its token count N, its resolution 1/N and the rule-of-three bound 3/N under which the
  frequency of a latent that never fired lies (95%).
* **Sparsity-class fractions** (1-sparse / 10-sparse / dense, all or non-rare latents): latents.
* **Reconstruction score** (zero-ablation loss recovered): sequences, from per-sequence summed losses; the score of a
  resample is the ratio (Z - R) / (Z - C) of resampled token-weighted means, as the score itself.

Indices are drawn in chunks from a seeded numpy generator (`bootstrap_indices`), so results are reproducible and the
vectorised statistics can be checked against a per-resample loop on the same draws.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from sae_analysis.metrics import LOGGED_THRESHOLDS, RARE_FREQ, below_key

CONFIDENCE = 0.95
N_RESAMPLES = 1000
"""Resamples per interval (percentile bootstrap; 1000 puts ~25 resamples beyond each end of a 95% interval)."""
SEED = 0
MIN_THRESHOLD_FIRINGS = 10.0
"""A threshold fraction gets a sequence-bootstrap interval only if threshold x tokens >= this many expected firings.
Measured on planted log-uniform rates around the threshold (40 blocks, 3,000 latents, 150 draws): coverage of the
true expected fraction was 0.13 at 2.5 expected firings, 0.41 at 3.5, 0.73 at 4.5, 0.93 at 5.5, 0.97 at 6.5 and 0.99
at 8; 10 leaves a margin for other rate distributions."""
RULE_OF_THREE = 3.0
"""A latent seen 0 times in N tokens has frequency < 3/N with 95% confidence (-ln 0.05 ≈ 3.0)."""
_CHUNK_CELLS = 2**22
"""Resample weights are built in chunks of at most this many cells (resamples x units): 32 MiB of int64."""


class Interval(NamedTuple):
    """A point estimate with a percentile-bootstrap interval and what was resampled."""

    estimate: float
    low: float
    high: float
    resampled: str
    """'sequence blocks', 'sequences' or 'latents'."""
    n_units: int
    """How many units the bootstrap resampled (NaN bounds when fewer than 2)."""
    n_resamples: int

    def as_dict(self) -> dict[str, float | int | str]:
        return self._asdict()


def bootstrap_indices(n_units: int, n_resamples: int, seed: int = SEED) -> Iterator[np.ndarray]:
    """Chunks of [r, n_units] unit indices drawn with replacement, r summing to `n_resamples` (seeded, reproducible)."""
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // max(n_units, 1))
    for start in range(0, n_resamples, chunk):
        yield rng.integers(0, n_units, size=(min(chunk, n_resamples - start), n_units))


def _weights(idx: np.ndarray) -> np.ndarray:
    """How often each unit appears in each resample: [r, n_units] counts from [r, n_units] indices."""
    r, n = idx.shape
    flat = (idx + n * np.arange(r)[:, None]).ravel()
    return np.bincount(flat, minlength=r * n).reshape(r, n)


def percentile_interval(
    estimate: float, samples: np.ndarray, *, resampled: str, n_units: int, confidence: float = CONFIDENCE
) -> Interval:
    """The (1 - confidence)/2 and (1 + confidence)/2 quantiles of the resampled statistic; NaN bounds for < 2 units."""
    if n_units < 2 or samples.size == 0 or not np.isfinite(samples).all():
        return Interval(float(estimate), float("nan"), float("nan"), resampled, n_units, int(samples.size))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(samples, [alpha, 1 - alpha])
    return Interval(float(estimate), float(low), float(high), resampled, n_units, int(samples.size))


def threshold_fraction_intervals(
    block_counts: np.ndarray,
    block_tokens: np.ndarray,
    thresholds: Sequence[float],
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> dict[float, Interval]:
    """Per threshold t: the share of latents with frequency < t, with an interval from resampling sequence blocks.

    `block_counts` [n_blocks, d_sae] are firing counts per block, `block_tokens` [n_blocks] the tokens per block. The
    interval is NaN when t x tokens < MIN_THRESHOLD_FIRINGS (see the module docstring) or with fewer than 2 blocks.
    """
    counts = np.asarray(block_counts, dtype=np.float64)
    tokens = np.asarray(block_tokens, dtype=np.float64)
    n_blocks, n_total = counts.shape[0], float(tokens.sum())
    total = counts.sum(0)
    estimates = {t: float((total < t * n_total).mean()) for t in thresholds}
    usable = [t for t in thresholds if t * n_total >= MIN_THRESHOLD_FIRINGS and n_blocks >= 2]
    samples: dict[float, list[np.ndarray]] = {t: [] for t in usable}
    exact = n_total < 2**24  # float32 holds every resampled count exactly below 2^24
    mat = counts.astype(np.float32 if exact else np.float64)
    for idx in bootstrap_indices(n_blocks, n_resamples if usable else 0, seed):
        w = _weights(idx).astype(mat.dtype)
        c, n = w @ mat, w.astype(np.float64) @ tokens
        for t in usable:
            samples[t].append((c < (t * n)[:, None]).mean(1))
    out = {}
    for t in thresholds:
        drawn = np.concatenate(samples[t]) if samples.get(t) else np.empty(0)
        out[t] = percentile_interval(estimates[t], drawn, resampled="sequence blocks", n_units=n_blocks, confidence=confidence)
    return out


def category_fraction_intervals(
    labels: np.ndarray,
    categories: Sequence[str],
    *,
    mask: np.ndarray | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> dict[str, Interval]:
    """Per category: the share of latents (within `mask`, if given) with that label, with an interval from resampling
    latents with replacement (the denominator, the masked count, is resampled too)."""
    labels = np.asarray(labels)
    keep = np.ones(labels.shape[0], bool) if mask is None else np.asarray(mask, bool)
    onehot = np.stack([(labels == c) & keep for c in categories] + [keep], axis=1).astype(np.float64)
    n = labels.shape[0]
    denom = onehot[:, -1].sum()
    est = {c: float(onehot[:, k].sum() / denom) if denom else float("nan") for k, c in enumerate(categories)}
    drawn: list[np.ndarray] = []
    for idx in bootstrap_indices(n, n_resamples, seed):
        s = _weights(idx).astype(np.float64) @ onehot
        with np.errstate(invalid="ignore", divide="ignore"):
            drawn.append(s[:, :-1] / s[:, -1:])
    samples = np.concatenate(drawn) if drawn else np.empty((0, len(categories)))
    return {
        c: percentile_interval(est[c], samples[:, k], resampled="latents", n_units=n, confidence=confidence)
        for k, c in enumerate(categories)
    }


def recovered_interval(
    per_seq: Mapping[str, np.ndarray],
    seq_tokens: np.ndarray,
    *,
    ablation: str = "zero",
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> Interval:
    """(L_abl - L_recon) / (L_abl - L_clean) with an interval from resampling sequences. `per_seq[k]` holds each
    sequence's summed loss under intervention k ('clean', 'recon', `ablation`), `seq_tokens` its predicted tokens."""
    sums = np.stack([np.asarray(per_seq[k], dtype=np.float64) for k in ("clean", "recon", ablation)], axis=1)
    tokens = np.asarray(seq_tokens, dtype=np.float64)

    def score(s: np.ndarray, n: Any) -> Any:
        clean, recon, abl = (s[..., k] / n for k in range(3))
        with np.errstate(invalid="ignore", divide="ignore"):
            return (abl - recon) / (abl - clean)

    estimate = float(score(sums.sum(0), tokens.sum()))
    drawn = [score(w @ sums, w @ tokens) for w in (_weights(i).astype(np.float64) for i in bootstrap_indices(
        len(tokens), n_resamples, seed))]  # fmt: skip
    samples = np.concatenate(drawn) if drawn else np.empty(0)
    return percentile_interval(estimate, samples, resampled="sequences", n_units=len(tokens), confidence=confidence)


def dead_fraction(counts: np.ndarray, n_tokens: int, **kw: int) -> dict[str, float | int | str]:
    """The dead fraction (latents that never fired in n_tokens) with its interval over latents, its resolution 1/N and
    the rule-of-three frequency bound 3/N under which a never-firing latent's frequency lies (95%)."""
    dead = np.asarray(counts) == 0
    iv = category_fraction_intervals(dead.astype(int).astype(str), ["1"], **kw)["1"]
    return iv.as_dict() | {"n_dead": int(dead.sum()), "n_tokens": int(n_tokens), "resolution": 1 / n_tokens,
                           "dead_freq_bound_95": RULE_OF_THREE / n_tokens}  # fmt: skip


CLASSES = ("1-sparse", "10-sparse", "dense")
INTERVAL_KEYS: dict[str, str] = {
    "frac_1_sparse": "latents", "frac_10_sparse": "latents", "frac_dense": "latents",
    "frac_1_sparse_nonrare": "latents", "frac_10_sparse_nonrare": "latents", "frac_dense_nonrare": "latents",
    "frac_dead": "latents", "ulf_fraction": "sequence blocks", "frac_below_1e-5": "sequence blocks",
    "frac_below_1e-6": "sequence blocks",
    "recons_score": "sequences",
}  # fmt: skip
"""The `sae_analysis.table.KEYS` that `summary_intervals` puts an interval beside, and what each resamples."""


def summary_intervals(
    classes: np.ndarray,
    counts: np.ndarray,
    n_tokens: int,
    *,
    block_counts: np.ndarray | None = None,
    block_tokens: np.ndarray | None = None,
    per_seq: Mapping[str, np.ndarray] | None = None,
    seq_tokens: np.ndarray | None = None,
    ulf_threshold: float = RARE_FREQ,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> dict[str, dict[str, float | int | str]]:
    """Intervals for the `INTERVAL_KEYS` of a summary: decoder class fractions (`classes`, all latents and the non-rare
    ones, frequency >= RARE_FREQ, as `summarize`) and the dead fraction over latents; threshold fractions over sequence
    blocks (with `block_counts`); the zero-ablation score over sequences (with `per_seq`). Each entry is an `Interval`
    as a dict, plus the threshold and its expected firings (threshold fractions) or N, 1/N and 3/N (dead)."""
    if n_tokens <= 0:
        raise ValueError("summary_intervals needs firing counts from a token sample (stored frequencies have none)")
    kw = {"n_resamples": n_resamples, "seed": seed}
    freq = np.asarray(counts, dtype=np.float64) / n_tokens
    out: dict[str, dict[str, float | int | str]] = {}
    for suffix, mask in (("", None), ("_nonrare", freq >= RARE_FREQ)):
        for c, iv in category_fraction_intervals(classes, CLASSES, mask=mask, **kw).items():
            out[f"frac_{c.replace('-', '_')}{suffix}"] = iv.as_dict()
    out["frac_dead"] = dead_fraction(counts, n_tokens, **kw)
    if block_counts is not None and block_tokens is not None:
        cuts = {"ulf_fraction": ulf_threshold} | {below_key(t): t for t in LOGGED_THRESHOLDS}
        got = threshold_fraction_intervals(block_counts, block_tokens, list(cuts.values()), **kw)
        for key, t in cuts.items():
            out[key] = got[t].as_dict() | {"threshold": t, "expected_firings_at_threshold": t * n_tokens}
    if per_seq is not None and seq_tokens is not None:
        out["recons_score"] = recovered_interval(per_seq, seq_tokens, **kw).as_dict()
    return out


__all__ = ["CONFIDENCE", "N_RESAMPLES", "SEED", "MIN_THRESHOLD_FIRINGS", "RULE_OF_THREE", "Interval", "bootstrap_indices",
           "percentile_interval", "threshold_fraction_intervals", "category_fraction_intervals", "recovered_interval",
           "dead_fraction", "CLASSES", "INTERVAL_KEYS", "summary_intervals"]  # fmt: skip
