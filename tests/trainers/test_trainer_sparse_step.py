"""The sparse training step equals the fused step and autograd (values and gradients) at every planted density, trains
the same, resumes bit-identically; `auto` switches between them with hysteresis on the measured density."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from test_trainer_train import small_cfg, sparse_data

from sae_analysis.io.runs import read_metrics
from trainers import ActivationEvaluator, TensorActivations, train
from trainers.config import TrainConfig
from trainers.sparse_step import STEPS, ActivePairs, AutoStep, SparseStep, make_workspace, plant_density_
from trainers.step import FusedStep
from trainers.train import make_optimizer, train_step

DENSITIES = {"dead": 0.0, "sparse": 0.05, "half": 0.5, "all": 1.0}


def batch(n: int, d_in: int, seed: int = 0) -> torch.Tensor:
    return torch.relu(torch.randn(n, d_in, generator=torch.Generator().manual_seed(seed))).bfloat16().float()


def grads(sae) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in sae.named_parameters()}


@pytest.mark.parametrize("d_in", [48, 64])
@pytest.mark.parametrize("convention", ["original", "per_token"])
@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("regime", list(DENSITIES))
def test_sparse_step_matches_fused_and_autograd(make_sae, d_in, convention, fold, regime):
    sae = make_sae(d_in=d_in, d_sae=2 * d_in, loss_convention=convention, apply_b_dec_to_input=fold, l1_coeff=1e-2)
    x = batch(40, d_in, seed=d_in)
    plant_density_(sae, x, DENSITIES[regime])
    ref = sae(x)
    ref.loss.backward()
    auto_grads = grads(sae)
    fused = FusedStep().forward_backward(sae, x)
    fused_grads = grads(sae)
    for p in sae.parameters():
        p.grad = torch.full_like(p, 123.0)  # stale gradients must be overwritten, not accumulated
    ws = SparseStep()
    for _ in range(2):  # the second call reuses the workspace
        out = ws.forward_backward(sae, x.bfloat16())
    assert ws.density == pytest.approx(round(DENSITIES[regime] * 40) / 40)
    assert int((out.acts > 0).sum()) == round(DENSITIES[regime] * 40) * 2 * d_in
    for ref_out in (ref, fused):
        for field in ("x_hat", "acts", "l2", "l1", "loss"):
            torch.testing.assert_close(getattr(out, field), getattr(ref_out, field).detach(), rtol=1e-5, atol=1e-6)
    for ref_grads in (auto_grads, fused_grads):
        for n, p in sae.named_parameters():
            torch.testing.assert_close(p.grad, ref_grads[n], rtol=1e-4, atol=1e-6 * float(ref_grads[n].abs().max()) + 1e-9)


def test_active_pairs_products_equal_dense_products(gen):
    f = torch.relu(torch.randn(33, 70, generator=gen) - 1.0)
    a, b = torch.randn(33, 5, generator=gen), torch.randn(70, 5, generator=gen)
    pairs = ActivePairs(f)
    assert pairs.nnz == int((f > 0).sum()) > 0
    torch.testing.assert_close(pairs.token_sums(b, pairs.values), f @ b)
    torch.testing.assert_close(pairs.latent_sums(a, pairs.values), f.T @ a)
    dense = torch.zeros_like(f)
    dense[f > 0] = pairs.sampled_dot(a, b)  # token-major order = boolean-mask order
    torch.testing.assert_close(dense, (a @ b.T) * (f > 0))


def test_plant_density_is_exact_per_latent(make_sae):
    sae, x = make_sae(d_in=16, d_sae=24), batch(200, 16)
    for density in (0.0, 0.005, 0.1, 1.0):
        plant_density_(sae, x, density)
        assert ((sae.encode(x) > 0).sum(0) == round(density * 200)).all()


def test_sparse_and_fused_training_agree(make_sae):
    x = torch.relu(torch.randn(30, 64, 16, generator=torch.Generator().manual_seed(0)) - 1.0)
    cfg = TrainConfig(lr=1e-3, batch_size=64)
    saes = [make_sae(d_in=16, d_sae=40, seed=3) for _ in range(2)]
    opts = [make_optimizer(s, cfg) for s in saes]
    spaces, densities = [FusedStep(), SparseStep()], []
    for b in x:
        a, s = (train_step(sae, opt, b, cfg, ws) for sae, opt, ws in zip(saes, opts, spaces))
        assert a.loss == pytest.approx(s.loss, rel=1e-4)
        densities.append(spaces[1].density)
    assert 0 < min(densities) and max(densities) < 0.5
    for n, p in saes[0].named_parameters():
        torch.testing.assert_close(p, getattr(saes[1], n), rtol=1e-4, atol=1e-5)


def run(cfg, acts, tmp_path, name, **kw):
    src = TensorActivations(acts, chunk=100, wrap=True)
    return train(cfg, src, out_dir=tmp_path / name, evaluator=ActivationEvaluator(acts[:1024]), progress=False, **kw)


@pytest.mark.parametrize("norm", ["project_grad", "project_grad_and_renorm"])
def test_train_trajectory_equals_fused(tmp_path, norm):
    """30 steps of `train()`: the sparse run logs the losses of the fused run and ends at its weights (fp32 tolerance)."""
    acts = sparse_data(n=3000)
    runs = {impl: run(small_cfg(num_tokens=64 * 30, log_every_tokens=64, decoder_norm=norm, step_impl=impl), acts, tmp_path, impl)
            for impl in ("fused", "sparse")}
    losses = {impl: read_metrics(tmp_path / impl).query("event == 'train'").loss.to_numpy() for impl in runs}
    assert len(losses["sparse"]) == 30 and losses["sparse"][-1] < 0.5 * losses["sparse"][0]
    torch.testing.assert_close(torch.tensor(losses["sparse"]), torch.tensor(losses["fused"]), rtol=1e-4, atol=0)
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        torch.testing.assert_close(getattr(runs["sparse"].sae, name), getattr(runs["fused"].sae, name), rtol=1e-4, atol=1e-5)


class RecordingAuto(AutoStep):
    modes: list[bool] = []

    def forward_backward(self, sae, x):
        self.modes.append(self.sparse)
        return super().forward_backward(sae, x)


@pytest.mark.parametrize("impl", ["sparse", "auto"])
def test_ctrl_c_and_resume_is_bit_identical(tmp_path, monkeypatch, impl):
    """Interrupted and resumed, a sparse run (or an auto run, with thresholds set so that it switches modes several
    times, the mode at the interruption saved) ends with the weights of an uninterrupted run of the same implementation."""
    monkeypatch.setattr("trainers.sparse_step.SPARSE_CROSSOVER_DENSITY", 0.36)  # this run's densities: 0.32-0.42
    monkeypatch.setattr("trainers.sparse_step.AUTO_HYSTERESIS", 1.05)
    monkeypatch.setitem(STEPS, "auto", RecordingAuto)
    monkeypatch.setattr(RecordingAuto, "modes", [])
    acts = sparse_data(n=3000)
    cfg = small_cfg(num_tokens=64 * 80, checkpoint_every_tokens=64 * 30, step_impl=impl)
    ref = run(cfg, acts, tmp_path, "ref")
    if impl == "auto":
        switches = sum(a != b for a, b in zip(RecordingAuto.modes, RecordingAuto.modes[1:]))
        assert len(RecordingAuto.modes) == 80 and switches >= 2

    class InterruptAt(TensorActivations):
        def __next__(self):
            if self.position == 1500:
                os.kill(os.getpid(), signal.SIGINT)
            return super().__next__()

    first = train(cfg, InterruptAt(acts, chunk=100, wrap=True), out_dir=tmp_path / "cut",
                  evaluator=ActivationEvaluator(acts[:1024]), progress=False)
    assert first.stopped == "interrupted" and 0 < first.step < 80
    second = run(cfg, acts, tmp_path, "cut", resume=True)
    assert second.step == 80
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        assert torch.equal(getattr(second.sae, name), getattr(ref.sae, name)), name


def test_auto_switches_with_hysteresis(make_sae):
    """Planted densities around a crossover of 0.1 (thresholds 0.05 and 0.2): the mode used at each step follows the
    previous step's density through both thresholds, and every step's result equals the fused step's."""
    sae, x = make_sae(d_in=16, d_sae=32), batch(100, 16)
    ws = AutoStep(crossover=0.1, hysteresis=2.0)
    planted = [0.5, 0.03, 0.1, 0.15, 0.3, 0.1, 0.03, 0.0]
    expected = [False, False, True, True, True, False, False, True]
    used = []
    for density in planted:
        plant_density_(sae, x, density)
        used.append(ws.sparse)
        out = ws.forward_backward(sae, x)
        got = grads(sae)
        ref = FusedStep().forward_backward(sae, x)
        torch.testing.assert_close(out.loss, ref.loss)
        for n, p in sae.named_parameters():
            torch.testing.assert_close(got[n], p.grad, rtol=1e-4, atol=1e-6 * float(p.grad.abs().max()) + 1e-9)
        assert ws.density == pytest.approx(density)
    assert used == expected
    assert ws.state_dict() == {"sparse": True}
    fresh = AutoStep()
    fresh.load_state_dict(ws.state_dict())
    assert fresh.sparse


