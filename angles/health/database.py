"""Database connectivity and schema version against the newest shipped migration."""

from __future__ import annotations

from angles.health.base import CRITICAL, OK, WARNING, Check, CheckResult, Context, one_line


class DatabaseCheck(Check):
    name = "database"
    label = "Database"
    timeout_status = CRITICAL

    def run(self, settings, context: Context) -> CheckResult:
        if context.database_missing():
            return self.result(
                WARNING,
                "not created",
                f"database {settings.sqlite_path} does not exist yet: run python run_migration.py",
                {"database_up": 0},
            )
        try:
            storage = context.storage()
            version = storage.schema_version()
            from angles.storage.migrations import latest_version

            latest = latest_version(storage.dialect)
            where = storage.describe()
        except Exception as exc:
            return self.result(CRITICAL, "unreachable", f"database unreachable: {one_line(exc)}", {"database_up": 0})
        metrics = {"database_up": 1, "schema_version": version or 0, "schema_latest": latest}
        value = f"schema {version or 0}/{latest}"
        if version is None:
            return self.result(WARNING, value, f"{where} has no schema yet: run python run_migration.py", metrics)
        if version < latest:
            return self.result(
                WARNING, value, f"schema version {version} is behind {latest}: run python run_migration.py", metrics
            )
        if version > latest:
            return self.result(
                WARNING, value, f"schema version {version} is newer than this code knows ({latest}): update", metrics
            )
        return self.result(OK, value, f"{where} answers, schema version {version} is current", metrics)
