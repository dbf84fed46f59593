"""`paper_figures.py --source hub` end to end with no loader replaced: a tiny gelu-1l-shaped replica of the four Hub
repositories in their real layouts (tests/hub_replica.py) served over the Hub protocol on 127.0.0.1 (tests/hubserver.py);
the real huggingface_hub, transformers tokenizer and TransformerLens code runs. Then the same run offline from the cache."""

from __future__ import annotations

import json

import pytest
import torch
from test_paper_figures import pf

from paper import sources
from tests.hub_replica import CHECKPOINTS, MODEL_REPO, SAE_REPO, TOKENIZER_REPO, TOKENS_REPO, build_replica, shard_names
from tests.hubserver import commit_of, go_offline, serve_hub

ARGS = ["--tokens", "1024", "--loss-seqs", "4", "--batch-size", "8", "--formats", "png", "--dpi", "20"]
NOT_ON_THE_HUB = {"w_training_curves", "x_data_exhaustion"}  # no training logs on the Hub; exhaustion runs are demo-only


def _drawn(out) -> dict:
    results = json.loads((out / "results.json").read_text())
    for name, status in results["figures"].items():
        want = "skipped" if name in NOT_ON_THE_HUB else "drawn"
        assert status["status"] == want, (name, status)
    return results


@pytest.mark.slow
def test_hub_source_end_to_end_online_then_offline_from_the_cache(tmp_path, monkeypatch):
    build_replica(tmp_path / "repos")
    with serve_hub(tmp_path, monkeypatch) as server:
        assert pf.main(["--source", "hub", "--out", str(tmp_path / "online"), *ARGS]) == 0
        fetched = {path for method, path in server.state.requests if method == "GET"}
    online = _drawn(tmp_path / "online")
    assert any("model_final.pth" in p for p in fetched) and not any("checkpoints/" in p for p in fetched)
    assert online["phase"]["changepoint_index"] == 5  # the planted ULF step between checkpoints 21 and 22
    assert online["phase"]["ulf_before"] == 0.25 and online["phase"]["ulf_after"] == 0.5

    prov = json.loads((tmp_path / "online" / "manifest.json").read_text())["source"]["provenance"]
    assert prov["model"]["repo"] == MODEL_REPO and prov["model"]["commit"] == commit_of(MODEL_REPO)
    assert prov["model"]["files"] == ["config.json", "model_final.pth"]
    assert prov["tokenizer"]["repo"] == TOKENIZER_REPO and prov["tokenizer"]["commit"] == commit_of(TOKENIZER_REPO)
    assert prov["tokens"]["repo"] == TOKENS_REPO and prov["tokens"]["commit"] == commit_of(TOKENS_REPO)
    assert set(prov["tokens"]["shards"]) <= set(shard_names_tiny()) and len(prov["tokens"]["shards"]) == 2
    assert prov["run1"]["commit"] == commit_of(SAE_REPO) and prov["run2"]["filename"] == "47.pt"
    assert prov["checkpoints"]["files"] == [f"{c}.pt" for c in CHECKPOINTS if c != 47]

    go_offline(monkeypatch)  # the server is gone too: every file must come from the cache
    assert pf.main(["--source", "auto", "--out", str(tmp_path / "offline"), *ARGS]) == 0
    offline = _drawn(tmp_path / "offline")
    assert offline["source"]["kind"] == "hub" and "HF_HUB_OFFLINE" not in offline["source"]["note"]
    for key in ("runs", "compare", "phase"):
        assert offline[key] == online[key]
    assert offline["source"]["provenance"] == online["source"]["provenance"]


def shard_names_tiny() -> list[str]:
    from tests.hub_replica import TINY

    return shard_names(TINY)


def test_every_source_decodes_tensors_arrays_and_lists_alike(tmp_path, monkeypatch):
    """One decode contract: a 1-D sequence of ids (tensor, numpy array, list of ints) -> one string per id."""
    import numpy as np

    build_replica(tmp_path / "repos")
    with serve_hub(tmp_path, monkeypatch):
        hub = sources.load_hub(pf.parse_args(["--source", "hub", "--tokens", "256"]))
    smoke = sources.load_smoke(pf.parse_args(["--smoke"]))
    for src in (hub, smoke):
        ids = src.tokens[0, :10]
        as_list = src.decode(ids.tolist())
        assert len(as_list) == 10 and all(isinstance(t, str) for t in as_list)
        assert src.decode(ids) == as_list == src.decode(ids.numpy()) == src.decode(np.asarray(ids.tolist(), dtype=np.int32))
        assert src.decode([]) == []
        with pytest.raises(ValueError, match="1-D sequence of integer token ids"):
            src.decode(torch.zeros(2, 3, dtype=torch.long))
    assert hub.decode([0])[0] == "<|endoftext|>" and hub.tokens[:, 0].eq(0).all()  # BOS from the real tokenizer
    assert sources._byte_decode(torch.tensor([65, 66])) == sources._byte_decode([65, 66]) == ["A", "B"]
