"""The migrate action behind run_migration.py."""

from __future__ import annotations

import logging

from angles.progress import progress_bar
from angles.storage import migrations, open_storage

logger = logging.getLogger(__name__)


def run_migrate(settings, *, dry_run: bool = False, progress: bool = False) -> dict:
    """Bring the schema up to date (or say what would run); returns a report."""
    with open_storage(settings, create=not dry_run) as storage, progress_bar(progress, "migrations") as bar:
        storage.ping()
        todo = migrations.pending(storage)
        sql = None
        exit_code = 0
        if storage.kind == "supabase":
            if todo:
                sql = "\n".join(f"-- {m.path.name}\n{m.sql}" for m in todo)
                exit_code = 0 if dry_run else 1
        else:
            migrations.migrate(storage, dry_run=dry_run, progress=bar)
        version = storage.schema_version()
        with_nul = storage.ids_with_nul_text()
        if with_nul:
            logger.warning(
                "%d decision(s) hold a NUL character, which PostgreSQL cannot store and a restore there skips: %s",
                len(with_nul),
                ", ".join(with_nul),
            )
        result = {
            "database": storage.describe(),
            "dry_run": dry_run,
            "pending": [{"version": m.version, "name": m.name, "checksum": m.checksum} for m in todo],
            "schema_version": version,
            "latest_version": migrations.latest_version(storage.dialect),
            "sql": sql,
            "nul_text_ids": with_nul,
            "exit_code": exit_code,
        }
    logger.info(
        "migration run completed%s: %d pending, schema version %s",
        " (dry run)" if dry_run else "",
        len(todo),
        version,
    )
    return result
