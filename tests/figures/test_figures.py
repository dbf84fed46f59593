"""figures/: single-axes plots (F1, F2, F3, F6, F7, F8, F18, F20). Assertions on artists, never on pixels."""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.patches import Rectangle, StepPatch

from figures import (
    plot_enc_dec_cosine,
    plot_freq_vs_freq,
    plot_frequency_histogram,
    plot_frequency_histograms,
    plot_loss_vs_floor,
    plot_null_space,
    plot_phase_curve,
    plot_phase_transition,
    plot_rare_cosine,
    plot_rare_directions,
    plot_rare_projection,
    plot_rare_scatter,
    plot_singular_values,
    plot_training_curves,
)
from figures._layout import legend_of
from figures.style import CHECKPOINT_CMAP, DEC_COLOR, ENC_COLOR


def all_texts(target) -> list[str]:
    """Every text string of a Figure (its own texts, suptitle and all its axes' texts, titles and legends)."""
    fig = target if hasattr(target, "axes") and not hasattr(target, "plot") else target.figure
    texts = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        texts += [t.get_text() for t in ax.texts] + [ax.get_title(), ax.get_title("left")]
        legend = legend_of(ax)
        texts += [t.get_text() for t in legend.get_texts()] if legend else []
    return texts


def box_medians(ax) -> list[tuple[float, float]]:
    """(x, row) of every median line in the box-marginal strip above `ax` (row 0 on top, then -1, -2, ...)."""
    (strip,) = ax.child_axes
    return [(float(line.get_xdata()[0]), float(np.mean(line.get_ydata()))) for line in strip.lines if line.get_gid() == "median"]


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in legend_of(ax).get_texts()]


def vline_xs(ax) -> list[float]:
    return [float(line.get_xdata()[0]) for line in ax.lines if len(set(np.ravel(line.get_xdata()))) == 1]


def test_f1_histogram_percent_threshold_and_source(rng):
    values = np.r_[rng.uniform(-6.5, -4.01, 30), rng.uniform(-3.9, -1, 70), np.nan]
    ax = plot_frequency_histogram(values, bins=20, rare_log10=-4.0, source="embedded demo (seed1)", ax=plt.figure().gca())
    assert len(ax.patches) == 20
    assert sum(p.get_height() for p in ax.patches) == pytest.approx(100.0)  # percent of the 100 finite latents
    assert vline_xs(ax) == [-4.0]
    assert legend_texts(ax) == ["freq < 1e-4: 30.0% of latents"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Freq (Log10)", "Percent of latents")
    assert "source: embedded demo (seed1)" in all_texts(ax)
    no_threshold = plot_frequency_histogram(values, bins=20, source="s", ax=plt.figure().gca())
    assert vline_xs(no_threshold) == [] and legend_of(no_threshold) is None  # thresholds come from the caller only


def test_axes_contract_none_means_current_axes(rng):
    fig = plt.figure()
    current = fig.add_subplot(1, 2, 2)
    assert plot_frequency_histogram(rng.normal(-3, 1, 50), source="s") is current


def test_every_figure_needs_a_source(rng):
    with pytest.raises(ValueError, match="source"):
        plot_frequency_histogram(rng.normal(size=10), source=" ", ax=plt.figure().gca())


def test_f2_histograms_one_outline_per_checkpoint_coloured_by_tokens():
    edges = np.linspace(-6.5, 0, 6)
    percent = np.array([[10, 20, 30, 40, 0], [50, 0, 0, 0, 50], [0, 0, 100, 0, 0.0]])
    tokens = [3e8, 1e8, 2e8]
    ax = plot_frequency_histograms(edges, percent, tokens, source="s", ax=plt.figure().gca())
    stairs = [p for p in ax.patches if isinstance(p, StepPatch)]
    assert len(stairs) == 3
    np.testing.assert_allclose(stairs[1].get_data().values, percent[1])
    np.testing.assert_allclose(stairs[0].get_data().edges, edges)
    cmap = plt.get_cmap(CHECKPOINT_CMAP)
    np.testing.assert_allclose(stairs[1].get_edgecolor(), cmap(0.0))  # fewest tokens: start of the colour map
    np.testing.assert_allclose(stairs[0].get_edgecolor(), cmap(1.0 - 1e-12), atol=1e-3)
    assert [s.get_label() for s in stairs] == ["300M", "100M", "200M"]
    assert any(a.get_ylabel() == "million tokens" for a in ax.figure.axes)  # the colour bar


def test_f2_box_per_checkpoint_in_checkpoint_order_and_colour(rng):
    edges, tokens = np.linspace(-6.5, 0, 6), [1e8, 2e8, 3e8]
    log10 = np.stack([rng.uniform(-6.5, -1, 50) + shift for shift in (0.0, 0.5, 1.0)])
    ax = plot_frequency_histograms(edges, np.ones((3, 5)), tokens, log10_freq=log10, source="s", ax=plt.figure().gca())
    assert box_medians(ax) == [(pytest.approx(np.median(row)), -float(i)) for i, row in enumerate(log10)]
    (strip,) = ax.child_axes
    stairs = [p for p in ax.patches if isinstance(p, StepPatch)]
    np.testing.assert_allclose(strip.patches[2].get_facecolor()[:3], stairs[2].get_edgecolor()[:3])
    with pytest.raises(ValueError, match="log10_freq must be"):
        plot_frequency_histograms(edges, np.ones((3, 5)), tokens, log10_freq=log10[:2], source="s", ax=plt.figure().gca())


def test_f2_histograms_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="n_checkpoints"):
        plot_frequency_histograms(np.linspace(0, 1, 4), np.ones((2, 3)), [1.0], source="s", ax=plt.figure().gca())


