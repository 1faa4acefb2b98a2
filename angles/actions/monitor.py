"""The monitor action behind backend_monitor.py and the scheduler's health job."""

from __future__ import annotations

import logging
import socket
import threading
import time
from datetime import UTC, datetime

from angles import alerts
from angles.files import atomic_write
from angles.health import health_file as snapshot
from angles.health.base import CRITICAL, WARNING, Check, CheckResult, Context, one_line, run_check

logger = logging.getLogger(__name__)

EXIT_CRITICAL = 5


def run_monitor(settings, *, checks: list[Check] | None = None, now: datetime | None = None) -> dict:
    """Run every enabled check, write the snapshot, log and history; exit code 5 when anything is critical."""
    from angles.health import default_checks

    started = time.monotonic()
    now = now or datetime.now(UTC)
    available = checks if checks is not None else default_checks()
    unknown = set(settings.health_disabled_checks) - {c.name for c in available}
    if unknown:
        logger.warning("HEALTH_DISABLED_CHECKS names unknown checks: %s", ", ".join(sorted(unknown)))
    selected = [c for c in available if c.name not in settings.health_disabled_checks]
    context = Context(settings, now)
    results, finished = _run_all(selected, settings, context)
    if finished:
        # A check still stuck inside the database keeps its connection; closing under it would block too.
        context.close()
    doc = snapshot.build(results, settings, now=now, duration_s=time.monotonic() - started, host=socket.gethostname())
    doc = _redact(doc, settings)
    write_error = _persist(settings, doc, now)
    alerts.health_evaluated(settings, doc, now=now)
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


def _run_all(checks: list[Check], settings, context: Context) -> tuple[list[CheckResult], bool]:
    """Each waiting check in its own thread, the others in order in one more; all under one deadline.

    Returns the results in the checks' order and whether every thread finished. The threads are daemons:
    one stuck past the deadline (a database that never answers) is reported and never holds up the exit.
    """
    results: dict[int, CheckResult] = {}
    lock = threading.Lock()

    def run_in_order(group: list[Check]) -> None:
        for check in group:
            result = run_check(check, settings, context)
            with lock:
                results[id(check)] = result

    groups = [[c] for c in checks if c.waits]
    in_order = [c for c in checks if not c.waits]
    if in_order:
        groups.append(in_order)
    threads = [threading.Thread(target=run_in_order, args=(g,), daemon=True, name="health-check") for g in groups]
    for thread in threads:
        thread.start()
    end = time.monotonic() + settings.health_timeout_seconds + 2
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    finished = not any(thread.is_alive() for thread in threads)
    with lock:
        for check in checks:
            if id(check) not in results:
                results[id(check)] = check.result(
                    check.timeout_status, "timeout", f"{check.label} check did not finish in time"
                )
        return [results[id(c)] for c in checks], finished


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
        atomic_write(snapshot.snapshot_path(settings), json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        snapshot.append_log(settings, snapshot.log_lines(doc))
        snapshot.append_history(settings, doc, now)
    except OSError as exc:
        logger.error("cannot write the health snapshot: %s", exc)
        return f"cannot write the health files: {one_line(exc, 200)}"
    return None
