"""The training loop (REPLICATION.md §5): Adam on `SAE.forward`'s loss, decoder-gradient projection, logging, evaluation,
checkpoints, resampling, resume.

`train_step` is the whole optimizer step and sees one batch; `Trainer.run` sees only an iterator of activation batches
(the `MixingBuffer` over a chunk source). Metric formulas come from `sae_analysis.metrics`; the dead-latent tracker and
the resampling maths live in `trainers.dead`.

Order of work at the end of step s (as the original: save, then resample): log / evaluate; at a checkpoint, write the SAE
(pre-resample weights) and a frequency snapshot; resample; then write the trainer state, so a resumed run continues
exactly after step s.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from sae_analysis import SAE
from sae_analysis.frequency import FrequencyResult, stored_log10_density
from sae_analysis.io.runs import METRICS_FILE, MetricsWriter, write_frequency_snapshot
from sae_analysis.metrics import explained_variance, frequency_fractions, l0, log10_freq
from trainers import checkpoint as ckpt
from trainers.buffer import MixingBuffer
from trainers.config import TrainConfig
from trainers.dead import (
    DeadLatentTracker,
    anthropic_latents,
    apply_new_latents,
    kaiming_latents,
    per_input_losses,
    project_decoder_grad_,
    renormalise_decoder_,
)
from trainers.evaluate import Evaluator
from trainers.interrupt import StopFlag
from trainers.memory import keep_freed_memory
from trainers.precision import resolve_autocast
from trainers.sparse_step import make_workspace
from trainers.step import FusedStep

log = logging.getLogger(__name__)
_StopFlag = StopFlag  # former name, imported by trainers.distributed
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
Stopped = Literal["done", "interrupted", "data_exhausted"]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the weights of the failing step were not updated."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
    sae: SAE
    step: int
    tokens: int
    out_dir: Path
    stopped: Stopped
    """'done' (all steps), 'interrupted' (Ctrl-C, checkpoint saved) or 'data_exhausted' (end_of_data='stop')."""


class StepOutput(NamedTuple):
    loss: float
    l2: float
    l1: float
    acts: Float[Tensor, "batch d_sae"]
    x_hat: Float[Tensor, "batch d_in"]


def make_optimizer(sae: SAE, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam as in the original (no weight decay, constant LR), using torch's fused kernel: one pass over each parameter
    instead of about eight elementwise passes, the same update up to rounding."""
    return torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps, fused=True)


def train_step(sae: SAE, opt: torch.optim.Optimizer, x: Float[Tensor, "batch d_in"], cfg: TrainConfig,
               workspace: FusedStep | None = None) -> StepOutput:
    """One optimizer step: forward and backward (bf16 autocast if configured; the hand-fused fp32 step when a `workspace`
    is given and supports the SAE), decoder-gradient projection, Adam step, optional row renormalisation (REPLICATION.md
    §3.4). Raises NonFiniteLossError before touching the weights."""
    x = x.to(sae.device)
    fused = workspace is not None and not cfg.autocast_bf16 and FusedStep.supports(sae)
    if fused:
        out = workspace.forward_backward(sae, x)
    else:
        with torch.autocast(sae.device.type, dtype=torch.bfloat16, enabled=cfg.autocast_bf16):
            out = sae(x)
    loss = out.loss.detach().item()
    if not math.isfinite(loss):
        raise NonFiniteLossError(f"loss is {loss} (l2={out.l2.detach().item()}, l1={out.l1.detach().item()})")
    if not fused:
        out.loss.backward()
    project_decoder_grad_(sae.W_dec)
    opt.step()
    if not fused:  # the fused step overwrites the gradients; autograd accumulates into them
        opt.zero_grad(set_to_none=False)  # keep the memory: re-allocating it every step costs page faults on CPU
    if cfg.decoder_norm == "project_grad_and_renorm":
        renormalise_decoder_(sae.W_dec)
    return StepOutput(loss, out.l2.detach().item(), out.l1.detach().item(), out.acts.detach(), out.x_hat.detach())


