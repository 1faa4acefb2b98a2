"""Backups: the remote answers, the last backup is recent and succeeded, verified, and holds no credential-like text."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from angles.health.base import CRITICAL, FAIL, OK, WARNING, Check, CheckResult, Context, age_hours, one_line
from angles.health.health_file import iso_to_epoch

FAILED_RESULTS = ("failed", "failure", "error", "auth_failed")


def _failed(result) -> bool:
    return str(result or "").lower() in FAILED_RESULTS or "fail" in str(result or "").lower()


def _read_json_state(context: Context, key: str) -> tuple[dict | None, str | None]:
    """A JSON value of the state table, or None with the reason it could not be read."""
    if context.database_missing():
        return None, None
    try:
        raw = context.storage().get_state(key)
    except Exception as exc:
        return None, f"cannot read {key}: {one_line(exc, 150)}"
    if raw is None:
        return None, None
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return None, f"{key} in the state table is not JSON"
    if not isinstance(value, dict):
        return None, f"{key} in the state table is not a JSON object"
    return value, None


def _installed_hours(context: Context) -> float | None:
    """Hours since the first migration ran: how long this deployment has existed."""
    if context.database_missing():
        return 0.0
    try:
        applied = context.storage().applied_migrations()
    except Exception:
        return None
    stamps = [m.get("applied_at") for m in applied if m.get("applied_at")]
    if not stamps:
        return 0.0
    ages = [age_hours(str(s), context.now) for s in stamps]
    ages = [a for a in ages if a is not None]
    return max(ages) if ages else None


# The checklist waits longer for the remote than the monitor: it runs by hand, once.
THOROUGH_TIMEOUT = 20.0


class BackupDestinationCheck(Check):
    """Backups leave the machine: a remote is configured, not only the local default (checklists only)."""

    name = "backup_destination"
    label = "Backup destination"

    def run(self, settings, context: Context) -> CheckResult:
        from angles.logs import redactor

        if settings.backup_remote is None:
            return self.result(
                WARNING,
                "local",
                "not configured: backups go to the local bare repository data/backup-remote.git",
                hint="set BACKUP_REMOTE (or GITHUB_REPO) and GITHUB_TOKEN",
            )
        return self.result(OK, "configured", f"backups go to {redactor()(settings.backup_remote_url)}")


class BackupRemoteCheck(Check):
    name = "backup_remote"
    label = "Backup remote"
    waits = True

    def run(self, settings, context: Context) -> CheckResult:
        if not settings.backup_remote and not Path(settings.backup_remote_url, "HEAD").is_file():
            return self.result(
                OK, "not created", "local backup remote under data/ does not exist yet (the first backup creates it)"
            )
        if shutil.which("git") is None:
            return self.result(
                WARNING,
                "no git",
                "git is not installed: backups cannot run",
                {"backup_remote_up": 0},
                hint="install git (apt-get install git)",
                verdict=FAIL,
            )
        # Imported here, past the cheap answers above, so a fresh install never pays for GitPython.
        from angles.errors import AnglesError, BackupAuthError
        from angles.services.git_remote import BackupRemote

        remote = BackupRemote(settings)
        timeout = THOROUGH_TIMEOUT if context.thorough else settings.health_timeout_seconds
        try:
            tip = remote.check(timeout=timeout)
        except BackupAuthError as exc:
            return self.result(
                WARNING,
                "unreachable",
                f"credentials refused, authentication failed: {one_line(exc, 200)}",
                {"backup_remote_up": 0},
                hint="check GITHUB_TOKEN (repo scope) and GIT_USERNAME",
                verdict=FAIL,
            )
        except AnglesError as exc:
            return self.result(
                WARNING,
                "unreachable",
                f"unreachable: {one_line(exc, 200)}",
                {"backup_remote_up": 0},
                hint="check BACKUP_REMOTE, git and network",
                verdict=FAIL,
            )
        if tip is None:
            reason = f"{remote.describe()} answers; branch {settings.backup_branch} not pushed yet"
        else:
            reason = f"{remote.describe()} answers, branch {settings.backup_branch} exists"
        return self.result(OK, "reachable", reason, {"backup_remote_up": 1})


class BackupAgeCheck(Check):
    name = "backup"
    label = "Backup"

    def run(self, settings, context: Context) -> CheckResult:
        last, problem = _read_json_state(context, "backup.last")
        if problem:
            return self.result(WARNING, "unknown", problem)
        success_time = None
        success_commit = ""
        details = {}
        failed = bool(last) and _failed(last.get("result"))
        if last:
            details = {"time": last.get("time"), "result": last.get("result"), "commit": last.get("commit")}
            # A failed run's state names the last good backup before it (older states do not).
            success = last.get("last_success") if failed else last
            if isinstance(success, dict) and isinstance(success.get("time"), str):
                success_time = success["time"]
                success_commit = str(success.get("commit") or "")[:12]
        if success_time is None:
            from angles.jobs.history import read_state

            job = (read_state(settings).get("jobs") or {}).get("backup") or {}
            if isinstance(job, dict) and isinstance(job.get("last_success"), str):
                success_time = job["last_success"]
        details["last_success"] = success_time
        age = age_hours(success_time, context.now)
        metrics = {}
        if age is not None:
            metrics["backup_age_hours"] = round(age, 2)
            stamp = iso_to_epoch(success_time)
            if stamp is not None:
                metrics["backup_last_success_timestamp"] = stamp
        failures = last.get("failures_since_success") if failed else 0
        failures = failures if isinstance(failures, int) and failures > 0 else 1
        if age is None:
            installed = _installed_hours(context)
            if failed:
                reason = f"no successful backup recorded; {failures} failed, the last at {last.get('time')}"
                return self.result(WARNING, "failed", reason, metrics, details)
            if installed is not None and installed < settings.backup_warning_hours:
                return self.result(
                    OK, "none yet", f"no backup yet; the first is due at {settings.backup_time} UTC", metrics, details
                )
            return self.result(
                WARNING, "none", "no backup has been recorded: run python run_backup_now.py", metrics, details
            )
        value = f"{age:.1f} h ago"
        if age >= settings.backup_critical_hours:
            return self.result(
                CRITICAL,
                value,
                f"last successful backup {age:.1f} h ago (critical after {settings.backup_critical_hours:g} h)",
                metrics,
                details,
            )
        if failed:
            commit = f", commit {success_commit}" if success_commit else ""
            return self.result(
                WARNING,
                value,
                f"last backup failed at {last.get('time')}: {failures} failure(s) since the last good backup "
                f"at {success_time} ({age:.1f} h ago{commit})",
                metrics,
                details,
            )
        if age >= settings.backup_warning_hours:
            return self.result(
                WARNING,
                value,
                f"last successful backup {age:.1f} h ago (warning after {settings.backup_warning_hours:g} h)",
                metrics,
                details,
            )
        commit = str(last.get("commit") or "")[:12] if last else ""
        suffix = f", commit {commit}" if commit else ""
        return self.result(OK, value, f"last backup {age:.1f} h ago succeeded{suffix}", metrics, details)


class BackupVerificationCheck(Check):
    name = "backup_verify"
    label = "Backup verification"

    def run(self, settings, context: Context) -> CheckResult:
        verified, problem = _read_json_state(context, "backup.last_verified")
        if problem:
            return self.result(WARNING, "unknown", problem)
        if not verified:
            installed = _installed_hours(context)
            if installed is not None and installed < settings.verify_warning_hours:
                return self.result(OK, "none yet", "no backup verification yet; the weekly restore drill runs it")
            return self.result(
                WARNING, "never", "no backup has been verified: run python restore_from_github.py --dry-run"
            )
        details = {"time": verified.get("time"), "result": verified.get("result"), "level": verified.get("level")}
        age = age_hours(verified.get("time"), context.now)
        metrics = {}
        if age is not None:
            metrics["backup_verify_age_hours"] = round(age, 2)
        value = f"{age:.1f} h ago" if age is not None else "unknown"
        if _failed(verified.get("result")):
            return self.result(
                WARNING, value, f"last backup verification failed at {verified.get('time')}", metrics, details
            )
        if age is None:
            return self.result(WARNING, value, "last backup verification has no readable time", metrics, details)
        if age >= settings.verify_warning_hours:
            return self.result(
                WARNING,
                value,
                f"last backup verification {age:.1f} h ago (warning after {settings.verify_warning_hours:g} h)",
                metrics,
                details,
            )
        return self.result(OK, value, f"last backup verification {age:.1f} h ago passed", metrics, details)


class CredentialContentCheck(Check):
    name = "credential_content"
    label = "Credentials in decisions"

    def run(self, settings, context: Context) -> CheckResult:
        reported, problem = _read_json_state(context, "backup.credential_like")
        if problem:
            return self.result(WARNING, "unknown", problem)
        # A decision stops counting once edited (its updated_at moved); the next backup reports it again if needed.
        waiting = []
        for record in (reported or {}).get("records") or []:
            live = context.storage().get_decision(str(record.get("id")))
            if live is not None and live.get("updated_at") == record.get("updated_at"):
                waiting.append(str(record["id"]))
        if not waiting:
            return self.result(OK, "none", "no decision in the last backup looks like it holds a credential")
        shown = ", ".join(waiting[:5]) + (f" and {len(waiting) - 5} more" if len(waiting) > 5 else "")
        return self.result(
            WARNING,
            f"{len(waiting)} decision(s)",
            f"{len(waiting)} decision(s) look like they hold a credential (backed up as stored): {shown}; "
            "rotate the credential, then edit the decision",
            {"credential_like_decisions": len(waiting)},
            {"ids": waiting},
        )
