"""The daemon loop: dispatch due jobs to worker threads, record every run, keep the state file fresh."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import schedule

from angles import alerts
from angles.engines.decision_model import parse_timestamp, to_iso, utc_now
from angles.jobs.locks import HostLock, PostgresLeader, lock_path
from angles.jobs.specs import DaemonOptions, JobSpec
from angles.logs import redactor

logger = logging.getLogger(__name__)

RUN_ACTIONS = ("scheduled_run", "manual_run")
STANDBY_NOTE_SECONDS = 3600
# A job's lines also go to the log its own script writes, so the guide's greps of memory_sync.log keep working.
JOB_LOGS = {
    "health_check": "backend_monitor",
    "memory_sync": "memory_sync",
    "backup": "backup",
    "restore_drill": "restore",
}


def state_path(settings) -> Path:
    return settings.data_dir / "scheduler_state.json"


def read_state(settings) -> dict:
    """The state file the daemon rewrites every tick; {} when there is none or it is unreadable."""
    return _read_json(state_path(settings))


class GridJob(schedule.Job):
    """An interval job pinned to the UTC grid (every 5 min fires at :00, :05, ...), so all hosts agree on its slots."""

    def __init__(self, spec: JobSpec, scheduler: schedule.Scheduler):
        super().__init__(1, scheduler)
        self.spec = spec
        self.unit = "seconds"

    def _schedule_next_run(self) -> None:
        following = self.spec.next_slot(datetime.now(UTC))
        # schedule compares naive local times; astimezone() without an argument gives the machine's zone.
        self.next_run = following.astimezone().replace(tzinfo=None)


def build_schedule(jobs: tuple[JobSpec, ...], action) -> schedule.Scheduler:
    """A schedule.Scheduler with one job per spec; `action(spec)` is called when the job is due."""
    scheduler = schedule.Scheduler()
    for spec in jobs:
        if spec.kind == "interval":
            GridJob(spec, scheduler).do(action, spec)
            continue
        job = scheduler.every()
        job = getattr(job, spec.day) if spec.kind == "weekly" else job.day
        job.at(spec.at, "UTC").do(action, spec)
    return scheduler


def next_runs(scheduler: schedule.Scheduler) -> dict[str, datetime]:
    """Each job's next run as an aware UTC datetime."""
    return {job.job_func.args[0].name: job.next_run.astimezone(UTC) for job in scheduler.jobs}


