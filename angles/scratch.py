"""Temporary working folders (restore clones, drill databases) that a killed process does not leave behind."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

# Held (flock) by the process using the folder; the kernel drops it when that process dies, even by kill -9.
OWNER = ".angles-owner.lock"
# A folder without an owner file was made by an older version, or its maker died before locking it: only
# one this old is surely abandoned.
UNOWNED_STALE_S = 3600.0


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A new temporary folder owned by this process while in use; abandoned ones of the same prefix go first."""
    clean_stale(prefix)
    path = Path(tempfile.mkdtemp(prefix=prefix))
    fd = os.open(path / OWNER, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def clean_stale(prefix: str) -> list[Path]:
    """Delete the temporary folders of this prefix that no live process owns; the ones deleted."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        if path.is_symlink() or not path.is_dir():
            continue
        try:
            fd = os.open(path / OWNER, os.O_RDWR)
        except FileNotFoundError:
            if _age(path) > UNOWNED_STALE_S:
                removed.append(_remove(path))
            continue
        except OSError:
            continue  # another user's folder
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process is still running
            # Deleted while holding the lock, so a second cleaner skips it instead of racing this one.
            removed.append(_remove(path))
        finally:
            os.close(fd)
    return [p for p in removed if p is not None]


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _remove(path: Path) -> Path | None:
    if not path.exists():
        return None  # its owner finished and deleted it meanwhile
    size = 0
    for item in path.rglob("*"):
        try:
            size += item.lstat().st_size
        except OSError:
            continue
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        return None
    logger.warning("removed %s (%.1f MB), left behind by an interrupted run", path, size / 1e6)
    return path
