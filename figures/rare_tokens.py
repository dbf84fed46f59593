"""F11: the rare direction's projection per token (`mlp_acts @ mu`, REPLICATION.md §9.3) on the top contexts, as a
self-contained HTML page (tokens coloured by projection; inline CSS, no scripts, no network) and as a static figure
drawing the same tokens in the same colours. Both use one colour scale: a diverging map symmetric about 0, its limit
the largest |projection| shown. The caller writes the HTML string to disk.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure, SubFigure

from figures._draw import as_1d
from figures.case_study import visible
from figures.style import add_source, ensure_figure, source_text

TOKEN_CMAP = "RdBu_r"
"""Negative projections blue, positive red, zero white."""
TOKEN_FONT = {"family": "monospace", "fontsize": 8.0, "parse_math": False}
CHAR_WIDTH = 0.6
"""Width of one monospace character in em (DejaVu Sans Mono: 0.602), used to lay tokens out in points."""
LINE_CHARS = 100
"""Characters per drawn line before a context wraps."""


def shown(token: str) -> str:
    """A token as drawn here: `visible` (newlines as arrows, control characters escaped), except that spaces stay spaces,
    since the coloured background already shows them."""
    token = str(token)
    return token if token and not token.strip(" ") else visible(token)


def _checked(contexts: Sequence[Sequence[str]], values: Sequence[np.ndarray]) -> list[np.ndarray]:
    if not contexts or len(contexts) != len(values):
        raise ValueError(f"need one projection array per context and at least one context, got {len(contexts)} / {len(values)}")
    arrays = [as_1d(v, f"values[{i}]") for i, v in enumerate(values)]
    for i, (tokens, v) in enumerate(zip(contexts, arrays)):
        if len(tokens) != len(v):
            raise ValueError(f"context {i}: {len(tokens)} tokens but {len(v)} projections")
    return arrays


def token_norm(values: Sequence[np.ndarray]) -> mpl.colors.Normalize:
    """The shared colour scale: symmetric about 0, limit = the largest finite |value| (1 if there is none)."""
    pooled = np.concatenate([np.abs(v[np.isfinite(v)]) for v in values])
    limit = float(pooled.max()) if len(pooled) and pooled.max() > 0 else 1.0
    return mpl.colors.Normalize(vmin=-limit, vmax=limit)


def _colors(values: np.ndarray, norm: mpl.colors.Normalize) -> list[tuple[str, str]]:
    """(background, text) hex colours per token; NaN -> light grey; dark backgrounds get white text."""
    cmap = mpl.colormaps[TOKEN_CMAP]
    out = []
    for v in values:
        rgba = cmap(norm(v)) if np.isfinite(v) else (0.9, 0.9, 0.9, 1.0)
        luminance = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
        out.append((mpl.colors.to_hex(rgba), "#ffffff" if luminance < 0.5 else "#000000"))
    return out


def rare_tokens_html(
    contexts: Sequence[Sequence[str]],
    values: Sequence[np.ndarray],
    *,
    source: str,
    headings: Sequence[str] | None = None,
    highlight: Sequence[int] | None = None,
    title: str = "Rare direction: projection of the MLP activations per token",
    what: str = "mlp_acts @ μ, μ = mean encoder direction of the rare latents",
) -> str:
    """F11 as one HTML page: each context a paragraph of tokens whose background encodes the projection (hover shows
    the value), with its heading, a colour bar made of CSS gradients, and the source label. Inline CSS only.
    `highlight[i]`: a token of context i to outline (e.g. its maximum)."""
    arrays = _checked(contexts, values)
    norm = token_norm(arrays)
    stops = ", ".join(f"{mpl.colors.to_hex(mpl.colormaps[TOKEN_CMAP](t))} {100 * t:.0f}%" for t in np.linspace(0, 1, 11))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em;max-width:75em;color:#222}"
        ".ctx{font-family:monospace;font-size:14px;line-height:1.9;white-space:pre-wrap;word-break:break-all}"
        ".tok{padding:1px 0;border-radius:2px}.bar{height:14px;width:24em;border:1px solid #888;"
        f"background:linear-gradient(to right, {stops})}}"
        ".scale{display:flex;justify-content:space-between;width:24em;font-size:12px}.source{color:#666;font-size:12px}"
        "</style></head><body>",
        f"<h2>{html.escape(title)}</h2>",
        f"<p>Background colour: {html.escape(what)} (red positive, blue negative; hover a token for its value).</p>",
        f'<div class="bar"></div><div class="scale"><span>{norm.vmin:.3g}</span><span>0</span><span>{norm.vmax:.3g}</span></div>',
    ]
    for i, (tokens, v) in enumerate(zip(contexts, arrays)):
        heading = headings[i] if headings else f"Context {i + 1}"
        spans = []
        for j, (tok, val, (bg, fg)) in enumerate(zip(tokens, v, _colors(v, norm))):
            text = html.escape(shown(tok)) + ("\n" if "\n" in str(tok) else "")
            mark = ";outline:2px solid #000" if highlight is not None and j == highlight[i] else ""
            spans.append(f'<span class="tok" style="background:{bg};color:{fg}{mark}" title="{val:.4g}">{text}</span>')
        parts += [f"<h3>{html.escape(heading)}</h3>", f'<div class="ctx">{"".join(spans)}</div>']
    parts += [f'<p class="source">{html.escape(source_text(source))}</p>', "</body></html>", ""]
    return "\n".join(parts)


def _lines(tokens: Sequence[str], width: int) -> list[list[int]]:
    """Token indices per drawn line: wrap before a token that would pass `width` characters, and after a newline."""
    lines, current, used = [], [], 0
    for i, tok in enumerate(tokens):
        n = len(shown(tok))
        if current and used + n > width:
            lines, current, used = lines + [current], [], 0
        current.append(i)
        used += n
        if "\n" in str(tok):
            lines, current, used = lines + [current], [], 0
    return lines + [current] if current else lines


def plot_rare_tokens(
    contexts: Sequence[Sequence[str]],
    values: Sequence[np.ndarray],
    *,
    source: str,
    headings: Sequence[str] | None = None,
    highlight: Sequence[int] | None = None,
    title: str = "Rare direction: projection of the MLP activations per token",
    what: str = "mlp_acts @ μ",
    line_chars: int = LINE_CHARS,
    fig: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """F11 as a static figure: the same tokens and colours as `rare_tokens_html`, one block per context under its heading,
    wrapped at `line_chars` characters, with a colour bar. Each token is a text artist with gid 'token' whose box colour
    is its projection's; the `highlight[i]`-th token of context i gets a black edge."""
    arrays = _checked(contexts, values)
    layout = [_lines(tokens, line_chars) for tokens in contexts]
    n_rows = sum(len(lines) + 1.6 for lines in layout)
    fig = ensure_figure(fig, (0.075 * line_chars * TOKEN_FONT["fontsize"] / 8.0 + 1.0, 1.3 + 0.2 * n_rows))
    ax = fig.add_subplot()
    ax.set_axis_off()
    norm = token_norm(arrays)
    size, y = TOKEN_FONT["fontsize"], 0.0
    step, char = size * 1.9, size * CHAR_WIDTH
    for i, (tokens, v, lines) in enumerate(zip(contexts, arrays, layout)):
        heading = headings[i] if headings else f"Context {i + 1}"
        ax.annotate(heading, xy=(0, 1), xycoords="axes fraction", xytext=(0, y), textcoords="offset points",
                    va="top", fontsize=size + 0.5, fontweight="bold", parse_math=False)  # fmt: skip
        y -= step * 1.3
        colors = _colors(v, norm)
        for line in lines:
            x = 0.0
            for j in line:
                text = shown(tokens[j])
                marked = highlight is not None and j == highlight[i]
                box = {"boxstyle": "square,pad=0.0", "facecolor": colors[j][0], "edgecolor": "black" if marked else "none"}
                ax.annotate(text, xy=(0, 1), xycoords="axes fraction", xytext=(x, y), textcoords="offset points", va="top",
                            color=colors[j][1], bbox=box, gid="token", **TOKEN_FONT)  # fmt: skip
                x += char * len(text)
            y -= step
        y -= step * 0.3
    mappable = mpl.cm.ScalarMappable(norm=norm, cmap=TOKEN_CMAP)
    fig.colorbar(mappable, ax=ax, orientation="horizontal", fraction=0.04, pad=0.02, aspect=50, label=what)
    ax.set_title(title, loc="left")
    add_source(fig, source)
    return fig
