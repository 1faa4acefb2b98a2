"""The health dashboard answers its liveness route."""

from __future__ import annotations

import http.client
import time

from angles.health.base import FAIL, OK, WARNING, Check, CheckResult, Context, one_line

SERVICE = "or systemctl start angles-dashboard"
WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def dashboard_address(settings) -> tuple[str, int]:
    """Where to reach the dashboard from this host: a wildcard bind is reached on loopback."""
    host = settings.health_host.strip("[]")
    return WILDCARDS.get(host, host), settings.health_port


class DashboardCheck(Check):
    name = "dashboard"
    label = "Dashboard"
    waits = True

    def run(self, settings, context: Context) -> CheckResult:
        host, port = dashboard_address(settings)
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        # http.client keeps this check cheap: no requests import for a loopback probe.
        timeout = min(settings.health_timeout_seconds, 2.0)
        started = time.monotonic()
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            connection.request("GET", "/healthz", headers={"User-Agent": "angles-backend-monitor"})
            response = connection.getresponse()
            response.read(4096)
            code = response.status
        except (OSError, http.client.HTTPException) as exc:
            hint = f"start it with nohup python tools/health_server.py --port {port} & ({SERVICE})"
            return self.result(
                WARNING,
                "down",
                f"dashboard not answering at http://{shown}/healthz ({one_line(exc, 120)}): {hint}",
                {"dashboard_up": 0},
                hint=hint,
                verdict=FAIL,
            )
        finally:
            connection.close()
        elapsed_ms = (time.monotonic() - started) * 1000
        metrics = {"dashboard_up": 1 if code == 200 else 0, "dashboard_latency_ms": round(elapsed_ms, 1)}
        if code != 200:
            return self.result(
                WARNING,
                f"HTTP {code}",
                f"dashboard at http://{shown}/healthz answered HTTP {code}",
                metrics,
                hint="grep -i error logs/active/health_server.log",
                verdict=FAIL,
            )
        return self.result(
            OK, f"{elapsed_ms:.0f} ms", f"dashboard answers at http://{shown}/ in {elapsed_ms:.0f} ms", metrics
        )
