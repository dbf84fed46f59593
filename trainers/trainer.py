"""One trainer for one process or each rank of a data-parallel group (REPLICATION.md §5): `train_step` (the whole
optimizer step on one batch) and `Trainer` (the loop: logging, evaluation, checkpoints, resampling). The entry point,
and how the pieces fit, is `trainers.train`."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from sae_analysis import SAE
from sae_analysis.frequency import FrequencyResult, stored_log10_density
from sae_analysis.io.runs import METRICS_FILE, MetricsWriter, write_frequency_snapshot
from sae_analysis.metrics import explained_variance, frequency_fractions, log10_freq
from trainers import checkpoint as ckpt
from trainers.buffer import MixingBuffer
from trainers.collective import Collective, FlatGrads, NullWriter, Single
from trainers.config import TrainConfig
from trainers.ddp_reduce import l1_scale, rank_objective
from trainers.dead import DeadLatentTracker, project_decoder_grad_, renormalise_decoder_
from trainers.evaluate import Evaluator
from trainers.resampling import maybe_resample
from trainers.sparse_step import make_workspace
from trainers.step import FusedStep
from trainers.trainer_state import save_trainer_state

log = logging.getLogger(__name__)
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
    counts: Int[Tensor, " d_sae"] | None = None
    """Firing counts of each latent on the global batch (all ranks)."""


def make_optimizer(sae: SAE, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam as in the original (no weight decay, constant LR), using torch's fused kernel: one pass over each parameter
    instead of about eight elementwise passes, the same update up to rounding."""
    return torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps, fused=True)


def train_step(sae: SAE, opt: torch.optim.Optimizer, x: Float[Tensor, "batch d_in"], cfg: TrainConfig,
               workspace: FusedStep | None = None, coll: Collective | None = None,
               grads: FlatGrads | None = None) -> StepOutput:
    """One optimizer step: forward and backward (bf16 autocast if configured; the hand-fused fp32 step when a `workspace`
    is given and supports the SAE), the global loss terms (`coll.reduce_losses`), the gradient mean over ranks (of
    `grads`, the parameters' gradients in one flat buffer; None on one process), decoder-gradient projection, Adam step,
    optional row renormalisation (REPLICATION.md §3.4). Raises NonFiniteLossError before touching the weights."""
    coll = coll or Single()
    x = x.to(sae.device)
    fused = workspace is not None and not cfg.autocast_bf16 and FusedStep.supports(sae)
    if grads is not None:
        grads.bind()
    scale = l1_scale(coll.world, sae.cfg.loss_convention)
    if fused:
        out = workspace.forward_backward(sae, x) if scale == 1 else workspace.forward_backward(sae, x, l1_scale=float(scale))
    else:
        with torch.autocast(sae.device.type, dtype=torch.bfloat16, enabled=cfg.autocast_bf16):
            out = sae(x)
    loss, l2, l1, counts = coll.reduce_losses(out, sae.cfg.loss_convention)
    if not math.isfinite(loss):
        ranks = f"; summed over {coll.world} ranks" if coll.world > 1 else ""
        raise NonFiniteLossError(f"loss is {loss} (l2={l2}, l1={l1}{ranks})")
    if not fused:
        rank_objective(out, coll.world, sae.cfg.loss_convention).backward()
    if grads is not None:
        coll.mean_(grads.buffer)
    project_decoder_grad_(sae.W_dec)
    opt.step()
    if not fused:  # the fused step overwrites the gradients; autograd accumulates into them
        opt.zero_grad(set_to_none=False)  # keep the memory: re-allocating it every step costs page faults on CPU
    if cfg.decoder_norm == "project_grad_and_renorm":
        renormalise_decoder_(sae.W_dec)
    return StepOutput(loss, l2, l1, out.acts.detach(), out.x_hat.detach(), counts)


