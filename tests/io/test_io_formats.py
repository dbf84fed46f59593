"""Checkpoint formats: round trips, behavioural orientation checks (d_in == d_sae, so shapes cannot catch a transpose),
detection, clear errors, the malicious-pickle refusal and atomic native saves."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from sae_analysis import SAE, load_sae, save_sae
from sae_analysis.io import (
    CorruptFileError,
    MissingFileError,
    NonFiniteWeightsError,
    ShapeMismatchError,
    UnknownFormatError,
    UnsafePickleError,
    detect_format,
)

D = 12  # d_in == d_sae: a transposed weight has the right shape, only behaviour can catch it


def rand(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen)


def neel_state(gen, d_in=D, d_sae=D) -> dict[str, torch.Tensor]:
    return {
        "W_enc": rand(gen, d_in, d_sae),
        "W_dec": rand(gen, d_sae, d_in),
        "b_enc": rand(gen, d_sae) * 0.3,
        "b_dec": rand(gen, d_in),
    }


def write_original(folder: Path, stem: str, state, cfg: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / f"{stem}.pt")
    d_in, d_sae = state["W_enc"].shape
    cfg = cfg if cfg is not None else {"d_mlp": d_in, "dict_mult": d_sae // d_in, "l1_coeff": 7e-4, "seed": 52}
    (folder / f"{stem}_cfg.json").write_text(json.dumps(cfg))
    return folder / f"{stem}.pt"


def roundtrip_equal(sae: SAE, x: torch.Tensor, expected_x_hat: torch.Tensor, expected_f: torch.Tensor) -> None:
    f = sae.encode(x)
    torch.testing.assert_close(f, expected_f, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sae.decode(f), expected_x_hat, rtol=1e-5, atol=1e-5)


# ----- original ------------------------------------------------------------------------------------------------------
def test_original_matches_neels_forward(tmp_path, gen):
    st = neel_state(gen)
    pt = write_original(tmp_path, "25", st)
    x = rand(gen, 20, D).abs()
    f = torch.relu((x - st["b_dec"]) @ st["W_enc"] + st["b_enc"])  # REPLICATION.md §3.2
    sae = load_sae(pt)
    roundtrip_equal(sae, x, f @ st["W_dec"] + st["b_dec"], f)
    assert (f > 0).any() and (f == 0).any()  # the check exercised both sides of the ReLU
    c = sae.cfg
    assert (c.l1_coeff, c.loss_convention, c.hook_name, c.model_name) == (7e-4, "original", "blocks.0.mlp.hook_post", "gelu-1l")
    assert sae.meta["format"] == "original" and sae.meta["cfg"]["seed"] == 52


def test_original_shapes_from_state_dict_and_alias(tmp_path, gen):
    st = neel_state(gen, d_in=8, d_sae=32)
    write_original(tmp_path, "25", st)
    write_original(tmp_path, "47", neel_state(gen, d_in=8, d_sae=16))
    sae = load_sae(tmp_path, "run1")
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (8, 32) and sae.meta["filename"] == "25.pt"
    assert load_sae(tmp_path, "run2").cfg.d_sae == 16
    assert load_sae(tmp_path / "47_cfg.json").cfg.d_sae == 16  # pointing at the cfg file also works


def test_original_cfg_that_does_not_fit_the_weights_warns_and_records(tmp_path, gen, caplog):
    """§4.1/§14.7: {v}_cfg.json is the saving process's global cfg; shapes come from the state dict."""
    state = neel_state(gen, 8, 32)
    pt = write_original(tmp_path, "3", state, cfg={"d_mlp": 8, "dict_mult": 8, "l1_coeff": 3e-4})
    with caplog.at_level(logging.WARNING, logger="sae_analysis.io.disk"):
        sae = load_sae(pt)
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (8, 32) and torch.equal(sae.W_enc.detach(), state["W_enc"])
    assert sae.meta["cfg_mismatch"] == {"cfg_d_mlp": 8, "cfg_dict_mult": 8, "d_in": 8, "d_sae": 32}
    assert [r.levelno for r in caplog.records] == [logging.WARNING] and "3_cfg.json" in caplog.text
    caplog.clear()
    write_original(tmp_path, "4", state, cfg={"d_mlp": 16, "dict_mult": 2, "l1_coeff": 3e-4})  # d_mlp wrong, product right
    assert load_sae(tmp_path / "4.pt").meta["cfg_mismatch"]["cfg_d_mlp"] == 16 and "4_cfg.json" in caplog.text


