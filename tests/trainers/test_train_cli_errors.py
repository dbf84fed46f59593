"""`sae-analysis train` refusals: one line on stderr naming the fix, exit code 2, before any model is loaded or any rank
is spawned; a programming error keeps its traceback; the deprecated `--tokens SOURCE` spelling still works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sae_analysis.cli import main
from trainers import cli as train_cli
from trainers.checkpoint import STATE_FILE


@pytest.fixture
def no_spawn(monkeypatch):
    """Any relaunch under torchrun or model load fails the test: refusals come first."""
    def boom(*a, **k):
        raise AssertionError("spawned or loaded before refusing")

    monkeypatch.setattr(subprocess, "call", boom)
    monkeypatch.setattr("sae_analysis.io.model.load_model", boom)


@pytest.fixture
def tokens(tmp_path) -> Path:
    np.save(tmp_path / "tokens.npy", np.zeros((4, 8), dtype=np.int64))
    return tmp_path / "tokens.npy"


def saved_run(folder: Path, world_size: int | None) -> Path:
    """A run folder whose shared trainer state records `world_size` (None: a single-process state, no key)."""
    (folder / STATE_FILE).parent.mkdir(parents=True)
    meta = {"step": 3} if world_size is None else {"step": 3, "world_size": world_size}
    save_file({"x": torch.zeros(1)}, str(folder / STATE_FILE), metadata={"json": json.dumps(meta)})
    return folder


def refusal(capsys, argv: list[str]) -> str:
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(("saved", "nproc", "fix"), [(None, "2", "no --nproc"), (2, None, "--nproc 2"), (2, "3", "--nproc 2"),
                                                    (3, "2", "--nproc 3")])
def test_resume_on_another_rank_count_is_refused_before_spawning(tmp_path, capsys, no_spawn, tokens, saved, nproc, fix):
    run = saved_run(tmp_path / "run", saved)
    extra = ["--nproc", nproc] if nproc else []
    err = refusal(capsys, ["--preset", "demo", "--model", str(tmp_path), "--data", str(tokens), "--out", str(run), "--resume",
                           *extra])
    assert fix in err and str(run) in err


def test_missing_model_and_data_are_refused_before_spawning(tmp_path, capsys, no_spawn, tokens):
    err = refusal(capsys, ["--preset", "demo", "--model", str(tmp_path / "nope"), "--data", str(tokens), "--nproc", "2",
                           "--out", str(tmp_path / "run")])
    assert "no such model folder" in err and "nope" in err
    err = refusal(capsys, ["--preset", "demo", "--data", str(tmp_path / "absent.npy"), "--nproc", "2"])
    assert "no such token file" in err and "absent.npy" in err


def test_bad_flag_value_is_one_line(tmp_path, capsys, no_spawn, tokens):
    err = refusal(capsys, ["--preset", "demo", "--model", str(tmp_path), "--data", str(tokens), "--batch-size", "abc",
                           "--out", str(tmp_path / "run")])
    assert "--batch-size abc" in err


def test_unknown_preset_is_one_usage_line(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--preset", "nope"])
    assert stop.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


def test_programming_errors_keep_their_traceback(tmp_path, monkeypatch, tokens):
    def bug(*a, **k):
        raise TypeError("a bug")

    monkeypatch.setattr(train_cli, "preflight", bug)
    with pytest.raises(TypeError, match="a bug"):
        main(["train", "--preset", "demo", "--data", str(tokens)])


def test_deprecated_tokens_flag_names_its_replacement(tokens):
    import argparse

    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    args = parser.parse_args(["--tokens", str(tokens)])
    with pytest.warns(FutureWarning, match="--data"):
        assert train_cli.data_source(args) == str(tokens)
    assert train_cli.data_source(parser.parse_args([])) == "demo"
    clash = parser.parse_args(["--tokens", "demo", "--data", str(tokens)])
    with pytest.raises(ValueError, match="give only --data"):
        train_cli.data_source(clash)


def test_a_refusal_in_a_subprocess_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "trainers", "--preset", "demo", "--data", str(tmp_path / "x.npy")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "no such token file" in done.stderr
