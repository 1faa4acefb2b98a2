"""Scheduler alive: its lock is held and its heartbeat is recent; and what its jobs last did."""

from __future__ import annotations

import os
import socket

from angles.health.base import CRITICAL, FAIL, OK, WARNING, Check, CheckResult, Context, age_hours
from angles.jobs.history import load_state

MAX_JOBS = 32
START = "bash deploy/start.sh (or nohup python scheduler.py &, or systemctl start angles-scheduler)"
RESTART = "restart it: systemctl restart angles-scheduler, or stop it and bash deploy/start.sh"
JOB_FIELDS = ("schedule", "last_run", "last_result", "last_duration_s", "last_success", "next_run", "running")


def lock_held(settings) -> bool:
    """True when another open file holds the daemon's flock; the probe never steals it."""
    from angles.jobs.locks import lock_path
    from angles.locks import is_locked

    return is_locked(lock_path(settings))


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def jobs_summary(state: dict | None) -> dict:
    """The jobs table, bounded in count and field length, for the snapshot and the dashboard."""
    jobs = (state or {}).get("jobs")
    if not isinstance(jobs, dict):
        return {}
    out = {}
    for name in sorted(jobs)[:MAX_JOBS]:
        job = jobs[name] if isinstance(jobs[name], dict) else {}
        entry = {}
        for key in JOB_FIELDS:
            value = job.get(key)
            if isinstance(value, str):
                value = value[:80]
            elif not isinstance(value, (int, float, bool)) and value is not None:
                value = str(value)[:80]
            entry[key] = value
        out[str(name)[:60]] = entry
    return out


class SchedulerCheck(Check):
    name = "scheduler"
    label = "Scheduler"

    def __init__(self, lock_probe=None):
        self.lock_probe = lock_probe or lock_held

    def run(self, settings, context: Context) -> CheckResult:
        state, problem = load_state(settings)
        # Inside the daemon (its health job) the answer is known, and not probing avoids touching its own lock.
        held = (state or {}).get("pid") == os.getpid() or self.lock_probe(settings)
        stale_after = float(settings.scheduler_stale_seconds)
        tick = (state or {}).get("tick_seconds")
        if isinstance(tick, (int, float)) and not isinstance(tick, bool) and tick > 0:
            stale_after = max(stale_after, 3 * float(tick))
        heartbeat = (state or {}).get("last_tick")
        age_h = age_hours(heartbeat, context.now)
        age_s = age_h * 3600 if age_h is not None else None
        local = (state or {}).get("host") in (None, socket.gethostname())
        if not held and local and age_s is not None and age_s < stale_after and _pid_alive((state or {}).get("pid")):
            # A daemon that locks some other way still counts when its process is alive and beating.
            held = True
        details = {
            "running": held,
            "pid": (state or {}).get("pid"),
            "host": str((state or {}).get("host") or "")[:80] or None,
            "started_at": (state or {}).get("started_at"),
            "last_tick": heartbeat if isinstance(heartbeat, str) else None,
            "leader": (state or {}).get("leader"),
            "jobs": jobs_summary(state),
        }
        metrics = {"scheduler_up": 1 if held else 0}
        if age_s is not None:
            metrics["scheduler_heartbeat_age_seconds"] = round(max(age_s, 0.0), 1)
        uptime_h = age_hours((state or {}).get("started_at"), context.now) if held else None
        if uptime_h is not None:
            metrics["scheduler_uptime_seconds"] = round(max(uptime_h * 3600, 0.0), 1)
        if not held:
            if state:
                when = f"last heartbeat {age_s:.0f} s ago" if age_s is not None else "no readable heartbeat"
                reason = f"scheduler is not running ({when}): start it with {START}"
            else:
                reason = f"scheduler is not running: start it with {START}"
            if problem:
                reason += f"; {problem}"
            return self.result(WARNING, "stopped", reason, metrics, details, hint=START, verdict=FAIL)
        if problem or state is None:
            return self.result(
                WARNING,
                "running",
                f"scheduler holds its lock but its state is unusable: {problem or 'no state file'}",
                metrics,
                details,
                hint=RESTART,
                verdict=FAIL,
            )
        if age_s is None:
            return self.result(
                CRITICAL,
                "no heartbeat",
                "scheduler holds its lock but records no heartbeat",
                metrics,
                details,
                hint=RESTART,
            )
        if age_s >= stale_after:
            return self.result(
                CRITICAL,
                f"{age_s:.0f} s",
                f"scheduler is hung: no heartbeat for {age_s:.0f} s (limit {stale_after:g} s)",
                metrics,
                details,
                hint=RESTART,
            )
        failed = [name for name, job in details["jobs"].items() if job.get("last_result") == "failed"]
        role = "standby" if state.get("leader") is False else "leader"
        if failed:
            return self.result(
                WARNING,
                f"{age_s:.0f} s",
                f"scheduler running ({role}), last run failed for: {', '.join(failed)}",
                metrics,
                details,
                hint="grep -i error logs/active/scheduler.log",
            )
        return self.result(
            OK,
            f"{age_s:.0f} s",
            f"scheduler running ({role}), heartbeat {age_s:.0f} s ago, {len(details['jobs'])} jobs",
            metrics,
            details,
        )
