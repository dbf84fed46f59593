"""Hub loading against a local Hub-protocol server (tests/hubserver.py): the real huggingface_hub download, cache and
offline code runs; nothing leaves 127.0.0.1."""

from __future__ import annotations

import io
import json
import time

import pytest
import torch
from safetensors.torch import save as save_safetensors_bytes

from sae_analysis import load_sae, save_sae
from sae_analysis.io import CorruptFileError, HubError, MissingFileError
from tests.hubserver import DOWN_ENDPOINT, commit_of, go_offline, network_down, serve_hub

REPO = "NeelNanda/sparse_autoencoder"


def torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A served repo folder, HF_ENDPOINT pointed at it, online mode, and a private empty cache."""
    with serve_hub(tmp_path, monkeypatch) as server:
        yield server


@pytest.fixture
def neel_repo(hub, gen):
    """The exact original layout (25.pt + 25_cfg.json), small shapes; returns the state dict."""
    state = {"W_enc": torch.randn(8, 16, generator=gen), "W_dec": torch.randn(16, 8, generator=gen)}
    state |= {"b_enc": torch.randn(16, generator=gen), "b_dec": torch.randn(8, generator=gen)}
    cfg = {"seed": 52, "batch_size": 4096, "l1_coeff": 3e-4, "dict_mult": 2, "d_mlp": 8, "enc_dtype": "fp32"}
    hub.add_file(REPO, "25.pt", torch_bytes(state))
    hub.add_file(REPO, "25_cfg.json", json.dumps(cfg).encode())
    return state


def test_run1_downloads_then_loads_offline_from_cache(hub, neel_repo, monkeypatch, gen):
    sae = load_sae(REPO, "run1")
    x = torch.randn(6, 8, generator=gen)
    f = torch.relu((x - neel_repo["b_dec"]) @ neel_repo["W_enc"] + neel_repo["b_enc"])
    torch.testing.assert_close(sae.decode(sae.encode(x)), f @ neel_repo["W_dec"] + neel_repo["b_dec"])
    assert sae.meta | {"cfg": None} == sae.meta | {
        "format": "original",
        "repo": REPO,
        "revision": "main",
        "commit": commit_of(REPO),
        "filename": "25.pt",
        "cfg": None,
    }
    assert sae.meta["cfg"]["seed"] == 52 and sae.cfg.hook_name == "blocks.0.mlp.hook_post"
    assert {m for m, _ in hub.state.requests} == {"HEAD", "GET"}

    hub.state.requests.clear()
    go_offline(monkeypatch)
    again = load_sae(REPO, "run1")
    assert hub.state.requests == []  # served from the cache, no network
    assert torch.equal(again.W_enc, sae.W_enc)


def test_revision_pinning(hub, neel_repo):
    sae = load_sae(REPO, "25", revision=commit_of(REPO))
    assert sae.meta["revision"] == commit_of(REPO) == sae.meta["commit"]
    with pytest.raises(HubError, match="no revision 'v999'"):
        load_sae(REPO, "25", revision="v999")


def test_missing_file_404(hub, neel_repo):
    with pytest.raises(MissingFileError, match=r"sparse_autoencoder@main has no file 47_cfg\.json"):
        load_sae(REPO, "run2")


def test_unknown_repo(hub):
    with pytest.raises(HubError, match="repository nobody/nothing not found"):
        load_sae("nobody/nothing", "25")


def test_truncated_download_is_a_clear_error(hub, neel_repo):
    hub.state.faults["25.pt"] = "truncate"
    with pytest.raises(CorruptFileError, match=r"download of NeelNanda/sparse_autoencoder/25\.pt is truncated"):
        load_sae(REPO, "run1")


def test_server_error_is_a_clear_error(hub, neel_repo, monkeypatch):
    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(hf_http.time, "sleep", lambda s: None)  # skip huggingface_hub's retry back-off (1+2+4+8+8 s)
    hub.state.faults["25_cfg.json"] = 500
    with pytest.raises(HubError, match=r"25_cfg\.json: the Hub answered HTTP 500.*not in the local cache"):
        load_sae(REPO, "run1")


def test_offline_with_empty_cache_fails_fast_with_hint(hub, neel_repo, monkeypatch):
    go_offline(monkeypatch)
    t0 = time.perf_counter()
    with pytest.raises(HubError, match=r"HF_HUB_OFFLINE=1.*run once with network.*local path.*cached in .*hf_home"):
        load_sae(REPO, "run1")
    assert time.perf_counter() - t0 < 2.0
    assert hub.state.requests == []


def test_unreachable_endpoint(tmp_path, monkeypatch):
    network_down(monkeypatch, tmp_path)
    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(hf_http.time, "sleep", lambda s: None)
    with pytest.raises(HubError, match=r"cannot reach http://127\.0\.0\.1:9"):
        load_sae(REPO, "run1")


def test_reachability_probe_answers_in_well_under_the_retry_time(hub, monkeypatch):
    from sae_analysis.io.hub import hub_unreachable

    assert hub_unreachable() is None  # the local server answers (any HTTP status counts)
    monkeypatch.setenv("HF_ENDPOINT", DOWN_ENDPOINT)
    t0 = time.perf_counter()
    assert hub_unreachable(timeout=2.0) == "cannot reach http://127.0.0.1:9 (ConnectionRefusedError)"
    assert time.perf_counter() - t0 < 2.5
    go_offline(monkeypatch)
    assert hub_unreachable() == "HF_HUB_OFFLINE=1"


@pytest.mark.parametrize("before", [None, "0"])
def test_cache_only_restores_the_environment(monkeypatch, before, tmp_path):
    import os

    from sae_analysis.io.hub import cache_only, hub_settings

    if before is None:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    else:
        monkeypatch.setenv("HF_HUB_OFFLINE", before)
    with pytest.raises(RuntimeError), cache_only():
        assert hub_settings().offline
        raise RuntimeError("the block fails")
    assert os.environ.get("HF_HUB_OFFLINE") == before


def test_saelens_folder_in_a_hub_repo(hub, make_sae, tmp_path, gen):
    sae = make_sae(seed=4)
    sae.log10_density = -torch.rand(sae.cfg.d_sae, generator=gen)
    folder = save_sae(sae, tmp_path / "local")
    for f in folder.iterdir():
        hub.add_file("someone/saes", f"blocks.0.mlp.hook_post/{f.name}", f.read_bytes())
    loaded = load_sae("someone/saes", "blocks.0.mlp.hook_post")
    assert loaded.meta["format"] == "saelens" and loaded.meta["filename"] == "blocks.0.mlp.hook_post/sae_weights.safetensors"
    assert torch.equal(loaded.W_dec, sae.W_dec) and torch.equal(loaded.log10_density, sae.log10_density)


def test_sparsify_and_dictionary_learning_in_hub_repos(hub, gen):
    enc = torch.randn(6, 6, generator=gen)
    weights = {
        "encoder.weight": enc,
        "encoder.bias": torch.zeros(6),
        "W_dec": torch.randn(6, 6, generator=gen),
        "b_dec": torch.zeros(6),
    }
    hub.add_file("eleuther/sae", "layers.0/sae.safetensors", save_safetensors_bytes(weights))
    hub.add_file("eleuther/sae", "layers.0/cfg.json", json.dumps({"d_in": 6, "k": 2, "num_latents": 6}).encode())
    sp = load_sae("eleuther/sae", "layers.0")
    assert sp.meta["format"] == "sparsify" and torch.equal(sp.W_enc, enc.T)
    state = {"encoder.weight": enc, "encoder.bias": torch.zeros(6), "decoder.weight": enc.T.contiguous(), "bias": torch.zeros(6)}
    hub.add_file("marks/dl", "ae.pt", torch_bytes(state))
    dl = load_sae("marks/dl")
    assert dl.meta["format"] == "dictionary_learning" and torch.equal(dl.W_dec, enc)


def test_neel_repo_needs_a_name(hub, neel_repo):
    with pytest.raises(MissingFileError, match="pass a name, e.g. '25' or 'run1'"):
        load_sae(REPO)
    assert hub.state.requests == []


def test_existing_local_path_wins_over_repo_id(tmp_path, monkeypatch, make_sae, hub):
    sae = make_sae(seed=5)
    save_sae(sae, tmp_path / "owner" / "name")
    monkeypatch.chdir(tmp_path)
    assert torch.equal(load_sae("owner/name").W_enc, sae.W_enc)
    assert hub.state.requests == []
