"""Draw the figures of Neel Nanda's gelu-1l SAE replication and put every headline number beside the post's (issue #6).

    python paper_figures.py                              # auto: the Hub when reachable or cached, else the embedded demo
    python paper_figures.py --source demo --only f01_frequency_histogram
    python paper_figures.py --smoke --out /tmp/smoke     # every figure on synthetic checkpoints (CI)

Thin orchestration: load (`paper.sources`) -> compute (`paper.compute` over `sae_analysis`, cached as .npz / .json under
OUT/cache) -> plot (`figures`). OUT receives one PNG and one SVG per figure, `results.json` (keys documented in
paper.report.RESULT_KEYS), `report.md` (each number beside the post's value, REPLICATION.md §11) and `manifest.json` (git
commit, library versions, source revisions, token counts, seeds, timings). A second run, or `--only NAME`, reuses the cache
and redraws in seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from tqdm import tqdm

import figures as F
from figures.style import use_style
from paper.cache import write_json
from paper.compute import (
    baselines,
    case_latents,
    case_study,
    comparison,
    floor_curve,
    frequencies,
    nonrare,
    phase,
    rare_cluster,
    resolution,
    summary,
    table,
    training_curves,
)
from paper.context import Context
from paper.cost import say_cost
from paper.exhaustion import exhaustion_panels, planted_exhaustion_runs, read_control, read_exhaustion_runs
from paper.inventory import FIGURES as INVENTORY
from paper.options import Options
from paper.plotting import single as _single
from paper.plotting import thresholds
from paper.report import collect_results, manifest, write_report
from paper.sources import Skip
from sae_analysis.io import SAELoadError
from sae_analysis.io.readers import atomic_write
from sae_analysis.memory import keep_freed_memory
from sae_analysis.metrics import log10_freq

log = logging.getLogger("paper_figures")
DATA_EXHAUSTED_TOKENS = 1_695_481_856
"""REPLICATION.md §6.2: step 413,952 x 4096 tokens, where run 1 most likely ran out of fresh data (hypothesis)."""


# ----- figures: load -> compute -> plot (thresholds from sae_analysis via paper.plotting.thresholds) -------------------
def _resolution(ctx: Context, run: str) -> tuple[float, int] | None:
    """(log10(1/N), N) of a run's frequencies: what the frequency figures shade as unresolved."""
    return resolution(frequencies(ctx, run).n_tokens)


def f01_frequency_histogram(ctx: Context) -> Any:
    run = ctx.runs()[0]
    rare = thresholds().rare_log10
    return _single(F.plot_frequency_histogram, table(ctx, run)["log10_freq"], rare_log10=rare, source=ctx.label(run),
                   resolution=_resolution(ctx, run))  # fmt: skip


def f02_phase_transition(ctx: Context) -> Any:
    p = phase(ctx)
    markers = {"data exhausted (hypothesis, §6.2)": DATA_EXHAUSTED_TOKENS} if ctx.info["kind"] in ("hub", "planted") else None
    return F.plot_phase_transition(
        p["edges"],
        p["percent"],
        p["tokens"],
        p["ulf_fraction"],
        median_log10_freq=p["ulf_median_log10"],
        changepoint=float(p["changepoint_tokens"]),
        markers=markers,
        log10_freq=p["log10_freq"],
        ulf_label=thresholds().rare_label,
        resolution=resolution(int(p.get("n_tokens", 0))),
        source=ctx.label(ctx.runs()[0]),
    )


def f03_freq_vs_freq(ctx: Context) -> Any:
    """The two snapshots that straddle the changepoint (the post's checkpoints 21 and 22)."""
    p = phase(ctx)
    i = int(p["changepoint_index"])
    a, b = (f"checkpoint at {F.style.tokens_text(p['tokens'][j])} tokens" for j in (i - 1, i))
    return F.plot_freq_vs_freq(p["log10_freq"][i - 1], p["log10_freq"][i], label_a=a, label_b=b, source=ctx.label(ctx.runs()[0]),
                               resolution=resolution(int(p.get("n_tokens", 0))))  # fmt: skip


def f06_loss_vs_floor(ctx: Context) -> Any:
    curves = {f"{run} final": (c["floor"], c["score_zero"]) for run in ctx.runs() for c in [floor_curve(ctx, run)]}
    return _single(F.plot_loss_vs_floor, curves, rare_log10=thresholds().rare_log10, source=ctx.label(),
                   resolution=_resolution(ctx, ctx.runs()[0]))  # fmt: skip


def f07_rare_directions(ctx: Context) -> Any:
    """F7 and F8 for both runs, with the cross-seed cosine of the mean rare directions."""
    rare = {run: rare_cluster(ctx, run) for run in ctx.runs()}
    cos = comparison(ctx)["ulf_direction_cos"]
    return F.plot_rare_directions(
        {r: d["cos"] for r, d in rare.items()},
        {r: d["proj"] for r, d in rare.items()},
        direction_cos=cos,
        threshold=thresholds().aligned_cos,
        source=ctx.label(),
    )


