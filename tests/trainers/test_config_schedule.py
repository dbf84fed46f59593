"""Schedule fields count tokens: today's single-process trajectory is pinned, old configs and flags (step-counted) are
migrated to the same schedule, and nonsense intervals are refused or warned about."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sae_analysis.cli import main
from sae_analysis.io.runs import read_metrics
from trainers import (
    ActivationEvaluator,
    AnthropicResample,
    KaimingResample,
    TensorActivations,
    TrainConfig,
    preset,
    train,
)
from trainers.config import ConfigError, schedule_warnings
from trainers.demo.build import finished_run_verdict
from trainers.demo.config import full_config, seed_config

DEMO = Path(__file__).parents[2] / "sae_analysis" / "data" / "demo"
OLD_CONFIGS = Path(__file__).parent / "data"
PINNED = {  # recorded at the base commit e1bb25b (step-counted fields) on an AVX512 CPU, one thread
    "cpu": "AVX512",
    "weights_sha256": "fbdf81d0f555be84507fb90be4d2e20451ea70c83502fd330fe7b757e057d985",
    "losses": [0.957652747631073, 0.5570894479751587, 0.4578531086444855, 0.3676862418651581, 0.3859609067440033,
               0.38558846712112427, 0.264822781085968, 0.18508143723011017, 0.18851238489151, 0.16606369614601135,
               0.11834115535020828, 0.12555353343486786],
}


def pinned_run(tmp_path: Path) -> tuple[str, list[float], int]:
    g = torch.Generator().manual_seed(7)
    planted = torch.randn(24, 16, generator=g)
    planted /= planted.norm(dim=-1, keepdim=True)
    acts = (torch.rand(8000, 24, generator=g) * (torch.rand(8000, 24, generator=g) < 0.08)) @ planted
    b = 64
    cfg = TrainConfig(model_name="synthetic", batch_size=b, buffer_mult=8, buffer_dtype="float32", lr=3e-3, l1_coeff=2e-5,
                      num_tokens=b * 120, seed=5, dict_mult=2, end_of_data="wrap",
                      resample=KaimingResample(every_tokens=40 * b, freq=0.05), eval_tokens=1024, resample_freq_tokens=1024,
                      log_every_tokens=10 * b, eval_every_tokens=60 * b, checkpoint_every_tokens=40 * b)
    train(cfg, TensorActivations(acts, chunk=100, wrap=True), out_dir=tmp_path, evaluator=ActivationEvaluator(acts[:2048]),
          progress=False)
    w = load_file(str(tmp_path / "final" / "sae_weights.safetensors"))
    m = read_metrics(tmp_path)
    digest = hashlib.sha256(b"".join(w[k].numpy().tobytes() for k in sorted(w))).hexdigest()
    return digest, [float(v) for v in m[m.event == "train"].loss], int((m.event == "resample").sum())


def test_single_process_trajectory_is_unchanged(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        digest, losses, n_resample = pinned_run(tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert n_resample == 3 and len(losses) == 12  # resamples at steps 40, 80, 120; a log row every 10 steps
    if torch.backends.cpu.get_cpu_capability() == PINNED["cpu"]:
        assert losses == PINNED["losses"] and digest == PINNED["weights_sha256"]
    else:  # another vector unit rounds differently: same trajectory up to rounding
        assert losses == pytest.approx(PINNED["losses"], rel=1e-4)


@pytest.mark.parametrize("seed", [1, 2])
def test_first_build_demo_configs_migrate_to_its_build_config(seed):
    """The first demo build (2026-11-28, lr 1e-3) wrote its trainer configs with the old step-based names; kept as test
    data since the rebuild, they still convert to that build's seed configs."""
    old = json.loads((OLD_CONFIGS / f"first_build_seed{seed}_trainer_cfg.json").read_text())
    assert "log_every" in old and "log_every_tokens" not in old  # written with the old names
    wanted = dataclasses.replace(seed_config(full_config(), seed), lr=1e-3)  # the first build's learning rate
    assert finished_run_verdict(TrainConfig.from_dict(old), wanted) == "reuse"
    assert finished_run_verdict(TrainConfig.from_dict(old), seed_config(full_config(), seed)) == "retrain"  # lr differs
    manifest = json.loads((OLD_CONFIGS / "first_build_sae_train_config.json").read_text())
    assert TrainConfig.from_dict(manifest).checkpoint_every_tokens == old["checkpoint_every"]


