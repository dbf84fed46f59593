"""paper_figures.py: the whole script on synthetic checkpoints (--smoke), stable results.json keys, the cache, source choice."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from paper import sources
from paper.cache import Cache
from paper.report import PHASE_KEYS, REPORT_ROWS, RESULT_KEYS, _format
from sae_analysis.io.token_sample import TokenSample

ROOT = Path(__file__).resolve().parent.parent


def _load_script():
    spec = importlib.util.spec_from_file_location("paper_figures", ROOT / "paper_figures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["paper_figures"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


pf = _load_script()


@pytest.fixture(scope="module")
def smoke_out(tmp_path_factory) -> Path:
    """One full --smoke run shared by the tests below (PNG only, low dpi: the drawing is what is tested, not the pixels)."""
    out = tmp_path_factory.mktemp("smoke")
    assert pf.main(["--smoke", "--out", str(out), "--formats", "png", "--dpi", "30"]) == 0
    return out


def test_smoke_draws_every_figure(smoke_out):
    results = json.loads((smoke_out / "results.json").read_text())
    assert set(results["figures"]) == set(pf.FIGURES)
    for name, status in results["figures"].items():
        assert status["status"] == "drawn", (name, status)
        assert (smoke_out / f"{name}.png").stat().st_size > 0


def test_results_keys_are_stable_and_documented(smoke_out):
    from sae_analysis.table import COMPARE_KEYS, KEYS

    results = json.loads((smoke_out / "results.json").read_text())
    assert list(results) == list(RESULT_KEYS)
    for summary in results["runs"].values():
        assert set(summary) <= set(KEYS) and {"frac_dense", "ulf_fraction", "recons_score", "l0"} <= set(summary)
    assert set(results["compare"]) == set(COMPARE_KEYS)
    assert set(results["phase"]) == set(PHASE_KEYS)
    assert results["source"]["kind"] == "smoke" and results["source"]["runs"] == ["seed1", "seed2"]


def test_smoke_recovers_the_planted_structure(smoke_out):
    """load_smoke plants 64 never-firing latents aligned with one direction and a ULF step after the 7th snapshot."""
    results = json.loads((smoke_out / "results.json").read_text())
    seed1 = results["runs"]["seed1"]
    assert seed1["frac_dead"] >= 64 / 256 and seed1["ulf_fraction"] >= 64 / 256
    assert seed1["ulf_enc_frac_cos_above_095"] == pytest.approx(1.0)
    assert results["phase"]["changepoint_index"] == 7 and results["phase"]["n_snapshots"] == 12


def test_report_puts_every_number_beside_the_post(smoke_out):
    report = (smoke_out / "report.md").read_text()
    assert "synthetic smoke checkpoints" in report and "agreement is not expected" in report
    for quantity, _, _, post, tag in REPORT_ROWS:
        assert f"| {quantity} |" in report and post in report and tag in report


def test_manifest_records_versions_and_source(smoke_out):
    manifest = json.loads((smoke_out / "manifest.json").read_text())
    assert manifest["versions"]["torch"] and manifest["versions"]["numpy"]
    assert len(manifest["git_commit"]) in (0, 40)  # empty outside a git checkout
    assert manifest["source"]["label"] == "synthetic smoke checkpoints"


def test_only_redraws_from_the_cache_without_loading(smoke_out, monkeypatch):
    def no_loading(args):
        raise AssertionError("the cache should make loading unnecessary")

    monkeypatch.setattr(sources, "resolve_source", no_loading)
    target = smoke_out / "f17_kurtosis.png"
    target.unlink()
    assert pf.main(["--smoke", "--out", str(smoke_out), "--formats", "png", "--dpi", "30", "--only", "f17_kurtosis"]) == 0
    assert target.exists()
    assert set(json.loads((smoke_out / "results.json").read_text())["figures"]) == set(pf.FIGURES)  # others kept


def test_cache_stores_strings_and_numbers_without_pickle(tmp_path):
    cache, calls = Cache(tmp_path), []

    def compute():
        calls.append(1)
        return {"names": np.array(["dense", "1-sparse"], dtype=object), "x": np.arange(3.0), "n": 7}

    first, second = cache.arrays("t", compute), cache.arrays("t", compute)
    assert calls == [1]
    assert second["names"].tolist() == ["dense", "1-sparse"] and int(second["n"]) == 7
    np.testing.assert_array_equal(first["x"], second["x"])


def test_auto_falls_back_to_the_demo_and_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: the Hub path fails at once
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    sentinel = object()
    monkeypatch.setattr(sources, "load_demo", lambda a: sentinel)
    source, note = sources.resolve_source(pf.parse_args([]))
    assert source is sentinel and "fell back to the embedded demo" in note and "HF_HUB_OFFLINE" in note


def test_auto_with_the_network_down_uses_only_the_cache_and_falls_back_at_once(monkeypatch, tmp_path):
    """HF_HUB_OFFLINE unset and the endpoint refusing connections: the Hub is tried cache-only (no ~23 s of retries)."""
    import os

    from hubserver import network_down

    network_down(monkeypatch, tmp_path / "hf")
    offline_seen, sentinel, real_load_hub = [], object(), sources.load_hub

    def cached_only_hub(args):
        offline_seen.append(os.environ.get("HF_HUB_OFFLINE"))
        return sentinel

    monkeypatch.setattr(sources, "load_hub", cached_only_hub)
    source, note = sources.resolve_source(pf.parse_args([]))
    assert source is sentinel and offline_seen == ["1"] and "used the local Hub cache" in note
    assert os.environ["HF_HUB_OFFLINE"] == "0"

    monkeypatch.setattr(sources, "load_hub", real_load_hub)
    monkeypatch.setattr(sources, "load_demo", lambda a: sentinel)
    t0 = time.perf_counter()
    source, note = sources.resolve_source(pf.parse_args([]))  # the real load_hub: empty cache, so the demo
    assert source is sentinel and time.perf_counter() - t0 < 5.0
    assert "cannot reach http://127.0.0.1:9" in note and "fell back to the embedded demo" in note
    assert "local Hub cache" in note and "HF_HUB_OFFLINE" not in note


def test_format_handles_missing_numbers():
    assert _format(None, "%") == "n/a" and _format(float("nan"), "x") == "n/a"
    assert _format(0.921, "%") == "92.1%" and _format(1.6e9, "tok") == "1.6B tokens"


@pytest.mark.slow
def test_demo_source_end_to_end(tmp_path):
    """The README's main command on the embedded demo, with fewer tokens (skipped until the demo suite is built)."""
    from sae_analysis.io import demo_dir

    if not (demo_dir() / "seed1").exists():
        pytest.skip("the embedded demo suite is not built")
    args = ["--source", "demo", "--out", str(tmp_path), "--tokens", "4096", "--loss-seqs", "8", "--formats", "png", "--dpi", "30"]
    assert pf.main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["source"]["kind"] == "demo"
    assert all(s["status"] in ("drawn", "skipped") for s in results["figures"].values())


