"""What a run leaves beside its figures: results.json (keys in RESULT_KEYS), report.md (each number beside the post's
value, REPLICATION.md §11) and manifest.json (git commit, library versions, source provenance, timing)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from figures.style import tokens_text
from paper.compute import comparison, intervals, phase, summary
from paper.context import Context
from paper.options import Options
from paper.published import PUBLISHED, Published
from paper.sources import Skip
from sae_analysis.io.provenance import stamp

RESULT_KEYS: dict[str, str] = {
    "source": "kind ('demo' | 'hub' | 'smoke'), label, note (why this source was used), n_tokens, n_seqs, provenance per run",
    "runs": "per run name: the `sae_analysis.table.summarize` numbers, keys documented in sae_analysis.table.KEYS",
    "intervals": "per run name, per summary key of sae_analysis.uncertainty.INTERVAL_KEYS: estimate, low, high (95%), "
    "resampled ('latents' | 'sequence blocks' | 'sequences'), n_units, n_resamples; threshold fractions add threshold and "
    "expected_firings_at_threshold, frac_dead adds n_dead, n_tokens, resolution (1/N) and dead_freq_bound_95 (3/N)",
    "compare": "first run vs second: `compare_summary` numbers, keys documented in sae_analysis.table.COMPARE_KEYS",
    "phase": "first run's snapshots: the PHASE_KEYS numbers (null when the source has no snapshots)",
    "published": "the published values the report shows (paper.published.PUBLISHED): key, quantity, value, number, tag, "
    "section, note",
    "figures": "per figure name: status ('drawn' | 'skipped' | 'failed'), reason, seconds, files",
}
"""Top-level keys of results.json (stable; tests check them)."""
PHASE_KEYS: dict[str, str] = {
    "changepoint_tokens": "tokens halfway between the two snapshots around the least-squares split of the ULF-fraction "
    "series (sae_analysis.phase.changepoint)",
    "changepoint_index": "index of the first snapshot after the split",
    "ulf_before": "mean ULF fraction before the split",
    "ulf_after": "mean ULF fraction after the split",
    "n_snapshots": "frequency snapshots in the run's log",
    "first_tokens": "tokens at the first snapshot",
    "last_tokens": "tokens at the last snapshot",
}
PACKAGES = ("sae-analysis", "torch", "transformer_lens", "numpy", "matplotlib", "seaborn", "huggingface_hub", "scipy")
"""Distributions whose versions the manifest records."""


def _optional(compute: Callable[[], Any]) -> Any:
    try:
        return compute()
    except Skip:
        return None


def collect_results(ctx: Context, statuses: dict[str, Any]) -> dict[str, Any]:
    """Every headline number, computed (or read from the cache) through the same functions the figures use."""
    p = _optional(lambda: phase(ctx))
    ph = None if p is None else {k: p[k].item() for k in list(PHASE_KEYS)[:4]} | {
        "n_snapshots": len(p["tokens"]), "first_tokens": int(p["tokens"][0]), "last_tokens": int(p["tokens"][-1])}  # fmt: skip
    return {"source": ctx.info, "runs": {run: summary(ctx, run) for run in ctx.runs()},
            "intervals": {run: intervals(ctx, run) for run in ctx.runs()},
            "compare": comparison(ctx) if len(ctx.runs()) > 1 else None, "phase": ph,
            "published": [asdict(row) for row in PUBLISHED], "figures": statuses}  # fmt: skip


def _format(value: Any, unit: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return {"%": f"{100 * value:.1f}%", "tok": f"{tokens_text(value)} tokens"}.get(unit, f"{value:.3g}")


def _with_interval(value: Any, iv: dict[str, Any] | None, unit: str) -> str:
    text = _format(value, unit)
    if iv is None or not _finite(iv.get("low")):
        return text
    low, high = _format(iv["low"], unit), _format(iv["high"], unit)
    return f"{text} [{low}, {high}]"


def _ours(results: dict[str, Any], row: Published) -> str:
    section, key = row.key.split(".")
    if section != "runs":
        return _format((results.get(section) or {}).get(key), row.unit)
    ivs = results.get("intervals") or {}
    return " · ".join(f"{run}: {_with_interval(s.get(key), (ivs.get(run) or {}).get(key), row.unit)}"
                      for run, s in results["runs"].items())  # fmt: skip


def _published(row: Published) -> str:
    value = "— (none published)" if row.value is None else row.value
    return value + (f" — *{row.note}*" if row.note else "")


def _interval_notes(results: dict[str, Any]) -> list[str]:
    """Per run: what the intervals resampled and how often; the dead fraction's sample size and resolution; thresholds
    too rare for a sequence bootstrap."""
    lines = []
    for run, ivs in (results.get("intervals") or {}).items():
        done = sorted({(iv["resampled"], iv["n_units"], iv["n_resamples"]) for iv in ivs.values() if _finite(iv["low"])})
        line = f"- {run}: resampled " + "; ".join(f"{n} {name} ({r} resamples)" for name, n, r in done) + "."
        dead = ivs.get("frac_dead")
        if dead:
            line += (f" Dead: {dead['n_dead']} latents never fired in N = {dead['n_tokens']:,} tokens; the sample cannot "
                     f"resolve frequencies below 1/N = {dead['resolution']:.2g}, and a latent that never fired has "
                     f"frequency < 3/N = {dead['dead_freq_bound_95']:.2g} (95%).")  # fmt: skip
        for key, iv in ivs.items():
            if "threshold" in iv and not _finite(iv["low"]):
                line += (
                    f" No interval for {key} (freq < {iv['threshold']:g}): a latent at the threshold fires "
                    f"{iv['expected_firings_at_threshold']:.3g} times in the sample, too few for a sequence bootstrap."
                )
        lines.append(line)
    return lines


def _finite(x: Any) -> bool:
    return x is not None and bool(np.isfinite(x))


def _resolvable(n_tokens: int | None) -> str:
    """', smallest resolvable frequency 1/N = ...' for frequencies measured on N tokens (REPLICATION.md §8)."""
    return f" (smallest resolvable frequency 1/N = {1 / n_tokens:.2g}; rarer latents read as dead)" if n_tokens else ""


def write_report(results: dict[str, Any], path: Path) -> None:
    """report.md: the source, every PUBLISHED value beside our number (with its 95% interval), and each figure's status."""
    src = results["source"]
    frequency_sources = "; ".join(f"{r}: {s.get('frequency_source', 'n/a')}{_resolvable(s.get('n_freq_tokens'))}"
                                  for r, s in results["runs"].items())  # fmt: skip
    lines = [f"# Replication report: {src['label']}", "", f"**Source:** {src['label']} — {src['note']}. Frequencies: "
             f"{frequency_sources}.", ""]  # fmt: skip
    if src["kind"] != "hub":
        lines += [
            "The post's values describe gelu-1l (2048 neurons, 16384 latents, 2B tokens); this source is a different, much "
            "smaller setup, so agreement is not expected: compare shapes and orders of magnitude.",
            "",
        ]
    lines += ["| quantity | ours [95% interval] | published | certainty | spec |", "|---|---|---|---|---|"]
    lines += [f"| {r.quantity} | {_ours(results, r)} | {_published(r)} | {r.tag} | {r.section} |" for r in PUBLISHED]
    lines += ["", "Published values and certainty tags: REPLICATION.md §11 (Neel's post) and §12 (Anthropic's paper), "
              "as tabulated in `paper/published.py`. Intervals are 95% percentile bootstraps (`sae_analysis.uncertainty`): "
              "class fractions and the dead fraction resample latents, threshold fractions resample blocks of evaluation "
              "sequences, the reconstruction score resamples evaluation sequences."]  # fmt: skip
    lines += _interval_notes(results)
    lines += ["", "## Figures", ""] + [
        f"- `{n}`: {s['status']}" + (f" ({s['reason']})" if s.get("reason") else "") for n, s in results["figures"].items()
    ]
    path.write_text("\n".join(lines) + "\n")


def manifest(ctx: Context, args: Options, seconds: float) -> dict[str, Any]:
    """The command, git commit, Python and library versions, the source's provenance and the run's duration."""
    return {"command": [Path(sys.argv[0]).name, *(sys.argv[1:] if args.argv is None else args.argv)],
            **stamp(PACKAGES, cwd=Path(__file__).resolve().parent), "source": ctx.info, "tokens_arg": args.tokens,
            "seconds": round(seconds, 1), "created_unix": int(time.time())}  # fmt: skip


