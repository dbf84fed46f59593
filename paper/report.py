"""What a run leaves beside its figures: results.json (keys in RESULT_KEYS), report.md (each number beside the post's
value, REPLICATION.md §11) and manifest.json (git commit, library versions, source provenance, timing)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from figures.style import tokens_text
from paper.compute import comparison, phase, summary
from paper.context import Context
from paper.sources import Skip

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
    ("ULF changepoint in training", "phase.changepoint_tokens", "tok", "≈1.6B (data exhausted ≈1.6955B)",
     "[unconfirmed]; data-exhaustion hypothesis"),
    ("Median decoder neuron kurtosis", "runs.median_kurtosis", "x", "heavy tails (Gaussian ≈ 0)", "[Neel] qualitative"),
    ("Decoder share in W_out null space", "runs.dec_null_frac_median", "x", "random direction 0.75", "[derived]"),
)
"""(quantity, results.json path, unit, the post's value, certainty tag as in REPLICATION.md §11)."""
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
    ph = None if p is None else {k: p[k].item() for k in PHASE_KEYS[:4]} | {
        "n_snapshots": len(p["tokens"]), "first_tokens": int(p["tokens"][0]), "last_tokens": int(p["tokens"][-1])}  # fmt: skip
    return {"source": ctx.info, "runs": {run: summary(ctx, run) for run in ctx.runs()},
            "compare": comparison(ctx) if len(ctx.runs()) > 1 else None, "phase": ph, "figures": statuses}  # fmt: skip


def _format(value: Any, unit: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return {"%": f"{100 * value:.1f}%", "tok": f"{tokens_text(value)} tokens"}.get(unit, f"{value:.3g}")


def _lookup(results: dict[str, Any], path: str, unit: str) -> str:
    section, key = path.split(".")
    if section == "runs":
        return " · ".join(f"{run}: {_format(s.get(key), unit)}" for run, s in results["runs"].items())
    return _format((results.get(section) or {}).get(key), unit)


def _resolvable(n_tokens: int | None) -> str:
    """', smallest resolvable frequency 1/N = ...' for frequencies measured on N tokens (REPLICATION.md §8)."""
    return f" (smallest resolvable frequency 1/N = {1 / n_tokens:.2g}; rarer latents read as dead)" if n_tokens else ""


def write_report(results: dict[str, Any], path: Path) -> None:
    """report.md: the source, every REPORT_ROWS number beside the post's value, and each figure's status."""
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
    lines += ["| quantity | ours | post | status |", "|---|---|---|---|"]
    lines += [f"| {q} | {_lookup(results, p, u)} | {post} | {tag} |" for q, p, u, post, tag in REPORT_ROWS]
    lines += ["", "## Figures", ""] + [
        f"- `{n}`: {s['status']}" + (f" ({s['reason']})" if s.get("reason") else "") for n, s in results["figures"].items()
    ]
    path.write_text("\n".join(lines) + "\n")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def manifest(ctx: Context, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    """The command, git commit, Python and library versions, the source's provenance and the run's duration."""
    return {"command": [Path(sys.argv[0]).name, *(sys.argv[1:] if args.argv is None else args.argv)],
            "git_commit": _git("rev-parse", "HEAD"), "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "python": sys.version.split()[0], "versions": {name: _version(name) for name in PACKAGES}, "source": ctx.info,
            "tokens_arg": args.tokens, "seconds": round(seconds, 1), "created_unix": int(time.time())}  # fmt: skip


def _git(*argv: str) -> str:
    """Output of a git command in this checkout, or '' where git or the repository is missing."""
    try:
        done = subprocess.run(["git", *argv], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""
