"""Small charts as standalone SVG strings: pure functions, no dependencies, no JavaScript.

Every function returns one `<svg>` element with a fixed `viewBox` (it scales to its container),
a `<title>` for screen readers, and every piece of text XML-escaped here, so the HTML template can
insert the result unescaped. Non-finite values (NaN, inf) are dropped, and a chart with nothing to
draw says "no data" instead of failing. Colours are the Okabe-Ito palette (safe for the common
colour-vision deficiencies); lines also differ by dash pattern and points by marker shape.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#555555", "#F0E442")
DASHES = ("", "6 4", "2 3", "8 3 2 3", "1 0")
MARKERS = ("circle", "square", "diamond", "triangle")
INK, MUTED, GRID = "#1f2328", "#59636e", "#d8dee4"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
WIDTH, HEIGHT = 560, 380
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 48, 62
CHAR = 7.0  # mean glyph width at font-size 12.5, for laying out labels  # plot margins inside the viewBox

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")  # not allowed in XML 1.0

Point = tuple[str, float, float | None, float | None, float, float | None, float | None]


def esc(text: object) -> str:
    """Text made safe for SVG/XML content and attributes (control characters removed)."""
    return html.escape(_CONTROL.sub("", str(text)), quote=True)


def finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def shorten(text: str, limit: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --- scales and ticks ----------------------------------------------------------------------------


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values (steps of 1, 2 or 5 x 10^k) covering [lo, hi]."""
    if not (finite(lo) and finite(hi)):
        return [0.0, 1.0]
    if hi - lo < 1e-12:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step + 1e-9) * step
    ticks, t = [], first
    while t < hi + step * 0.999:
        ticks.append(round(t, 12) + 0.0)  # + 0.0 turns -0.0 into 0.0
        t += step
    return ticks


def tick_label(value: float, step: float, percent: bool) -> str:
    """A tick value with just enough decimals for its step (percent: value x 100)."""
    v, s = (value * 100, step * 100) if percent else (value, step)
    decimals = max(0, -math.floor(math.log10(s) + 1e-9)) if s > 0 else 0
    if s > 0 and round(s, decimals) != s and decimals < 6:  # e.g. step 2.5
        decimals += 1
    text = f"{v:.{decimals}f}"
    return "0" if float(text) == 0 else text


class Scale:
    """Maps data [lo, hi] onto pixels [a, b] (b < a for a y axis)."""

    def __init__(self, lo: float, hi: float, a: float, b: float):
        self.lo, self.hi, self.a, self.b = lo, hi, a, b

    def __call__(self, v: float) -> float:
        return self.a + (v - self.lo) / (self.hi - self.lo) * (self.b - self.a)


def _domain(values: Sequence[float], include: Sequence[float] = (), pad: float = 0.06) -> list[float]:
    """Ticks covering the finite values plus `include` (e.g. 0 or a budget line), padded a little."""
    vals = [v for v in [*values, *include] if finite(v)]
    if not vals:
        return nice_ticks(0.0, 1.0)
    lo, hi = min(vals), max(vals)
    span = hi - lo or abs(hi) or 1.0
    return nice_ticks(lo - pad * span if lo < 0 or lo not in include else lo,
                      hi + pad * span if hi not in include else hi)


# --- drawing pieces ------------------------------------------------------------------------------


def _f(x: float) -> str:
    return f"{x:.1f}"


def _open(title: str, width: int = WIDTH, height: int = HEIGHT) -> list[str]:
    return [(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
             f'class="chart" font-family="{esc(FONT)}" font-size="12.5" fill="{INK}">'),
            f"<title>{esc(title)}</title>",
            (f'<text x="{width / 2:.0f}" y="22" text-anchor="middle" font-size="15" font-weight="600">'
             f"{esc(shorten(title, 80))}</text>")]


def _empty(title: str, width: int = WIDTH, height: int = HEIGHT) -> str:
    return "\n".join([*_open(title, width, height),
                      (f'<rect x="{LEFT}" y="{TOP}" width="{width - LEFT - RIGHT}" '
                       f'height="{height - TOP - BOTTOM}" fill="#f6f8fa" stroke="{GRID}"/>'),
                      (f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" fill="{MUTED}" '
                       f'font-size="14">no data</text>'), "</svg>"])


