"""Layout geometry read from matplotlib itself (display coordinates after a draw): where the data points, bars, legends
and label texts of a figure end up, and predicates over them. The figures use `free_legend_loc` to put a legend where it
covers no data; the tests assert the predicates on every figure (issue #16).

Data points: scatter offsets and the vertices of lines drawn in data coordinates (reference lines such as `axvline`,
whose transform is partly in axes coordinates, are not data); boxes: histogram / bar rectangles of non-zero size.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backend_bases import RendererBase
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure, SubFigure
from matplotlib.font_manager import FontProperties
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.transforms import Bbox

TOUCH_PX = 0.5
"""Two boxes 'overlap' when they share more than this many pixels in both directions (touching edges do not count)."""


def root_figure(artist_or_fig: Axes | Figure | SubFigure) -> Figure:
    """The top-level Figure (the one with a canvas) that holds an Axes or a SubFigure."""
    fig = artist_or_fig if isinstance(artist_or_fig, Figure | SubFigure) else artist_or_fig.figure
    while isinstance(fig, SubFigure):
        fig = fig.figure
    return fig


def drawn_renderer(fig: Figure) -> RendererBase:
    """Run the layout engine and a draw without output, then return the canvas renderer (positions are final)."""
    fig.draw_without_rendering()
    return fig.canvas.get_renderer()


def _visible_axes(fig: Figure) -> list[Axes]:
    return [ax for ax in fig.get_axes() if ax.get_visible()]


def _data_lines(ax: Axes) -> Iterator[Line2D]:
    for line in ax.get_lines():
        if line.get_visible() and line.get_transform() == ax.transData:
            yield line


def _is_outline(patch: Patch, ax: Axes) -> bool:
    """Step histograms, stairs and box-plot boxes: patches drawn in data coordinates that are not bar rectangles."""
    return patch.get_visible() and not isinstance(patch, Rectangle) and patch.get_data_transform() == ax.transData


def _outline(patch: Patch) -> np.ndarray:
    """The vertices of an outline patch, in data coordinates."""
    return patch.get_patch_transform().transform(patch.get_path().vertices).astype(np.float64)


@dataclass(frozen=True)
class AxesData:
    """The drawn data of one Axes: points [n, 2] in data coordinates and in display pixels, bar boxes in pixels [m, 4]."""

    ax: Axes
    points: np.ndarray
    display: np.ndarray
    boxes: np.ndarray


def axes_data(ax: Axes) -> AxesData:
    """Scatter offsets, vertices of data lines and outline patches (step histograms, boxes), and non-empty bar rectangles
    of `ax` (finite points only)."""
    parts = [np.empty((0, 2))]
    for coll in ax.collections:
        if isinstance(coll, PathCollection) and coll.get_visible() and coll.get_offset_transform() == ax.transData:
            parts.append(np.asarray(coll.get_offsets(), dtype=np.float64).reshape(-1, 2))
    parts += [np.column_stack(line.get_data()).astype(np.float64) for line in _data_lines(ax)]
    parts += [_outline(p) for p in ax.patches if _is_outline(p, ax)]
    points = np.concatenate(parts)
    points = points[np.isfinite(points).all(axis=1)]
    display = ax.transData.transform(points) if len(points) else points
    boxes = [
        p.get_window_extent().extents
        for p in ax.patches
        if isinstance(p, Rectangle) and p.get_visible() and abs(p.get_width()) > 0 and abs(p.get_height()) > 0
    ]
    return AxesData(ax, points, display, np.array(boxes).reshape(-1, 4))


def _segment_points(ax: Axes, step_px: float = 4.0) -> np.ndarray:
    """Points every ~`step_px` pixels along the drawn segments of `ax`'s data lines and outlines, inside the axes (a
    legend over the middle of a segment hides the line even when it covers no vertex)."""
    paths = [ax.transData.transform(np.column_stack(line.get_data()).astype(np.float64))
             for line in _data_lines(ax) if line.get_linestyle() not in ("None", "none", "", " ")]  # fmt: skip
    paths += [ax.transData.transform(_outline(p)) for p in ax.patches if _is_outline(p, ax)]
    out = [np.empty((0, 2))]
    for xy in paths:
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy) < 2:
            continue
        a, b = xy[:-1], xy[1:]
        n = np.clip(np.ceil(np.hypot(*(b - a).T) / step_px).astype(int), 1, 200)
        seg = np.repeat(np.arange(len(a)), n)
        t = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n, n)
        out.append(a[seg] + (b[seg] - a[seg]) * t[:, None])
    pts = np.concatenate(out)
    box = ax.get_window_extent()
    return pts[(pts[:, 0] >= box.x0) & (pts[:, 0] <= box.x1) & (pts[:, 1] >= box.y0) & (pts[:, 1] <= box.y1)]


def all_data(fig: Figure) -> tuple[np.ndarray, np.ndarray]:
    """Every visible Axes' data points [n, 2] (with points along its line segments) and bar boxes [m, 4], in pixels."""
    axes = _visible_axes(fig)
    found = [axes_data(ax) for ax in axes]
    points = [d.display for d in found] + [_segment_points(ax) for ax in axes]
    return np.concatenate(points), np.concatenate([d.boxes for d in found] or [np.empty((0, 4))])


