"""Reachability of the hosted APIs (Notion, the AI model server), only when they are configured."""

from __future__ import annotations

import time
from collections.abc import Callable

from angles.health.base import OK, WARNING, Check, CheckResult, Context, one_line


def _probe(check: Check, service: str, probe: Callable[[], object], failure: type[Exception]) -> CheckResult:
    """Run the service module's light probe; any answer with a status code means the service is reachable."""
    started = time.monotonic()
    try:
        probe()
        status, error = 200, ""
    except failure as exc:
        status, error = getattr(exc, "status", None), one_line(exc, 200)
    if status is None:
        return check.result(WARNING, "unreachable", f"{service} unreachable: {error}", {"up": 0})
    elapsed_ms = (time.monotonic() - started) * 1000
    metrics = {"up": 1, "latency_ms": round(elapsed_ms, 1)}
    if status == 200:
        return check.result(OK, f"{elapsed_ms:.0f} ms", f"{service} answers in {elapsed_ms:.0f} ms", metrics)
    if status in (401, 403):
        return check.result(WARNING, f"HTTP {status}", f"{service} refused the credentials: {error}", metrics)
    if status == 429:
        return check.result(OK, "HTTP 429", f"{service} answers but is rate limiting us (HTTP 429)", metrics)
    return check.result(WARNING, f"HTTP {status}", f"{service} answered HTTP {status}: {error}", metrics)


class NotionCheck(Check):
    name = "notion"
    label = "Notion"
    waits = True

    def run(self, settings, context: Context) -> CheckResult:
        if not settings.notion_enabled:
            return self.result(OK, "off", "Notion is not configured (NOTION_TOKEN and NOTION_DATABASE_ID unset)")
        # Imported here so a run with Notion unconfigured never pays for notion-client.
        from angles.services import notion

        result = _probe(
            self, "Notion API", lambda: notion.ping(settings, settings.health_timeout_seconds), notion.NotionError
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
        # Imported here so a run without a key never pays for the openai client.
        from angles.services import openai_model as ai

        result = _probe(
            self,
            "AI model server",
            lambda: ai.probe_model(settings, settings.health_timeout_seconds),
            ai.AIServiceError,
        )
        result.metrics = {f"ai_{k}": v for k, v in result.metrics.items()}
        return result