def test_original_cfg_that_fits_records_nothing(tmp_path, gen, caplog):
    for name, cfg in (("5", {"d_mlp": 8, "dict_mult": 4, "l1_coeff": 3e-4}), ("6", {"l1_coeff": 3e-4})):
        write_original(tmp_path, name, neel_state(gen, 8, 32), cfg=cfg)
        with caplog.at_level(logging.WARNING, logger="sae_analysis.io.disk"):
            sae = load_sae(tmp_path / f"{name}.pt")
        assert "cfg_mismatch" not in sae.meta and sae.cfg.d_sae == 32
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_original_needs_its_cfg(tmp_path, gen):
    pt = write_original(tmp_path, "9", neel_state(gen))
    (tmp_path / "9_cfg.json").unlink()
    with pytest.raises(MissingFileError, match="9_cfg.json"):
        load_sae(pt)


def test_original_wrong_keys_and_inner_shape_mismatch(tmp_path, gen):
    st = neel_state(gen, 8, 16)
    write_original(tmp_path, "1", {**st, "extra": torch.zeros(1)})
    with pytest.raises(CorruptFileError, match="extra"):
        load_sae(tmp_path / "1.pt")
    write_original(tmp_path, "2", {**st, "W_dec": st["W_dec"].T.contiguous()})  # transposed decoder
    with pytest.raises(ShapeMismatchError, match="W_dec"):
        load_sae(tmp_path / "2.pt")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_refused(tmp_path, gen, value):
    st = neel_state(gen)
    st["W_dec"][3, 4] = value
    pt = write_original(tmp_path, "5", st)
    with pytest.raises(NonFiniteWeightsError, match=r"5\.pt.*W_dec"):
        load_sae(pt)


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_never_executed(tmp_path):
    marker = tmp_path / "PWNED"
    torch.save({"W_enc": _Evil(str(marker))}, tmp_path / "25.pt")
    (tmp_path / "25_cfg.json").write_text("{}")
    with pytest.raises(UnsafePickleError, match=r"refused to unpickle .*25\.pt"):
        load_sae(tmp_path, "25")
    assert not marker.exists()


def test_truncated_and_corrupt_files(tmp_path, gen, make_sae):
    pt = write_original(tmp_path / "o", "25", neel_state(gen))
    pt.write_bytes(pt.read_bytes()[:200])
    with pytest.raises(CorruptFileError, match=r"25\.pt"):
        load_sae(pt)
    folder = save_sae(make_sae(), tmp_path / "n")
    w = folder / "sae_weights.safetensors"
    w.write_bytes(w.read_bytes()[:-50])
    with pytest.raises(CorruptFileError, match="sae_weights.safetensors"):
        load_sae(folder)
    (folder / "cfg.json").write_text('{"d_in": 8, "d_sae"')
    with pytest.raises(CorruptFileError, match=r"cfg\.json.*truncated"):
        load_sae(folder)


# ----- native / SAELens layout ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides", [{}, {"activation": "topk", "k": 3}, {"activation": "jumprelu"}, {"apply_b_dec_to_input": False}]
)
def test_native_roundtrip_is_exact(tmp_path, make_sae, gen, overrides):
    sae = make_sae(
        D, D, hook_name="blocks.0.mlp.hook_post", model_name="gelu-1l", l1_coeff=1.5e-3, loss_convention="per_token", **overrides
    )
    if sae.cfg.activation == "jumprelu":
        sae.threshold.copy_(rand(gen, D).abs() * 0.2)
    sae.meta = {"format": "original", "repo": "NeelNanda/sparse_autoencoder", "filename": "25.pt"}
    loaded = load_sae(save_sae(sae, tmp_path / "s"))
    assert loaded.cfg == sae.cfg
    for name in ("W_enc", "W_dec", "b_enc", "b_dec", "threshold"):
        assert torch.equal(getattr(loaded, name), getattr(sae, name)), name
    x = rand(gen, 16, D)
    assert torch.equal(loaded.decode(loaded.encode(x)), sae.decode(sae.encode(x)))
    assert loaded.meta["format"] == "saelens" and loaded.meta["cfg"]["metadata"]["sae_analysis"]["source"]["filename"] == "25.pt"
    assert loaded.log10_density is None


def test_native_sparsity_roundtrip_and_stale_file_removed(tmp_path, make_sae, gen):
    sae = make_sae()
    sae.log10_density = -rand(gen, sae.cfg.d_sae).abs()
    folder = save_sae(sae, tmp_path / "s")
    assert torch.equal(load_sae(folder).log10_density, sae.log10_density)
    sae.log10_density = None
    save_sae(sae, folder)
    assert not (folder / "sparsity.safetensors").exists() and load_sae(folder).log10_density is None


