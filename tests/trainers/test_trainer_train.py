"""The training loop: learning, logged metrics against their definitions, checkpoints, Ctrl-C, NaN, end of data, config."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sae_analysis import SAE
from sae_analysis.io.runs import read_frequency_snapshots, read_metrics
from trainers import (
    ActivationEvaluator,
    AnthropicResample,
    KaimingResample,
    NonFiniteLossError,
    NoResample,
    TensorActivations,
    TrainConfig,
    preset,
    train,
)
from trainers.config import ConfigError
from trainers.train import make_buffer


def sparse_data(n: int = 12_000, d_in: int = 16, n_true: int = 24, p: float = 0.06, seed: int = 0) -> torch.Tensor:
    """Activations generated from a planted dictionary of unit directions with sparse non-negative coefficients."""
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(n_true, d_in, generator=g)
    D /= D.norm(dim=-1, keepdim=True)
    coef = torch.rand(n, n_true, generator=g) * (torch.rand(n, n_true, generator=g) < p)
    return coef @ D


def small_cfg(**kw) -> TrainConfig:
    base = dict(model_name="synthetic", batch_size=64, buffer_mult=8, buffer_dtype="float32", lr=3e-3, l1_coeff=2e-5,
                num_tokens=64 * 300, seed=0, dict_mult=2, end_of_data="wrap", resample=NoResample(), log_every_tokens=64 * 10,
                eval_every_tokens=64 * 100, eval_tokens=1024, checkpoint_every_tokens=64 * 100, resample_freq_tokens=2048)
    return TrainConfig(**{**base, **kw})


def run(cfg, acts, tmp_path, name="run", **kw):
    src = TensorActivations(acts, chunk=100, wrap=cfg.end_of_data == "wrap")
    return train(cfg, src, out_dir=tmp_path / name, evaluator=ActivationEvaluator(acts[:2048]), progress=False, **kw)


def test_loss_falls_on_synthetic_sparse_data(tmp_path):
    acts = sparse_data()
    result = run(small_cfg(num_tokens=64 * 200, lr=5e-3), acts, tmp_path)
    rows = read_metrics(tmp_path / "run").query("event == 'train'")
    assert result.stopped == "done" and result.step == 200 and result.tokens == 200 * 64
    assert rows.loss.iloc[-3:].mean() < 0.2 * rows.loss.iloc[:2].mean()
    assert rows.explained_variance.iloc[-1] > 0.9
    assert (rows.l0 > 0).all() and (rows.l0 <= 32).all()


def test_logged_metrics_equal_their_definitions(tmp_path):
    """Step 1 is logged with the initial weights: recompute l2, l1, loss, L0 and explained variance by hand."""
    acts = sparse_data(n=2000)
    cfg = small_cfg(num_tokens=64, log_every_tokens=64, l1_coeff=1e-3)
    run(cfg, acts, tmp_path)
    row = read_metrics(tmp_path / "run").query("event == 'train'").iloc[0]
    x = next(make_buffer(cfg, TensorActivations(acts, chunk=100)))
    torch.manual_seed(cfg.seed)
    sae = SAE(cfg.sae_config(16))
    with torch.no_grad():
        f = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
        x_hat = f @ sae.W_dec + sae.b_dec
    l2 = sum(float(((x_hat[b] - x[b]) ** 2).sum()) for b in range(64)) / 64
    l1 = cfg.l1_coeff * float(f.abs().sum())  # 'original' convention: summed over latents and the batch
    l0 = float((f > 0).sum()) / 64
    ev = 1 - float(((x - x_hat) ** 2).sum()) / float(((x - x.mean(0)) ** 2).sum())
    assert row.l2 == pytest.approx(l2, rel=1e-5) and row.l1 == pytest.approx(l1, rel=1e-5)
    assert row.loss == pytest.approx(l2 + l1, rel=1e-5)
    assert row.l0 == pytest.approx(l0) and row.explained_variance == pytest.approx(ev, rel=1e-5)


def test_checkpoints_snapshots_and_eval_rows(tmp_path):
    from sae_analysis.io.native import load_saelens

    acts = sparse_data(n=4000)
    result = run(small_cfg(num_tokens=64 * 250, resample=KaimingResample(every_tokens=64 * 100)), acts, tmp_path)
    out = tmp_path / "run"
    dirs = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert dirs == [f"{64 * s:012d}" for s in (100, 200, 250)]
    final = load_saelens(out / "final")
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        assert torch.equal(getattr(final, name), getattr(result.sae, name))
    assert json.loads((out / "final" / "trainer_cfg.json").read_text())["d_in"] == 16
    tokens, log10 = read_frequency_snapshots(out)
    assert tokens.tolist() == [6400, 12800, 16000] and log10.shape == (3, 32)
    assert log10.min() >= -6.5 - 1e-3 and log10.max() <= 0.0
    df = read_metrics(out)
    ev = df.query("event == 'eval'")
    assert ev.step.tolist() == [100, 200] and {"frac_dead", "frac_below_1e-5", "frac_below_1e-6"} <= set(ev.columns)
    res = df.query("event == 'resample'")
    assert res.step.tolist() == [100, 200] and all(len(r) == n for r, n in zip(res.latents, res.n))


def test_ctrl_c_saves_and_resume_is_bit_identical(tmp_path):
    """SIGINT in the middle of the run: a checkpoint is written, the run returns 'interrupted', and resuming it ends
    with exactly the weights of an uninterrupted run (Anthropic resampling included, so Adam state matters)."""
    acts = sparse_data(n=3000)
    cfg = small_cfg(num_tokens=64 * 260, checkpoint_every_tokens=64 * 70,
                    resample=AnthropicResample(at_tokens=(64 * 120, 64 * 200), window_tokens=64 * 30, inputs=512))
    ref = run(cfg, acts, tmp_path, "ref")

    class InterruptAt(TensorActivations):
        def __next__(self):
            if self.position == 1500:
                os.kill(os.getpid(), signal.SIGINT)
            return super().__next__()

    src = InterruptAt(acts, chunk=100, wrap=True)
    first = train(cfg, src, out_dir=tmp_path / "cut", evaluator=ActivationEvaluator(acts[:2048]), progress=False)
    assert first.stopped == "interrupted" and 0 < first.step < 260
    assert (tmp_path / "cut" / "checkpoints" / f"{first.tokens:012d}").is_dir() and not (tmp_path / "cut" / "final").exists()
    second = run(cfg, acts, tmp_path, "cut", resume=True)
    assert second.step == 260
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        assert torch.equal(getattr(second.sae, name), getattr(ref.sae, name)), name
    a, b = read_metrics(tmp_path / "ref"), read_metrics(tmp_path / "cut")
    assert a.query("event == 'train'").loss.tolist() == b.query("event == 'train'").loss.tolist()
    assert a.query("event == 'resample'").latents.tolist() == b.query("event == 'resample'").latents.tolist()


def test_existing_run_needs_resume(tmp_path):
    acts = sparse_data(n=2000)
    run(small_cfg(num_tokens=640), acts, tmp_path)
    with pytest.raises(FileExistsError, match="resume"):
        run(small_cfg(num_tokens=640), acts, tmp_path)
    again = run(small_cfg(num_tokens=640), acts, tmp_path, resume=True)  # a finished run resumes to a no-op
    assert again.step == 10


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path):
    acts = sparse_data(n=3000)
    acts[2000:] = float("nan")
    cfg = small_cfg(num_tokens=64 * 200, end_of_data="stop", checkpoint_every_tokens=64 * 10, buffer_mult=4)
    with pytest.raises(NonFiniteLossError, match="last good checkpoint is .*checkpoints"):
        run(cfg, acts, tmp_path)
    out = tmp_path / "run"
    assert not (out / "final").exists()
    last = sorted((out / "checkpoints").iterdir())[-1]
    assert torch.isfinite(load_file(str(last / "sae_weights.safetensors"))["W_enc"]).all()
    assert read_metrics(out).event.iloc[-1] == "error"


def test_end_of_data_stop_ends_the_run(tmp_path):
    acts = sparse_data(n=64 * 20)
    result = run(small_cfg(end_of_data="stop"), acts, tmp_path)
    assert result.stopped == "data_exhausted" and result.step == 20
    assert (tmp_path / "run" / "final" / "sae_weights.safetensors").exists()


@pytest.mark.parametrize("norm", ["project_grad", "project_grad_and_renorm"])
def test_decoder_norm_options(tmp_path, norm):
    result = run(small_cfg(num_tokens=64 * 50, decoder_norm=norm, lr=1e-2), sparse_data(n=4000), tmp_path)
    norms = result.sae.decoder_norms()
    if norm == "project_grad_and_renorm":
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    else:
        assert (norms - 1).abs().max() > 1e-3  # Adam's step is not orthogonal to the row: norms drift (REPLICATION §3.4)


def test_bf16_autocast_step_trains(tmp_path):
    result = run(small_cfg(num_tokens=64 * 100, autocast_bf16=True), sparse_data(n=4000), tmp_path)
    rows = read_metrics(tmp_path / "run").query("event == 'train'")
    assert result.sae.W_enc.dtype == torch.float32 and rows.loss.iloc[-1] < 0.5 * rows.loss.iloc[0]


def test_presets_and_config_parsing():
    run1 = preset("gelu-1l-run1")
    hyper = (run1.batch_size, run1.buffer_mult, run1.lr, run1.beta1, run1.beta2, run1.l1_coeff)
    assert hyper == (4096, 384, 1e-4, 0.9, 0.99, 3e-4)
    assert (run1.dict_mult, run1.seq_len, run1.num_tokens, run1.seed, run1.model_batch) == (8, 128, 2_000_000_000, 52, 512)
    assert run1.hook_name == "blocks.0.mlp.hook_post" and run1.loss_convention == "original"
    assert run1.steps == 488_281 and run1.buffer_size == 1_572_864
    demo = preset("demo")
    assert TrainConfig.from_dict(json.loads(json.dumps(demo.to_dict()))) == demo
    cfg = run1.with_overrides({"num_tokens": "1e6", "resample": "anthropic", "resample_at_tokens": "40960,81920",
                               "autocast_bf16": "true", "d_in": "none"}, flat_flags=True)
    assert cfg.num_tokens == 1_000_000 and cfg.resample.at_tokens == (40960, 81920) and cfg.autocast_bf16 and cfg.d_in is None
    for bad in ({"end_of_data": "loop"}, {"batch_size": "0"}, {"no_such_key": "1"}, {"num_tokens": "1.5"}, {"lr": "-1"}):
        with pytest.raises(ValueError):
            run1.with_overrides(bad)
    with pytest.raises(ConfigError):
        preset("nope")
    assert run1.with_overrides({"resample": "anthropic"}).resample == AnthropicResample()  # a method name: its defaults
    _ = np.float16  # snapshots are float16 arrays read back as float32


def test_end_of_data_freeze_keeps_training_on_the_last_pool(tmp_path, caplog):
    acts = sparse_data(n=64 * 12)
    with caplog.at_level("WARNING"):
        result = run(small_cfg(end_of_data="freeze", num_tokens=64 * 40), acts, tmp_path)
    assert result.stopped == "done" and result.step == 40 and "exhausted" in caplog.text


def test_anthropic_resampling_without_an_evaluator_revives_dead_latents(tmp_path):
    """A strong L1 kills latents; at the resample step they are reseeded from the next training batches (scored, not
    trained on) and the event lists them with their frequency since the last checkpoint."""
    acts = sparse_data(n=6000)
    cfg = small_cfg(num_tokens=64 * 60, l1_coeff=3e-2, lr=1e-2, decoder_norm="project_grad",
                    resample=AnthropicResample(at_tokens=(64 * 50,), window_tokens=64 * 3, inputs=256))
    src = TensorActivations(acts, chunk=100, wrap=True)
    result = train(cfg, src, out_dir=tmp_path / "run", progress=False)
    event = read_metrics(tmp_path / "run").query("event == 'resample'").iloc[0]
    assert event.step == 50 and event.n == len(event.latents) > 0
    assert len(set(event.latents)) == event.n == len(event.prior_freq) and max(event.latents) < 32
    assert result.step == 60, "the batches scored for resampling are not counted as training steps"
