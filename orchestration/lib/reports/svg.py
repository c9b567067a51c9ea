"""Small inline-SVG chart primitives: pure functions from plain data to an ``<svg>`` string.

Every chart is ``<svg class="chart" data-chart="<name>" data-marks="<n>">``; its marks (bars,
lines, cells, points) carry ``class="mark"`` and a ``<title>`` (the browser's tooltip), so a
test can count them. Nothing is fetched: no fonts, no scripts, colours inline. All text is
escaped here, so callers pass raw strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 900, 300
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 150, 16, 48
PALETTE = ("#d62728", "#ff7f0e", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")


@dataclass(frozen=True)
class Series:
    """One named sequence of values (``None`` = no data at that category)."""

    label: str
    values: Sequence[float | int | None]
    color: str
    dashed: bool = False


def fmt(value: float | int | None, digits: int = 1) -> str:
    """A number for a label or tooltip: integers as integers, ``n/a`` for None."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.{digits}f}"


def _open(name: str, marks: int, height: int, label: str, empty: bool = False) -> str:
    extra = ' data-empty="true"' if empty else ""
    return (f'<svg class="chart" data-chart="{escape(name)}" data-marks="{marks}"{extra} role="img" '
            f'aria-label="{escape(label)}" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
            f'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">'
            f"<title>{escape(label)}</title>")


def placeholder(name: str, message: str, height: int = 120) -> str:
    """A chart with no marks, saying why (``no data in this period`` / ``not available: …``)."""
    return (_open(name, 0, height, message, empty=True)
            + f'<rect x="1" y="1" width="{WIDTH - 2}" height="{height - 2}" fill="#fafafa" stroke="#ccc" '
              'stroke-dasharray="4 4"/>'
            + f'<text class="placeholder" x="{WIDTH / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" '
              f'fill="#777" font-size="14">{escape(message)}</text></svg>')


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1) if value >= 1 else 0.1
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _tick_every(n: int, max_ticks: int = 12) -> int:
    return max(1, -(-n // max_ticks))


def _axes(categories: Sequence[str], y_max: float, x_label: str, y_label: str, plot_w: float, plot_h: float,
          y_format: str = "{:g}") -> str:
    parts = []
    x0, y0 = MARGIN_LEFT, MARGIN_TOP + plot_h
    for i in range(5):
        v = y_max * i / 4
        y = y0 - plot_h * i / 4
        parts.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + plot_w:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
                     f'<text class="tick" x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">'
                     f"{escape(y_format.format(v))}</text>")
    n = len(categories)
    step = plot_w / max(n, 1)
    every = _tick_every(n)
    for i, c in enumerate(categories):
        if i % every == 0:
            x = x0 + step * (i + 0.5)
            parts.append(f'<text class="tick" x="{x:.1f}" y="{y0 + 16}" text-anchor="middle" fill="#555">'
                         f"{escape(c)}</text>")
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0 + plot_w:.1f}" y2="{y0}" stroke="#333"/>'
                 f'<line x1="{x0}" y1="{MARGIN_TOP}" x2="{x0}" y2="{y0}" stroke="#333"/>'
                 f'<text class="axis-label" x="{x0 + plot_w / 2:.1f}" y="{y0 + 38}" text-anchor="middle" '
                 f'fill="#333">{escape(x_label)}</text>'
                 f'<text class="axis-label" transform="translate(14 {MARGIN_TOP + plot_h / 2:.1f}) rotate(-90)" '
                 f'text-anchor="middle" fill="#333">{escape(y_label)}</text>')
    return "".join(parts)


def _legend(items: Sequence[tuple[str, str, bool]], plot_w: float) -> str:
    x = MARGIN_LEFT + plot_w + 16
    parts = []
    for i, (label, color, dashed) in enumerate(items):
        y = MARGIN_TOP + 8 + i * 18
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        parts.append(f'<line x1="{x}" y1="{y}" x2="{x + 18}" y2="{y}" stroke="{color}" stroke-width="6"{dash}/>'
                     f'<text class="legend" x="{x + 24}" y="{y + 4}" fill="#333">{escape(label)}</text>')
    return "".join(parts)


