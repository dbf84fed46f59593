"""Export stage of the demo build: the folder layout of `sae_analysis.io.demo_paths`, headline metrics and the manifest.

    <out>/manifest.json
    <out>/model/                      config.json + model.safetensors        (sae_analysis.io.save_model)
    <out>/seed<N>/                    cfg.json + sae_weights.safetensors (fp16) + sparsity.safetensors + trainer_cfg.json
                                      (sparsity: measured on the whole held-out split, `trainers.demo.sparsity`)
    <out>/seed<N>/checkpoints/<tokens>/   intermediate SAEs, fp16, same native layout (only with BuildConfig.keep_fractions)
    <out>/seed<N>/metrics.jsonl       the trainer's log (train / eval / resample / checkpoint events)
    <out>/seed<N>/freq/<tokens>.npy   per-latent log10(freq + 10^-6.5) snapshot at every checkpoint (float16)

The new folder is assembled beside `out` and then swapped in, so an interrupted export never leaves a half-written suite.
"""

from __future__ import annotations

import datetime
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor
from transformer_lens import HookedTransformer

from sae_analysis import SAE
from sae_analysis.activations import hook_activations, token_batches
from sae_analysis.frequency import latent_frequencies
from sae_analysis.io import load_sae, save_model, save_sae
from sae_analysis.io.demo import BOS_TOKEN, D_VOCAB, corpus_bytes, corpus_files, stdlib_root
from sae_analysis.io.provenance import stamp
from sae_analysis.io.readers import replace_folder, write_json
from sae_analysis.metrics import RARE_FREQ, explained_variance, frequency_fractions
from sae_analysis.reconstruction import reconstruction_losses
from trainers.demo.config import seed_config
from trainers.demo.sparsity import MIN_SPARSITY_TOKENS, headline_sparsity, heldout_tokens, measure_and_store

log = logging.getLogger(__name__)

REGENERATE = "sae-analysis demo build --resume   (equivalently: python -m trainers.demo build --resume)"
QUICK_REGENERATE = "sae-analysis demo build --quick --out DIR"
SIZE_LIMIT_BYTES = 25 * 1024 * 1024
PACKAGES = ("torch", "transformer_lens", "numpy", "safetensors", "sae-analysis")
"""Distributions whose versions the demo manifest records."""


