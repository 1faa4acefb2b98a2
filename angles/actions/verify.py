"""The deployment checklist behind verify_deployment.py: one PASS/WARN/FAIL line with a fix hint per check.

The lines are the results of the same check objects backend_monitor.py runs, asked the checklist's question
(see angles.health.base.VERDICTS), plus a few only a deployment asks about (angles.health.deployment).
"""

from __future__ import annotations

import json
import logging

from angles.engines.decision_model import utc_now
from angles.files import atomic_write
from angles.health.base import FAIL, PASS, WARN, Check, Context, run_check
from angles.logs import redactor

logger = logging.getLogger(__name__)


def checklist() -> list[tuple[str, Check]]:
    """Each line's name and the check behind it, in the order they are shown."""
    from angles.health.alerts import AlertsCheck
    from angles.health.backup import BackupDestinationCheck, BackupRemoteCheck
    from angles.health.dashboard import DashboardCheck
    from angles.health.database import DatabaseCheck
    from angles.health.deployment import (
        DependenciesCheck,
        EnvironmentCheck,
        EnvPermissionsCheck,
        ProductionDatabaseCheck,
        SecretsInLogsCheck,
        WritableDirsCheck,
    )
    from angles.health.scheduler import SchedulerCheck
    from angles.health.services import AICheck, NotionCheck, NotionSchemaCheck
    from angles.health.system import DiskCheck

    return [
        ("environment", EnvironmentCheck()),
        (".env permissions", EnvPermissionsCheck()),
        ("dependencies", DependenciesCheck()),
        ("writable directories", WritableDirsCheck()),
        ("database", DatabaseCheck()),
        ("production database", ProductionDatabaseCheck()),
        ("Notion", NotionCheck()),
        ("Notion database", NotionSchemaCheck()),
        ("AI model", AICheck()),
        ("backup remote", BackupDestinationCheck()),
        ("backup remote auth", BackupRemoteCheck()),
        ("scheduler", SchedulerCheck()),
        ("dashboard", DashboardCheck()),
        ("disk space", DiskCheck()),
        ("secrets in logs", SecretsInLogsCheck()),
        ("alerts", AlertsCheck()),
    ]


def run_verify_deployment(settings, *, checks: list[tuple[str, Check]] | None = None) -> dict:
    """Run every check, write logs/active/verification_results.json, exit 0 when nothing FAILs."""
    context = Context(settings, thorough=True)
    lines: list[dict] = []
    try:
        for name, check in checks if checks is not None else checklist():
            result = run_check(check, settings, context)
            if result is None:
                continue
            verdict = result.checklist_verdict
            hint = result.hint if verdict != PASS else ""
            lines.append({"check": name, "status": verdict, "detail": redactor()(result.reason), "hint": hint})
    finally:
        context.close()
    summary = {status: sum(1 for line in lines if line["status"] == status) for status in (PASS, WARN, FAIL)}
    result = {"checked_at": utc_now(), "summary": summary, "checks": lines, "exit_code": 1 if summary[FAIL] else 0}
    path = settings.active_logs_dir / "verification_results.json"
    try:
        atomic_write(path, json.dumps(result, indent=2, default=str) + "\n")
    except OSError as exc:
        # The writable-directories line already reports an unwritable logs/active; the checklist is printed anyway.
        logger.warning("cannot write %s: %s", path, exc)
    logger.info("verification completed: %d pass, %d warn, %d fail", summary[PASS], summary[WARN], summary[FAIL])
    return result
