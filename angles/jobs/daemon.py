"""The daemon loop: each job due at its next UTC slot, run in a worker thread, the state file fresh every tick."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from datetime import UTC, datetime

from angles.engines.decision_model import parse_timestamp, to_iso, utc_now
from angles.jobs import history
from angles.jobs.locks import HostLock, PostgresLeader, lock_path
from angles.jobs.runner import FailureMemory, prepare_database, run_job
from angles.jobs.specs import HEALTH_JOB, DaemonOptions, JobSpec
from angles.runs import Run, describe_error

logger = logging.getLogger(__name__)

STANDBY_NOTE_SECONDS = 3600
CATCH_UP_WAIT_SECONDS = 60.0


def next_runs(jobs, now: datetime | None = None) -> dict[str, datetime]:
    """Each job's next slot after now, an aware UTC datetime: the same on every host whatever its time zone."""
    now = now or datetime.now(UTC)
    return {spec.name: spec.next_slot(now) for spec in jobs}


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
        self.standby_reason: str | None = None
        self.next_standby_note = 0.0
        self.received = "request"
        self.failures = FailureMemory()
        self._mutex = threading.Lock()
        self.workers: dict[str, threading.Thread] = {}
        self.status = {spec.name: history.empty_status(spec) for spec in options.jobs}
        self.due = next_runs(options.jobs)

    def run(self) -> int:
        """Run until SIGTERM or SIGINT; returns the exit code."""
        self.lock.acquire()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            logger.info(
                "scheduler started: pid %s on %s, database %s", os.getpid(), self.host, self.settings.database_kind
            )
            for spec in self.options.jobs:
                logger.info("%s: %s", spec.describe(), spec.name)
            prepare_database(self.settings)
            self._load_history()
            self.due = next_runs(self.options.jobs)
            while not self.stop.is_set():
                try:
                    self._tick()
                except Exception as exc:
                    # A full disk or a broken state file must not end the daemon; the next tick tries again.
                    shown = exc if self.failures.first_time("scheduler tick", exc) else None
                    logger.error("scheduler tick failed: %s", describe_error(exc), exc_info=shown)
                self.stop.wait(self._sleep_seconds())
            return self._shutdown()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.leader is not None:
                self.leader.release()
            self.lock.release()

    def _on_signal(self, signum, frame) -> None:
        # Only set the event here: logging from a signal handler can deadlock on the handler's lock.
        self.received = signal.Signals(signum).name
        self.stop.set()

    def _tick(self) -> None:
        self._elect()
        now = datetime.now(UTC)
        for spec in self.options.jobs:
            if now < self.due[spec.name]:
                continue
            self.due[spec.name] = spec.next_slot(now)
            # A standby lets due times pass: the leader runs them, and catch-up covers what it missed.
            if self.is_leader:
                self.start(spec, spec.previous_slot(now), "scheduled_run")
        self._write_state()

    def _elect(self) -> None:
        leading = True if self.leader is None else self.leader.check()
        if leading:
            if not self.is_leader:
                if self.leader is not None:
                    logger.info("leading: this host holds the scheduler leader lock")
                self.is_leader = True
                self.standby_reason = None
                threading.Thread(target=self._catch_up, name="catch-up", daemon=True).start()
            return
        unreachable = self.leader.unreachable
        reason = "the database is unreachable" if unreachable else "another scheduler leads on this database"
        if self.is_leader or reason != self.standby_reason or time.monotonic() >= self.next_standby_note:
            # Said again hourly, so `tail logs/active/scheduler.log` on a standby always explains the quiet.
            logger.log(
                logging.WARNING if unreachable else logging.INFO,
                "standing by: %s%s; retrying every %gs",
                reason,
                f" ({unreachable})" if unreachable else "",
                self.options.leader_retry_seconds,
            )
            self.next_standby_note = time.monotonic() + STANDBY_NOTE_SECONDS
        self.is_leader = False
        self.standby_reason = reason

    def _sleep_seconds(self) -> float:
        if not self.due:
            return self.options.tick_seconds
        soonest = (min(self.due.values()) - datetime.now(UTC)).total_seconds()
        return max(0.0, min(self.options.tick_seconds, soonest))

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
                # Started under the mutex: a thread not started yet is not alive, and would let a second run in.
                thread.start()
                skipped = False
        if skipped:
            logger.warning("%s skipped: its previous run is still going (slot %s)", spec.name, to_iso(slot))
            note = f"slot {to_iso(slot)}; previous run still going"
            threading.Thread(target=self._record, args=(spec.name, "skipped", note), daemon=True).start()
        return not skipped

    def _run_job(self, spec: JobSpec, slot: datetime, action: str) -> None:
        outcome = run_job(self.settings, spec, action, self.failures, slot=slot, identity=self.identity)
        with self._mutex:
            status = self.status[spec.name]
            status["running"] = False
            if outcome is None:
                return
            status.update(last_run=outcome.started, last_result=outcome.status, last_duration_s=outcome.duration_s)
            if outcome.status == "completed":
                status["last_success"] = utc_now()

    def _record(self, job: str, status: str, details: str) -> None:
        Run(self.settings, job, "scheduled_run").finish(status, details)

    def _load_history(self) -> None:
        """Last run and last success of each job, from agent_activity and the previous state file."""
        found = history.last_runs(self.settings, self.options.jobs)
        previous = history.read_state(self.settings).get("jobs", {})
        with self._mutex:
            history.merge(self.status, found, previous)

    def _catch_up(self) -> None:
        """Run once, now, each job whose latest slot passed without a success (not once per missed slot).

        The health check goes last, once the others finished (or CATCH_UP_WAIT_SECONDS passed), so the first
        snapshot after a start shows what they did rather than "no run yet".
        """
        if self.leader is not None:
            self._load_history()
        now = datetime.now(UTC)
        missed = []
        for spec in self.options.jobs:
            with self._mutex:
                last_success = self.status[spec.name]["last_success"]
            slot = spec.previous_slot(now)
            if last_success is None:
                # An interval job just runs; a daily or weekly job that never ran waits for its time,
                # so a fresh install does not drill a backup that does not exist yet.
                late = spec.kind == "interval"
            else:
                late = parse_timestamp(last_success) < slot
            if late:
                logger.info(
                    "%s: catching up on slot %s (last success %s)", spec.name, to_iso(slot), last_success or "never"
                )
                missed.append((spec, slot))
        for spec, slot in sorted(missed, key=lambda pair: pair[0].name == HEALTH_JOB):
            if spec.name == HEALTH_JOB:
                self._wait_for_workers(CATCH_UP_WAIT_SECONDS)
            if self.stop.is_set():
                return
            self.start(spec, slot, "scheduled_run")

    def _wait_for_workers(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        with self._mutex:
            running = list(self.workers.values())
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _write_state(self, stopped: bool = False) -> None:
        with self._mutex:
            jobs = {
                name: {**status, "next_run": None if stopped else to_iso(self.due[name])}
                for name, status in self.status.items()
            }
        history.write_state(
            self.settings,
            {
                "pid": os.getpid(),
                "host": self.host,
                "started_at": self.started_at,
                "last_tick": utc_now(),
                "leader": self.is_leader and not stopped,
                "database": self.settings.database_kind,
                "tick_seconds": self.options.tick_seconds,
                "stopped_at": utc_now() if stopped else None,
                "jobs": jobs,
            },
        )

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
                target=self._record, args=(name, "failed", f"abandoned at shutdown after {grace:g}s"), daemon=True
            )
            recorder.start()
            recorder.join(1.0)
        self._write_state(stopped=True)
        logger.info("scheduler stopped cleanly%s", f" ({len(abandoned)} job(s) abandoned)" if abandoned else "")
        return 0
