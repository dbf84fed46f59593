"""figures/: multi-panel pages and the shared style (F13/F15, F17, F21, F23). Assertions on artists, never on pixels."""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.patches import Rectangle
from test_figures import all_texts, box_medians

from figures import (
    CaseStudy,
    plot_bias_norm_panels,
    plot_by_commonness,
    plot_case_study,
    plot_enc_vs_dec_top1,
    plot_fve_histograms,
    plot_kurtosis,
    plot_logit_effect,
    plot_top_contexts,
    plot_top_vs_next9,
    plot_vs_frequency,
    use_style,
)
from figures._layout import legend_of
from figures.case_study import visible
from figures.style import BASELINE_GREY, RC, SPARSITY_COLORS, add_source, seed_color


def joint_of(fig):
    return next(ax for ax in fig.axes if ax.get_xlabel() == "Frac Explained by Top Neuron")


def test_f15_marker_counts_per_class_baseline_and_thresholds(rng):
    classes = np.array(["dense"] * 6 + ["1-sparse"] * 3 + ["10-sparse"] * 1)
    top1, next9 = rng.uniform(0, 1, 10), rng.uniform(0, 0.5, 10)
    baseline = (rng.uniform(0, 0.05, 7), rng.uniform(0, 0.05, 7))
    fig = plot_top_vs_next9(
        top1, next9, classes=classes, baseline=baseline, thresholds=(0.35, 0.1), source="embedded demo (seed1)"
    )
    joint = joint_of(fig)
    counts = {c.get_label().split(" ")[0]: len(c.get_offsets()) for c in joint.collections}
    assert counts == {"Gaussian": 7, "1-sparse": 3, "10-sparse": 1, "dense": 6}
    by_label = {c.get_label().split(" ")[0]: c for c in joint.collections}
    np.testing.assert_allclose(by_label["1-sparse"].get_offsets(), np.c_[top1[6:9], next9[6:9]])
    np.testing.assert_allclose(by_label["1-sparse"].get_facecolor()[0][:3], mpl.colors.to_rgb(SPARSITY_COLORS["1-sparse"]))
    np.testing.assert_allclose(by_label["Gaussian"].get_facecolor()[0][:3], mpl.colors.to_rgb(BASELINE_GREY))
    assert "1-sparse (n=3, 30.0%)" in all_texts(fig)
    assert [ln.get_xdata()[0] for ln in joint.lines] == [0.35, 0] and joint.lines[1].get_ydata()[0] == 0.1
    assert fig.get_suptitle().replace("\n", " ") == "Fraction of Squared Decoder Sum Explained by Top Neuron vs Next 9 Neurons"
    assert "source: embedded demo (seed1)" in all_texts(fig)
    unmarked = joint_of(plot_top_vs_next9(top1, next9, classes=classes, source="s"))
    assert len(unmarked.lines) == 0  # the 1-sparse lines come from the caller only


def test_f13_encoder_title_and_no_classes(rng):
    fig = plot_top_vs_next9(rng.uniform(0, 1, 5), rng.uniform(0, 1, 5), which="encoder", bins=4, source="s")
    joint = joint_of(fig)
    assert len(joint.collections) == 1 and len(joint.collections[0].get_offsets()) == 5
    assert fig.get_suptitle().startswith("Fraction of Squared Sum Explained")
    marginal_bars = [len(ax.patches) for ax in fig.axes if ax is not joint]
    assert marginal_bars == [4, 4]


def test_f15_rejects_unknown_class_and_length_mismatch(rng):
    x = rng.uniform(0, 1, 3)
    with pytest.raises(ValueError, match="unknown sparsity classes"):
        plot_top_vs_next9(x, x, classes=["dense", "dense", "sparse-ish"], source="s")
    with pytest.raises(ValueError, match="differ in length"):
        plot_top_vs_next9(x, x[:2], source="s")


