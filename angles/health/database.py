"""Database connectivity, schema version against the newest shipped migration, and the embedded file's integrity."""

from __future__ import annotations

from pathlib import Path

from angles.health import health_file
from angles.health.base import CRITICAL, FAIL, OK, WARNING, Check, CheckResult, Context, one_line

MIGRATE = "python run_migration.py"

# SQLite's quick_check reads every page, so it runs when the file changed since the last check and at most
# once an hour while it stays intact; the verdict is carried between runs in the snapshot's details.
INTEGRITY_EVERY_S = 3600
# Share of HEALTH_TIMEOUT_SECONDS the quick_check may take before it is left for a later run.
INTEGRITY_BUDGET = 0.5


class DatabaseCheck(Check):
    name = "database"
    label = "Database"
    timeout_status = CRITICAL

    def run(self, settings, context: Context) -> CheckResult:
        from angles.storage.migrations import latest_version

        if context.database_missing():
            return self.result(
                WARNING,
                "not created",
                f"database {settings.sqlite_path} does not exist yet: run {MIGRATE}",
                {"database_up": 0},
                {"database": str(settings.sqlite_path), "schema_version": None, "latest_version": latest_version()},
                hint=MIGRATE,
                verdict=FAIL,
            )
        try:
            storage = context.storage()
            version = storage.schema_version()
            latest = latest_version(storage.dialect)
            where = storage.describe()
            integrity = _integrity(settings, storage, context)
        except Exception as exc:
            return self.result(
                CRITICAL,
                "unreachable",
                f"database unreachable: {one_line(exc)}",
                {"database_up": 0},
                hint="check DATABASE_URL (or SUPABASE_URL and SUPABASE_KEY) and that the server answers",
            )
        metrics = {"database_up": 1, "schema_version": version or 0, "schema_latest": latest}
        details = {"database": where, "schema_version": version, "latest_version": latest}
        if integrity:
            details["integrity"] = integrity
        value = f"schema {version or 0}/{latest}"
        if integrity and integrity.get("problem"):
            return self.result(
                CRITICAL,
                "damaged",
                f"{where} is damaged (quick_check: {one_line(integrity['problem'], 120)}): move it away and restore "
                "with python restore_from_github.py --restore-decisions",
                {**metrics, "database_intact": 0},
                details,
            )
        if integrity:
            metrics["database_intact"] = 1
        if version is None:
            reason = f"{where} has no schema yet: run {MIGRATE}"
            return self.result(WARNING, value, reason, metrics, details, hint=MIGRATE, verdict=FAIL)
        if version < latest:
            reason = f"schema version {version} is behind {latest}: run {MIGRATE}"
            return self.result(WARNING, value, reason, metrics, details, hint=MIGRATE, verdict=FAIL)
        if version > latest:
            reason = f"schema version {version} is newer than this code knows ({latest}): update"
            return self.result(WARNING, value, reason, metrics, details, hint="update this code to the latest version")
        return self.result(OK, value, f"{where} answers, schema version {version} is current", metrics, details)


def _integrity(settings, storage, context: Context) -> dict | None:
    """The embedded file's last quick_check verdict, checked again when due; None for server databases."""
    if settings.database_kind != "sqlite":
        return None
    fingerprint = _fingerprint(Path(settings.sqlite_path))
    now = context.now.timestamp()
    previous = _previous(settings)
    if previous is not None:
        if previous["fingerprint"] == fingerprint:
            return previous
        if previous["problem"] is None and now - previous["checked_at"] < INTEGRITY_EVERY_S:
            return previous
    try:
        problem = storage.check_integrity(settings.health_timeout_seconds * INTEGRITY_BUDGET)
    except TimeoutError as exc:
        # Not known to be damaged; the next run after INTEGRITY_EVERY_S tries again.
        return {"checked_at": now, "fingerprint": None, "problem": None, "skipped": str(exc)}
    return {"checked_at": now, "fingerprint": fingerprint, "problem": problem}


def _fingerprint(path: Path) -> list[int]:
    """Size and change time of the database and its write-ahead log: equal means nothing was written since."""
    out = []
    for part in (path, path.with_name(path.name + "-wal")):
        try:
            stat = part.stat()
            out += [stat.st_size, stat.st_mtime_ns]
        except OSError:
            out += [-1, -1]
    return out


def _previous(settings) -> dict | None:
    doc, _ = health_file.load(health_file.snapshot_path(settings))
    found = (((doc or {}).get("details") or {}).get("database") or {}).get("integrity")
    if not isinstance(found, dict) or not isinstance(found.get("checked_at"), (int, float)):
        return None
    if not isinstance(found.get("fingerprint"), list) or not isinstance(found.get("problem"), (str, type(None))):
        return None
    return found