@pytest.mark.parametrize("seed", [1, 2])
def test_committed_demo_configs_are_the_build_config(seed):
    saved = json.loads((DEMO / f"seed{seed}" / "trainer_cfg.json").read_text())
    assert finished_run_verdict(TrainConfig.from_dict(saved), seed_config(full_config(), seed)) == "reuse"


def test_old_dicts_convert_steps_to_tokens_for_their_method():
    old = {"batch_size": 100, "log_every": 5, "eval_every": 50, "checkpoint_every": 12_345, "resample": "anthropic",
           "resample_steps": [10, 30], "resample_window": 4, "resample_every": 7}
    with pytest.warns(FutureWarning, match="flat resampling fields"):
        cfg = TrainConfig.from_dict(old)
    assert (cfg.log_every_tokens, cfg.eval_every_tokens, cfg.checkpoint_every_tokens) == (500, 5_000, 12_345)
    assert cfg.resample == AnthropicResample(at_tokens=(1_000, 3_000), window_tokens=400)  # resample_every: not carried
    with pytest.warns(FutureWarning):
        kaiming = TrainConfig.from_dict({**old, "resample": "kaiming"})
    assert kaiming.resample == KaimingResample(every_tokens=700)
    with pytest.warns(FutureWarning):
        assert TrainConfig.from_dict({**old, "log_every_tokens": 300}).log_every_tokens == 300  # the new name wins


def test_deprecated_flags_convert_with_the_runs_batch_size():
    with pytest.warns(FutureWarning, match="--log_every_tokens"):
        cfg = preset("demo").with_overrides({"log_every": "3", "batch_size": "128"})
    assert cfg.log_every_tokens == 3 * 128
    with pytest.warns(FutureWarning):
        cfg = preset("demo").with_overrides({"resample": "anthropic", "resample_steps": "2,4"})
    assert cfg.resample.at_tokens == (512, 1024)


@pytest.mark.parametrize("name", ["log_every_tokens", "eval_every_tokens", "checkpoint_every_tokens",
                                  "resample_every_tokens", "resample_window_tokens"])
def test_an_interval_below_one_batch_is_refused(name):
    method = {"resample_every_tokens": "kaiming", "resample_window_tokens": "anthropic"}.get(name)
    build = (lambda v: preset("gelu-1l-run1").with_overrides({"resample": method, name: v}, flat_flags=True)) if method \
        else (lambda v: TrainConfig(**{name: v}))
    with pytest.raises(ConfigError, match=f"{name}=50 is smaller than one batch"):
        build(50)
    build(TrainConfig.batch_size)  # one batch: every step


def test_checkpoint_every_50_is_refused_in_one_line(capsys, tmp_path):
    np_file = tmp_path / "t.npy"
    import numpy as np

    np.save(np_file, np.zeros((4, 8), dtype=np.int64))
    assert main(["train", "--preset", "gelu-1l-run1", "--data", str(np_file), "--checkpoint-every-tokens", "50",
                 "--model", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoint_every_tokens=50 is smaller than one batch (4096 tokens)" in err


def test_frequency_measurement_dominating_the_run_is_warned_about():
    run1 = preset("gelu-1l-run1")
    assert schedule_warnings(run1) == []  # 3,276,800 of 122,880,000 tokens per checkpoint: 2.7 %
    heavy = run1.with_overrides({"checkpoint_every_tokens": str(4096 * 100)})
    msgs = schedule_warnings(heavy)
    assert any("dominates" in m and "800%" in m for m in msgs)
    edge = run1.with_overrides({"checkpoint_every_tokens": str(4 * 3_276_800),
                                "resample": KaimingResample(every_tokens=4 * 3_276_800)})
    assert schedule_warnings(edge) == []  # exactly 25 %: not more than the threshold
