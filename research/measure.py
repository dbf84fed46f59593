"""Measurements of one sweep row (issue #13), on held-out demo tokens, with the toolkit's own analyses.

Per seed: latent frequencies, L0 and explained variance in one streamed pass over `n_tokens` held-out tokens (the first
rows of `demo_tokens("eval")`, default 2^20 = 1,048,576, so the smallest resolvable frequency is 1/2^20 = 9.5e-7: on that
count 'below 1e-6' means 'fired at most once'); CE loss recovered (zero and mean ablation) on the first `ce_seqs` sequences;
the ULF cluster (freq < 1e-4, REPLICATION.md §9.3) and its encoder / decoder median cosine with the mean; the ULF fraction
of every training snapshot (measured by the trainer on 262,144 held-out tokens) with its changepoint. Across two seeds: the
cosine of their mean ULF encoder directions (§9.4).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sae_analysis.activations import hook_activations, token_batches
from sae_analysis.io import load_model, load_sae
from sae_analysis.io.demo import demo_tokens
from sae_analysis.metrics import RARE_FREQ, firing_counts, frequency_fractions
from sae_analysis.phase import changepoint, ulf_fraction_over_time
from sae_analysis.reconstruction import reconstruction_losses
from sae_analysis.similarity import direction_cosine
from sae_analysis.ulf import ulf_cluster, ulf_mask

HOOK = "blocks.0.mlp.hook_post"
SEQ_LEN = 128


@torch.no_grad()
def stream_stats(model: Any, sae: Any, tokens: torch.Tensor, batch_size: int = 32) -> dict[str, Any]:
    """Firing counts, L0 and pooled explained variance (1 - SSE / total sum of squares about the mean) in one pass."""
    counts = torch.zeros(sae.cfg.d_sae, dtype=torch.int64)
    sse = sum_x = sum_x2 = 0.0
    n = 0
    for b in token_batches(tokens, batch_size):
        x = hook_activations(model, b, HOOK).reshape(-1, sae.cfg.d_in).float()
        out = sae(x)
        counts += firing_counts(out.acts)
        sse += float((x - out.x_hat).double().pow(2).sum())
        sum_x = sum_x + x.double().sum(0)
        sum_x2 += float(x.double().pow(2).sum())
        n += x.shape[0]
    total = sum_x2 - float((sum_x**2).sum()) / n
    freq = counts.double() / n
    return {"counts": counts, "freq": freq, "n_tokens": n, "l0": float(freq.sum()), "explained_variance": 1 - sse / total,
            "mean_x": (sum_x / n).float()}


def centred_mean_input(sae: Any, mean_x: torch.Tensor) -> torch.Tensor:
    """E[x] - b_dec: the input the encoder sees on average (pre-activation = W_enc^T (x - b_dec) + b_enc)."""
    return mean_x.float() - sae.b_dec.detach().float()


def member_cosines(sae: Any, mask: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Each masked latent's encoder cosine with `direction` (float64, one per member)."""
    members, d = sae.W_enc.T.detach().double()[mask], direction.detach().double()
    return members @ d / (members.norm(dim=-1) * d.norm())


def mean_input_alignment(sae: Any, mask: torch.Tensor, mean_x: torch.Tensor) -> dict[str, Any]:
    """How far the ULF encoders point against the centred mean input m = E[x] - b_dec (Anthropic's February-2024 account
    of ultra-low-frequency latents, REPLICATION.md §9.3: w . m < 0 acts as a negative bias): the cosine of the members'
    mean encoder direction with m, and the median of each member's cosine with m."""
    m = centred_mean_input(sae, mean_x).double()
    if not mask.any():
        return {"ulf_mean_enc_cos_centred_mean_input": math.nan, "ulf_enc_cos_centred_mean_input_median": math.nan}
    each = member_cosines(sae, mask, m)
    return {"ulf_mean_enc_cos_centred_mean_input": direction_cosine(sae.W_enc.T.detach().double()[mask].mean(0), m),
            "ulf_enc_cos_centred_mean_input_median": float(each.median())}


def residual_cosine(u: torch.Tensor, v: torch.Tensor, remove: list[torch.Tensor]) -> float:
    """cos(u, v) after projecting both onto the orthogonal complement of span(`remove`): what two directions share
    beyond the removed ones."""
    q, _ = torch.linalg.qr(torch.stack([r.double() for r in remove], 1))
    ru, rv = u.double() - q @ (q.T @ u.double()), v.double() - q @ (q.T @ v.double())
    return direction_cosine(ru, rv)


def ulf_summary(sae: Any, freq: torch.Tensor) -> tuple[dict[str, Any], torch.Tensor]:
    """ULF fraction (freq < 1e-4), the median cosine of members' encoders / decoders with their mean; the mean encoder."""
    mask = ulf_mask(freq, RARE_FREQ)
    enc = ulf_cluster(sae.W_enc.T.detach().float(), mask)
    dec = ulf_cluster(sae.W_dec.detach().float(), mask)
    med = lambda c: float(c.cos_with_mean.median()) if len(c.cos_with_mean) else math.nan  # noqa: E731
    return {"frac_ulf": float(mask.double().mean()), "n_ulf": int(mask.sum()), "ulf_enc_cos_median": med(enc),
            "ulf_dec_cos_median": med(dec), "ulf_enc_frac_cos_above_0.95": enc.frac_above}, enc.mean_direction


