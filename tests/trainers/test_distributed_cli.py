"""Data-parallel training through the command line on a tiny HookedTransformer, 2 ranks, gloo on CPU: `--nproc 2`
(torchrun), a rank killed or frozen mid-run (the survivor fails clearly within the timeout, the last checkpoint loads),
a resume at the same world size that ends bit-identical to the uninterrupted run, and resumes on another rank count."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_distributed import rank_env, wait_ranks

from sae_analysis.io.runs import read_metrics
from tests.helpers import tiny_model
from trainers.checkpoint import STATE_FILE, load_state
from trainers.ddp_launch import EXIT_RANK_FAILURE
from trainers.ddp_state import rank_state_path

HOOK = "blocks.0.mlp.hook_post"
STEPS = 240
TIMEOUT_S = 8  # the process-group timeout of the runs below: a frozen rank must fail the run after about this long


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    from sae_analysis.io.model import save_model

    root = tmp_path_factory.mktemp("ddp_cli")
    save_model(tiny_model(), root / "model")
    np.save(root / "tokens.npy", np.random.default_rng(0).integers(1, 50, size=(300, 32)))
    return root / "model", root / "tokens.npy"


def train_args(files, out: Path, *extra: str) -> list[str]:
    model, tokens = files
    return ["--preset", "demo", "--model", str(model), "--data", str(tokens), "--bos", "0", "--out", str(out),
            "--no-progress", "--seq_len", "16", "--batch_size", "64", "--buffer_mult", "4", "--model_batch", "16",
            "--num_tokens", str(64 * STEPS), "--checkpoint-every-tokens", str(64 * 30), "--log-every-tokens", str(64 * 10),
            "--eval-every-tokens", str(64 * 80),
            "--eval_tokens", "256", "--resample-every-tokens", str(64 * 50), "--resample_freq_tokens", "512",
            "--resample_freq", "0.01",
            "--dict_mult", "2", "--l1_coeff", "3e-3", "--hook_name", HOOK, "--ddp-timeout", str(TIMEOUT_S), *extra]


def run_cli(args: list[str], timeout: float = 150) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "trainers", *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def reference(files, tmp_path_factory) -> Path:
    """An uninterrupted run launched by `python -m trainers --nproc 2` (torchrun --standalone)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    done = run_cli(train_args(files, out, "--nproc", "2"))
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_nproc_run_trains_the_global_batch_on_two_ranks(reference):
    m = read_metrics(reference)
    end = m[m.event == "end"].iloc[-1]
    assert (end.step, end.tokens, end.world_size, end.stopped) == (STEPS, 64 * STEPS, 2, "done")
    train = m[m.event == "train"]
    assert list(train.step) == list(range(10, STEPS + 1, 10)) and (train.world_size == 2).all()
    assert train.loss.iloc[-1] < train.loss.iloc[0]
    assert len(m[m.event == "eval"]) == STEPS // 80 and len(m[m.event == "resample"]) == STEPS // 50
    checks = m[m.event == "ddp_check"]
    assert len(checks) == STEPS // 30 and (checks.max_rank_divergence == 0.0).all()  # ranks bit-identical
    ckpts = sorted(p.name for p in (reference / "checkpoints").iterdir())
    assert ckpts == [f"{64 * s:012d}" for s in range(30, STEPS + 1, 30)]
    tensors, meta = load_state(reference)
    assert meta["world_size"] == 2 and meta["step"] == STEPS and not any(k.startswith("buffer/") for k in tensors)
    for r in range(2):
        assert rank_state_path(reference, r, STEPS).exists()


