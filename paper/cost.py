"""Say the cost before paying it: time one probe batch through the model and the SAEs, then log the measured rates, the
estimated time of the whole run on this device, and the --tokens that would fit in about ten minutes.

The model: frequencies cost N_freq x (forward to the hook + one encoding per SAE); the losses cost, per run, N_loss x
(forward to the hook + one rest-of-model pass per intervention: clean, zero, mean, recon, one per floor); the case
studies cost two forwards to the hook over the loss sequences. What does not grow with the tokens is added as fixed
seconds: the loading already done before the probe (downloads, checkpoints, model) and the weight-only analyses and
drawing, WEIGHT_WORK_ENCODINGS x d_sae encodings per run (a [d_sae, d_in] x [d_in, d_sae] product costs d_sae
encodings: the cross-run and rare-direction comparisons).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from sae_analysis.activations import hook_activations
from sae_analysis.frequency import resolve_hook_name
from sae_analysis.reconstruction import NEEL_FLOORS, batch_losses

log = logging.getLogger(__name__)
BUDGET_S = 600.0
"""The run length the suggested --tokens aims at (about ten minutes)."""
PROBE_SEQS = 4
"""Sequences in the probe batch."""
WEIGHT_WORK_ENCODINGS = 5.0
"""Weight-only analyses and drawing, in units of d_sae encodings per run: calibrated on the full-size hub replica
(BENCHMARKS.md, 2 cores: ~100 s besides loading and the two token passes, against 2 runs x 16,384 x 0.58 ms)."""


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@torch.no_grad()
def probe_rates(model: Any, sae: Any, tokens: torch.Tensor) -> dict[str, float]:
    """Seconds per token of a forward to the SAE's hook, of one SAE encoding, and of one rest-of-model loss pass, from
    one small batch (run twice; the second, warm run is timed)."""
    batch = tokens[:PROBE_SEQS].to(model.cfg.device)
    hook, n = resolve_hook_name(sae, None), batch.numel()
    acts = hook_activations(model, batch, hook)
    flat = acts.reshape(-1, acts.shape[-1])
    hooks = {"clean": None, "zero": torch.zeros_like}
    for _ in range(2):
        t_hook = _timed(lambda: hook_activations(model, batch, hook))
        t_enc = _timed(lambda: sae.encode(flat))
        t_both = _timed(lambda: batch_losses(model, batch, hook, hooks))
    return {"hook_s": t_hook / n, "encode_s": t_enc / n, "tail_s": max(t_both - t_hook, 0.0) / (len(hooks) * n)}


def estimate(
    rates: dict[str, float], *, n_freq: int, n_loss: int, n_saes: int, n_runs: int, seq_len: int = 128, d_sae: int = 0,
    loaded_s: float = 0.0,
) -> dict[str, float]:
    """Estimated seconds of the whole run (module docstring): `loaded_s` already spent loading, the weight-only work
    (`d_sae`), the frequency pass and the loss pass; and what fits BUDGET_S: the loss sequences given, or as many as fit
    half of what the fixed work leaves when those alone take more; then the frequency tokens in the rest."""
    fixed = loaded_s + WEIGHT_WORK_ENCODINGS * n_runs * d_sae * rates["encode_s"]
    budget = max(BUDGET_S - fixed, 0.0)
    per_freq_token = rates["hook_s"] + n_saes * rates["encode_s"]
    interventions = 4 + len(NEEL_FLOORS)
    per_loss_token = n_runs * (rates["hook_s"] + interventions * rates["tail_s"]) + 2 * rates["hook_s"]
    losses = n_loss * per_loss_token
    loss_seqs, loss_s = -(-n_loss // seq_len), losses
    if losses > budget / 2 and per_loss_token > 0:
        loss_seqs = max(1, int(budget / 2 / per_loss_token) // seq_len)
        loss_s = loss_seqs * seq_len * per_loss_token
    fits = int(max(budget - loss_s, 0.0) / per_freq_token) if per_freq_token > 0 else 0
    return {"seconds": fixed + n_freq * per_freq_token + losses, "fixed_s": fixed, "frequency_s": n_freq * per_freq_token,
            "loss_s": losses,
            "tokens_per_s": 1.0 / per_freq_token if per_freq_token > 0 else float("inf"),
            "tokens_fitting_budget": fits - fits % 128, "loss_seqs_fitting_budget": loss_seqs}  # fmt: skip


def say_cost(ctx: Any, loaded_s: float = 0.0) -> dict[str, Any] | None:
    """Probe, log and return the estimate, before the first heavy step (`loaded_s`: seconds the run has spent so far);
    None when every frequency is already cached."""
    if all(ctx.cache.has(f"freq_{run}") for run in ctx.runs()) and ctx.cache.has("phase"):
        return None  # decided without loading the source
    src = ctx.source
    stored = {} if ctx.args.tokens else src.stored_freq  # frequencies counted at build time: no pass over the tokens
    counted = [run for run in ctx.runs() if run not in stored and not ctx.cache.has(f"freq_{run}")]
    if not counted and (src.checkpoints is None or ctx.cache.has("phase")):
        return None
    run, probe_start = ctx.runs()[0], time.perf_counter()
    try:
        rates = probe_rates(src.model, src.saes[run], src.tokens)
    except (RuntimeError, ValueError) as err:  # an estimate must never stop the run
        log.warning("cost: no estimate (%s)", err)
        return None
    checkpoints = list(src.checkpoints().values()) if src.checkpoints and not ctx.cache.has("phase") else []
    n_saes = len({id(s) for s in [*src.saes.values(), *checkpoints]})
    seq_len = int(src.tokens.shape[1])
    n_freq = int(src.tokens.numel()) if counted or checkpoints else 0
    est = estimate(rates, n_freq=n_freq, n_loss=ctx.setting("loss_seqs") * seq_len, n_saes=n_saes,
                   n_runs=len(ctx.runs()), seq_len=seq_len, d_sae=src.saes[run].cfg.d_sae,
                   loaded_s=loaded_s + time.perf_counter() - probe_start)  # fmt: skip
    log.info(
        "cost: %.0f tokens/s through the model and %d SAEs (probe of %d tokens on %s); this run (%d frequency tokens, %d "
        "loss sequences) should take about %.0f s in all (%.0f s of it loading, weight-only work and drawing); --tokens %d "
        "--loss-seqs %d would fit in about %.0f min",
        est["tokens_per_s"], n_saes, PROBE_SEQS * seq_len, ctx.args.device, n_freq, ctx.setting("loss_seqs"),
        est["seconds"], est["fixed_s"], est["tokens_fitting_budget"], est["loss_seqs_fitting_budget"], BUDGET_S / 60,
    )  # fmt: skip
    return {"device": str(ctx.args.device), "n_saes": n_saes, **{k: round(v, 6) for k, v in rates.items()}, **est}
