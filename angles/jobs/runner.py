"""Running one job: its function called, its run recorded, its lines in its own log, each distinct failure told once."""

from __future__ import annotations

import logging
import threading
import traceback
from dataclasses import dataclass
from datetime import datetime

from angles import alerts
from angles.engines.decision_model import to_iso
from angles.errors import AnglesError
from angles.jobs.specs import JobSpec
from angles.runs import Run, component_log, describe_error

logger = logging.getLogger(__name__)

# A job's lines also go to the log its own script writes, so the guide's greps of memory_sync.log keep working.
JOB_LOGS = {
    "health_check": "backend_monitor",
    "memory_sync": "memory_sync",
    "backup": "backup",
    "restore_drill": "restore",
}
BY_HAND = "by hand (--run-now)"


class FailureMemory:
    """Which failures were already logged with their traceback: a job failing the same way every few seconds
    would otherwise bury the log in identical tracebacks. Each failure still gets its one result line."""

    def __init__(self):
        self._seen: set[tuple] = set()
        self._lock = threading.Lock()

    def first_time(self, job: str, exc: BaseException) -> bool:
        frames = traceback.extract_tb(exc.__traceback__)
        origin = (frames[-1].filename, frames[-1].lineno) if frames else None
        key = (job, type(exc).__qualname__, origin)
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
            return True


@dataclass
class Outcome:
    status: str
    details: str
    exit_code: int
    started: str
    duration_s: float


def execute(spec: JobSpec, settings, failures: FailureMemory) -> tuple[str, str, int]:
    """Call the job's function; returns (status, details, exit code)."""
    try:
        result = spec.load()(settings)
    except Exception as exc:
        if failures.first_time(spec.name, exc):
            logger.error(
                "%s raised %s (traceback shown once; the same failure again is one line)",
                spec.name,
                describe_error(exc),
                exc_info=exc,
            )
        return "failed", describe_error(exc), exc.exit_code if isinstance(exc, AnglesError) else 1
    code = int(result.get("exit_code", 0)) if isinstance(result, dict) else 0
    extra = f", status {result['status']}" if isinstance(result, dict) and result.get("status") else ""
    return ("completed" if code == 0 else "failed"), f"exit code {code}{extra}", code


def run_job(
    settings,
    spec: JobSpec,
    action: str,
    failures: FailureMemory,
    *,
    slot: datetime | None = None,
    identity: str = "",
) -> Outcome | None:
    """Run one job in this thread, recorded by a "started" row and a final one in agent_activity.

    A scheduled run (with its slot) first claims the slot; None when another run already took it.
    """
    from angles.storage import open_storage

    note = f"slot {to_iso(slot)}" if slot is not None else BY_HAND
    prefix = note if slot is not None else None
    with component_log(settings, JOB_LOGS.get(spec.name)):
        run = Run(settings, spec.name, action)
        try:
            storage = open_storage(settings)
        except Exception as exc:
            return _unready(run, spec, exc, failures, prefix)
        with storage:
            run.storage = storage
            try:
                claimed = slot is None or storage.claim_slot(spec.name, to_iso(slot), identity)
            except Exception as exc:
                return _unready(run, spec, exc, failures, prefix)
            if not claimed:
                logger.info("%s slot %s already taken by another run; not running it again", spec.name, to_iso(slot))
                return None
            logger.info("%s started %s", spec.name, f"({note})" if slot is not None else note)
            run.mark_started(note)
            alerts.job_started(settings, spec.name)
            status, details, code = execute(spec, settings, failures)
            return _finish(run, spec, status, details, code, prefix)


def _unready(run: Run, spec: JobSpec, exc: Exception, failures: FailureMemory, prefix: str | None) -> Outcome:
    if failures.first_time(spec.name, exc):
        logger.error("%s failed before it could run", spec.name, exc_info=exc)
    # The database that just failed would not take the run's rows either.
    run.record = False
    return _finish(run, spec, "failed", describe_error(exc), 1, prefix)


def _finish(run: Run, spec: JobSpec, status: str, details: str, code: int, prefix: str | None) -> Outcome:
    # The run's duration is the job's own: delivering its alerts (up to 10 s per target) is not part of it.
    duration = run.duration_s
    alerts.job_finished(run.settings, spec.name, status, details)
    if prefix is not None:
        details = f"{prefix}; {details}"
    logger.info("%s %s in %.1fs: %s", spec.name, status, duration, details)
    run.finish(status, details, duration_s=duration)
    return Outcome(status, details, code, run.started, duration)


def prepare_database(settings) -> None:
    """Create the embedded SQLite schema if needed; say loudly when a shared database still needs run_migration.py."""
    from angles.storage import migrations, open_storage

    try:
        with open_storage(settings) as storage:
            migrations.ensure_current(storage)
    except Exception as exc:
        logger.error("database not ready, jobs will fail until it is: %s", describe_error(exc))