class Daemon:
    """One scheduler process: lock, loop, workers, shutdown."""

    def __init__(self, settings, options: DaemonOptions):
        self.settings = settings
        self.options = options
        self.host = socket.gethostname()
        self.identity = f"{self.host}:{os.getpid()}"
        self.started_at = utc_now()
        self.stop = threading.Event()
        self.lock = HostLock(lock_path(settings))
        self.leader = (
            PostgresLeader(settings.database_url, retry_seconds=options.leader_retry_seconds)
            if settings.database_kind == "postgres"
            else None
        )
        self.is_leader = False
        self.next_standby_note = 0.0
        self.received = "request"
        self._mutex = threading.Lock()
        self.workers: dict[str, threading.Thread] = {}
        self.jobs = {spec.name: spec for spec in options.jobs}
        self.status = {spec.name: _empty_status(spec) for spec in options.jobs}
        self.scheduler = build_schedule(options.jobs, self._due)
        self.job_logs = [_job_log(settings, spec.name) for spec in options.jobs if spec.name in JOB_LOGS]

    def run(self) -> int:
        """Run until SIGTERM or SIGINT; returns the exit code."""
        self.lock.acquire()
        root = logging.getLogger()
        for handler in self.job_logs:
            root.addHandler(handler)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            logger.info(
                "scheduler started: pid %s on %s, database %s", os.getpid(), self.host, self.settings.database_kind
            )
            for spec in self.options.jobs:
                logger.info("%s: %s", spec.describe(), spec.name)
            prepare_database(self.settings)
            self._load_history()
            while not self.stop.is_set():
                try:
                    self._tick()
                except Exception:
                    # A full disk or a broken state file must not end the daemon; the next tick tries again.
                    logger.exception("scheduler tick failed")
                self.stop.wait(self._sleep_seconds())
            return self._shutdown()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for handler in self.job_logs:
                root.removeHandler(handler)
                handler.close()
            if self.leader is not None:
                self.leader.release()
            self.lock.release()

    def _on_signal(self, signum, frame) -> None:
        # Only set the event here: logging from a signal handler can deadlock on the handler's lock.
        self.received = signal.Signals(signum).name
        self.stop.set()

    def _tick(self) -> None:
        leading = True if self.leader is None else self.leader.check()
        if leading and not self.is_leader:
            if self.leader is not None:
                logger.info("leading: this host holds the scheduler leader lock")
            self.is_leader = True
            threading.Thread(target=self._catch_up, name="catch-up", daemon=True).start()
        elif not leading and (self.is_leader or time.monotonic() >= self.next_standby_note):
            # Said again hourly, so `tail logs/active/scheduler.log` on a standby always explains the quiet.
            logger.info(
                "standing by: another scheduler leads on this database; retrying every %gs",
                self.options.leader_retry_seconds,
            )
            self.is_leader = False
            self.next_standby_note = time.monotonic() + STANDBY_NOTE_SECONDS
        if self.is_leader:
            self.scheduler.run_pending()
        else:
            # A standby lets due times pass: the leader runs them, and catch-up covers what it missed.
            for job in self.scheduler.jobs:
                if job.should_run:
                    job._schedule_next_run()
        self._write_state()

    def _sleep_seconds(self) -> float:
        idle = self.scheduler.idle_seconds
        tick = self.options.tick_seconds
        return tick if idle is None else max(0.0, min(tick, idle))

    def _due(self, spec: JobSpec) -> None:
        self.start(spec, spec.previous_slot(datetime.now(UTC)), "scheduled_run")

    def start(self, spec: JobSpec, slot: datetime, action: str) -> bool:
        """Start one run in its own thread, unless the previous run of the same job is still going."""
        with self._mutex:
            running = self.workers.get(spec.name)
            if running is not None and running.is_alive():
                self.status[spec.name].update(last_result="skipped")
                skipped = True
            else:
                thread = threading.Thread(
                    target=self._run_job, args=(spec, slot, action), name=f"job-{spec.name}", daemon=True
                )
                self.workers[spec.name] = thread
                self.status[spec.name]["running"] = True
                skipped = False
        if skipped:
            logger.warning("%s skipped: its previous run is still going (slot %s)", spec.name, to_iso(slot))
            threading.Thread(target=self._record_skip, args=(spec, slot), daemon=True).start()
            return False
        thread.start()
        return True

    def _run_job(self, spec: JobSpec, slot: datetime, action: str) -> None:
        from angles.storage import open_storage

        started, clock = utc_now(), time.monotonic()
        storage = None
        try:
            storage = open_storage(self.settings)
            if not storage.claim_slot(spec.name, to_iso(slot), self.identity):
                logger.info("%s slot %s already taken by another run; not running it again", spec.name, to_iso(slot))
                with self._mutex:
                    self.status[spec.name]["running"] = False
                return
            logger.info("%s started (slot %s)", spec.name, to_iso(slot))
            alerts.job_started(self.settings, spec.name)
            # A "started" row shows a run that a crash or kill -9 interrupted, which never gets its final row.
            _record_quietly(
                storage, spec.name, action, "started", f"slot {to_iso(slot)}", started_at=started, host=self.host
            )
            status, details, _ = execute(spec, self.settings)
        except Exception as exc:
            logger.exception("%s failed before it could run", spec.name)
            status, details = "failed", _describe_error(exc)
        duration = round(time.monotonic() - clock, 3)
        finished = utc_now()
        alerts.job_finished(self.settings, spec.name, status, details)
        details = f"slot {to_iso(slot)}; {details}"
        logger.info("%s %s in %.1fs: %s", spec.name, status, duration, details)
        with self._mutex:
            self.status[spec.name].update(running=False, last_run=started, last_result=status, last_duration_s=duration)
            if status == "completed":
                self.status[spec.name]["last_success"] = finished
        if storage is None:
            return
        try:
            _record_quietly(
                storage,
                spec.name,
                action,
                status,
                details,
                started_at=started,
                finished_at=finished,
                duration_s=duration,
                host=self.host,
            )
        finally:
            storage.close()

    def _record_skip(self, spec: JobSpec, slot: datetime) -> None:
        now = utc_now()
        record(
            self.settings,
            spec.name,
            "scheduled_run",
            "skipped",
            f"slot {to_iso(slot)}; previous run still going",
            started_at=now,
            finished_at=now,
            duration_s=0.0,
            host=self.host,
        )

    def _load_history(self) -> None:
        """Last run and last success of each job, from agent_activity and the previous state file."""
        history = last_runs(self.settings, self.options.jobs)
        previous = read_state(self.settings).get("jobs", {})
        with self._mutex:
            self._merge_history(history, previous)

    def _merge_history(self, history: dict, previous: dict) -> None:
        for name, status in self.status.items():
            found = history.get(name, {})
            old = previous.get(name, {})
            status["last_run"] = found.get("last_run") or old.get("last_run")
            status["last_result"] = found.get("last_result") or old.get("last_result")
            status["last_duration_s"] = found.get("last_duration_s", old.get("last_duration_s"))
            successes = [s for s in (found.get("last_success"), old.get("last_success")) if s]
            status["last_success"] = max(successes, key=parse_timestamp) if successes else None

    def _catch_up(self) -> None:
        """Run once, now, each job whose latest slot passed without a success (not once per missed slot)."""
        if self.leader is not None:
            self._load_history()
        now = datetime.now(UTC)
        for spec in self.options.jobs:
            with self._mutex:
                last_success = self.status[spec.name]["last_success"]
            slot = spec.previous_slot(now)
            if last_success is None:
                # An interval job just runs; a daily or weekly job that never ran waits for its time,
                # so a fresh install does not drill a backup that does not exist yet.
                missed = spec.kind == "interval"
            else:
                missed = parse_timestamp(last_success) < slot
            if missed:
                logger.info(
                    "%s: catching up on slot %s (last success %s)", spec.name, to_iso(slot), last_success or "never"
                )
                self.start(spec, slot, "scheduled_run")

    def _write_state(self, stopped: bool = False) -> None:
        upcoming = next_runs(self.scheduler)
        with self._mutex:
            jobs = {
                name: {**status, "next_run": None if stopped else to_iso(upcoming.get(name))}
                for name, status in self.status.items()
            }
        state = {
            "pid": os.getpid(),
            "host": self.host,
            "started_at": self.started_at,
            "last_tick": utc_now(),
            "leader": self.is_leader and not stopped,
            "database": self.settings.database_kind,
            "tick_seconds": self.options.tick_seconds,
            "stopped_at": utc_now() if stopped else None,
            "jobs": jobs,
        }
        write_json_atomic(state_path(self.settings), state)

    def _shutdown(self) -> int:
        grace = self.options.stop_grace_seconds
        with self._mutex:
            running = {name: t for name, t in self.workers.items() if t.is_alive()}
        logger.info(
            "stopping on %s: no new runs; waiting up to %gs for %s",
            self.received,
            grace,
            ", ".join(running) or "no running job",
        )
        deadline = time.monotonic() + grace
        for thread in running.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        abandoned = [name for name, thread in running.items() if thread.is_alive()]
        for name in abandoned:
            logger.warning("%s abandoned: still running after %gs at shutdown", name, grace)
            with self._mutex:
                self.status[name].update(running=False, last_result="failed")
            recorder = threading.Thread(
                target=record,
                daemon=True,
                args=(self.settings, name, "scheduled_run", "failed", f"abandoned at shutdown after {grace:g}s"),
                kwargs={"host": self.host, "finished_at": utc_now()},
            )
            recorder.start()
            recorder.join(1.0)
        self._write_state(stopped=True)
        logger.info("scheduler stopped cleanly%s", f" ({len(abandoned)} job(s) abandoned)" if abandoned else "")
        return 0


