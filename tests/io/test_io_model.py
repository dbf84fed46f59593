"""load_model / save_model: the local layout round trip, the demo dispatch, and pretrained names (TransformerLens)."""

from __future__ import annotations

import json

import pytest
import torch

from sae_analysis import load_model
from sae_analysis.io import CorruptFileError, HubError, MissingFileError, ShapeMismatchError, save_model

HOOK = "blocks.0.mlp.hook_post"


def tiny_model(seed: int = 0):
    """One GELU layer shaped like gelu-1l but small (STYLE.md §6.4)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(seed)
    cfg = HookedTransformerConfig(
        n_layers=1, d_model=16, n_ctx=8, d_head=4, n_heads=4, d_mlp=32, d_vocab=50, act_fn="gelu", normalization_type="LN"
    )
    model = HookedTransformer(cfg)
    with torch.no_grad():
        for p in model.parameters():  # non-trivial biases and LN weights too
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_save_load_roundtrip_identical_activations(tmp_path, model):
    folder = save_model(model, tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_model(folder)
    tokens = torch.randint(0, 50, (3, 8), generator=torch.Generator().manual_seed(1))
    logits, cache = model.run_with_cache(tokens, names_filter=HOOK)
    logits2, cache2 = loaded.run_with_cache(tokens, names_filter=HOOK)
    assert torch.equal(logits, logits2) and torch.equal(cache[HOOK], cache2[HOOK])
    assert loaded.cfg.d_mlp == 32 and loaded.cfg.dtype == torch.float32 and not loaded.training
    assert json.loads((folder / "config.json").read_text())["dtype"] == "float32"


def test_weights_must_match_config(tmp_path, model):
    folder = save_model(model, tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "d_mlp": 64}))
    with pytest.raises(ShapeMismatchError, match=r"model\.safetensors does not match .*config\.json"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps({**cfg, "n_layers": "many", "bogus_key": 1}))
    with pytest.raises(CorruptFileError, match="config.json"):
        load_model(folder)


def test_demo_dispatch(tmp_path, monkeypatch, model):
    from sae_analysis.io import demo_paths

    monkeypatch.setattr(demo_paths, "demo_dir", lambda: tmp_path)
    with pytest.raises(MissingFileError, match="demo model is not installed"):
        load_model("demo")
    save_model(model, tmp_path / "model")
    assert torch.equal(load_model("demo").W_in, model.W_in)


def test_missing_local_path(tmp_path):
    with pytest.raises(MissingFileError, match="does not exist"):
        load_model(tmp_path / "nope")


def test_pretrained_names_go_to_transformer_lens_in_fp32(monkeypatch):
    from transformer_lens import HookedTransformer

    calls = []

    def fake_from_pretrained(name, **kwargs):
        calls.append((name, kwargs))
        return tiny_model().to(torch.float64)

    monkeypatch.setattr(HookedTransformer, "from_pretrained", staticmethod(fake_from_pretrained))
    m = load_model("gpt2")  # gelu-1l (Neel's format) goes through sae_analysis.io.hub_model: tests/test_io_hub_model.py
    assert calls == [("gpt2", {"device": "cpu"})]  # TransformerLens defaults: fold_ln etc. left as they are
    assert m.W_in.dtype == torch.float32

    def offline(name, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(HookedTransformer, "from_pretrained", staticmethod(offline))
    with pytest.raises(HubError, match=r"'gpt2'.*local model folder"):
        load_model("gpt2")


def test_unavailable_tokenizer_falls_back_to_none(tmp_path, model, caplog):
    folder = save_model(model, tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "tokenizer_name": "sae-analysis-test/no-such-tokenizer"}))
    loaded = load_model(folder)  # offline in tests (conftest): the tokenizer cannot be fetched
    assert loaded.tokenizer is None and torch.equal(loaded.W_out, model.W_out)
    assert "no-such-tokenizer" in caplog.text


def test_load_model_keeps_stdout_clean(tmp_path, model, capsys, monkeypatch):
    save_model(model, tmp_path / "m")
    import transformer_lens

    real_init = transformer_lens.HookedTransformer.__init__

    def chatty_init(self, *a, **kw):  # TransformerLens prints while building models; simulate it deterministically
        print("Moving model to device:  cpu")
        real_init(self, *a, **kw)

    monkeypatch.setattr(transformer_lens.HookedTransformer, "__init__", chatty_init)
    capsys.readouterr()
    load_model(tmp_path / "m")
    assert capsys.readouterr().out == ""
