"""gelu-1l through the project's Hub layer (sae_analysis/io/hub_model.py) against a real-layout replica served locally
(tests/hub_replica.py, tests/hubserver.py): the same model as TransformerLens's own from_pretrained, then offline from
the cache, where from_pretrained itself fails."""

from __future__ import annotations

import time

import pytest
import torch

from sae_analysis.io import HubError, load_model
from tests.hub_replica import MODEL_REPO, TINY, TOKENIZER_REPO, build_replica
from tests.hubserver import commit_of, go_offline, serve_hub


@pytest.fixture
def hub(tmp_path, monkeypatch):
    build_replica(tmp_path / "repos")
    with serve_hub(tmp_path, monkeypatch) as server:
        yield server


def _tl_from_pretrained(server, monkeypatch, tmp_path, tokenizer):
    """TransformerLens's own loader against the local server (its endpoint and cache are frozen at import: patched)."""
    import huggingface_hub.constants as c
    from transformer_lens import HookedTransformer

    monkeypatch.setattr(c, "ENDPOINT", server.endpoint)
    monkeypatch.setattr(c, "HUGGINGFACE_CO_URL_TEMPLATE", server.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    return HookedTransformer.from_pretrained("gelu-1l", tokenizer=tokenizer, cache_dir=str(tmp_path / "tl_cache"))


@pytest.mark.filterwarnings("ignore:HookedTransformer.from_pretrained is deprecated")
@torch.no_grad()
def test_gelu_1l_equals_transformer_lens_from_pretrained_then_loads_offline(hub, monkeypatch, tmp_path):
    model = load_model("gelu-1l")
    assert model.cfg.d_mlp == TINY.d_mlp and model.cfg.d_vocab == TINY.d_vocab and model.W_U.dtype == torch.float32
    assert model.tokenizer.bos_token_id == 0 and model.to_str_tokens(torch.tensor([0]))[0] == "<|endoftext|>"
    assert model.provenance["model"] == {"name": "gelu-1l", "repo": MODEL_REPO, "revision": "main",
                                         "commit": commit_of(MODEL_REPO), "files": ["config.json", "model_final.pth"]}
    assert model.provenance["tokenizer"]["commit"] == commit_of(TOKENIZER_REPO)
    reference = _tl_from_pretrained(hub, monkeypatch, tmp_path, model.tokenizer)
    ours, theirs = model.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key  # same files, same processing (fold_ln, centring, ...)
    assert model.cfg.normalization_type == reference.cfg.normalization_type == "LNPre"

    hub.state.requests.clear()
    go_offline(monkeypatch)
    with pytest.raises(Exception):  # noqa: B017 - what TransformerLens raises offline (it lists the repo through the API)
        reference.from_pretrained("gelu-1l", tokenizer=model.tokenizer, cache_dir=str(tmp_path / "tl_cache"))
    again = load_model("gelu-1l")
    assert hub.state.requests == []  # everything from the cache
    tokens = torch.randint(1, TINY.d_vocab, (2, 16), generator=torch.Generator().manual_seed(0))
    assert torch.equal(again(tokens), model(tokens))
    assert again.provenance == model.provenance


def test_offline_with_an_empty_cache_fails_fast_with_a_hint(hub, monkeypatch):
    go_offline(monkeypatch)
    start = time.perf_counter()
    with pytest.raises(HubError, match=r"GELU_1L512W_C4_Code/config\.json.*HF_HUB_OFFLINE=1.*run once with network"):
        load_model("gelu-1l")
    assert time.perf_counter() - start < 5 and hub.state.requests == []


def test_a_missing_tokenizer_leaves_a_usable_model_without_one(hub, monkeypatch, caplog):
    import shutil

    shutil.rmtree(hub.state.root / TOKENIZER_REPO)
    model = load_model("gelu-1l")
    assert model.tokenizer is None and "tokenizer NeelNanda/gpt-neox-tokenizer-digits unavailable" in caplog.text
    assert "not found" in model.provenance["tokenizer"]["error"]
    assert model(torch.tensor([[1, 2, 3]])).shape == (1, 3, TINY.d_vocab)