def execute(spec: JobSpec, settings) -> tuple[str, str, int]:
    """Call the job's function; returns (status, details, exit code). Exceptions are logged with their traceback."""
    from angles.errors import AnglesError

    try:
        result = spec.load()(settings)
    except AnglesError as exc:
        logger.error("%s failed: %s", spec.name, _describe_error(exc), exc_info=exc)
        return "failed", _describe_error(exc), exc.exit_code
    except Exception as exc:
        logger.exception("%s raised %s", spec.name, type(exc).__name__)
        return "failed", _describe_error(exc), 1
    code = int(result.get("exit_code", 0)) if isinstance(result, dict) else 0
    extra = f", status {result['status']}" if isinstance(result, dict) and result.get("status") else ""
    return ("completed" if code == 0 else "failed"), f"exit code {code}{extra}", code


def prepare_database(settings) -> None:
    """Create the embedded SQLite schema if needed; say loudly when a shared database still needs run_migration.py."""
    from angles.storage import migrations, open_storage

    try:
        with open_storage(settings) as storage:
            migrations.ensure_current(storage)
    except Exception as exc:
        logger.error("database not ready, jobs will fail until it is: %s", _describe_error(exc))


def record(settings, name: str, action: str, status: str, details: str, **times) -> None:
    """Write one agent_activity row on a connection of its own; a database outage is logged, not raised."""
    from angles.storage import open_storage

    try:
        with open_storage(settings) as storage:
            _record_quietly(storage, name, action, status, details, **times)
    except Exception as exc:
        logger.error("%s: could not record %s in agent_activity: %s", name, status, _describe_error(exc))


