"""The computations behind the figures and the report: each calls `sae_analysis` on a `Context`'s source and caches the
result (.npz arrays or .json numbers) under a stable name, so a redraw or `--only NAME` loads nothing."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from paper.context import Context
from paper.sources import Skip
from sae_analysis import case_study as cs
from sae_analysis.baselines import baseline_kurtosis, baseline_neuron_sparsity
from sae_analysis.frequency import FrequencyResult, latent_frequencies_many
from sae_analysis.metrics import LOG_FREQ_EPS, RARE_FREQ, log10_freq
from sae_analysis.phase import (
    changepoint,
    log_freq_histograms,
    snapshots_from_log10,
    ulf_fraction_over_time,
    ulf_median_over_time,
)
from sae_analysis.reconstruction import ReconstructionLosses, sae_losses
from sae_analysis.sparsity import class_names
from sae_analysis.table import compare_summary, feature_table, summarize
from sae_analysis.ulf import ulf_cluster, ulf_mask
from sae_analysis.uncertainty import summary_intervals

CONTEXT = (40, 12)
"""Tokens before and after the activating token in case-study contexts (the figure trims them to ~45 / 25 characters)."""
TRAIN_METRICS = ("loss", "l0", "explained_variance", "score_zero", "frac_dead", "frac_below_1e-5")
"""Logged metrics drawn by the training-curves figure, when the log has them."""


def nonrare(t: dict[str, np.ndarray]) -> np.ndarray:
    """Mask of a `table`'s latents with freq >= RARE_FREQ (Neel's analysis.py: non-rare)."""
    return t["frequency"] >= RARE_FREQ


def _freq_arrays(r: FrequencyResult) -> dict[str, Any]:
    return {"freq": r.freq.numpy(), "counts": r.counts.numpy(), "n_tokens": r.n_tokens, "l0": r.l0, "source": r.source}


def model_frequencies(ctx: Context) -> dict[str, FrequencyResult]:
    """Frequencies, on the source's tokens, of every SAE whose frequencies are not cached yet: the runs' final SAEs and,
    when F2 needs them (source with checkpoints, phase not cached), each checkpoint ("ckpt_TOKENS"). One model forward
    per batch for all of them (`latent_frequencies_many`); computed once per run of the script."""
    if "frequencies" not in ctx.memo:
        src = ctx.source
        stored = {} if ctx.args.tokens else src.stored_freq
        saes = {f"freq_{run}": src.saes[run] for run in ctx.runs() if run not in stored and not ctx.cache.has(f"freq_{run}")}
        if src.checkpoints is not None and not ctx.cache.has("phase"):
            saes |= {f"ckpt_{t}": sae for t, sae in src.checkpoints().items()}
        batch = ctx.setting("batch_size")
        found = latent_frequencies_many(src.model, saes, src.tokens, batch_size=batch, progress=True) if saes else {}
        ctx.memo["frequencies"] = found
    return ctx.memo["frequencies"]


def frequencies(ctx: Context, run: str) -> FrequencyResult:
    """`FrequencyResult` of a run's final SAE: stored with it on a recorded token count (the demo: the whole held-out
    split), unless --tokens asks for a count on the source's tokens (§8 get_freqs; one model pass for every SAE that
    needs one, `model_frequencies`)."""

    def compute() -> dict[str, Any]:
        r = None if ctx.args.tokens else ctx.source.stored_freq.get(run)
        if r is not None:  # counted at build time on the whole held-out split (no per-block counts stored)
            return _freq_arrays(r)
        r = model_frequencies(ctx)[f"freq_{run}"]
        return _freq_arrays(r) | {"block_counts": r.block_counts.numpy(), "block_tokens": r.block_tokens.numpy()}

    d = ctx.cache.arrays(f"freq_{run}", compute)
    blocks = [torch.from_numpy(d[k]) if k in d else None for k in ("block_counts", "block_tokens")]  # older caches lack them
    return FrequencyResult(
        torch.from_numpy(d["freq"]), torch.from_numpy(d["counts"]), int(d["n_tokens"]), float(d["l0"]), str(d["source"]), *blocks
    )


def _snapshots(ctx: Context) -> tuple[np.ndarray, np.ndarray, int]:
    """(training tokens, log10(freq + 10^-6.5), tokens each frequency was measured on, 0 if unknown) of the first run's
    snapshots: stored ones, or checkpoints measured now on the source's tokens."""
    src = ctx.source
    if src.checkpoints is not None:
        measured = {int(k.removeprefix("ckpt_")): r for k, r in model_frequencies(ctx).items() if k.startswith("ckpt_")}
        tokens = sorted(measured)
        logs = np.stack([log10_freq(measured[t].freq).numpy() for t in tokens])
        return np.array(tokens), logs, measured[tokens[0]].n_tokens
    if src.snapshots is None:
        raise Skip("this source has no frequency snapshots")
    return (*src.snapshots(), src.snapshot_tokens)


