"""The hosted APIs (Notion, the AI model server), only when they are configured.

The monitor sends each a light probe; a thorough run (the checklist, `memory_sync.py --test`) checks what a
sync needs: Notion's token, database and properties, and one tiny analysis by the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from angles.health.base import FAIL, OK, WARN, WARNING, Check, CheckResult, Context, one_line

# A thorough check answers within seconds too: fewer attempts and a shorter timeout than a sync's.
NOTION_THOROUGH_ATTEMPTS = 3
NOTION_THOROUGH_TIMEOUT = 10.0
NOTION_ENV = "set NOTION_TOKEN and NOTION_DATABASE_ID"
AI_HINTS = {
    "auth": "check OPENAI_API_KEY",
    "not_found": "check OPENAI_MODEL",
    "unreachable": "check network and OPENAI_BASE_URL",
    "rate_limited": "check the OpenAI account's quota, then try again",
}
AI_HINT = "check OPENAI_BASE_URL and OPENAI_MODEL"


def notion_hint(status: int | None) -> str:
    if status == 401:
        return "check NOTION_TOKEN"
    if status in (403, 404):
        return "check NOTION_DATABASE_ID and share the database with the integration"
    return "check network and NOTION_BASE_URL"


def _probe(
    check: Check, service: str, probe: Callable[[], object], failure: type[Exception], hint: Callable[[Exception], str]
) -> CheckResult:
    """Run the service module's light probe; any answer with a status code means the service is reachable."""
    started = time.monotonic()
    try:
        probe()
        status, error, problem = 200, "", None
    except failure as exc:
        status, error, problem = getattr(exc, "status", None), one_line(exc, 200), exc
    fix = hint(problem) if problem is not None else ""
    if status is None:
        return check.result(
            WARNING, "unreachable", f"{service} unreachable: {error}", {"up": 0}, hint=fix, verdict=FAIL
        )
    elapsed_ms = (time.monotonic() - started) * 1000
    metrics = {"up": 1, "latency_ms": round(elapsed_ms, 1)}
    if status == 200:
        return check.result(OK, f"{elapsed_ms:.0f} ms", f"{service} answers in {elapsed_ms:.0f} ms", metrics)
    if status in (401, 403):
        reason = f"{service} refused the credentials: {error}"
        return check.result(WARNING, f"HTTP {status}", reason, metrics, hint=fix, verdict=FAIL)
    if status == 429:
        return check.result(OK, "HTTP 429", f"{service} answers but is rate limiting us (HTTP 429)", metrics)
    reason = f"{service} answered HTTP {status}: {error}"
    return check.result(WARNING, f"HTTP {status}", reason, metrics, hint=fix, verdict=FAIL)


def _notion_probe(settings) -> dict:
    """Token, database and data source, as a sync would find them."""
    from angles.services import notion

    options = {"attempts": NOTION_THOROUGH_ATTEMPTS, "timeout": NOTION_THOROUGH_TIMEOUT}
    with notion.client_for(settings, **options) as client:
        me = client.me()
        source_id = client.resolve_data_source(settings.notion_database_id)
        return {"me": me, "data_source_id": source_id, "data_source": client.retrieve_data_source(source_id)}


class NotionCheck(Check):
    name = "notion"
    label = "Notion"
    waits = True

    def run(self, settings, context: Context) -> CheckResult:
        if not settings.notion_enabled:
            return self.result(
                OK,
                "off",
                "Notion is not configured (NOTION_TOKEN and NOTION_DATABASE_ID unset)",
                details={"configured": False},
                hint=NOTION_ENV,
                verdict=WARN,
            )
        # Imported here so a run with Notion unconfigured never pays for notion-client.
        from angles.services import notion

        if context.thorough:
            return self._thorough(settings, context)
        result = _probe(
            self,
            "Notion API",
            lambda: notion.ping(settings, settings.health_timeout_seconds),
            notion.NotionError,
            lambda exc: notion_hint(exc.status),
        )
        result.metrics = {f"notion_{k}": v for k, v in result.metrics.items()}
        return result

    def _thorough(self, settings, context: Context) -> CheckResult:
        from angles.engines import notion_pages as pages
        from angles.logs import redactor
        from angles.services.notion import NotionAuthError, NotionError

        try:
            found = context.shared("notion", lambda: _notion_probe(settings))
        except NotionError as exc:
            details = {"auth": isinstance(exc, NotionAuthError), "http_status": exc.status}
            return self.result(
                WARNING, "failed", redactor()(str(exc)), details=details, hint=notion_hint(exc.status), verdict=FAIL
            )
        schema = pages.check_schema(found["data_source"])
        integration = found["me"].get("name") or found["me"].get("id")
        details = {
            "integration": integration,
            "data_source_id": found["data_source_id"],
            "title_property": schema["title_property"],
            "missing": schema["missing"],
            "mistyped": schema["mistyped"],
        }
        who = f" by the integration {integration}" if integration else ""
        return self.result(OK, "ok", f"token accepted{who}", details=details)


class NotionSchemaCheck(Check):
    """The Notion database has every property a sync writes, each of the right type (thorough runs only)."""

    name = "notion_schema"
    label = "Notion database"
    waits = True

    def run(self, settings, context: Context) -> CheckResult | None:
        if not settings.notion_enabled:
            return None
        from angles.engines import notion_pages as pages
        from angles.services.notion import NotionError

        try:
            found = context.shared("notion", lambda: _notion_probe(settings))
        except NotionError:
            return None
        schema = pages.check_schema(found["data_source"])
        problems = []
        if schema["missing"]:
            problems.append(f"missing properties: {', '.join(schema['missing'])}")
        if schema["mistyped"]:
            wrong = [f"{m['property']} is {m['actual']}, not {m['expected']}" for m in schema["mistyped"]]
            problems.append(f"wrong types: {', '.join(wrong)}")
        if problems:
            return self.result(
                WARNING, "incomplete", "; ".join(problems), details=schema, hint="python memory_sync.py --setup-notion"
            )
        return self.result(OK, "ok", f"all {len(pages.PROPERTIES)} properties present", details=schema)


class AICheck(Check):
    name = "ai"
    label = "AI"
    waits = True

    def run(self, settings, context: Context) -> CheckResult:
        if not settings.ai_enabled:
            return self.result(
                OK,
                "offline",
                "OPENAI_API_KEY unset: decisions get the offline analysis",
                details={"configured": False},
                hint="set OPENAI_API_KEY",
                verdict=WARN,
            )
        # Imported here so a run without a key never pays for the openai client.
        from angles.services import openai_model as ai

        if context.thorough:
            return self._thorough(settings)
        result = _probe(
            self,
            "AI model server",
            lambda: ai.probe_model(settings, settings.health_timeout_seconds),
            ai.AIServiceError,
            lambda exc: AI_HINTS.get(exc.kind, AI_HINT),
        )
        result.metrics = {f"ai_{k}": v for k, v in result.metrics.items()}
        return result

    def _thorough(self, settings) -> CheckResult:
        from angles.logs import redactor
        from angles.services import openai_model as ai

        try:
            answer = ai.check_ai(settings)
        except ai.AIServiceError as exc:
            hint = AI_HINTS.get(exc.kind, AI_HINT)
            details = {"kind": exc.kind}
            return self.result(WARNING, "failed", redactor()(str(exc)), details=details, hint=hint, verdict=FAIL)
        reason = (
            f"model {answer['model']} answered with a valid analysis in {answer['latency_s']} s "
            f"({answer['tokens']} tokens)"
        )
        return self.result(OK, "ok", reason, details=answer)
