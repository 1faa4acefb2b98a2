"""The deployment checklist behind verify_deployment.py: one PASS/WARN/FAIL line with a fix hint per check."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable

from angles.engines.decision_model import parse_timestamp, utc_now
from angles.logs import redactor

logger = logging.getLogger(__name__)

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
BACKUP_CHECK_TIMEOUT = 20.0
CORE_MODULES = ("requests", "psutil", "git", "dotenv", "flask", "waitress", "rich")
HEARTBEAT_STALE_SECONDS = 180  # the monitor's SCHEDULER_STALE_SECONDS default


def run_verify_deployment(settings) -> dict:
    """Run every check, write logs/active/verification_results.json, exit 0 when nothing FAILs."""
    from angles.files import atomic_write

    checks: list[dict] = []
    for check in CHECKS:
        try:
            found = check(settings)
        except Exception as exc:
            logger.exception("check %s crashed", check.__name__)
            found = [_line(check.__name__.removeprefix("check_"), FAIL, f"check crashed: {_error(exc)}", "see logs")]
        checks.extend(found if isinstance(found, list) else [found])
    summary = {status: sum(1 for c in checks if c["status"] == status) for status in (PASS, WARN, FAIL)}
    result = {"checked_at": utc_now(), "summary": summary, "checks": checks, "exit_code": 1 if summary[FAIL] else 0}
    atomic_write(
        settings.active_logs_dir / "verification_results.json", json.dumps(result, indent=2, default=str) + "\n"
    )
    logger.info("verification completed: %d pass, %d warn, %d fail", summary[PASS], summary[WARN], summary[FAIL])
    return result


def _line(check: str, status: str, detail: str, hint: str = "") -> dict:
    return {"check": check, "status": status, "detail": redactor()(detail), "hint": hint if status != PASS else ""}


def _error(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return redactor()(f"{type(exc).__name__}: {first}")


def check_environment(settings) -> dict:
    services = [
        f"database {settings.database_kind}",
        "Notion on" if settings.notion_enabled else "Notion off",
        "OpenAI on" if settings.ai_enabled else "offline AI",
    ]
    return _line("environment", PASS, f"configuration loads ({', '.join(services)})")


def check_env_permissions(settings) -> dict:
    path = settings.home / ".env"
    if not path.exists():
        return _line(".env permissions", PASS, "no .env file: configuration comes from the environment")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return _line(".env permissions", WARN, f".env is mode {mode:03o}: readable by others", "chmod 600 .env")
    return _line(".env permissions", PASS, f".env is mode {mode:03o}")


def check_dependencies(settings) -> list[dict]:
    missing = [name for name in CORE_MODULES if importlib.util.find_spec(name) is None]
    lines = []
    if missing:
        lines.append(_line("dependencies", FAIL, f"missing: {', '.join(missing)}", "pip install -r requirements.txt"))
    else:
        lines.append(_line("dependencies", PASS, f"{len(CORE_MODULES)} core packages importable"))
    needed = {
        "psycopg": settings.database_kind == "postgres",
        "supabase": settings.database_kind == "supabase",
        "notion_client": settings.notion_enabled,
        "openai": settings.ai_enabled,
    }
    absent = [name for name, used in needed.items() if importlib.util.find_spec(name) is None]
    for name in absent:
        status = FAIL if needed[name] else WARN
        lines.append(_line(f"dependency {name}", status, f"{name} is not installed", "pip install -r requirements.txt"))
    return lines


def check_writable_dirs(settings) -> dict:
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
        return _line("writable directories", FAIL, f"cannot write {', '.join(bad)}", "fix ownership: chown -R $USER")
    return _line("writable directories", PASS, "data/, logs/active/, logs/archive/, export/ are writable")


def check_database(settings) -> list[dict]:
    from angles.storage import migrations, open_storage

    lines = []
    try:
        with open_storage(settings, create=False) as storage:
            storage.ping()
            version = storage.schema_version()
            latest = migrations.latest_version(storage.dialect)
            where = storage.describe()
    except Exception as exc:
        lines.append(_line("database", FAIL, f"cannot reach the database: {_error(exc)}", "check DATABASE_URL"))
        version, latest, where = None, None, None
    if where is not None:
        if version is None:
            lines.append(_line("database", FAIL, f"{where}: no schema", "python run_migration.py"))
        elif version < latest:
            lines.append(
                _line("database", FAIL, f"{where}: schema {version}, latest {latest}", "python run_migration.py")
            )
        else:
            lines.append(_line("database", PASS, f"{where}: schema version {version} (current)"))
    if settings.database_kind == "sqlite":
        lines.append(
            _line(
                "production database",
                WARN,
                "not configured: using the embedded SQLite database",
                "set DATABASE_URL (Postgres/Supabase) or SUPABASE_URL and SUPABASE_KEY",
            )
        )
    return lines


def check_notion(settings) -> list[dict]:
    from angles.actions.sync import check_notion as notion_status
    from angles.engines.notion_pages import PROPERTIES

    notion = notion_status(settings)
    if notion["status"] == "off":
        return [_line("Notion", WARN, "not configured: sync is off", "set NOTION_TOKEN and NOTION_DATABASE_ID")]
    if notion["status"] == "fail":
        code = notion.get("http_status")
        if code == 401:
            hint = "check NOTION_TOKEN"
        elif code in (403, 404):
            hint = "check NOTION_DATABASE_ID and share the database with the integration"
        else:
            hint = "check network and NOTION_BASE_URL"
        return [_line("Notion", FAIL, notion["message"], hint)]
    who = f" by the integration {notion['integration']}" if notion.get("integration") else ""
    lines = [_line("Notion", PASS, f"token accepted{who}")]
    problems = []
    if notion["missing"]:
        problems.append(f"missing properties: {', '.join(notion['missing'])}")
    if notion["mistyped"]:
        wrong = [f"{m['property']} is {m['actual']}, not {m['expected']}" for m in notion["mistyped"]]
        problems.append(f"wrong types: {', '.join(wrong)}")
    if problems:
        lines.append(_line("Notion database", WARN, "; ".join(problems), "python memory_sync.py --setup-notion"))
    else:
        lines.append(_line("Notion database", PASS, f"all {len(PROPERTIES)} properties present"))
    return lines


AI_HINTS = {
    "auth": "check OPENAI_API_KEY",
    "not_found": "check OPENAI_MODEL",
    "unreachable": "check network and OPENAI_BASE_URL",
    "rate_limited": "check the OpenAI account's quota, then try again",
}


def check_ai(settings) -> dict:
    from angles.actions.sync import check_ai_status

    ai = check_ai_status(settings)
    if ai["status"] == "off":
        return _line("AI model", WARN, "not configured: offline analysis", "set OPENAI_API_KEY")
    if ai["status"] == "fail":
        return _line(
            "AI model", FAIL, ai["message"], AI_HINTS.get(ai.get("kind"), "check OPENAI_BASE_URL and OPENAI_MODEL")
        )
    return _line("AI model", PASS, ai["message"])


def check_backup_remote(settings) -> list[dict]:
    from angles.errors import AnglesError, BackupAuthError
    from angles.services.git_remote import BackupRemote

    remote = BackupRemote(settings)
    lines = []
    if remote.is_default:
        lines.append(
            _line(
                "backup remote",
                WARN,
                "not configured: backups go to the local bare repository data/backup-remote.git",
                "set BACKUP_REMOTE (or GITHUB_REPO) and GITHUB_TOKEN",
            )
        )
        if not remote.exists_locally:
            return lines
    try:
        remote.check(timeout=BACKUP_CHECK_TIMEOUT)
    except BackupAuthError as exc:
        lines.append(
            _line(
                "backup remote auth",
                FAIL,
                f"credentials refused: {exc}",
                "check GITHUB_TOKEN (repo scope) and GIT_USERNAME",
            )
        )
    except AnglesError as exc:
        lines.append(_line("backup remote auth", FAIL, f"unreachable: {exc}", "check BACKUP_REMOTE, git and network"))
    else:
        lines.append(_line("backup remote auth", PASS, f"{remote.describe()} answers to git ls-remote"))
    return lines


def check_scheduler(settings) -> list[dict]:
    from angles.jobs.history import read_state
    from angles.jobs.locks import lock_path, read_holder
    from angles.locks import is_locked

    hint = "bash deploy/start.sh, or systemctl start angles-scheduler"
    if not is_locked(lock_path(settings)):
        return [_line("scheduler", FAIL, "not running (no process holds data/scheduler.lock)", hint)]
    holder = read_holder(lock_path(settings))
    state = read_state(settings)
    try:
        age = time.time() - parse_timestamp(state["last_tick"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return [_line("scheduler", FAIL, f"pid {holder.get('pid')} holds the lock but writes no state file", hint)]
    if age > HEARTBEAT_STALE_SECONDS:
        return [_line("scheduler", FAIL, f"pid {holder.get('pid')} is stuck: last tick {age:.0f}s ago", hint)]
    role = "leader" if state.get("leader") else "standby"
    lines = [_line("scheduler", PASS, f"pid {holder.get('pid')} running as {role}, last tick {age:.0f}s ago")]
    failing = [name for name, job in state.get("jobs", {}).items() if job.get("last_result") == "failed"]
    if failing:
        lines.append(
            _line(
                "scheduled jobs",
                WARN,
                f"last run failed: {', '.join(failing)}",
                "grep -i error logs/active/scheduler.log",
            )
        )
    return lines


def check_dashboard(settings) -> dict:
    import requests

    host = "127.0.0.1" if settings.health_host in ("0.0.0.0", "") else settings.health_host
    host = f"[{host}]" if ":" in host else host
    url = f"http://{host}:{settings.health_port}/healthz"
    hint = "start it: nohup python tools/health_server.py > /dev/null 2>&1 & (or systemctl start angles-dashboard)"
    try:
        answer = requests.get(url, timeout=3)
    except requests.RequestException:
        return _line("dashboard", FAIL, f"nothing answers on {url}", hint)
    if answer.status_code == 200:
        return _line("dashboard", PASS, f"{url} answers 200")
    return _line("dashboard", FAIL, f"{url} answers HTTP {answer.status_code}", hint)


def check_disk(settings) -> dict:
    usage = shutil.disk_usage(settings.home)
    percent = 100.0 * usage.used / usage.total
    detail = f"{percent:.1f}% used, {usage.free / 1024**3:.1f} GB free"
    if percent >= settings.disk_critical:
        return _line("disk space", FAIL, detail, "free space: python scheduler.py --run-now cleanup")
    if percent >= settings.disk_warning:
        return _line("disk space", WARN, detail, "free space: python scheduler.py --run-now cleanup")
    return _line("disk space", PASS, detail)


def check_logs_for_secrets(settings) -> dict:
    found = []
    for path in sorted(settings.active_logs_dir.glob("*.log")):
        with path.open(encoding="utf-8", errors="replace") as lines:
            for number, text in enumerate(lines, 1):
                if redactor().contains_secret(text):
                    found.append(f"{path.name}:{number}")
    if found:
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        return _line(
            "secrets in logs",
            FAIL,
            f"secret-looking values at {shown}",
            "rotate the exposed credential, then delete or redact those lines",
        )
    return _line("secrets in logs", PASS, "no configured secret or token shape in logs/active/*.log")


CHECKS: tuple[Callable, ...] = (
    check_environment,
    check_env_permissions,
    check_dependencies,
    check_writable_dirs,
    check_database,
    check_notion,
    check_ai,
    check_backup_remote,
    check_scheduler,
    check_dashboard,
    check_disk,
    check_logs_for_secrets,
)