def resolution(n_tokens: int) -> tuple[float, int] | None:
    """(log10(1/N), N): the smallest frequency a sample of N tokens resolves (REPLICATION.md §8); None when N is unknown."""
    return (float(-np.log10(n_tokens)), int(n_tokens)) if n_tokens > 0 else None


def eval_tokens(ctx: Context) -> Any:
    """The first `loss_seqs` sequences (Neel's all_tokens[:256]) for the loss-based numbers and the case studies."""
    return ctx.source.tokens[: ctx.setting("loss_seqs")]


def table(ctx: Context, run: str) -> dict[str, np.ndarray]:
    """`feature_table` columns of a run (sparsity, kurtosis, geometry, frequency, null space; §9)."""

    def compute() -> dict[str, Any]:
        df = feature_table(ctx.source.saes[run], freq=frequencies(ctx, run), W_out=ctx.source.model.W_out[0].detach())
        return {c: (df[c].astype(str).to_numpy() if c.endswith("sparsity_class") else df[c].to_numpy()) for c in df.columns}

    return ctx.cache.arrays(f"table_{run}", compute)


def baselines(ctx: Context, run: str) -> dict[str, np.ndarray]:
    """Gaussian baselines of the same shape as the decoder and the encoder (§9.1-9.2): fve_top_k for every k, fve_next_9
    and the sparsity class of each Gaussian row (F13/F15 grey points, F16), and the decoder-shaped kurtosis (F17)."""

    def compute() -> dict[str, Any]:
        out = {}
        sae = ctx.source.saes[run]
        for prefix, w in (("", sae.W_dec.detach()), ("enc_", sae.W_enc.detach().T)):
            sp = baseline_neuron_sparsity(w)
            out |= {f"{prefix}fve_top_{k}": sp.fve(k).numpy() for k in sp.ks}
            out |= {f"{prefix}fve_next_9": sp.fve_next_9.numpy(), f"{prefix}sparsity_class": class_names(sp.classes)}
        return out | {"kurtosis": baseline_kurtosis(sae.W_dec.detach()).numpy()}

    return ctx.cache.arrays(f"baselines_{run}", compute)


def _loss_pass(ctx: Context, run: str) -> tuple[ReconstructionLosses, Any]:
    """(reconstruction losses, loss-vs-floor table) of a run on the evaluation sequences, from one pass (`sae_losses`: the
    clean forward up to the MLP once per batch); computed once per run of the script for its two cached users."""
    if f"losses_{run}" not in ctx.memo:
        src = ctx.source
        ctx.memo[f"losses_{run}"] = sae_losses(
            src.model, src.saes[run], eval_tokens(ctx), frequencies(ctx, run).freq, batch_size=ctx.setting("batch_size")
        )
    return ctx.memo[f"losses_{run}"]


def losses(ctx: Context, run: str) -> ReconstructionLosses:
    """Clean / spliced / ablated losses of a run on the evaluation sequences, with each sequence's summed losses (§8)."""

    def compute() -> dict[str, Any]:
        r = _loss_pass(ctx, run)[0]
        return {k: getattr(r, k) for k in ReconstructionLosses._fields if k != "per_seq"} | {
            f"per_seq_{k}": v.numpy() for k, v in (r.per_seq or {}).items()}  # fmt: skip

    d = ctx.cache.arrays(f"losses_{run}", compute)
    per_seq = {k.removeprefix("per_seq_"): torch.from_numpy(v) for k, v in d.items() if k.startswith("per_seq_")}
    scalars = [d[k].item() for k in ReconstructionLosses._fields if k != "per_seq"]
    return ReconstructionLosses(*scalars, per_seq=per_seq or None)


