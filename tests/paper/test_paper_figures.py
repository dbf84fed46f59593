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

from figures._layout import legend_of
from paper import sources
from paper.cache import Cache
from paper.published import PUBLISHED
from paper.report import PHASE_KEYS, RESULT_KEYS, _format
from sae_analysis.io.token_sample import TokenSample

ROOT = Path(__file__).resolve().parents[2]


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
    for row in PUBLISHED:
        assert f"| {row.quantity} |" in report and (row.value or "none published") in report and row.tag in report
    assert "resampled 256 latents (1000 resamples)" in report and "N = 512 tokens" in report


def test_intervals_sit_beside_the_numbers_they_qualify(smoke_out):
    """Each interval's estimate is the summary number it is printed beside, and the interval contains it."""
    from sae_analysis.uncertainty import INTERVAL_KEYS

    results = json.loads((smoke_out / "results.json").read_text())
    for run, ivs in results["intervals"].items():
        assert set(ivs) == set(INTERVAL_KEYS)
        for key, iv in ivs.items():
            assert iv["estimate"] == pytest.approx(results["runs"][run][key], rel=1e-4, abs=1e-12), (run, key)
            assert iv["resampled"] == INTERVAL_KEYS[key]
            if np.isfinite(iv["low"]):
                assert iv["low"] <= iv["estimate"] + 1e-12 and iv["estimate"] <= iv["high"] + 1e-12
        assert ivs["frac_dead"]["n_tokens"] == results["runs"][run]["n_freq_tokens"]
        assert np.isnan(ivs["ulf_fraction"]["low"])  # 512 tokens: 0.05 expected firings at 1e-4, no sequence bootstrap


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

    from tests.hubserver import network_down

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
    from sae_analysis.io.runs import MetricsWriter, write_frequency_snapshot

    cfg = HookedTransformerConfig(
        n_layers=1,
        d_model=16,
        d_mlp=32,
        n_heads=2,
        d_head=8,
        n_ctx=128,
        d_vocab=257,
        act_fn="gelu",
        normalization_type="LN",
        seed=0,
    )
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


def _smoke_ctx(out: Path):
    from paper.context import Context

    return Context(pf.parse_args(["--smoke", "--out", str(out)]))


def test_thresholds_come_from_sae_analysis_at_draw_time(smoke_out, monkeypatch):
    """Item 7 of #12: figures/ holds no copy of a threshold; changing the library constant moves what is drawn."""
    import matplotlib.pyplot as plt

    from sae_analysis import metrics, sparsity, ulf
    from sae_analysis.sparsity import SparsityThresholds

    def vlines(fig):
        return [float(ln.get_xdata()[0]) for ax in fig.axes for ln in ax.lines if len(set(np.ravel(ln.get_xdata()))) == 1]

    ctx = _smoke_ctx(smoke_out)
    assert vlines(pf.f01_frequency_histogram(ctx)) == [-4.0]
    assert 0.95 in vlines(pf.FIGURES["f10_rare_cos_vs_freq"](ctx))
    monkeypatch.setattr(metrics, "RARE_FREQ", 1e-3)
    monkeypatch.setattr(ulf, "ULF_COS_THRESHOLD", 0.8)
    monkeypatch.setattr(metrics, "COMMON_FREQ", 1e-2)
    fig = pf.f01_frequency_histogram(ctx)
    assert vlines(fig) == [-3.0] and legend_of(fig.axes[0]).get_texts()[0].get_text().startswith("freq < 1e-3")
    assert -3.0 in vlines(pf.f06_loss_vs_floor(ctx))
    assert 0.8 in vlines(pf.FIGURES["f10_rare_cos_vs_freq"](ctx)) and 0.8 in vlines(pf.f07_rare_directions(ctx))
    monkeypatch.setattr(sparsity, "SparsityThresholds", lambda: SparsityThresholds(top_1=0.5, next_9=0.2))
    joint = next(ax for ax in pf.FIGURES["f15_decoder_top_vs_next9"](ctx).axes if ax.get_xlabel().startswith("Frac"))
    assert [ln.get_xdata()[0] for ln in joint.lines] == [0.5, 0] and joint.lines[1].get_ydata()[0] == 0.2
    f21 = pf.f21_bias_norm_vs_freq(ctx)
    assert any(t.get_text().startswith("freq < 1e-2") for ax in f21.axes for t in legend_of(ax).get_texts())
    plt.close("all")


