"""The rows of the demo-recipe sweep (issue #13): one named trainer config each, over the demo build's seed config.

Every row starts from `trainers.demo.config.seed_config(full_config(), seed)` with `SWEEP_BASE` (the first-round demo's
recipe: batch 1,024, lr 1e-3, l1_coeff 1e-3 in the original convention, Kaiming resampling of latents below 10^-5.5
every 488 steps, 16 resamples, then 487 more steps; 8,494,080 tokens) and changes only what its `changes` say.
`schedule(spc, n)` gives the demo build's schedule with n resamples every spc steps
(`trainers.demo.config.demo_train_config`), so a short row ends like the full one: 487 steps after its last resample.
`slice_seqs` restricts training to the first rows of the seed's permutation of the train split (the data-exhaustion
rows); `None` = the whole train split (28,537,088 tokens, so the committed 8.5M-token run sees 0.30 epochs and never
repeats data).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from trainers import TrainConfig
from trainers.config_resample import AnthropicResample, NoResample
from trainers.demo.config import demo_train_config, full_config, seed_config

SWEEP_BASE: dict[str, Any] = {"l1_coeff": 1e-3, "lr": 1e-3}
"""What the sweep's baseline pins against later changes of the build recipe: the first-round demo's L1 coefficient and
learning rate, so that rebuilding the demo with other ones (item 6) leaves every row's config, and its finished runs, as
they were."""

SPC = 488
"""Steps per checkpoint / Kaiming resample in the committed demo recipe."""


def schedule(n_resamples: int, spc: int = SPC) -> dict[str, Any]:
    """num_tokens and the resample / checkpoint / eval intervals (in tokens) of the demo build with `n_resamples`
    resamples."""
    c = demo_train_config(spc, n_resamples, l1_coeff=1e-3, lr=1e-3)
    return {"num_tokens": c.num_tokens, "resample": c.resample,
            "checkpoint_every_tokens": c.checkpoint_every_tokens, "eval_every_tokens": c.eval_every_tokens}


def anthropic(n_resamples: int, spc: int = SPC) -> dict[str, Any]:
    """Anthropic's resampling (REPLICATION.md §7.2) at the demo's schedule: at the same steps as the Kaiming resamples, of
    latents that did not fire in the previous spc / 2 steps (the paper: every 25,000 steps, a 12,500-step window)."""
    batch = seed_config(full_config(), 1).batch_size
    return {"resample": AnthropicResample(at_tokens=tuple(spc * k * batch for k in range(1, n_resamples + 1)),
                                          window_tokens=spc // 2 * batch)}


@dataclass(frozen=True)
class Row:
    """One sweep row: the trainer-config changes, the seeds, and the data it may read."""

    changes: dict[str, Any]
    note: str
    seeds: tuple[int, ...] = (1,)
    slice_seqs: int | None = None
    """Train only on the first `slice_seqs` sequences of the seed's permutation of the train split (None: all)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def config(self, seed: int) -> TrainConfig:
        return dataclasses.replace(seed_config(full_config(), seed), **{**SWEEP_BASE, **self.changes})


SHORT = schedule(3)  # 1,951 steps = 1,997,824 tokens: 3 resamples, then 487 steps
EXHAUST = {**schedule(2), "checkpoint_every_tokens": 122 * 1024}  # 1,463 steps = 1,498,112 tokens; snapshots every 124,928
EXHAUST_SEQS = 6144
"""786,432 tokens: the data runs out about halfway between the resamples at 499,712 and 999,424 tokens."""

ROWS: dict[str, Row] = {
    "baseline": Row({}, "the committed demo recipe, both seeds (8.5M tokens, 0.30 epochs)", seeds=(1, 2)),
    "baseline_2m": Row(SHORT, "the committed recipe stopped at 2.0M tokens (prefix check against the committed log)"),
    "lr3e-4_2m": Row({**SHORT, "lr": 3e-4}, "lr 3e-4 (committed 1e-3)"),
    "lr1e-4_2m": Row({**SHORT, "lr": 1e-4}, "lr 1e-4 (Neel's; committed 1e-3)"),
    "l1_7e-4_2m": Row({**SHORT, "l1_coeff": 7e-4}, "l1_coeff 7e-4 (committed 1e-3)"),
    "l1_1.4e-3_2m": Row({**SHORT, "l1_coeff": 1.4e-3}, "l1_coeff 1.4e-3 (committed 1e-3)"),
    "none_2m": Row({**SHORT, "resample": NoResample()}, "no resampling"),
    "anthropic_2m": Row({**SHORT, **anthropic(3)}, "Anthropic resampling at the Kaiming steps, window 244 steps"),
    "renorm_2m": Row({**SHORT, "decoder_norm": "project_grad_and_renorm"}, "decoder rows renormalised after each step"),
    "lr3e-4": Row({"lr": 3e-4}, "lr 3e-4, full length (8.5M tokens)", seeds=(1, 2)),
    "l1_7e-4": Row({"l1_coeff": 7e-4}, "l1_coeff 7e-4, full length (8.5M tokens): the 2M row's CE 0.942 at L0 28 is the first "
                   "to pass item 6's CE bar", seeds=(1, 2)),
    "l1_8.5e-4": Row({"l1_coeff": 8.5e-4}, "l1_coeff 8.5e-4, full length: between 1e-3 (committed: L0 24, CE 0.93, "
                     "< 1e-6 7.1-7.3 %) and 7e-4 (L0 41, CE 0.97, < 1e-6 5.1 %), aiming at L0 <= 30 with CE >= 0.93",
                     seeds=(1, 2)),
    "l1_9e-4": Row({"l1_coeff": 9e-4}, "l1_coeff 9e-4, full length: the training-log L0 of 8.5e-4 at 2.9M tokens (1.28x that of "
                   "1e-3) projected a final L0 of ~30, on the bar; 9e-4 leaves a margin", seeds=(1, 2)),
    "anthropic4": Row(anthropic(4), "Anthropic resampling 4 times (every 488 steps up to 1,952), then 6,343 steps without "
                      "(the paper: 4 resamples in the first 10 % of training); 8.5M tokens", seeds=(1, 2)),
    "none": Row({"resample": NoResample()}, "no resampling, full length (8.5M tokens)", seeds=(1, 2)),
    "long_2x": Row(schedule(16, 2 * SPC), "2x longer (17.0M tokens, 0.60 epochs): resample every 976 steps, 16 times"),
    "exhaust_wrap": Row({**EXHAUST, "end_of_data": "wrap"}, "786,432-token slice, wrap: 1.90 epochs in 1.5M tokens",
                        slice_seqs=EXHAUST_SEQS),
    "exhaust_freeze": Row({**EXHAUST, "end_of_data": "freeze"},
                          "786,432-token slice, freeze: then the last 65,536-activation buffer reshuffled to 1.5M tokens",
                          slice_seqs=EXHAUST_SEQS),
    "exhaust_stop": Row({**EXHAUST, "end_of_data": "stop"}, "786,432-token slice, stop at the end of the data (1 epoch)",
                        slice_seqs=EXHAUST_SEQS),
}
