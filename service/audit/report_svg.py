"""The report's plots as inline SVG: no plotting library, sharp at any zoom, and no inline CSS
(colours are SVG attributes), so the pages' content security policy lets them show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

BAR = "#4e79a7"
HIGHLIGHT = "#e15759"
GRID = "#d9d9d9"
INK = "#333333"
BAND = "#f28e2b"
FONT = 'font-family="sans-serif" font-size="11"'
MAX_BARS = 30


@dataclass(frozen=True)
class Bar:
    """One group's bar: a rate with its interval; highlighted groups stand out."""

    label: str
    rate: float | None
    low: float | None
    high: float | None
    n: int
    highlighted: bool = False


def histogram_svg(
    counts: Sequence[int],
    edges: Sequence[float],
    *,
    title: str,
    median: float | None,
    q1: float | None,
    q3: float | None,
    width: int = 320,
    height: int = 150,
) -> Markup:
    """Return a histogram with the IQR as a band and the median as a line."""
    left, right, top, bottom = 34, 10, 22, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    low, high = edges[0], edges[-1]
    peak = max(max(counts, default=0), 1)

    def x(value: float) -> float:
        return left + (value - low) / (high - low) * plot_w

    parts = [_title(title, left, 14)]
    if q1 is not None and q3 is not None:
        parts.append(_rect(x(q1), top, max(1.0, x(q3) - x(q1)), plot_h, BAND, opacity=0.25))
    step = plot_w / max(len(counts), 1)
    for i, count in enumerate(counts):
        h = plot_h * count / peak
        parts.append(_rect(left + i * step + 0.5, top + plot_h - h, max(step - 1, 1), h, BAR))
    if median is not None:
        parts.append(_line(x(median), top, x(median), top + plot_h, INK, width=2))
    parts.append(_line(left, top + plot_h, left + plot_w, top + plot_h, INK))
    for value in (low, (low + high) / 2, high):
        parts.append(_text(x(value), height - 10, f"{value:g}", anchor="middle"))
    parts.append(_text(left - 4, top + 8, str(peak), anchor="end"))
    parts.append(_text(left - 4, top + plot_h, "0", anchor="end"))
    label = "no values" if median is None else f"median {median:.2f}, IQR {q1:.2f}–{q3:.2f}"
    return _svg(width, height, parts, f"{title}: {label}")


def group_bars_svg(
    bars: Sequence[Bar], *, title: str, overall: float | None, width: int = 520
) -> Markup:
    """Return horizontal bars of a rate per group with their intervals (0–1 scale) and a
    dashed line at the overall rate; highlighted groups are drawn in red."""
    shown = list(bars[:MAX_BARS])
    left, right, top, row = 170, 60, 26, 20
    height = top + row * max(len(shown), 1) + 28
    plot_w = width - left - right

    def x(value: float) -> float:
        return left + min(max(value, 0.0), 1.0) * plot_w

    parts = [_title(title, 4, 14)]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(_line(x(tick), top - 4, x(tick), height - 24, GRID))
        parts.append(_text(x(tick), height - 10, f"{tick:.0%}", anchor="middle"))
    for i, bar in enumerate(shown):
        y = top + i * row
        colour = HIGHLIGHT if bar.highlighted else BAR
        name = bar.label if len(bar.label) <= 24 else bar.label[:23] + "…"
        parts.append(_text(left - 6, y + 13, f"{name} (n={bar.n})", anchor="end"))
        if bar.rate is None:
            parts.append(_text(left + 4, y + 13, "no audited cases"))
            continue
        parts.append(_rect(left, y + 3, max(x(bar.rate) - left, 0.5), row - 8, colour))
        if bar.low is not None and bar.high is not None:
            mid = y + row / 2 - 1
            parts.append(_line(x(bar.low), mid, x(bar.high), mid, INK, width=1.5))
            for end in (bar.low, bar.high):
                parts.append(_line(x(end), mid - 4, x(end), mid + 4, INK, width=1.5))
        parts.append(_text(x(max(bar.high or bar.rate, bar.rate)) + 4, y + 13, f"{bar.rate:.0%}"))
    if overall is not None:
        parts.append(_line(x(overall), top - 4, x(overall), height - 24, INK, dash=True))
    if len(bars) > len(shown):
        parts.append(_text(4, height - 10, f"+{len(bars) - len(shown)} smaller groups"))
    return _svg(width, height, parts, title)


def reliability_svg(
    bins: Sequence[tuple[float | None, float | None, int]], *, title: str, size: int = 260
) -> Markup:
    """Return a reliability diagram: (mean probability, observed rate, n) per bin as dots
    (area by n) against the diagonal of perfect calibration."""
    margin, top = 36, 24
    plot = size - margin - 12

    def px(value: float) -> float:
        return margin + value * plot

    def py(value: float) -> float:
        return top + (1.0 - value) * plot

    most = max((n for _p, _o, n in bins), default=1) or 1
    parts = [_title(title, margin, 14)]
    parts.append(_rect(margin, top, plot, plot, "none", stroke=INK))
    parts.append(_line(px(0), py(0), px(1), py(1), GRID, dash=True))
    for mean, observed, n in bins:
        if mean is None or observed is None or n == 0:
            continue
        radius = 2.0 + 6.0 * (n / most) ** 0.5
        parts.append(
            f'<circle cx="{px(mean):.1f}" cy="{py(observed):.1f}" r="{radius:.1f}" '
            f'fill="{BAR}" fill-opacity="0.8"><title>{n} cases</title></circle>'
        )
    parts.append(_text(px(0.5), size - 2, "mean predicted probability", anchor="middle"))
    parts.append(_text(4, top - 6, "observed rate"))
    return _svg(size, size + 8, parts, title)


def _svg(width: int, height: int, parts: list[str], label: str) -> Markup:
    body = "".join(parts)
    return Markup(  # noqa: S704 - every text inside was escaped by _text/_title
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">{body}</svg>'
    )


def _rect(
    x: float, y: float, w: float, h: float, fill: str, *, opacity: float = 1.0, stroke: str = ""
) -> str:
    outline = f' stroke="{stroke}"' if stroke else ""
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{fill}" '
        f'fill-opacity="{opacity}"{outline}/>'
    )


def _line(
    x1: float, y1: float, x2: float, y2: float, colour: str, *, width: float = 1, dash: bool = False
) -> str:
    pattern = ' stroke-dasharray="4 3"' if dash else ""
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}" '
        f'stroke-width="{width}"{pattern}/>'
    )


def _text(x: float, y: float, text: str, *, anchor: str = "start") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" {FONT} fill="{INK}" text-anchor="{anchor}">'
        f"{escape(text)}</text>"
    )


def _title(text: str, x: float, y: float) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-family="sans-serif" font-size="12" '
        f'font-weight="bold" fill="{INK}">{escape(text)}</text>'
    )
