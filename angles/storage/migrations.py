"""Versioned, checksummed SQL migrations, one transaction each."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from angles.errors import MigrationError
from angles.progress import Start
from angles.storage.base import MIGRATIONS_DIR, Storage

logger = logging.getLogger(__name__)

FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def available(dialect: str) -> list[Migration]:
    """The migrations shipped for one SQL dialect, in version order."""
    found = []
    for path in sorted((MIGRATIONS_DIR / dialect).glob("*.sql")):
        match = FILE_PATTERN.match(path.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), path))
    return found


def latest_version(dialect: str = "sqlite") -> int:
    return max((m.version for m in available(dialect)), default=0)


def pending(storage: Storage) -> list[Migration]:
    """What would run; refuses when an applied migration's file has changed since."""
    applied = {m["version"]: m for m in storage.applied_migrations()}
    todo = []
    for migration in available(storage.dialect):
        done = applied.get(migration.version)
        if done is None:
            todo.append(migration)
        elif done["checksum"] != migration.checksum:
            raise MigrationError(
                f"migration {migration.path.name} was changed after it was applied "
                f"(checksum {done['checksum'][:12]} in the database, {migration.checksum[:12]} on disk); "
                "add a new migration instead"
            )
    return todo


def migrate(storage: Storage, *, dry_run: bool = False, progress: Start | None = None) -> list[Migration]:
    """Apply every pending migration in order; stop at the first failure, leaving it unapplied."""
    todo = pending(storage)
    advance = progress("migrate", len(todo)) if progress and todo and not dry_run else None
    for migration in todo:
        if dry_run:
            logger.info("would apply migration %04d %s (dry run)", migration.version, migration.name)
            continue
        logger.info("applying migration %04d %s", migration.version, migration.name)
        try:
            storage.apply_migration(migration.version, migration.name, migration.checksum, migration.sql)
        except MigrationError:
            raise
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MigrationError(f"migration {migration.path.name} failed and was rolled back: {reason}") from exc
        logger.info("applied migration %04d %s completed", migration.version, migration.name)
        if advance is not None:
            advance()
    return todo


def ensure_current(storage: Storage) -> None:
    """Bring the embedded SQLite schema up to date; a shared database must be migrated deliberately."""
    todo = pending(storage)
    if not todo:
        return
    if storage.kind == "sqlite":
        migrate(storage)
        return
    raise MigrationError(
        f"{storage.describe()} has schema version {storage.schema_version()} and {len(todo)} pending "
        f"migration(s) (latest {todo[-1].version}): run python run_migration.py"
    )