def _axes(xs: Scale, ys: Scale, xticks: list[float], yticks: list[float], x_label: str, y_label: str,
          *, x_percent: bool, y_percent: bool, x_tick_text: bool = True) -> list[str]:
    """Grid lines, tick labels and axis titles."""
    out = ['<g class="axes">']
    ystep = yticks[1] - yticks[0] if len(yticks) > 1 else 1.0
    for t in yticks:
        y = ys(t)
        out.append(f'<line x1="{_f(xs.a)}" x2="{_f(xs.b)}" y1="{_f(y)}" y2="{_f(y)}" stroke="{GRID}"/>')
        out.append(f'<text x="{_f(xs.a - 6)}" y="{_f(y + 4)}" text-anchor="end" fill="{MUTED}">'
                   f"{esc(tick_label(t, ystep, y_percent))}</text>")
    if x_tick_text:
        xstep = xticks[1] - xticks[0] if len(xticks) > 1 else 1.0
        for t in xticks:
            x = xs(t)
            out.append(f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{_f(ys.a)}" y2="{_f(ys.b)}" stroke="{GRID}"/>')
            out.append(f'<text x="{_f(x)}" y="{_f(ys.a + 17)}" text-anchor="middle" fill="{MUTED}">'
                       f"{esc(tick_label(t, xstep, x_percent))}</text>")
    out.append(f'<rect x="{_f(xs.a)}" y="{_f(ys.b)}" width="{_f(xs.b - xs.a)}" height="{_f(ys.a - ys.b)}" '
               f'fill="none" stroke="#afb8c1"/>')
    out.append(f'<text x="{_f((xs.a + xs.b) / 2)}" y="{_f(ys.a + 40)}" text-anchor="middle" font-size="13">'
               f"{esc(shorten(x_label, 90))}</text>")
    cy = (ys.a + ys.b) / 2
    out.append(f'<text transform="translate(16 {_f(cy)}) rotate(-90)" text-anchor="middle" font-size="13">'
               f"{esc(shorten(y_label, 60))}</text>")
    return out + ["</g>"]


def _marker(shape: str, x: float, y: float, colour: str, r: float = 5.5) -> str:
    style = f'fill="{colour}" stroke="#ffffff" stroke-width="1.5"'
    if shape == "square":
        return f'<rect x="{_f(x - r)}" y="{_f(y - r)}" width="{_f(2 * r)}" height="{_f(2 * r)}" {style}/>'
    if shape == "diamond":
        d = r * 1.35
        return f'<path d="M{_f(x)} {_f(y - d)}L{_f(x + d)} {_f(y)}L{_f(x)} {_f(y + d)}L{_f(x - d)} {_f(y)}Z" {style}/>'
    if shape == "triangle":
        d = r * 1.3
        return f'<path d="M{_f(x)} {_f(y - d)}L{_f(x + d)} {_f(y + d * 0.8)}L{_f(x - d)} {_f(y + d * 0.8)}Z" {style}/>'
    return f'<circle cx="{_f(x)}" cy="{_f(y)}" r="{_f(r)}" {style}/>'


def _bar_value(v: float, percent: bool) -> str:
    return f"{v * 100:.0f}" if percent else f"{v:.3g}"


def _legend(names: Sequence[str], y: float, width: int, *, lines: bool) -> list[str]:
    """One row (wrapping) of swatch + name, centred under the title."""
    items = [shorten(n, 28) for n in names]
    sizes = [44 + CHAR * len(n) for n in items]
    rows: list[list[int]] = [[]]
    for i, s in enumerate(sizes):
        if rows[-1] and sum(sizes[j] for j in rows[-1]) + s > width - 40:
            rows.append([])
        rows[-1].append(i)
    out = ['<g class="legend">']
    for r, row in enumerate(rows):
        x = (width - sum(sizes[i] for i in row)) / 2
        yy = y + 16 * r
        for i in row:
            colour = PALETTE[i % len(PALETTE)]
            if lines:
                dash = DASHES[i % len(DASHES)]
                out.append(f'<line x1="{_f(x)}" x2="{_f(x + 22)}" y1="{_f(yy - 4)}" y2="{_f(yy - 4)}" '
                           f'stroke="{colour}" stroke-width="2.5"' + (f' stroke-dasharray="{dash}"' if dash else "")
                           + "/>")
            else:
                out.append(f'<rect x="{_f(x + 6)}" y="{_f(yy - 10)}" width="11" height="11" fill="{colour}"/>')
            out.append(f'<text x="{_f(x + 27)}" y="{_f(yy)}">{esc(items[i])}</text>')
            x += sizes[i]
    return out + ["</g>"]


# --- charts ----------------------------------------------------------------------------------------


def scatter_with_error_bars(points: Sequence[Point], x_label: str, y_label: str, title: str, *,
                            budget: float | None = None, budget_label: str = "within budget",
                            percent: bool = True, width: int = WIDTH, height: int = HEIGHT) -> str:
    """Learning vs forgetting: one labelled point per strategy with both 95% intervals as error bars.

    points: (label, x, x_lo, x_hi, y, y_lo, y_hi); a missing or non-finite bound draws no bar.
    budget: shade x <= budget (general drop within the tolerated budget). Dashed zero lines on both axes.
    """
    pts = [p for p in points if finite(p[1]) and finite(p[4])]
    if not pts:
        return _empty(title, width, height)
    xs_all = [v for p in pts for v in (p[1], p[2], p[3]) if finite(v)]
    ys_all = [v for p in pts for v in (p[4], p[5], p[6]) if finite(v)]
    xticks = _domain(xs_all, include=[0.0] + ([budget] if finite(budget) else []))
    yticks = _domain(ys_all, include=[0.0])
    xs = Scale(xticks[0], xticks[-1], LEFT, width - RIGHT)
    ys = Scale(yticks[0], yticks[-1], height - BOTTOM, TOP)
    out = _open(title, width, height)
    if finite(budget):
        bx = min(max(xs(budget), xs.a), xs.b)
        out.append(f'<rect x="{_f(xs.a)}" y="{_f(ys.b)}" width="{_f(bx - xs.a)}" height="{_f(ys.a - ys.b)}" '
                   f'fill="#009E73" fill-opacity="0.10"/>')
        out.append(f'<line x1="{_f(bx)}" x2="{_f(bx)}" y1="{_f(ys.a)}" y2="{_f(ys.b)}" stroke="#009E73" '
                   f'stroke-width="1.5" stroke-dasharray="5 3"/>')
        out.append(f'<text x="{_f(bx - 5)}" y="{_f(ys.b + 14)}" text-anchor="end" fill="#00704f" font-size="11">'
                   f"{esc(budget_label)}</text>")
    out += _axes(xs, ys, xticks, yticks, x_label, y_label, x_percent=percent, y_percent=percent)
    for axis, pos in (("x", xs(0.0)), ("y", ys(0.0))):
        if axis == "x" and xs.a <= pos <= xs.b:
            out.append(f'<line x1="{_f(pos)}" x2="{_f(pos)}" y1="{_f(ys.a)}" y2="{_f(ys.b)}" stroke="{MUTED}" '
                       f'stroke-dasharray="3 3"/>')
        elif axis == "y" and ys.b <= pos <= ys.a:
            out.append(f'<line x1="{_f(xs.a)}" x2="{_f(xs.b)}" y1="{_f(pos)}" y2="{_f(pos)}" stroke="{MUTED}" '
                       f'stroke-dasharray="3 3"/>')
    for i, (label, x, x_lo, x_hi, y, y_lo, y_hi) in enumerate(pts):
        colour, px, py = PALETTE[i % len(PALETTE)], xs(x), ys(y)
        out.append(f'<g class="point"><title>{esc(label)}</title>')
        if finite(x_lo) and finite(x_hi):
            a, b = xs(x_lo), xs(x_hi)
            out.append(f'<path d="M{_f(a)} {_f(py)}H{_f(b)}M{_f(a)} {_f(py - 4)}V{_f(py + 4)}M{_f(b)} {_f(py - 4)}'
                       f'V{_f(py + 4)}" stroke="{colour}" stroke-width="1.6" fill="none"/>')
        if finite(y_lo) and finite(y_hi):
            a, b = ys(y_lo), ys(y_hi)
            out.append(f'<path d="M{_f(px)} {_f(a)}V{_f(b)}M{_f(px - 4)} {_f(a)}H{_f(px + 4)}M{_f(px - 4)} {_f(b)}'
                       f'H{_f(px + 4)}" stroke="{colour}" stroke-width="1.6" fill="none"/>')
        out.append(_marker(MARKERS[i % len(MARKERS)], px, py, colour, r=6))
        out.append("</g>")
    # labels last, so no marker covers them; each goes where it overlaps nothing drawn so far
    taken = [(xs(p[1]) - 7, ys(p[4]) - 7, xs(p[1]) + 7, ys(p[4]) + 7) for p in pts]
    for p in pts:
        text = shorten(p[0], 28)
        x, y, anchor = _place_label(xs(p[1]), ys(p[4]), len(text) * CHAR, taken, (xs.a, ys.b, xs.b, ys.a))
        out.append(f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}" font-weight="600" stroke="#ffffff" '
                   f'stroke-width="3.5" paint-order="stroke">{esc(text)}</text>')
    return "\n".join(out + ["</svg>"])


