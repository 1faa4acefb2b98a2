"""The dashboard page: one self-contained HTML document, inline CSS, an inline SVG chart, no external assets."""

from __future__ import annotations

from angles.health.health_file import iso_to_epoch

CHART_WIDTH = 720
CHART_HEIGHT = 220
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 40, 12, 10, 26
SERIES = (("cpu", "CPU", "#2563eb"), ("memory", "Memory", "#9333ea"), ("disk", "Disk", "#ea580c"))
REFRESH_SECONDS = 30

TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ status_text }} - Angles AI Universe health</title>
<link rel="icon" href="data:,">
<noscript><meta http-equiv="refresh" content="{{ refresh }}"></noscript>
<style nonce="{{ nonce }}">
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f5f6f8;color:#1f2937}
header{padding:16px 24px;background:#111827;color:#f9fafb;display:flex;gap:16px;align-items:center;flex-wrap:wrap}
header h1{font-size:18px;margin:0;font-weight:600}
main{padding:16px 24px;display:grid;gap:16px;grid-template-columns:repeat(auto-fit,minmax(420px,1fr))}
section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:12px 16px;overflow-x:auto}
section.wide{grid-column:1/-1}
h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #f0f1f3;vertical-align:top}
th{font-weight:600;color:#4b5563;font-size:12px;text-transform:uppercase}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;font-weight:600;font-size:12px;text-transform:uppercase}
.ok{background:#dcfce7;color:#166534}.warning{background:#fef3c7;color:#92400e}
.critical,.failed,.unknown{background:#fee2e2;color:#991b1b}.completed{background:#dcfce7;color:#166534}
.skipped,.none{background:#e5e7eb;color:#374151}
.big{font-size:16px;padding:4px 12px}
.muted{color:#6b7280}.banner{grid-column:1/-1;background:#fee2e2;border-color:#fecaca;color:#991b1b}
.legend span{margin-right:16px}.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px}
.s-cpu{background:#2563eb}.s-memory{background:#9333ea}.s-disk{background:#ea580c}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 12px;margin:0}dt{color:#6b7280}dd{margin:0}
</style>
</head>
<body>
<header>
<h1>Angles AI Universe health</h1>
<span id="overall" class="badge big {{ status_class }}">{{ status_text }}</span>
{% if doc %}<span class="muted">snapshot {{ doc.time | when }} on {{ doc.host }},
<span id="age" data-epoch="{{ snapshot_epoch }}">{{ age_text }}</span> old</span>{% endif %}
<span class="muted">refreshes every {{ refresh }} s</span>
</header>
<main>
{% if reason %}<section class="banner" id="reason"><strong>{{ reason }}</strong></section>{% endif %}
<section class="wide">
<h2>Checks</h2>
{% if doc %}
<table id="checks"><thead><tr><th>Check</th><th>Status</th><th>Value</th><th>Reason</th></tr></thead><tbody>
{% for name, check in checks %}
<tr data-check="{{ name }}"><td>{{ check.label or name }}</td>
<td><span class="badge {{ check.status }}">{{ check.status }}</span></td>
<td>{{ check.value }}</td><td>{{ check.reason }}</td></tr>
{% endfor %}
</tbody></table>
{% else %}<p class="muted">No snapshot to show.</p>{% endif %}
</section>
<section class="wide">
<h2>CPU, memory and disk, last 24 h</h2>
<div class="legend">{% for key, label, colour in series %}<span><span class="swatch s-{{ key }}"></span>{{ label }}
{% if latest[key] is not none %}{{ "%.1f" | format(latest[key]) }}%{% endif %}</span>{% endfor %}</div>
<svg id="chart" role="img" aria-label="CPU, memory and disk usage over the last 24 hours"
 viewBox="0 0 {{ chart.width }} {{ chart.height }}" width="100%" preserveAspectRatio="xMidYMid meet"
 xmlns="http://www.w3.org/2000/svg">
{% for y, text in chart.grid %}<line x1="{{ chart.left }}" x2="{{ chart.right }}" y1="{{ y }}" y2="{{ y }}"
 stroke="#e5e7eb" stroke-width="1"/><text x="{{ chart.left - 6 }}" y="{{ y + 4 }}" text-anchor="end" font-size="11"
 fill="#6b7280">{{ text }}</text>
{% endfor %}
{% for x, anchor, text in chart.xlabels %}<text x="{{ x }}" y="{{ chart.height - 8 }}" text-anchor="{{ anchor }}"
 font-size="11" fill="#6b7280">{{ text }}</text>{% endfor %}
{% for line in chart.lines %}
{% if line.points %}<polyline class="series" data-series="{{ line.key }}" fill="none" stroke="{{ line.colour }}"
 stroke-width="2" stroke-linejoin="round" points="{{ line.points }}"/>{% endif %}
{% for cx, cy in line.dots %}<circle cx="{{ cx }}" cy="{{ cy }}" r="3" fill="{{ line.colour }}"/>{% endfor %}
{% endfor %}
{% if not chart.count %}<text x="{{ chart.width / 2 }}" y="{{ chart.height / 2 }}" text-anchor="middle"
 fill="#6b7280">no history yet</text>{% endif %}
</svg>
<p class="muted">{{ chart.count }} samples</p>
</section>
<section class="wide">
<h2>Scheduler</h2>
<dl><dt>Status</dt><dd>{{ scheduler.status }}</dd>
{% if scheduler.pid %}<dt>Process</dt><dd>pid {{ scheduler.pid }} on {{ scheduler.host }}</dd>{% endif %}
{% if scheduler.last_tick %}<dt>Heartbeat</dt><dd>{{ scheduler.last_tick | when }}</dd>{% endif %}</dl>
<table id="jobs"><thead><tr><th>Job</th><th>Schedule</th><th>Last run</th><th>Result</th><th>Duration</th>
<th>Next run</th></tr></thead><tbody>
{% for name, job in jobs %}<tr><td>{{ name }}{% if job.running %} (running){% endif %}</td>
<td>{{ job.schedule or "" }}</td><td>{{ job.last_run | when or "never" }}</td>
<td><span class="badge {{ job.last_result or 'none' }}">{{ job.last_result or "none" }}</span></td>
<td>{% if job.last_duration_s is number %}{{ "%.1f" | format(job.last_duration_s) }} s{% endif %}</td>
<td>{{ job.next_run | when }}</td></tr>
{% else %}<tr><td colspan="6" class="muted">no scheduler state yet</td></tr>{% endfor %}
</tbody></table>
</section>
<section>
<h2>Backup and sync</h2>
<dl>
<dt>Last backup</dt><dd>{{ backup.time | when or "none yet" }}{% if backup.result %} ({{ backup.result }}){% endif %}
{%- if backup.commit %}, commit {{ backup.commit[:12] }}{% endif %}</dd>
<dt>Last success</dt><dd>{{ backup.last_success | when or "none yet" }}</dd>
<dt>Last verification</dt><dd>{{ verify.time | when or "none yet" }}{% if verify.result %} ({{ verify.result }}
{%- if verify.level %}, {{ verify.level }}{% endif %}){% endif %}</dd>
<dt>Last sync</dt><dd>{{ sync.last_time | when or "none in 24 h" }}
{%- if sync.last_status %} ({{ sync.last_status }}){% endif %}</dd>
<dt>Sync, 24 h</dt><dd>{% if sync.runs_24h %}{{ sync.runs_24h - sync.failed_24h }} of {{ sync.runs_24h }} succeeded
{% else %}no runs{% endif %}</dd>
</dl>
</section>
</main>
<script nonce="{{ nonce }}">
(function () {
  var age = document.getElementById("age");
  function tick() {
    if (!age) { return; }
    var seconds = Math.max(0, Math.round(Date.now() / 1000 - Number(age.getAttribute("data-epoch"))));
    age.textContent = seconds < 120 ? seconds + " s" : Math.round(seconds / 60) + " min";
    age.setAttribute("data-live", "1");
  }
  tick();
  setInterval(tick, 1000);
  setTimeout(function () { window.location.reload(); }, {{ refresh }} * 1000);
})();
</script>
</body>
</html>
"""


def chart(points: list[dict]) -> dict:
    """Polyline coordinates for each series, scaled to the time span of the history, 0-100 %."""
    left, right = PAD_LEFT, CHART_WIDTH - PAD_RIGHT
    top, bottom = PAD_TOP, CHART_HEIGHT - PAD_BOTTOM
    stamped = [(iso_to_epoch(p.get("time")), p) for p in points]
    stamped = [(t, p) for t, p in stamped if t is not None]
    grid = [(round(bottom - (bottom - top) * v / 100, 1), f"{v}%") for v in (0, 25, 50, 75, 100)]
    result = {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "left": left,
        "right": right,
        "grid": grid,
        "lines": [],
        "xlabels": [],
        "count": len(stamped),
    }
    if not stamped:
        return result
    first, last = stamped[0][0], stamped[-1][0]
    span = max(last - first, 60.0)

    def x_of(t: float) -> float:
        return round(left + (right - left) * (t - first) / span, 1)

    def y_of(v: float) -> float:
        return round(bottom - (bottom - top) * min(max(v, 0.0), 100.0) / 100, 1)

    for key, label, colour in SERIES:
        coords = [
            (x_of(t), y_of(float(p[key])))
            for t, p in stamped
            if isinstance(p.get(key), (int, float)) and not isinstance(p.get(key), bool)
        ]
        line = {"key": key, "label": label, "colour": colour, "points": "", "dots": []}
        if len(coords) == 1:
            line["dots"] = coords
        else:
            line["points"] = " ".join(f"{x},{y}" for x, y in coords)
        result["lines"].append(line)
    from datetime import UTC, datetime

    def hhmm(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%H:%M UTC")

    result["xlabels"] = [(left, "start", hhmm(first)), (right, "end", hhmm(first + span))]
    return result


def when(stamp) -> str:
    """A timestamp as people read it on the page: minutes, UTC; anything unreadable shown as given."""
    from datetime import UTC, datetime

    epoch = iso_to_epoch(stamp)
    if epoch is None:
        return "" if stamp is None else str(stamp)
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = max(0.0, seconds)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