def test_f17_kurtosis_clipped_into_edge_bins(rng):
    real = np.r_[rng.normal(3, 1, 50), 400.0, -40.0]
    baseline = rng.normal(0, 0.1, 60)
    ax = plot_kurtosis(real, baseline, bins=55, source="s", ax=plt.figure().gca())
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]  # the step outlines are Polygons
    base_bars, real_bars = bars[:55], bars[55:]
    assert sum(p.get_height() for p in base_bars) == 60
    assert sum(p.get_height() for p in real_bars) == 52  # the two outliers are clipped in, not dropped
    assert real_bars[-1].get_height() >= 1 and real_bars[0].get_height() >= 1
    assert ax.get_title().replace("\n", " ") == "Neuron Kurtosis (real vs random baseline, clipped at 50)"
    assert [t.get_text().split(" ")[0] for t in legend_of(ax).get_texts()] == ["random", "real"]
    medians = [x for x, _ in box_medians(ax)]  # box marginal of the clipped values, baseline on top
    assert medians == [pytest.approx(np.median(baseline)), pytest.approx(np.median(np.clip(real, -5, 50)))]


def test_f21_panels_split_by_rare_mask_with_ols_line(rng):
    n = 40
    x = rng.normal(size=n)
    log_freq = 2.0 * x + 1.0  # planted exact linear relation
    rare = np.arange(n) < 15
    fig = plot_bias_norm_panels(
        {"Encoder bias": x, "Encoder norm": x**2, "Decoder norm": -x, "Weighted bias": x}, log_freq, rare, source="s"
    )
    visible_axes = [ax for ax in fig.axes if ax.axison]
    assert len(visible_axes) == 4 and len(fig.axes) == 6  # 2x3 grid, two cells left without axes
    first = visible_axes[0]
    assert [len(c.get_offsets()) for c in first.collections] == [25, 15]  # no outliers: nothing at the edge
    assert legend_of(first).get_texts()[0].get_text() == "OLS on the points inside the axes:\ny = 2 x +1"
    np.testing.assert_allclose(first.lines[0].get_ydata(), 2.0 * first.lines[0].get_xdata() + 1.0)
    key = legend_of(fig.axes[4])  # the common / rare key, once, in the first spare cell
    assert [t.get_text() for t in key.get_texts()] == ["common (n=25)", "rare (n=15)"]
    assert [ax.get_title() for ax in visible_axes][:2] == ["Encoder bias vs frequency", "Encoder norm vs frequency"]
    assert all_texts(fig).count("source: s") == 1


def test_f21_single_panel_rejects_mismatch(rng):
    with pytest.raises(ValueError, match="must match"):
        plot_vs_frequency(np.ones(3), np.ones(4), np.zeros(3, bool), name="Encoder bias", source="s", ax=plt.figure().gca())


def test_visible_escapes_control_characters():
    assert visible("a\nb\tc") == "a↵b→c"
    assert visible(" ") == "␣"
    assert visible("\x00") == "\\x00"
    assert visible("$x$") == "$x$"
    assert visible(np.str_("  ")) == "␣␣" and visible("") == "∅" and visible(np.str_("\x1a")) == "\\x1a"


def test_top_contexts_highlight_the_activating_token():
    contexts = [list("cost = $5\n"), list("import os"), list("ab")]
    ax = plot_top_contexts(contexts, [7, 0, 1], [3.0, 2.0, 1.0], source="s", ax=plt.figure().gca())
    highlighted = [t for t in ax.texts if t.get_gid() == "activating-token"]
    assert [t.get_text() for t in highlighted] == ["$", "i", "b"]
    assert all(t.get_bbox_patch() is not None for t in highlighted)
    ys = [t.get_position()[1] for t in highlighted]
    assert ys == sorted(ys, reverse=True)  # highest activation on top
    texts = [t.get_text() for t in ax.texts]
    assert "cost = " in texts and "5↵" in texts and "   3.000" in texts
    with pytest.raises(ValueError, match="outside"):
        plot_top_contexts([list("ab")], [5], [1.0], source="s", ax=plt.figure().gca())


def test_logit_effect_bars_ordered_top_then_most_negative_last():
    ax = plot_logit_effect(
        ["a", "b"], np.array([3.0, 2.0]), ["y", "z"], np.array([-5.0, -1.0]), source="s", ax=plt.figure().gca()
    )
    bars = sorted(ax.patches, key=lambda p: -p.get_y())  # top row first
    assert [p.get_width() for p in bars] == [3.0, 2.0, -1.0, -5.0]
    by_row = {float(pos): label.get_text() for pos, label in zip(ax.get_yticks(), ax.get_yticklabels())}
    assert [by_row[k] for k in sorted(by_row, reverse=True)] == ["'a'", "'b'", "'z'", "'y'"]