def checkpoint_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    """(tokens, folder) of every intermediate checkpoint of a trainer run, ascending."""
    found = [(int(p.name), p) for p in (run_dir / "checkpoints").iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(found)


def pick_checkpoints(tokens: list[int], total: int, fractions: tuple[float, ...]) -> list[int]:
    """The distinct checkpoint token counts nearest to each `fraction * total`, excluding the final one (ascending)."""
    candidates = [t for t in tokens if t < total]
    picked = {min(candidates, key=lambda t: abs(t - f * total)) for f in fractions} if candidates else set()
    return sorted(picked)


def export_checkpoint(src: Path, dst: Path) -> None:
    """Copy one checkpoint SAE as fp16 (native layout; its trainer_cfg.json and stored sparsity are kept)."""
    sae = load_sae(src)
    save_sae(sae.half(), dst)
    shutil.copy2(src / "trainer_cfg.json", dst / "trainer_cfg.json")


def export_run(run_dir: Path, dst: Path, fractions: tuple[float, ...]) -> list[int]:
    """Final SAE and the picked intermediate checkpoints (all fp16: two fp32 4,096 x 512 SAEs alone would be 34 MB),
    metrics.jsonl and freq snapshots; returns the token counts of the exported checkpoints."""
    export_checkpoint(run_dir / "final", dst)
    shutil.copy2(run_dir / "metrics.jsonl", dst / "metrics.jsonl")
    shutil.copytree(run_dir / "freq", dst / "freq")
    ckpts = dict(checkpoint_dirs(run_dir))
    total = max(ckpts)
    kept = pick_checkpoints(sorted(ckpts), total, fractions)
    for tokens in kept:
        export_checkpoint(ckpts[tokens], dst / "checkpoints" / ckpts[tokens].name)
    return kept


@torch.no_grad()
def explained_variance_on(model: HookedTransformer, sae: SAE, tokens: Int[Tensor, "n_seq pos"], hook_name: str) -> float:
    """Explained variance of the SAE on all activations of `tokens` (one pooled ratio, sae_analysis.metrics formula)."""
    acts = torch.cat([hook_activations(model, b, hook_name).reshape(-1, sae.cfg.d_in) for b in token_batches(tokens, 64)])
    return float(explained_variance(acts, sae(acts).x_hat))


def sae_metrics(model: HookedTransformer, sae: SAE, tokens: Int[Tensor, "n_seq pos"]) -> dict[str, int | float]:
    """Headline numbers of one SAE on held-out tokens: CE scores (REPLICATION.md §8), L0, explained variance, frequency
    fractions; `frac_below_1e-4` uses the ULF threshold of Neel's analysis.py (RARE_FREQ)."""
    hook = sae.cfg.hook_name or "blocks.0.mlp.hook_post"
    rec = reconstruction_losses(model, sae, tokens, hook_name=hook)
    freq = latent_frequencies(model, sae, tokens, hook_name=hook)
    return {
        "n_tokens": rec.n_tokens,
        "ce_clean": rec.clean, "ce_recon": rec.recon, "ce_zero_ablated": rec.zero, "ce_mean_ablated": rec.mean,
        "recons_score_zero": rec.score_zero, "recons_score_mean": rec.score_mean,
        "l0": freq.l0, "explained_variance": explained_variance_on(model, sae, tokens, hook),
        **frequency_fractions(freq.freq), "frac_below_1e-4": float((freq.freq < RARE_FREQ).double().mean()),
    }  # fmt: skip


def training_summary(run_dir: Path) -> dict[str, Any]:
    """Throughput and resampling counts of a finished trainer run, read back from its metrics.jsonl."""
    from sae_analysis.io.runs import read_metrics

    rows = read_metrics(run_dir)
    train_rows, resamples = rows[rows.event == "train"], rows[rows.event == "resample"]
    return {"median_tokens_per_s": float(train_rows.tokens_per_s.median()), "n_resamples": int(len(resamples)),
            "resampled_latents_total": int(resamples.n.sum()) if len(resamples) else 0}


def corpus_info(seq_len: int) -> dict[str, Any]:
    """How the corpus was built and which bytes it held (sizes per split)."""
    return {
        "source": f"*.py files of the Python {sys.version.split()[0]} standard library ({stdlib_root()})",
        "split": "by file: eval if crc32(relative path) % 10 == 0", "seq_len": seq_len, "bos_token": BOS_TOKEN,
        "d_vocab": D_VOCAB,
        "files": {s: len(corpus_files(s)) for s in ("train", "eval")},
        "bytes": {s: len(corpus_bytes(s)) for s in ("train", "eval")},
    }  # fmt: skip


def dir_size(folder: Path) -> int:
    """Total bytes of the files under `folder`."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def export_suite(cfg: Any, model: HookedTransformer, lm_metrics: dict[str, Any], runs: dict[str, Path], out: Path) -> dict:
    """Write the whole demo folder into `out` (replacing it) and return the manifest."""
    new = out.parent / f".{out.name}.new"
    shutil.rmtree(new, ignore_errors=True)
    save_model(model, new / "model")
    eval_tokens = _metric_tokens(cfg)
    heldout = _metric_tokens(cfg) if cfg.quick else heldout_tokens(cfg.lm.n_ctx)  # quick: a tiny sample, CI only
    min_tokens = 1 if cfg.quick else MIN_SPARSITY_TOKENS
    saes: dict[str, Any] = {}
    for (name, run_dir), seed in zip(runs.items(), cfg.seeds):
        kept = export_run(run_dir, new / name, cfg.keep_fractions)
        sae = load_sae(new / name, dtype=torch.float32)  # measured as users load it: fp16 weights, fp32 compute
        tcfg = seed_config(cfg, seed)
        saes[name] = {"seed": seed, "train_tokens": tcfg.steps * tcfg.batch_size, "steps": tcfg.steps,
                      "checkpoints_exported": kept, "n_frequency_snapshots": len(list((new / name / "freq").glob("*.npy"))),
                      "d_in": sae.cfg.d_in, "d_sae": sae.cfg.d_sae, "training": training_summary(run_dir),
                      "metrics": sae_metrics(model, sae, eval_tokens),
                      "sparsity": measure_and_store(model, new / name, heldout, min_tokens=min_tokens)}
        log.info("%s: %s", name, saes[name]["metrics"])
    manifest = _manifest(cfg, lm_metrics, saes)
    write_json(new / "manifest.json", manifest)
    manifest["size_bytes"] = dir_size(new)
    write_json(new / "manifest.json", manifest)
    if not cfg.quick and manifest["size_bytes"] > SIZE_LIMIT_BYTES:
        raise RuntimeError(f"demo suite is {manifest['size_bytes'] / 2**20:.1f} MiB, over the 25 MiB budget; left in {new}")
    replace_folder(new, out)
    return manifest


def _metric_tokens(cfg: Any) -> Tensor:
    from sae_analysis.io.demo import demo_tokens

    return demo_tokens("eval", cfg.n_metric_seqs, seq_len=cfg.lm.n_ctx)


def _manifest(cfg: Any, lm_metrics: dict[str, Any], saes: dict[str, Any]) -> dict[str, Any]:
    """The manifest dict: regeneration command, settings, seeds, token counts, environment, headline metrics."""
    per_seed = [s["metrics"] for s in saes.values()]
    mean = {k: sum(m[k] for m in per_seed) / len(per_seed) for k in ("recons_score_zero", "recons_score_mean", "l0",
                                                                       "explained_variance")}
    headline = {
        "lm_eval_loss": round(lm_metrics["eval_loss"], 4), "bigram_eval_loss": round(lm_metrics["bigram_eval_loss"], 4),
        **{f"sae_mean_{k}": round(v, 4) for k, v in mean.items()}, "d_mlp": cfg.lm.d_mlp,
        "d_sae": next(iter(saes.values()))["d_sae"], **headline_sparsity(saes),
    }  # fmt: skip
    sae_cfg = {k: v for k, v in cfg.sae.to_dict().items() if k != "seed"}
    return {
        "name": "demo", "quick": cfg.quick, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "regenerate": QUICK_REGENERATE if cfg.quick else REGENERATE, "headline": headline, "environment": stamp(PACKAGES),
        "corpus": {**corpus_info(cfg.lm.n_ctx), "fingerprint": lm_metrics["corpus_fingerprint"]},
        "model": {k: v for k, v in lm_metrics.items() if k != "corpus_fingerprint"},
        "sae_train_config": sae_cfg, "saes": saes, "deviations": DEVIATIONS,
    }  # fmt: skip


DEVIATIONS = [
    "SAE weights are stored in fp16 so that two 4,096 x 512 SAEs fit the 25 MB budget (8.4 MB each); load_sae('demo', ...) "
    "returns them in fp32 and the headline metrics are measured that way. No intermediate checkpoint SAEs are shipped: "
    "the per-latent frequency snapshots at every checkpoint carry the phase-transition figures.",
    "Batch 1,024 (not 4,096) and lr 3e-4 (not 1e-4): a short run needs more, larger steps; l1_coeff 1e-3 in the original "
    "convention (L1 summed over the batch). The first build used lr 1e-3; the recipe sweep of docs/demo_research.md "
    "(issue #13) replaced it, since at 1e-3 every Kaiming resample re-initialised ~600 latents that mostly died again and "
    "7.1-7.3 % of latents stayed below 1e-6.",
    "Evaluation, frequency snapshots and resampling frequencies use the held-out eval split (the original sampled its "
    "training pool); frequencies for resampling are measured on resample_freq_tokens tokens, not 3.28M.",
    "Activations are stored in fp32 (the original buffer was bf16 under autocast on GPU).",
]
