"""A run killed with SIGKILL at arbitrary moments and resumed ends with bit-identical weights (CPU), through the CLI,
on a tiny HookedTransformer; plus the token source."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformer_lens import HookedTransformer, HookedTransformerConfig

from sae_analysis.io.runs import read_metrics
from trainers.source import ModelActivations, permute_sequences

HOOK = "blocks.0.mlp.hook_post"


def tiny_model(seed: int = 0) -> HookedTransformer:
    torch.manual_seed(seed)
    cfg = HookedTransformerConfig(n_layers=1, d_model=32, d_mlp=64, n_heads=2, d_head=16, n_ctx=16, d_vocab=50,
                                  act_fn="gelu", normalization_type="LN")
    return HookedTransformer(cfg).eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    from sae_analysis.io.model import save_model

    root = tmp_path_factory.mktemp("resume")
    save_model(tiny_model(), root / "model")
    rows = np.random.default_rng(0).integers(1, 50, size=(300, 32))
    np.save(root / "tokens.npy", rows)
    return root / "model", root / "tokens.npy"


def cli_args(files, out: Path, *extra: str) -> list[str]:
    model, tokens = files
    return ["--preset", "demo", "--model", str(model), "--data", str(tokens),
            "--bos", "0", "--out", str(out), "--no-progress", "--seq_len", "16", "--batch_size", "64", "--buffer_mult", "4",
            "--model_batch", "16", "--num_tokens", str(64 * 240), "--checkpoint-every-tokens", str(64 * 30),
            "--log-every-tokens", str(64 * 5),
            "--eval-every-tokens", str(64 * 40), "--eval_tokens", "256", "--resample-every-tokens", str(64 * 50),
            "--resample_freq_tokens", "512",
            "--resample_freq", "0.01", "--dict_mult", "2", "--l1_coeff", "3e-3", "--hook_name", HOOK, *extra]


def cli(files, out: Path, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "trainers", *cli_args(files, out, *extra)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "final" / "sae_weights.safetensors"))


def test_sigkill_and_resume_is_bit_identical(files, tmp_path):
    """Reference: the same CLI in this process (one thread, like the subprocesses: saves two interpreter start-ups)."""
    from trainers.__main__ import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(cli_args(files, tmp_path / "ref")) == 0
    finally:
        torch.set_num_threads(threads)
    cut = tmp_path / "cut"
    rng = random.Random(0)
    kills = 0
    proc = cli(files, cut)
    for _ in range(1):  # kill at a random moment after the first trainer state exists, then resume
        deadline = time.time() + 60
        while not (cut / "state" / "trainer_state.safetensors").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.6))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        proc = cli(files, cut, "--resume")
    finish(proc)
    assert kills >= 1, "the run finished before it could be killed; make it longer"
    ref, got = weights(tmp_path / "ref"), weights(cut)
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    a, b = read_metrics(tmp_path / "ref"), read_metrics(cut)
    assert len(a) == len(b) and a.query("event=='train'").loss.tolist() == b.query("event=='train'").loss.tolist()
    assert (a.event == "resample").sum() == 4 and {"score_zero", "score_mean"} <= set(a.columns)


def test_model_source_matches_hook_activations_and_never_computes_logits():
    model = tiny_model()
    seqs = torch.randint(1, 50, (10, 16), generator=torch.Generator().manual_seed(0))
    src = ModelActivations(model, seqs, hook_name=HOOK, model_batch=4)
    calls = []
    model.unembed.register_forward_hook(lambda *a: calls.append(1))
    chunks = list(src)
    assert [c.shape for c in chunks] == [(64, 64), (64, 64), (32, 64)] and src.position == 10 and not calls
    _, cache = model.run_with_cache(seqs, names_filter=HOOK)
    assert torch.allclose(torch.cat(chunks), cache[HOOK].reshape(-1, 64), atol=1e-6)


def test_permute_sequences_is_seeded():
    seqs = torch.arange(40).reshape(10, 4)
    perm = permute_sequences(seqs, seed=1)
    assert torch.equal(perm, permute_sequences(seqs, seed=1)) and not torch.equal(perm, permute_sequences(seqs, seed=2))
    assert sorted(perm[:, 0].tolist()) == seqs[:, 0].tolist()


def test_cli_flags_and_resume_config(tmp_path):
    import argparse

    from trainers.checkpoint import save_state
    from trainers.cli import add_arguments, config_from_args
    from trainers.config import preset

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--preset", "demo", "--l1-coeff", "1e-3", "--resample", "anthropic", "--resample-at-tokens",
                              "512,1024", "--out", str(tmp_path)])
    cfg = config_from_args(args)
    assert cfg.l1_coeff == 1e-3 and cfg.resample.at_tokens == (512, 1024) and cfg.batch_size == preset("demo").batch_size
    assert "phase" not in parser.format_help() and "reproduces the published checkpoints" in parser.format_help()
    saved = preset("demo").with_overrides({"lr": "0.5", "seed": "7"})
    save_state(tmp_path, {"x": torch.zeros(1)}, {"cfg": saved.to_dict()})
    resumed = config_from_args(parser.parse_args(["--preset", "demo", "--resume", "--out", str(tmp_path), "--seed", "8"]))
    assert resumed.lr == 0.5 and resumed.seed == 8, "--resume starts from the saved config; explicit flags still win"
