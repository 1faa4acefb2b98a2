"""One process at a time per host: an exclusive flock on a file, which the kernel drops when its holder dies."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from angles.errors import AnglesError

POLL_SECONDS = 0.2


class FileLock:
    """An exclusive flock on `path`. The file stays after release: deleting it would let a third process lock
    a new inode while a second still waits on the old one."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd: int | None = None

    def acquire(self, wait: float | None = 0.0) -> bool:
        """Take the lock, waiting up to `wait` seconds (None: as long as it takes); False when it stays taken."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if wait is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.fd = fd
            return True
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(POLL_SECONDS)
                continue
            self.fd = fd
            return True

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


@contextmanager
def locked(path: Path, *, wait: float | None = 0.0, busy: str | None = None) -> Iterator[FileLock]:
    """Hold the lock on `path` for the block; AnglesError(busy) when another process keeps it past `wait` seconds."""
    lock = FileLock(path)
    if not lock.acquire(wait):
        raise AnglesError(busy or f"another process holds the lock {path}")
    try:
        yield lock
    finally:
        lock.release()


def is_locked(path: Path) -> bool:
    """True while a live process holds the flock on `path`; the probe never takes it away."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
