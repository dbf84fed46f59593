"""The cost estimate logged before the heavy steps (paper/cost.py): the arithmetic on known rates, a real probe, and no
probe when everything is cached."""

from __future__ import annotations

import logging

import pytest
import torch

from paper.cost import BUDGET_S, WEIGHT_WORK_ENCODINGS, estimate, probe_rates, say_cost
from sae_analysis.reconstruction import NEEL_FLOORS


def test_estimate_arithmetic_on_known_rates():
    rates = {"hook_s": 1e-4, "encode_s": 2e-4, "tail_s": 1e-3}
    est = estimate(rates, n_freq=10_000, n_loss=1_000, n_saes=3, n_runs=2)
    per_token = 1e-4 + 3 * 2e-4
    losses = 2 * 1_000 * (1e-4 + (4 + len(NEEL_FLOORS)) * 1e-3) + 2 * 1_000 * 1e-4
    assert est["frequency_s"] == pytest.approx(10_000 * per_token) and est["loss_s"] == pytest.approx(losses)
    assert est["seconds"] == pytest.approx(10_000 * per_token + losses)
    fits = est["tokens_fitting_budget"]
    assert fits % 128 == 0 and fits * per_token <= BUDGET_S - losses < (fits + 128) * per_token
    assert est["loss_seqs_fitting_budget"] == 8  # the 1,000 loss tokens given (8 sequences of 128) fit: kept
    slow = estimate(rates | {"tail_s": 0.01}, n_freq=1, n_loss=128 * 256, n_saes=1, n_runs=2)  # losses alone > budget
    per_loss_token = 2 * (1e-4 + (4 + len(NEEL_FLOORS)) * 0.01) + 2 * 1e-4
    seqs = slow["loss_seqs_fitting_budget"]  # as many sequences as fit half the budget
    assert seqs * 128 * per_loss_token <= BUDGET_S / 2 < (seqs + 1) * 128 * per_loss_token
    assert slow["tokens_fitting_budget"] * (1e-4 + 2e-4) <= BUDGET_S - seqs * 128 * per_loss_token


def test_estimate_adds_loading_and_weight_work_and_fits_the_rest():
    """The fixed part (seconds already spent loading, plus WEIGHT_WORK_ENCODINGS x d_sae encodings per run) is in the
    total and comes off the budget before the frequency tokens are fitted."""
    rates = {"hook_s": 1e-4, "encode_s": 2e-4, "tail_s": 1e-3}
    bare = estimate(rates, n_freq=10_000, n_loss=1_000, n_saes=3, n_runs=2)
    full = estimate(rates, n_freq=10_000, n_loss=1_000, n_saes=3, n_runs=2, d_sae=4096, loaded_s=60.0)
    fixed = 60.0 + WEIGHT_WORK_ENCODINGS * 2 * 4096 * 2e-4
    assert WEIGHT_WORK_ENCODINGS == 5.0 and full["fixed_s"] == pytest.approx(fixed) and bare["fixed_s"] == 0
    assert full["seconds"] == pytest.approx(bare["seconds"] + fixed)
    per_token = 1e-4 + 3 * 2e-4
    fits = full["tokens_fitting_budget"]
    assert fits * per_token <= BUDGET_S - fixed - bare["loss_s"] < (fits + 128) * per_token
    spent = estimate(rates, n_freq=1, n_loss=1_000, n_saes=3, n_runs=2, loaded_s=2 * BUDGET_S)  # the budget is gone
    assert spent["tokens_fitting_budget"] == 0 and spent["loss_seqs_fitting_budget"] == 1


def test_probe_measures_positive_rates(model, make_sae):
    sae = make_sae(64, 96, hook_name="blocks.0.mlp.hook_post")
    rates = probe_rates(model, sae, torch.randint(0, 50, (8, 16), generator=torch.Generator().manual_seed(0)))
    assert set(rates) == {"hook_s", "encode_s", "tail_s"} and rates["hook_s"] > 0 and rates["encode_s"] > 0
    assert rates["tail_s"] >= 0  # a difference of two timings, clamped at 0: on a tiny model under load it can be 0


def test_say_cost_logs_before_and_skips_when_cached(tmp_path, caplog):
    from test_paper_figures import pf

    from paper.context import Context

    ctx = Context(pf.parse_args(["--smoke", "--out", str(tmp_path)]))
    with caplog.at_level(logging.INFO, logger="paper.cost"):
        cost = say_cost(ctx)
    assert cost["n_saes"] == 2 and cost["seconds"] > cost["fixed_s"] > 0 and "would fit in about 10 min" in caplog.text
    for name in ("freq_seed1", "freq_seed2", "phase"):
        (ctx.cache.folder / f"{name}.npz").write_bytes(b"")
    assert say_cost(ctx) is None


def test_hub_token_default_depends_on_the_device_and_keys_the_cache(tmp_path):
    from test_paper_figures import pf

    from paper.context import Context
    from paper.sources import CPU_HUB_LOSS_SEQS, CPU_HUB_TOKENS, DEFAULTS, setting

    cpu, gpu = pf.parse_args(["--source", "hub"]), pf.parse_args(["--source", "hub", "--device", "cuda:0"])
    assert setting(cpu, "hub", "tokens") == CPU_HUB_TOKENS == 65_536
    assert setting(gpu, "hub", "tokens") == DEFAULTS["hub"]["tokens"]
    assert setting(pf.parse_args(["--source", "hub", "--tokens", "999"]), "hub", "tokens") == 999
    assert setting(cpu, "demo", "tokens") == DEFAULTS["demo"]["tokens"]
    assert setting(cpu, "hub", "loss_seqs") == CPU_HUB_LOSS_SEQS == 64 and setting(gpu, "hub", "loss_seqs") == 256
    assert setting(pf.parse_args(["--source", "hub", "--loss-seqs", "8"]), "hub", "loss_seqs") == 8
    folders = {Context(pf.parse_args(["--source", "hub", "--out", str(tmp_path), *a])).cache.folder.name
               for a in ([], ["--device", "cuda"], ["--device", "cuda:1"], ["--tokens", "999"],
                         ["--tokens", "999", "--loss-seqs", "8"])}  # fmt: skip
    assert folders == {"hub-default-cpu", "hub-default-cuda", "hub-999", "hub-999-loss8"}  # cached losses follow --loss-seqs