def bar_chart(name: str, title: str, categories: Sequence[str], bars: Sequence[Series], *,
              lines: Sequence[Series] = (), x_label: str = "", y_label: str = "", stacked: bool = True,
              height: int = HEIGHT, tooltips: Sequence[str] | None = None) -> str:
    """Bars per category (stacked or side by side), with optional line overlays (polylines)."""
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = height - MARGIN_TOP - MARGIN_BOTTOM
    n = len(categories)
    totals = [sum((s.values[i] or 0) for s in bars) if stacked else max([(s.values[i] or 0) for s in bars] or [0])
              for i in range(n)]
    line_max = max([v for s in lines for v in s.values if v is not None] or [0])
    y_max = _nice_max(max(totals + [line_max, 0]))
    step = plot_w / max(n, 1)
    y0 = MARGIN_TOP + plot_h
    marks: list[str] = []
    for i, category in enumerate(categories):
        base = 0.0
        width = step * 0.8 if stacked else step * 0.8 / max(len(bars), 1)
        for j, s in enumerate(bars):
            v = s.values[i]
            if not v:
                continue
            h = plot_h * v / y_max
            x = MARGIN_LEFT + step * i + step * 0.1 + (0 if stacked else j * width)
            y = y0 - plot_h * (base + v) / y_max if stacked else y0 - h
            tip = f"{category} · {s.label}: {fmt(v)}" + (f" ({tooltips[i]})" if tooltips else "")
            marks.append(f'<rect class="mark bar" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{h:.1f}" '
                         f'fill="{s.color}"><title>{escape(tip)}</title></rect>')
            if stacked:
                base += v
    for s in lines:
        marks.extend(_polyline(s, categories, y_max, plot_h, step))
    legend = _legend([(s.label, s.color, False) for s in bars] + [(s.label, s.color, s.dashed) for s in lines], plot_w)
    return (_open(name, len(marks), height, title) + _axes(categories, y_max, x_label, y_label, plot_w, plot_h)
            + "".join(marks) + legend + "</svg>")


def _polyline(s: Series, categories: Sequence[str], y_max: float, plot_h: float, step: float) -> list[str]:
    """One polyline per unbroken run of values (None breaks the line), each with its tooltip."""
    y0 = MARGIN_TOP + plot_h
    runs: list[list[tuple[int, float]]] = [[]]
    for i, v in enumerate(s.values):
        if v is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((i, float(v)))
    out = []
    dash = ' stroke-dasharray="5 3"' if s.dashed else ""
    for run in runs:
        if not run:
            continue
        points = " ".join(f"{MARGIN_LEFT + step * (i + 0.5):.1f},{y0 - plot_h * v / y_max:.1f}" for i, v in run)
        first, last = categories[run[0][0]], categories[run[-1][0]]
        tip = f"{s.label} ({first} – {last}): " + ", ".join(fmt(v, 3) for _i, v in run[:48])
        if len(run) > 48:
            tip += ", …"
        if len(run) == 1:
            (i, v), = run
            out.append(f'<circle class="mark point" cx="{MARGIN_LEFT + step * (i + 0.5):.1f}" '
                       f'cy="{y0 - plot_h * v / y_max:.1f}" r="3" fill="{s.color}"><title>{escape(tip)}</title>'
                       "</circle>")
        else:
            out.append(f'<polyline class="mark line" points="{points}" fill="none" stroke="{s.color}" '
                       f'stroke-width="2"{dash}><title>{escape(tip)}</title></polyline>')
    return out


def line_chart(name: str, title: str, categories: Sequence[str], lines: Sequence[Series], *, x_label: str = "",
               y_label: str = "", y_format: str = "{:g}", height: int = HEIGHT) -> str:
    """Lines over categories (None breaks a line), with a point per value for the tooltips."""
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = height - MARGIN_TOP - MARGIN_BOTTOM
    n = len(categories)
    step = plot_w / max(n, 1)
    y_max = max([v for s in lines for v in s.values if v is not None] or [0])
    if 0 < y_max <= 1:  # a share: quarter ticks at round percentages
        y_max = next(m for m in (0.04, 0.08, 0.2, 0.4, 0.8, 1.0) if y_max <= m)
    else:
        y_max = _nice_max(y_max)
    marks: list[str] = []
    y0 = MARGIN_TOP + plot_h
    for s in lines:
        marks.extend(_polyline(s, categories, y_max, plot_h, step))
        for i, v in enumerate(s.values):
            if v is not None and n <= 200:
                marks.append(f'<circle class="mark point" cx="{MARGIN_LEFT + step * (i + 0.5):.1f}" '
                             f'cy="{y0 - plot_h * float(v) / y_max:.1f}" r="2" fill="{s.color}">'
                             f"<title>{escape(f'{categories[i]} · {s.label}: {fmt(v, 3)}')}</title></circle>")
    legend = _legend([(s.label, s.color, s.dashed) for s in lines], plot_w)
    return (_open(name, len(marks), height, title)
            + _axes(categories, y_max, x_label, y_label, plot_w, plot_h, y_format) + "".join(marks) + legend
            + "</svg>")