def _place_label(px: float, py: float, w: float, taken: list[tuple[float, float, float, float]],
                 bounds: tuple[float, float, float, float]) -> tuple[float, float, str]:
    """The first of eight spots around a point whose box (x0, y0, x1, y1) overlaps nothing in `taken`."""
    h = 14.0
    spots = [(9, -7, "start"), (-9, -7, "end"), (9, 17, "start"), (-9, 17, "end"), (0, -12, "middle"),
             (0, 24, "middle"), (9, -21, "start"), (-9, 31, "end")]
    best = None
    for dx, dy, anchor in spots:
        x0 = px + dx - (w if anchor == "end" else w / 2 if anchor == "middle" else 0)
        box = (x0, py + dy - h + 3, x0 + w, py + dy + 3)
        inside = box[0] >= bounds[0] - 4 and box[2] <= bounds[2] + 4 and box[1] >= bounds[1] - 16
        overlap = sum(max(0, min(box[2], t[2]) - max(box[0], t[0])) * max(0, min(box[3], t[3]) - max(box[1], t[1]))
                      for t in taken)
        score = overlap + (0 if inside else 1e6)
        if best is None or score < best[0]:
            best = (score, px + dx, py + dy, anchor, box)
        if score == 0:
            break
    taken.append(best[4])
    return best[1], best[2], best[3]


