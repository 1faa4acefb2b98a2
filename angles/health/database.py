"""Database connectivity and schema version against the newest shipped migration."""

from __future__ import annotations

from angles.health.base import CRITICAL, FAIL, OK, WARNING, Check, CheckResult, Context, one_line

MIGRATE = "python run_migration.py"


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
        value = f"schema {version or 0}/{latest}"
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