def start_ranks(files, out: Path, *extra: str) -> list[subprocess.Popen]:
    from test_distributed import free_port

    port = free_port()
    return [subprocess.Popen([sys.executable, "-m", "trainers", *train_args(files, out, *extra)], env=rank_env(r, 2, port),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for r in range(2)]


def wait_for_state(out: Path, procs: list[subprocess.Popen], timeout: float = 90) -> None:
    """Until the first complete save (SAE checkpoint, then rank files, then the shared trainer state)."""
    deadline = time.monotonic() + timeout
    while not (out / STATE_FILE).exists():
        assert all(p.poll() is None for p in procs), "a rank ended before the first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.05)


@pytest.mark.parametrize("victim, sig", [(1, signal.SIGKILL), (0, signal.SIGKILL), (1, signal.SIGSTOP)],
                         ids=["kill-rank1", "kill-rank0", "freeze-rank1"])
def test_a_dead_or_frozen_rank_fails_the_run_clearly_and_the_checkpoint_survives(files, reference, tmp_path, victim, sig):
    out = tmp_path / "run"
    procs = start_ranks(files, out)
    wait_for_state(out, procs)
    os.kill(procs[victim].pid, sig)
    t0 = time.monotonic()
    survivor = procs[1 - victim]
    try:
        (rc, err), = wait_ranks([survivor], timeout=TIMEOUT_S + 40)  # no hang: bounded by the process-group timeout
    finally:
        procs[victim].kill()
        procs[victim].wait()
    assert rc == EXIT_RANK_FAILURE, err[-3000:]
    assert f"rank {1 - victim} of 2: a collective failed" in err and "Last checkpoint" in err, err[-3000:]
    if sig == signal.SIGSTOP:
        assert time.monotonic() - t0 >= TIMEOUT_S * 0.5  # it waited for the frozen rank, up to the timeout
    # the last checkpoint is intact: the SAE loads, the trainer state loads with a complete set of rank files
    from sae_analysis import load_sae

    for folder in (out / "checkpoints").iterdir():  # written atomically: every one that exists loads
        assert load_sae(folder).cfg.d_sae == 128
    tensors, meta = load_state(out)
    assert load_sae(meta["last_checkpoint"]).cfg.d_sae == 128
    assert all(rank_state_path(out, r, meta["step"]).exists() for r in range(2))
    if victim == 1 and sig == signal.SIGKILL:
        resumed = run_cli(train_args(files, out, "--nproc", "2", "--resume"))
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        a, b = (load_file(str(run / "final" / "sae_weights.safetensors")) for run in (reference, out))
        for k in a:
            assert torch.equal(a[k], b[k]), k


def test_ctrl_c_under_torchrun_stops_every_rank_at_one_step_with_a_saved_state(files, tmp_path):
    """A terminal Ctrl-C (SIGINT to the whole process group: torchrun's agent and both workers, which the agent
    then signals again) stops every rank at the same step with a complete saved state."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "trainers", *train_args(files, out, "--nproc", "2")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for_state(out, [proc])
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the interrupted run did not stop")
    m = read_metrics(out)
    end = m[m.event == "end"]
    assert list(end.stopped) == ["interrupted"] and 0 < end.step.iloc[0] < STEPS, err[-3000:]
    step = load_state(out)[1]["step"]
    assert step == end.step.iloc[0] and all(rank_state_path(out, r, step).exists() for r in range(2))
    assert not (out / "final").exists()  # an interrupted run is resumable, not final (resume: see the kill test)


def test_resume_on_another_rank_count_continues_the_run(files, reference, tmp_path):
    """The 2-rank run continued on 1 process for 40 more steps, then on 2 ranks again for 40 more: each re-splits the
    unread data (`trainers.ddp_state.resplit_state`), trains to the new end and leaves one consistent state."""
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(reference, run)
    one = run_cli(train_args(files, run, "--resume", "--num_tokens", str(64 * (STEPS + 40))))
    assert one.returncode == 0 and "re-splitting" in one.stderr, one.stderr[-3000:]
    end = read_metrics(run).query("event == 'end'").iloc[-1]
    assert end.step == STEPS + 40 and end.tokens == 64 * (STEPS + 40) and "world_size" not in load_state(run)[1]
    assert not list((run / "state").glob("rank*"))  # the 2-rank data states went with the first 1-process save
    two = run_cli(train_args(files, run, "--resume", "--nproc", "2", "--num_tokens", str(64 * (STEPS + 80))))
    assert two.returncode == 0, two.stderr[-3000:]
    m = read_metrics(run)
    end = m.query("event == 'end'").iloc[-1]
    assert (end.step, end.world_size) == (STEPS + 80, 2)
    assert (m.query("event == 'ddp_check' and step > @STEPS + 40").max_rank_divergence == 0.0).all()
    tensors, meta = load_state(run)
    assert meta["world_size"] == 2 and all(rank_state_path(run, r, STEPS + 80).exists() for r in range(2))
