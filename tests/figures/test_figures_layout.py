"""figures/_layout.py and the layout helpers of figures/_draw.py: each geometry predicate fails on a deliberately bad
layout and passes on a good one; legend placement, robust limits, outlined histograms and title wrapping (issue #16)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.transforms import Bbox

from figures._draw import outlined_hist, robust_limits, scatter_within, within
from figures._layout import (
    INSIDE_LOCS,
    count_covered,
    layout_problems,
    legends_covering_data,
    overlapping_labels,
    place_legend,
    points_outside_limits,
    set_title,
    wrap_to_width,
)
from figures.style import joint_axes, new_figure, use_style

LONG = "Weighted encoder bias (b_enc x decoder norm) vs frequency"


def _cloud(rng, n=2000):
    return rng.normal(0, 1, n), rng.normal(0, 1, n)


# ----- the predicates: a bad layout fails, a good one passes ------------------------------------------------------------
def test_overlapping_titles_of_neighbouring_axes_are_found():
    fig, axes = plt.subplots(1, 3, figsize=(8, 3), layout="constrained")
    for ax in axes:
        ax.set_title(LONG)  # ~57 characters on a 2.5-inch panel: runs into the next title
    problems = overlapping_labels(fig)
    assert problems and all("overlaps" in p for p in problems)
    for ax in axes:
        set_title(ax, LONG)  # wrapped to the panel's width
    assert overlapping_labels(fig) == []


def test_axis_labels_of_different_axes_overlapping_are_found():
    fig = plt.figure(figsize=(4, 4))
    a, b = fig.add_axes((0.2, 0.2, 0.6, 0.6)), fig.add_axes((0.2, 0.2, 0.6, 0.6))
    a.set_xlabel("the same place"), b.set_xlabel("the same place")
    assert len(overlapping_labels(fig)) == 1
    b.set_xlabel("")
    assert overlapping_labels(fig) == []


def test_a_legend_over_points_or_bars_is_found(rng):
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
    x, y = _cloud(rng)
    left.scatter(x, y, label="points")
    left.legend(loc="center")
    right.hist(rng.normal(size=5000), bins=30, label="bars")
    right.legend(loc="upper center")  # over the tallest bar, as F1's legend was
    problems = legends_covering_data(fig)
    assert len(problems) == 2 and all("covers" in p for p in problems)


def test_a_legend_over_empty_space_passes(rng):
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(rng.uniform(0, 1, 500), rng.uniform(0, 1, 500), label="points")
    ax.set(xlim=(0, 3), ylim=(0, 3))
    ax.legend(loc="upper right")
    assert legends_covering_data(fig) == []


def test_a_legend_of_a_twin_axis_over_the_other_axis_points_is_found():
    """F2's right panel: the legend lives on the twin, the covered curve on the first axis."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    x = np.linspace(0, 1, 40)
    ax.plot(x, np.full_like(x, 0.9), marker="o", label="high curve")
    twin = ax.twinx()
    twin.plot(x, np.full_like(x, 0.1), marker="s", color="C1", label="low curve")
    ax.set_ylim(0, 1), twin.set_ylim(0, 1)
    twin.legend(loc="upper center")
    assert legends_covering_data(fig)


@pytest.mark.parametrize("cut, fails", [(0.05, True), (0.008, False)])
def test_limits_must_show_99_percent_of_the_points(rng, cut, fails):
    fig, ax = plt.subplots()
    x = np.sort(rng.normal(size=10_000))
    ax.scatter(x, rng.normal(size=x.size))
    ax.set_xlim(x[int(cut * x.size)], x[-1])  # hides the lowest `cut` of the points
    assert bool(points_outside_limits(fig)) is fails


def test_reference_lines_are_not_data(rng):
    """axvline spans the axes in axes coordinates: a legend over it covers no data, and it has no 'points'."""
    fig, ax = plt.subplots()
    ax.axvline(0.5, label="threshold")
    ax.set_xlim(0, 1)
    ax.legend(loc="center")
    assert layout_problems(fig) == []


