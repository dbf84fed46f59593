"""When and how the trainer resamples dead latents (REPLICATION.md §7): Neel's Kaiming re-initialisation on a fixed token
interval, measured on fresh tokens right after the checkpoint of the same step, or Anthropic's loss-weighted re-seeding
at fixed token counts. The maths is in `trainers.dead`; this module decides, applies and logs (on the writing rank; the
trainer broadcasts the result to the other ranks)."""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import Tensor

from trainers.config_resample import AnthropicResample, KaimingResample
from trainers.dead import anthropic_latents, apply_new_latents, kaiming_latents, per_input_losses


def maybe_resample(trainer: Any) -> bool:
    """Resample if the `trainers.trainer.Trainer`'s last step reached the method's schedule; returns whether it did."""
    sae, opts = trainer.sae, trainer.cfg.resample
    if isinstance(opts, KaimingResample) and trainer.reached(opts.every_tokens):
        freq = trainer.checkpoint_frequencies().freq
        dead = (freq < opts.freq).to(sae.device)
        new = kaiming_latents(sae.cfg.d_in, sae.cfg.d_sae, dead, torch.Generator().manual_seed(trainer.seed(3)))
        apply_new_latents(sae, new)  # Neel: optimizer state untouched
    elif isinstance(opts, AnthropicResample) and any(trainer.prev_tokens < t <= trainer.tokens for t in opts.at_tokens):
        dead = trainer.tracker.dead_mask(opts.window_tokens)
        freq = trainer.tracker.window_frequencies().cpu()
        new = _anthropic(trainer, opts, dead)
    else:
        return False
    trainer.tracker.revive(new.index.to(trainer.tracker.tokens_since_fired.device))
    trainer.writer.write("resample", step=trainer.step, tokens=trainer.tokens, method=opts.method, n=len(new.index),
                         latents=new.index, prior_freq=freq.cpu()[new.index])
    return True


def _anthropic(trainer: Any, opts: AnthropicResample, dead: Tensor) -> Any:
    cfg, sae = trainer.cfg, trainer.sae
    if trainer.evaluator is not None:
        x = trainer.evaluator.activations(opts.inputs, trainer.seed(4)).to(sae.device)
    else:  # no held-out data: score the next training batches (they are then not trained on; rank 0's only)
        n = -(-opts.inputs // trainer.buffer.batch_size)
        x = torch.cat([b for b in itertools.islice(trainer.buffer, n)]).to(sae.device)
    with torch.no_grad():
        losses = torch.cat([per_input_losses(sae, c, opts.loss, cfg.batch_size) for c in x.split(cfg.batch_size)])
        seeds = x.float() - sae.b_dec if opts.center else x.float()
    new = anthropic_latents(sae.W_enc, dead, seeds, losses, torch.Generator().manual_seed(trainer.seed(5)),
                            opts.enc_scale)
    apply_new_latents(sae, new, trainer.opt)
    return new
