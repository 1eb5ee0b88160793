"""The governance report as one self-contained HTML file: inline SVG charts, no script, no
network (a Content-Security-Policy forbids fetching anything), readable offline.

Pure: it renders figures the audit store computed; every text from outside is escaped.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from html import escape
from typing import Any

COLORS = ("#c0392b", "#2471a3", "#b7950b", "#1e8449", "#7d3c98", "#566573")
MODE_LEVEL = {"shadow": 0, "approve": 1, "auto": 2}
W, H, PAD = 640, 220, 44


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _dur(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.0f}s"
    return f"{value / 60:.1f}m" if value < 7200 else f"{value / 3600:.1f}h"


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def line_chart(
    chart_id: str,
    title: str,
    xs: list[float],
    series: dict[str, list[float | None]],
    y_max: float | None = None,
    y_format: Any = _pct,
) -> str:
    """Lines over time (x: epoch seconds); None values leave a gap."""
    values = [v for vs in series.values() for v in vs if v is not None]
    top = y_max if y_max is not None else (max(values) if values else 1.0) or 1.0
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    span = (x1 - x0) or 1.0

    def px(x: float) -> float:
        return PAD + (x - x0) / span * (W - 2 * PAD)

    def py(y: float) -> float:
        return H - PAD + 10 - y / top * (H - 2 * PAD)

    parts = [_frame(chart_id, title, top, y_format, x0, x1)]
    for n, (name, vs) in enumerate(series.items()):
        color = COLORS[n % len(COLORS)]
        points = [(px(x), py(v)) for x, v in zip(xs, vs, strict=True) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(
                f'<polyline class="series" fill="none" stroke="{color}" stroke-width="2" points="{path}"/>'
            )
        parts += [
            f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>' for x, y in points
        ]
        parts.append(
            f'<text x="{PAD + 4 + 150 * n}" y="{PAD - 14}" fill="{color}" font-size="11">{_e(name)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _frame(chart_id: str, title: str, top: float, y_format: Any, x0: float, x1: float) -> str:
    axis_y = H - PAD + 10
    lines = [
        f'<svg class="chart" data-chart="{_e(chart_id)}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{_e(title)}">',
        f"<title>{_e(title)}</title>",
        f'<text x="{PAD}" y="16" font-size="13" font-weight="bold">{_e(title)}</text>',
        f'<line x1="{PAD}" y1="{axis_y}" x2="{W - PAD}" y2="{axis_y}" stroke="#888"/>',
        f'<line x1="{PAD}" y1="{PAD - 6}" x2="{PAD}" y2="{axis_y}" stroke="#888"/>',
        f'<text x="{PAD - 4}" y="{PAD - 2}" font-size="10" text-anchor="end">{_e(y_format(top))}</text>',
        f'<text x="{PAD - 4}" y="{axis_y}" font-size="10" text-anchor="end">{_e(y_format(0.0))}</text>',
    ]
    for x, anchor in ((x0, "start"), (x1, "end")):
        day = datetime.fromtimestamp(x, UTC).strftime("%Y-%m-%d %H:%M")
        pos = PAD if anchor == "start" else W - PAD
        lines.append(f'<text x="{pos}" y="{axis_y + 14}" font-size="10" text-anchor="{anchor}">{day}</text>')
    return "\n".join(lines)


def bar_chart(chart_id: str, title: str, bars: list[tuple[str, float | None, float | None]]) -> str:
    """Pairs of horizontal bars: the pilot's figure against the baseline's (seconds)."""
    height = PAD + 34 * max(len(bars), 1) + 10
    values = [v for _, a, b in bars for v in (a, b) if v is not None]
    top = max(values) if values else 1.0
    parts = [
        f'<svg class="chart" data-chart="{_e(chart_id)}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img" aria-label="{_e(title)}">',
        f"<title>{_e(title)}</title>",
        f'<text x="8" y="16" font-size="13" font-weight="bold">{_e(title)}</text>',
        f'<text x="220" y="30" font-size="10" fill="{COLORS[1]}">pilot</text>',
        '<text x="260" y="30" font-size="10" fill="#999">baseline</text>',
    ]
    for n, (label, pilot, base) in enumerate(bars):
        y = PAD + 34 * n
        parts.append(f'<text x="8" y="{y + 12}" font-size="11">{_e(label)}</text>')
        for k, (value, color) in enumerate(((pilot, COLORS[1]), (base, "#999"))):
            width = 0.0 if value is None else value / top * (W - 300)
            parts.append(
                f'<rect class="bar" x="220" y="{y + 14 * k}" width="{width:.1f}" height="12" fill="{color}"/>'
            )
            parts.append(
                f'<text x="{224 + width:.1f}" y="{y + 14 * k + 10}" font-size="10">{_dur(value)}</text>'
            )
    parts.append("</svg>")
    return "\n".join(parts)


def mode_chart(chart_id: str, title: str, steps: list[tuple[float, str]], end: float) -> str:
    """The mode over time as a step line (shadow, approve, auto)."""
    x0 = steps[0][0] if steps else end
    span = (end - x0) or 1.0

    def px(x: float) -> float:
        return PAD + 40 + (x - x0) / span * (W - 2 * PAD - 40)

    def py(mode: str) -> float:
        return H - PAD - MODE_LEVEL.get(mode, 0) * (H - 2 * PAD) / 2

    parts = [
        f'<svg class="chart" data-chart="{_e(chart_id)}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{_e(title)}">',
        f"<title>{_e(title)}</title>",
        f'<text x="{PAD}" y="16" font-size="13" font-weight="bold">{_e(title)}</text>',
    ]
    parts += [
        f'<text x="{PAD + 34}" y="{py(m) + 4:.1f}" font-size="10" text-anchor="end">{m}</text>'
        for m in MODE_LEVEL
    ]
    points: list[str] = []
    for n, (x, mode) in enumerate(steps):
        nxt = steps[n + 1][0] if n + 1 < len(steps) else end
        points += [f"{px(x):.1f},{py(mode):.1f}", f"{px(nxt):.1f},{py(mode):.1f}"]
    if points:
        parts.append(
            f'<polyline class="series" fill="none" stroke="{COLORS[3]}" stroke-width="3" '
            f'points="{" ".join(points)}"/>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _pair_charts(n: int, key: tuple[str, str], rows: list[dict[str, Any]]) -> str:
    xs = [datetime.fromisoformat(r["bucket"]).timestamp() for r in rows]
    rates = {
        "false recommendation": [_ratio(r["false_recommendations"], r["finals"]) for r in rows],
        "override": [_ratio(r["human_rejections"], r["human_decisions"]) for r in rows],
        "rollback": [_ratio(r["rollbacks"], r["finals"]) for r in rows],
    }
    volume: dict[str, list[float | None]] = {"proposals": [float(r["proposals"]) for r in rows]}
    mttr = {"MTTR (mean)": [r["mttr_sum"] / r["completed"] if r["completed"] else None for r in rows]}
    label = f"{key[0]} {key[1]}"
    return "\n".join(
        [
            f"<h3>{_e(label)}</h3>",
            line_chart(f"rates-{n}", f"{label}: rates per period", xs, rates, 1.0),
            line_chart(
                f"volume-{n}", f"{label}: proposals per period", xs, volume, None, lambda v: f"{v:.0f}"
            ),
            line_chart(f"mttr-{n}", f"{label}: MTTR per period", xs, mttr, None, _dur),
        ]
    )


def render_report(
    card: dict[str, Any], series: list[dict[str, Any]], history: list[dict[str, Any]], bucket_seconds: float
) -> str:
    """The whole report: scorecard, figures over time, mode history, baseline comparison."""
    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in series:
        by_pair[(row["recommender"] or "?", row["model_version"] or "?")].append(row)
    generated = datetime.fromisoformat(card["generated_at"])
    body = [
        "<h1>Interlock governance report</h1>",
        f"<p>Generated {_e(card['generated_at'])}; policy {_e(card['policy'])}; "
        f"{'proposals since ' + _e(card['since']) if card['since'] else 'all proposals'}; "
        f"charts per {bucket_seconds / 3600:g} h. Figures come from the audit store.</p>",
        "<h2>Scorecard</h2>",
        _scorecard_table(card["pairs"]),
        "<h2>Figures over time</h2>",
    ]
    body += [_pair_charts(n, key, rows) for n, (key, rows) in enumerate(sorted(by_pair.items()))] or [
        "<p>No proposals.</p>"
    ]
    body += ["<h2>Mode history</h2>", _history(history, generated.timestamp())]
    bars = [
        (
            f"{c['recommender']} {c['model_version']} {c['action']}",
            c["mttr_mean_seconds"],
            (c["baseline"] or {}).get("mttr_mean_seconds"),
        )
        for c in card["pairs"]
    ]
    responses = [
        (
            f"{c['recommender']} {c['model_version']} {c['action']}",
            c["first_response_mean_seconds"],
            (c["baseline"] or {}).get("first_response_mean_seconds"),
        )
        for c in card["pairs"]
    ]
    body += ["<h2>Baseline comparison</h2>"]
    if card["baseline"]:
        b = card["baseline"]
        body.append(
            f"<p>Baseline: {b['incidents']} incidents before the pilot; MTTR {_dur(b['mttr_mean_seconds'])}, "
            f"first response {_dur(b['first_response_mean_seconds'])} (means). Each pair is compared with "
            "the baseline incidents of the services it worked on.</p>"
        )
        body += [
            bar_chart("baseline-mttr", "MTTR: pilot vs baseline", bars),
            bar_chart("baseline-response", "Time to first response: pilot vs baseline", responses),
        ]
    else:
        body.append("<p>No baseline imported (<code>interlock baseline import FILE</code>).</p>")
    return PAGE.format(body="\n".join(body))


def _scorecard_table(pairs: list[dict[str, Any]]) -> str:
    head = [
        "recommender",
        "model",
        "action",
        "proposals",
        "refused",
        "approved",
        "rejected",
        "override",
        "rolled back",
        "unresolved",
        "false rec.",
        "MTTR",
        "1st response",
        "escalated",
        "exceptions",
        "shadow: clean",
        "shadow: person acted",
        "mode",
        "still needs",
    ]
    rows = []
    for c in pairs:
        s = c["standings"][0] if c["standings"] else None
        cells = [
            c["recommender"],
            c["model_version"],
            c["action"],
            c["proposals"],
            _pct(c["refused_by_checks_share"]),
            c["approved"],
            c["rejected"],
            _pct(c["override_rate"]),
            c["rolled_back"],
            c["completed_unresolved"],
            _pct(c["false_recommendation_rate"]),
            _dur(c["mttr_mean_seconds"]),
            _dur(c["first_response_mean_seconds"]),
            c["escalated"],
            c["audit_exceptions"],
            _pct(c["shadow_confirmed_share"]),
            _pct(c["shadow_human_acted_share"]),
            s["mode"] if s else "policy",
            "; ".join(s["needs"]) if s else "",
        ]
        rows.append("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in cells) + "</tr>")
    header = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"
    return f'<table class="scorecard">{header}{"".join(rows)}</table>'


def _history(history: list[dict[str, Any]], end: float) -> str:
    if not history:
        return "<p>No mode changes yet: every model version stands at its start mode.</p>"
    rows: list[str] = []
    steps: dict[tuple[str, str, str], list[tuple[float, str]]] = defaultdict(list)
    for h in history:
        at = h["at"] if isinstance(h["at"], datetime) else datetime.fromisoformat(str(h["at"]))
        data = h["data"]
        key = (h["recommender"], h["model_version"], data.get("rule", ""))
        if not steps[key]:
            steps[key].append((at.timestamp(), data.get("from", "shadow")))
        steps[key].append((at.timestamp(), data["to"]))
        cells = [
            at.isoformat(),
            h["recommender"],
            h["model_version"],
            data.get("rule"),
            data.get("from"),
            data["to"],
            data.get("direction"),
            "; ".join(data.get("reasons", [])),
            h["proposal_id"],
        ]
        rows.append("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in cells) + "</tr>")
    head = [
        "at",
        "recommender",
        "model",
        "rule",
        "from",
        "to",
        "change",
        "figures that justified it",
        "after",
    ]
    charts = [
        mode_chart(f"modes-{n}", f"{k[0]} {k[1]} ({k[2]}): mode", s, end)
        for n, (k, s) in enumerate(sorted(steps.items()))
    ]
    header = "<tr>" + "".join(f"<th>{_e(x)}</th>" for x in head) + "</tr>"
    return "\n".join([*charts, f'<table class="history">{header}{"".join(rows)}</table>'])


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>Interlock governance report</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 12px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: left; }}
th {{ background: #f2f2f2; }}
table.scorecard, table.history {{ display: block; overflow-x: auto; max-width: 100%; }}
svg.chart {{ display: block; margin: 0.5em 0 1.5em; background: #fcfcfc; border: 1px solid #eee; }}
</style></head><body>
{body}
</body></html>
"""
