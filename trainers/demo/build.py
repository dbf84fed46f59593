"""Build the embedded demo suite end to end, resumably: corpus -> language model -> two SAE seeds -> exported artifacts.

Stages (each writes its results into the work folder and is skipped on `--resume` when already complete):

1. ``lm``: train the demo model on the train split (`trainers.demo.lm`); score it and the add-one bigram baseline on eval.
2. ``sae/seed<N>``: train one SAE per seed with `trainers` on the model's ``blocks.0.mlp.hook_post``.
3. ``export``: write the folder `sae_analysis.io.demo_paths` describes (model, final SAEs in fp16, metrics logs, frequency
   snapshots) and a manifest with the headline metrics measured on the eval split.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from transformer_lens import HookedTransformer

from sae_analysis.io.demo import corpus_fingerprint, demo_tokens
from sae_analysis.io.readers import write_json, write_safetensors
from trainers import ModelActivations, ModelEvaluator, TrainConfig, permute_sequences, train
from trainers.demo.config import BuildConfig, seed_config
from trainers.demo.corpus import bigram_loss
from trainers.demo.export import export_suite
from trainers.demo.lm import eval_loss, make_model, train_lm

log = logging.getLogger(__name__)


# ----- stage 1: the language model --------------------------------------------------------------------------------------
def lm_stage(cfg: BuildConfig, work: Path, *, resume: bool, progress: bool = True) -> tuple[HookedTransformer, dict]:
    """Train (or, on resume, reload) the demo model; returns it and its metrics {eval_loss, bigram_eval_loss, ...}."""
    folder = work / "lm"
    if resume and (folder / "lm_metrics.json").exists():
        metrics = json.loads((folder / "lm_metrics.json").read_text())
        if metrics["lm_config"] == dataclasses.asdict(cfg.lm):
            model = make_model(cfg.lm)
            model.load_state_dict(load_file(folder / "state_dict.safetensors"))
            log.info("lm: reusing %s (eval loss %.4f)", folder, metrics["eval_loss"])
            return model.eval(), metrics
        log.warning("lm: config changed, retraining")
    train, held_out = demo_tokens("train", seq_len=cfg.lm.n_ctx), demo_tokens("eval", cfg.n_lm_eval_seqs, cfg.lm.n_ctx)
    model, train_log = train_lm(cfg.lm, train, progress=progress)
    write_safetensors(folder / "state_dict.safetensors", model.state_dict())
    write_json(folder / "lm_log.json", {"log": train_log})
    metrics = {
        "lm_config": dataclasses.asdict(cfg.lm),
        "eval_loss": eval_loss(model, held_out),
        "bigram_eval_loss": bigram_loss(train, held_out),
        "train_tokens_seen": cfg.lm.n_steps * cfg.lm.batch_size * cfg.lm.n_ctx,
        "train_split_tokens": int(train.numel()),
        "eval_seqs": cfg.n_lm_eval_seqs,
        "corpus_fingerprint": {s: corpus_fingerprint(s) for s in ("train", "eval")},
    }
    write_json(folder / "lm_metrics.json", metrics)
    log.info("lm: eval loss %.4f vs bigram %.4f", metrics["eval_loss"], metrics["bigram_eval_loss"])
    return model, metrics


# ----- stage 2: the SAEs -------------------------------------------------------------------------------------------------
def finished_run_verdict(saved: TrainConfig, wanted: TrainConfig) -> str:
    """What to do with a finished run: 'reuse' (same config), 'extend' (only num_tokens grew: continue from its trainer
    state, as an uninterrupted longer run would have) or 'retrain' (anything else changed). `step_impl` is not a change:
    the fused, sparse and auto steps compute the same gradients (the committed seeds were trained with 'fused')."""
    saved = dataclasses.replace(saved, d_in=wanted.d_in, step_impl=wanted.step_impl)
    if saved == wanted:
        return "reuse"
    if dataclasses.replace(saved, num_tokens=wanted.num_tokens) == wanted and wanted.num_tokens > saved.num_tokens:
        return "extend"
    return "retrain"


def sae_stage(cfg: BuildConfig, work: Path, model: HookedTransformer, seed: int, *, resume: bool, progress: bool = True) -> Path:
    """Train the SAE of one seed into ``work/sae/seed<N>`` (resuming an interrupted run on `resume`); returns that folder.

    Training reads the train split in a seed-specific order; evaluation, frequency snapshots and resampling frequencies
    use the eval split, so they are measured on held-out text."""
    run_dir = work / "sae" / f"seed{seed}"
    tcfg = seed_config(cfg, seed)
    if resume and (run_dir / "final" / "cfg.json").exists():
        saved = TrainConfig.from_dict(json.loads((run_dir / "final" / "trainer_cfg.json").read_text()))
        verdict = finished_run_verdict(saved, tcfg)
        log.info("sae seed %d: finished run in %s -> %s", seed, run_dir, verdict)
        if verdict == "reuse":
            return run_dir
        resume = verdict == "extend"
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)
    seq_len = tcfg.seq_len
    train_rows = permute_sequences(demo_tokens("train", seq_len=seq_len), seed)
    source = ModelActivations(model, train_rows, hook_name=tcfg.hook_name, model_batch=tcfg.model_batch, wrap=True)
    evaluator = ModelEvaluator(model, demo_tokens("eval", seq_len=seq_len), hook_name=tcfg.hook_name)
    result = train(tcfg, source, out_dir=run_dir, evaluator=evaluator, resume=resume, progress=progress)
    if result.stopped != "done":
        raise RuntimeError(f"SAE seed {seed} stopped early ({result.stopped}); rerun with --resume")
    return run_dir


def train_one_seed(cfg: BuildConfig, work: Path, seed: int, *, resume: bool, progress: bool = True) -> Path:
    """Stages 1-2 for a single seed (the LM is reused when finished), so that seeds can train in parallel processes."""
    if seed not in cfg.seeds:
        raise ValueError(f"seed {seed} is not one of the build's seeds {cfg.seeds}")
    model, _ = lm_stage(cfg, work, resume=True, progress=progress)
    return sae_stage(cfg, work, model, seed, resume=resume, progress=progress)


# ----- the whole build ---------------------------------------------------------------------------------------------------
def run_build(cfg: BuildConfig, out: Path, work: Path, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run every stage and export the suite into `out`; returns the manifest."""
    model, lm_metrics = lm_stage(cfg, work, resume=resume, progress=progress)
    runs = {f"seed{seed}": sae_stage(cfg, work, model, seed, resume=resume, progress=progress) for seed in cfg.seeds}
    return export_suite(cfg, model, lm_metrics, runs, out)