def count_covered(box: Bbox, points: np.ndarray, boxes: np.ndarray) -> int:
    """How many of `points` [n, 2] lie inside `box`, plus how many bar `boxes` [m, 4] overlap it (all in pixels)."""
    x0, y0, x1, y1 = box.extents
    inside = (points[:, 0] > x0) & (points[:, 0] < x1) & (points[:, 1] > y0) & (points[:, 1] < y1)
    dx = np.minimum(boxes[:, 2], x1) - np.maximum(boxes[:, 0], x0)
    dy = np.minimum(boxes[:, 3], y1) - np.maximum(boxes[:, 1], y0)
    return int(inside.sum() + ((dx > TOUCH_PX) & (dy > TOUCH_PX)).sum())


# ----- predicates: each returns a list of human-readable problems (empty when the layout is fine) ----------------------
def _name(ax: Axes) -> str:
    return repr(ax.get_title() or ax.get_xlabel() or ax.get_ylabel() or f"axes at {ax.get_position().bounds}")


def _label_texts(fig: Figure) -> Iterator[tuple[object, str, object]]:
    """(owner, description, Text) for every non-empty title and axis label, and the figure-level texts (suptitles)."""
    for ax in _visible_axes(fig):
        texts = [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
        for text in texts:
            if text.get_visible() and text.get_text().strip():
                yield ax, f"{_name(ax)}: {text.get_text()!r}", text
    for sub in [fig, *fig.subfigs]:
        for text in [getattr(sub, "_suptitle", None), getattr(sub, "_supxlabel", None), getattr(sub, "_supylabel", None)]:
            if text is not None and text.get_visible() and text.get_text().strip():
                yield sub, f"figure text {text.get_text()!r}", text


def overlapping_labels(fig: Figure, renderer: RendererBase | None = None) -> list[str]:
    """Titles and axis labels of different Axes (or a figure title) whose text boxes overlap. `renderer`: of a draw
    already made (default: draw now)."""
    renderer = renderer or drawn_renderer(fig)
    items = [(owner, what, text.get_window_extent(renderer)) for owner, what, text in _label_texts(fig)]
    problems = []
    for i, (owner_a, a, box_a) in enumerate(items):
        for owner_b, b, box_b in items[i + 1 :]:
            if owner_a is not owner_b and _overlap(box_a, box_b):
                problems.append(f"{a} overlaps {b}")
    return problems


def _overlap(a: Bbox, b: Bbox) -> bool:
    dx = min(a.x1, b.x1) - max(a.x0, b.x0)
    dy = min(a.y1, b.y1) - max(a.y0, b.y0)
    return dx > TOUCH_PX and dy > TOUCH_PX


def _legends(fig: Figure) -> Iterator[Legend]:
    for ax in _visible_axes(fig):
        if ax.get_legend() is not None and ax.get_legend().get_visible():
            yield ax.get_legend()
    for sub in [fig, *fig.subfigs]:
        yield from (leg for leg in sub.legends if leg.get_visible())


def legends_covering_data(fig: Figure, renderer: RendererBase | None = None) -> list[str]:
    """Legends whose frame covers a data point or a bar of any Axes of the figure."""
    renderer = renderer or drawn_renderer(fig)
    points, boxes = all_data(fig)
    problems = []
    for legend in _legends(fig):
        n = count_covered(legend.get_window_extent(renderer), points, boxes)
        if n:
            labels = [t.get_text() for t in legend.get_texts()][:3]
            problems.append(f"legend {labels} covers {n} data points or bars")
    return problems


def _all_texts(fig: Figure, renderer: RendererBase) -> Iterator[tuple[str, Bbox]]:
    """(description, box) of every title, axis label and tick label of every visible Axes (colour bars and twins too)
    and of the figure-level texts."""
    for owner, what, text in _label_texts(fig):
        yield what, text.get_window_extent(renderer)
    for ax in _visible_axes(fig):
        for axis in (ax.xaxis, ax.yaxis):
            for label in axis.get_ticklabels(which="both"):
                if label.get_visible() and label.get_text().strip():
                    yield f"{_name(ax)} tick label {label.get_text()!r}", label.get_window_extent(renderer)


def legends_over_text(fig: Figure, renderer: RendererBase | None = None) -> list[str]:
    """Legends whose frame overlaps a title, an axis or tick label, or a figure title (a legend may sit anywhere on the
    page, but never on words)."""
    renderer = renderer or drawn_renderer(fig)
    texts = list(_all_texts(fig, renderer))
    problems = []
    for legend in _legends(fig):
        frame = legend.get_window_extent(renderer)
        hits = [what for what, box in texts if _overlap(frame, box)]
        if hits:
            labels = [t.get_text() for t in legend.get_texts()][:2]
            problems.append(f"legend {labels} overlaps {len(hits)} texts, e.g. {hits[0]}")
    return problems


def points_outside_limits(fig: Figure, *, min_inside: float = 0.99, renderer: RendererBase | None = None) -> list[str]:
    """Axes whose limits show fewer than `min_inside` of their data points (scatter offsets and line vertices)."""
    renderer or drawn_renderer(fig)  # autoscaled limits are final only after a draw
    problems = []
    for ax in _visible_axes(fig):
        pts = axes_data(ax).points
        if not len(pts):
            continue
        (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
        inside = np.mean((pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1))
        if inside < min_inside:
            problems.append(f"{_name(ax)} shows {100 * inside:.2f}% of its {len(pts)} points (< {100 * min_inside:g}%)")
    return problems


def layout_problems(fig: Figure, *, min_inside: float = 0.99) -> list[str]:
    """Every problem the four predicates find (an empty list means the layout passes)."""
    renderer = drawn_renderer(fig)
    return (
        overlapping_labels(fig, renderer)
        + legends_covering_data(fig, renderer)
        + legends_over_text(fig, renderer)
        + points_outside_limits(fig, min_inside=min_inside, renderer=renderer)
    )


# ----- placement -------------------------------------------------------------------------------------------------------
INSIDE_LOCS = ("upper right", "upper left", "lower right", "lower left", "center right", "center left", "upper center",
               "lower center")  # fmt: skip


def _candidate(loc: str, axes_box: Bbox, width: float, height: float, pad: float) -> Bbox:
    vert, _, horiz = loc.partition(" ")
    x = {"left": axes_box.x0 + pad, "right": axes_box.x1 - pad - width, "center": axes_box.x0 + (axes_box.width - width) / 2}
    y = {"lower": axes_box.y0 + pad, "upper": axes_box.y1 - pad - height, "center": axes_box.y0 + (axes_box.height - height) / 2}
    return Bbox.from_bounds(x[horiz], y[vert], width, height)


def free_legend_loc(legend: Legend, ax: Axes, *, grow: float = 0.12) -> str | None:
    """The first of INSIDE_LOCS where `legend`, grown by `grow` of its size (slack for later layout changes), covers no
    data point or bar of any Axes of the figure, measured on the figure as drawn now; None when every place covers some."""
    fig = root_figure(ax)
    renderer = drawn_renderer(fig)
    frame = legend.get_window_extent(renderer)
    width, height = frame.width * (1 + grow), frame.height * (1 + grow)
    pad = legend.borderaxespad * renderer.points_to_pixels(legend._fontsize)
    points, boxes = all_data(fig)
    axes_box = ax.get_window_extent(renderer)
    for loc in INSIDE_LOCS:
        if not count_covered(_candidate(loc, axes_box, width, height, pad), points, boxes):
            return loc
    return None



def _decorated_extent(ax: Axes, renderer: RendererBase) -> tuple[float, float]:
    """(right edge, bottom edge), in `ax`'s axes fraction, of `ax` and its twins with their tick and axis labels and
    texts such as the source line (legends and other children excluded)."""
    fig = root_figure(ax)
    twins = [a for a in fig.get_axes() if a.get_position().bounds == ax.get_position().bounds]
    boxes = [a.get_tightbbox(renderer, bbox_extra_artists=list(a.texts)) for a in twins]  # the source line too
    x1, y0 = ax.transAxes.inverted().transform((max(b.x1 for b in boxes), min(b.y0 for b in boxes)))
    return float(x1), float(y0)



def _corner_cell(ax: Axes) -> Bbox:
    """The empty top-right cell of a joint plot, in figure fraction: above the marginal that shares `ax`'s y axis and
    right of the one that shares its x axis (the figure's top right corner when there are none)."""
    fig = root_figure(ax)
    box = ax.get_position()
    others = [a for a in fig.axes if a is not ax]
    right = [a.get_position() for a in others if a.get_shared_y_axes().joined(a, ax) and a.get_position().x0 >= box.x1]
    top = [a.get_position() for a in others if a.get_shared_x_axes().joined(a, ax) and a.get_position().y0 >= box.y1]
    if not right or not top:
        return Bbox.from_extents(box.x1, box.y1, 1.0, 1.0)
    return Bbox.from_extents(right[0].x0, top[0].y0, right[0].x1, top[0].y1)


def place_legend(ax: Axes, *args: object, outside: str = "right", **kwargs: object) -> Legend:
    """`ax.legend(*args, **kwargs)` placed where it covers no data point or bar: the first free place inside the axes
    (INSIDE_LOCS), else outside: on the right, beyond any twin axis and its labels (`outside="right"`), under the x
    label (`outside="below"`: keeps the panel's width on a page of panels), or in the figure's top right corner, left out
    of the layout (`outside="corner"`: the empty cell of a joint plot)."""
    legend = ax.legend(*args, loc=INSIDE_LOCS[0], **kwargs)
    loc = free_legend_loc(legend, ax)
    if loc is not None:
        legend.set_loc(loc)
        return legend
    if outside == "corner":
        legend.set_loc("center")
        legend.set_bbox_to_anchor(_corner_cell(ax), transform=root_figure(ax).transFigure)
        legend.set_in_layout(False)
        if not legends_over_text(root_figure(ax)):
            return legend
        legend.set_in_layout(True)  # too wide for the corner cell: under the x label instead
        outside = "below"
    right, bottom = _decorated_extent(ax, drawn_renderer(root_figure(ax)))
    if outside == "below":
        legend.set_loc("upper center")
        legend.set_bbox_to_anchor((0.5, bottom - 0.01), transform=ax.transAxes)
    else:
        legend.set_loc("upper left")
        legend.set_bbox_to_anchor((right + 0.02, 1.0), transform=ax.transAxes)
    return legend


def legend_of(ax: Axes) -> Legend | None:
    """The legend `place_legend` made for `ax`: its own, or the figure-margin one that names `ax` as its owner."""
    if ax.get_legend() is not None:
        return ax.get_legend()
    fig = root_figure(ax)
    for sub in [fig, *fig.subfigs]:
        for legend in sub.legends:
            if getattr(legend, "owner_axes", None) is ax:
                return legend
    return None


def wrap_to_width(text: str, width_inches: float, fontsize: float) -> str:
    """`text` with line breaks so that each line fits `width_inches` at `fontsize` points (0.6 em per character: wide
    for proportional fonts, so the estimate errs towards wrapping); existing line breaks are kept."""
    per_line = max(12, int(width_inches * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.fill(line, per_line) for line in text.split("\n"))


def set_title(ax: Axes, text: str, **kwargs: object) -> None:
    """`ax.set_title(text)` wrapped to the width of `ax`'s grid cell, so the titles of neighbouring panels never touch."""
    size = FontProperties(size=kwargs.get("fontsize", mpl.rcParams["axes.titlesize"])).get_size_in_points()
    width = ax.get_position().width * root_figure(ax).get_figwidth()
    ax.set_title(wrap_to_width(text, width, size), **kwargs)


def set_suptitle(fig: Figure | SubFigure, text: str, **kwargs: object) -> None:
    """`fig.suptitle(text)` wrapped to the figure's width."""
    size = FontProperties(size=kwargs.get("fontsize", mpl.rcParams["figure.titlesize"])).get_size_in_points()
    width = fig.bbox.width / root_figure(fig).dpi
    fig.suptitle(wrap_to_width(text, width, size), **kwargs)