def test_default_auto_thresholds_sit_where_the_benchmark_put_them():
    """Sparse below 5 % / 1.5 = 3.3 %, dense again above 5 % x 1.5 = 7.5 % (BENCHMARKS.md, "Sparse step": the sparse step
    is faster than fused up to ~8 % at d_in 2048 and above 10 % at d_in 512)."""
    ws = AutoStep()
    for density, sparse_before, sparse_after in [(0.034, False, False), (0.032, False, True), (0.074, True, True),
                                                 (0.076, True, False)]:
        ws.sparse = sparse_before
        ws.observe(density)
        assert ws.sparse is sparse_after, (density, sparse_before)


def test_step_impl_names_make_their_workspaces():
    assert type(make_workspace("fused")) is FusedStep and type(make_workspace("sparse")) is SparseStep
    assert type(make_workspace("auto")) is AutoStep and make_workspace("autograd") is None
    assert SparseStep.supports is FusedStep.supports
    assert TrainConfig().step_impl == "auto"  # the default (issue #14: never slower than fused, BENCHMARKS.md)


@pytest.mark.gpu
def test_sparse_step_on_cuda_matches_cpu(make_sae):
    sae, x = make_sae(d_in=64, d_sae=256, l1_coeff=1e-2), batch(128, 64)
    plant_density_(sae, x, 0.02)
    SparseStep().forward_backward(sae, x)
    cpu = grads(sae)
    sae = sae.cuda()
    out = SparseStep().forward_backward(sae, x.cuda())
    assert out.acts.is_cuda
    for n, p in sae.named_parameters():
        torch.testing.assert_close(p.grad.cpu(), cpu[n], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("impl", ["sparse", "auto"])
def test_l1_scale_of_the_data_parallel_path_matches_the_fused_step(make_sae, impl):
    """Under data parallelism each rank scales the L1 gradient (`l1_scale`); the sparse steps scale it as the fused one."""
    sae = make_sae(d_in=48, d_sae=96, l1_coeff=1e-2)
    x = batch(40, 48, seed=3)
    plant_density_(sae, x, 0.05)
    FusedStep().forward_backward(sae, x, l1_scale=0.25)
    ref = grads(sae)
    out = make_workspace(impl).forward_backward(sae, x, l1_scale=0.25)
    assert out.l1 == pytest.approx(float(sae(x).l1), rel=1e-5)  # the reported loss is not scaled
    for n, p in sae.named_parameters():
        torch.testing.assert_close(p.grad, ref[n], rtol=1e-4, atol=1e-6 * float(ref[n].abs().max()) + 1e-9)
