"""The demo language model: a small TransformerLens `HookedTransformer` shaped like gelu-1l, trained on the byte corpus.

gelu-1l (REPLICATION.md §2) has one layer, a GELU MLP, LayerNorm and standard positional embeddings; the demo model keeps
that shape at a quarter of the width (defaults: d_model 128, d_mlp 512, 4 heads of 32, n_ctx 128, 257 byte tokens), so its
SAEs (dict_mult 8: 4,096 latents) train in about half an hour per seed on 2 CPU cores and fit the 25 MB artifact budget
in fp16.
Training is plain next-token cross-entropy with AdamW, linear warm-up and cosine decay.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer, HookedTransformerConfig

from sae_analysis.io.demo import D_VOCAB


@dataclass(frozen=True)
class LMConfig:
    """Shape and training schedule of the demo model."""

    d_model: int = 128
    """Residual width."""
    d_mlp: int = 512
    """MLP width: the SAE input size d_in (gelu-1l: 2048)."""
    n_heads: int = 4
    """Attention heads; d_head = d_model // n_heads."""
    n_ctx: int = 128
    """Context length, equal to the corpus seq_len."""
    n_steps: int = 5000
    """Optimizer steps."""
    batch_size: int = 32
    """Sequences per step."""
    lr: float = 3e-3
    """Peak AdamW learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup_steps: int = 100
    """Linear warm-up steps before the cosine decay (to 10 % of the peak)."""
    seed: int = 0
    """Seed of the initialisation and of the batch order."""

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if min(self.n_steps, self.batch_size, self.warmup_steps + 1) <= 0:
            raise ValueError("n_steps and batch_size must be positive, warmup_steps non-negative")


def make_model(cfg: LMConfig) -> HookedTransformer:
    """A freshly initialised one-layer GELU transformer with LayerNorm, seeded by `cfg.seed`."""
    tl_cfg = HookedTransformerConfig(
        n_layers=1,
        d_model=cfg.d_model,
        d_mlp=cfg.d_mlp,
        n_heads=cfg.n_heads,
        d_head=cfg.d_model // cfg.n_heads,
        n_ctx=cfg.n_ctx,
        d_vocab=D_VOCAB,
        act_fn="gelu",
        normalization_type="LN",
        positional_embedding_type="standard",
        default_prepend_bos=False,
        seed=cfg.seed,
        device="cpu",
    )
    return HookedTransformer(tl_cfg)


def shuffled_batches(tokens: Int[Tensor, "n_seq pos"], batch_size: int, seed: int) -> Iterator[Int[Tensor, "batch pos"]]:
    """Endless batches of rows: each epoch is a fresh seeded permutation, every row served once per epoch."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(tokens.shape[0], generator=gen)
        for start in range(0, tokens.shape[0] - batch_size + 1, batch_size):
            yield tokens[perm[start : start + batch_size]]


def lr_at(step: int, cfg: LMConfig) -> float:
    """Linear warm-up to `cfg.lr`, then cosine decay to 10 % of it at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.n_steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def eval_loss(model: HookedTransformer, tokens: Int[Tensor, "n_seq pos"], batch_size: int = 64) -> float:
    """Mean next-token cross-entropy (nats) over all predicted positions of `tokens`."""
    total, count = 0.0, 0
    for start in range(0, tokens.shape[0], batch_size):
        batch = tokens[start : start + batch_size]
        loss = model(batch, return_type="loss", loss_per_token=True)
        total += float(loss.sum())
        count += loss.numel()
    return total / count


def train_lm(
    cfg: LMConfig, train_tokens: Int[Tensor, "n_seq pos"], *, progress: bool = True
) -> tuple[HookedTransformer, list[dict[str, int | float]]]:
    """Train the demo model; returns it (in eval mode) and a log of {step, lr, loss} every 50 steps."""
    model = make_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    batches = shuffled_batches(train_tokens, cfg.batch_size, cfg.seed)
    log: list[dict[str, int | float]] = []
    bar = tqdm(range(cfg.n_steps), desc="demo LM", disable=not progress)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = model(next(batches), return_type="loss")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == cfg.n_steps - 1:
            log.append({"step": step, "lr": lr_at(step, cfg), "loss": loss.item()})
            bar.set_postfix(loss=f"{log[-1]['loss']:.3f}")
    return model.eval(), log
