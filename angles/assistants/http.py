"""The HTTP door: the SDK's streamable HTTP app (stateless) behind an Origin check and a bearer-token guard."""

from __future__ import annotations

import logging
import threading
import time
from ipaddress import ip_address
from urllib.parse import urlsplit

import anyio
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse

from angles.assistants import tokens
from angles.assistants.server import CALLER_KEY, Caller, build_server
from angles.engines.decision_model import utc_now
from angles.errors import AnglesError

logger = logging.getLogger(__name__)

PATH = "/mcp"
HEALTH_PATH = "/healthz"
# last_used_at is for people reading `token list`: once a minute per token and server is precise enough.
TOUCH_EVERY_S = 60.0


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    """Browsers send Origin; a page on another site must not drive a server it reached by DNS rebinding."""
    origin = origin.strip().rstrip("/").lower()
    if origin in allowed:
        return True
    try:
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.hostname is not None and is_loopback(parts.hostname)
    except ValueError:
        return False


def _refuse(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class TokenGuard:
    """ASGI middleware: a foreign Origin gets 403, no valid token 401; the rest pass on with their caller."""

    def __init__(self, app, storage, settings):
        self.app = app
        self.storage = storage
        self.allowed = settings.mcp_allowed_origins
        self.tokens = tokens.TokenCache(storage, settings.mcp_token_cache_seconds)
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is not None and not origin_allowed(origin, self.allowed):
            logger.warning("refused a request from origin %r (not loopback, not in MCP_ALLOWED_ORIGINS)", origin[:200])
            await _refuse(403, "origin not allowed")(scope, receive, send)
            return
        if scope["path"] == HEALTH_PATH:
            await self.app(scope, receive, send)
            return
        scheme, _, secret = headers.get("authorization", "").partition(" ")
        secret = secret.strip()
        found = None
        if scheme.lower() == "bearer" and secret:
            # A token verified moments ago needs no thread and no query: most requests end here.
            found = self.tokens.cached(secret)
            if found is None:
                try:
                    found = await anyio.to_thread.run_sync(self.tokens.authenticate, secret)
                except AnglesError as exc:
                    logger.error("token check failed: %s", exc)
                    await _refuse(503, "the vault's database is not answering")(scope, receive, send)
                    return
        if found is None:
            await _refuse(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        scope[CALLER_KEY] = Caller(found["name"], found["scope"], limited=True)
        if self._due(found["name"]):
            await anyio.to_thread.run_sync(self._touch, found["name"])
        await self.app(scope, receive, send)

    def _due(self, name: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._touched.get(name, -TOUCH_EVERY_S) < TOUCH_EVERY_S:
                return False
            self._touched[name] = now
            return True

    def _touch(self, name: str) -> None:
        try:
            self.storage.mark_token_used(name, utc_now())
        except AnglesError as exc:
            logger.warning("could not record that token %s was used: %s", name, exc)


def build_app(settings, storage):
    """The ASGI app served at /mcp (stateless JSON responses, so any instance can answer any request)."""
    server = build_server(settings, storage)

    @server.custom_route(HEALTH_PATH, methods=["GET"])
    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = server.streamable_http_app(
        streamable_http_path=PATH,
        stateless_http=True,
        json_response=True,
        # TokenGuard checks Origin itself, with MCP_ALLOWED_ORIGINS; the SDK's Host check would refuse every
        # request that arrives through a reverse proxy under its public name.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    return TokenGuard(app, storage, settings)


def serve(settings, storage, *, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    import uvicorn

    # Stateless mode ends a transport per request, and the SDK logs each end at INFO: one line per call.
    logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)
    config = uvicorn.Config(
        build_app(settings, storage),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    shown = f"[{host}]" if ":" in host else host
    logger.info("MCP server on http://%s:%d%s (%s)", shown, port, PATH, storage.describe())
    uvicorn.Server(config).run()