def test_hub_source_maps_checkpoints_to_tokens(tmp_path, monkeypatch):
    """The Hub path without the Hub: loaders are replaced by the smoke objects; checks wiring, label and §4.3's token counts."""
    smoke = sources.load_smoke(pf.parse_args(["--smoke"]))
    loaded = []

    def fake_load_sae(repo, name, **kw):
        loaded.append((repo, name))
        sae = copy.deepcopy(smoke.saes["seed1"])
        filename = {"run1": "25.pt", "run2": "47.pt"}.get(name, f"{name}.pt")
        sae.meta = {"repo": repo, "commit": "6bcc2451234567890", "filename": filename}
        return sae

    monkeypatch.setattr(sources, "load_sae", fake_load_sae)
    monkeypatch.setattr(sources, "load_model", lambda name, **kw: smoke.model)
    np.save(tmp_path / "tokens.npy", smoke.tokens.numpy())
    args = pf.parse_args(["--source", "hub", "--tokens-file", str(tmp_path / "tokens.npy"), "--tokens", "256"])
    source = sources.load_hub(args)
    assert source.label == "NeelNanda/sparse_autoencoder@6bcc245" and list(source.saes) == ["run1", "run2"]
    assert source.tokens.shape == (16, 16)  # --tokens 256 in rows of the file's length
    assert source.provenance["tokens"]["sha256"] and source.snapshots is None
    checkpoints = source.checkpoints()
    tokens = list(checkpoints)
    assert tokens[0] == 122_880_000 and tokens[4] == 1_597_440_000 and tokens[5] == 1_720_320_000 and tokens[-1] == 2_000_000_000
    assert checkpoints[2_000_000_000] is source.saes["run1"]  # checkpoint 25 is run 1's own file: not loaded twice
    assert [n for _, n in loaded] == ["run1", "run2", "9", "12", "15", "18", "21", "22"]