def _top_vs_next9(ctx: Context, prefix: str, which: str) -> Any:
    """F13 / F15: share of each non-rare latent's encoder or decoder in its top neuron vs the next nine, vs Gaussian rows."""
    run = ctx.runs()[0]
    t, base = table(ctx, run), baselines(ctx, run)
    keep = nonrare(t)
    n = int(keep.sum())
    return F.plot_top_vs_next9(
        t[f"{prefix}fve_top_1"][keep],
        t[f"{prefix}fve_next_9"][keep],
        classes=t[f"{prefix}sparsity_class"][keep],
        baseline=(base[f"{prefix}fve_top_1"][:n], base[f"{prefix}fve_next_9"][:n]),
        thresholds=thresholds().sparse_lines,
        which=which,
        source=ctx.label(run) + ", non-rare latents",
    )


def f17_kurtosis(ctx: Context) -> Any:
    run = ctx.runs()[0]
    t = table(ctx, run)
    kurtosis, gaussian = t["kurtosis"][nonrare(t)], baselines(ctx, run)["kurtosis"]
    return _single(F.plot_kurtosis, kurtosis, gaussian, source=ctx.label(run) + ", non-rare latents")


def f18_enc_dec_cosine(ctx: Context) -> Any:
    run = ctx.runs()[0]
    t = table(ctx, run)
    return _single(F.plot_enc_dec_cosine, t["enc_dec_cos"][nonrare(t)], source=ctx.label(run))


def f20_null_space(ctx: Context) -> Any:
    run = ctx.runs()[0]
    t, ref = table(ctx, run), summary(ctx, run)["null_frac_random"]
    keep = nonrare(t)
    return _single(F.plot_null_space, t["enc_null_frac"][keep], t["dec_null_frac"][keep], reference=ref, source=ctx.label(run))


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
    th = thresholds()
    return F.plot_bias_norm_panels(
        panels,
        log10_freq(t["frequency"], eps=th.scratch_log_freq_eps),
        t["frequency"] < th.common_freq,
        rare_label=f"freq < {F.style.freq_text(th.common_freq)}",
        y_label=f"log10(freq + {th.scratch_log_freq_eps:g})",
        source=ctx.label(run),
    )


def _case_page(ctx: Context, which: int) -> Any:
    """F23: one latent's top contexts, logit effect and weights (`which` picks from `case_latents`)."""
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


def x_data_exhaustion(ctx: Context) -> Any:
    """REPLICATION.md §6.2 tested at demo scale: end_of_data freeze / wrap / stop after a short slice of the train split,
    from committed snapshots (paper/data/demo_exhaustion), beside the first build's seed1 on fresh data (the same recipe;
    paper.exhaustion.read_control). Smoke: planted runs."""
    kind = ctx.info["kind"]
    if kind not in ("demo", "smoke"):
        raise Skip("the data-exhaustion runs exist for the demo model only (research/demo_sweep.py, rows exhaust_*)")
    runs = planted_exhaustion_runs() if kind == "smoke" else read_exhaustion_runs()
    if not runs:
        raise Skip("no committed data-exhaustion snapshots in paper/data/demo_exhaustion")
    control = read_control() if kind == "demo" else None
    e = exhaustion_panels(runs, control[:2] if control else None, f"fresh data ({control[2]})" if control else "")
    return F.plot_data_exhaustion(
        e["ulf"], e["dead"], e["histograms"], edges=e["edges"], exhausted_tokens=e["exhausted_tokens"],
        resample_tokens=e["resample_tokens"], dead_label=f"0 firings in {e['snapshot_tokens']:,} held-out tokens",
        source=f"{ctx.label()}; {F.style.tokens_text(e['slice_tokens'])}-token training slice",
    )  # fmt: skip


def w_training_curves(ctx: Context) -> Any:
    return F.plot_training_curves(training_curves(ctx), source=ctx.label())


_FIGURES: dict[str, Callable[[Context], Any]] = {
    "f01_frequency_histogram": f01_frequency_histogram,
    "f02_phase_transition": f02_phase_transition,
    "f03_freq_vs_freq": f03_freq_vs_freq,
    "f06_loss_vs_floor": f06_loss_vs_floor,
    "f07_rare_directions": f07_rare_directions,
    "f13_encoder_top_vs_next9": lambda ctx: _top_vs_next9(ctx, "enc_", "encoder"),
    "f15_decoder_top_vs_next9": lambda ctx: _top_vs_next9(ctx, "", "decoder"),
    "f17_kurtosis": f17_kurtosis,
    "f18_enc_dec_cosine": f18_enc_dec_cosine,
    "f20_null_space": f20_null_space,
    "f21_bias_norm_vs_freq": f21_bias_norm_vs_freq,
    "f23a_case_study": lambda ctx: _case_page(ctx, 0),
    "f23b_case_study": lambda ctx: _case_page(ctx, 1),
    "w_training_curves": w_training_curves,
    "x_data_exhaustion": x_data_exhaustion,
}
FIGURES: dict[str, Callable[[Context], Any]] = dict(sorted((_FIGURES | INVENTORY).items()))
"""Figure name -> function(Context) -> matplotlib Figure, or (Figure, {extension: text}) when the figure comes with a
file of its own (F11's HTML page), in inventory order. Names are stable: `--only` and results.json use them."""


