"""Settings of the demo build: the language model, the SAE trainer config shared by the seeds, the seeds, and the
CI-sized variant."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from trainers.config import TrainConfig
from trainers.config_resample import KaimingResample
from trainers.demo.lm import LMConfig


@dataclass(frozen=True)
class BuildConfig:
    """Everything that determines the demo suite."""

    lm: LMConfig = field(default_factory=LMConfig)
    """The demo language model and its training schedule."""
    sae: TrainConfig = field(default_factory=lambda: demo_train_config(488, 16, l1_coeff=1e-3, lr=3e-4))
    """SAE training settings shared by every seed (the seed field is replaced per seed)."""
    seeds: tuple[int, ...] = (1, 2)
    """One SAE per seed, exported as seed1, seed2, ..."""
    n_lm_eval_seqs: int = 2048
    """Eval-split sequences used to score the model and the bigram baseline."""
    n_metric_seqs: int = 1024
    """Eval-split sequences for the headline SAE metrics written into the manifest."""
    keep_fractions: tuple[float, ...] = ()
    """Intermediate checkpoints exported per seed (fp16): those nearest these fractions of training. None by default: a
    4,096 x 512 SAE is 8.4 MB in fp16, so two finals already take most of the 25 MB budget; the frequency snapshots carry
    the phase-transition curves."""
    quick: bool = False
    """The tiny CI variant (recorded in the manifest)."""


def demo_train_config(steps_per_checkpoint: int, n_resamples: int, *, l1_coeff: float, lr: float, batch_size: int = 1024,
                      resample_freq_tokens: int = 2**18, eval_tokens: int = 2**15, seq_len: int = 128) -> TrainConfig:
    """Trainer settings of the demo: Neel's recipe (original loss convention, gradient projection without renormalising,
    Kaiming resampling of latents below 10^-5.5 right after each checkpoint) at demo scale.

    A checkpoint (+ frequency snapshot) and a resample every `steps_per_checkpoint` steps, `n_resamples` times; training
    then runs `steps_per_checkpoint - 1` more steps without resampling, so the final SAE is not full of freshly
    re-initialised latents (Neel's final checkpoint likewise came 8,281 steps after his last resample, REPLICATION.md §5)."""
    steps = (n_resamples + 1) * steps_per_checkpoint - 1
    return TrainConfig(
        model_name="demo", dict_mult=8, batch_size=batch_size, buffer_mult=64, buffer_dtype="float32", lr=lr,
        l1_coeff=l1_coeff, loss_convention="original", seq_len=seq_len, num_tokens=steps * batch_size, seed=1,
        model_batch=64, end_of_data="wrap", decoder_norm="project_grad",
        resample=KaimingResample(every_tokens=steps_per_checkpoint * batch_size), resample_freq_tokens=resample_freq_tokens,
        log_every_tokens=50 * batch_size, eval_every_tokens=max(1, steps_per_checkpoint // 2) * batch_size,
        eval_tokens=eval_tokens, checkpoint_every_tokens=steps_per_checkpoint * batch_size,
    )  # fmt: skip


def full_config() -> BuildConfig:
    """The committed demo suite."""
    return BuildConfig()


def quick_config() -> BuildConfig:
    """Tiny sizes for CI: the whole pipeline in well under a minute of CPU."""
    lm = LMConfig(d_model=32, d_mlp=64, n_heads=2, n_ctx=32, n_steps=40, batch_size=16, warmup_steps=10, lr=1e-2)
    sae = demo_train_config(20, 12, l1_coeff=1e-3, lr=1e-3, batch_size=256, resample_freq_tokens=2048, eval_tokens=1024,
                            seq_len=32)
    return BuildConfig(lm=lm, sae=sae, n_lm_eval_seqs=64, n_metric_seqs=64, keep_fractions=(0.5,), quick=True)


def seed_config(cfg: BuildConfig, seed: int) -> TrainConfig:
    """The trainer config of one seed."""
    return dataclasses.replace(cfg.sae, seed=seed)
