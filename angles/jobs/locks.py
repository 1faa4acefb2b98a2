"""One daemon per host (flock on data/scheduler.lock) and one leader per database (a Postgres advisory lock)."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

from angles.engines.decision_model import utc_now
from angles.errors import AnglesError
from angles.locks import FileLock

logger = logging.getLogger(__name__)

# Any fixed 64-bit number works; every scheduler sharing a database must use the same one.
LEADER_LOCK_KEY = 0x616E676C6573  # "angles"


class SchedulerAlreadyRunningError(AnglesError):
    """Another scheduler holds this host's lock."""

    exit_code = 1


def lock_path(settings) -> Path:
    return settings.data_dir / "scheduler.lock"


class HostLock:
    """The scheduler's flock on data/scheduler.lock; the file says who holds it."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = FileLock(path)

    def acquire(self) -> None:
        if not self.lock.acquire():
            holder = read_holder(self.path)
            who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('started_at', '?')}"
            message = f"a scheduler is already running on this host ({who}); lock file {self.path}"
            raise SchedulerAlreadyRunningError(message)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": utc_now()}
        os.ftruncate(self.lock.fd, 0)
        os.pwrite(self.lock.fd, (json.dumps(info) + "\n").encode(), 0)

    def release(self) -> None:
        self.lock.release()


def read_holder(path: Path) -> dict:
    """Who wrote the lock file last (pid, host, started_at); {} when unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}


class PostgresLeader:
    """Leadership is a session advisory lock on a dedicated connection: it ends when that session ends."""

    def __init__(self, database_url: str, *, retry_seconds: float = 5.0):
        self.database_url = database_url
        self.retry_seconds = retry_seconds
        self.conn = None
        self.held = False
        # Why the last attempt could not even ask (the database did not answer); None when it could.
        self.unreachable: str | None = None
        self._next_attempt = 0.0

    def check(self) -> bool:
        """Keep or try to take leadership; called every tick, never blocks longer than the connect timeout."""
        if self.held:
            try:
                self.conn.execute("SELECT 1").fetchone()
                return True
            except Exception as exc:
                logger.warning("lost the leader connection (%s); standing by", type(exc).__name__)
                self.unreachable = f"{type(exc).__name__}: {_first_line(exc)}"
                self._drop()
                return False
        now = time.monotonic()
        if now < self._next_attempt:
            return False
        self._next_attempt = now + self.retry_seconds
        try:
            if self.conn is None:
                self.conn = _connect(self.database_url)
            self.held = bool(self.conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,)).fetchone()[0])
            self.unreachable = None
        except Exception as exc:
            self.unreachable = f"{type(exc).__name__}: {_first_line(exc)}"
            self._drop()
        return self.held

    def release(self) -> None:
        if self.conn is not None and self.held:
            try:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (LEADER_LOCK_KEY,))
            except Exception:
                logger.debug("advisory unlock failed; closing the session releases it anyway")
        self._drop()

    def _drop(self) -> None:
        self.held = False
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                logger.debug("closing the leader connection failed", exc_info=True)
        self.conn = None


def _connect(database_url: str):
    import psycopg

    # Keepalives make a vanished peer (host crash, cable pulled) end the session, and with it the lock, in ~20 s.
    conn = psycopg.connect(
        database_url,
        autocommit=True,
        connect_timeout=5,
        application_name="angles-scheduler",
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=3,
        keepalives_count=3,
    )
    for setting, value in (("tcp_keepalives_idle", 5), ("tcp_keepalives_interval", 3), ("tcp_keepalives_count", 3)):
        try:
            conn.execute(f"SET {setting} = {int(value)}")
        except Exception:
            logger.debug("server refused SET %s", setting)
    return conn


def _first_line(exc: Exception) -> str:
    from angles.logs import redactor

    text = str(exc).strip().splitlines()
    return redactor()(text[0]) if text else ""