def test_f11_writes_a_self_contained_html_page_beside_the_figure(smoke_out):
    status = json.loads((smoke_out / "results.json").read_text())["figures"]["f11_rare_direction_tokens"]
    assert status["files"] == ["f11_rare_direction_tokens.png", "f11_rare_direction_tokens.html"]
    page = (smoke_out / "f11_rare_direction_tokens.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page
    assert page.count('class="tok"') > 0 and "source: synthetic smoke checkpoints (seed1)" in page


def test_f11_contexts_are_the_sequences_of_largest_projection(smoke_out):
    from paper.compute_inventory import RARE_CONTEXTS, rare_tokens

    d = rare_tokens(_smoke_ctx(smoke_out), "seed1")
    assert len(d["lengths"]) == RARE_CONTEXTS and int(d["n_rare"]) >= 64  # the planted rare cluster
    starts = np.cumsum(np.r_[0, d["lengths"]])[:-1]
    np.testing.assert_allclose(d["values"][starts + d["positions"]], d["max"])  # each window holds its sequence's max
    assert list(d["max"]) == sorted(d["max"], reverse=True) and len(set(d["seqs"].tolist())) == RARE_CONTEXTS


def test_f19_records_whether_w_out_is_centred(smoke_out):
    from paper.compute_inventory import w_out_spectrum

    s = w_out_spectrum(_smoke_ctx(smoke_out))  # the smoke model is a freshly initialised, unprocessed HookedTransformer
    assert not bool(s["centred"]) and int(s["rank"]) == int(s["d_model"]) == len(s["singular_values"]) == 32


@pytest.mark.parametrize(
    "tokens, expected",
    [
        (np.array([(c - 8) * 122_880_000 for c in range(9, 25)] + [2_000_000_000]), {21: 12, 22: 13}),  # the Hub: exact
        (np.r_[np.arange(1, 17) * 499_712, 8_494_080], {21: 13, 22: 14}),  # the demo's 17 snapshots: 7.0M, 7.5M vs 8.49M
    ],
)
def test_f4_f5_snapshot_pairs_match_run1_fractions_of_training(monkeypatch, tokens, expected):
    from paper import compute_inventory

    monkeypatch.setattr(compute_inventory, "phase", lambda ctx: {"tokens": tokens})
    for checkpoint, index in expected.items():
        assert compute_inventory.snapshot_pair(None, checkpoint) == (index, len(tokens) - 1)


def test_inventory_figures_draw_on_a_hub_kind_source(tmp_path, monkeypatch):
    """#12's figures on the Hub path (loaders replaced by the smoke objects): F4/F5 pick checkpoints 21 / 22 vs 25 exactly."""
    from paper.inventory import FIGURES as INVENTORY

    smoke = sources.load_smoke(pf.parse_args(["--smoke"]))
    monkeypatch.setattr(sources, "load_sae", lambda repo, name, **kw: smoke.saes["seed1" if name != "run2" else "seed2"])
    monkeypatch.setattr(sources, "load_model", lambda name, **kw: smoke.model)
    monkeypatch.setattr(smoke.model, "to_str_tokens", lambda ids: [f"t{i}" for i in ids], raising=False)
    np.save(tmp_path / "tokens.npy", smoke.tokens.numpy())
    out = tmp_path / "out"
    argv = ["--source", "hub", "--tokens-file", str(tmp_path / "tokens.npy"), "--tokens", "256", "--out", str(out)]
    assert pf.main(argv + ["--formats", "png", "--dpi", "30", "--only", *INVENTORY]) == 0
    statuses = json.loads((out / "results.json").read_text())["figures"]
    assert {n: s["status"] for n, s in statuses.items()} == {n: "drawn" for n in INVENTORY}
    from paper.compute_inventory import snapshot_pair
    from paper.context import Context

    ctx = Context(pf.parse_args(argv))
    assert [snapshot_pair(ctx, c) for c in (21, 22)] == [(4, 6), (5, 6)]  # HUB_CHECKPOINTS 9..25: 21 and 22 vs 25
    fig = pf.FIGURES["f04_freq_21_vs_25"](ctx)
    assert [ax.get_xlabel() for ax in fig.axes if "Freq" in ax.get_xlabel()] == ["ckpt 21 (1.6B): Freq (Log10)"]


def test_demo_stored_frequencies_carry_their_firing_counts(tmp_path):
    """The demo's stored frequencies (whole held-out split) come with counts = freq * N, so the dead fraction and its
    interval over latents agree (a -1 placeholder once gave the interval [0, 0] around 2.6 %)."""
    import torch

    from paper.context import Context

    ctx = Context(pf.parse_args(["--source", "demo", "--out", str(tmp_path)]))
    for run, r in ctx.source.stored_freq.items():
        assert r.n_tokens >= 1_048_576, run
        assert torch.equal(r.counts == 0, r.freq == 0) and (r.counts >= 0).all()
        torch.testing.assert_close(r.counts.double() / r.n_tokens, r.freq.double(), atol=0.5 / r.n_tokens, rtol=0)


def test_demo_source_pins_every_input_by_hash():
    """The manifest names each local input by sha256 (SAE folders, model folder, evaluation tokens), as Hub inputs are
    named by commit (test_paper_hub_replica)."""
    from sae_analysis.io import demo_dir
    from sae_analysis.io.provenance import array_digest, digest

    src = sources.load_demo(pf.parse_args(["--tokens", "1024"]))
    prov = src.provenance
    for run in ("seed1", "seed2"):
        assert prov[run]["sha256"] == digest(demo_dir() / run)
    assert prov["model"]["sha256"] == digest(demo_dir() / "model")
    assert prov["tokens"]["sha256"] == array_digest(src.tokens) and prov["tokens"]["shape"] == [8, 128]
    assert prov["seed1"]["sha256"] != prov["seed2"]["sha256"]
