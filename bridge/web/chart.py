"""Counts per day as an inline SVG stacked bar chart, rendered on the server: entries by
outcome on the dashboard, Salesforce API calls on the integration health page."""

from __future__ import annotations

from datetime import date
from html import escape

COLOURS = {
    "processed": "#2e7d32",
    "review": "#f9a825",
    "failed": "#c62828",
    "skipped": "#78909c",
    "new": "#1565c0",
}


def entries_per_day_svg(
    days: list[date],
    counts: dict[date, dict[str, int]],
    *,
    width: int = 720,
    height: int = 220,
    series: dict[str, str] = COLOURS,
    title: str = "Entries per day by outcome",
    chart_id: str = "chart-title",
) -> str:
    """`counts[day][series]`; one stacked bar per day, a legend, and a readable y scale."""
    pad_left, pad_bottom, pad_top = 36, 28, 24
    plot_h = height - pad_bottom - pad_top
    totals = [sum(counts.get(d, {}).values()) for d in days]
    top = max([*totals, 1])
    step = max(1, -(-top // 4))  # four gridlines, whole numbers
    top = step * 4
    bar_w = (width - pad_left) / max(len(days), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" class="chart" aria-labelledby="{chart_id}">',
        f'<title id="{chart_id}">{escape(title)}</title>',
    ]
    for i in range(5):
        y = pad_top + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{pad_left}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(
            f'<text x="{pad_left - 6}" y="{y + 4:.1f}" class="axis" '
            f'text-anchor="end">{step * i}</text>'
        )
    for i, day in enumerate(days):
        x = pad_left + i * bar_w + bar_w * 0.15
        y = pad_top + plot_h
        for outcome, colour in series.items():
            n = counts.get(day, {}).get(outcome, 0)
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w * 0.7:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(day.isoformat())}: {n} {outcome}</title></rect>'
            )
        if len(days) <= 16 or i % 2 == 0:
            parts.append(
                f'<text x="{x + bar_w * 0.35:.1f}" y="{height - 10}" class="axis" '
                f'text-anchor="middle">{day.strftime("%d %b")}</text>'
            )
    lx = pad_left
    for outcome, colour in series.items():
        parts.append(f'<rect x="{lx}" y="4" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 14}" y="13" class="legend">{outcome}</text>')
        lx += 90
    parts.append("</svg>")
    return "".join(parts)
