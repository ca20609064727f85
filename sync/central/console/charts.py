"""The reports pages' charts as inline SVG, in the style of the printed reports
(gate/desk/report_doc.py, sync/central/site_report.py ``write_figure``): the same colours
(allowed green, denied red, categories blue, hours slate), horizontal bars with their
label above and their value at the end, columns by gate and by hour with a title on the
left. Inline SVG needs no script and no style attribute (the console's
Content-Security-Policy allows neither inline), is drawn in well under a millisecond,
and scales on a tablet; the PDF of the site's day is site_report.py's own figure.
"""
from __future__ import annotations

from markupsafe import Markup, escape

ALLOWED, DENIED, BLUE, SLATE, GREY = "#2e7d32", "#c62828", "#1565c0", "#455a64", "#777777"


def _svg(width: int, height: int, body: list[str], label: str) -> Markup:
    return Markup(f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{escape(label)}"'
                  f' xmlns="http://www.w3.org/2000/svg" font-family="sans-serif">' + "".join(body) + "</svg>")


def bars(items: list[tuple[str, int]], colour: str, label: str, empty: str, limit: int = 10) -> Markup:
    """Horizontal bars, most first, each with its label above it and its value after it."""
    items = sorted(items, key=lambda kv: (-kv[1], kv[0]))[:limit]
    if not items:
        return _svg(360, 40, [f'<text x="180" y="24" text-anchor="middle" font-size="13" fill="{GREY}">{escape(empty)}</text>'], label)
    top = max(v for _, v in items) or 1
    width, row = 360, 34
    body = []
    for i, (name, value) in enumerate(items):
        y = i * row
        w = max(1.0, (width - 60) * value / top)
        body.append(f'<text x="0" y="{y + 12}" font-size="12" fill="#222">{escape(name)}</text>')
        body.append(f'<rect x="0" y="{y + 16}" width="{w:.1f}" height="12" fill="{colour}"><title>{escape(name)}: {value}</title></rect>')
        body.append(f'<text x="{w + 4:.1f}" y="{y + 27}" font-size="12" fill="#222">{value}</text>')
    return _svg(width, len(items) * row + 4, body, label)


def columns(labels: list[str], series: list[tuple[list[int], str, str]], label: str, *, marked: set[int] | None = None) -> Markup:
    """Stacked columns, one per label (a gate, an hour, a day); ``series`` is
    [(values, colour, name)] from the bottom up; ``marked`` columns' labels are red
    (a gate that sent no report)."""
    n = max(1, len(labels))
    totals = [sum(s[0][i] for s in series) for i in range(len(labels))]
    top = max(totals + [1])
    step = max(14.0, min(48.0, 720.0 / n))
    width, height, base = max(720, int(step * n + 40)), 190, 150  # never wider than a column a gate
    body = [f'<line x1="30" y1="{base}" x2="{width}" y2="{base}" stroke="#bbb" stroke-width="1"/>',
            f'<text x="26" y="{base - 122}" font-size="10" text-anchor="end" fill="{GREY}">{top}</text>',
            f'<text x="26" y="{base}" font-size="10" text-anchor="end" fill="{GREY}">0</text>']
    for i, name in enumerate(labels):
        x, y = 34 + i * step, float(base)
        for values, colour, sname in series:
            h = 120.0 * values[i] / top
            if h > 0:
                y -= h
                body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}" fill="{colour}">'
                            f'<title>{escape(name)} {escape(sname)}: {values[i]}</title></rect>')
        fill = DENIED if marked and i in marked else "#222"
        body.append(f'<text x="{x + step * 0.35:.1f}" y="{base + 14}" font-size="10" text-anchor="middle" fill="{fill}">'
                    f'{escape(name)}</text>')
    legend_x = 34
    for _values, colour, sname in series:
        body.append(f'<rect x="{legend_x}" y="{height - 14}" width="10" height="10" fill="{colour}"/>'
                    f'<text x="{legend_x + 14}" y="{height - 5}" font-size="11" fill="#222">{escape(sname)}</text>')
        legend_x += 14 + 8 * len(sname) + 20
    return _svg(width, height, body, label)
