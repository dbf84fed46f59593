"""research/ (issue #13): the sweep rows build valid trainer configs, and the data-exhaustion point the driver records is
where the trainer's buffer really starts to serve repeated activations."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from research.demo_sweep import first_repeat_tokens
from research.rows import EXHAUST_SEQS, ROWS, SHORT
from trainers import TensorActivations, TrainConfig
from trainers.train import make_buffer


def test_every_row_is_a_valid_config_of_the_demo_recipe():
    base = ROWS["baseline"].config(1)
    assert base.num_tokens == 8_494_080 and base.lr == 1e-3 and base.resample.method == "kaiming"
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
