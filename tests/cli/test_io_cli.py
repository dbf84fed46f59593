"""The `sae-analysis` dispatcher (lazy subcommand registry) and `sae-analysis info` on every format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import sae_analysis.cli as sae_cli
from sae_analysis import save_sae
from sae_analysis.cli import main
from sae_analysis.cli.info import decoder_norm_stats

D = 6


def checkpoints(root: Path, gen: torch.Generator, make_sae) -> dict[str, Path]:
    """One small checkpoint per format."""
    out = {"saelens": save_sae(make_sae(D, 2 * D), root / "native")}
    orig = root / "orig"
    orig.mkdir()
    W_enc, W_dec = torch.randn(D, 2 * D, generator=gen), torch.randn(2 * D, D, generator=gen)
    torch.save({"W_enc": W_enc, "W_dec": W_dec, "b_enc": torch.zeros(2 * D), "b_dec": torch.zeros(D)}, orig / "25.pt")
    (orig / "25_cfg.json").write_text(json.dumps({"d_mlp": D, "dict_mult": 2, "l1_coeff": 3e-4, "seed": 52}))
    out["original"] = orig / "25.pt"
    sp = root / "sp"
    sp.mkdir()
    save_file(
        {"encoder.weight": W_enc.T.contiguous(), "encoder.bias": torch.zeros(2 * D), "W_dec": W_dec, "b_dec": torch.zeros(D)},
        str(sp / "sae.safetensors"),
    )
    (sp / "cfg.json").write_text(json.dumps({"d_in": D, "k": 2, "num_latents": 2 * D}))
    out["sparsify"] = sp
    dl = root / "dl"
    dl.mkdir()
    torch.save(
        {"encoder.weight": W_enc.T, "encoder.bias": torch.zeros(2 * D), "decoder.weight": W_dec.T, "bias": torch.zeros(D)},
        dl / "ae.pt",
    )
    out["dictionary_learning"] = dl
    return out


@pytest.mark.parametrize("fmt", ["saelens", "original", "sparsify", "dictionary_learning"])
def test_info_json_on_each_format(tmp_path, gen, make_sae, capsys, fmt):
    path = checkpoints(tmp_path, gen, make_sae)[fmt]
    assert main(["info", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["format"], out["d_in"], out["d_sae"]) == (fmt, D, 2 * D)
    assert out["activation"] == ("topk" if fmt == "sparsify" else "relu")
    assert out["dtype"] == "float32" and set(out["decoder_norms"]) == {"min", "median", "max", "frac_unit"}


def test_info_text_and_name_argument(tmp_path, gen, make_sae, capsys):
    checkpoints(tmp_path, gen, make_sae)
    assert main(["info", str(tmp_path / "orig"), "run1", "--format", "original"]) == 0
    text = capsys.readouterr().out
    assert "format      original" in text and "d_sae       12" in text and '"seed": 52' in text
    assert "decoder row norms" in text


def test_decoder_norm_stats_analytic():
    norms = torch.tensor([1.0, 1.0005, 0.5, 2.0, 0.9995])
    s = decoder_norm_stats(norms)
    assert s == {"min": 0.5, "median": 1.0, "max": 2.0, "frac_unit": pytest.approx(0.6)}


def test_info_reports_unit_decoder_rows(tmp_path, make_sae, capsys):
    sae = make_sae(D, 2 * D)  # Neel's init: rows scaled to unit norm
    with torch.no_grad():
        sae.W_dec[:3] *= 2
    assert main(["info", str(save_sae(sae, tmp_path / "s")), "--json"]) == 0
    dn = json.loads(capsys.readouterr().out)["decoder_norms"]
    assert dn["frac_unit"] == pytest.approx(0.75) and dn["max"] == pytest.approx(2.0, rel=1e-5)


def test_errors_exit_2_without_traceback(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "missing does not exist" in err and "Traceback" not in err
    (tmp_path / "junk.bin").write_bytes(b"x")
    assert main(["info", str(tmp_path)]) == 2
    assert "known formats" in capsys.readouterr().err


def test_registry_is_lazy_and_lists_missing_modules(tmp_path, monkeypatch, capsys):
    (tmp_path / "fake_cmd_mod.py").write_text(
        "HELP = 'a fake command'\n"
        "def add_arguments(p):\n    p.add_argument('--n', type=int, default=1)\n"
        "def run(args):\n    print('ran', args.n)\n    return 0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sae_cli.BUILTIN, "fake", "fake_cmd_mod")
    monkeypatch.setitem(sae_cli.BUILTIN, "ghost", "sae_analysis.cli.does_not_exist")
    assert main(["info", "/nowhere"]) == 2 and "fake_cmd_mod" not in sys.modules  # only the selected module is imported
    assert main(["fake", "--n", "3"]) == 0 and "ran 3" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    help_text = capsys.readouterr().out
    assert "a fake command" in help_text and "(not installed)" in help_text and "info" in help_text
    assert main(["ghost"]) == 2 and "not installed" in capsys.readouterr().err
    sys.modules.pop("fake_cmd_mod", None)


def test_console_script_subprocess(tmp_path, make_sae):
    script = Path(sys.executable).parent / "sae-analysis"
    if not script.exists():
        pytest.skip("console script not installed in this environment")
    folder = save_sae(make_sae(D, 2 * D), tmp_path / "s")
    ok = subprocess.run([str(script), "info", str(folder), "--json"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["d_sae"] == 2 * D
    bad = subprocess.run([str(script), "info", str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