def test_native_save_is_atomic_and_keeps_siblings(tmp_path, make_sae, monkeypatch):
    folder = tmp_path / "seed1"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("{}\n")
    old = make_sae(seed=1)
    save_sae(old, folder)
    import sae_analysis.io.readers as readers

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(readers, "save_file", boom)  # the weights write fails half-way
    with pytest.raises(OSError, match="disk full"):
        save_sae(make_sae(seed=2), folder)
    monkeypatch.undo()
    assert torch.equal(load_sae(folder).W_enc, old.W_enc)  # previous checkpoint intact
    assert sorted(p.name for p in folder.iterdir()) == ["cfg.json", "checkpoints", "metrics.jsonl", "sae_weights.safetensors"]


def test_saelens_pre_v6_config_loads(tmp_path, gen):
    W_enc, W_dec, b_enc, b_dec = rand(gen, D, D), rand(gen, D, D), rand(gen, D), rand(gen, D)
    save_file({"W_enc": W_enc, "W_dec": W_dec, "b_enc": b_enc, "b_dec": b_dec}, str(tmp_path / "sae_weights.safetensors"))
    cfg = {
        "d_in": D,
        "d_sae": D,
        "hook_point": "blocks.0.hook_resid_pre",
        "model_name": "gpt2",
        "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": 4},
        "apply_b_dec_to_input": False,
        "dtype": "float32",
    }
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    sae = load_sae(tmp_path)
    assert (sae.cfg.activation, sae.cfg.k, sae.cfg.hook_name, sae.cfg.apply_b_dec_to_input) == (
        "topk",
        4,
        "blocks.0.hook_resid_pre",
        False,
    )
    x = rand(gen, 9, D)
    pre = x @ W_enc + b_enc
    vals, idx = pre.topk(4, dim=-1)
    f = torch.zeros_like(pre).scatter_(-1, idx, vals.relu())
    roundtrip_equal(sae, x, f @ W_dec + b_dec, f)


def test_saelens_unsupported_variants_are_named(tmp_path, make_sae):
    folder = save_sae(make_sae(), tmp_path / "s")
    cfg = json.loads((folder / "cfg.json").read_text())
    (folder / "cfg.json").write_text(json.dumps({**cfg, "normalize_activations": "layer_norm"}))
    with pytest.raises(UnknownFormatError, match="normalize_activations"):
        load_sae(folder)
    (folder / "cfg.json").write_text(json.dumps({**cfg, "architecture": "gated"}))
    with pytest.raises(UnknownFormatError, match="gated"):
        load_sae(folder)


# ----- sparsify (math written from sparsify's SparseCoder.encode/decode) -----------------------------------------------
def test_sparsify_layout_matches_its_math(tmp_path, gen):
    enc_w, enc_b, W_dec, b_dec = rand(gen, D, D), rand(gen, D), rand(gen, D, D), rand(gen, D)
    folder = tmp_path / "layers.0.mlp"
    folder.mkdir()
    save_file({"encoder.weight": enc_w, "encoder.bias": enc_b, "W_dec": W_dec, "b_dec": b_dec}, str(folder / "sae.safetensors"))
    (folder / "cfg.json").write_text(
        json.dumps({"d_in": D, "k": 3, "num_latents": D, "expansion_factor": 32, "activation": "topk"})
    )
    x = rand(gen, 10, D)
    pre = torch.relu(F.linear(x - b_dec, enc_w, enc_b))
    vals, idx = pre.topk(3, dim=-1)
    f = torch.zeros_like(pre).scatter_(-1, idx, vals)
    sae = load_sae(folder)
    roundtrip_equal(sae, x, f @ W_dec + b_dec, f)
    assert sae.meta["format"] == "sparsify" and sae.meta["hookpoint"] == "layers.0.mlp" and sae.cfg.k == 3
    (folder / "cfg.json").write_text(json.dumps({"d_in": D, "k": 3, "expansion_factor": 2}))
    with pytest.raises(ShapeMismatchError, match="expansion_factor"):
        load_sae(folder)


# ----- dictionary_learning ---------------------------------------------------------------------------------------------
def test_dictionary_learning_matches_its_math(tmp_path, gen):
    enc_w, enc_b, dec_w, bias = rand(gen, D, D), rand(gen, D), rand(gen, D, D), rand(gen, D)
    torch.save({"encoder.weight": enc_w, "encoder.bias": enc_b, "decoder.weight": dec_w, "bias": bias}, tmp_path / "ae.pt")
    (tmp_path / "config.json").write_text(
        json.dumps({"trainer": {"activation_dim": D, "dict_size": D, "dict_class": "AutoEncoder"}})
    )
    x = rand(gen, 10, D)
    f = torch.relu(F.linear(x - bias, enc_w, enc_b))  # AutoEncoder.encode
    sae = load_sae(tmp_path)
    roundtrip_equal(sae, x, F.linear(f, dec_w) + bias, f)  # AutoEncoder.decode: decoder.weight is [d_in, d_sae]
    assert sae.meta["format"] == "dictionary_learning"
    (tmp_path / "config.json").write_text(json.dumps({"trainer": {"activation_dim": D, "dict_size": 2 * D}}))
    with pytest.raises(ShapeMismatchError, match="dict_size"):
        load_sae(tmp_path)


