"""The job table: what runs when (always in UTC), and the slot each run belongs to."""

from __future__ import annotations

import importlib
import json
import logging
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from angles.config import WEEKDAYS
from angles.errors import AnglesError, ConfigError

logger = logging.getLogger(__name__)

DAY = 86400.0
WEEK = 7 * DAY
HEALTH_JOB = "health_check"


@dataclass(frozen=True)
class JobSpec:
    """One job: an interval (every_seconds), a daily time (at) or a weekly day and time (day, at), all UTC."""

    name: str
    call: str  # "module:function"; the function takes settings and returns a dict with "exit_code"
    every_seconds: float | None = None
    at: str | None = None
    day: str | None = None

    @property
    def kind(self) -> str:
        if self.every_seconds is not None:
            return "interval"
        return "weekly" if self.day else "daily"

    @property
    def period_seconds(self) -> float:
        return {"interval": self.every_seconds, "daily": DAY, "weekly": WEEK}[self.kind]

    def describe(self) -> str:
        """The schedule as the log and the dashboard show it, e.g. `Every 6 hours`."""
        if self.kind == "daily":
            return f"Every day at {self.at} UTC"
        if self.kind == "weekly":
            return f"Every {self.day} at {self.at} UTC"
        seconds = self.every_seconds
        for unit, size in (("hour", 3600), ("minute", 60)):
            if seconds >= size and seconds % size == 0:
                count = int(seconds // size)
                return f"Every {unit}" if count == 1 else f"Every {count} {unit}s"
        return "Every second" if seconds == 1 else f"Every {seconds:g} seconds"

    def previous_slot(self, now: datetime) -> datetime:
        """The latest scheduled moment at or before now; every host computes the same one."""
        now = now.astimezone(UTC)
        if self.kind == "interval":
            # Whole microseconds keep the grid identical on every host despite float rounding.
            period_us = max(1, round(self.every_seconds * 1_000_000))
            now_us = round(now.timestamp() * 1_000_000)
            return datetime.fromtimestamp(0, UTC) + timedelta(microseconds=now_us // period_us * period_us)
        hour, minute = (int(part) for part in self.at.split(":"))
        candidate = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if candidate > now:
            candidate -= timedelta(days=1)
        if self.kind == "weekly":
            while WEEKDAYS[candidate.weekday()] != self.day:
                candidate -= timedelta(days=1)
        return candidate

    def next_slot(self, now: datetime) -> datetime:
        """The first scheduled moment after now."""
        previous = self.previous_slot(now)
        if self.kind == "interval":
            return previous + timedelta(seconds=self.every_seconds)
        return previous + timedelta(seconds=self.period_seconds)

    def load(self):
        """Import the job's function; a part of the system that is not installed fails this job only."""
        module_name, _, function_name = self.call.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise AnglesError(f"job {self.name} is not available: cannot import {module_name} ({exc})") from exc
        try:
            return getattr(module, function_name)
        except AttributeError:
            raise AnglesError(f"job {self.name} is not available: {module_name} has no {function_name}") from None


@dataclass(frozen=True)
class DaemonOptions:
    """Loop timings; only tests and unusual deployments change them (through the jobs file)."""

    tick_seconds: float = 1.0
    leader_retry_seconds: float = 5.0
    stop_grace_seconds: float = 8.0
    jobs: tuple[JobSpec, ...] = field(default=())


def default_jobs(settings) -> list[JobSpec]:
    """Health every 5 min, sync every 6 h, backup daily, drill and rotation weekly, cleanup daily."""
    return [
        JobSpec(HEALTH_JOB, "angles.actions.monitor:run_monitor", every_seconds=settings.health_interval_minutes * 60),
        JobSpec("memory_sync", "angles.actions.sync:run_sync", every_seconds=settings.sync_interval_hours * 3600),
        JobSpec("backup", "angles.actions.backup:run_backup", at=settings.backup_time),
        JobSpec(
            "restore_drill",
            "angles.actions.restore:run_verify",
            at=settings.restore_drill_time,
            day=settings.restore_drill_day,
        ),
        JobSpec(
            "log_rotation",
            "angles.actions.maintenance:run_rotate_logs",
            at=settings.log_rotation_time,
            day=settings.log_rotation_day,
        ),
        JobSpec("cleanup", "angles.actions.maintenance:run_cleanup", at=settings.cleanup_time),
    ]


def load_options(settings) -> DaemonOptions:
    """The default job table, or the one SCHEDULER_JOBS_FILE describes."""
    jobs = {spec.name: spec for spec in default_jobs(settings)}
    path = settings.scheduler_jobs_file
    if path is None:
        return DaemonOptions(jobs=tuple(jobs.values()))
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"SCHEDULER_JOBS_FILE {path} cannot be read as JSON: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("jobs", []), list):
        raise ConfigError(f"SCHEDULER_JOBS_FILE {path} must be an object with a list of jobs")
    if not all(isinstance(entry, dict) for entry in raw.get("jobs", [])):
        raise ConfigError(f"SCHEDULER_JOBS_FILE {path}: every job must be an object")
    if not raw.get("defaults", True):
        jobs = {}
    for entry in raw.get("jobs", []):
        jobs[entry.get("name", "?")] = _job_from_file(entry, jobs.get(entry.get("name")))
    numbers = {}
    for key in ("tick_seconds", "leader_retry_seconds", "stop_grace_seconds"):
        if key in raw:
            value = raw[key]
            if not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"SCHEDULER_JOBS_FILE: {key} must be a positive number")
            numbers[key] = float(value)
    return DaemonOptions(jobs=tuple(jobs.values()), **numbers)


def _job_from_file(entry: dict, default: JobSpec | None) -> JobSpec:
    name = entry.get("name")
    if not isinstance(name, str) or not name.replace("_", "").isalnum():
        raise ConfigError(f"SCHEDULER_JOBS_FILE: job name {name!r} must be letters, digits and underscores")
    call = entry.get("call") or (default.call if default else None)
    if not call or ":" not in call:
        raise ConfigError(f"SCHEDULER_JOBS_FILE: job {name} needs call = 'module:function'")
    timing = {"every_seconds": entry.get("every_seconds"), "at": entry.get("at"), "day": entry.get("day")}
    if timing["every_seconds"] is not None:
        if not isinstance(timing["every_seconds"], int | float) or timing["every_seconds"] <= 0:
            raise ConfigError(f"SCHEDULER_JOBS_FILE: job {name} every_seconds must be a positive number")
        timing.update(at=None, day=None)
    elif timing["at"] is not None:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", str(timing["at"])):
            raise ConfigError(f"SCHEDULER_JOBS_FILE: job {name} at={timing['at']!r} is not HH:MM (UTC)")
        if timing["day"] is not None:
            timing["day"] = str(timing["day"]).lower()
            if timing["day"] not in WEEKDAYS:
                raise ConfigError(f"SCHEDULER_JOBS_FILE: job {name} day={timing['day']!r} is not a weekday name")
    elif default is not None:
        return replace(default, call=call)
    else:
        raise ConfigError(f"SCHEDULER_JOBS_FILE: job {name} needs every_seconds or at (and day for weekly)")
    return JobSpec(name, call, **timing)