def test_hub_source_downloads_eval_tokens_without_a_tokens_file(monkeypatch):
    """Without --tokens-file the Hub source asks sae_analysis.io for a seeded sample of c4-code sequences, with gelu-1l's
    BOS id (the sample itself: tests/test_io_token_sample.py)."""
    smoke = sources.load_smoke(pf.parse_args(["--smoke"]))
    asked = {}

    def fake_sample(**kw):
        asked.update(kw)
        return TokenSample(smoke.tokens[:3], {"seed": kw["seed"]})

    class Tok:
        bos_token_id = 7

    model = smoke.model
    monkeypatch.setattr(model, "tokenizer", Tok(), raising=False)
    monkeypatch.setattr(sources, "load_sae", lambda repo, name, **kw: smoke.saes["seed1"])
    monkeypatch.setattr(sources, "load_model", lambda name, **kw: model)
    monkeypatch.setattr(sources, "sample_hub_tokens", fake_sample)
    source = sources.load_hub(pf.parse_args(["--source", "hub", "--tokens", "300", "--token-seed", "5"]))
    assert asked == {"n_seq": 3, "seq_len": 128, "bos_token_id": 7, "seed": 5, "n_shards": 2}  # ceil(300 / 128) sequences
    assert source.tokens.shape[0] == 3 and source.provenance["tokens"] == {"seed": 5}
    monkeypatch.setattr(model, "tokenizer", None, raising=False)
    with pytest.raises(sources.Skip, match="--tokens-file"):
        sources.load_hub(pf.parse_args(["--source", "hub"]))

def _fake_demo(root: Path) -> None:
    """A demo folder in the layout of sae_analysis/io/demo_paths.py (model, seed1/2 native SAEs, metrics.jsonl, freq/),
    with a tiny byte-level model and random SAEs: the demo code path without the real (large, slow-to-build) suite."""
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from sae_analysis import SAE, SAEConfig
    from sae_analysis.io import save_model, save_sae
    from trainers.log import MetricsWriter, write_frequency_snapshot

    cfg = HookedTransformerConfig(n_layers=1, d_model=16, d_mlp=32, n_heads=2, d_head=8, n_ctx=128, d_vocab=257, act_fn="gelu",
                                  normalization_type="LN", seed=0)
    save_model(HookedTransformer(cfg), root / "model")
    for seed in (1, 2):
        torch.manual_seed(seed)
        save_sae(SAE(SAEConfig(d_in=32, d_sae=128, hook_name="blocks.0.mlp.hook_post", model_name="demo")), root / f"seed{seed}")
        writer = MetricsWriter(root / f"seed{seed}" / "metrics.jsonl")
        for step in range(1, 6):
            writer.write("train", step=step, tokens=step * 1000, loss=1.0 / step, l0=10.0)
            write_frequency_snapshot(root / f"seed{seed}", step * 1000, np.full(128, -2.0 - (step > 3) * 3.0, dtype=np.float32))
        writer.close()


def test_demo_layout_loads_and_draws(tmp_path, monkeypatch):
    import sae_analysis.io
    import sae_analysis.io.demo_paths

    _fake_demo(tmp_path / "demo")
    for module in (sources, sae_analysis.io, sae_analysis.io.demo_paths):  # however the loaders reach it
        monkeypatch.setattr(module, "demo_dir", lambda: tmp_path / "demo")
    only = ["f01_frequency_histogram", "f02_phase_transition", "f23a_case_study", "w_training_curves"]
    out = tmp_path / "out"
    args = ["--source", "demo", "--out", str(out), "--tokens", "1024", "--formats", "png", "--dpi", "30", "--only", *only]
    assert pf.main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["source"]["label"] == "embedded demo" and results["source"]["n_seqs"] == 8
    assert {name: s["status"] for name, s in results["figures"].items()} == dict.fromkeys(only, "drawn")
    assert results["phase"]["changepoint_tokens"] == 3500 and results["phase"]["n_snapshots"] == 5
    assert results["runs"]["seed1"]["frequency_source"] == "model: 1024 tokens"


def test_missing_source_is_one_clear_error(tmp_path, monkeypatch, capsys):
    from sae_analysis.io import MissingFileError

    def missing(args):
        raise MissingFileError("the demo model is not installed: demo/model does not exist (build the demo suite first)")

    monkeypatch.setattr(sources, "load_demo", missing)
    assert pf.main(["--source", "demo", "--out", str(tmp_path)]) == 2
    assert "no usable source: the demo model is not installed" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()
