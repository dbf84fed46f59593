"""Draw the figures of Neel Nanda's gelu-1l SAE replication and put every headline number beside the post's (issue #6).

    python paper_figures.py                              # auto: the Hub when reachable or cached, else the embedded demo
    python paper_figures.py --source demo --only f01_frequency_histogram
    python paper_figures.py --smoke --out /tmp/smoke     # every figure on synthetic checkpoints (CI)

Thin orchestration: load (`sae_analysis.io`) -> compute (`sae_analysis`, cached as .npz / .json under OUT/cache) -> plot
(`figures`). OUT receives one PNG and one SVG per figure, `results.json` (keys documented in RESULT_KEYS),
`report.md` (each number beside the post's value, REPLICATION.md §11) and `manifest.json` (git commit, library versions,
source revisions, token counts, seeds, timings). A second run, or `--only NAME`, reuses the cache and redraws in seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

import figures as F
from figures.style import use_style
from sae_analysis import SAE, SAEConfig
from sae_analysis.baselines import baseline_kurtosis, baseline_neuron_sparsity
from sae_analysis.case_study import (
    context_window,
    direct_logit_effect,
    firing_stats,
    latent_activations,
    top_activating_contexts,
    top_bottom_tokens,
)
from sae_analysis.frequency import FrequencyResult, latent_frequencies
from sae_analysis.io import SAELoadError, demo_dir, load_model, load_sae
from sae_analysis.io.demo import BOS_TOKEN, demo_tokens
from sae_analysis.io.readers import atomic_write
from sae_analysis.metrics import COMMON_FREQ, LOG_FREQ_EPS, RARE_FREQ, log10_freq
from sae_analysis.phase import (
    changepoint,
    log_freq_histograms,
    snapshots_from_log10,
    ulf_fraction_over_time,
    ulf_median_over_time,
)
from sae_analysis.reconstruction import loss_vs_frequency_floor, reconstruction_losses
from sae_analysis.table import compare_summary, feature_table, summarize
from sae_analysis.ulf import ulf_cluster, ulf_mask
from trainers.log import read_frequency_snapshots, read_metrics

log = logging.getLogger("paper_figures")
HUB_REPO = "NeelNanda/sparse_autoencoder"
HUB_CHECKPOINTS = (9, 12, 15, 18, 21, 22, 25)
"""Run-1 checkpoints of F2 (REPLICATION.md §4.3: checkpoint c holds (c - 8) * 122.88M tokens; 25 is the final 2B)."""
RUNS = {"demo": ("seed1", "seed2"), "hub": ("run1", "run2"), "smoke": ("seed1", "seed2")}
DATA_EXHAUSTED_TOKENS = 1_695_481_856
"""REPLICATION.md §6.2: step 413,952 x 4096 tokens, where run 1 most likely ran out of fresh data (hypothesis)."""
DEFAULTS = {
    "demo": {"tokens": 512 * 128, "loss_seqs": 64, "batch_size": 64},
    "hub": {"tokens": 1_638_400, "loss_seqs": 256, "batch_size": 32},
    "smoke": {"tokens": 32 * 16, "loss_seqs": 32, "batch_size": 32},
}
"""Per source: tokens for frequencies (hub: Neel's get_freqs(25)); sequences for the loss-based numbers (hub: Neel's
all_tokens[:256], §9.7; demo: 64, because F6 runs one spliced forward per floor and must fit the 3-minute budget), which
also serve the case studies; sequences per forward. `--tokens`, `--loss-seqs`, `--batch-size` override them."""

CONTEXT = (40, 12)
"""Tokens before and after the activating token in case-study contexts (the figure trims them to ~45 / 25 characters)."""


class Skip(Exception):
    """A figure that this source cannot draw (the reason goes into the report)."""


# ----- sources --------------------------------------------------------------------------------------------------------
@dataclass
class Source:
    """Everything loaded from one source; `snapshots` and `train_logs` are per-run (tokens, log10 freq) / DataFrames."""

    kind: str
    label: str
    model: Any
    saes: dict[str, Any]
    tokens: Any
    decode: Callable[[list[int]], list[str]]
    snapshots: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None
    train_logs: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


def _n_tokens(args: argparse.Namespace, kind: str) -> int:
    return args.tokens or DEFAULTS[kind]["tokens"]


def _byte_decode(ids: list[int]) -> list[str]:
    return ["<BOS>" if i == BOS_TOKEN else bytes([i]).decode("latin-1") for i in ids]


def _demo_snapshots(run_dir: Path) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    return lambda: read_frequency_snapshots(run_dir)


def load_demo(args: argparse.Namespace) -> Source:
    root, runs = demo_dir(), RUNS["demo"]
    manifest = json.loads((root / "manifest.json").read_text()) if (root / "manifest.json").exists() else {}
    saes = {r: load_sae("demo", r, device=args.device) for r in runs}
    tokens = demo_tokens("eval")[: max(2, _n_tokens(args, "demo") // 128)]
    logs = {r: read_metrics(root / r) for r in runs if (root / r / "metrics.jsonl").exists()}
    prov = {"demo_manifest": manifest, **{r: _meta(s) for r, s in saes.items()}}
    model = load_model("demo", device=args.device)
    return Source("demo", "embedded demo", model, saes, tokens, _byte_decode, _demo_snapshots(root / runs[0]), logs, prov)


def load_hub(args: argparse.Namespace) -> Source:
    if not args.tokens_file:
        raise Skip("no token source for gelu-1l: pass --tokens-file (an int array [n_seq, seq_len] of c4-code tokens)")
    saes = {r: load_sae(HUB_REPO, r, revision=args.revision, device=args.device) for r in RUNS["hub"]}
    model = load_model("gelu-1l", device=args.device)
    tokens = _read_tokens(Path(args.tokens_file))
    tokens = tokens[: max(1, _n_tokens(args, "hub") // tokens.shape[1])]

    def snapshots() -> tuple[np.ndarray, np.ndarray]:
        counts = [(c - 8) * 122_880_000 if c < 25 else 2_000_000_000 for c in HUB_CHECKPOINTS]
        ckpts = (load_sae(HUB_REPO, str(c), revision=args.revision, device=args.device) for c in HUB_CHECKPOINTS)
        batch = args.batch_size or DEFAULTS["hub"]["batch_size"]
        freqs = [latent_frequencies(model, sae, tokens, batch_size=batch, progress=True).freq for sae in ckpts]
        return np.array(counts), np.stack([log10_freq(f).numpy() for f in freqs])

    commit = saes["run1"].meta.get("commit") or args.revision or "main"
    prov = {r: _meta(s) for r, s in saes.items()}
    return Source("hub", f"{HUB_REPO}@{str(commit)[:7]}", model, saes, tokens, model.to_str_tokens, snapshots, {}, prov)


def _read_tokens(path: Path) -> Any:
    data = np.load(path, allow_pickle=False) if path.suffix == ".npy" else torch.load(path, weights_only=True)
    return torch.as_tensor(np.asarray(data), dtype=torch.int64)


def load_smoke(args: argparse.Namespace) -> Source:
    """Synthetic checkpoints: a random tiny GELU model and two random SAEs with planted 1-sparse rows and a dead, aligned
    rare cluster; synthetic frequency snapshots with a planted step and a synthetic training log. Exercises every figure."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    shape = {"n_layers": 1, "d_model": 32, "d_mlp": 64, "n_heads": 2, "d_head": 16, "n_ctx": 16, "d_vocab": 50}
    cfg = HookedTransformerConfig(**shape, act_fn="gelu", normalization_type="LN", seed=0)
    model, saes, rng = HookedTransformer(cfg).eval(), {}, np.random.default_rng(0)
    for i, run in enumerate(RUNS["smoke"]):
        torch.manual_seed(i + 1)
        sae = SAE(SAEConfig(d_in=64, d_sae=256, hook_name="blocks.0.mlp.hook_post", model_name="smoke"))
        with torch.no_grad():
            sae.W_dec[:16] = torch.eye(64)[:16] + 0.01 * torch.randn(16, 64)  # planted 1-sparse decoders
            sae.W_enc[:, 192:] = torch.randn(64, 1) + 0.2 * torch.randn(64, 64)  # planted rare cluster, one direction
            sae.b_enc[192:] = -50.0
            sae.b_enc[:192] = 0.1 * torch.randn(192)
        saes[run] = sae
    tokens = torch.randint(0, 50, (max(2, _n_tokens(args, "smoke") // 16), 16), generator=torch.Generator().manual_seed(0))
    snap_tokens = np.arange(1, 13) * 1_000_000
    snaps = rng.normal(-2.5, 0.5, (12, 256)) - np.where(np.arange(12)[:, None] >= 7, 3.0, 0.0) * (np.arange(256) >= 160)
    steps = np.arange(1, 51) * 240_000
    log_df = pd.DataFrame({"event": "train", "tokens": steps, "loss": 3 * np.exp(-steps / 4e6) + 0.5, "l0": 20 + 0 * steps})
    logs, snapshots = {r: log_df for r in RUNS["smoke"]}, lambda: (snap_tokens, np.clip(snaps, -6.5, 0))
    return Source("smoke", "synthetic smoke checkpoints", model, saes, tokens, _smoke_decode, snapshots, logs, {"smoke": True})


def _smoke_decode(ids: list[int]) -> list[str]:
    return [f"t{i} " for i in ids]


def _meta(sae: Any) -> dict[str, Any]:
    """Provenance for the manifest: where the checkpoint came from, its size and its training seed when recorded."""
    keep = ("format", "path", "repo", "revision", "commit", "filename")
    raw_cfg = sae.meta.get("cfg") or {}
    seed = raw_cfg.get("seed", (raw_cfg.get("metadata") or {}).get("sae_analysis", {}).get("seed"))
    return {k: str(v) for k, v in sae.meta.items() if k in keep and v is not None} | {"d_sae": sae.cfg.d_sae, "seed": seed}


def resolve_source(args: argparse.Namespace) -> tuple[Source, str]:
    """The source to use and a sentence saying why (auto: the Hub when it loads, else the demo, with the Hub's error)."""
    if args.smoke or args.source == "smoke":
        return load_smoke(args), "--smoke: synthetic checkpoints (no real model or SAE)"
    if args.source == "demo":
        return load_demo(args), "requested: --source demo"
    if args.source == "hub":
        return load_hub(args), "requested: --source hub"

    try:
        return load_hub(args), "auto: the Hub (or its local cache) was reachable"
    except (Skip, SAELoadError, OSError) as err:
        reason = f"auto: Hub not used ({str(err).splitlines()[0][:200]}); fell back to the embedded demo"
        log.warning(reason)
        return load_demo(args), reason


# ----- cache ----------------------------------------------------------------------------------------------------------
class Cache:
    """Computed arrays (.npz, no pickles) and numbers (.json) in one folder, written atomically; reused when present."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def arrays(self, name: str, compute: Callable[[], dict[str, Any]]) -> dict[str, np.ndarray]:
        path = self.folder / f"{name}.npz"
        if path.exists():
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        data = {k: _plain(v) for k, v in compute().items()}
        atomic_write(path, lambda tmp: _savez(tmp, data))
        return data

    def json(self, name: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        path = self.folder / f"{name}.json"
        if path.exists():
            return json.loads(path.read_text())
        data = json.loads(json.dumps(compute(), default=_jsonable))
        write_json(path, data)
        return data


def _plain(value: Any) -> np.ndarray:
    """A numpy array that loads without pickle: object arrays (strings from pandas) become unicode arrays."""
    arr = np.asarray(value)
    return arr.astype(str) if arr.dtype == object else arr


def _jsonable(v: Any) -> Any:
    return v.tolist() if hasattr(v, "tolist") else str(v)


class Context:
    """The run's settings, its cache and the source, loaded only when a computation misses the cache."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.kind = "smoke" if args.smoke else args.source
        self.cache = Cache(Path(args.cache_dir or Path(args.out) / "cache") / f"{self.kind}-{args.tokens or 'default'}")
        self._source: Source | None = None
        self.note = ""

    @property
    def source(self) -> Source:
        if self._source is None:
            self._source, self.note = resolve_source(self.args)
            log.info("source: %s (%s)", self._source.label, self.note)
        return self._source

    @property
    def info(self) -> dict[str, Any]:
        """Label, kind, runs and provenance of the source (cached, so a redraw does not load anything)."""

        def describe() -> dict[str, Any]:
            src = self.source
            return {"label": src.label, "kind": src.kind, "note": self.note, "runs": list(src.saes), "provenance": src.provenance,
                    "n_tokens": int(src.tokens.numel()), "n_seqs": int(src.tokens.shape[0])}  # fmt: skip

        return self.cache.json("source", describe)

    def setting(self, name: str) -> int:
        """A CLI value, or this source kind's default (DEFAULTS)."""
        return getattr(self.args, name) or DEFAULTS[self.info["kind"]][name]

    def runs(self) -> list[str]:
        return self.info["runs"]

    def label(self, run: str | None = None) -> str:
        return self.info["label"] + (f" ({run})" if run else "")


# ----- computations (sae_analysis), each cached -----------------------------------------------------------------------
def frequencies(ctx: Context, run: str) -> Any:
    """`FrequencyResult` of a run's final SAE on the source's tokens (§8 get_freqs)."""

    def compute() -> dict[str, Any]:
        src = ctx.source
        r = latent_frequencies(src.model, src.saes[run], src.tokens, batch_size=ctx.setting("batch_size"), progress=True)
        return {"freq": r.freq.numpy(), "counts": r.counts.numpy(), "n_tokens": r.n_tokens, "l0": r.l0, "source": r.source}

    d = ctx.cache.arrays(f"freq_{run}", compute)
    return FrequencyResult(
        torch.from_numpy(d["freq"]), torch.from_numpy(d["counts"]), int(d["n_tokens"]), float(d["l0"]), str(d["source"])
    )


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
    """Gaussian baselines of the same shape as the decoder and the encoder (§9.1-9.2)."""

    def compute() -> dict[str, Any]:
        out = {}
        sae = ctx.source.saes[run]
        for prefix, w in (("", sae.W_dec.detach()), ("enc_", sae.W_enc.detach().T)):
            sp = baseline_neuron_sparsity(w)
            out |= {f"{prefix}fve_top_1": sp.fve(1).numpy(), f"{prefix}fve_next_9": sp.fve_next_9.numpy()}
        return out | {"kurtosis": baseline_kurtosis(sae.W_dec.detach()).numpy()}

    return ctx.cache.arrays(f"baseline_{run}", compute)


def summary(ctx: Context, run: str) -> dict[str, Any]:
    """`summarize` numbers of a run (keys: sae_analysis.table.KEYS), with the zero-ablation reconstruction score."""

    def compute() -> dict[str, Any]:
        src = ctx.source
        recon = reconstruction_losses(src.model, src.saes[run], eval_tokens(ctx), batch_size=ctx.setting("batch_size"))
        return summarize(src.saes[run], freq=frequencies(ctx, run), W_out=src.model.W_out[0].detach(), recon=recon)

    return ctx.cache.json(f"summary_{run}", compute)


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
        src = ctx.source
        df = loss_vs_frequency_floor(
            src.model, src.saes[run], eval_tokens(ctx), frequencies(ctx, run).freq, batch_size=ctx.setting("batch_size")
        )
        return {c: df[c].to_numpy() for c in df.columns}

    return ctx.cache.arrays(f"floor_{run}", compute)


def phase(ctx: Context) -> dict[str, np.ndarray]:
    """Frequency snapshots of the first run over training: histograms, ULF share and median, changepoint (§6.2, §9.8)."""

    def compute() -> dict[str, Any]:
        if ctx.source.snapshots is None:
            raise Skip("this source has no frequency snapshots")
        tokens, logs = ctx.source.snapshots()  # stored as log10(freq + 10^-6.5) (trainers.log; the hub path too)
        snap = snapshots_from_log10(tokens, logs, source=ctx.label(), eps=LOG_FREQ_EPS)
        hist, ulf = log_freq_histograms(snap.freq), ulf_fraction_over_time(snap.freq)
        cp = changepoint(snap.tokens, ulf)
        return {"tokens": snap.tokens.numpy(), "log10_freq": log10_freq(snap.freq).numpy(), "edges": hist.edges.numpy(),
                "percent": hist.percent.numpy(), "ulf_fraction": ulf.numpy(),
                "ulf_median_log10": log10_freq(ulf_median_over_time(snap.freq)).numpy(), "changepoint_tokens": cp.tokens,
                "changepoint_index": cp.index, "ulf_before": cp.before, "ulf_after": cp.after}  # fmt: skip

    return ctx.cache.arrays("phase", compute)


def case_latents(ctx: Context, run: str) -> list[int]:
    """Neel's latents 12 and 7 on the Hub; elsewhere the most 1-sparse non-rare latent and the median-frequency one."""
    if ctx.info["kind"] == "hub":
        return [12, 7]
    t = table(ctx, run)
    common = np.flatnonzero(_nonrare(t))
    if len(common) == 0:
        raise Skip("no latent fires often enough (freq >= 1e-4) for a case study")
    by_freq = common[np.argsort(t["frequency"][common])]
    first = int(common[np.argmax(t["fve_top_1"][common])])
    second = next((int(i) for i in by_freq[len(by_freq) // 2 :] if i != first), int(by_freq[0]))
    return [first, second]


def case_study(ctx: Context, run: str, latent: int) -> dict[str, np.ndarray]:
    """Top contexts, direct logit effect and weights of one latent (§9.9)."""

    def compute() -> dict[str, Any]:
        src, sae = ctx.source, ctx.source.saes[run]
        tokens = eval_tokens(ctx)
        acts = latent_activations(src.model, sae, tokens, latent, batch_size=ctx.setting("batch_size"))
        top = top_activating_contexts(acts, k=12)
        before, after = CONTEXT
        windows = [context_window(tokens, int(s), int(p), before=before, after=after).tolist() for s, p in zip(top.seq, top.pos)]
        effect = direct_logit_effect(sae.W_dec.detach()[latent : latent + 1], src.model.W_out[0].detach(), src.model.W_U.detach())
        tb = top_bottom_tokens(effect[0], k_top=12, k_bottom=8)
        stats = firing_stats(acts, tokens)
        return {"tokens": np.array([t for w in windows for t in src.decode(w)]), "lengths": [len(w) for w in windows],
                "positions": np.minimum(top.pos.numpy(), before), "acts": top.acts.numpy(),
                "top_tokens": np.array(src.decode(tb.top_tokens.tolist())), "top_values": tb.top_values.numpy(),
                "bottom_tokens": np.array(src.decode(tb.bottom_tokens.tolist())), "bottom_values": tb.bottom_values.numpy(),
                "enc": sae.W_enc.detach()[:, latent].numpy(), "dec": sae.W_dec.detach()[latent].numpy(),
                "frac_of_fires_are_top_token": stats.frac_of_fires_are_top_token,
                "frac_of_top_token_are_fires": stats.frac_of_top_token_are_fires}  # fmt: skip

    return ctx.cache.arrays(f"case_{run}_{latent}", compute)


def training_curves(ctx: Context) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per run, per logged metric: (tokens, values) from the run's metrics log (trainers.log.read_metrics)."""

    def compute() -> dict[str, Any]:
        out = {}
        for run, df in ctx.source.train_logs.items():
            for metric in ("loss", "l0", "explained_variance", "score_zero", "frac_dead", "frac_below_1e-5"):
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


# ----- figures: load -> compute -> plot ---------------------------------------------------------------------------------
def _nonrare(t: dict[str, np.ndarray]) -> np.ndarray:
    return t["frequency"] >= RARE_FREQ  # Neel's analysis.py: non-rare


def f01_frequency_histogram(ctx: Context) -> Any:
    run = ctx.runs()[0]
    freq = table(ctx, run)["log10_freq"]
    return F.plot_frequency_histogram(freq, source=ctx.label(run), ax=F.style.new_figure().gca()).figure


def f02_phase_transition(ctx: Context) -> Any:
    p = phase(ctx)
    markers = {"data exhausted (hypothesis, §6.2)": DATA_EXHAUSTED_TOKENS} if ctx.info["kind"] == "hub" else None
    return F.plot_phase_transition(
        p["edges"],
        p["percent"],
        p["tokens"],
        p["ulf_fraction"],
        median_log10_freq=p["ulf_median_log10"],
        changepoint=float(p["changepoint_tokens"]),
        markers=markers,
        source=ctx.label(ctx.runs()[0]),
    )


def f03_freq_vs_freq(ctx: Context) -> Any:
    """The two snapshots that straddle the changepoint (the post's checkpoints 21 and 22)."""
    p = phase(ctx)
    i = int(p["changepoint_index"])
    a, b = (f"checkpoint at {F.style.tokens_text(p['tokens'][j])} tokens" for j in (i - 1, i))
    return F.plot_freq_vs_freq(p["log10_freq"][i - 1], p["log10_freq"][i], label_a=a, label_b=b, source=ctx.label(ctx.runs()[0]))


def f06_loss_vs_floor(ctx: Context) -> Any:
    curves = {f"{run} final": (c["floor"], c["score_zero"]) for run in ctx.runs() for c in [floor_curve(ctx, run)]}
    return F.plot_loss_vs_floor(curves, source=ctx.label(), ax=F.style.new_figure().gca()).figure


def f07_rare_directions(ctx: Context) -> Any:
    """F7 and F8 for both runs, with the cross-seed cosine of the mean rare directions."""
    rare = {run: rare_cluster(ctx, run) for run in ctx.runs()}
    cos = comparison(ctx)["ulf_direction_cos"]
    return F.plot_rare_directions(
        {r: d["cos"] for r, d in rare.items()}, {r: d["proj"] for r, d in rare.items()}, direction_cos=cos, source=ctx.label()
    )


def _top_vs_next9(ctx: Context, prefix: str, which: str) -> Any:
    run = ctx.runs()[0]
    t, base = table(ctx, run), baselines(ctx, run)
    keep = _nonrare(t)
    n = int(keep.sum())
    return F.plot_top_vs_next9(
        t[f"{prefix}fve_top_1"][keep],
        t[f"{prefix}fve_next_9"][keep],
        classes=t[f"{prefix}sparsity_class"][keep],
        baseline=(base[f"{prefix}fve_top_1"][:n], base[f"{prefix}fve_next_9"][:n]),
        which=which,
        source=ctx.label(run) + ", non-rare latents",
    )


def f13_encoder_top_vs_next9(ctx: Context) -> Any:
    return _top_vs_next9(ctx, "enc_", "encoder")


def f15_decoder_top_vs_next9(ctx: Context) -> Any:
    return _top_vs_next9(ctx, "", "decoder")


def f17_kurtosis(ctx: Context) -> Any:
    run = ctx.runs()[0]
    t = table(ctx, run)
    return F.plot_kurtosis(
        t["kurtosis"][_nonrare(t)],
        baselines(ctx, run)["kurtosis"],
        source=ctx.label(run) + ", non-rare latents",
        ax=F.style.new_figure().gca(),
    ).figure


def f18_enc_dec_cosine(ctx: Context) -> Any:
    run = ctx.runs()[0]
    t = table(ctx, run)
    return F.plot_enc_dec_cosine(t["enc_dec_cos"][_nonrare(t)], source=ctx.label(run), ax=F.style.new_figure().gca()).figure


def f20_null_space(ctx: Context) -> Any:
    run = ctx.runs()[0]
    t, ref = table(ctx, run), summary(ctx, run)["null_frac_random"]
    keep = _nonrare(t)
    return F.plot_null_space(
        t["enc_null_frac"][keep], t["dec_null_frac"][keep], reference=ref, source=ctx.label(run), ax=F.style.new_figure().gca()
    ).figure


def f21_bias_norm_vs_freq(ctx: Context) -> Any:
    run = ctx.runs()[0]
    t = table(ctx, run)
    panels = {
        "Encoder bias": t["b_enc"],
        "Encoder norm": t["enc_norm"],
        "Decoder norm": t["dec_norm"],
        "Weighted encoder bias (b_enc x decoder norm)": t["b_enc"] * t["dec_norm"],
        "Encoder norm x decoder norm": t["enc_norm"] * t["dec_norm"],
    }
    return F.plot_bias_norm_panels(panels, np.log10(t["frequency"] + 1e-5), t["frequency"] < COMMON_FREQ, source=ctx.label(run))


def _case_page(ctx: Context, which: int) -> Any:
    run = ctx.runs()[0]
    latent = case_latents(ctx, run)[which]
    d = case_study(ctx, run, latent)
    bounds = np.cumsum(np.r_[0, d["lengths"]])
    study = F.CaseStudy(
        latent=latent,
        contexts=[list(d["tokens"][a:b]) for a, b in zip(bounds[:-1], bounds[1:])],
        positions=d["positions"].tolist(),
        activations=d["acts"],
        top_tokens=list(d["top_tokens"]),
        top_values=d["top_values"],
        bottom_tokens=list(d["bottom_tokens"]),
        bottom_values=d["bottom_values"],
        enc_weights=d["enc"],
        dec_weights=d["dec"],
        stats={
            "freq": float(table(ctx, run)["frequency"][latent]),
            "frac_of_fires_are_top_token": float(d["frac_of_fires_are_top_token"]),
        },
    )
    return F.plot_case_study(study, source=ctx.label(run))


def w_training_curves(ctx: Context) -> Any:
    return F.plot_training_curves(training_curves(ctx), source=ctx.label())


FIGURES: dict[str, Callable[[Context], Any]] = {
    "f01_frequency_histogram": f01_frequency_histogram,
    "f02_phase_transition": f02_phase_transition,
    "f03_freq_vs_freq": f03_freq_vs_freq,
    "f06_loss_vs_floor": f06_loss_vs_floor,
    "f07_rare_directions": f07_rare_directions,
    "f13_encoder_top_vs_next9": f13_encoder_top_vs_next9,
    "f15_decoder_top_vs_next9": f15_decoder_top_vs_next9,
    "f17_kurtosis": f17_kurtosis,
    "f18_enc_dec_cosine": f18_enc_dec_cosine,
    "f20_null_space": f20_null_space,
    "f21_bias_norm_vs_freq": f21_bias_norm_vs_freq,
    "f23a_case_study": lambda ctx: _case_page(ctx, 0),
    "f23b_case_study": lambda ctx: _case_page(ctx, 1),
    "w_training_curves": w_training_curves,
}
"""Figure name -> function(Context) -> matplotlib Figure. Names are stable: `--only` and results.json use them."""


# ----- results, report, manifest ---------------------------------------------------------------------------------------
RESULT_KEYS: dict[str, str] = {
    "source": "kind ('demo' | 'hub' | 'smoke'), label, note (why this source was used), n_tokens, n_seqs, provenance per run",
    "runs": "per run name: the `sae_analysis.table.summarize` numbers, keys documented in sae_analysis.table.KEYS",
    "compare": "first run vs second: `compare_summary` numbers, keys documented in sae_analysis.table.COMPARE_KEYS",
    "phase": "first run's snapshots: changepoint_tokens, changepoint_index, ulf_before, ulf_after, n_snapshots, first_tokens, "
    "last_tokens (null when the source has no snapshots)",
    "figures": "per figure name: status ('drawn' | 'skipped' | 'failed'), reason, seconds, files",
}
"""Top-level keys of results.json (stable; tests check them)."""
PHASE_KEYS = ("changepoint_tokens", "changepoint_index", "ulf_before", "ulf_after", "n_snapshots", "first_tokens", "last_tokens")

REPORT_ROWS: tuple[tuple[str, str, str, str, str], ...] = (
    ("Dense decoders (all latents)", "runs.frac_dense", "%", "≈92% (92.1% quoted)", "[Neel] approximate; split unconfirmed"),
    ("1-sparse decoders", "runs.frac_1_sparse", "%", "≈4% (3.9% quoted)", "[Neel] approximate"),
    ("10-sparse decoders", "runs.frac_10_sparse", "%", "≈4% (4.0% quoted)", "[Neel] approximate"),
    ("1-sparse decoders (non-rare latents)", "runs.frac_1_sparse_nonrare", "%", "≈4%", "[Neel]; denominator unconfirmed"),
    ("Dense decoders (non-rare latents)", "runs.frac_dense_nonrare", "%", "≈92%", "[Neel]; denominator unconfirmed"),
    ("ULF fraction (freq < 1e-4)", "runs.ulf_fraction", "%", "more than half (≈60% quoted)", "[Neel]; ≈60% unconfirmed"),
    ("ULF fraction, two-Gaussian split", "runs.ulf_auto_fraction", "%", "more than half", "[extension]: threshold from the data"),
    ("ULF encoders with cos > 0.95 to their mean", "runs.ulf_enc_frac_cos_above_095", "%", "≈95%", "[Neel] approximate"),
    ("Cross-seed cosine of mean rare directions", "compare.ulf_direction_cos", "x", "same direction (≈1)", "[Neel]"),
    ("Dead latents", "runs.frac_dead", "%", "none", "[Neel]; depends on sample size"),
    ("Median enc-dec cosine (non-rare)", "runs.enc_dec_cos_median_nonrare", "x", "≈0.5", "[Neel] approximate"),
    ("Reconstruction score (zero ablation)", "runs.recons_score", "%", "≈92%", "[unconfirmed]"),
    ("L0 (active latents per token)", "runs.l0", "x", "no confirmed value", "—"),
    ("ULF changepoint in training", "phase.changepoint_tokens", "tok", "≈1.6B (data exhausted ≈1.6955B)", "[unconfirmed]; §6.2"),
    ("Median decoder neuron kurtosis", "runs.median_kurtosis", "x", "heavy tails (Gaussian ≈ 0)", "[Neel] qualitative"),
    ("Decoder share in W_out null space", "runs.dec_null_frac_median", "x", "random direction 0.75", "[derived]"),
)
"""(quantity, results.json path, unit, the post's value, certainty tag as in REPLICATION.md §11)."""


def _optional(compute: Callable[[], Any]) -> Any:
    try:
        return compute()
    except Skip:
        return None


def collect_results(ctx: Context, statuses: dict[str, Any]) -> dict[str, Any]:
    """Every headline number, computed (or read from the cache) through the same functions the figures use."""
    p = _optional(lambda: phase(ctx))
    ph = None if p is None else {k: p[k].item() for k in PHASE_KEYS[:4]} | {
        "n_snapshots": len(p["tokens"]), "first_tokens": int(p["tokens"][0]), "last_tokens": int(p["tokens"][-1])}  # fmt: skip
    return {"source": ctx.info, "runs": {run: summary(ctx, run) for run in ctx.runs()},
            "compare": comparison(ctx) if len(ctx.runs()) > 1 else None, "phase": ph, "figures": statuses}  # fmt: skip


def _format(value: Any, unit: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return {"%": f"{100 * value:.1f}%", "tok": f"{F.style.tokens_text(value)} tokens"}.get(unit, f"{value:.3g}")


def _lookup(results: dict[str, Any], path: str, unit: str) -> str:
    section, key = path.split(".")
    if section == "runs":
        return " · ".join(f"{run}: {_format(s.get(key), unit)}" for run, s in results["runs"].items())
    return _format((results.get(section) or {}).get(key), unit)


def write_report(results: dict[str, Any], path: Path) -> None:
    src = results["source"]
    lines = [
        f"# Replication report: {src['label']}",
        "",
        f"**Source:** {src['label']} — {src['note']}. Frequencies: "
        + "; ".join(f"{r}: {s.get('frequency_source', 'n/a')}" for r, s in results["runs"].items())
        + ".",
        "",
    ]
    if src["kind"] != "hub":
        lines += [
            "The post's values describe gelu-1l (2048 neurons, 16384 latents, 2B tokens); this source is a different, much "
            "smaller setup, so agreement is not expected: compare shapes and orders of magnitude.",
            "",
        ]
    lines += ["| quantity | ours | post | status |", "|---|---|---|---|"]
    lines += [f"| {q} | {_lookup(results, p, u)} | {post} | {tag} |" for q, p, u, post, tag in REPORT_ROWS]
    lines += ["", "## Figures", ""] + [
        f"- `{n}`: {s['status']}" + (f" ({s['reason']})" if s.get("reason") else "") for n, s in results["figures"].items()
    ]
    path.write_text("\n".join(lines) + "\n")


def manifest(ctx: Context, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    packages = ("sae-analysis", "torch", "transformer_lens", "numpy", "matplotlib", "seaborn", "huggingface_hub", "scipy")
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"command": [Path(sys.argv[0]).name, *(sys.argv[1:] if args.argv is None else args.argv)],
            "git_commit": _git("rev-parse", "HEAD"), "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "python": sys.version.split()[0], "versions": versions, "source": ctx.info, "tokens_arg": args.tokens,
            "seconds": round(seconds, 1), "created_unix": int(time.time())}  # fmt: skip


def _git(*argv: str) -> str:
    """Output of a git command in this checkout, or '' where git or the repository is missing."""
    try:
        done = subprocess.run(["git", *argv], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write that keeps key order (results.json's order is documented) and writes NaN as NaN."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n"))


def _savez(path: Path, data: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object, so numpy does not append '.npz' to the temporary name
        np.savez(f, **data)


# ----- CLI ---------------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", choices=("auto", "demo", "hub"), default="auto", help="where checkpoints come from (default auto)")
    p.add_argument("--out", default="out", help="output folder (default out/)")
    p.add_argument("--only", nargs="+", metavar="NAME", choices=list(FIGURES), help="draw only these figures")
    p.add_argument("--tokens", type=int, default=None, help="tokens for frequencies (default: demo 65536, hub 1638400)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    p.add_argument("--smoke", action="store_true", help="every figure on synthetic checkpoints (fast; CI)")
    p.add_argument("--cache-dir", default=None, help="cache folder (default OUT/cache)")
    p.add_argument("--tokens-file", default=None, help="hub: .npy/.pt int array [n_seq, seq_len] of gelu-1l tokens")
    p.add_argument("--revision", default=None, help="hub: revision of NeelNanda/sparse_autoencoder to pin")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per model forward (default: demo 64, hub 32)")
    p.add_argument("--loss-seqs", type=int, default=None, help="sequences for losses and case studies (demo 64, hub 256)")
    p.add_argument("--formats", nargs="+", default=["png", "svg"], help="file formats per figure (default png svg)")
    p.add_argument("--dpi", type=int, default=150, help="PNG resolution (default 150)")
    args = p.parse_args(argv)
    args.argv = argv
    return args


def draw(ctx: Context, name: str, out: Path, formats: list[str], dpi: int) -> dict[str, Any]:
    """Draw and save one figure; a Skip or an error is recorded, not raised, so one missing input costs one figure."""
    start = time.perf_counter()
    try:
        fig = FIGURES[name](ctx)
    except Skip as why:
        log.warning("%s skipped: %s", name, why)
        return {"status": "skipped", "reason": str(why)}
    except Exception as err:  # noqa: BLE001 - report and go on with the other figures
        log.exception("%s failed", name)
        return {"status": "failed", "reason": f"{type(err).__name__}: {err}"}
    files = [f"{name}.{fmt}" for fmt in formats]
    for file in files:
        fig.savefig(out / file, dpi=dpi)
    plt.close(fig)
    return {"status": "drawn", "seconds": round(time.perf_counter() - start, 2), "files": files}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    start, out = time.perf_counter(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(args)
    try:
        ctx.info  # loads the source once (or reads its description from the cache)
    except (Skip, SAELoadError, OSError) as err:
        print(f"paper_figures: no usable source: {err}", file=sys.stderr)
        return 2
    previous = (
        json.loads((out / "results.json").read_text()).get("figures", {}) if args.only and (out / "results.json").exists() else {}
    )
    statuses = dict(previous)
    with use_style():
        for name in tqdm(args.only or list(FIGURES), desc="figures", unit="figure"):
            statuses[name] = draw(ctx, name, out, args.formats, args.dpi)
    results = collect_results(ctx, statuses)
    write_json(out / "results.json", results)
    write_report(results, out / "report.md")
    write_json(out / "manifest.json", manifest(ctx, args, time.perf_counter() - start))
    drawn = sum(s["status"] == "drawn" for s in statuses.values())
    print(f"source: {ctx.info['label']} — {ctx.info['note']}")
    print(f"{drawn}/{len(statuses)} figures drawn in {time.perf_counter() - start:.0f} s -> {out.resolve()}")
    return 0 if all(s["status"] != "failed" for s in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