@dataclass(frozen=True)
class Cell:
    value: float | int | None
    fill: str
    tooltip: str
    text: str = ""


def heat_color(value: float, maximum: float) -> str:
    """White → red by value / maximum (0 is a pale grey)."""
    if not value or maximum <= 0:
        return "#f4f4f4"
    t = min(1.0, value / maximum)
    g = int(235 - 200 * t)
    return f"rgb(250,{g},{max(0, g - 20)})"


def heatmap(name: str, title: str, rows: Sequence[str], columns: Sequence[str], cells: dict[tuple[int, int], Cell],
            *, x_label: str = "", y_label: str = "", row_label_width: int = 190) -> str:
    """A grid of cells (row × column); a missing cell is drawn empty (no mark)."""
    cell_h = 22
    height = MARGIN_TOP + cell_h * len(rows) + MARGIN_BOTTOM
    plot_w = WIDTH - row_label_width - 20
    step = plot_w / max(len(columns), 1)
    parts = [f'<text class="tick" x="{row_label_width - 6}" y="{MARGIN_TOP + cell_h * (r + 0.5) + 4:.1f}" '
             f'text-anchor="end" fill="#333">{escape(_clip(label, row_label_width // 7))}</text>'
             for r, label in enumerate(rows)]
    every = _tick_every(len(columns), 16)
    y_axis = MARGIN_TOP + cell_h * len(rows)
    for c, label in enumerate(columns):
        if c % every == 0:
            parts.append(f'<text class="tick" x="{row_label_width + step * (c + 0.5):.1f}" y="{y_axis + 16}" '
                         f'text-anchor="middle" fill="#555">{escape(label)}</text>')
    parts.append(f'<text class="axis-label" x="{row_label_width + plot_w / 2:.1f}" y="{y_axis + 38}" '
                 f'text-anchor="middle" fill="#333">{escape(x_label)}</text>')
    if y_label:
        parts.append(f'<text class="axis-label" x="4" y="{MARGIN_TOP - 4 if MARGIN_TOP > 12 else 12}" '
                     f'fill="#333">{escape(y_label)}</text>')
    marks = []
    for (r, c), cell in sorted(cells.items()):
        x = row_label_width + step * c
        y = MARGIN_TOP + cell_h * r
        marks.append(f'<rect class="mark cell" x="{x + 0.5:.1f}" y="{y + 0.5:.1f}" width="{max(step - 1, 1):.1f}" '
                     f'height="{cell_h - 1}" fill="{cell.fill}"><title>{escape(cell.tooltip)}</title></rect>')
        if cell.text and step >= 18:
            marks.append(f'<text x="{x + step / 2:.1f}" y="{y + cell_h / 2 + 4:.1f}" text-anchor="middle" '
                         f'fill="#222" font-size="10">{escape(cell.text)}</text>')
    n_marks = sum(1 for m in marks if m.startswith("<rect"))
    return _open(name, n_marks, height, title) + "".join(parts) + "".join(marks) + "</svg>"


@dataclass(frozen=True)
class Span:
    """A mark on a time axis: an interval (``end`` > ``start``) or a point (``end`` None)."""

    row: int
    start: float  # 0–1 along the period
    end: float | None
    color: str
    tooltip: str