def test_count_covered_counts_points_inside_and_overlapping_bars():
    box = Bbox.from_extents(0, 0, 10, 10)
    points = np.array([[5, 5], [11, 5], [0, 5]])  # inside, outside, on the edge (not covered)
    bars = np.array([[8, 8, 20, 20], [10, 0, 20, 5], [9.8, 0, 20, 5]])  # overlapping, touching, 0.2 px (not covered)
    assert count_covered(box, points, bars) == 2


# ----- placement --------------------------------------------------------------------------------------------------------
def test_place_legend_picks_a_free_corner(rng):
    fig, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    ax.scatter(rng.uniform(0, 0.5, 3000), rng.uniform(0, 1, 3000), label="left half")  # right half empty
    ax.set(xlim=(0, 1), ylim=(0, 1))
    legend = place_legend(ax)
    assert legend._loc in (INSIDE_LOCS.index("upper right") + 1, 1, 4, 7)  # a right-hand location
    assert legends_covering_data(fig) == []


@pytest.mark.parametrize("outside", ["right", "below"])
def test_place_legend_goes_outside_when_the_axes_are_full(rng, outside):
    fig, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    ax.scatter(rng.uniform(0, 1, 20_000), rng.uniform(0, 1, 20_000), s=2, label="everywhere")
    ax.plot([0, 1], [0, 1], color="k", label="y = x")
    ax.set_xlabel("x"), ax.set_title("full")
    place_legend(ax, outside=outside)
    assert layout_problems(fig) == []


def test_place_legend_respects_the_points_of_a_twin_axis():
    fig, ax = plt.subplots(figsize=(5, 3.6), layout="constrained")
    x = np.linspace(0, 1, 40)
    ax.plot(x, 0.9 - 0.8 * x, marker="o", label="falling")
    twin = ax.twinx()
    twin.plot(x, 0.1 + 0.8 * x, marker="s", color="C1", label="rising")
    ax.set_ylim(0, 1), twin.set_ylim(0, 1)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    place_legend(twin, handles, [h.get_label() for h in handles])
    assert layout_problems(fig) == []


# ----- robust limits, outlined histograms, titles -----------------------------------------------------------------------
def test_robust_limits_drop_planted_outliers_but_keep_the_bulk(rng):
    bulk = rng.uniform(-5, -1, 16_384)
    values = np.r_[bulk, -10.0, -10.5]  # the two b_enc outliers of issue #16
    lo, hi = robust_limits(values)
    assert -6.1 < lo < -5 + 1e-9 and hi == pytest.approx(bulk.max())
    assert np.mean((values >= lo) & (values <= hi)) > 0.999
    assert robust_limits(np.full(10, 2.0)) == (1.9, 2.1)
    assert robust_limits(np.array([np.nan])) == (0.0, 1.0)
    normal = rng.normal(size=100_000)
    lo, hi = robust_limits(normal)
    assert np.mean((normal < lo) | (normal > hi)) < 1e-3  # a Gaussian tail is not clipped (3.9 sigma)


def test_scatter_within_marks_and_counts_the_clipped_points(rng):
    fig, ax = plt.subplots(figsize=(5, 4))
    x, y = rng.normal(-3, 1, 16_384), rng.normal(-2, 0.5, 16_384)
    x[:2] = -10.0
    xlim, ylim = scatter_within(ax, [(x, y, {"color": "C0", "label": "latents"})])
    assert xlim[0] > -10 and ax.get_ylim()[0] > -32
    n_out = int((~within(x, y, xlim, ylim)).sum())
    assert 2 <= n_out <= 10 and not within(x[:2], y[:2], xlim, ylim).any()  # the outliers and at most a few tail points
    labels = ax.get_legend_handles_labels()[1]
    assert f"beyond the axes, drawn at the edge (n={n_out})" in labels
    edges = np.concatenate([c.get_offsets() for c in ax.collections if c.get_label() != "latents"])
    assert len(edges) == n_out and {-10.0} <= set(x[~within(x, y, xlim, ylim)])
    assert np.isclose(edges[:, 0], xlim[0]).sum() >= 2  # the two outliers sit on the left edge
    assert points_outside_limits(fig, min_inside=1.0) == []


