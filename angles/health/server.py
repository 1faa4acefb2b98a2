"""The read-only dashboard: health, and the vault's decisions; a Flask app made by create_app(), served by waitress."""

from __future__ import annotations

import json
import logging
import secrets
import signal
import threading
import time
from pathlib import Path

from flask import Flask, Response, g, render_template_string, request
from werkzeug.exceptions import HTTPException

from angles import alerts
from angles.errors import AnglesError
from angles.health import health_file as snapshot
from angles.health import page, prometheus, vault_pages
from angles.health.scheduler import jobs_summary
from angles.jobs.history import load_state
from angles.logs import Redactor

logger = logging.getLogger(__name__)

READ_METHODS = ("GET", "HEAD")
JSON_TYPE = "application/json"
LOOPBACK = ("127.0.0.1", "::1", "localhost")
BASE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-store",
}
# Connections the dashboard keeps open at once, and file descriptors kept back for logs, snapshots, the database.
MAX_CONNECTIONS = 1000
FD_RESERVE = 64
# An idle connection is closed after this many seconds; waitress looks for idle ones this often.
CHANNEL_TIMEOUT_S = 30
CLEANUP_INTERVAL_S = 10
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


class SnapshotCache:
    """Re-reads the snapshot only when the file changed, so /health stays cheap under load."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._key = None
        self._value: tuple[dict | None, str | None] = (None, None)

    def get(self) -> tuple[dict | None, str | None]:
        try:
            stat = self.path.stat()
            key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except OSError:
            key = None
        with self._lock:
            if key is not None and key == self._key:
                return self._value
        value = snapshot.load(self.path)
        with self._lock:
            self._key, self._value = key, value
        return value


def create_app(settings) -> Flask:
    """The dashboard app for one configuration; every response is redacted and carries security headers."""
    app = Flask(__name__)
    app.jinja_env.filters["when"] = page.when
    app.jinja_env.filters["marked"] = vault_pages.marked
    app.jinja_env.filters["shown"] = vault_pages.shown
    app.config.update(JSON_SORT_KEYS=False, MAX_CONTENT_LENGTH=1024)
    redact = Redactor(settings.secrets)
    cache = SnapshotCache(snapshot.snapshot_path(settings))
    stale_after = 3 * settings.health_interval_minutes * 60

    def current() -> tuple[dict | None, str | None, float | None, bool]:
        doc, reason = cache.get()
        if doc is None:
            return None, reason, None, False
        age = snapshot.age_seconds(doc)
        stale = age is None or age > stale_after
        if stale:
            shown = f"{age:.0f} s" if age is not None else "of unknown age"
            reason = (
                f"health snapshot is stale ({shown} old, limit {stale_after:.0f} s): "
                "is the scheduler running? run python backend_monitor.py"
            )
        return doc, reason, age, stale

    def json_response(body: dict, status: int = 200, headers: dict | None = None) -> Response:
        text = json.dumps(body, ensure_ascii=False, default=str)
        return Response(text + "\n", status=status, mimetype=JSON_TYPE, headers=headers)

    def jobs() -> dict:
        state, _ = load_state(settings)
        return jobs_summary(state)

    @app.before_request
    def read_only():
        g.nonce = secrets.token_urlsafe(16)
        if request.method not in READ_METHODS:
            return json_response(
                {"error": "method not allowed", "allowed": list(READ_METHODS)}, 405, {"Allow": ", ".join(READ_METHODS)}
            )
        return None

    @app.get("/healthz")
    def healthz():
        return json_response({"status": "alive"})

    app.add_url_rule("/ping", "ping", healthz)

    @app.get("/health")
    def health():
        doc, reason, age, stale = current()
        if doc is None:
            return json_response({"status": "unknown", "reason": reason}, 503)
        body = {**doc, "age_seconds": round(age, 1) if age is not None else None, "stale": stale}
        code = 503 if stale or doc["status"] == "critical" else 200
        if reason:
            body["reason"] = reason
        elif code == 503:
            body["reason"] = "; ".join(
                f"{name}: {c.get('reason')}"
                for name, c in doc["checks"].items()
                if isinstance(c, dict) and c.get("status") == "critical"
            )
        return json_response(body, code)

    @app.get("/metrics")
    def metrics():
        doc, _, age, stale = current()
        return Response(prometheus.render(doc, age, stale, jobs()), mimetype=None, content_type=prometheus.CONTENT_TYPE)

    @app.get("/")
    def dashboard():
        doc, reason, age, stale = current()
        # Same status as /health, so a probe of the page tells the truth too; browsers show the page either way.
        code = 200 if doc and not stale and doc["status"] != "critical" else 503
        return Response(_render_page(settings, doc, reason, age, stale, jobs()), status=code, mimetype="text/html")

    def vault_page(page_name: str, title: str, view: dict, code: int) -> Response:
        html = render_template_string(vault_pages.TEMPLATE, page=page_name, title=title, nonce=g.nonce, **view)
        return Response(html, status=code, mimetype="text/html")

    @app.get("/decisions")
    def decisions():
        view, code = vault_pages.search_view(settings, request.args)
        return vault_page("search", view["form"]["q"] or "search", view, code)

    @app.get("/decisions/<ident>")
    def decision(ident: str):
        view, code = vault_pages.decision_view(settings, ident)
        title = view["described"]["decision"]["id"][:8] if view["described"] else "not found"
        return vault_page("decision", title, view, code)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code == 404:
            routes = ["/", "/health", "/healthz", "/metrics", "/decisions", "/decisions/<id>"]
            return json_response({"error": "not found", "routes": routes}, 404)
        return json_response({"error": (exc.name or "error").lower()}, exc.code or 400)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        # A dashboard bug must not look like a healthy or a crashed system: say so, unavailable, and log it.
        logger.error("health dashboard error on %s: %s", request.path[:200], exc, exc_info=True)
        return json_response({"status": "unknown", "reason": "dashboard error; details in the server log"}, 503)

    @app.after_request
    def harden(response: Response) -> Response:
        for name, value in BASE_HEADERS.items():
            response.headers.setdefault(name, value)
        if response.mimetype == "text/html":
            nonce = getattr(g, "nonce", "")
            # Only the decisions search form submits anywhere (a GET to itself).
            forms = "'self'" if request.path.startswith("/decisions") else "'none'"
            response.headers["Content-Security-Policy"] = (
                f"default-src 'self'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'self' data:; "
                f"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action {forms}; object-src 'none'"
            )
        else:
            response.headers["Content-Security-Policy"] = API_CSP
        if not response.direct_passthrough and response.status_code != 204:
            body = response.get_data(as_text=True)
            cleaned = redact(body)
            if cleaned != body:
                response.set_data(cleaned)
        return response

    return app


def _render_page(settings, doc, reason, age, stale, jobs) -> str:
    details = (doc or {}).get("details") or {}
    scheduler = details.get("scheduler") if isinstance(details.get("scheduler"), dict) else {}
    state, _ = load_state(settings)
    # Judged by the heartbeat, not by probing the lock: a page refresh must never race a starting daemon.
    source = state or scheduler
    beat = snapshot.iso_to_epoch(source.get("last_tick"))
    fresh = beat is not None and time.time() - beat < settings.scheduler_stale_seconds
    scheduler_view = {
        "status": "running" if fresh else "not running",
        "pid": source.get("pid"),
        "host": source.get("host"),
        "last_tick": source.get("last_tick"),
    }
    history = snapshot.read_history(settings)
    latest = {key: None for key, _, _ in page.SERIES}
    if doc:
        metrics = doc.get("metrics") or {}
        for key in latest:
            value = metrics.get(f"{key}_percent")
            latest[key] = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if doc is None:
        status_text, status_class = "unknown", "unknown"
    elif stale:
        status_text, status_class = f"stale ({doc['status']})", "unknown"
    else:
        status_text, status_class = doc["status"], doc["status"]
    checks = [(name, c) for name, c in (doc or {}).get("checks", {}).items() if isinstance(c, dict)]

    def section(name):
        value = details.get(name)
        return value if isinstance(value, dict) else {}

    return render_template_string(
        page.TEMPLATE,
        doc=doc,
        reason=reason,
        nonce=g.nonce,
        refresh=page.REFRESH_SECONDS,
        status_text=status_text,
        status_class=status_class,
        snapshot_epoch=snapshot.iso_to_epoch((doc or {}).get("time")) or 0,
        age_text=page.age_text(age),
        checks=checks,
        chart=page.chart(history),
        series=page.SERIES,
        latest=latest,
        scheduler=scheduler_view,
        jobs=sorted(jobs.items()) or sorted((scheduler.get("jobs") or {}).items()),
        backup=section("backup"),
        verify=section("backup_verify"),
        sync=section("sync"),
    )


def connection_limit() -> int:
    """How many connections waitress keeps open at once (its default, 100, lets idle clients lock /health out).

    Each connection may hold up to three file descriptors: the soft limit is raised toward the hard one
    where the system allows, and the connection limit kept within it.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FD_RESERVE + 3 * MAX_CONNECTIONS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, (soft - FD_RESERVE) // 3))


