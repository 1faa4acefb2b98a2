"""A local alert receiver: the healthchecks.io ping protocol and Apprise json:// webhooks, with fault modes.

Pings (GET, HEAD or POST), as hc-ping.com and self-hosted Healthchecks (under /ping) answer them:
  /<uuid>[/start|/fail|/log|/<exit status>]
  /<ping-key>/<slug>[/start|/fail|/log|/<exit status>]   ?create=1 creates a missing slug check (201)
Webhooks: POST /hook/<anything> with a JSON body (Apprise's json:// sends version, title, message, type).

Modes: "ok"; "500" answers every request with HTTP 500; "hang" holds every request for 30 s (or until
stop()) before answering; stop() makes the port refuse connections ("down").
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SLUG = re.compile(r"^[a-z0-9_-]+$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HANG_SECONDS = 30.0
MAX_BODY = 100_000  # what Healthchecks.io keeps of a ping body


@dataclass
class Ping:
    check: str  # "<ping-key>/<slug>" or the UUID
    signal: str  # success, start, fail, log or an exit status
    method: str
    query: dict
    body: str


@dataclass
class Webhook:
    path: str
    payload: dict


@dataclass
class Received:
    pings: list[Ping] = field(default_factory=list)
    webhooks: list[Webhook] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)  # every request line, header and body as received


class AlertReceiver:
    def __init__(self, ping_key: str = "pk_" + "Zq8Xv2Lm5Nc7Rt1Wb4Yh6J", mode: str = "ok"):
        self.ping_key = ping_key
        self.mode = mode
        self.received = Received()
        self.checks: dict[str, str] = {}  # check -> status (new, up, down, started)
        self.known_uuids: set[str] = set()
        self._release = threading.Event()
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ping_base(self) -> str:
        """A HEALTHCHECKS_URL: the ping-key base."""
        return f"{self.base}/{self.ping_key}"

    def webhook_url(self, name: str = "alerts") -> str:
        """An ALERT_URLS entry for Apprise's generic JSON webhook."""
        return f"json://127.0.0.1:{self.port}/hook/{name}"

    def add_uuid_check(self) -> str:
        check = str(uuid.uuid4())
        self.known_uuids.add(check)
        self.checks[check] = "new"
        return f"{self.base}/{check}"

    def start(self) -> AlertReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server's API
                receiver._handle(self)

            do_POST = do_GET  # noqa: N815
            do_HEAD = do_GET  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True, name="alert-receiver").start()
        return self

    def stop(self) -> None:
        """Release hung requests and close the port: later connections are refused."""
        self._release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def everything_received(self) -> str:
        with self._lock:
            return "\n".join(self.received.raw)

    def pings(self, check: str | None = None) -> list[Ping]:
        with self._lock:
            return [p for p in self.received.pings if check is None or p.check == check]

    def webhooks(self) -> list[Webhook]:
        with self._lock:
            return list(self.received.webhooks)

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length).decode("utf-8", "replace") if length else ""
        with self._lock:
            self.received.raw.append(f"{request.command} {request.path}\n{request.headers}\n{body}")
        if self.mode == "hang":
            self._release.wait(HANG_SECONDS)
        if self.mode in ("500", "hang"):
            self._answer(request, 500, "internal error")
            return
        parts = urlsplit(request.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        segments = [s for s in parts.path.split("/") if s]
        if segments and segments[0] == "hook":
            self._webhook(request, parts.path, body)
            return
        if segments and segments[0] == "ping":
            segments = segments[1:]
        self._ping(request, segments, query, body)

    def _webhook(self, request, path: str, body: str) -> None:
        if request.command != "POST":
            self._answer(request, 405, "POST only")
            return
        try:
            payload = json.loads(body)
        except ValueError:
            self._answer(request, 400, "not JSON")
            return
        with self._lock:
            self.received.webhooks.append(Webhook(path, payload))
        self._answer(request, 200, "ok")

    def _ping(self, request, segments: list[str], query: dict, body: str) -> None:
        signal = "success"
        if len(segments) >= 2 and (segments[-1] in ("start", "fail", "log") or segments[-1].isdigit()):
            signal = segments.pop()
        if len(segments) == 1 and UUID.match(segments[0]):
            check = segments[0]
            if check not in self.known_uuids:
                self._answer(request, 404, "not found")
                return
            created = False
        elif len(segments) == 2 and segments[0] == self.ping_key and SLUG.match(segments[1]):
            check = f"{segments[0]}/{segments[1]}"
            created = check not in self.checks
            if created and query.get("create") != "1":
                self._answer(request, 404, "not found")
                return
        else:
            self._answer(request, 404, "not found")
            return
        with self._lock:
            self.received.pings.append(Ping(check, signal, request.command, query, body[:MAX_BODY]))
            if signal == "start":
                self.checks[check] = "started"
            elif signal in ("success", "0"):
                self.checks[check] = "up"
            elif signal == "fail" or signal.isdigit():
                self.checks[check] = "down"
            else:
                self.checks.setdefault(check, "new")
        self._answer(request, 201 if created else 200, "Created" if created else "OK")

    def _answer(self, request, code: int, text: str) -> None:
        data = text.encode()
        try:
            request.send_response(code)
            request.send_header("Content-Type", "text/plain")
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            if request.command != "HEAD":
                request.wfile.write(data)
        except OSError:
            pass  # a client that gave up on a hung request has closed its end
