"""Data-parallel training (`Trainer` over `TorchDistributed`) on CPU with gloo and 2 ranks: the steps equal a
single-process run on the concatenated global batch, ranks stay identical through resampling, plus the pure helpers
(loss scaling, sharding, per-rank state files).

The rank processes run this file as a script (`python tests/test_distributed.py worker OUT_DIR`) with torchrun's
environment variables; each test bounds them with a subprocess timeout, so a hang fails the test instead of CI.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sae_analysis.io.runs import read_metrics
from trainers import ActivationEvaluator, AnthropicResample, KaimingResample, NoResample, TrainConfig
from trainers.collective import TorchDistributed
from trainers.ddp_launch import shard_sequences
from trainers.ddp_reduce import global_losses, is_collective_failure, rank_objective
from trainers.ddp_state import load_rank_state, prune_rank_states, rank_state_path, save_rank_state
from trainers.train import Trainer, make_buffer

WORLD = 2
STEPS, BATCH, D_IN = 12, 32, 16
BASE = dict(d_in=D_IN, dict_mult=4, batch_size=BATCH, buffer_mult=2, buffer_dtype="float32", lr=1e-2, l1_coeff=3e-3,
            num_tokens=STEPS * BATCH, seed=3, log_every_tokens=2 * BATCH, eval_every_tokens=4 * BATCH, eval_tokens=64,
            checkpoint_every_tokens=10**9,
            resample=NoResample(), model_name="synthetic")
SCENARIOS = {
    # Neel's resampling from the training window, right after a checkpoint (as the original: save, then resample)
    "kaiming": dict(resample=KaimingResample(every_tokens=4 * BATCH, freq=0.05), checkpoint_every_tokens=4 * BATCH),
    # Anthropic's: held-out inputs, loss²-weighted seeds, Adam moments of the new latents zeroed (then broadcast)
    "anthropic": dict(resample=AnthropicResample(at_tokens=(5 * BATCH, 9 * BATCH), window_tokens=2 * BATCH, inputs=128)),
    "per_token": dict(loss_convention="per_token", l1_coeff=0.1, decoder_norm="project_grad_and_renorm"),
    # autograd's backward accumulating into the views of the flat gradient buffer, averaged by the same all-reduce
    "autograd": dict(step_impl="autograd"),
    # the sparse step's gradients (over the active pairs only) through the same flat buffer and all-reduce
    "sparse": dict(step_impl="sparse"),
}


# ----- shared by the test process and the rank processes ---------------------------------------------------------------
def planted(n: int, seed: int) -> torch.Tensor:
    """`n` activations from a planted sparse dictionary (32 directions, 10% firing, non-negative codes)."""
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(32, D_IN, generator=g)
    codes = (torch.rand(n, 32, generator=g) < 0.1) * torch.rand(n, 32, generator=g) * 3
    return codes @ dictionary


def scenario_data(name: str) -> tuple[TrainConfig, torch.Tensor, ActivationEvaluator | None]:
    """(config, global batches [steps, batch, d_in], evaluator) of a scenario."""
    cfg = TrainConfig(**{**BASE, **SCENARIOS[name]})
    evaluator = ActivationEvaluator(planted(256, seed=1), batch_size=64) if cfg.resample.method == "anthropic" else None
    return cfg, planted(STEPS * BATCH, seed=0).reshape(STEPS, BATCH, D_IN), evaluator


PLANTED_DEAD = 16


def start(trainer: Trainer) -> None:
    """Fresh SAE with latents 0..15 planted dead (a large negative encoder bias), so that resampling has work to do."""
    trainer.init_fresh(D_IN)
    with torch.no_grad():
        trainer.sae.b_enc[:PLANTED_DEAD] = -100.0


def trained_tensors(trainer: Trainer) -> dict[str, torch.Tensor]:
    out = {f"sae/{k}": v.detach().clone() for k, v in trainer.sae.state_dict().items()}
    for name, p in trainer.sae.named_parameters():
        for k in ("exp_avg", "exp_avg_sq"):
            out[f"adam/{name}/{k}"] = trainer.opt.state[p][k].clone()
    out["tracker/tokens_since_fired"] = trainer.tracker.tokens_since_fired.clone()
    out["tracker/window_counts"] = trainer.tracker.window_counts.clone()
    return out


def worker(out_dir: Path) -> None:
    """One rank: each scenario on this rank's slice of every global batch (rank r gets rows [r b, (r+1) b))."""
    import torch.distributed as dist

    from trainers.ddp_launch import DDPConfig, init_process_group

    rank, world = init_process_group(TrainConfig(), DDPConfig(timeout_s=60))
    b = BATCH // world
    for name in SCENARIOS:
        cfg, batches, evaluator = scenario_data(name)
        trainer = Trainer(cfg, make_buffer(cfg, iter(()), rank, world), None, out_dir / name, evaluator, TorchDistributed())
        start(trainer)
        trainer.run(iter(batches[:, rank * b:(rank + 1) * b]), progress=False)
        tensors = trained_tensors(trainer)
        divergence = trainer.coll.max_divergence(list(tensors.values()))
        save_file(tensors, str(out_dir / name / f"rank{rank}.safetensors"), metadata={"divergence": str(divergence)})
        trainer.writer.close()
    uneven(out_dir / "uneven", rank, world)
    dist.barrier()  # rank 0 hosts the rendezvous store: nobody leaves while another rank still needs it
    dist.destroy_process_group()