def test_outlined_histograms_keep_distinct_colours_and_a_legend(rng):
    fig, ax = plt.subplots()
    outlined_hist(ax, rng.normal(0.8, 0.05, 5000), bins=40, color="#17becf", label="encoder")
    outlined_hist(ax, rng.normal(0.82, 0.05, 5000), bins=40, color="#8c564b", label="decoder")
    outlines = [p for p in ax.patches if not p.get_fill()]
    assert [p.get_edgecolor()[:3] for p in outlines] != [outlines[0].get_edgecolor()[:3]] * 2
    assert all(p.get_alpha() in (None, 1.0) for p in outlines)  # solid outlines: no blending
    assert ax.get_legend_handles_labels()[1] == ["encoder", "decoder"]


def test_wrap_to_width_and_marginal_labels():
    assert "\n" not in wrap_to_width("short", 3.0, 10)
    wrapped = wrap_to_width(LONG, 2.0, 10)
    assert wrapped.replace("\n", " ") == LONG and max(len(line) for line in wrapped.split("\n")) <= 24
    with use_style():
        joint, top, right = joint_axes(new_figure(), marginal_label="% of latents")
    assert top.get_ylabel() == "% of latents" and right.get_xlabel() == "% of latents"


def test_a_legend_over_the_middle_of_a_line_segment_is_found():
    """No vertex under the legend, but the drawn segment between two vertices runs beneath it (F2's median curve)."""
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([0, 1], [0.5, 0.5], label="flat line")  # two vertices, at the left and right edges
    ax.set(xlim=(-0.05, 1.05), ylim=(0, 1))
    ax.legend(loc="center")
    assert legends_covering_data(fig)
    ax.get_legend().set_loc("upper center")
    assert legends_covering_data(fig) == []


def test_a_legend_over_a_title_or_tick_labels_is_found_and_one_beside_them_is_not():
    from figures._layout import legends_over_text

    fig = plt.figure(figsize=(4, 3))  # no layout engine: the boxes stay where they are put
    ax = fig.gca()
    ax.plot([0, 1], [0, 1], label="a line")
    ax.set_title("A title long enough to be hit")
    legend = ax.legend(loc="center", bbox_to_anchor=(0.5, 1.04))  # sits on the title
    assert any("A title" in problem for problem in legends_over_text(fig))
    legend.set_bbox_to_anchor((0.5, -0.02))  # on the x tick labels
    assert legends_over_text(fig)
    legend.set_loc("center")
    legend.set_bbox_to_anchor((0.5, 0.5))  # inside, over the data but over no text
    assert legends_over_text(fig) == []
    plt.close(fig)


def test_the_corner_legend_of_a_joint_plot_sits_in_the_empty_cell_and_legend_of_finds_any_legend():
    from figures._layout import legend_of, legends_over_text

    fig = plt.figure(figsize=(5, 5), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=(4, 1), height_ratios=(1, 4))
    joint = fig.add_subplot(grid[1, 0])
    top, right = fig.add_subplot(grid[0, 0], sharex=joint), fig.add_subplot(grid[1, 1], sharey=joint)
    fig.suptitle("A figure title that spans the whole width of the page, corner included")
    xy = np.random.default_rng(0).uniform(0, 1, (2000, 2))
    joint.scatter(*xy.T, label="points")
    top.hist(xy[:, 0])
    right.hist(xy[:, 1], orientation="horizontal")
    legend = place_legend(joint, outside="corner")
    fig.canvas.draw()
    frame, cell = legend.get_window_extent(), Bbox.from_extents(right.get_window_extent().x0, top.get_window_extent().y0,
                                                                 right.get_window_extent().x1, top.get_window_extent().y1)
    centre = ((frame.x0 + frame.x1) / 2, (frame.y0 + frame.y1) / 2)
    assert cell.contains(*centre) and not frame.overlaps(joint.get_window_extent())  # the empty cell
    assert legends_over_text(fig) == [] and legend_of(joint) is legend and legend_of(top) is None
    plt.close(fig)