def test_phase_curve_lines_changepoint_and_markers():
    tokens = np.array([1e8, 2e8, 3e8, 4e8])
    ulf = np.array([0.1, 0.1, 0.5, 0.5])
    median = np.array([-5.0, -5.1, -5.6, -5.7])
    ax = plot_phase_curve(
        tokens,
        ulf,
        median_log10_freq=median,
        changepoint=2.5e8,
        markers={"data exhausted": 3.5e8},
        source="s",
        ax=plt.figure().gca(),
    )
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [100, 200, 300, 400])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [10, 10, 50, 50])
    assert vline_xs(ax) == [250.0, 350.0]
    twin = next(a for a in ax.figure.axes if a is not ax)
    np.testing.assert_allclose(twin.lines[0].get_ydata(), median)
    labels = legend_texts(twin)
    assert "changepoint ≈ 250M tokens" in labels and "data exhausted" in labels and "ULF median freq" in labels


def test_phase_transition_page_has_both_panels():
    edges = np.linspace(-6.5, 0, 4)
    fig = plot_phase_transition(edges, np.ones((2, 3)), [1e6, 2e6], np.array([0.2, 0.4]), changepoint=1.5e6, source="demo")
    titles = [a.get_title().replace("\n", " ") for a in fig.axes]  # wrapped to the panel's width
    assert "Frequencies for checkpoints" in titles and "Ultra-low-frequency cluster over training" in titles
    assert all_texts(fig).count("source: demo") == 2


def test_f3_scatter_identity_line_and_marginals(rng):
    a, b = rng.normal(-3, 1, 40), rng.normal(-3, 1, 40)
    fig = plot_freq_vs_freq(a, b, label_a="ckpt 21 (1597M)", label_b="ckpt 22 (1720M)", bins=10, source="hub")
    joint = next(ax for ax in fig.axes if ax.get_xlabel())
    np.testing.assert_allclose(joint.collections[0].get_offsets(), np.c_[a, b])
    line = joint.lines[0]
    np.testing.assert_allclose(line.get_xdata(), line.get_ydata())  # y = x
    marginal_bars = sorted(len(ax.patches) for ax in fig.axes if ax is not joint)
    assert marginal_bars == [10, 10]
    assert fig.get_suptitle() == "Frequencies for ckpt 21 (1597M) and ckpt 22 (1720M)"
    assert "source: hub" in all_texts(fig)
    with pytest.raises(ValueError, match="same latents"):
        plot_freq_vs_freq(a, b[:-1], label_a="a", label_b="b", source="s")


