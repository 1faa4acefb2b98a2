"""Recording a run: its rows in agent_activity, its lines in its own component log, the backup history line."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from angles.engines.decision_model import utc_now
from angles.errors import AnglesError
from angles.logs import LOG_FORMAT, RedactingFilter, ReopeningFileHandler, UTCFormatter, redactor

logger = logging.getLogger(__name__)


def describe_error(exc: BaseException) -> str:
    """`Type: first line of the message`, redacted: what a run's row and log line say about a failure."""
    text = str(exc).strip().splitlines()
    return redactor()(f"{type(exc).__name__}: {text[0] if text else ''}".strip())


class Run:
    """One run of an action or a job, timed from its creation; a database that cannot take its rows never fails it."""

    def __init__(self, settings, agent: str, action: str, *, storage=None, record: bool = True):
        self.settings = settings
        self.agent = agent
        self.action = action
        # None: each row is written on a connection of its own.
        self.storage = storage
        self.record = record
        self.started = utc_now()
        self.host = socket.gethostname()
        self.finished = False
        self._clock = time.monotonic()
        self._schema_seen = False

    @property
    def duration_s(self) -> float:
        return round(time.monotonic() - self._clock, 3)

    def mark_started(self, details: str) -> None:
        """A "started" row shows a run that a crash or kill -9 interrupted, which never gets its final row."""
        self._write("started", details, started_at=self.started, host=self.host)

    def finish(self, status: str, details: str, *, duration_s: float | None = None) -> None:
        """The run's final row: completed, failed or skipped, with its duration (measured now unless given)."""
        self.finished = True
        self._write(
            status,
            details,
            started_at=self.started,
            finished_at=utc_now(),
            duration_s=self.duration_s if duration_s is None else duration_s,
            host=self.host,
        )

    def _write(self, status: str, details: str, **times) -> None:
        if not self.record:
            return
        try:
            if self.storage is not None:
                self._insert(self.storage, status, details, times)
            else:
                from angles.storage import open_storage

                with open_storage(self.settings, create=False) as storage:
                    self._insert(storage, status, details, times)
        except Exception as exc:
            logger.warning("%s: could not record %s in agent_activity: %s", self.agent, status, describe_error(exc))

    def _insert(self, storage, status: str, details: str, times: dict) -> None:
        if not self._schema_seen:
            if storage.schema_version() is None:
                logger.info(
                    "no schema in %s yet; %s run not recorded in agent_activity", storage.describe(), self.agent
                )
                return
            self._schema_seen = True
        storage.record_activity(self.agent, self.action, status, redactor()(details), **times)


@contextmanager
def recorded_run(
    settings, agent: str, action: str, *, storage=None, start: str | None = None, record: bool = True
) -> Iterator[Run]:
    """The block is one run: a "started" row first when `start` is given, and a "failed" row when the block
    raises before Run.finish() was called. record=False (a dry run) writes no row at all."""
    run = Run(settings, agent, action, storage=storage, record=record)
    if start is not None:
        run.mark_started(start)
    try:
        yield run
    except Exception as exc:
        if not run.finished:
            message = redactor()(str(exc)) if isinstance(exc, AnglesError) else f"unexpected {describe_error(exc)}"
            run.finish("failed", f"failed: {message}")
        raise


class _ThreadLog(ReopeningFileHandler):
    """A component log that takes only the records of one thread: the scheduler runs other jobs meanwhile."""

    def __init__(self, path, thread: int):
        super().__init__(path, encoding="utf-8", delay=True)
        self.only_thread = thread
        self.setFormatter(UTCFormatter(LOG_FORMAT))
        self.addFilter(lambda record: record.thread == thread)
        self.addFilter(RedactingFilter(redactor()))


@contextmanager
def component_log(settings, component: str | None) -> Iterator[None]:
    """Also write this thread's lines to logs/active/<component>.log while the block runs, unless they go there
    already (the component's own script logs there; an enclosing block of the same thread does too)."""
    if component is None:
        yield
        return
    path = settings.active_logs_dir / f"{component}.log"
    thread = threading.get_ident()
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, "baseFilename", None) == str(path) and getattr(handler, "only_thread", thread) == thread:
            yield
            return
    handler = _ThreadLog(path, thread)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def store_state(storage, key: str, value: dict) -> None:
    """An outcome the health checks read back (backup.last, backup.last_verified); never fails the run."""
    try:
        if storage.schema_version() is None:
            return
        storage.set_state(key, json.dumps(value, sort_keys=True))
    except Exception as exc:
        logger.warning("could not store %s: %s", key, describe_error(exc))


def append_history(settings, text: str) -> None:
    """One line per backup, restore or verify run in logs/backup.log, the history an operator tails."""
    path = settings.logs_dir / "backup.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    line = redactor()(f"{stamp} {text}".replace("\n", " ")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)
