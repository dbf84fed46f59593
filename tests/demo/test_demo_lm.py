"""The demo language model: schedule, batching, shapes, loss bookkeeping and a short training run that must learn."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from sae_analysis.io.demo import BOS_TOKEN, D_VOCAB
from trainers.demo.lm import LMConfig, eval_loss, lr_at, make_model, shuffled_batches, train_lm

TINY = LMConfig(d_model=16, d_mlp=32, n_heads=2, n_ctx=12, n_steps=80, batch_size=8, warmup_steps=5, lr=1e-2)


def test_config_validation():
    with pytest.raises(ValueError):
        LMConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError):
        LMConfig(n_steps=0)


def test_lr_schedule_warms_up_then_decays_to_ten_percent():
    cfg = dataclasses.replace(TINY, n_steps=110, warmup_steps=10, lr=1.0)
    lrs = [lr_at(s, cfg) for s in range(cfg.n_steps + 1)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0) and lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(0.1)


def test_shuffled_batches_serve_every_row_once_per_epoch():
    rows = torch.arange(20).unsqueeze(1).repeat(1, 3)
    it = shuffled_batches(rows, batch_size=5, seed=0)
    epoch1 = torch.cat([next(it) for _ in range(4)])[:, 0]
    epoch2 = torch.cat([next(it) for _ in range(4)])[:, 0]
    assert sorted(epoch1.tolist()) == list(range(20)) == sorted(epoch2.tolist())
    assert not torch.equal(epoch1, epoch2)


def test_model_is_shaped_like_gelu_1l():
    model = make_model(TINY)
    c = model.cfg
    assert (c.n_layers, c.d_vocab, c.act_fn, c.normalization_type) == (1, D_VOCAB, "gelu", "LN")
    _, cache = model.run_with_cache(torch.zeros(2, TINY.n_ctx, dtype=torch.long), names_filter="blocks.0.mlp.hook_post")
    assert cache["blocks.0.mlp.hook_post"].shape == (2, TINY.n_ctx, TINY.d_mlp)


def test_eval_loss_matches_manual_cross_entropy(gen):
    model = make_model(TINY)
    tokens = torch.randint(0, D_VOCAB, (5, TINY.n_ctx), generator=gen)
    with torch.no_grad():
        logits = model(tokens)
    manual = F.cross_entropy(logits[:, :-1].reshape(-1, D_VOCAB), tokens[:, 1:].reshape(-1))
    assert eval_loss(model, tokens, batch_size=2) == pytest.approx(float(manual), rel=1e-5)


def test_training_learns_a_deterministic_pattern():
    pattern = torch.tensor([BOS_TOKEN] + [ord(c) for c in "abcabcabcab"])
    tokens = pattern.repeat(64, 1)
    model, log = train_lm(TINY, tokens, progress=False)
    assert log[0]["loss"] > 5.0 and eval_loss(model, tokens[:4]) < 1.0
    assert not model.training