def uneven(out_dir: Path, rank: int, world: int) -> None:
    """Rank r has r batches fewer than rank 0: every rank must stop together when the first one runs dry."""
    cfg, batches, _ = scenario_data("per_token")
    b = BATCH // world
    trainer = Trainer(cfg, make_buffer(cfg, iter(()), rank, world), None, out_dir, None, TorchDistributed())
    trainer.init_fresh(D_IN)
    stopped = trainer.run(iter(batches[:STEPS - rank, rank * b:(rank + 1) * b]), progress=False)
    (out_dir / f"rank{rank}.json").write_text(json.dumps({"stopped": stopped, "step": trainer.step}))
    trainer.writer.close()


# ----- launching ---------------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank: int, world: int, port: int) -> dict[str, str]:
    """The variables torchrun gives each worker (env:// rendezvous on this machine), one thread per rank."""
    return {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def start_ranks(args: list[str], world: int = WORLD) -> list[subprocess.Popen]:
    port = free_port()
    return [subprocess.Popen([sys.executable, *args], env=rank_env(r, world, port), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True) for r in range(world)]


def wait_ranks(procs: list[subprocess.Popen], timeout: float) -> list[tuple[int, str]]:
    """(returncode, stderr) of every rank; kills them all and fails if any is still running after `timeout` s."""
    results = []
    try:
        for p in procs:
            _, err = p.communicate(timeout=timeout)
            results.append((p.returncode, err))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"ranks still running after {timeout} s: a hang")
    return results


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    results = wait_ranks(start_ranks([__file__, "worker", str(out)]), timeout=150)
    for rc, err in results:
        assert rc == 0, err[-3000:]
    return out


def single_process(name: str, out_dir: Path) -> Trainer:
    cfg, batches, evaluator = scenario_data(name)
    trainer = Trainer(cfg, make_buffer(cfg, iter(())), None, out_dir, evaluator)
    start(trainer)
    trainer.run(iter(batches), progress=False)
    trainer.writer.close()
    return trainer


# ----- tests: 2 ranks ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_two_ranks_equal_single_process_on_the_global_batch(ddp_run, name, tmp_path):
    ref = trained_tensors(single_process(name, tmp_path))
    got = load_file(str(ddp_run / name / "rank0.safetensors"))
    assert set(got) == set(ref)
    for k in ref:
        if k.startswith("tracker/"):
            assert torch.equal(got[k], ref[k]), k  # integer counts over the same global tokens: exact
        else:
            torch.testing.assert_close(got[k], ref[k], rtol=1e-4, atol=1e-5, msg=k)
    assert not torch.equal(ref["sae/W_enc"], single_process_init(name)), "training must move the weights"


def single_process_init(name: str) -> torch.Tensor:
    cfg, _, _ = scenario_data(name)
    torch.manual_seed(cfg.seed)
    from sae_analysis import SAE

    return SAE(cfg.sae_config(D_IN)).W_enc.detach()


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_logged_metrics_are_global(ddp_run, name, tmp_path):
    single_process(name, tmp_path)
    ref, got = read_metrics(tmp_path), read_metrics(ddp_run / name)
    for event, cols in {"train": ["step", "tokens", "loss", "l2", "l1", "l0", "explained_variance"],
                        "eval": ["step", "frac_dead", "freq_tokens"]}.items():
        r, g = ref[ref.event == event][cols].reset_index(drop=True), got[got.event == event][cols].reset_index(drop=True)
        assert len(r) == len(g) > 0
        for c in cols:
            torch.testing.assert_close(torch.tensor(g[c].to_numpy(float)), torch.tensor(r[c].to_numpy(float)),
                                       rtol=1e-4, atol=1e-5, msg=f"{event}.{c}")
    rs, gs = ref[ref.event == "resample"], got[got.event == "resample"]
    assert len(rs) == len(gs) == {"per_token": 0, "autograd": 0, "sparse": 0, "kaiming": 3, "anthropic": 2}[name]
    assert [list(v) for v in rs.get("latents", [])] == [list(v) for v in gs.get("latents", [])]


