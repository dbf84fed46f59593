"""When and how the trainer resamples dead latents (REPLICATION.md §7): Neel's Kaiming re-initialisation on a fixed token
interval, measured on fresh tokens right after the checkpoint of the same step, or Anthropic's loss-weighted re-seeding
at fixed token counts. The maths is in `trainers.dead`; this module decides, applies and logs (on the writing rank; the
trainer broadcasts the result to the other ranks)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from trainers.dead import anthropic_latents, apply_new_latents, kaiming_latents, per_input_losses

if TYPE_CHECKING:
    from trainers.train import Trainer


def maybe_resample(trainer: Trainer) -> bool:
    """Resample if the last step reached the method's schedule; returns whether it did."""
    cfg, sae = trainer.cfg, trainer.sae
    if cfg.resample == "kaiming" and trainer.reached(cfg.resample_every_tokens):
        freq = trainer.checkpoint_frequencies().freq
        dead = (freq < cfg.resample_freq).to(sae.device)
        new = kaiming_latents(sae.cfg.d_in, sae.cfg.d_sae, dead, torch.Generator().manual_seed(trainer.seed(3)))
        apply_new_latents(sae, new)  # Neel: optimizer state untouched
    elif cfg.resample == "anthropic" and any(trainer.prev_tokens < t <= trainer.tokens for t in cfg.resample_at_tokens):
        dead = trainer.tracker.dead_mask(cfg.resample_window_tokens)
        freq = trainer.tracker.window_frequencies().cpu()
        new = _anthropic(trainer, dead)
    else:
        return False
    trainer.tracker.revive(new.index.to(trainer.tracker.tokens_since_fired.device))
    trainer.writer.write("resample", step=trainer.step, tokens=trainer.tokens, method=cfg.resample, n=len(new.index),
                         latents=new.index, prior_freq=freq.cpu()[new.index])
    return True


def _anthropic(trainer: Trainer, dead: Tensor) -> Any:
    cfg, sae = trainer.cfg, trainer.sae
    if trainer.evaluator is not None:
        x = trainer.evaluator.activations(cfg.resample_inputs, trainer.seed(4)).to(sae.device)
    else:  # no held-out data: score the next training batches (they are then not trained on; rank 0's only)
        n = -(-cfg.resample_inputs // trainer.buffer.batch_size)
        x = torch.cat([b for b in itertools.islice(trainer.buffer, n)]).to(sae.device)
    with torch.no_grad():
        losses = torch.cat([per_input_losses(sae, c, cfg.resample_loss, cfg.batch_size)
                            for c in x.split(cfg.batch_size)])
        seeds = x.float() - sae.b_dec if cfg.resample_center else x.float()
    new = anthropic_latents(sae.W_enc, dead, seeds, losses, torch.Generator().manual_seed(trainer.seed(5)),
                            cfg.resample_enc_scale)
    apply_new_latents(sae, new, trainer.opt)
    return new
