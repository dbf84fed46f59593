"""The figures issue #12 added to the inventory (REPLICATION.md §10): F4/F5, F9/F10, F11, F12, F14, F16, F19, F22.
Each is a function(Context) -> Figure, or (Figure, {extension: text}) for a figure with a companion file (F11's HTML);
`paper_figures.FIGURES` registers them and writes every file."""

from __future__ import annotations

from typing import Any

import numpy as np

import figures as F
from figures.case_study import visible
from figures.style import tokens_text
from paper.compute import baselines, nonrare, phase, rare_cluster, resolution, table
from paper.compute_inventory import by_commonness, rare_tokens, snapshot_pair, w_out_spectrum
from paper.context import Context
from paper.plotting import single, thresholds
from paper.sources import RUN1_FINAL, checkpoint_tokens


def _freq_source(ctx: Context, run: str | None = None) -> str:
    """The source label with the token count the frequencies were measured on (a rare cut cannot resolve below ~1/N)."""
    return f"{ctx.label(run)}; frequencies on {ctx.info['n_tokens']:,} tokens"


def checkpoint_vs_final(ctx: Context, checkpoint: int) -> Any:
    """F4 (checkpoint 21 vs 25) and F5 (22 vs 25). Elsewhere than on the Hub the snapshots stand in for the checkpoints
    by fraction of training (`snapshot_pair`); the title says which snapshots and why."""
    p = phase(ctx)
    a, b = snapshot_pair(ctx, checkpoint)
    ta, tb = (tokens_text(p["tokens"][j]) for j in (a, b))
    if ctx.info["kind"] == "hub":
        label_a, label_b, title = f"ckpt {checkpoint} ({ta})", f"ckpt {RUN1_FINAL} ({tb})", None
    else:
        share = checkpoint_tokens(checkpoint) / checkpoint_tokens(RUN1_FINAL)
        label_a, label_b = f"{ta} tokens", f"{tb} tokens (final)"
        title = (f"Frequencies at {ta} and {tb} tokens\n(stand-ins for checkpoints {checkpoint} and {RUN1_FINAL}: "
                 f"the snapshot nearest {share:.1%} of training, and the last)")  # fmt: skip
    return F.plot_freq_vs_freq(p["log10_freq"][a], p["log10_freq"][b], label_a=label_a, label_b=label_b, title=title,
                               marginal="box", resolution=resolution(int(p.get("n_tokens", 0))),
                               source=ctx.label(ctx.runs()[0]) + ", frequency snapshots")  # fmt: skip


def rare_scatter(ctx: Context, key: str) -> Any:
    """F9 (key 'proj') and F10 (key 'cos'): each rare latent's projection onto / cosine with its run's mean rare encoder
    direction against its log frequency, both runs."""
    t, rare = thresholds(), {run: rare_cluster(ctx, run) for run in ctx.runs()}
    what = {"proj": "Projection onto the mean rare direction", "cos": "Cosine with the mean rare direction"}[key]
    return single(
        F.plot_rare_scatter,
        {r: d[key] for r, d in rare.items()},
        {r: d["log10_freq"] for r, d in rare.items()},
        quantity=f"{what} (encoder)",
        threshold=t.aligned_cos if key == "cos" else None,
        title=f"Rare latents ({t.rare_label}): {what.lower()} vs frequency",
        source=_freq_source(ctx),
    )


