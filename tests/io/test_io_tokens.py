"""Evaluation tokens from a Hub dataset (sae_analysis/io/tokens.py) against the local Hub-protocol server
(tests/hubserver.py): the real huggingface_hub listing, download, cache and offline code runs; nothing leaves 127.0.0.1."""

from __future__ import annotations

import io
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from sae_analysis.io import CorruptFileError, HubError, MissingFileError, hub_tokens, load_token_file, reshape_rows
from tests.hubserver import HubServer, commit_of, go_offline, serve_hub

REPO = "NeelNanda/c4-code-tokenized-2b"
SHARDS = ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]
ROW_LEN, SEQ_LEN, BOS = 64, 16, 7
ROWS_PER_SHARD = (3, 2)  # 12 + 8 sequences of 16


def tagged_rows(first: int, n: int, row_len: int = ROW_LEN) -> torch.Tensor:
    """Row r holds 1000 * (r + 1) + position: every token says where it came from (never equal to BOS)."""
    return 1000 * torch.arange(first + 1, first + n + 1)[:, None] + torch.arange(row_len)[None, :]


def parquet_bytes(rows: torch.Tensor, column: str = "tokens") -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({column: pa.array(rows.tolist(), type=pa.list_(pa.int64()))}), buf, row_group_size=2)
    return buf.getvalue()


