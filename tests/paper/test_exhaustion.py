"""The data-exhaustion experiment (REPLICATION.md §6.2, issue #13): committed snapshot files, the panel numbers, the figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from figures import plot_data_exhaustion
from paper.exhaustion import (
    EXHAUSTION_DIR,
    exhaustion_panels,
    planted_exhaustion_runs,
    read_control,
    read_exhaustion_runs,
    write_control_snapshots,
    write_exhaustion_snapshots,
)


def _write(folder, runs):
    for policy, r in runs.items():
        write_exhaustion_snapshots(folder / f"exhaust_{policy}.npz", r["tokens"], r["log10_freq"], policy=policy,
                                   exhausted_tokens=int(r["exhausted_tokens"]), slice_tokens=int(r["slice_tokens"]),
                                   snapshot_tokens=int(r["snapshot_tokens"]), resample_tokens=list(r["resample_tokens"]))


def test_planted_shares_survive_the_file_round_trip(tmp_path):
    _write(tmp_path, planted_exhaustion_runs())
    runs = read_exhaustion_runs(tmp_path)
    assert sorted(runs) == ["freeze", "stop", "wrap"]
    p = exhaustion_panels(runs)
    for policy, (dead_after, ulf_after) in {"freeze": (0.55, 0.80), "wrap": (0.35, 0.60), "stop": (None, None)}.items():
        tokens, dead = p["dead"][policy]
        _, ulf = p["ulf"][policy]
        assert np.allclose(dead[tokens <= 600_000], 0.25) and np.allclose(ulf[tokens <= 600_000], 0.50)
        if dead_after is not None:  # exactly the planted shares after exhaustion
            assert np.allclose(dead[tokens > 600_000], dead_after) and np.allclose(ulf[tokens > 600_000], ulf_after)
        else:
            assert tokens.max() == 600_000
    before, final = p["histograms"]["freeze"]
    assert before[0] == pytest.approx(25.0) and final[0] == pytest.approx(55.0)  # the dead bin at log10(10^-6.5)
    assert before.sum() == pytest.approx(100.0) and final.sum() == pytest.approx(100.0)
    assert p["exhausted_tokens"] == 600_000 and p["resample_tokens"] == [500_000, 1_000_000]


def test_control_is_cut_to_the_runs_length():
    runs = planted_exhaustion_runs()
    tokens = np.arange(1, 31) * 100_000
    logf = np.full((30, 200), np.log10(1e-2 + 10**-6.5))
    p = exhaustion_panels(runs, (tokens, logf), "fresh")
    t, dead = p["dead"]["fresh"]
    assert t.max() == 1_200_000 and np.all(dead == 0)


def test_hostile_files(tmp_path):
    np.savez(tmp_path / "broken.npz", tokens=np.arange(3))
    with pytest.raises(ValueError, match="broken.npz"):
        read_exhaustion_runs(tmp_path)
    assert read_exhaustion_runs(tmp_path / "nowhere") == {}
    with pytest.raises(ValueError, match="no data-exhaustion runs"):
        exhaustion_panels({})


def test_figure_one_line_per_policy_and_the_exhaustion_mark():
    p = exhaustion_panels(planted_exhaustion_runs())
    fig = plot_data_exhaustion(p["ulf"], p["dead"], p["histograms"], edges=p["edges"], exhausted_tokens=p["exhausted_tokens"],
                               resample_tokens=p["resample_tokens"], source="planted", fig=plt.figure())
    left, mid, right = fig.axes
    assert [line.get_label() for line in left.lines if line.get_marker() == "o"] == ["freeze", "wrap", "stop"]
    assert 0.6 in [float(line.get_xdata()[0]) for line in mid.lines if len(set(np.ravel(line.get_xdata()))) == 1]
    assert len(right.patches) == 6  # before + final per policy
    assert any("planted" in t.get_text() for t in fig.texts)
    plt.close(fig)


@pytest.mark.skipif(not any(EXHAUSTION_DIR.glob("*.npz")), reason="no committed data-exhaustion runs yet")
def test_committed_runs_describe_the_demo_experiment():
    runs = read_exhaustion_runs()
    for policy, r in runs.items():
        assert policy in ("freeze", "wrap", "stop")
        assert r["log10_freq"].shape == (len(r["tokens"]), 4096) and r["log10_freq"].dtype == np.float16
        assert np.all(np.diff(r["tokens"]) > 0) and r["snapshot_tokens"] >= 2**18
        assert r["exhausted_tokens"] < r["slice_tokens"] <= r["tokens"].max() + 65_536  # exhaustion happens in the run


def test_committed_control_is_the_same_recipe_as_the_runs():
    """The fresh-data control must follow the exhaustion rows' recipe (lr 1e-3, seed 1) until their data runs out: at
    their common snapshot (499,712 tokens, before exhaustion) the same latents are rare. The rebuilt demo (lr 3e-4) would
    fail this: its ULF share at 0.5M tokens is ~1 %, the rows' ~61 %."""
    tokens, log10, name = read_control()
    assert "first build" in name and log10.dtype == np.float16 and log10.shape == (len(tokens), 4096)
    run = read_exhaustion_runs()["freeze"]
    common = int(tokens[0])
    assert common in run["tokens"] and common < int(run["exhausted_tokens"])
    a, b = log10[0].astype(np.float64), run["log10_freq"][list(run["tokens"]).index(common)].astype(np.float64)
    assert np.corrcoef(a, b)[0, 1] > 0.99
    assert abs((a < -4).mean() - (b < -4).mean()) < 0.01  # ULF shares (freq < 1e-4) agree to a point


def test_control_round_trip(tmp_path):
    tokens, log10 = np.array([10, 20]), np.full((2, 8), -5.0)
    path = write_control_snapshots(tmp_path / "c.npz", tokens, log10, name="x")
    t, logs, n = read_control(path)
    assert t.tolist() == [10, 20] and logs.dtype == np.float16 and n == "x"
    assert read_control(tmp_path / "missing.npz") is None