def line_chart(series: Mapping[str, Sequence[tuple[float, float]]], x_label: str, y_label: str, title: str, *,
               hline: float | None = None, hline_label: str = "", vline: float | None = None,
               vline_label: str = "", percent: bool = False, zero_line: bool = True,
               width: int = WIDTH, height: int = HEIGHT) -> str:
    """One line per series (sorted by x; NaN points break nothing, they are left out).

    hline: a horizontal reference (e.g. the drop budget); vline: a vertical one (e.g. the chosen alpha).
    """
    clean = {name: sorted((x, y) for x, y in pts if finite(x) and finite(y)) for name, pts in series.items()}
    clean = {name: pts for name, pts in clean.items() if pts}
    if not clean:
        return _empty(title, width, height)
    xv = [x for pts in clean.values() for x, _ in pts] + ([vline] if finite(vline) else [])
    yv = [y for pts in clean.values() for _, y in pts]
    include = ([0.0] if zero_line else []) + ([hline] if finite(hline) else [])
    xticks = nice_ticks(min(xv), max(xv)) if max(xv) > min(xv) else nice_ticks(min(xv) - 1, min(xv) + 1)
    yticks = _domain(yv, include=include)
    top = TOP + 16 * (1 + (len(clean) > 4))
    xs = Scale(xticks[0], xticks[-1], LEFT, width - RIGHT)
    ys = Scale(yticks[0], yticks[-1], height - BOTTOM, top)
    out = _open(title, width, height)
    out += _legend(list(clean), 42, width, lines=True)
    out += _axes(xs, ys, xticks, yticks, x_label, y_label, x_percent=False, y_percent=percent)
    if zero_line and ys.b <= ys(0.0) <= ys.a:
        out.append(f'<line x1="{_f(xs.a)}" x2="{_f(xs.b)}" y1="{_f(ys(0.0))}" y2="{_f(ys(0.0))}" stroke="{MUTED}"/>')
    if finite(hline):
        y = ys(hline)
        out.append(f'<line x1="{_f(xs.a)}" x2="{_f(xs.b)}" y1="{_f(y)}" y2="{_f(y)}" stroke="{INK}" '
                   f'stroke-width="1.2" stroke-dasharray="10 4"/>')
        if hline_label:
            out.append(f'<text x="{_f(xs.b - 4)}" y="{_f(y - 5)}" text-anchor="end" font-size="11" stroke="#ffffff" '
                       f'stroke-width="3" paint-order="stroke">{esc(hline_label)}</text>')
    if finite(vline):
        x = xs(vline)
        out.append(f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{_f(ys.a)}" y2="{_f(ys.b)}" stroke="{INK}" '
                   f'stroke-width="1.2" stroke-dasharray="2 3"/>')
        if vline_label:
            out.append(f'<text x="{_f(x + 4)}" y="{_f(ys.b + 12)}" font-size="11">{esc(vline_label)}</text>')
    for i, (name, pts) in enumerate(clean.items()):
        colour, dash = PALETTE[i % len(PALETTE)], DASHES[i % len(DASHES)]
        path = "M" + "L".join(f"{_f(xs(x))} {_f(ys(y))}" for x, y in pts)
        out.append(f'<g class="series"><title>{esc(name)}</title>')
        out.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2.5" stroke-linejoin="round"'
                   + (f' stroke-dasharray="{dash}"' if dash else "") + "/>")
        if len(pts) <= 40:
            out += [_marker(MARKERS[i % len(MARKERS)], xs(x), ys(y), colour, r=3.5) for x, y in pts]
        out.append("</g>")
    return "\n".join(out + ["</svg>"])