def naive_sequences(rows: torch.Tensor, seq_len: int, bos: int | None) -> torch.Tensor:
    out = [row[j * seq_len:(j + 1) * seq_len].clone() for row in rows for j in range(len(row) // seq_len)]
    for seq in out:
        seq[0] = seq[0] if bos is None else bos
    return torch.stack(out)


ALL_ROWS = tagged_rows(0, sum(ROWS_PER_SHARD))


def test_reshape_rows_keeps_every_token_in_place_and_overwrites_only_position_0():
    rows = torch.arange(2 * 256).reshape(2, 256)
    seqs = reshape_rows(rows, 128, bos_token_id=-1)
    assert seqs.shape == (4, 128) and torch.equal(rows, torch.arange(2 * 256).reshape(2, 256))  # input untouched
    for i in range(2):
        for j in range(2):
            assert torch.equal(seqs[2 * i + j, 1:], torch.arange(256 * i + 128 * j + 1, 256 * i + 128 * (j + 1)))
    assert (seqs[:, 0] == -1).all() and (seqs[:, 1:] >= 0).all()
    assert torch.equal(reshape_rows(rows, 128), rows.reshape(4, 128))  # no BOS: a pure reshape
    assert torch.equal(reshape_rows(ALL_ROWS, SEQ_LEN, BOS), naive_sequences(ALL_ROWS, SEQ_LEN, BOS))


@pytest.mark.parametrize("row_len, seq_len", [(100, 128), (64, 0)])
def test_reshape_rows_refuses_rows_shorter_than_a_sequence(row_len, seq_len):
    with pytest.raises(ValueError, match=f"{row_len} tokens .*seq_len={seq_len}"):
        reshape_rows(torch.zeros(2, row_len, dtype=torch.long), seq_len)


def test_reshape_rows_drops_the_remainder_of_each_row_and_says_so(caplog):
    rows = torch.arange(2 * 10).reshape(2, 10)
    with caplog.at_level("WARNING"):
        seqs = reshape_rows(rows, 4, bos_token_id=99)
    assert seqs.tolist() == [[99, 1, 2, 3], [99, 5, 6, 7], [99, 11, 12, 13], [99, 15, 16, 17]]
    assert "dropping the last 2 tokens" in caplog.text
    assert torch.equal(reshape_rows(rows, 5, None), rows.reshape(4, 5))


@pytest.mark.parametrize("suffix", [".npy", ".pt", ".safetensors", ".parquet"])
def test_load_token_file_round_trip(tmp_path, suffix):
    import numpy as np
    import pandas as pd
    from safetensors.torch import save_file

    rows = torch.randint(0, 1000, (5, 7))
    path = tmp_path / f"t{suffix}"
    {".npy": lambda: np.save(path, rows.numpy()), ".pt": lambda: torch.save(rows, path),
     ".safetensors": lambda: save_file({"tokens": rows}, str(path)),
     ".parquet": lambda: pd.DataFrame({"tokens": list(rows.numpy()), "x": range(5)}).to_parquet(path)}[suffix]()
    assert torch.equal(load_token_file(path), rows)
    if suffix == ".parquet":  # a folder of shards, read in name order
        (tmp_path / "shards").mkdir()
        for i, part in enumerate((rows[:2], rows[2:])):
            pd.DataFrame({"tokens": list(part.numpy())}).to_parquet(tmp_path / "shards" / f"train-{i:05d}.parquet")
        assert torch.equal(load_token_file(tmp_path / "shards"), rows)


def test_load_token_file_refuses_hostile_files_naming_them(tmp_path):
    import numpy as np

    np.save(tmp_path / "f.npy", np.zeros((3, 3), dtype=np.float32))
    with pytest.raises(CorruptFileError, match="f.npy.*integer"):
        load_token_file(tmp_path / "f.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CorruptFileError, match="obj.npy"):  # a pickled object array is never unpickled
        load_token_file(tmp_path / "obj.npy")
    torch.save({"x": torch.zeros(2, 2, dtype=torch.long)}, tmp_path / "d.pt")
    with pytest.raises(CorruptFileError, match="d.pt"):
        load_token_file(tmp_path / "d.pt")
    (tmp_path / "t.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(CorruptFileError, match="t.npy"):
        load_token_file(tmp_path / "t.npy")
    with pytest.raises(MissingFileError, match="nowhere.npy"):
        load_token_file(tmp_path / "nowhere.npy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match="no .parquet"):
        load_token_file(tmp_path / "empty")
    with pytest.raises(ValueError, match="unsupported token file"):
        (tmp_path / "t.csv").write_text("1,2")
        load_token_file(tmp_path / "t.csv")


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A served dataset repo (2 train shards, decoys), HF_ENDPOINT pointed at it, online, a private empty cache."""
    with serve_hub(tmp_path, monkeypatch) as server:
        server.state.page_size = 2  # the 5 entries below (+ the data/ folder) span 3 pages of the tree listing
        server.add_file(REPO, "README.md", b"# tokens", repo_type="dataset")
        server.add_file(REPO, SHARDS[0], parquet_bytes(ALL_ROWS[:3]), repo_type="dataset")
        server.add_file(REPO, SHARDS[1], parquet_bytes(ALL_ROWS[3:]), repo_type="dataset")
        server.add_file(REPO, "data/test-00000-of-00001.parquet", parquet_bytes(-ALL_ROWS), repo_type="dataset")
        server.add_file(REPO, "data/pretrain-00000.parquet", parquet_bytes(-ALL_ROWS), repo_type="dataset")
        yield server


def fetched(server: HubServer) -> list[str]:
    """The repo paths whose bodies were downloaded (GET on the dataset resolve URL)."""
    marker = f"/datasets/{REPO}/resolve/"
    gets = [path for method, path in server.state.requests if method == "GET" and marker in path]
    return [path.split(marker)[1].split("/", 1)[1] for path in gets]


def test_spanning_both_shards_downloads_both_then_reads_offline_from_cache(hub, monkeypatch):
    seqs = hub_tokens(REPO, n_seq=15, seq_len=SEQ_LEN, bos_token_id=BOS)
    assert torch.equal(seqs, naive_sequences(ALL_ROWS, SEQ_LEN, BOS)[:15])  # 12 from shard 0, then 3 from shard 1
    assert fetched(hub) == SHARDS  # in name order; README, test and pretrain shards never downloaded
    assert sum(path.startswith(f"/api/datasets/{REPO}/tree/") for _, path in hub.state.requests) == 3  # followed Link pages

    hub.state.requests.clear()
    go_offline(monkeypatch)
    assert torch.equal(hub_tokens(REPO, n_seq=20, seq_len=SEQ_LEN, bos_token_id=BOS), naive_sequences(ALL_ROWS, SEQ_LEN, BOS))
    assert hub.state.requests == []  # listed and read from the cache, no network


def test_n_seq_none_reads_every_shard_of_the_split(hub):
    seqs = hub_tokens(REPO, n_seq=None, seq_len=SEQ_LEN, bos_token_id=BOS)
    assert torch.equal(seqs, naive_sequences(ALL_ROWS, SEQ_LEN, BOS))
    assert fetched(hub) == SHARDS


def test_within_first_shard_downloads_only_it_and_offline_sees_only_it(hub, monkeypatch):
    seqs = hub_tokens(REPO, n_seq=5, seq_len=SEQ_LEN, bos_token_id=None, revision=commit_of(REPO))
    assert torch.equal(seqs, ALL_ROWS[:2].reshape(-1, SEQ_LEN)[:5])  # no BOS: the raw tokens
    assert fetched(hub) == SHARDS[:1] and not any(SHARDS[1] in path for _, path in hub.state.requests)

    go_offline(monkeypatch)
    assert torch.equal(hub_tokens(REPO, n_seq=12, seq_len=SEQ_LEN, bos_token_id=None, revision=commit_of(REPO)),
                       ALL_ROWS[:3].reshape(-1, SEQ_LEN))  # fmt: skip
    with pytest.raises(ValueError, match="cached shards .* only 12 sequences"):
        hub_tokens(REPO, n_seq=13, seq_len=SEQ_LEN, bos_token_id=None, revision=commit_of(REPO))


def test_offline_with_empty_cache_fails_fast_and_names_repo(hub, monkeypatch):
    go_offline(monkeypatch)
    start = time.perf_counter()
    with pytest.raises(HubError, match=f"{REPO}.*HF_HUB_OFFLINE=1") as info:
        hub_tokens(REPO, n_seq=4, seq_len=SEQ_LEN, bos_token_id=BOS)
    assert time.perf_counter() - start < 2.0 and hub.state.requests == []
    assert "unset HF_HUB_OFFLINE" in str(info.value)


def test_shard_without_the_column_is_a_clear_error(hub):
    with pytest.raises(CorruptFileError, match=r"train-00000-of-00002\.parquet has no column 'input_ids'.*'tokens'"):
        hub_tokens(REPO, n_seq=4, seq_len=SEQ_LEN, bos_token_id=BOS, column="input_ids")
    hub.add_file("someone/other", SHARDS[0], parquet_bytes(ALL_ROWS[:3], column="ids"), repo_type="dataset")
    with pytest.raises(CorruptFileError, match="no column 'tokens'"):
        hub_tokens("someone/other", n_seq=4, seq_len=SEQ_LEN, bos_token_id=BOS)


def test_hostile_requests_fail_clearly(hub):
    with pytest.raises(ValueError, match="only 20 sequences of 16 < n_seq=21"):
        hub_tokens(REPO, n_seq=21, seq_len=SEQ_LEN, bos_token_id=BOS)
    with pytest.raises(ValueError, match="64 tokens .*seq_len=65"):
        hub_tokens(REPO, n_seq=1, seq_len=65, bos_token_id=BOS)
    with pytest.raises(HubError, match="dataset nobody/nothing not found"):
        hub_tokens("nobody/nothing", n_seq=1, seq_len=SEQ_LEN, bos_token_id=BOS)
    with pytest.raises(HubError, match="no revision 'v9'"):
        hub_tokens(REPO, n_seq=1, seq_len=SEQ_LEN, bos_token_id=BOS, revision="v9")
    with pytest.raises(MissingFileError, match="no .parquet files of split 'validation'"):
        hub_tokens(REPO, n_seq=1, seq_len=SEQ_LEN, bos_token_id=BOS, split="validation")
    with pytest.raises(ValueError, match="n_seq must be >= 1"):
        hub_tokens(REPO, n_seq=0, seq_len=SEQ_LEN, bos_token_id=BOS)