def timeline(name: str, title: str, rows: Sequence[str], ticks: Sequence[tuple[float, str]], spans: Sequence[Span],
             *, x_label: str = "", row_label_width: int = 190) -> str:
    """Rows of intervals (bars) and points (circles) along the period (positions 0–1)."""
    row_h = 22
    height = MARGIN_TOP + row_h * max(len(rows), 1) + MARGIN_BOTTOM
    plot_w = WIDTH - row_label_width - 20
    y_axis = MARGIN_TOP + row_h * len(rows)
    parts = [f'<text class="tick" x="{row_label_width - 6}" y="{MARGIN_TOP + row_h * (r + 0.5) + 4:.1f}" '
             f'text-anchor="end" fill="#333">{escape(_clip(label, row_label_width // 7))}</text>'
             for r, label in enumerate(rows)]
    for pos, label in ticks:
        x = row_label_width + plot_w * pos
        parts.append(f'<line x1="{x:.1f}" y1="{MARGIN_TOP}" x2="{x:.1f}" y2="{y_axis}" stroke="#eee"/>'
                     f'<text class="tick" x="{x:.1f}" y="{y_axis + 16}" text-anchor="middle" fill="#555">'
                     f"{escape(label)}</text>")
    parts.append(f'<line x1="{row_label_width}" y1="{y_axis}" x2="{row_label_width + plot_w}" y2="{y_axis}" '
                 f'stroke="#333"/><text class="axis-label" x="{row_label_width + plot_w / 2:.1f}" y="{y_axis + 38}" '
                 f'text-anchor="middle" fill="#333">{escape(x_label)}</text>')
    marks = []
    for s in spans:
        y = MARGIN_TOP + row_h * s.row
        x = row_label_width + plot_w * s.start
        if s.end is None:
            marks.append(f'<circle class="mark point" cx="{x:.1f}" cy="{y + row_h / 2:.1f}" r="5" fill="{s.color}" '
                         f'fill-opacity="0.8"><title>{escape(s.tooltip)}</title></circle>')
        else:
            w = max(plot_w * (s.end - s.start), 2)
            marks.append(f'<rect class="mark span" x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
                         f'fill="{s.color}"><title>{escape(s.tooltip)}</title></rect>')
    return _open(name, len(marks), height, title) + "".join(parts) + "".join(marks) + "</svg>"


def _clip(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def hbar_chart(name: str, title: str, rows: Sequence[str], bars: Sequence[Series], *, x_label: str = "",
               row_label_width: int = 340, label_chars: int = 52) -> str:
    """Horizontal bars, one group per row (long labels, e.g. templates; the full text in the tooltip)."""
    group_h = 10 + 10 * max(len(bars), 1)
    plot_w = WIDTH - row_label_width - 110
    height = MARGIN_TOP + group_h * len(rows) + MARGIN_BOTTOM
    x_max = _nice_max(max([v for s in bars for v in s.values if v is not None] or [0]))
    y_axis = MARGIN_TOP + group_h * len(rows)
    parts = [f'<text class="tick" x="{row_label_width - 6}" y="{MARGIN_TOP + group_h * (r + 0.5) + 4:.1f}" '
             f'text-anchor="end" fill="#333">{escape(_clip(label, label_chars))}</text>' for r, label in enumerate(rows)]
    for i in range(5):
        x = row_label_width + plot_w * i / 4
        parts.append(f'<line x1="{x:.1f}" y1="{MARGIN_TOP}" x2="{x:.1f}" y2="{y_axis}" stroke="#e5e5e5"/>'
                     f'<text class="tick" x="{x:.1f}" y="{y_axis + 16}" text-anchor="middle" fill="#555">'
                     f"{escape(fmt(x_max * i / 4))}</text>")
    parts.append(f'<line x1="{row_label_width}" y1="{MARGIN_TOP}" x2="{row_label_width}" y2="{y_axis}" stroke="#333"/>'
                 f'<text class="axis-label" x="{row_label_width + plot_w / 2:.1f}" y="{y_axis + 38}" '
                 f'text-anchor="middle" fill="#333">{escape(x_label)}</text>')
    marks = []
    for r, label in enumerate(rows):
        for j, s in enumerate(bars):
            v = s.values[r]
            if not v:
                continue
            y = MARGIN_TOP + group_h * r + 5 + 10 * j
            w = plot_w * v / x_max
            marks.append(f'<rect class="mark bar" x="{row_label_width}" y="{y}" width="{w:.1f}" height="9" '
                         f'fill="{s.color}"><title>{escape(f"{label} · {s.label}: {fmt(v)}")}</title></rect>')
            if j == 0:
                parts.append(f'<text x="{row_label_width + w + 4:.1f}" y="{y + 8}" fill="#333" font-size="10">'
                             f"{escape(fmt(v))}</text>")
    legend_x = WIDTH - 100
    for j, s in enumerate(bars):
        parts.append(f'<rect x="{legend_x}" y="{MARGIN_TOP + 14 * j}" width="10" height="10" fill="{s.color}"/>'
                     f'<text class="legend" x="{legend_x + 14}" y="{MARGIN_TOP + 14 * j + 9}" fill="#333">'
                     f"{escape(s.label)}</text>")
    return _open(name, len(marks), height, title) + "".join(parts) + "".join(marks) + "</svg>"