def serve(settings, host: str | None = None, port: int | None = None, threads: int = 8) -> None:
    """Serve the dashboard with waitress until interrupted."""
    from waitress.server import create_server

    source = "--host" if host else "HEALTH_HOST"
    host = host or settings.health_host
    port = settings.health_port if port is None else port
    app = create_app(settings)
    try:
        server = create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="angles-health",
            clear_untrusted_proxy_headers=True,
            connection_limit=connection_limit(),
            channel_timeout=CHANNEL_TIMEOUT_S,
            cleanup_interval=CLEANUP_INTERVAL_S,
        )
    except OSError as exc:
        raise AnglesError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except ValueError:
        # waitress resolves the address first and says only "Invalid host/port specified".
        raise AnglesError(f"{source} {host!r} is not an address this machine can listen on") from None

    def stop(signum, frame):
        raise KeyboardInterrupt

    # SIGTERM (systemd, pkill) gets the same clean stop as Ctrl+C.
    signal.signal(signal.SIGTERM, stop)
    shown = f"[{host}]" if ":" in host else host
    if host not in LOOPBACK:
        logger.warning("dashboard bound to %s: it is reachable from other hosts (read-only)", host)
    logger.info("health dashboard listening on http://%s:%s/", shown, server.effective_port)
    print(f"health dashboard on http://{shown}:{server.effective_port}/ (Ctrl+C to stop)", flush=True)
    alerts.watch_heartbeat(settings)
    try:
        server.run()
    except KeyboardInterrupt:
        logger.info("health dashboard stopped")
    finally:
        server.close()