def ulf_tokens(ctx: Context, run: str) -> cs.ULFTokenStats:
    """Per evaluation token: projection on the mean ULF encoder direction and the share of ULF latents active (§9.3)."""

    def compute() -> dict[str, Any]:
        src, sae = ctx.source, ctx.source.saes[run]
        mask = ulf_mask(frequencies(ctx, run).freq)
        mu = ulf_cluster(sae.W_enc.detach().T, mask).mean_direction
        s = cs.ulf_token_stats(src.model, sae, eval_tokens(ctx), mu, mask, batch_size=ctx.setting("batch_size"))
        return {"rare_proj": s.rare_proj.numpy(), "frac_rare_active": s.frac_rare_active.numpy()}

    d = ctx.cache.arrays(f"ulf_tokens_{run}", compute)
    return cs.ULFTokenStats(torch.from_numpy(d["rare_proj"]), torch.from_numpy(d["frac_rare_active"]))


def summary(ctx: Context, run: str) -> dict[str, Any]:
    """`summarize` numbers of a run (keys: sae_analysis.table.KEYS), with the zero-ablation reconstruction score and the
    ULF co-firing share on the evaluation sequences."""

    def compute() -> dict[str, Any]:
        src = ctx.source
        return summarize(src.saes[run], freq=frequencies(ctx, run), W_out=src.model.W_out[0].detach(), recon=losses(ctx, run),
                         ulf_tokens=ulf_tokens(ctx, run))  # fmt: skip

    return ctx.cache.json(f"summary_{run}", compute)


def intervals(ctx: Context, run: str) -> dict[str, Any]:
    """95% bootstrap intervals beside the summary's fractions and score (`sae_analysis.uncertainty.summary_intervals`)."""

    def compute() -> dict[str, Any]:
        f, r = frequencies(ctx, run), losses(ctx, run)
        per_seq = None if r.per_seq is None else {k: v.numpy() for k, v in r.per_seq.items()}
        seq_len = int(eval_tokens(ctx).shape[1]) - 1
        seq_tokens = None if per_seq is None else np.full(len(per_seq["clean"]), seq_len)
        blocks = [None if b is None else b.numpy() for b in (f.block_counts, f.block_tokens)]
        return summary_intervals(table(ctx, run)["sparsity_class"], f.counts.numpy(), f.n_tokens, block_counts=blocks[0],
                                 block_tokens=blocks[1], per_seq=per_seq, seq_tokens=seq_tokens)  # fmt: skip

    return ctx.cache.json(f"intervals_{run}", compute)


def comparison(ctx: Context) -> dict[str, Any]:
    """`compare_summary` of the two runs (keys: sae_analysis.table.COMPARE_KEYS; §9.4)."""
    a, b = ctx.runs()[:2]
    return ctx.cache.json(
        "compare",
        lambda: compare_summary(ctx.source.saes[a], ctx.source.saes[b], freq_a=frequencies(ctx, a), freq_b=frequencies(ctx, b)),
    )


def rare_cluster(ctx: Context, run: str) -> dict[str, np.ndarray]:
    """Encoder cosine with / projection onto the mean rare direction, and log frequency, of each rare latent (§9.3)."""

    def compute() -> dict[str, Any]:
        freq = frequencies(ctx, run).freq
        mask = ulf_mask(freq)
        c = ulf_cluster(ctx.source.saes[run].W_enc.detach().T, mask)
        return {"cos": c.cos_with_mean.numpy(), "proj": c.proj_onto_mean.numpy(), "log10_freq": log10_freq(freq[mask]).numpy()}

    return ctx.cache.arrays(f"rare_{run}", compute)


def floor_curve(ctx: Context, run: str) -> dict[str, np.ndarray]:
    """Loss recovered keeping latents above each frequency floor (§9.7), on the same checkpoint's frequencies."""

    def compute() -> dict[str, Any]:
        df = _loss_pass(ctx, run)[1]
        return {c: df[c].to_numpy() for c in df.columns}

    return ctx.cache.arrays(f"floor_{run}", compute)


