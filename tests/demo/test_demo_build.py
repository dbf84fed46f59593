"""End to end: `demo build --quick` runs the whole pipeline (corpus -> LM -> 2 SAE seeds -> export) and resumes."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from sae_analysis.io import load_model, load_sae
from sae_analysis.io.demo import demo_tokens
from sae_analysis.io.demo_paths import demo_dir
from sae_analysis.io.readers import replace_folder
from trainers.demo.build import finished_run_verdict, run_build
from trainers.demo.cli import main as demo_main
from trainers.demo.config import quick_config
from trainers.demo.export import pick_checkpoints


def test_pick_checkpoints_nearest_fraction_excluding_final():
    tokens = [100, 200, 300, 400, 500]
    assert pick_checkpoints(tokens, 500, (0.5, 0.8)) == [200, 400]  # a tie goes to the earlier checkpoint
    assert pick_checkpoints(tokens, 500, (0.55, 0.8)) == [300, 400]
    assert pick_checkpoints(tokens, 500, (0.99,)) == [400]  # the final checkpoint is never an "intermediate" one
    assert pick_checkpoints(tokens, 500, (0.21, 0.19)) == [100]  # duplicates collapse
    assert pick_checkpoints([500], 500, (0.5,)) == []


@pytest.fixture(scope="module")
def quick_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: extra threads only add contention on a shared CI machine
    try:
        manifest = run_build(quick_config(), root / "demo", root / "work", progress=False)
    finally:
        torch.set_num_threads(threads)
    return root, manifest


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_build_writes_the_loader_layout(quick_build):
    root, manifest = quick_build
    out = root / "demo"
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["quick"] and manifest["regenerate"].startswith("sae-analysis demo build")
    for name in ("seed1", "seed2"):
        sae = load_sae(out / name)
        assert sae.cfg.d_in == 64 and sae.cfg.d_sae == 512 and sae.dtype == torch.float16  # stored in fp16
        assert sae.cfg.hook_name == "blocks.0.mlp.hook_post"
        ckpts = sorted((out / name / "checkpoints").iterdir())
        assert len(ckpts) == 1  # quick_config keeps the checkpoint nearest half-way
        assert all(load_sae(c).dtype == torch.float16 for c in ckpts)
        assert len(list((out / name / "freq").glob("*.npy"))) >= 12
        events = [json.loads(line)["event"] for line in (out / name / "metrics.jsonl").read_text().splitlines()]
        assert {"train", "eval", "checkpoint", "end"} <= set(events)
        metrics = manifest["saes"][name]["metrics"]
        assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
        assert metrics["ce_clean"] <= metrics["ce_recon"] + 0.5 and metrics["l0"] > 0
    assert not torch.equal(load_sae(out / "seed1").W_enc, load_sae(out / "seed2").W_enc)  # seeds differ


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_model_round_trips_and_beats_nothing_silly(quick_build):
    root, manifest = quick_build
    model = load_model(root / "demo" / "model")
    tokens = demo_tokens("eval", 4, seq_len=32)
    loss = float(model(tokens, return_type="loss").detach())
    assert abs(loss - manifest["model"]["eval_loss"]) < 0.5  # same model, different sample
    assert manifest["model"]["eval_loss"] < 5.55  # far below uniform over 257 tokens (ln 257 = 5.55)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_resume_reuses_finished_stages(quick_build):
    root, _ = quick_build
    lm_state = root / "work" / "lm" / "state_dict.safetensors"
    stamp = lm_state.stat().st_mtime_ns
    before = load_sae(root / "demo" / "seed1").W_dec.clone()
    run_build(quick_config(), root / "demo", root / "work", resume=True, progress=False)
    assert lm_state.stat().st_mtime_ns == stamp
    assert torch.equal(load_sae(root / "demo" / "seed1").W_dec, before)


def test_quick_never_targets_the_packaged_demo(capsys):
    assert demo_main(["build", "--quick"]) == 2
    assert "--out" in capsys.readouterr().err
    assert demo_main(["build", "--quick", "--out", str(demo_dir())]) == 2


def test_replace_folder_replaces_the_folder_whole(tmp_path):
    out, new = tmp_path / "demo", tmp_path / ".demo.new"
    new.mkdir()
    (new / "a.txt").write_text("first")
    replace_folder(new, out)  # no previous folder
    assert (out / "a.txt").read_text() == "first" and not new.exists()
    new.mkdir()
    (new / "b.txt").write_text("second")
    replace_folder(new, out)
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]  # stale files of the old suite are gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_finished_run_verdict():
    base = quick_config().sae
    assert finished_run_verdict(dataclasses.replace(base, d_in=64), base) == "reuse"  # d_in is inferred, not configured
    longer = dataclasses.replace(base, num_tokens=base.num_tokens * 2)
    assert finished_run_verdict(base, longer) == "extend"
    assert finished_run_verdict(longer, base) == "retrain"  # cannot shorten a finished run
    assert finished_run_verdict(base, dataclasses.replace(base, l1_coeff=2e-3)) == "retrain"
    assert finished_run_verdict(base, dataclasses.replace(longer, lr=1e-4)) == "retrain"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_export_stores_held_out_frequencies_with_their_token_count(quick_build):
    """Each seed's sparsity.safetensors is a recount on the held-out tokens the manifest names: same dead latents, same
    frequencies up to float32 rounding of the stored log10 density."""
    from sae_analysis.frequency import frequencies_from_log10, latent_frequencies

    root, manifest = quick_build
    model, cfg = load_model(root / "demo" / "model"), quick_config()
    tokens = demo_tokens("eval", cfg.n_metric_seqs, seq_len=cfg.lm.n_ctx)  # the quick build's small held-out sample
    for name in ("seed1", "seed2"):
        record = manifest["saes"][name]["sparsity"]
        assert record["n_tokens"] == tokens.numel() and record["min_resolvable_freq"] == 1 / tokens.numel()
        sae = load_sae(root / "demo" / name, dtype=torch.float32)
        recount = latent_frequencies(model, sae, tokens)
        stored = frequencies_from_log10(sae.log10_density, name)
        assert torch.equal(stored.freq == 0, recount.counts == 0)
        assert torch.allclose(stored.freq, recount.freq, rtol=1e-5, atol=0)
        assert record["frac_dead"] == float((recount.counts == 0).double().mean())