def _record_quietly(storage, name: str, action: str, status: str, details: str, **times) -> None:
    try:
        storage.record_activity(name, action, status, details, **times)
    except Exception as exc:
        logger.error("%s: could not record %s in agent_activity: %s", name, status, _describe_error(exc))


def last_runs(settings, jobs) -> dict[str, dict]:
    """Per job: last run, result, duration and last success, read from agent_activity."""
    from angles.storage import open_storage

    found: dict[str, dict] = {}
    try:
        with open_storage(settings) as storage:
            for spec in jobs:
                since = to_iso(datetime.now(UTC) - timedelta(seconds=spec.period_seconds) - timedelta(days=1))
                rows = _runs(storage, spec.name, since)
                if spec.kind != "interval" and not any(r["status"] == "completed" for r in rows):
                    # Daily and weekly jobs must tell "long ago" from "never"; interval jobs run either way.
                    rows = _runs(storage, spec.name, None)
                info: dict = {}
                for row in rows:
                    if row["status"] in ("completed", "failed"):
                        info.update(
                            last_run=row.get("started_at") or row["created_at"],
                            last_result=row["status"],
                            last_duration_s=row.get("duration_s"),
                        )
                    if row["status"] == "completed":
                        info["last_success"] = row.get("finished_at") or row["created_at"]
                found[spec.name] = info
    except Exception as exc:
        logger.error("could not read the run history: %s", _describe_error(exc))
    return found


def _runs(storage, name: str, since: str | None) -> list[dict]:
    return [r for r in storage.iter_activity(since=since, agent_name=name) if r.get("action") in RUN_ACTIONS]


def _empty_status(spec: JobSpec) -> dict:
    return {
        "schedule": spec.describe(),
        "last_run": None,
        "last_result": None,
        "last_duration_s": None,
        "last_success": None,
        "running": False,
    }


def _job_log(settings, job: str) -> logging.Handler:
    """A handler writing only the records of one job's worker thread to that job's component log."""
    from angles.logs import LOG_FORMAT, RedactingFilter, ReopeningFileHandler, UTCFormatter

    path = settings.active_logs_dir / f"{JOB_LOGS[job]}.log"
    handler = ReopeningFileHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(UTCFormatter(LOG_FORMAT))
    thread_name = f"job-{job}"
    handler.addFilter(lambda record: record.threadName == thread_name)
    handler.addFilter(RedactingFilter(redactor()))
    return handler


def _describe_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redactor()(f"{type(exc).__name__}: {text[0] if text else ''}".strip())


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_json_atomic(path: Path, data: dict) -> None:
    """Readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
