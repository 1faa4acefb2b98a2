"""The assistants' HTTP door answers its liveness route, when MCP_HTTP_URL says it is meant to run."""

from __future__ import annotations

import http.client
import time
from urllib.parse import urljoin, urlsplit

from angles.health.base import OK, WARNING, Check, CheckResult, Context, one_line


class MCPServerCheck(Check):
    name = "mcp"
    label = "MCP server"
    waits = True

    def run(self, settings, context: Context) -> CheckResult:
        if not settings.mcp_http_url:
            return self.result(OK, "off", "MCP_HTTP_URL unset: the MCP server is not meant to run over HTTP")
        # The liveness route sits next to the endpoint, at the same origin and path prefix.
        probe = urlsplit(urljoin(settings.mcp_http_url, "healthz"))
        shown = f"{probe.scheme}://{probe.netloc}{probe.path}"
        kind = http.client.HTTPSConnection if probe.scheme == "https" else http.client.HTTPConnection
        connection = kind(probe.hostname, probe.port, timeout=min(settings.health_timeout_seconds, 2.0))
        started = time.monotonic()
        try:
            connection.request("GET", probe.path, headers={"User-Agent": "angles-backend-monitor"})
            response = connection.getresponse()
            response.read(4096)
            code = response.status
        except (OSError, http.client.HTTPException) as exc:
            return self.result(
                WARNING,
                "down",
                f"MCP server not answering at {shown} ({one_line(exc, 120)}): "
                "start it with systemctl start angles-mcp or python tools/mcp_server.py --http",
                {"mcp_up": 0},
            )
        finally:
            connection.close()
        elapsed_ms = (time.monotonic() - started) * 1000
        metrics = {"mcp_up": 1 if code == 200 else 0, "mcp_latency_ms": round(elapsed_ms, 1)}
        if code != 200:
            return self.result(WARNING, f"HTTP {code}", f"MCP server at {shown} answered HTTP {code}", metrics)
        return self.result(OK, f"{elapsed_ms:.0f} ms", f"MCP server answers at {shown} in {elapsed_ms:.0f} ms", metrics)