@pytest.mark.parametrize("name", ["kaiming", "anthropic"])
def test_after_resampling_all_ranks_hold_identical_state(ddp_run, name):
    events = read_metrics(ddp_run / name)
    first = events[events.event == "resample"].latents.iloc[0]
    assert set(range(PLANTED_DEAD)) <= set(first), "the planted dead latents are resampled"
    r0, r1 = (load_file(str(ddp_run / name / f"rank{r}.safetensors")) for r in range(WORLD))
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    from safetensors import safe_open

    with safe_open(str(ddp_run / name / "rank0.safetensors"), framework="pt") as f:
        assert float(f.metadata()["divergence"]) == 0.0


def test_ranks_stop_together_when_one_runs_out_of_data(ddp_run):
    for r in range(WORLD):
        assert json.loads((ddp_run / "uneven" / f"rank{r}.json").read_text()) == {"stopped": "data_exhausted",
                                                                                   "step": STEPS - (WORLD - 1)}


def test_checkpoints_written_once_by_rank0_with_per_rank_data_state(ddp_run):
    run = ddp_run / "kaiming"
    checks = read_metrics(run).query("event == 'ddp_check'")
    assert list(checks.step) == [4, 8, 12] and (checks.max_rank_divergence == 0.0).all()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [f"{t:012d}" for t in (128, 256, 384)]
    meta = json.loads((run / "checkpoints" / f"{384:012d}" / "trainer_cfg.json").read_text())
    assert meta["batch_size"] == BATCH  # the global batch
    for r in range(WORLD):  # only the latest step's file survives
        assert [p.name for p in (run / "state" / f"rank{r}").iterdir()] == [f"{12:012d}.safetensors"]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_world_size_one_reproduces_the_single_process_trainer(tmp_path, monkeypatch, device):
    """The whole pipeline (buffer, step with the flat all-reduce, tracker, resampling, checkpoints) on a group of one
    rank (gloo on CPU, nccl on CUDA) ends where `train` ends on the same activations."""
    import torch.distributed as dist

    from trainers import TensorActivations, train
    from trainers.ddp_launch import DDPConfig, init_process_group

    cfg = TrainConfig(**{**BASE, **SCENARIOS["kaiming"], "num_tokens": 40 * BATCH, "checkpoint_every_tokens": 20 * BATCH,
                         "resample": KaimingResample(every_tokens=20 * BATCH, freq=0.4), "buffer_mult": 4, "end_of_data": "wrap",
                         "device": device})
    data = planted(20 * BATCH, seed=0)
    ref = train(cfg, TensorActivations(data, chunk=64, wrap=True), out_dir=tmp_path / "single", progress=False)
    for k, v in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(k, v)
    init_process_group(cfg, DDPConfig(timeout_s=30.0))
    try:
        got = train(cfg, TensorActivations(data, chunk=64, wrap=True), out_dir=tmp_path / "ddp", progress=False,
                    collective=TorchDistributed())
    finally:
        dist.destroy_process_group()
    assert (got.step, got.tokens, got.stopped) == (ref.step, ref.tokens, ref.stopped) == (40, 40 * BATCH, "done")
    for k, v in ref.sae.state_dict().items():
        torch.testing.assert_close(got.sae.state_dict()[k], v, rtol=1e-4, atol=1e-5, msg=k)
    resampled = [read_metrics(tmp_path / r).query("event == 'resample'").latents.tolist() for r in ("single", "ddp")]
    assert resampled[0] == resampled[1] and all(len(r) > 0 for r in resampled[0])  # latents resampled at steps 20, 40