class Trainer:
    """State and bookkeeping of one run; see `train` for the public entry point."""

    def __init__(self, cfg: TrainConfig, buffer: MixingBuffer, source: Any, out_dir: Path, evaluator: Evaluator | None):
        self.cfg, self.buffer, self.source, self.out_dir, self.evaluator = cfg, buffer, source, out_dir, evaluator
        self.writer = MetricsWriter(out_dir / METRICS_FILE)
        self.step = self.tokens = 0
        self.next_checkpoint = cfg.checkpoint_every_tokens
        self.prev_tokens = 0  # the token count before the last step: schedules fire when a step reaches a multiple
        self.last_checkpoint: str | None = None
        self._freq_cache: tuple[int, FrequencyResult] | None = None
        self._timer = (time.perf_counter(), 0)
        self.workspace = make_workspace(cfg.step_impl)

    def init_fresh(self, d_in: int) -> None:
        cfg = self.cfg = dataclasses.replace(self.cfg, d_in=d_in)
        torch.manual_seed(cfg.seed)  # Neel seeds the global RNG right before building the encoder
        self.sae = SAE(cfg.sae_config(d_in), device=cfg.device)
        self.opt = make_optimizer(self.sae, cfg)
        self.tracker = DeadLatentTracker(self.sae.cfg.d_sae, device=cfg.device)

    # ----- the loop ---------------------------------------------------------------------------------------------------
    def run(self, batches: Iterator[Tensor], progress: bool) -> Stopped:
        stopped: Stopped = "done"
        self._timer = (time.perf_counter(), self.tokens)
        bar = tqdm(total=self.cfg.steps, initial=self.step, unit="step", disable=not progress, dynamic_ncols=True)
        with StopFlag() as flag, bar:
            while self.step < self.cfg.steps:
                if flag.requested:
                    stopped = "interrupted"
                    break
                x = next(batches, None)
                if x is None:
                    stopped = "data_exhausted"
                    break
                self._one_step(x, bar)
        return stopped

    def _one_step(self, x: Tensor, bar: tqdm) -> None:
        try:
            out = train_step(self.sae, self.opt, x, self.cfg, self.workspace)
        except NonFiniteLossError as err:
            self.writer.write("error", step=self.step + 1, tokens=self.tokens, message=str(err))
            raise NonFiniteLossError(f"step {self.step + 1}: {err}. Stopped; the last good checkpoint is "
                                     f"{self.last_checkpoint or '(none yet)'}") from None
        self.step, self.prev_tokens, self.tokens = self.step + 1, self.tokens, self.tokens + len(x)
        self.tracker.update(out.acts)
        bar.update(1)
        if self.reached(self.cfg.log_every_tokens):
            self._log_train(x, out, bar)
        if self.reached(self.cfg.eval_every_tokens):
            self._evaluate()
        self._maybe_checkpoint_and_resample()

    def reached(self, every_tokens: int) -> bool:
        """Whether the last step reached a multiple of `every_tokens` (with intervals that are multiples of the batch:
        every `every_tokens // batch_size` steps)."""
        return self.tokens // every_tokens > self.prev_tokens // every_tokens

    def _log_train(self, x: Tensor, out: StepOutput, bar: tqdm) -> None:
        now, tokens = time.perf_counter(), self.tokens
        rate = (tokens - self._timer[1]) / max(now - self._timer[0], 1e-9)
        self._timer = (now, tokens)
        row = {"loss": out.loss, "l2": out.l2, "l1": out.l1, "l0": float(l0(out.acts)),
               "explained_variance": float(explained_variance(x.to(out.x_hat.device), out.x_hat))}
        dead = float((self.tracker.window_counts == 0).double().mean()) if self.tracker.window_tokens else float("nan")
        self.writer.write("train", step=self.step, tokens=tokens, tokens_per_s=rate, **row)
        bar.set_postfix(tok_s=f"{rate:.0f}", loss=f"{out.loss:.4g}", L0=f"{row['l0']:.1f}", dead=f"{dead:.3f}")

    # ----- measurements -----------------------------------------------------------------------------------------------
    def _seed(self, purpose: int) -> int:
        return (self.cfg.seed * 1_000_003 + self.step) * 8 + purpose

    def _frequencies(self, n_tokens: int) -> FrequencyResult:
        """Latent frequencies on fresh tokens (the evaluator) or, without one, over the training window."""
        if self.evaluator is not None:
            return self.evaluator.frequencies(self.sae, n_tokens, self._seed(1))
        t = self.tracker
        freq = t.window_frequencies().cpu()
        return FrequencyResult(freq, t.window_counts.cpu(), t.window_tokens, float(freq.sum()),
                               f"training window: {t.window_tokens} tokens")

    def _checkpoint_frequencies(self) -> FrequencyResult:
        """Frequencies measured once per step for the snapshot and Neel's resampling (get_freqs(50))."""
        if self._freq_cache is None or self._freq_cache[0] != self.step:
            self._freq_cache = (self.step, self._frequencies(self.cfg.resample_freq_tokens))
        return self._freq_cache[1]

    def _evaluate(self) -> None:
        freq = self._frequencies(self.cfg.eval_tokens)
        row: dict[str, Any] = {**frequency_fractions(freq.freq), "freq_tokens": freq.n_tokens, "freq_l0": freq.l0}
        if self.evaluator is not None:
            recon = self.evaluator.reconstruction(self.sae, self.cfg.eval_tokens, self._seed(2))
            if recon is not None:
                scalars = {k: v for k, v in recon._asdict().items() if k != "per_seq"}  # per-sequence sums: not logged
                row.update({f"ce_{k}" if k in ("clean", "recon", "zero", "mean") else k: v for k, v in scalars.items()})
        self.writer.write("eval", step=self.step, tokens=self.tokens, **row)

    # ----- checkpoints and resampling -----------------------------------------------------------------------------------
    def _maybe_checkpoint_and_resample(self) -> None:
        due_ckpt = self.tokens >= self.next_checkpoint
        if due_ckpt:
            self.next_checkpoint += self.cfg.checkpoint_every_tokens
            self._save_sae(self.out_dir / "checkpoints" / f"{self.tokens:012d}")
        resampled = self._maybe_resample()
        if due_ckpt or resampled:
            self.save_state()

    def _save_sae(self, folder: Path) -> None:
        freq = self._checkpoint_frequencies()
        self.sae.log10_density = stored_log10_density(freq.freq)  # SAELens's sparsity convention
        ckpt.save_native(self.sae, folder, self.cfg.to_dict())
        write_frequency_snapshot(self.out_dir, self.tokens, log10_freq(freq.freq).numpy())
        self.writer.write("checkpoint", step=self.step, tokens=self.tokens, path=str(folder), freq_source=freq.source)
        self.last_checkpoint = str(folder)
        self.tracker.reset_window()

    def _maybe_resample(self) -> bool:
        cfg = self.cfg
        if cfg.resample == "kaiming" and self.reached(cfg.resample_every_tokens):
            freq = self._checkpoint_frequencies().freq
            dead = (freq < cfg.resample_freq).to(self.sae.device)
            new = kaiming_latents(self.sae.cfg.d_in, self.sae.cfg.d_sae, dead, torch.Generator().manual_seed(self._seed(3)))
            apply_new_latents(self.sae, new)  # Neel: optimizer state untouched
        elif cfg.resample == "anthropic" and any(self.prev_tokens < t <= self.tokens for t in cfg.resample_at_tokens):
            dead = self.tracker.dead_mask(cfg.resample_window_tokens)
            freq = self.tracker.window_frequencies().cpu()
            new = self._anthropic(dead)
        else:
            return False
        self.tracker.revive(new.index.to(self.tracker.tokens_since_fired.device))
        self.writer.write("resample", step=self.step, tokens=self.tokens, method=cfg.resample, n=len(new.index),
                          latents=new.index, prior_freq=freq.cpu()[new.index])
        return True

    def _anthropic(self, dead: Tensor) -> Any:
        cfg = self.cfg
        if self.evaluator is not None:
            x = self.evaluator.activations(cfg.resample_inputs, self._seed(4)).to(self.sae.device)
        else:  # no held-out data: score the next training batches (they are then not trained on)
            n = -(-cfg.resample_inputs // cfg.batch_size)
            x = torch.cat([b for b in itertools.islice(self.buffer, n)]).to(self.sae.device)
        with torch.no_grad():
            losses = torch.cat([per_input_losses(self.sae, c, cfg.resample_loss, cfg.batch_size)
                                for c in x.split(cfg.batch_size)])
            seeds = x.float() - self.sae.b_dec if cfg.resample_center else x.float()
        new = anthropic_latents(self.sae.W_enc, dead, seeds, losses, torch.Generator().manual_seed(self._seed(5)),
                                cfg.resample_enc_scale)
        apply_new_latents(self.sae, new, self.opt)
        return new

    # ----- state --------------------------------------------------------------------------------------------------------
    def save_state(self) -> None:
        ckpt.save_state(self.out_dir, *self.state())

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Everything `restore` needs, as (tensors, JSON-able metadata); `save_state` writes it (a hook for subclasses
        that store parts elsewhere, e.g. `trainers.distributed`)."""
        opt_tensors, opt_rest = ckpt.optimizer_tensors(self.opt)
        buf = self.buffer.state_dict()
        tensors = {**ckpt.prefixed("sae", self.sae.state_dict()), **opt_tensors,
                   **ckpt.prefixed("buffer", buf["tensors"]), "rng/torch": torch.get_rng_state(),
                   "tracker/tokens_since_fired": self.tracker.tokens_since_fired,
                   "tracker/window_counts": self.tracker.window_counts}
        meta = {"cfg": self.cfg.to_dict(), "step": self.step, "tokens": self.tokens, "next_checkpoint": self.next_checkpoint,
                "last_checkpoint": self.last_checkpoint, "metrics_offset": self.writer.offset(), "optimizer": opt_rest,
                "buffer": {"scalars": buf["scalars"], "d_in": buf["d_in"]}, "window_tokens": self.tracker.window_tokens,
                "source": self.source.state_dict() if hasattr(self.source, "state_dict") else None,
                "step_state": self.workspace.state_dict() if hasattr(self.workspace, "state_dict") else None}
        return tensors, meta

    def restore(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        saved = TrainConfig.from_dict(meta["cfg"])
        changed = {k: v for k, v in self.cfg.to_dict().items() if k != "d_in" and saved.to_dict()[k] != v}
        if changed:
            log.warning("resuming with config changes %s (saved: %s)", changed, {k: saved.to_dict()[k] for k in changed})
        self.init_fresh(int(saved.d_in or 0))
        self.sae.load_state_dict({k: v.to(self.cfg.device) for k, v in ckpt.unprefixed("sae", tensors).items()})
        ckpt.load_optimizer_tensors(self.opt, tensors, meta["optimizer"])
        self.tracker.load_state_dict({"tokens_since_fired": tensors["tracker/tokens_since_fired"],
                                      "window_counts": tensors["tracker/window_counts"], "window_tokens": meta["window_tokens"]})
        self.buffer.load_state_dict({"tensors": ckpt.unprefixed("buffer", tensors), **meta["buffer"]})
        if meta["source"] is not None:
            self.source.load_state_dict(meta["source"])
        torch.set_rng_state(tensors["rng/torch"])
        if meta.get("step_state") is not None and hasattr(self.workspace, "load_state_dict"):
            self.workspace.load_state_dict(meta["step_state"])  # AutoStep's mode, so that resume is bit-identical
        self.step, self.tokens, self.next_checkpoint = meta["step"], meta["tokens"], meta["next_checkpoint"]
        self.prev_tokens = self.tokens
        self.last_checkpoint = meta["last_checkpoint"]
        self.writer.truncate(meta["metrics_offset"])

    def finish(self, stopped: Stopped) -> None:
        if self.last_checkpoint != str(self.out_dir / "checkpoints" / f"{self.tokens:012d}"):
            self._save_sae(self.out_dir / "checkpoints" / f"{self.tokens:012d}")
        self.save_state()
        if stopped != "interrupted":
            ckpt.save_native(self.sae, self.out_dir / "final", self.cfg.to_dict())
        self.writer.write("end", step=self.step, tokens=self.tokens, stopped=stopped)


def make_buffer(cfg: TrainConfig, source: Iterator[Tensor]) -> MixingBuffer:
    """The shuffle buffer of `cfg` over an activation-chunk source, with its own seeded generator."""
    return MixingBuffer(source, size=cfg.buffer_size, batch_size=cfg.batch_size,
                        generator=torch.Generator().manual_seed(cfg.seed), dtype=DTYPES[cfg.buffer_dtype],
                        end_of_data=cfg.end_of_data, device=cfg.device)


def train(cfg: TrainConfig, source: Iterator[Tensor], *, out_dir: str | Path, evaluator: Evaluator | None = None,
          resume: bool = False, progress: bool = True) -> TrainResult:
    """Train an SAE on activation chunks from `source` (e.g. `trainers.source.ModelActivations`) and write metrics,
    snapshots and checkpoints to `out_dir`. With `resume`, continue from `out_dir`'s trainer state (if any); without it,
    an existing state is an error. Returns when all steps are done, on Ctrl-C (after saving) or at the end of the data
    (end_of_data='stop'); raises NonFiniteLossError on a NaN/inf loss, keeping the last good checkpoint."""
    out_dir = Path(out_dir)
    cfg, precision_note = resolve_autocast(cfg)
    if cfg.device == "cpu":
        keep_freed_memory()
    saved = ckpt.load_state(out_dir)
    if saved is not None and not resume:
        raise FileExistsError(f"{out_dir} already holds a run; pass resume=True (--resume) or choose another folder")
    trainer = Trainer(cfg, make_buffer(cfg, source), source, out_dir, evaluator)
    batches: Iterator[Tensor] = trainer.buffer
    if saved is not None:
        trainer.restore(*saved)
        log.info("resumed %s at step %d (%d tokens)", out_dir, trainer.step, trainer.tokens)
    else:
        trainer.writer.truncate(0)
        first = next(trainer.buffer)
        trainer.init_fresh(cfg.d_in or first.shape[-1])
        batches = itertools.chain([first], trainer.buffer)
    if precision_note is not None:
        trainer.writer.write("precision", step=trainer.step, tokens=trainer.tokens,
                             autocast_bf16=trainer.cfg.autocast_bf16, reason=precision_note)
    try:
        stopped = trainer.run(batches, progress)
        trainer.finish(stopped)
    finally:
        trainer.writer.close()
    return TrainResult(trainer.sae, trainer.step, trainer.tokens, out_dir, stopped)


__all__ = ["train", "train_step", "make_buffer", "make_optimizer", "TrainResult", "NonFiniteLossError", "Trainer"]