def test_f6_loss_vs_floor_sorted_percent_lines():
    floors = np.array([0.0, -6.5, -4.0, -2.0])
    score = np.array([0.0, 0.92, 0.91, 0.5])
    curves = {"seed1 final": (floors, score), "seed1 ckpt": (floors, score * 0.9)}
    ax = plot_loss_vs_floor(curves, rare_log10=-3.5, source="s", ax=plt.figure().gca())
    assert vline_xs(ax) == [-3.5] and legend_texts(ax)[2] == "rare threshold (10^-3.5)"
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [-6.5, -4.0, -2.0, 0.0])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [92.0, 91.0, 50.0, 0.0])
    assert legend_texts(ax)[:2] == ["seed1 final", "seed1 ckpt"]
    assert ax.get_ylabel() == "% Loss Recovered"
    with pytest.raises(ValueError, match="floors"):
        plot_loss_vs_floor({"x": (floors, score[:2])}, source="s", ax=plt.figure().gca())


def test_f7_rare_cosine_share_above_threshold_and_cross_seed_cosine():
    cos_a = np.r_[np.full(8, 0.99), 0.2, 0.5]
    cos_b = np.r_[np.full(3, 0.97), np.full(7, 0.1), np.nan]
    runs = {"seed1": cos_a, "seed2": cos_b}
    ax = plot_rare_cosine(runs, direction_cos=0.9871, threshold=0.95, bins=20, source="s", ax=plt.figure().gca())
    steps = ax.patches
    assert len(steps) == 2
    assert legend_texts(ax) == ["seed1: n=10, 80.0% > 0.95", "seed2: n=10, 30.0% > 0.95"]
    assert "0.987" in ax.get_title()
    assert vline_xs(ax) == [0.95]
    assert box_medians(ax) == [(pytest.approx(np.median(cos_a)), 0.0), (pytest.approx(np.nanmedian(cos_b)), -1.0)]
    ax = plot_rare_cosine(runs, threshold=0.5, bins=20, source="s", ax=plt.figure().gca())
    assert vline_xs(ax) == [0.5] and legend_texts(ax)[0] == "seed1: n=10, 80.0% > 0.5"
    assert vline_xs(plot_rare_cosine(runs, source="s", ax=plt.figure().gca())) == []


def test_f8_projection_and_page():
    proj = {"run1": np.array([1.0, 2.0, 3.0]), "run2": np.array([0.5, 0.5])}
    ax = plot_rare_projection(proj, bins=5, source="s", ax=plt.figure().gca())
    assert legend_texts(ax) == ["run1: n=3", "run2: n=2"]
    fig = plot_rare_directions({"run1": np.array([0.99, 0.5])}, proj, direction_cos=0.5, source="s")
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="at least one run"):
        plot_rare_cosine({}, source="s", ax=plt.figure().gca())


def test_f18_encoder_decoder_cosine_median(rng):
    cos = rng.uniform(0, 1, 101)
    ax = plot_enc_dec_cosine(np.r_[cos, np.inf], bins=10, source="s", ax=plt.figure().gca())
    assert sum(p.get_height() for p in ax.patches) == 101
    assert vline_xs(ax) == [pytest.approx(np.median(cos))]
    assert legend_texts(ax) == [f"median {np.median(cos):.3f}, n=101"]


def test_f20_null_space_overlay_and_reference(rng):
    enc, dec = rng.uniform(0.6, 0.9, 30), rng.uniform(0.7, 0.8, 20)
    ax = plot_null_space(enc, dec, bins=10, reference=0.75, source="s", ax=plt.figure().gca())
    heights = [p.get_height() for p in ax.patches if isinstance(p, Rectangle)]
    assert len(heights) == 20 and sum(heights[:10]) == 30 and sum(heights[10:]) == 20
    outlines = [p.get_edgecolor()[:3] for p in ax.patches if not isinstance(p, Rectangle) and not p.get_fill()]
    assert outlines == [mpl.colors.to_rgb(ENC_COLOR), mpl.colors.to_rgb(DEC_COLOR)]  # solid, distinct: no blended colour
    assert vline_xs(ax) == [0.75]
    assert legend_texts(ax)[0] == f"encoder (median {np.median(enc):.3f}, n=30)"
    assert [x for x, _ in box_medians(ax)] == [pytest.approx(np.median(enc)), pytest.approx(np.median(dec))]


def test_box_marginal_rows_skip_empty_groups_and_share_x(rng):
    from figures._draw import box_marginal

    ax = plt.figure().gca()
    a, b = rng.normal(0, 1, 31), np.r_[rng.normal(5, 1, 20), np.nan, np.inf]
    strip = box_marginal(ax, [a, np.array([np.nan]), b], ["C0", "C1", "C2"])
    assert box_medians(ax) == [(pytest.approx(np.median(a)), 0.0), (pytest.approx(np.median(b[:20])), -2.0)]
    assert strip.get_shared_x_axes().joined(strip, ax) and strip.get_ylim() == (-2.5, 0.5)
    with pytest.raises(ValueError, match="2 groups but 1 colors"):
        box_marginal(ax, [a, b], ["C0"])


