"""report.html: the report for people, in Chinese and English, one self-contained file.

Rendered from report.json (never from the run's live state), so the page shows exactly what the
machine-readable report says. Titles and labels come from spec/ (the catalogue, the code lists);
charts are inline SVG drawn here, so the page needs no network and no script library.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader

from spec import Spec, default

VERDICT_COLOURS = {"pass": "#2e7d32", "fail": "#c62828", "warn": "#ef6c00",
                   "not_applicable": "#9e9e9e", "skipped": "#6d4c41", "error": "#6a1b9a",
                   "untested": "#546e7a"}  # fmt: skip
OUTCOME_COLOURS = {"certified": "#2e7d32", "not_certified": "#c62828", "incomplete": "#ef6c00"}

_ENVIRONMENT = Environment(
    loader=PackageLoader("conformance.report", "templates"),
    autoescape=True,  # everything a node says reaches the page escaped
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(
    report: dict[str, Any], spec: Spec | None = None, series: dict[str, Any] | None = None
) -> str:
    """`series`: a joined load run's timeseries.json (requests/s and percentiles per second)."""
    spec = spec or default()
    catalogue = {entry["id"]: entry for entry in spec.requirements}
    return _ENVIRONMENT.get_template("report.html.j2").render(
        report=report,
        catalogue=catalogue,
        verdicts=_labels(spec, "verdict"),
        classes=_labels(spec, "conformance-class"),
        colours=VERDICT_COLOURS,
        outcome_colour=OUTCOME_COLOURS[report["summary"]["overall"]],
        class_chart=_class_chart(report),
        perf_charts=_perf_charts(series),
    )


def _labels(spec: Spec, codelist: str) -> dict[str, dict[str, str]]:
    return {e["const"]: {"en": e["title"], "zh": e.get("x-title-zh", e["title"])}
            for e in spec.codelist(codelist)}  # fmt: skip


def _class_chart(report: dict[str, Any]) -> str:
    """One horizontal bar per class, segments by requirement verdict: where did it go wrong."""
    rows = report["classes"]
    width, bar_height, label_width = 720, 22, 130
    height = len(rows) * (bar_height + 8) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'role="img" aria-label="requirement verdicts per class">']  # fmt: skip
    most = max((sum(r["counts"].values()) for r in rows), default=1) or 1
    for index, row in enumerate(rows):
        y = 5 + index * (bar_height + 8)
        parts.append(f'<text x="0" y="{y + 15}" font-size="12">{row["class"]}</text>')
        x = float(label_width)
        for verdict, colour in VERDICT_COLOURS.items():
            count = row["counts"].get(verdict, 0)
            if not count:
                continue
            span = (width - label_width - 10) * count / most
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{span:.1f}" height="{bar_height}" '
                         f'fill="{colour}"><title>{verdict}: {count}</title></rect>')  # fmt: skip
            x += span
    parts.append("</svg>")
    return "".join(parts)


def _perf_charts(document: dict[str, Any] | None) -> list[dict[str, str]]:
    """Requests/s and latency percentiles over time, one pair of charts per load run."""
    if not document:
        return []
    charts = []
    for run in document.get("runs", []):
        series = run.get("total") or []
        if not series:
            continue
        charts.append({
            "scenario": run["scenario"],
            "rps": _line_chart(series, [("rps", "#1565c0")], "requests/s"),
            "latency": _line_chart(series, [("p50Ms", "#2e7d32"), ("p95Ms", "#ef6c00"),
                                            ("p99Ms", "#c62828")], "ms"),
        })  # fmt: skip
    return charts


def _line_chart(series: list[dict[str, Any]], lines: list[tuple[str, str]], unit: str) -> str:
    width, height, pad = 720, 180, 36
    times = [float(point.get("t", i)) for i, point in enumerate(series)]
    top = max((float(p.get(k) or 0) for p in series for k, _ in lines), default=1.0) or 1.0
    span = (max(times) - min(times)) or 1.0
    axis = height - pad
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
        f'<text x="0" y="12" font-size="11">{top:.0f} {unit}</text>',
        f'<line x1="{pad}" y1="{axis}" x2="{width}" y2="{axis}" stroke="#999"/>',
    ]
    for key, colour in lines:
        points = " ".join(
            f"{pad + (t - min(times)) / span * (width - pad - 5):.1f},"
            f"{height - pad - float(p.get(key) or 0) / top * (height - pad - 15):.1f}"
            for t, p in zip(times, series, strict=True)
        )
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}">'
                     f"<title>{key}</title></polyline>")  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)
