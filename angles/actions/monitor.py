"""The monitor action behind backend_monitor.py and the scheduler's health job."""

from __future__ import annotations

import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime

from angles.health import snapshot
from angles.health.base import CRITICAL, WARNING, Check, CheckResult, Context, one_line

logger = logging.getLogger(__name__)

EXIT_CRITICAL = 5


def run_monitor(settings, *, checks: list[Check] | None = None, now: datetime | None = None) -> dict:
    """Run every enabled check, write the snapshot, log and history; exit code 5 when anything is critical."""
    from angles.health import default_checks

    started = time.monotonic()
    now = now or datetime.now(UTC)
    selected = [
        c for c in (checks if checks is not None else default_checks()) if c.name not in settings.health_disabled_checks
    ]
    context = Context(settings, now)
    try:
        results = _run_all(selected, settings, context)
    finally:
        context.close()
    doc = snapshot.build(results, settings, now=now, duration_s=time.monotonic() - started, host=socket.gethostname())
    doc = _redact(doc, settings)
    write_error = _persist(settings, doc, now)
    level = {CRITICAL: logging.ERROR, WARNING: logging.WARNING}.get(doc["status"], logging.INFO)
    problems = [f"{name}: {c['reason']}" for name, c in doc["checks"].items() if c["status"] != "ok"]
    logger.log(
        level,
        "health check completed: %s in %.2f s%s",
        doc["status"],
        doc["duration_s"],
        ("; " + "; ".join(problems)) if problems else "",
    )
    return {
        **doc,
        "snapshot": str(snapshot.snapshot_path(settings)),
        "write_error": write_error,
        "exit_code": EXIT_CRITICAL if doc["status"] == CRITICAL else 0,
    }


def _run_all(checks: list[Check], settings, context: Context) -> list[CheckResult]:
    """Checks that wait run in threads while the others run here; results keep the checks' order."""
    waiting = [c for c in checks if c.waits]
    results: dict[int, CheckResult] = {}
    deadline = settings.health_timeout_seconds + 2
    # No `with`: leaving it would wait for a hung thread, and every check has its own timeout anyway.
    pool = ThreadPoolExecutor(max_workers=max(1, len(waiting)), thread_name_prefix="health")
    try:
        futures = {id(c): pool.submit(_safe_run, c, settings, context) for c in waiting}
        for check in checks:
            if not check.waits:
                results[id(check)] = _safe_run(check, settings, context)
        end = time.monotonic() + deadline
        for check in waiting:
            try:
                results[id(check)] = futures[id(check)].result(timeout=max(0.0, end - time.monotonic()))
            except FutureTimeout:
                results[id(check)] = check.result(WARNING, "timeout", f"{check.label} check did not finish in time")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return [results[id(c)] for c in checks]


def _safe_run(check: Check, settings, context: Context) -> CheckResult:
    """A check that breaks reports itself as a warning; it never takes the monitor down."""
    try:
        result = check.run(settings, context)
        if not result.label:
            result.label = check.label or check.name
        return result
    except Exception as exc:
        logger.warning("health check %s failed", check.name, exc_info=True)
        return check.result(WARNING, "error", f"{check.label} check failed: {type(exc).__name__}: {one_line(exc, 150)}")


def _redact(value, settings):
    from angles.logs import Redactor

    redact = Redactor(settings.secrets)

    def walk(node):
        if isinstance(node, str):
            return redact(node)
        if isinstance(node, dict):
            return {walk(k) if isinstance(k, str) else k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(value)


def _persist(settings, doc: dict, now: datetime) -> str | None:
    """Write the snapshot, the log lines and the history point; a failure is reported, not raised."""
    import json

    try:
        snapshot.write_atomic(snapshot.snapshot_path(settings), json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        snapshot.append_log(settings, snapshot.log_lines(doc))
        snapshot.append_history(settings, doc, now)
    except OSError as exc:
        logger.error("cannot write the health snapshot: %s", exc)
        return f"cannot write the health files: {one_line(exc, 200)}"
    return None