# ----- tests: pure helpers -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("convention", ["original", "per_token"])
@pytest.mark.parametrize("world", [2, 3])
def test_rank_objective_averaged_gradient_is_the_global_gradient(make_sae, convention, world):
    sae = make_sae(d_in=8, d_sae=32, loss_convention=convention, l1_coeff=0.01)
    x = torch.randn(world * 5, 8, generator=torch.Generator().manual_seed(0)) + 0.5
    full = sae(x)
    ref = torch.autograd.grad(full.loss, list(sae.parameters()))
    grads, l2s, l1s = [], 0.0, 0.0
    for chunk in x.chunk(world):
        out = sae(chunk)
        grads.append(torch.autograd.grad(rank_objective(out, world, convention), list(sae.parameters())))
        l2s, l1s = l2s + float(out.l2.detach()), l1s + float(out.l1.detach())
    for i, g in enumerate(ref):
        torch.testing.assert_close(sum(gr[i] for gr in grads) / world, g)  # what the all-reduce mean produces
    torch.testing.assert_close(torch.tensor(global_losses(l2s, l1s, world, convention), dtype=torch.float64),
                               torch.stack([full.l2, full.l1]).detach().double(), rtol=1e-5, atol=1e-6)


def test_shard_sequences_are_disjoint_equal_and_in_order():
    tokens = torch.arange(23 * 3).reshape(23, 3)
    shards = [shard_sequences(tokens, r, 4) for r in range(4)]
    assert all(len(s) == 5 for s in shards)
    assert torch.equal(torch.cat(shards), tokens[:20])
    with pytest.raises(ValueError):
        shard_sequences(tokens, 4, 4)
    with pytest.raises(ValueError):
        shard_sequences(tokens[:3], 0, 4)


def test_rank_batch_must_divide_the_global_batch():
    with pytest.raises(ValueError, match="divisible"):
        make_buffer(TrainConfig(batch_size=30, buffer_mult=2), iter(()), 0, 4)
    buf = make_buffer(TrainConfig(batch_size=32, buffer_mult=3), iter(()), 1, 4)
    assert (buf.batch_size, buf.size) == (8, 24)


def test_rank_state_files_round_trip_prune_and_check_world_size(tmp_path):
    full = {"sae/W_enc": torch.ones(2), "buffer/storage": torch.arange(4.0), "rng/torch": torch.arange(3, dtype=torch.uint8)}
    meta = {"step": 7, "buffer": {"scalars": {"ptr": 2}}, "source": {"position": 5}, "world_size": 2,
            "step_state": {"sparse": True}}  # this rank's AutoStep mode (rank 0's shared copy may differ)
    save_rank_state(tmp_path, 1, 3, full, meta)
    save_rank_state(tmp_path, 1, 7, full, meta)
    prune_rank_states(tmp_path, 1, keep_step=7)
    assert [p.name for p in rank_state_path(tmp_path, 1, 7).parent.iterdir()] == [f"{7:012d}.safetensors"]
    shared = {"sae/W_enc": torch.zeros(2)}
    tensors, merged = load_rank_state(tmp_path, 1, 2, shared, {"step": 7, "world_size": 2, "step_state": {"sparse": False}})
    assert merged["step_state"] == {"sparse": True}
    assert set(tensors) == set(full) and torch.equal(tensors["sae/W_enc"], torch.zeros(2))  # the shared copy wins
    assert torch.equal(tensors["buffer/storage"], full["buffer/storage"])
    assert merged["source"] == {"position": 5} and merged["buffer"] == meta["buffer"]
    with pytest.raises(ValueError, match="same number"):
        load_rank_state(tmp_path, 1, 4, shared, {"step": 7, "world_size": 2})
    with pytest.raises(FileNotFoundError, match="rank 0"):
        load_rank_state(tmp_path, 0, 2, shared, {"step": 7, "world_size": 2})


def test_collective_failures_are_told_apart_from_own_errors():
    gloo_reset = ("[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:47272: Connection "
                  "reset by peer.")
    gloo_timeout = "[/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 5000ms for recv"
    assert is_collective_failure(RuntimeError(gloo_reset)) and is_collective_failure(RuntimeError(gloo_timeout))
    assert not is_collective_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x8 and 16x32)"))


def test_ddp_config_validates():
    from trainers.ddp_launch import DDPConfig

    assert DDPConfig().backend == "auto" and DDPConfig().timeout_s > 0
    with pytest.raises(ValueError):
        DDPConfig(timeout_s=0.0)
    with pytest.raises((ValueError, TypeError)):
        DDPConfig(backend="mpi")  # type: ignore[arg-type]


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    worker(Path(sys.argv[2]))