def snapshot_summary(run: Path) -> dict[str, Any] | None:
    """ULF share at every training snapshot and its best single changepoint (sae_analysis.phase)."""
    from sae_analysis.io.runs import read_frequency_snapshots

    if not (run / "freq").is_dir():
        return None
    tokens, logf = read_frequency_snapshots(run)
    freq = torch.from_numpy(10.0 ** logf.astype(np.float64))  # snapshots are log10(freq + 10^-6.5)
    share = ulf_fraction_over_time(freq - 10**-6.5, RARE_FREQ)
    out = {"tokens": tokens.tolist(), "frac_ulf": [round(float(s), 5) for s in share]}
    if len(tokens) >= 3:
        cp = changepoint(torch.from_numpy(tokens), share)
        out["changepoint"] = cp._asdict()
    return out


def training_summary(run: Path) -> dict[str, Any]:
    """What the run's log says: steps, tokens, resampling events, where the data source ended (epochs)."""
    from sae_analysis.io.runs import read_metrics
    from trainers.checkpoint import read_state_meta

    out: dict[str, Any] = {}
    if (run / "metrics.jsonl").exists():
        m = read_metrics(run)
        res = m[m.event == "resample"] if "event" in m else m.iloc[:0]
        out["n_resamples"] = int(len(res))
        out["resampled_latents_total"] = int(res.n.sum()) if len(res) else 0
        end = m[m.event == "end"]
        out["stopped"] = str(end.stopped.iloc[-1]) if len(end) else None
        tr = m[m.event == "train"]
        out["median_tokens_per_s"] = float(tr.tokens_per_s.median()) if len(tr) else None
    meta = read_state_meta(run)
    if meta:
        out["train_tokens"] = int(meta["tokens"])
        out["source_state"] = meta.get("source")
    if (run / "row.json").exists():
        out["train_rows"] = json.loads((run / "row.json").read_text())["train_rows"]
    return out


def measure_sae(model: Any, folder: Path, n_tokens: int, ce_seqs: int) -> tuple[dict[str, Any], torch.Tensor]:
    sae = load_sae(folder, dtype=torch.float32)
    tokens = demo_tokens("eval", -(-n_tokens // SEQ_LEN), seq_len=SEQ_LEN)
    s = stream_stats(model, sae, tokens)
    rec = reconstruction_losses(model, sae, tokens[:ce_seqs], hook_name=HOOK)
    ulf, mu = ulf_summary(sae, s["freq"])
    ulf.update(mean_input_alignment(sae, ulf_mask(s["freq"], RARE_FREQ), s["mean_x"]))
    row = {"n_tokens": s["n_tokens"], "min_resolvable_freq": 1 / s["n_tokens"], "l0": s["l0"],
           "explained_variance": s["explained_variance"], **frequency_fractions(s["freq"]), **ulf,
           "ce_tokens": rec.n_tokens, "recons_score_zero": rec.score_zero, "recons_score_mean": rec.score_mean,
           "ce_clean": rec.clean, "ce_recon": rec.recon, "ce_zero": rec.zero}
    return row, (mu, centred_mean_input(sae, s["mean_x"]))


def summarize_row(row: str, runs: list[Path], *, n_tokens: int = 2**20, ce_seqs: int = 1024) -> dict[str, Any]:
    """The JSON summary of one row: per-seed measurements (runs hold `final/` or are SAE folders) and cross-seed cosine."""
    torch.set_num_threads(1)
    model = load_model("demo")
    seeds, mus, means = {}, [], []
    for run in runs:
        folder = run / "final" if (run / "final").is_dir() else run
        m, (mu, centred) = measure_sae(model, folder, n_tokens, ce_seqs)
        seeds[run.name] = {**m, "training": training_summary(run), "snapshots": snapshot_summary(run)}
        mus.append(mu)
        means.append(centred)
    out: dict[str, Any] = {"row": row, "seeds": seeds}
    if len(mus) == 2:
        out["rare_dir_cos_seeds"] = direction_cosine(mus[0], mus[1])
        out["rare_dir_cos_seeds_beyond_mean_input"] = residual_cosine(mus[0], mus[1], means)
    return out


COLUMNS = [("L0", "l0", "{:.1f}"), ("CE rec (zero)", "recons_score_zero", "{:.4f}"), ("EV", "explained_variance", "{:.3f}"),
           ("dead", "frac_dead", "{:.1%}"), ("< 1e-6", "frac_below_1e-6", "{:.1%}"), ("ULF < 1e-4", "frac_ulf", "{:.1%}"),
           ("ULF enc cos", "ulf_enc_cos_median", "{:.2f}"), ("ULF dec cos", "ulf_dec_cos_median", "{:.2f}")]


def markdown_table(paths: list[Path]) -> str:
    """One line per (row, seed): train tokens, the COLUMNS, held-out token count; the seeds' rare-direction cosine."""
    head = ["row", "seed", "train tokens", *[c[0] for c in COLUMNS], "freq tokens", "seeds' rare cos"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for path in paths:
        s = json.loads(path.read_text())
        for name, m in s["seeds"].items():
            tokens = m.get("training", {}).get("train_tokens")
            cells = [s["row"], name, f"{tokens / 1e6:.2f}M" if tokens else "?"]
            cells += [fmt.format(m[key]) if m.get(key) is not None else "-" for _, key, fmt in COLUMNS]
            cos = s.get("rare_dir_cos_seeds")
            cells += [f"{m['n_tokens']:,}", f"{cos:.2f}" if cos is not None else "-"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
