"""Reachability of the hosted APIs (Notion, the AI model server), only when they are configured."""

from __future__ import annotations

import time

from angles.health.base import OK, WARNING, Check, CheckResult, Context, one_line

NOTION_VERSION = "2025-09-03"
OPENAI_DEFAULT_BASE = "https://api.openai.com/v1"


def _probe(check: Check, settings, url: str, headers: dict, service: str) -> CheckResult:
    """One short GET; the status code says whether the service answers and accepts our credentials."""
    # requests is imported here so a run with nothing configured never pays for it.
    import requests

    timeout = settings.health_timeout_seconds
    started = time.monotonic()
    try:
        response = requests.get(url, headers=headers, timeout=(min(timeout, 3.0), timeout), allow_redirects=False)
    except requests.RequestException as exc:
        return check.result(
            WARNING, "unreachable", f"{service} unreachable: {type(exc).__name__}: {one_line(exc, 200)}", {"up": 0}
        )
    elapsed_ms = (time.monotonic() - started) * 1000
    metrics = {"up": 1, "latency_ms": round(elapsed_ms, 1)}
    code = response.status_code
    if code == 200:
        return check.result(OK, f"{elapsed_ms:.0f} ms", f"{service} answers in {elapsed_ms:.0f} ms", metrics)
    if code in (401, 403):
        return check.result(
            WARNING, f"HTTP {code}", f"{service} refused the credentials (HTTP {code}): check the token", metrics
        )
    if code == 429:
        return check.result(OK, "HTTP 429", f"{service} answers but is rate limiting us (HTTP 429)", metrics)
    return check.result(WARNING, f"HTTP {code}", f"{service} answered HTTP {code}", metrics)


class NotionCheck(Check):
    name = "notion"
    label = "Notion"
    waits = True

    def run(self, settings, context: Context) -> CheckResult:
        if not settings.notion_enabled:
            return self.result(OK, "off", "Notion is not configured (NOTION_TOKEN and NOTION_DATABASE_ID unset)")
        result = _probe(
            self,
            settings,
            f"{settings.notion_base_url}/v1/users/me",
            {"Authorization": f"Bearer {settings.notion_token}", "Notion-Version": NOTION_VERSION},
            "Notion API",
        )
        result.metrics = {f"notion_{k}": v for k, v in result.metrics.items()}
        return result


class AICheck(Check):
    name = "ai"
    label = "AI"
    waits = True

    def run(self, settings, context: Context) -> CheckResult:
        if not settings.ai_enabled:
            return self.result(OK, "offline", "OPENAI_API_KEY unset: decisions get the offline analysis")
        base = (settings.openai_base_url or OPENAI_DEFAULT_BASE).rstrip("/")
        result = _probe(
            self, settings, f"{base}/models", {"Authorization": f"Bearer {settings.openai_api_key}"}, "AI model server"
        )
        result.metrics = {f"ai_{k}": v for k, v in result.metrics.items()}
        return result
