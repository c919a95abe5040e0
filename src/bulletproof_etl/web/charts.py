"""Inline SVG line charts: no script, no external file, readable without colour."""

from __future__ import annotations

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 420, 140, 34


def line_chart(points: list, title: str, unit: str = "", *, floor_zero: bool = True) -> Markup:
    """``points``: ``[(run id, value)]`` oldest first. A chart with axes, a line and a dot per run."""
    head = f'<figure class="chart"><figcaption>{escape(title)}</figcaption>'
    if not points:
        return Markup(head + '<p class="muted">no run has recorded it yet</p></figure>')
    xs = [p[0] for p in points]
    ys = [float(p[1]) for p in points]
    lo = 0.0 if floor_zero else min(ys)
    hi = max(ys) if max(ys) > lo else lo + 1.0
    span_x = (max(xs) - min(xs)) or 1

    def px(x):
        return PAD + (x - min(xs)) * (WIDTH - 2 * PAD) / span_x

    def py(y):
        return HEIGHT - PAD + 10 - (y - lo) * (HEIGHT - PAD - 10) / (hi - lo)

    coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=True))
    dots = "".join(
        f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3"><title>run {x}: {y:g}{escape(unit)}</title></circle>'
        for x, y in zip(xs, ys, strict=True))
    svg = (
        f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD + 10}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD + 10}" class="axis"/>'
        f'<line x1="{PAD}" y1="10" x2="{PAD}" y2="{HEIGHT - PAD + 10}" class="axis"/>'
        f'<text x="{PAD - 4}" y="14" text-anchor="end" class="tick">{hi:g}</text>'
        f'<text x="{PAD - 4}" y="{HEIGHT - PAD + 10}" text-anchor="end" class="tick">{lo:g}</text>'
        f'<text x="{PAD}" y="{HEIGHT - 6}" class="tick">run {min(xs)}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 6}" text-anchor="end" class="tick">run {max(xs)}</text>'
        f'<polyline points="{coords}" class="line"/>{dots}</svg>'
    )
    return Markup(head + svg + "</figure>")