class Trainer:
    """State and bookkeeping of one run (or of this rank's part of it); see `train` for the public entry point."""

    def __init__(self, cfg: TrainConfig, buffer: MixingBuffer, source: Any, out_dir: Path, evaluator: Evaluator | None,
                 coll: Collective | None = None):
        self.cfg, self.buffer, self.source, self.out_dir, self.evaluator = cfg, buffer, source, out_dir, evaluator
        self.coll = coll or Single()
        self.writer = MetricsWriter(out_dir / METRICS_FILE) if self.coll.is_writer else NullWriter()
        self.step = self.tokens = 0
        self.next_checkpoint = cfg.checkpoint_every_tokens
        self.prev_tokens = 0  # the token count before the last step: schedules fire when a step reaches a multiple
        self.last_checkpoint: str | None = None
        self._freq_cache: tuple[int, FrequencyResult] | None = None
        self._timer = (time.perf_counter(), 0)
        self.workspace = make_workspace(cfg.step_impl)
        self.grads: FlatGrads | None = None

    def init_fresh(self, d_in: int) -> None:
        cfg = self.cfg = dataclasses.replace(self.cfg, d_in=d_in)
        torch.manual_seed(cfg.seed)  # Neel seeds the global RNG right before building the encoder
        self.sae = SAE(cfg.sae_config(d_in), device=cfg.device)
        self.opt = make_optimizer(self.sae, cfg)
        self.tracker = DeadLatentTracker(self.sae.cfg.d_sae, device=cfg.device)
        if self.coll.world > 1:  # one all-reduce per step over every gradient
            self.grads = FlatGrads([self.sae.W_enc, self.sae.W_dec, self.sae.b_enc, self.sae.b_dec])

    # ----- the loop ---------------------------------------------------------------------------------------------------
    def run(self, batches: Iterator[Tensor], progress: bool) -> Stopped:
        """Steps until done, a stop request (Ctrl-C on any rank) or the end of the data (on any rank): every rank agrees
        on each decision at each step."""
        stopped: Stopped = "done"
        self._timer = (time.perf_counter(), self.tokens)
        bar = tqdm(total=self.cfg.steps, initial=self.step, unit="step", disable=not progress or not self.coll.is_writer,
                   dynamic_ncols=True)
        with self.coll.stop_flag() as flag, bar:
            while self.step < self.cfg.steps:
                if self.coll.any(flag.requested):
                    stopped = "interrupted"
                    break
                x = next(batches, None)
                if self.coll.any(x is None):
                    stopped = "data_exhausted"
                    break
                assert x is not None
                self._one_step(x, bar)
        return stopped

    def _one_step(self, x: Tensor, bar: tqdm) -> None:
        try:
            out = train_step(self.sae, self.opt, x, self.cfg, self.workspace, self.coll, self.grads)
        except NonFiniteLossError as err:
            self.writer.write("error", step=self.step + 1, tokens=self.tokens, message=str(err))
            raise NonFiniteLossError(f"step {self.step + 1}: {err}. Stopped; the last good checkpoint is "
                                     f"{self.last_checkpoint or '(none yet)'}") from None
        n = len(x) * self.coll.world
        self.step, self.prev_tokens, self.tokens = self.step + 1, self.tokens, self.tokens + n
        assert out.counts is not None
        self.tracker.add_counts(out.counts, n)
        bar.update(1)
        if self.reached(self.cfg.log_every_tokens):
            self._log_train(x, out, bar)
        if self.reached(self.cfg.eval_every_tokens) and self.coll.is_writer:
            self._evaluate()
        self._maybe_checkpoint_and_resample()

    def reached(self, every_tokens: int) -> bool:
        """Whether the last step reached a multiple of `every_tokens` (with intervals that are multiples of the batch:
        every `every_tokens // batch_size` steps)."""
        return self.tokens // every_tokens > self.prev_tokens // every_tokens

    def _log_train(self, x: Tensor, out: StepOutput, bar: tqdm) -> None:
        """A 'train' row on the global batch (explained variance on the rows gathered from every rank, exact fp32)."""
        xs, x_hats = self.coll.gather(x.to(out.x_hat.device, torch.float32)), self.coll.gather(out.x_hat.float())
        if xs is None or x_hats is None or out.counts is None:
            return
        now, tokens = time.perf_counter(), self.tokens
        rate = (tokens - self._timer[1]) / max(now - self._timer[0], 1e-9)
        self._timer = (now, tokens)
        row = {"loss": out.loss, "l2": out.l2, "l1": out.l1, "l0": float(out.counts.sum(dtype=torch.float64)) / len(xs),
               "explained_variance": float(explained_variance(xs, x_hats))}
        dead = float((self.tracker.window_counts == 0).double().mean()) if self.tracker.window_tokens else float("nan")
        self.writer.write("train", step=self.step, tokens=tokens, tokens_per_s=rate, **self.coll.log_fields(), **row)
        bar.set_postfix(tok_s=f"{rate:.0f}", loss=f"{out.loss:.4g}", L0=f"{row['l0']:.1f}", dead=f"{dead:.3f}")

    # ----- measurements -----------------------------------------------------------------------------------------------
    def seed(self, purpose: int) -> int:
        return (self.cfg.seed * 1_000_003 + self.step) * 8 + purpose

    def _frequencies(self, n_tokens: int) -> FrequencyResult:
        """Latent frequencies on fresh tokens (the evaluator) or, without one, over the training window."""
        if self.evaluator is not None:
            return self.evaluator.frequencies(self.sae, n_tokens, self.seed(1))
        t = self.tracker
        freq = t.window_frequencies().cpu()
        return FrequencyResult(freq, t.window_counts.cpu(), t.window_tokens, float(freq.sum()),
                               f"training window: {t.window_tokens} tokens")

    def checkpoint_frequencies(self) -> FrequencyResult:
        """Frequencies measured once per step for the snapshot and Neel's resampling (get_freqs(50))."""
        if self._freq_cache is None or self._freq_cache[0] != self.step:
            self._freq_cache = (self.step, self._frequencies(self.cfg.resample_freq_tokens))
        return self._freq_cache[1]

    def _evaluate(self) -> None:
        freq = self._frequencies(self.cfg.eval_tokens)
        row: dict[str, Any] = {**frequency_fractions(freq.freq), "freq_tokens": freq.n_tokens, "freq_l0": freq.l0}
        if self.evaluator is not None:
            recon = self.evaluator.reconstruction(self.sae, self.cfg.eval_tokens, self.seed(2))
            if recon is not None:
                scalars = {k: v for k, v in recon._asdict().items() if k != "per_seq"}  # per-sequence sums: not logged
                row.update({f"ce_{k}" if k in ("clean", "recon", "zero", "mean") else k: v for k, v in scalars.items()})
        self.writer.write("eval", step=self.step, tokens=self.tokens, **row)

    # ----- checkpoints and resampling -----------------------------------------------------------------------------------
    def _maybe_checkpoint_and_resample(self) -> None:
        """Checkpoint (rank 0 writes), resampling (decided and applied on rank 0, then broadcast), cross-rank check,
        trainer state."""
        due_ckpt = self.tokens >= self.next_checkpoint
        if due_ckpt:
            self.next_checkpoint += self.cfg.checkpoint_every_tokens
            self.save_sae(self.out_dir / "checkpoints" / f"{self.tokens:012d}")
        resampled = self.coll.agree(maybe_resample(self) if self.coll.is_writer else False)
        if resampled:
            self.coll.broadcast_(self.shared_tensors())
        if due_ckpt and self.coll.world > 1:
            self.check_ranks_identical()
        if due_ckpt or resampled:
            self.save_state()

    def save_sae(self, folder: Path) -> None:
        """Rank 0 writes the SAE checkpoint and a frequency snapshot; every rank resets its (identical) window."""
        if self.coll.is_writer:
            freq = self.checkpoint_frequencies()
            self.sae.log10_density = stored_log10_density(freq.freq)  # SAELens's sparsity convention
            ckpt.save_native(self.sae, folder, self.cfg.to_dict())
            write_frequency_snapshot(self.out_dir, self.tokens, log10_freq(freq.freq).numpy())
            self.writer.write("checkpoint", step=self.step, tokens=self.tokens, path=str(folder), freq_source=freq.source)
        self.last_checkpoint = str(folder)
        self.tracker.reset_window()

    def shared_tensors(self) -> list[Tensor]:
        """What every rank holds alike: parameters, dead-latent clocks, Adam moments."""
        tensors = [p.data for p in self.sae.parameters()] + [self.tracker.tokens_since_fired]
        for p in self.sae.parameters():
            tensors += [v for k, v in sorted(self.opt.state.get(p, {}).items()) if torch.is_tensor(v) and k != "step"]
        return tensors

    def check_ranks_identical(self) -> float:
        """Largest difference of any parameter between ranks (a collective; a 'ddp_check' event at every checkpoint).
        The ranks apply the same averaged gradients, so anything but 0.0 is a bug and is warned about."""
        worst = self.coll.max_divergence([p.detach() for p in self.sae.parameters()])
        self.writer.write("ddp_check", step=self.step, tokens=self.tokens, max_rank_divergence=worst)
        if worst > 0:
            log.warning("step %d: the ranks' parameters differ by up to %g", self.step, worst)
        return worst

    def finish(self, stopped: Stopped) -> None:
        folder = self.out_dir / "checkpoints" / f"{self.tokens:012d}"
        if self.last_checkpoint != str(folder):
            self.save_sae(folder)
        self.save_state()
        if self.coll.is_writer:
            if stopped != "interrupted":
                ckpt.save_native(self.sae, self.out_dir / "final", self.cfg.to_dict())
            self.writer.write("end", step=self.step, tokens=self.tokens, stopped=stopped, **self.coll.log_fields())
        self.coll.barrier()  # no rank reports success before rank 0 has written the final SAE

    # ----- state (trainers.trainer_state) ---------------------------------------------------------------------------
    def save_state(self) -> None:
        save_trainer_state(self)


__all__ = ["Trainer", "train_step", "make_optimizer", "StepOutput", "TrainResult", "NonFiniteLossError", "DTYPES", "Stopped"]
