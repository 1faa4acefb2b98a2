"""The dashboard's read-only view of the vault: /decisions (search) and /decisions/<id> (one decision in full).

Both pages show what angles.engines.vault computes; every stored value reaches the page through Jinja's
autoescaping, and search snippets are escaped before their match marks become <mark> elements.
"""

from __future__ import annotations

from markupsafe import Markup, escape

from angles.engines import search_query, vault
from angles.engines.decision_model import PRIORITIES, TYPES
from angles.errors import AnglesError, DatabaseError, NotFoundError
from angles.storage import open_storage

PAGE_SIZE = 20


def marked(snippet: str) -> Markup:
    """A search snippet as HTML: its text escaped, its matched words in <mark>."""
    text = str(escape(snippet or ""))
    return Markup(text.replace(search_query.MARK_START, "<mark>").replace(search_query.MARK_END, "</mark>"))


def shown(value) -> str:
    """A field's value as a person reads it: lists joined, nothing as a dash."""
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def _status(exc: AnglesError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, DatabaseError):
        return 503
    return 400


def search_view(settings, args) -> tuple[dict, int]:
    """What /decisions shows for the query string `args`, and its HTTP status."""
    query = (args.get("q") or "").strip()
    form = {
        "q": query,
        "type": args.get("type") or "",
        "priority": args.get("priority") or "",
        "tag": args.get("tag") or "",
        "all": args.get("all") == "1",
    }
    view = {"form": form, "types": TYPES, "priorities": PRIORITIES, "results": None, "error": None}
    if not query:
        return view, 200
    try:
        with open_storage(settings, create=False) as storage:
            view["results"] = vault.search(
                storage,
                query,
                type=form["type"] or None,
                priority=form["priority"] or None,
                tag=form["tag"] or None,
                include_inactive=form["all"],
                limit=PAGE_SIZE,
                marks=(search_query.MARK_START, search_query.MARK_END),
            )
    except AnglesError as exc:
        view["error"] = str(exc)
        return view, _status(exc)
    return view, 200


def decision_view(settings, ident: str) -> tuple[dict, int]:
    """What /decisions/<id> shows, and its HTTP status."""
    try:
        with open_storage(settings, create=False) as storage:
            described = vault.describe(storage, ident)
            texts = {i: (storage.get_decision(i) or {}).get("decision") for i in described["chain"]}
    except AnglesError as exc:
        return {"error": str(exc), "described": None}, _status(exc)
    return {"error": None, "described": described, "chain_texts": texts}, 200


TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} - Angles AI Universe decisions</title>
<link rel="icon" href="data:,">
<style nonce="{{ nonce }}">
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f5f6f8;color:#1f2937}
header{padding:16px 24px;background:#111827;color:#f9fafb;display:flex;gap:16px;align-items:center;flex-wrap:wrap}
header h1{font-size:18px;margin:0;font-weight:600}header a{color:#93c5fd}
main{padding:16px 24px;display:grid;gap:16px;max-width:1100px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:12px 16px;overflow-x:auto}
h2{font-size:15px;margin:0 0 8px}
form{display:flex;gap:8px;flex-wrap:wrap;align-items:center}
input[type=search]{flex:1 1 320px;padding:6px 8px;font:inherit}select,input[type=text]{padding:5px;font:inherit}
ol.results{list-style:none;margin:0;padding:0}ol.results li{padding:8px 0;border-bottom:1px solid #f0f1f3}
.snippet{color:#374151;margin-top:2px}mark{background:#fde68a;color:inherit;padding:0 1px}
.badge{display:inline-block;padding:1px 7px;border-radius:10px;font-weight:600;font-size:11px;text-transform:uppercase;
background:#e5e7eb;color:#374151;margin-right:4px}
.active{background:#dcfce7;color:#166534}.inactive,.superseded{background:#fee2e2;color:#991b1b}
.P0{background:#fecaca;color:#7f1d1d}.P1{background:#fef3c7;color:#92400e}
.muted{color:#6b7280}.error{background:#fee2e2;border-color:#fecaca;color:#991b1b}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #f0f1f3;
vertical-align:top}th{font-weight:600;color:#4b5563;font-size:12px;text-transform:uppercase}
.text{white-space:pre-wrap;font-size:16px}code{font-size:12px}
</style>
</head>
<body>
{% macro badges(d) %}<span class="badge">{{ d.type }}</span>
{% if d.priority %}<span class="badge {{ d.priority }}">{{ d.priority }}</span>{% endif %}
{% if d.superseded_by %}<span class="badge superseded">superseded</span>
{% elif d.active %}<span class="badge active">active</span>
{% else %}<span class="badge inactive">inactive</span>{% endif %}{% endmacro %}
<header><h1>Decisions</h1><a href="/decisions">search</a><a href="/">health</a></header>
<main>
{% if error %}<section class="error" id="error"><strong>{{ error }}</strong></section>{% endif %}
{% if page == "search" %}
<section>
<form method="get" action="/decisions" role="search">
<input type="search" name="q" value="{{ form.q }}" placeholder='words, "a phrase", -exclude, OR' aria-label="search"
 autofocus>
<select name="type" aria-label="type"><option value="">any type</option>
{% for t in types %}<option value="{{ t }}"{% if form.type == t %} selected{% endif %}>{{ t }}</option>{% endfor %}
</select>
<select name="priority" aria-label="priority"><option value="">any priority</option>
{% for p in priorities %}<option{% if form.priority == p %} selected{% endif %}>{{ p }}</option>{% endfor %}
</select>
<input type="text" name="tag" value="{{ form.tag }}" placeholder="tag" size="10" aria-label="tag">
<label><input type="checkbox" name="all" value="1"{% if form.all %} checked{% endif %}>
 superseded and inactive too</label>
<button type="submit">Search</button>
</form>
</section>
{% if results is not none %}
<section>
<h2 id="count">{{ results | length }} result{{ "" if results | length == 1 else "s" }}</h2>
<ol class="results" id="results">
{% for hit in results %}
<li data-id="{{ hit.id }}">
<a href="/decisions/{{ hit.id }}"><code>{{ hit.id[:8] }}</code></a>
{{ badges(hit) }}
<span class="muted">{{ hit.date }}</span>
<div class="snippet">{{ hit.snippet | marked }}</div>
</li>
{% endfor %}
</ol>
</section>
{% endif %}
{% elif described %}
{% set d = described.decision %}
<section id="decision">
<h2><code>{{ d.id }}</code></h2>
<p class="text" id="text">{{ d.decision }}</p>
<p>
{{ badges(d) }}
<span class="muted">decided {{ d.date }}, recorded {{ d.created_at }}, updated {{ d.updated_at }}</span>
</p>
<table>
<tr><th>tags</th><td>{{ d.tags | join(", ") or "-" }}</td></tr>
<tr><th>comment</th><td>{{ d.comment or "-" }}</td></tr>
{% if d.ai_analysis and d.ai_analysis.summary %}
<tr><th>AI summary</th><td>{{ d.ai_analysis.summary }}</td></tr>{% endif %}
</table>
</section>
{% if described.chain | length > 1 %}
<section id="chain">
<h2>Supersede chain</h2>
<ol>
{% for ident in described.chain %}
<li>{% if ident == d.id %}<strong>this decision</strong>
{% else %}<a href="/decisions/{{ ident }}"><code>{{ ident[:8] }}</code></a>{% endif %}
{{ chain_texts[ident] }}
{% if described.reasons[ident] %}
<span class="muted">superseded because: {{ described.reasons[ident] }}</span>{% endif %}</li>
{% endfor %}
</ol>
</section>
{% endif %}
<section id="links">
<h2>Links</h2>
{% if described.links %}
<table><thead><tr><th>direction</th><th>kind</th><th>decision</th></tr></thead><tbody>
{% for link in described.links %}
<tr><td>{{ "this →" if link.direction == "out" else "→ this" }}</td><td>{{ link.kind }}</td>
<td><a href="/decisions/{{ link.other_id }}"><code>{{ link.other_id[:8] }}</code></a> {{ link.other_text }}</td></tr>
{% endfor %}
</tbody></table>
{% else %}<p class="muted">none</p>{% endif %}
</section>
<section id="history">
<h2>History</h2>
{% if described.history %}
<table><thead><tr><th>version</th><th>changed</th><th>by</th><th>what changed</th></tr></thead><tbody>
{% for v in described.history %}
<tr><td>{{ v.version }}</td><td>{{ v.changed_at }}</td>
<td>{{ v.source }}{% if v.reason %} ({{ v.reason }}){% endif %}</td>
<td>{% for field, change in v.changed.items() %}
<div><strong>{{ field }}</strong>: {{ change["from"] | shown }} → {{ change["to"] | shown }}</div>
{% endfor %}</td></tr>
{% endfor %}
</tbody></table>
{% else %}<p class="muted">never changed since it was recorded</p>{% endif %}
</section>
{% endif %}
</main>
</body>
</html>
"""