def test_dictionary_learning_topk_and_unknown_keys(tmp_path, gen):
    enc_w, enc_b, dec_w, b_dec = rand(gen, D, D), rand(gen, D), rand(gen, D, D), rand(gen, D)
    torch.save(
        {"encoder.weight": enc_w, "encoder.bias": enc_b, "decoder.weight": dec_w, "b_dec": b_dec, "k": torch.tensor(2)},
        tmp_path / "ae.pt",
    )
    x = rand(gen, 10, D)
    post = torch.relu(F.linear(x - b_dec, enc_w, enc_b))
    vals, idx = post.topk(2, dim=-1)
    f = torch.zeros_like(post).scatter_(-1, idx, vals)
    roundtrip_equal(load_sae(tmp_path / "ae.pt"), x, F.linear(f, dec_w) + b_dec, f)
    torch.save({"encoder.weight": enc_w, "decoder_bias": b_dec, "r_mag": enc_b}, tmp_path / "ae.pt")
    with pytest.raises(UnknownFormatError, match="r_mag"):
        load_sae(tmp_path)


# ----- detection, override, names, demo ----------------------------------------------------------------------------
def test_detection_and_explicit_format(tmp_path, make_sae, gen):
    folder = save_sae(make_sae(), tmp_path / "native")
    assert detect_format(folder) == ("saelens", folder)
    assert detect_format(folder / "sae_weights.safetensors") == ("saelens", folder)
    pt = write_original(tmp_path / "orig", "25", neel_state(gen))
    assert detect_format(tmp_path / "orig") == ("original", pt)
    assert load_sae(folder / "cfg.json", format="saelens").cfg == make_sae().cfg
    with pytest.raises(MissingFileError, match="sae.safetensors"):  # forcing the wrong format: a clear error, not garbage
        load_sae(folder, format="sparsify")
    with pytest.raises(UnknownFormatError, match="known formats"):
        load_sae(folder, format="nope")


def test_unknown_folder_lists_files_and_formats(tmp_path, gen):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(UnknownFormatError, match=r"weights\.bin.*known formats.*original"):
        load_sae(tmp_path)
    write_original(tmp_path, "1", neel_state(gen))
    write_original(tmp_path, "2", neel_state(gen))
    with pytest.raises(UnknownFormatError, match="pass a name"):
        load_sae(tmp_path)


def test_missing_paths_and_names(tmp_path):
    with pytest.raises(MissingFileError, match="does not exist"):
        load_sae(tmp_path / "nope")
    with pytest.raises(MissingFileError, match=r"run1.*25\.pt"):
        load_sae(tmp_path, "run1")


def test_demo_dispatch(tmp_path, monkeypatch, make_sae):
    from sae_analysis.io import demo_paths

    monkeypatch.setattr(demo_paths, "demo_dir", lambda: tmp_path)
    sae = make_sae(seed=3)
    save_sae(sae, tmp_path / "seed1")
    assert torch.equal(load_sae("demo", "seed1").W_dec, sae.W_dec)
    with pytest.raises(MissingFileError, match=r"seed9.*seed1"):
        load_sae("demo", "seed9")


def test_dtype_and_device_arguments(tmp_path, make_sae):
    folder = save_sae(make_sae(), tmp_path / "s")
    sae = load_sae(folder, dtype=torch.float64, device="cpu")
    assert sae.dtype == torch.float64 and sae.device.type == "cpu"


def test_bf16_checkpoint_keeps_its_dtype(tmp_path, make_sae):
    sae = make_sae().to(torch.bfloat16)
    folder = save_sae(sae, tmp_path / "s")
    assert json.loads((folder / "cfg.json").read_text())["dtype"] == "bfloat16"
    loaded = load_sae(folder)
    assert loaded.dtype == torch.bfloat16 and torch.equal(loaded.W_dec, sae.W_dec)


def test_save_onto_a_file_is_refused(tmp_path, make_sae):
    (tmp_path / "f").write_text("x")
    with pytest.raises(CorruptFileError, match="not a folder"):
        save_sae(make_sae(), tmp_path / "f")


def test_non_integer_original_names_are_not_assumed_gelu_1l(tmp_path, gen):
    pt = write_original(tmp_path, "gelu-2l_L0_16384_mlp_out_51", neel_state(gen))
    sae = load_sae(pt)
    assert sae.cfg.hook_name is None and sae.cfg.model_name is None and sae.meta["format"] == "original"