def f11_rare_tokens(ctx: Context) -> tuple[Any, dict[str, str]]:
    """F11: mlp_acts @ mu per token on the top contexts, as a figure and as a self-contained HTML page."""
    run = ctx.runs()[0]
    d = rare_tokens(ctx, run)
    bounds = np.cumsum(np.r_[0, d["lengths"]])
    contexts = [[str(x) for x in d["tokens"][a:b]] for a, b in zip(bounds[:-1], bounds[1:])]
    values = [d["values"][a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    headings = [
        f"Sequence {s}: max {m:.3g} on '{visible(c[p])}'" for s, m, c, p in zip(d["seqs"], d["max"], contexts, d["positions"])
    ]
    what = (f"mlp_acts @ μ, μ = mean encoder direction of the {int(d['n_rare']):,} rare latents ({thresholds().rare_label}); "
            f"top {len(contexts)} of {int(d['n_tokens']):,} tokens by max projection")  # fmt: skip
    style = {"headings": headings, "highlight": [int(p) for p in d["positions"]], "what": what, "source": _freq_source(ctx, run)}
    return F.plot_rare_tokens(contexts, values, **style), {"html": F.rare_tokens_html(contexts, values, **style)}


def f12_encoder_fve(ctx: Context) -> Any:
    run = ctx.runs()[0]
    t = table(ctx, run)
    fve = {k: t[f"enc_fve_top_{k}"] for k in (1, 5, 10, 100)}
    return F.plot_fve_page(fve, which="encoder", what=f"all {len(t['frequency']):,} latents", source=ctx.label(run))


def f14_enc_vs_dec_top1(ctx: Context) -> Any:
    run = ctx.runs()[0]
    t = table(ctx, run)
    keep = nonrare(t)
    label = f"{_freq_source(ctx, run)}; non-rare latents ({thresholds().rare_label.replace('<', '>=')})"
    return single(F.plot_enc_vs_dec_top1, t["enc_fve_top_1"][keep], t["fve_top_1"][keep], source=label)


def f16_gaussian_baseline(ctx: Context) -> Any:
    run = ctx.runs()[0]
    base = baselines(ctx, run)
    fve = {k: base[f"enc_fve_top_{k}"] for k in (1, 5, 10, 100)}
    return F.plot_baseline_sparsity(fve, base["enc_sparsity_class"], thresholds=thresholds().sparse_lines, which="encoder",
                                    source=f"{ctx.label(run)}; randn matrix shaped like its encoder (seed 0)")  # fmt: skip


def f19_singular_values(ctx: Context) -> Any:
    s = w_out_spectrum(ctx)
    return single(F.plot_singular_values, s["singular_values"], rank=int(s["rank"]), centred=bool(s["centred"]),
                  title=f"Singular values of W_out[0] ({int(s['d_mlp'])} x {int(s['d_model'])})", source=ctx.label())  # fmt: skip


def f22_by_commonness(ctx: Context) -> Any:
    run = ctx.runs()[0]
    c = by_commonness(ctx, run)
    metrics = {
        "Neuron Kurtosis (encoder, excess)": c["neuron_kurtosis"],
        "Neuron Frac Max (encoder max / L1 norm)": c["neuron_frac_max"],
        "Vocab Kurtosis (decoder logit effect)": c["vocab_kurtosis"],
    }
    return F.plot_commonness_page(metrics, c["is_common"], c["top_weights"], c["top_latents"],
                                  common_label=thresholds().common_label, source=_freq_source(ctx, run))  # fmt: skip


FIGURES = {
    "f04_freq_21_vs_25": lambda ctx: checkpoint_vs_final(ctx, 21),
    "f05_freq_22_vs_25": lambda ctx: checkpoint_vs_final(ctx, 22),
    "f09_rare_proj_vs_freq": lambda ctx: rare_scatter(ctx, "proj"),
    "f10_rare_cos_vs_freq": lambda ctx: rare_scatter(ctx, "cos"),
    "f11_rare_direction_tokens": f11_rare_tokens,
    "f12_encoder_fve": f12_encoder_fve,
    "f14_enc_vs_dec_top1": f14_enc_vs_dec_top1,
    "f16_gaussian_baseline": f16_gaussian_baseline,
    "f19_w_out_singular_values": f19_singular_values,
    "f22_by_commonness": f22_by_commonness,
}
"""Name -> figure function, merged into `paper_figures.FIGURES` in inventory order."""
