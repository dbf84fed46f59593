"""figures/: the inventory figures of issue #12 (F4/F5 box marginals, F10, F11, F12, F16, F22) on planted data.
Assertions on artists and on the HTML text, never on pixels."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pytest
from test_figures import all_texts, legend_texts, vline_xs

from figures import (
    plot_baseline_sparsity,
    plot_commonness_page,
    plot_freq_vs_freq,
    plot_fve_page,
    plot_rare_scatter,
    plot_rare_tokens,
    plot_top_features,
    rare_tokens_html,
)
from figures.rare_tokens import TOKEN_CMAP, token_norm
from figures.style import freq_text


def figure_texts(fig) -> list[str]:
    """Texts placed on a figure and on its subfigures, recursively."""
    return [t.get_text() for t in fig.texts] + [t for sub in fig.subfigs for t in figure_texts(sub)]


def test_f4_box_marginals_give_each_checkpoints_median(rng):
    a, b = rng.normal(-3, 1, 41), rng.normal(-2, 1, 41)
    fig = plot_freq_vs_freq(a, b, label_a="7.0M tokens", label_b="8.49M tokens (final)", marginal="box", title="T", source="s")
    joint = next(ax for ax in fig.axes if ax.get_xlabel())
    top, right = (ax for ax in fig.axes if ax is not joint)
    (top_median,) = [line for line in top.lines if line.get_gid() == "median"]
    (right_median,) = [line for line in right.lines if line.get_gid() == "median"]
    np.testing.assert_allclose(top_median.get_xdata(), np.median(a))  # horizontal box of checkpoint A, on x
    np.testing.assert_allclose(right_median.get_ydata(), np.median(b))  # vertical box of checkpoint B, on y
    np.testing.assert_allclose(joint.lines[0].get_xdata(), joint.lines[0].get_ydata())  # y = x
    assert fig.get_suptitle() == "T" and len(top.patches) == len(right.patches) == 1
    with pytest.raises(ValueError, match="marginal"):
        plot_freq_vs_freq(a, b, label_a="a", label_b="b", marginal="violin", source="s")


def test_f10_threshold_line_only_when_given(rng):
    cos, freq = {"run1": rng.uniform(0, 1, 6)}, {"run1": rng.uniform(-6.5, -4, 6)}
    ax = plot_rare_scatter(cos, freq, quantity="Cosine", threshold=0.9, title="F10", source="s", ax=plt.figure().gca())
    assert vline_xs(ax) == [0.9] and legend_texts(ax) == ["run1: n=6", "cos = 0.9"] and ax.get_title() == "F10"
    assert vline_xs(plot_rare_scatter(cos, freq, source="s", ax=plt.figure().gca())) == []


CONTEXTS = [["a", "b\n", "c"], ["x", "yy"]]
VALUES = [np.array([1.0, -2.0, 0.0]), np.array([4.0, np.nan])]


def test_f11_static_tokens_coloured_by_projection_on_one_symmetric_scale():
    fig = plot_rare_tokens(CONTEXTS, VALUES, headings=["first", "second"], highlight=[1, 0], source="demo")
    tokens = [t for ax in fig.axes for t in ax.texts if t.get_gid() == "token"]
    assert [t.get_text() for t in tokens] == ["a", "b↵", "c", "x", "yy"]
    norm = token_norm(VALUES)
    assert (norm.vmin, norm.vmax) == (-4.0, 4.0)  # the largest |value| over all contexts, NaN ignored
    cmap = mpl.colormaps[TOKEN_CMAP]
    for text, value in zip(tokens, [1.0, -2.0, 0.0, 4.0]):
        np.testing.assert_allclose(text.get_bbox_patch().get_facecolor()[:3], cmap(norm(value))[:3], atol=1 / 255)
    np.testing.assert_allclose(tokens[4].get_bbox_patch().get_facecolor()[:3], 0.9, atol=1 / 255)  # NaN: grey
    edges = [t.get_bbox_patch().get_edgecolor()[3] > 0 for t in tokens]
    assert edges == [False, True, False, True, False]  # the highlighted token of each context
    lines = sorted({round(t.get_position()[1], 3) for t in tokens}, reverse=True)
    assert len(lines) == 3  # 'c' wraps after the newline token; the second context starts a new block
    assert {"first", "second", "source: demo"} <= set(all_texts(fig))
    with pytest.raises(ValueError, match="2 tokens but 1"):
        plot_rare_tokens([["a", "b"]], [np.ones(1)], source="s")


class _Spans(HTMLParser):
    def __init__(self):
        super().__init__()
        self.spans, self.tags, self.attrs = [], [], []
        self._in = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [v or "" for _, v in attrs]
        if tag == "span" and dict(attrs).get("class") == "tok":
            self._in = dict(attrs)
            self.spans.append([self._in, ""])

    def handle_data(self, data):
        if self._in is not None:
            self.spans[-1][1] += data

    def handle_endtag(self, tag):
        if tag == "span":
            self._in = None


def test_f11_html_is_self_contained_and_colours_match_the_figure():
    page = rare_tokens_html(CONTEXTS + [["<b>&"]], VALUES + [np.array([-4.0])], highlight=[2, 0, 0], source="demo <seed1>")
    parser = _Spans()
    parser.feed(page)
    assert [text for _, text in parser.spans] == ["a", "b↵\n", "c", "x", "yy", "<b>&"]  # escaped, newline kept
    norm, cmap = token_norm(VALUES), mpl.colormaps[TOKEN_CMAP]
    first = re.search(r"background:(#[0-9a-f]{6})", parser.spans[0][0]["style"]).group(1)
    assert first == mpl.colors.to_hex(cmap(norm(1.0)))
    assert [s[0]["title"] for s in parser.spans] == ["1", "-2", "0", "4", "nan", "-4"]
    assert ["outline" in s[0]["style"] for s in parser.spans] == [False, False, True, True, False, True]
    assert "script" not in parser.tags and "link" not in parser.tags and "img" not in parser.tags
    assert not any(re.search(r"(https?:|//)", a) for a in parser.attrs) and "url(" not in page  # nothing to fetch
    assert "source: demo &lt;seed1&gt;" in page


def test_f12_page_cumulative_top_k_and_top_100_histogram(rng):
    fve = {k: np.clip(rng.uniform(0, 1, 50) * k / 100, 0, 1) for k in (1, 5, 10, 100)}
    fig = plot_fve_page(fve, what="all 50 latents", source="s")
    left, right = fig.axes
    assert legend_texts(left) == ["top 1", "top 5", "top 10"] and legend_texts(right) == ["top 100"]
    np.testing.assert_allclose([p.get_path().vertices[:, 1].max() for p in left.patches], 100.0)  # cumulative
    assert right.patches[0].get_path().vertices[:, 1].max() < 100.0 and right.get_ylabel() == "Percent of latents"
    assert fig.get_suptitle() == "Encoder neuron-basis sparsity (all 50 latents)"
    assert [t.get_text() for t in fig.texts if t.get_text().startswith("source")] == ["source: s"]
    with pytest.raises(ValueError, match="lacks k"):
        plot_fve_page({1: fve[1]}, source="s")


def test_f16_gaussian_page_has_fve_panels_scatter_thresholds_and_one_source(rng):
    top_1 = rng.uniform(0, 0.2, 30)
    fve = {1: top_1, 5: top_1 + 0.1, 10: top_1 + 0.3, 100: np.ones(30)}
    fig = plot_baseline_sparsity(fve, ["dense"] * 30, thresholds=(0.35, 0.1), source="randn")
    joint = next(ax for ax in fig.axes if ax.get_xlabel() == "Frac Explained by Top Neuron")
    dense = next(c for c in joint.collections if c.get_label().startswith("dense"))
    np.testing.assert_allclose(dense.get_offsets(), np.c_[top_1, np.full(30, 0.3)])  # next 9 = top 10 - top 1
    assert sorted(float(line.get_xdata()[0]) for line in joint.lines) == [0, 0.35]
    assert figure_texts(fig).count("source: randn") == 1


def test_f22_page_three_metrics_by_group_and_top_features(rng):
    common = np.r_[np.ones(5, bool), np.zeros(3, bool)]
    metrics = {
        "Neuron Kurtosis": rng.normal(size=8),
        "Neuron Frac Max": rng.uniform(size=8),
        "Vocab Kurtosis": rng.normal(size=8),
    }
    weights, latents = rng.normal(size=(2, 16)), np.array([7, 3])
    fig = plot_commonness_page(metrics, common, weights, latents, common_label="freq > 10^-3.5", source="s")
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes[:3]] == list(metrics)
    assert legend_texts(axes[0]) == ["freq > 10^-3.5 (n=5)", "rest (n=3)"]
    top = axes[3]
    assert top.get_title().startswith("Top Features in Neuron Basis") and legend_texts(top) == ["latent 7", "latent 3"]
    np.testing.assert_allclose(top.lines[1].get_ydata(), weights[1])
    with pytest.raises(ValueError, match="three metrics"):
        plot_commonness_page({"a": np.ones(8)}, common, weights, latents, source="s")
    with pytest.raises(ValueError, match="weights"):
        plot_top_features(weights, latents[:1], source="s", ax=plt.figure().gca())


def test_by_commonness_heavy_tail_piles_into_the_last_bin(rng):
    from figures import plot_by_commonness

    values = np.r_[rng.normal(0, 1, 999), 1e4]
    ax = plot_by_commonness(values, np.ones(1000, bool), name="k", bins=10, source="s", ax=plt.figure().gca())
    heights = [p.get_height() for p in ax.patches[:10]]
    assert sum(heights) == pytest.approx(100.0) and ax.patches[9].get_x() < 10  # the outlier is counted, not stretching x
    assert "values above" in ax.get_xlabel()


@pytest.mark.parametrize("freq, text", [(1e-4, "1e-4"), (10**-3.5, "10^-3.5"), (2e-4, "0.0002"), (1.0, "1e0")])
def test_freq_text(freq, text):
    assert freq_text(freq) == text
