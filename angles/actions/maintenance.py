"""Log rotation and cleanup: the weekly and daily housekeeping jobs of the scheduler."""

from __future__ import annotations

import errno
import gzip
import logging
import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

logger = logging.getLogger(__name__)

MB = 1024 * 1024
SLOT_RETENTION_DAYS = 7
HISTORY_ARCHIVE_NAME = "backup-history.log"
POINTER = "history before this line:"


def run_rotate_logs(settings, *, only_larger_than: float | None = None) -> dict:
    """Move logs/active/*.log and logs/backup.log to logs/archive/YYYY-MM-DD/; writers reopen on their next line.

    logs/backup.log starts again with one line saying where the earlier history went, so `tail` finds the way.
    """
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    archive = settings.logs_dir / "archive" / day
    rotated = []
    logs = [(path, path.name) for path in sorted(settings.active_logs_dir.glob("*.log"))]
    # Archived under another name: logs/active/backup.log is the backup's own log, not this history.
    logs.append((settings.backup_history_log, HISTORY_ARCHIVE_NAME))
    for path, name in logs:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        if size == 0 or (only_larger_than is not None and size <= only_larger_than):
            continue
        if name == HISTORY_ARCHIVE_NAME and _only_pointer(path, size):
            continue
        archive.mkdir(parents=True, exist_ok=True)
        target = _free_name(archive, name)
        _move(path, target)
        rotated.append({"file": path.name, "to": str(target.relative_to(settings.logs_dir)), "bytes": size})
        if path == settings.backup_history_log:
            _append(path, f"{POINTER} {target.relative_to(settings.logs_dir.parent)}")
    logger.info("log rotation completed: %d file(s) moved to logs/archive/%s", len(rotated), day)
    return {"rotated": rotated, "archive": str(archive), "exit_code": 0}


def run_cleanup(settings) -> dict:
    """Delete old exports, gzip old archived logs, keep logs/archive under its size bound, rotate oversized logs."""
    now = time.time()
    oversized = run_rotate_logs(settings, only_larger_than=settings.log_max_mb * MB)["rotated"]
    deleted = _delete_old_exports(settings.export_dir, now - settings.export_retention_days * 86400)
    archive = settings.logs_dir / "archive"
    gzipped = _gzip_old_logs(archive, now - settings.log_gzip_days * 86400)
    pruned = _bound_archive(archive, int(settings.log_archive_max_mb * MB))
    slots = _prune_slots(settings)
    _refresh_search_statistics(settings)
    logger.info(
        "cleanup completed: %d export(s) deleted, %d log(s) gzipped, %d archive(s) pruned, %d oversized log(s) "
        "rotated, %d old job slot claim(s) forgotten",
        len(deleted),
        len(gzipped),
        len(pruned),
        len(oversized),
        slots,
    )
    return {
        "exports_deleted": deleted,
        "logs_gzipped": gzipped,
        "archives_pruned": pruned,
        "oversized_rotated": [r["file"] for r in oversized],
        "slots_pruned": slots,
        "exit_code": 0,
    }


def _only_pointer(path: Path, size: int) -> bool:
    """Whether the history holds nothing since the last rotation but the line pointing at the archive."""
    if size > 4096:
        return False
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return len(lines) == 1 and POINTER in lines[0]


def _append(path: Path, text: str) -> None:
    # O_APPEND, as the history's writer does: a line it adds meanwhile is never overwritten.
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{stamp} {text}\n".encode())
    finally:
        os.close(fd)


def _prune_slots(settings) -> int:
    # A claim only matters while its slot could still run; a week is far past any catch-up or failover.
    from angles.engines.decision_model import to_iso
    from angles.storage import open_storage

    before = to_iso(datetime.now(UTC) - timedelta(days=SLOT_RETENTION_DAYS))
    with open_storage(settings, create=False) as storage:
        if storage.schema_version() is None:
            return 0
        return storage.prune_slots(before)


def _refresh_search_statistics(settings) -> None:
    # Which words are rare guides the duplicate check and similarity lookups; a day's new decisions shift it.
    from angles.errors import AnglesError
    from angles.storage import migrations, open_storage

    try:
        with open_storage(settings, create=False) as storage:
            if (storage.schema_version() or 0) >= migrations.latest_version(storage.dialect):
                storage.refresh_search_statistics()
    except AnglesError as exc:
        logger.warning("search statistics not refreshed: %s", exc)


def _free_name(folder: Path, name: str) -> Path:
    # A second rotation on the same day keeps the first: scheduler.log, scheduler.2.log, scheduler.3.log ...
    target = folder / name
    stem, suffix = os.path.splitext(name)
    n = 2
    while target.exists() or target.with_name(target.name + ".gz").exists():
        target = folder / f"{stem}.{n}{suffix}"
        n += 1
    return target


def _move(source: Path, target: Path) -> None:
    # A rename keeps the inode, so a writer still holding the old file finishes its line there, not in the void.
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.move(source, target)


def _delete_old_exports(export_dir: Path, cutoff: float) -> list[str]:
    files = [p for p in export_dir.rglob("*.json") if p.is_file()]
    if not files:
        return []
    newest = max(files, key=lambda p: p.stat().st_mtime)
    deleted = []
    for path in files:
        # The newest export stays whatever its age: a vault that has been quiet for a month still has one.
        if path != newest and path.stat().st_mtime < cutoff:
            path.unlink()
            deleted.append(str(path.relative_to(export_dir)))
    return deleted


def _gzip_old_logs(archive: Path, cutoff: float) -> list[str]:
    done = []
    for path in sorted(archive.rglob("*.log")):
        stat = path.stat()
        if stat.st_mtime >= cutoff:
            continue
        target = path.with_name(path.name + ".gz")
        partial = path.with_name(path.name + ".gz.partial")
        with path.open("rb") as src, gzip.open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
        os.utime(partial, (stat.st_atime, stat.st_mtime))
        os.replace(partial, target)
        path.unlink()
        done.append(str(target.relative_to(archive)))
    return done


def _bound_archive(archive: Path, limit: int) -> list[str]:
    files = sorted((p for p in archive.rglob("*") if p.is_file()), key=lambda p: p.stat().st_mtime)
    total = sum(p.stat().st_size for p in files)
    pruned = []
    for path in files:
        if total <= limit:
            break
        total -= path.stat().st_size
        path.unlink()
        pruned.append(str(path.relative_to(archive)))
    for folder in sorted((p for p in archive.glob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    if pruned:
        logger.warning("logs/archive exceeded %.0f MB: deleted the %d oldest file(s)", limit / MB, len(pruned))
    return pruned
