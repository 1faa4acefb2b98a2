"""What only a deployment checklist asks: configuration, .env permissions, packages, folders, secrets in logs."""

from __future__ import annotations

import importlib.util
import os
import stat

from angles.health.base import CRITICAL, OK, WARNING, Check, CheckResult, Context

CORE_MODULES = ("requests", "psutil", "git", "dotenv", "flask", "waitress", "rich")
REQUIREMENTS = "pip install -r requirements.txt"


class EnvironmentCheck(Check):
    name = "environment"
    label = "Environment"

    def run(self, settings, context: Context) -> CheckResult:
        services = [
            f"database {settings.database_kind}",
            "Notion on" if settings.notion_enabled else "Notion off",
            "OpenAI on" if settings.ai_enabled else "offline AI",
        ]
        return self.result(OK, "loaded", f"configuration loads ({', '.join(services)})")


class EnvPermissionsCheck(Check):
    name = "env_permissions"
    label = ".env permissions"

    def run(self, settings, context: Context) -> CheckResult:
        path = settings.home / ".env"
        if not path.exists():
            return self.result(OK, "none", "no .env file: configuration comes from the environment")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            return self.result(
                WARNING, f"{mode:03o}", f".env is mode {mode:03o}: readable by others", hint="chmod 600 .env"
            )
        return self.result(OK, f"{mode:03o}", f".env is mode {mode:03o}")


class DependenciesCheck(Check):
    """The core packages, and the optional ones the configuration uses (a missing unused one is a warning)."""

    name = "dependencies"
    label = "Dependencies"

    def run(self, settings, context: Context) -> CheckResult:
        optional = {
            "psycopg": settings.database_kind == "postgres",
            "supabase": settings.database_kind == "supabase",
            "notion_client": settings.notion_enabled,
            "openai": settings.ai_enabled,
        }
        absent = [name for name in (*CORE_MODULES, *optional) if importlib.util.find_spec(name) is None]
        needed = [name for name in absent if optional.get(name, True)]
        if needed:
            return self.result(CRITICAL, "missing", f"missing: {', '.join(needed)}", hint=REQUIREMENTS)
        if absent:
            return self.result(
                WARNING, "partial", f"not installed (unused now): {', '.join(absent)}", hint=REQUIREMENTS
            )
        return self.result(OK, "ok", f"{len(CORE_MODULES) + len(optional)} packages importable")


class WritableDirsCheck(Check):
    name = "writable_dirs"
    label = "Writable directories"

    def run(self, settings, context: Context) -> CheckResult:
        folders = [settings.data_dir, settings.active_logs_dir, settings.logs_dir / "archive", settings.export_dir]
        bad = []
        for folder in folders:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                probe = folder / f".write-test-{os.getpid()}"
                probe.write_text("ok")
                probe.unlink()
            except OSError:
                bad.append(str(folder.relative_to(settings.home)))
        if bad:
            return self.result(
                CRITICAL, "read-only", f"cannot write {', '.join(bad)}", hint="fix ownership: chown -R $USER"
            )
        return self.result(OK, "ok", "data/, logs/active/, logs/archive/, export/ are writable")


class ProductionDatabaseCheck(Check):
    """A shared database is configured, not only the embedded SQLite file."""

    name = "production_database"
    label = "Production database"

    def run(self, settings, context: Context) -> CheckResult:
        if settings.database_kind == "sqlite":
            return self.result(
                WARNING,
                "embedded",
                "not configured: using the embedded SQLite database",
                hint="set DATABASE_URL (Postgres/Supabase) or SUPABASE_URL and SUPABASE_KEY",
            )
        return self.result(OK, settings.database_kind, f"{settings.database_kind} configured")


class SecretsInLogsCheck(Check):
    name = "secrets_in_logs"
    label = "Secrets in logs"

    def run(self, settings, context: Context) -> CheckResult:
        from angles.logs import redactor

        found = []
        for path in sorted(settings.active_logs_dir.glob("*.log")):
            with path.open(encoding="utf-8", errors="replace") as lines:
                for number, text in enumerate(lines, 1):
                    if redactor().contains_secret(text):
                        found.append(f"{path.name}:{number}")
        if found:
            shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
            return self.result(
                CRITICAL,
                "found",
                f"secret-looking values at {shown}",
                hint="rotate the exposed credential, then delete or redact those lines",
            )
        return self.result(OK, "none", "no configured secret or token shape in logs/active/*.log")
