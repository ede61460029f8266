"""The Activity chart as server-rendered SVG: per integration, stacked bars of successes and
failures per time bucket. Each bar has a ``<title>`` (a tooltip, read by screen readers), and the
whole chart an accessible name, so the numbers are never locked inside the picture.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape

from .activity import Series

__all__ = ["outcome_chart"]

WIDTH, HEIGHT, LABEL_HEIGHT = 600, 80, 16


def _label(at: datetime, span: timedelta) -> str:
    return at.strftime("%H:%M" if span <= timedelta(days=1) else "%m-%d %H:%M")


def outcome_chart(series: Series, *, since: datetime, until: datetime, peak: int) -> str:
    buckets = len(series.succeeded)
    span = until - since
    step = span / buckets
    bar = WIDTH / buckets
    scale = (HEIGHT - 4) / max(peak, 1)
    name = escape(series.integration)
    summary = (
        f"{name}: {series.total_succeeded} succeeded, {series.total_failed} failed "
        f"between {_label(since, span)} and {_label(until, span)} UTC"
    )
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT + LABEL_HEIGHT}" role="img" aria-label="{summary}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<line class="axis" x1="0" y1="{HEIGHT}" x2="{WIDTH}" y2="{HEIGHT}"/>',
    ]
    for i, (ok, failed) in enumerate(zip(series.succeeded, series.failed, strict=True)):
        if not ok and not failed:
            continue
        x = i * bar + 1
        start = since + step * i
        tip = escape(f"{_label(start, span)} to {_label(start + step, span)}: {ok} succeeded, {failed} failed")
        ok_h, fail_h = ok * scale, failed * scale
        parts.append(f"<g><title>{tip}</title>")
        if ok:
            parts.append(
                f'<rect class="bar-ok" x="{x:.1f}" y="{HEIGHT - ok_h:.1f}" width="{bar - 2:.1f}" height="{ok_h:.1f}"/>'
            )
        if failed:
            y = HEIGHT - ok_h - fail_h
            parts.append(
                f'<rect class="bar-fail" x="{x:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{fail_h:.1f}"/>'
            )
        parts.append("</g>")
    parts.append(f'<text class="tick" x="0" y="{HEIGHT + 12}">{_label(since, span)}</text>')
    parts.append(f'<text class="tick" x="{WIDTH}" y="{HEIGHT + 12}" text-anchor="end">{_label(until, span)}</text>')
    parts.append("</svg>")
    return "".join(parts)