def phase(ctx: Context) -> dict[str, np.ndarray]:
    """Frequency snapshots of the first run over training: histograms, ULF share and median, changepoint (§6.2, §9.8)."""

    def compute() -> dict[str, Any]:
        tokens, logs, n_measured = _snapshots(ctx)  # as log10(freq + 10^-6.5) (sae_analysis.io.runs; the hub path too)
        snap = snapshots_from_log10(tokens, logs, source=ctx.label(), eps=LOG_FREQ_EPS)
        hist, ulf = log_freq_histograms(snap.freq), ulf_fraction_over_time(snap.freq)
        cp = changepoint(snap.tokens, ulf)
        return {"tokens": snap.tokens.numpy(), "log10_freq": log10_freq(snap.freq).numpy(), "edges": hist.edges.numpy(),
                "percent": hist.percent.numpy(), "ulf_fraction": ulf.numpy(),
                "ulf_median_log10": log10_freq(ulf_median_over_time(snap.freq)).numpy(), "changepoint_tokens": cp.tokens,
                "changepoint_index": cp.index, "ulf_before": cp.before, "ulf_after": cp.after,
                "n_tokens": n_measured}  # fmt: skip

    return ctx.cache.arrays("phase", compute)


def case_latents(ctx: Context, run: str) -> list[int]:
    """Neel's latents 12 and 7 on the Hub; elsewhere the most 1-sparse non-rare latent and the median-frequency one."""
    if ctx.info["kind"] == "hub":
        return [12, 7]
    t = table(ctx, run)
    common = np.flatnonzero(nonrare(t))
    if len(common) == 0:
        raise Skip("no latent fires often enough (freq >= 1e-4) for a case study")
    by_freq = common[np.argsort(t["frequency"][common])]
    first = int(common[np.argmax(t["fve_top_1"][common])])
    second = next((int(i) for i in by_freq[len(by_freq) // 2 :] if i != first), int(by_freq[0]))
    return [first, second]


def case_study(ctx: Context, run: str, latent: int) -> dict[str, np.ndarray]:
    """Top contexts (flattened; `lengths` splits them), direct logit effect and weights of one latent (§9.9)."""

    def compute() -> dict[str, Any]:
        src, sae = ctx.source, ctx.source.saes[run]
        tokens = eval_tokens(ctx)
        acts = cs.latent_activations(src.model, sae, tokens, latent, batch_size=ctx.setting("batch_size"))
        top = cs.top_activating_contexts(acts, k=12)
        (before, after), starts = CONTEXT, zip(top.seq.tolist(), top.pos.tolist())
        windows = [cs.context_window(tokens, s, p, before=before, after=after).tolist() for s, p in starts]
        W_out, W_U = src.model.W_out[0].detach(), src.model.W_U.detach()
        effect = cs.direct_logit_effect(sae.W_dec.detach()[latent : latent + 1], W_out, W_U)
        tb = cs.top_bottom_tokens(effect[0], k_top=12, k_bottom=8)
        stats = cs.firing_stats(acts, tokens)
        return {"tokens": np.array([t for w in windows for t in src.decode(w)]), "lengths": [len(w) for w in windows],
                "positions": np.minimum(top.pos.numpy(), before), "acts": top.acts.numpy(),
                "top_tokens": np.array(src.decode(tb.top_tokens.tolist())), "top_values": tb.top_values.numpy(),
                "bottom_tokens": np.array(src.decode(tb.bottom_tokens.tolist())), "bottom_values": tb.bottom_values.numpy(),
                "enc": sae.W_enc.detach()[:, latent].numpy(), "dec": sae.W_dec.detach()[latent].numpy(),
                "frac_of_fires_are_top_token": stats.frac_of_fires_are_top_token,
                "frac_of_top_token_are_fires": stats.frac_of_top_token_are_fires}  # fmt: skip

    return ctx.cache.arrays(f"case_{run}_{latent}", compute)


def training_curves(ctx: Context) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per run, per logged metric: (tokens, values) from the run's metrics log (sae_analysis.io.runs.read_metrics)."""

    def compute() -> dict[str, Any]:
        out = {}
        for run, df in ctx.source.train_logs.items():
            for metric in TRAIN_METRICS:
                rows = df[df[metric].notna()] if metric in df else df.iloc[:0]
                if len(rows):
                    out[f"{run}|{metric}|tokens"], out[f"{run}|{metric}|values"] = rows["tokens"], rows[metric].astype(float)
        if not out:
            raise Skip("this source has no training logs")
        return out

    flat = ctx.cache.arrays("training", compute)
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for key in (k for k in flat if k.endswith("|tokens")):
        run, metric, _ = key.split("|")
        curves.setdefault(run, {})[metric] = (flat[key], flat[f"{run}|{metric}|values"])
    return curves