def test_f9_rare_scatter_per_run(rng):
    cos = {"seed1": rng.uniform(0.9, 1, 5), "seed2": rng.uniform(0, 1, 3)}
    freq = {"seed1": rng.uniform(-6.5, -4, 5), "seed2": rng.uniform(-6.5, -4, 3)}
    ax = plot_rare_scatter(cos, freq, source="s", ax=plt.figure().gca())
    assert [len(c.get_offsets()) for c in ax.collections] == [5, 3]
    np.testing.assert_allclose(ax.collections[1].get_offsets(), np.c_[cos["seed2"], freq["seed2"]])
    with pytest.raises(ValueError, match="frequencies"):
        plot_rare_scatter({"a": np.ones(2)}, {"a": np.ones(3)}, source="s", ax=plt.figure().gca())


def test_f19_singular_values_sorted_descending_log_scale_rank_marks():
    """A planted centred 8 x 4 matrix: rank 3 = d_model - 1, its 4th singular value at rounding level, marked at 3 and 4."""
    rng = np.random.default_rng(0)
    W = rng.normal(size=(8, 4))
    W -= W.mean(-1, keepdims=True)  # TransformerLens's centring of writing weights
    S = np.linalg.svd(W, compute_uv=False)
    ax = plot_singular_values(S[::-1], rank=3, centred=True, title="W_out", source="s", ax=plt.figure().gca())
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [1, 2, 3, 4])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), S)  # descending, whatever the input order
    assert S[3] < 1e-12 * S[0] and ax.get_yscale() == "log"
    assert vline_xs(ax) == [3, 4]
    assert legend_texts(ax) == ["4 singular values, numerical rank 3", "rank 3 = d_model - 1", "rank 4 = d_model"]
    assert ax.get_title() == "W_out (centred: rank <= d_model - 1)"
    ax = plot_singular_values(np.array([1.0, 0.0]), centred=False, source="s", ax=plt.figure().gca())
    assert list(ax.lines[0].get_ydata()) == [1.0] and "1 exact zeros not drawn" in legend_texts(ax)[0]
    assert ax.get_title().endswith("(not centred)")


def test_training_curves_one_panel_per_metric_one_line_per_run():
    tokens = np.array([1e6, 2e6, 3e6])
    runs = {
        "seed1": {"loss": (tokens, np.array([3.0, 2.0, 1.0])), "l0": (tokens, np.array([40.0, 20, 10]))},
        "seed2": {"loss": (tokens, np.array([3.5, 2.5, 1.5])), "recons_score": (tokens[:2], np.array([0.5, -0.1]))},
    }
    fig = plot_training_curves(runs, source="demo")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["loss", "l0", "recons_score"]
    assert [len(ax.lines) for ax in panels] == [2, 1, 1]
    np.testing.assert_allclose(panels[0].lines[1].get_xdata(), [1, 2, 3])  # millions
    assert panels[0].get_yscale() == "log" and panels[2].get_yscale() == "linear"
    assert fig.get_suptitle() == "Training curves"
    with pytest.raises(ValueError, match="no curves"):
        plot_training_curves({"seed1": {}}, source="s")


@pytest.mark.parametrize("empty", [np.array([]), np.array([np.nan, np.inf])])
def test_histograms_survive_empty_or_non_finite_input(empty):
    """A run with no rare latents, or all-NaN frequencies, still gives a labelled (empty) figure, without warnings."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ax = plot_frequency_histogram(empty, bins=5, rare_log10=-4.0, source="s", ax=plt.figure().gca())
        assert legend_texts(ax) == ["freq < 1e-4: nan% of latents"]
        assert plot_rare_cosine({"seed1": empty}, source="s", ax=plt.figure().gca()).get_legend() is not None
        assert plot_enc_dec_cosine(empty, source="s", ax=plt.figure().gca()).get_legend() is None
        assert (
            legend_texts(plot_null_space(empty, empty, reference=0.75, source="s", ax=plt.figure().gca()))[0] == "encoder (n=0)"
        )
        plot_freq_vs_freq(empty, empty, label_a="a", label_b="b", source="s")
