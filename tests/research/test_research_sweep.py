"""research/ (issue #13): the sweep rows build valid trainer configs, and the data-exhaustion point the driver records is
where the trainer's buffer really starts to serve repeated activations."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from research.demo_sweep import first_repeat_tokens
from research.rows import EXHAUST_SEQS, ROWS, SHORT
from tests.helpers import tiny_sae
from trainers import TensorActivations, TrainConfig
from trainers.train import make_buffer


def test_every_row_is_a_valid_config_of_the_demo_recipe():
    base = ROWS["baseline"].config(1)
    assert base.num_tokens == 8_494_080 and base.lr == 1e-3 and base.resample.method == "kaiming"
    assert base.l1_coeff == 1e-3  # pinned (SWEEP_BASE, with lr): the rows stay what they were when the demo recipe changes
    assert SHORT["num_tokens"] == 1951 * 1024  # 3 resamples, then 487 steps: ends like the full recipe
    for name, row in ROWS.items():
        cfg = row.config(row.seeds[0])
        changed = {k for k, v in cfg.to_dict().items() if base.to_dict()[k] != v and k != "seed"}
        assert changed <= set(row.changes), name  # nothing but the row's own changes differs
        if cfg.resample.method == "anthropic":
            assert all(t <= cfg.num_tokens for t in cfg.resample.at_tokens), name


@pytest.mark.parametrize("policy", ["freeze", "wrap", "stop"])
def test_first_repeat_matches_the_buffer(policy):
    """Serve unique rows (row i holds i) through the trainer's buffer: nothing repeats before the recorded point, and
    with freeze / wrap something repeats within the next half buffer; with stop the run ends after every row once."""
    cfg = dataclasses.replace(TrainConfig(), batch_size=8, buffer_mult=8, buffer_dtype="float32", end_of_data=policy, seed=3)
    n_rows = 8 * 23 + 5  # not a multiple of the refill size
    source = TensorActivations(torch.arange(n_rows, dtype=torch.float32)[:, None], chunk=5, wrap=policy == "wrap")
    buffer = make_buffer(cfg, source)
    limit = first_repeat_tokens(cfg, n_rows)
    seen: set[int] = set()
    served = first_repeat = 0
    for batch in buffer:
        for v in batch[:, 0].long().tolist():
            if v in seen and not first_repeat:
                first_repeat = served
            seen.add(v)
            served += 1
        if served > limit + cfg.buffer_size:
            break
    if policy == "stop":
        assert first_repeat == 0 and served <= n_rows
    else:
        assert limit <= first_repeat < limit + cfg.buffer_size // 2


def test_exhaustion_rows_run_out_mid_run():
    cfg = ROWS["exhaust_freeze"].config(1)
    exhausted = first_repeat_tokens(cfg, EXHAUST_SEQS * cfg.seq_len)
    assert exhausted == 753_664 and cfg.resample.every_tokens < exhausted < cfg.num_tokens / 2 + 65_536


def test_mean_input_alignment_and_residual_cosine_on_planted_directions():
    """Planted: the ULF encoders are -m (m = E[x] - b_dec) plus orthogonal noise of a known size, the common ones random;
    their cosine with m is known exactly. Two 'seeds' share m and one extra direction, or only m."""
    from research.measure import mean_input_alignment, residual_cosine

    sae = tiny_sae(d_in=8, d_sae=6, seed=1)
    e = torch.eye(8)
    with torch.no_grad():
        sae.b_dec.copy_(0.5 * e[1])
        mean_x = 2 * e[0] + 0.5 * e[1]  # m = 2 e0
        sae.W_enc.copy_(torch.stack([-e[0] + e[2], -3 * e[0] + 3 * e[3], -e[0], e[4], e[5], e[6]], 1))
    mask = torch.tensor([True, True, True, False, False, False])
    out = mean_input_alignment(sae, mask, mean_x)
    assert out["ulf_enc_cos_centred_mean_input_median"] == pytest.approx(-(0.5**0.5), abs=1e-6)  # -1/sqrt2, -1/sqrt2, -1
    # members' mean: (-5 e0 + e2 + 3 e3) / 3
    assert out["ulf_mean_enc_cos_centred_mean_input"] == pytest.approx(-5 / (25 + 1 + 9) ** 0.5, abs=1e-6)
    empty = mean_input_alignment(sae, torch.zeros(6, dtype=torch.bool), mean_x)
    assert all(v != v for v in empty.values())  # NaN without members
    m1, m2 = e[0], e[0] + 0.1 * e[1]  # two seeds' (nearly parallel) centred means
    shared = residual_cosine(-e[0] + e[2], -2 * e[0] + 0.1 * e[1] + 3 * e[2], [m1, m2])
    assert shared == pytest.approx(1.0, abs=1e-9)  # beyond span(m1, m2) both are e2
    assert residual_cosine(-e[0] + e[2], -e[0] + e[3], [m1, m2]) == pytest.approx(0.0, abs=1e-9)  # only m is shared


def test_mechanism_finds_a_planted_adam_preconditioned_anti_mean_direction():
    """Latents that never fire get encoders -m / rms(x - b_dec) (per coordinate) plus small noise; the always-firing
    ones random. The ULF set is exactly the planted one and mu points against the preconditioned mean, not against m."""
    from research.mechanism import seed_mechanism

    gen = torch.Generator().manual_seed(0)
    d_in, n = 8, 4096
    scale = torch.tensor([0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0])
    xs = 1.0 + scale * torch.randn(n, d_in, generator=gen)  # E[x] = 1: m and m / rms differ by the per-coordinate scale
    sae = tiny_sae(d_in=d_in, d_sae=6, seed=2)
    with torch.no_grad():
        sae.b_dec.fill_(0.3)
        centred = xs - 0.3
        adam_m = centred.mean(0) / centred.pow(2).mean(0).sqrt()
        rare = torch.stack([-adam_m + 0.01 * torch.randn(d_in, generator=gen) for _ in range(3)], 1)
        sae.W_enc.copy_(torch.cat([rare, torch.randn(d_in, 3, generator=gen)], 1))
        sae.b_enc.copy_(torch.tensor([-1e3, -1e3, -1e3, 1e3, 1e3, 1e3]))
    out, dirs = seed_mechanism(sae, xs, xs.mean(0), xs.pow(2).mean(0))
    assert out["n_ulf"] == 3 and out["ulf_enc_cos_adam_m_median_by_firings"]["0"][0] == 3
    assert torch.allclose(dirs["adam_m"], adam_m, atol=1e-5)
    assert out["cos_mu_adam_m"] < -0.999 and out["ulf_enc_cos_adam_m_median"] < -0.999
    assert out["ulf_mean_enc_cos_centred_mean_input"] > out["cos_mu_adam_m"] + 0.1  # the plain mean m fits worse here
