"""The scheduler actions behind scheduler.py: run the daemon, list the schedule, run one job now."""

from __future__ import annotations

import logging

from angles.engines.decision_model import utc_now
from angles.errors import AnglesError, ConfigError
from angles.jobs.daemon import Daemon, next_runs
from angles.jobs.history import read_state
from angles.jobs.runner import FailureMemory, prepare_database, run_job
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
    upcoming = next_runs(options.jobs)
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
    outcome = run_job(settings, spec, "manual_run", FailureMemory())
    return {
        "job": name,
        "status": outcome.status,
        "details": outcome.details,
        "duration_s": outcome.duration_s,
        "exit_code": outcome.exit_code,
    }


def _refuse_if_running_in_daemon(settings, name: str) -> None:
    from angles.jobs.locks import lock_path
    from angles.locks import is_locked

    state = read_state(settings)
    if is_locked(lock_path(settings)) and state.get("jobs", {}).get(name, {}).get("running"):
        pid = state.get("pid")
        raise AnglesError(f"{name} is running in the scheduler right now (pid {pid}); wait for it to finish")
