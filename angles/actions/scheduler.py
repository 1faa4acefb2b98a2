"""The scheduler actions behind scheduler.py: run the daemon, list the schedule, run one job now."""

from __future__ import annotations

import logging
import socket
import time

from angles import alerts
from angles.engines.decision_model import utc_now
from angles.errors import AnglesError, ConfigError
from angles.jobs.daemon import Daemon, build_schedule, execute, next_runs, prepare_database, read_state, record
from angles.jobs.specs import load_options

logger = logging.getLogger(__name__)


def run_scheduler(settings) -> dict:
    """Run the daemon in the foreground until SIGTERM or SIGINT."""
    options = load_options(settings)
    code = Daemon(settings, options).run()
    return {"exit_code": code}


def run_list(settings) -> dict:
    """Each job with its schedule and next run in UTC, plus what the running daemon last reported."""
    options = load_options(settings)
    upcoming = next_runs(build_schedule(options.jobs, lambda spec: None))
    state = read_state(settings).get("jobs", {})
    jobs = []
    for spec in options.jobs:
        known = state.get(spec.name, {})
        jobs.append(
            {
                "name": spec.name,
                "schedule": spec.describe(),
                "next_run": upcoming[spec.name].strftime("%Y-%m-%dT%H:%M:%SZ"),
                "last_run": known.get("last_run"),
                "last_result": known.get("last_result"),
            }
        )
    return {"jobs": jobs, "now": utc_now(), "exit_code": 0}


def run_job_now(settings, name: str) -> dict:
    """Run one job once in the foreground, record it, and report its exit code."""
    options = load_options(settings)
    specs = {spec.name: spec for spec in options.jobs}
    if name not in specs:
        raise ConfigError(f"unknown job {name!r}; jobs: {', '.join(specs)}")
    spec = specs[name]
    spec.load()
    _refuse_if_running_in_daemon(settings, name)
    prepare_database(settings)
    started, clock = utc_now(), time.monotonic()
    logger.info("%s started by hand (--run-now)", name)
    alerts.job_started(settings, name)
    host = socket.gethostname()
    record(settings, name, "manual_run", "started", "by hand (--run-now)", started_at=started, host=host)
    status, details, code = execute(spec, settings)
    duration = round(time.monotonic() - clock, 3)
    alerts.job_finished(settings, name, status, details)
    record(
        settings,
        name,
        "manual_run",
        status,
        details,
        started_at=started,
        finished_at=utc_now(),
        duration_s=duration,
        host=host,
    )
    logger.info("%s %s in %.1fs: %s", name, status, duration, details)
    return {"job": name, "status": status, "details": details, "duration_s": duration, "exit_code": code}


def _refuse_if_running_in_daemon(settings, name: str) -> None:
    from angles.jobs.locks import is_locked, lock_path

    state = read_state(settings)
    if is_locked(lock_path(settings)) and state.get("jobs", {}).get(name, {}).get("running"):
        pid = state.get("pid")
        raise AnglesError(f"{name} is running in the scheduler right now (pid {pid}); wait for it to finish")
