"""What a sample of N tokens cannot resolve: frequency figures shade log10 frequencies below log10(1/N), and the ULF
median curve draws no point there (it would be the plotting floor, a sample-size artifact, drawn as data)."""

from __future__ import annotations

import numpy as np

import figures as F
from figures.style import new_figure, tokens_text

RES = (float(-np.log10(65536)), 65536)


def _shaded(ax) -> list:
    return [p for p in ax.patches if "1/N" in str(p.get_label())]


def test_ulf_median_below_one_over_n_is_not_drawn_and_the_band_is_shaded():
    ax = new_figure().gca()
    median = np.array([-6.5, -6.5, -3.0, -4.0])  # -6.5: never fired in the sample (the plotting floor)
    F.plot_phase_curve([1e8, 2e8, 3e8, 4e8], np.array([0.1, 0.2, 0.5, 0.5]), median_log10_freq=median, resolution=RES,
                       source="test", ax=ax)  # fmt: skip
    twin = next(a for a in ax.figure.axes if a is not ax)
    drawn = twin.lines[0].get_ydata()
    assert np.isnan(drawn[:2]).all() and drawn[2:].tolist() == [-3.0, -4.0]
    bands = [p for p in twin.patches if p.get_alpha() == 0.15]
    assert len(bands) == 1 and twin.get_ylim()[0] < RES[0] and bands[0].get_y() + bands[0].get_height() == RES[0]
    assert any("not resolved" in t.get_text() and tokens_text(65536) in t.get_text() for t in twin.texts)  # said in the band


def test_histogram_scatter_and_floor_curve_shade_only_below_one_over_n():
    values = np.r_[np.full(10, -6.5), np.linspace(-4, -1, 50)]
    ax = F.plot_frequency_histogram(values, source="test", resolution=RES, ax=new_figure().gca())
    (band,) = _shaded(ax)
    assert band.get_x() <= -6.5 and band.get_x() + band.get_width() == np.float64(RES[0])
    assert _shaded(F.plot_frequency_histogram(values, source="test", ax=new_figure().gca())) == []
    fig = F.plot_freq_vs_freq(values, values, label_a="a", label_b="b", source="test", resolution=RES)
    joint = fig.axes[0]
    assert len([p for p in joint.patches if p.get_alpha() == 0.15]) == 2 and _shaded(joint) == []  # no legend entry:
    assert any("not resolved" in t.get_text() and tokens_text(65536) in t.get_text() for t in joint.texts)  # in the band
    curve = F.plot_loss_vs_floor({"run": (np.array([-6.5, -4, 0]), np.array([0.9, 0.8, 0.0]))}, source="t", resolution=RES)
    assert len(_shaded(curve)) == 1