def test_case_study_page_has_three_panels_and_stats(rng):
    study = CaseStudy(
        latent=12,
        contexts=[list("and I went")],
        positions=[4],
        activations=np.array([2.5]),
        top_tokens=["I"],
        top_values=np.array([1.0]),
        bottom_tokens=["x"],
        bottom_values=np.array([-1.0]),
        enc_weights=rng.normal(size=16),
        dec_weights=rng.normal(size=16),
        stats={"freq": 0.0123},
    )
    fig = plot_case_study(study, source="embedded demo (seed1)")
    assert len(fig.axes) == 3
    assert fig.get_suptitle() == "Latent 12\nfreq = 0.0123"
    weights_ax = next(ax for ax in fig.axes if ax.get_title() == "Weights in the neuron basis")
    np.testing.assert_allclose(weights_ax.lines[1].get_ydata(), study.dec_weights)
    assert all_texts(fig).count("source: embedded demo (seed1)") == 3


def test_use_style_is_scoped():
    before = mpl.rcParams["axes.spines.top"]
    with use_style():
        assert mpl.rcParams["axes.spines.top"] is RC["axes.spines.top"]
        assert mpl.rcParams["figure.constrained_layout.use"]
    assert mpl.rcParams["axes.spines.top"] == before


def test_seed_colours_cycle_and_source_on_figure():
    assert seed_color(0) != seed_color(1) and seed_color(4) == seed_color(0)
    fig = plt.figure()
    add_source(fig, "NeelNanda/sparse_autoencoder run1@6bcc245")
    assert [t.get_text() for t in fig.texts] == ["source: NeelNanda/sparse_autoencoder run1@6bcc245"]


def test_f12_cumulative_fve_curves_end_at_100_percent(rng):
    fve = {1: rng.uniform(0, 0.5, 20), 10: rng.uniform(0.3, 1, 20)}
    base = {1: rng.uniform(0, 0.1, 30)}
    ax = plot_fve_histograms(fve, baseline_by_k=base, bins=10, source="s", ax=plt.figure().gca())
    assert len(ax.patches) == 3  # one step outline per curve: top 1, its baseline, top 10
    assert [t.get_text() for t in legend_of(ax).get_texts()] == ["top 1", "top 1, Gaussian baseline", "top 10"]
    last_heights = [p.get_path().vertices[:, 1].max() for p in ax.patches]
    np.testing.assert_allclose(last_heights, 100.0)  # cumulative percent reaches 100
    assert ax.get_ylabel() == "Cumulative percent of latents"


def test_f14_encoder_vs_decoder_top1(rng):
    x, y = rng.uniform(0, 1, 9), rng.uniform(0, 1, 9)
    ax = plot_enc_vs_dec_top1(x, y, source="s", ax=plt.figure().gca())
    np.testing.assert_allclose(ax.collections[0].get_offsets(), np.c_[x, y])
    np.testing.assert_allclose(ax.lines[0].get_xdata(), ax.lines[0].get_ydata())


def test_f22_groups_split_by_commonness(rng):
    values = np.r_[rng.normal(10, 1, 6), rng.normal(0, 1, 4)]
    common = np.r_[np.ones(6, bool), np.zeros(4, bool)]
    ax = plot_by_commonness(
        values, common, name="Neuron Kurtosis", bins=8, common_label="freq > 10^-3.5", source="s", ax=plt.figure().gca()
    )
    heights = [p.get_height() for p in ax.patches if isinstance(p, Rectangle)]
    assert sum(heights[:8]) == pytest.approx(100.0) and sum(heights[8:]) == pytest.approx(100.0)  # percent within each group
    assert [t.get_text() for t in legend_of(ax).get_texts()] == ["freq > 10^-3.5 (n=6)", "rest (n=4)"]
    with pytest.raises(ValueError, match="is_common"):
        plot_by_commonness(values, common[:3], name="x", source="s", ax=plt.figure().gca())


def test_tokens_text_scales():
    from figures.style import tokens_text

    assert [tokens_text(n) for n in (1_695_481_856, 7_500_000, 65_536)] == ["1.7B", "7.5M", "65,536"]
