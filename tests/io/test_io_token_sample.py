"""The seeded, fair evaluation-token sample (sae_analysis/io/token_sample.py) against the local Hub-protocol server:
row ids are a function of the seed, spread over shards, identical offline, and every sequence is a real row slice."""

from __future__ import annotations

import pytest
import torch
from test_io_tokens import parquet_bytes, tagged_rows

from sae_analysis.io import HubError
from sae_analysis.io.token_sample import sample_hub_tokens, shard_order
from tests.hubserver import commit_of, go_offline, serve_hub

REPO = "NeelNanda/c4-code-tokenized-2b"
N_SHARDS, ROWS, ROW_LEN, SEQ_LEN, BOS = 5, 6, 64, 16, 7
NAMES = [f"data/train-{i:05d}-of-{N_SHARDS:05d}.parquet" for i in range(N_SHARDS)]
ALL_ROWS = tagged_rows(0, N_SHARDS * ROWS)  # row r of shard s holds 1000 * (s * ROWS + r + 1) + position


@pytest.fixture
def hub(tmp_path, monkeypatch):
    with serve_hub(tmp_path, monkeypatch) as server:
        for i, name in enumerate(NAMES):
            server.add_file(REPO, name, parquet_bytes(ALL_ROWS[i * ROWS : (i + 1) * ROWS]), repo_type="dataset")
        yield server


def _sample(seed: int, n_seq: int = 16, n_shards: int = 2):
    return sample_hub_tokens(REPO, n_seq=n_seq, seq_len=SEQ_LEN, bos_token_id=BOS, seed=seed, n_shards=n_shards)


def test_rows_are_a_function_of_the_seed_and_spread_over_shards(hub, monkeypatch):
    a, again, other = _sample(1), _sample(1), _sample(2)
    assert torch.equal(a.tokens, again.tokens) and a.provenance == again.provenance
    assert a.provenance["rows"] != other.provenance["rows"] or a.provenance["shards"] != other.provenance["shards"]
    p = a.provenance
    assert p["shards"] == shard_order(NAMES, 1)[:2] and p["seed"] == 1 and p["commit"] == commit_of(REPO)
    assert len(p["rows"]) == 4 and len({s for s, _ in p["rows"]}) == 2  # 16 sequences = 4 rows, from both shards
    # every sequence is a real slice of one of the recorded rows, BOS first
    picked = {(NAMES.index(p["shards"][s]) * ROWS + r) for s, r in p["rows"]}
    seqs = {tuple(ALL_ROWS[g, j * SEQ_LEN + 1 : (j + 1) * SEQ_LEN].tolist()) for g in picked for j in range(ROW_LEN // SEQ_LEN)}
    assert (a.tokens[:, 0] == BOS).all() and {tuple(t[1:].tolist()) for t in a.tokens} == seqs
    # the sequences are shuffled: the first four come from more than one row (not one row's consecutive cuts)
    assert len({int(t[1]) // 1000 for t in a.tokens[:4]}) > 1

    go_offline(monkeypatch)
    hub.state.requests.clear()
    offline = _sample(1)
    assert hub.state.requests == [] and torch.equal(offline.tokens, a.tokens) and offline.provenance == p


def test_shard_order_ignores_which_other_shards_are_listed():
    """Offline only cached shards are listed: the shards an online sample took still come first among them."""
    full = shard_order(NAMES, 3)
    assert shard_order([full[4], full[1], full[0]], 3) == [full[0], full[1], full[4]]
    assert shard_order(NAMES[::-1], 3) == full and shard_order(NAMES, 4) != full and sorted(full) == NAMES


def test_more_shards_when_the_first_hold_too_few_rows_and_hostile_requests(hub, monkeypatch):
    big = _sample(0, n_seq=ROWS * 4 * 3)  # 3 shards' worth of sequences: spreads over 3 shards although 2 were asked
    assert len(big.provenance["shards"]) == 3 and len(big.tokens) == ROWS * 4 * 3
    with pytest.raises(ValueError, match="hold only 120 sequences"):
        _sample(0, n_seq=121)
    with pytest.raises(ValueError, match="must be >= 1"):
        _sample(0, n_seq=0)
    go_offline(monkeypatch)
    monkeypatch.setenv("HF_HOME", str(hub.state.root.parent / "empty_home"))
    with pytest.raises(HubError, match="no cached parquet shards.*HF_HUB_OFFLINE=1"):
        _sample(0)
