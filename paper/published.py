"""The post's and the paper's published numbers, each paired with the quantity of ours it describes (REPLICATION.md §11,
§12; §9 where the spec defines a reference value). The report takes every published value from `PUBLISHED`, and only
from here; tests check each row against the documented definition of the key it is paired with.

Certainty tags as in REPLICATION.md §1: [Neel] stated in Neel's summary comment, [paper] stated by Anthropic, [derived]
arithmetic on confirmed facts, "unconfirmed" quoted elsewhere, not checked against a primary text. A row whose `value` is
None pairs our number with nothing: the post publishes no value for that quantity.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    """One published value beside one results.json number."""

    key: str
    """results.json path, 'section.key' (runs: `sae_analysis.table.KEYS`; compare: `COMPARE_KEYS`; phase: PHASE_KEYS)."""
    quantity: str
    """What our number is (the report's row label)."""
    definition: str
    """A phrase of the paired key's own documentation (KEYS / COMPARE_KEYS / PHASE_DOCS) that pins what it measures."""
    value: str | None
    """The published value as the spec states it, or None when nothing is published for this quantity."""
    number: float | None
    """The value as a number on our scale (a fraction for %), or None where it is qualitative or absent."""
    tag: str
    """Certainty, as REPLICATION.md states it."""
    section: str
    """Where the spec states the value (or why there is none)."""
    unit: str = "x"
    """How the report prints our number: '%' (fraction as percent), 'tok' (token count) or 'x' (3 significant digits)."""
    note: str = ""
    """What a reader must know to compare: finer numbers that are only quoted, a different denominator or model."""


_SPLIT = (
    "finer split quoted, unconfirmed: 92.1% dense, 3.9% and 4.0% for the sparse classes (assignment and denominator unconfirmed)"
)
_SEE_SPLIT = "the finer split (quoted, unconfirmed) is under Dense"
_CLASS_TAG = "[Neel] approximate"
_A1 = "Anthropic's A/1 (512 ReLU neurons, 4,096 latents, 100M-sample densities): a different model, for scale only"

PUBLISHED: tuple[Published, ...] = (
    Published("runs.frac_1_sparse", "1-sparse decoders (all latents)", "fraction of ALL latents whose decoder is 1-sparse",
              "≈4%", 0.04, _CLASS_TAG, "§11, §9.1", "%", _SEE_SPLIT),
    Published("runs.frac_10_sparse", "10-sparse decoders (all latents)", "fraction of ALL latents whose decoder is 10-sparse",
              "≈4%", 0.04, _CLASS_TAG, "§11, §9.1", "%", _SEE_SPLIT),
    Published("runs.frac_dense", "Dense decoders (all latents)", "fraction of ALL latents whose decoder is dense",
              "≈92%", 0.92, _CLASS_TAG, "§11, §9.1", "%", _SPLIT),
    Published("runs.frac_1_sparse_nonrare", "1-sparse decoders (non-rare latents)", "over non-rare latents",
              None, None, "—", "§9.1", "%", "the post's class fractions are over all latents (§9.1); none published here"),
    Published("runs.frac_dense_nonrare", "Dense decoders (non-rare latents)", "over non-rare latents",
              None, None, "—", "§9.1", "%", "the post's class fractions are over all latents (§9.1); none published here"),
    Published("runs.ulf_fraction", "ULF fraction (freq < 1e-4)", "fraction of latents with frequency < ulf_threshold",
              "more than half", None, "[Neel]", "§11", "%",
              "≈60% is quoted in summaries, unconfirmed; an independent analysis finds 'about half' with a 3e-4 cut"),
    Published("runs.ulf_auto_fraction", "ULF fraction, two-Gaussian split", "below ulf_auto_threshold",
              None, None, "[extension]", "—", "%", "threshold fitted to the data; the post's cut is 1e-4 (row above)"),
    Published("runs.ulf_max_frac_active", "ULF latents active on the one token where most of them fire",
              "share of ULF latents active on the one token where most of them are active",
              "95% of ULF latents fire on one input", 0.95, "[Neel] approximate", "§11, §9.3", "%",
              "ours: max over the evaluation tokens; ULF latents that never fire (dead) count in the denominator"),
    Published("runs.ulf_enc_frac_cos_above_095", "ULF encoders with cos > 0.95 to their mean",
              "fraction of ULF latents whose encoder cosine with the mean exceeds 0.95",
              None, None, "—", "§9.3", "%", "analysis.py prints it; the post states no value"),
    Published("compare.ulf_direction_cos", "Cross-seed cosine of the mean ULF encoder directions",
              "cosine between the ULF mean encoder directions", "same direction across seeds", None, "[Neel] approximate",
              "§11, §9.4", "x"),
    Published("runs.frac_dead", "Dead latents (no firing in the sample)", "fraction of latents that never fired in the sample",
              "none", 0.0, "[Neel]; sample-size dependent", "§11, §8", "%"),
    Published("runs.frac_dead", "Dead latents, Anthropic A/1", "fraction of latents that never fired in the sample",
              "168 of 4,096 (4.1%; no activation in 100M samples)", 168 / 4096, "[paper]", "§12", "%", _A1),
    Published("runs.frac_below_1e-6", "Latents below 1e-6, Anthropic A/1 ultra-low-density", "frequency < 1e-6",
              "292 of 4,096 (7.1%; density < 1e-6)", 292 / 4096, "[paper]", "§12", "%",
              _A1 + "; whether the 292 include the 168 dead is not stated (ours include dead latents)"),
    Published("runs.enc_dec_cos_median_nonrare", "Median enc-dec cosine (non-rare)", "over non-rare latents",
              "≈0.5", 0.5, "[Neel] approximate", "§11, §9.5", "x"),
    Published("runs.recons_score", "Reconstruction score (zero ablation)", "CE loss recovered vs zero ablation",
              "≈92%", 0.92, "unconfirmed", "§11, §8", "%"),
    Published("runs.recons_score", "Reconstruction score, Anthropic A/1 (A/5)", "CE loss recovered vs zero ablation",
              "79% (A/5: 94.5%)", 0.79, "[paper]", "§11, §12", "%", _A1),
    Published("runs.l0", "L0 (active latents per token)", "mean number of active latents per token",
              "no confirmed value", None, "—", "§11", "x", "Anthropic's target for A/1: < 10–20 [paper] (§12)"),
    Published("phase.changepoint_tokens", "ULF changepoint in training", "tokens halfway between the two snapshots",
              "≈1.6B tokens (\"phase transition\")", 1.6e9, "unconfirmed", "§11, §6.2", "tok",
              "wording and value unconfirmed; data exhaustion at 1.6955B tokens is arithmetic [derived], its cause a hypothesis"),
    Published("runs.median_kurtosis", "Median decoder neuron kurtosis", "median excess neuron kurtosis of decoder rows",
              "heavy tails (a Gaussian gives ≈ 0)", None, "[Neel] qualitative", "§9.2", "x"),
    Published("runs.dec_null_frac_median", "Decoder share in W_out null space",
              "median share of decoder rows in W_out's null space",
              "random direction: 0.75 (1536/2048)", 0.75, "[derived]", "§9.6", "x",
              "a reference, not a finding; 1537/2048 ≈ 0.7505 if W_out is centred (null_frac_random in results.json)"),
)  # fmt: skip
"""Every published value the report shows, in report order."""