def grouped_bars(categories: Sequence[str], series: Mapping[str, Sequence[float | None]], title: str, *,
                 y_label: str = "accuracy", percent: bool = True, y_max: float | None = None,
                 width: int = WIDTH, height: int = HEIGHT) -> str:
    """One group per category, one bar per series (e.g. before/after); missing or NaN values draw no bar."""
    names = list(series)
    values = [v for vals in series.values() for v in vals if finite(v)]
    if not categories or not names or not values:
        return _empty(title, width, height)
    upper = y_max if finite(y_max) else max(values)
    yticks = nice_ticks(min(0.0, min(values)), max(upper, max(values)))
    rotate = len(categories) > 6 or max(len(c) for c in categories) * len(categories) > 70
    bottom = BOTTOM + (44 if rotate else 0)
    top = TOP + 16 * (1 + (len(names) > 4))
    xs = Scale(0, len(categories), LEFT, width - RIGHT)
    ys = Scale(yticks[0], yticks[-1], height - bottom, top)
    out = _open(title, width, height)
    out += _legend(names, 42, width, lines=False)
    out += _axes(xs, ys, [], yticks, "", y_label, x_percent=False, y_percent=percent, x_tick_text=False)
    group = (xs.b - xs.a) / len(categories)
    bar = group * 0.8 / len(names)
    base = ys(max(0.0, yticks[0]))
    ystep = yticks[1] - yticks[0] if len(yticks) > 1 else 1.0
    for c, cat in enumerate(categories):
        gx = xs(c) + group * 0.1
        for s, name in enumerate(names):
            vals = series[name]
            v = vals[c] if c < len(vals) else None
            if not finite(v):
                continue
            x, y = gx + s * bar, ys(v)
            out.append(f'<rect x="{_f(x)}" y="{_f(min(y, base))}" width="{_f(max(bar - 2, 1))}" '
                       f'height="{_f(abs(base - y))}" fill="{PALETTE[s % len(PALETTE)]}">'
                       f"<title>{esc(cat)} — {esc(name)}: {esc(tick_label(v, ystep / 10, percent))}</title></rect>")
            if bar >= 22:
                out.append(f'<text x="{_f(x + bar / 2 - 1)}" y="{_f(min(y, base) - 4)}" text-anchor="middle" '
                           f'font-size="10" fill="{MUTED}">{_bar_value(v, percent)}</text>')
        cx = xs(c + 0.5)
        label = esc(shorten(cat, 22 if rotate else max(6, int(group / 7))))
        if rotate:
            out.append(f'<text transform="translate({_f(cx + 4)} {_f(ys.a + 12)}) rotate(-35)" text-anchor="end" '
                       f'fill="{INK}"><title>{esc(cat)}</title>{label}</text>')
        else:
            out.append(f'<text x="{_f(cx)}" y="{_f(ys.a + 17)}" text-anchor="middle" fill="{INK}">'
                       f"<title>{esc(cat)}</title>{label}</text>")
    return "\n".join(out + ["</svg>"])