# ----- CLI ---------------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> Options:
    names = textwrap.fill(", ".join(FIGURES), width=110, initial_indent="  ", subsequent_indent="  ")
    epilog = textwrap.dedent(__doc__.split("\n", 1)[1]).strip("\n") + "\n\nfigures (names for --only):\n" + names
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=epilog)  # fmt: skip
    p.add_argument("--source", choices=("auto", "demo", "hub", "planted"), default="auto",
                   help="where checkpoints come from (default auto; planted: synthetic 2048 x 16384 SAEs with outliers)")
    p.add_argument("--out", default="out", help="output folder (default out/)")
    p.add_argument("--only", nargs="+", metavar="NAME", choices=list(FIGURES), help="draw only these figures")
    p.add_argument("--tokens", type=int, default=None,
                   help="count frequencies on this many tokens (default: demo: use those stored with its SAEs, counted on "
                        "the whole held-out split; smoke 512; hub 65536 on a CPU, 1638400 on a GPU)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    p.add_argument("--smoke", action="store_true", help="every figure on synthetic checkpoints (fast; CI)")
    p.add_argument("--cache-dir", default=None, help="cache folder (default OUT/cache)")
    p.add_argument("--tokens-file", default=None,
                   help="hub: .npy/.pt int array [n_seq, seq_len] of gelu-1l tokens (default: a seeded sample of c4-code "
                        "shards; the manifest records the file's sha256)")
    p.add_argument("--token-seed", type=int, default=None, help="hub: seed of the evaluation-token sample (default 0)")
    p.add_argument("--token-shards", type=int, default=None, help="hub: dataset shards the sample spreads over (default 2)")
    p.add_argument("--revision", default=None, help="hub: revision of NeelNanda/sparse_autoencoder to pin")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per model forward (default: demo 64, hub 32)")
    p.add_argument("--loss-seqs", type=int, default=None,
                   help="sequences for losses and case studies (default: demo 64; hub 64 on a CPU, 256 on a GPU)")
    p.add_argument("--formats", nargs="+", default=["png", "svg"], help="file formats per figure (default png svg)")
    p.add_argument("--dpi", type=int, default=150, help="PNG resolution (default 150)")
    ns = p.parse_args(argv)
    ns.argv = argv
    return Options.from_namespace(ns)


def draw(ctx: Context, name: str, out: Path, formats: list[str], dpi: int) -> dict[str, Any]:
    """Draw and save one figure; a Skip or an error is recorded, not raised, so one missing input costs one figure."""
    start = time.perf_counter()
    try:
        fig, extra = _figure_and_files(FIGURES[name](ctx))
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
    for ext, text in extra.items():
        files.append(f"{name}.{ext}")
        atomic_write(out / files[-1], lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
    return {"status": "drawn", "seconds": round(time.perf_counter() - start, 2), "files": files}


def _figure_and_files(drawn: Any) -> tuple[Any, dict[str, str]]:
    """A figure function's result as (Figure, {extension: text of a companion file})."""
    return drawn if isinstance(drawn, tuple) else (drawn, {})


def _previous_statuses(out: Path, only: list[str] | None) -> dict[str, Any]:
    """With --only, the other figures' statuses from the last results.json, so the report still lists every figure."""
    results = out / "results.json"
    return json.loads(results.read_text()).get("figures", {}) if only and results.exists() else {}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keep_freed_memory()  # the passes allocate the same big tensors per batch: reuse their pages (sae_analysis.memory)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    start, out = time.perf_counter(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(args)
    try:
        ctx.info  # loads the source once (or reads its description from the cache)
    except (Skip, SAELoadError, OSError) as err:
        print(f"paper_figures: no usable source: {err}", file=sys.stderr)
        return 2
    cost = say_cost(ctx, loaded_s=time.perf_counter() - start)  # before the first heavy step: rates, time, what fits
    statuses = _previous_statuses(out, args.only)
    with use_style():
        for name in tqdm(args.only or list(FIGURES), desc="figures", unit="figure"):
            statuses[name] = draw(ctx, name, out, args.formats, args.dpi)
    results = collect_results(ctx, statuses)
    write_json(out / "results.json", results)
    write_report(results, out / "report.md")
    write_json(out / "manifest.json", manifest(ctx, args, time.perf_counter() - start) | {"cost_estimate": cost})
    drawn = sum(s["status"] == "drawn" for s in statuses.values())
    print(f"source: {ctx.info['label']} — {ctx.info['note']}")
    print(f"{drawn}/{len(statuses)} figures drawn in {time.perf_counter() - start:.0f} s -> {out.resolve()}")
    return 0 if all(s["status"] != "failed" for s in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
