"""The backup action behind run_backup_now.py and the scheduler's daily backup."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from angles import __version__
from angles.engines import backup_format as snapshot
from angles.engines.decision_model import parse_timestamp, utc_now
from angles.errors import AnglesError, DatabaseError
from angles.logs import Redactor, redactor
from angles.services.git_remote import PUSH_ATTEMPTS, BackupClone, BackupRemote, RemoteMovedError, backup_lock
from angles.storage import open_storage

logger = logging.getLogger(__name__)

CLONE_DIR = "backup-repo"
# Inside the clone's .git folder (never committed): files this code wrote after its token-shape scan.
SCANNED = "angles-scanned.json"
# Activity grows with every job run; alone it is committed at most once a day so "nothing changed" stays quiet.
ACTIVITY_ONLY_EVERY = timedelta(hours=24)


def run_backup(settings, *, dry_run: bool = False) -> dict:
    """Export every table into the backup clone, commit when something changed, push without force."""
    started = utc_now()
    clock = time.monotonic()
    suffix = " (dry run)" if dry_run else ""
    with component_log(settings, "backup"), open_storage(settings, create=False) as storage:
        logger.info(
            "backup started%s: remote %s, branch %s", suffix, BackupRemote(settings).describe(), settings.backup_branch
        )
        try:
            result = _dry_run(settings, storage) if dry_run else _backup(settings, storage)
        except AnglesError as exc:
            if not dry_run:
                message = redactor()(str(exc))
                record_run(settings, storage, "backup", "failed", f"failed: {message}", started, clock)
                store_state(storage, "backup.last", {"time": started, "result": "failed", "error": message})
                append_history(settings, f"backup failed (exit {exc.exit_code}): {message}")
            raise
        result.update(dry_run=dry_run, duration_s=round(time.monotonic() - clock, 3), exit_code=0)
        for redaction in result["redactions"]:
            logger.warning(
                "a %s record (id %s) contained a secret; redacted in the backup only (fields: %s)",
                redaction["table"],
                redaction["id"],
                ", ".join(redaction["fields"]),
            )
        logger.info("backup completed%s: %s", suffix, summary(result))
        if not dry_run:
            record_run(settings, storage, "backup", "completed", summary(result), started, clock)
            store_state(
                storage,
                "backup.last",
                {
                    "time": started,
                    "result": result["result"],
                    "commit": result["commit"],
                    "decisions": result["decisions"],
                },
            )
            append_history(settings, f"backup completed: {summary(result)}")
    return result


def summary(result: dict) -> str:
    delta = f"(+{result['added']} ~{result['changed']} -{result['removed']})"
    commit = (result.get("commit") or "none")[:12]
    kinds = {
        "committed": f"commit {commit}, {result['decisions']} decisions {delta}",
        "unchanged": f"unchanged, no commit (last backup {commit}), {result['decisions']} decisions",
        "would commit": f"would commit {result['decisions']} decisions {delta}",
        "would be unchanged": f"nothing changed since {commit}, {result['decisions']} decisions",
    }
    text = kinds[result["result"]]
    if result["redactions"]:
        text += f", {len(result['redactions'])} record(s) redacted"
    return f"{text}, {result.get('duration_s', 0):.1f}s"


def secret_scanner(settings) -> snapshot.SecretScanner:
    return snapshot.SecretScanner(Redactor((*settings.secrets, *redactor().secrets)))


def export(
    storage, directory: Path, scanner: snapshot.SecretScanner, previous: dict | None = None
) -> snapshot.Snapshot:
    """Stream every table into its file in `directory` (atomic renames); the manifest is written by the caller."""
    snap = snapshot.Snapshot(schema_version=storage.schema_version())
    known = (previous or {}).get("files", {})
    scanned = _scanned(directory)
    sources = (
        (snapshot.DECISIONS, storage.iter_decisions(batch=2000)),
        (snapshot.ACTIVITY, storage.iter_activity()),
    )
    for table, records in sources:
        path = directory / table.file
        sha256 = known.get(table.file, {}).get("sha256")
        entry = scanned.get(table.file) or {}
        checked = bool(sha256) and entry == _vouch(sha256, path)
        snap.files[table.file] = snapshot.write_table(
            directory, table, records, scanner, snap.redactions, sha256, shapes_checked=checked
        )
        scanned[table.file] = _vouch(snap.files[table.file]["sha256"], path)
    _keep_scanned(directory, scanned)
    return snap


def _vouch(sha256: str, path: Path) -> dict:
    return {"sha256": sha256, "shapes": snapshot.SHAPES_FINGERPRINT, "stamp": snapshot.file_stamp(path)}


def _scanned(directory: Path) -> dict:
    """Which files in the clone this code wrote after its token-shape scan (see snapshot.write_table)."""
    try:
        return json.loads((directory / ".git" / SCANNED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _keep_scanned(directory: Path, scanned: dict) -> None:
    git_dir = directory / ".git"
    if git_dir.is_dir():
        snapshot.atomic_write(git_dir / SCANNED, json.dumps(scanned, sort_keys=True).encode("utf-8"))


def _backup(settings, storage) -> dict:
    remote = BackupRemote(settings)
    with backup_lock(settings):
        remote.create_default()
        with remote.open_clone(settings.data_dir / CLONE_DIR) as clone:
            return _backup_in(clone, remote, storage, settings)


def _backup_in(clone: BackupClone, remote: BackupRemote, storage, settings) -> dict:
    """Reset to the remote tip, export, commit if changed, push; on a moved remote commit on top and retry."""
    clone.fetch()
    clone.reset_to_remote()
    raw = clone.head_file(snapshot.MANIFEST)
    snap = export(storage, clone.path, secret_scanner(settings), json.loads(raw) if raw else None)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        outcome = _commit_if_changed(clone, snap, now, storage.kind)
        if outcome["result"] == "unchanged":
            break
        try:
            clone.push()
            clone.maintain()
            break
        except RemoteMovedError:
            logger.warning("backup remote moved on (another host pushed); committing on top (attempt %d)", attempt)
            time.sleep(0.2 * attempt)
            clone.fetch()
            clone.move_onto_remote()
    else:
        raise AnglesError(f"could not push the backup: the remote kept moving for {PUSH_ATTEMPTS} attempts")
    outcome.update(attempts=attempt, remote=remote.describe(), branch=remote.branch)
    return outcome


def _commit_if_changed(clone: BackupClone, snap: snapshot.Snapshot, now: str, database: str) -> dict:
    raw = clone.head_file(snapshot.MANIFEST)
    previous = json.loads(raw) if raw else None
    _refuse_empty(snap, previous)
    outcome = _outcome(snap, previous)
    outcome["commit"] = clone.head()
    # A decisions file that differs from HEAD although the manifests agree, or an activity file at HEAD that
    # differs from its manifest entry, means the remote does not match its own manifest (damaged or edited
    # by hand): commit the repair.
    if (
        _unchanged(snap, previous)
        and not clone.modified(snapshot.DECISIONS.file)
        and _head_matches_manifest(clone, previous, snapshot.ACTIVITY)
    ):
        outcome["result"] = "unchanged"
        return outcome
    new_path = clone.path / snapshot.DECISIONS.file
    with open(new_path, "rb") as handle:
        added, changed, removed = snapshot.diff_counts(
            clone.head_lines(snapshot.DECISIONS.file), snapshot.iter_lines(snapshot.read_chunks(handle))
        )
    snapshot.write_manifest(clone.path, snap.manifest(now, __version__, database))
    message = f"backup {now}: {outcome['decisions']} decisions (+{added} ~{changed} -{removed})"
    if outcome["activity_rows"]:
        message += f", {outcome['activity_rows']} activity rows"
    outcome.update(added=added, changed=changed, removed=removed, message=message, result="committed")
    outcome["commit"] = clone.commit(message)
    return outcome


def _head_matches_manifest(clone: BackupClone, manifest: dict, table: snapshot.Table) -> bool:
    """Whether the file committed at HEAD is the one its manifest describes (an unlisted file is not checked)."""
    meta = (manifest.get("files") or {}).get(table.file)
    if meta is None:
        return True
    data = clone.head_file(table.file)
    return data is not None and hashlib.sha256(data).hexdigest() == meta.get("sha256")


def _refuse_empty(snap: snapshot.Snapshot, previous: dict | None) -> None:
    """An empty export over a backup that holds decisions is almost always a wrong DATABASE_URL."""
    held = ((previous or {}).get("files", {}).get(snapshot.DECISIONS.file) or {}).get("rows") or 0
    if held and not snap.rows(snapshot.DECISIONS):
        raise AnglesError(
            f"refusing to back up 0 decisions over a backup that holds {held}: the database looks empty "
            "or missing (check DATABASE_URL); the last backup is kept as it is"
        )


def _outcome(snap: snapshot.Snapshot, previous: dict | None) -> dict:
    return {
        "decisions": snap.rows(snapshot.DECISIONS),
        "activity_rows": snap.rows(snapshot.ACTIVITY),
        "added": 0,
        "changed": 0,
        "removed": 0,
        "redactions": snap.redactions,
        "files": snap.files,
        "previous_backup_at": previous.get("created_at") if previous else None,
        "message": None,
    }


def _unchanged(snap: snapshot.Snapshot, previous: dict | None) -> bool:
    if not previous or previous.get("schema_version") != snap.schema_version:
        return False
    if not snapshot.same_data(snap, previous, (snapshot.DECISIONS,)):
        return False
    if snapshot.same_data(snap, previous):
        return True
    try:
        age = datetime.now(UTC) - parse_timestamp(previous.get("created_at") or "")
    except ValueError:
        return False
    return age < ACTIVITY_ONLY_EVERY


def _dry_run(settings, storage) -> dict:
    """Export into a temporary folder and compare with the last backup this host knows; write nothing."""
    remote = BackupRemote(settings)
    tip = remote.check()
    clone = remote.existing_clone(settings.data_dir / CLONE_DIR)
    try:
        with tempfile.TemporaryDirectory(prefix="angles-backup-dry-run-") as tmp:
            outcome = _compare(clone, Path(tmp), storage, settings)
    finally:
        if clone is not None:
            clone.close()
    outcome.update(
        remote=remote.describe(), branch=remote.branch, remote_tip=tip, remote_exists=remote.exists_locally, attempts=0
    )
    return outcome


def _compare(clone: BackupClone | None, directory: Path, storage, settings) -> dict:
    snap = export(storage, directory, secret_scanner(settings))
    raw = clone.head_file(snapshot.MANIFEST) if clone else None
    previous = json.loads(raw) if raw else None
    outcome = _outcome(snap, previous)
    outcome["commit"] = clone.head() if clone else None
    if _unchanged(snap, previous):
        outcome["result"] = "would be unchanged"
        return outcome
    old = clone.head_lines(snapshot.DECISIONS.file) if clone else iter(())
    with open(directory / snapshot.DECISIONS.file, "rb") as handle:
        added, changed, removed = snapshot.diff_counts(old, snapshot.iter_lines(snapshot.read_chunks(handle)))
    outcome.update(added=added, changed=changed, removed=removed, result="would commit")
    return outcome


def record_run(settings, storage, action: str, status: str, details: str, started: str, clock: float) -> None:
    """One agent_activity row per run; a database that cannot take it never fails the backup."""
    try:
        if storage.schema_version() is None:
            logger.info("no schema in %s yet; %s run not recorded in agent_activity", storage.describe(), action)
            return
        storage.record_activity(
            action,
            action,
            status,
            redactor()(details),
            started_at=started,
            finished_at=utc_now(),
            duration_s=round(time.monotonic() - clock, 3),
            host=socket.gethostname(),
        )
    except DatabaseError as exc:
        logger.warning("could not record the %s run in agent_activity: %s", action, exc)


def store_state(storage, key: str, value: dict) -> None:
    """The health check reads backup.last and backup.last_verified from here."""
    try:
        if storage.schema_version() is None:
            return
        storage.set_state(key, json.dumps(value, sort_keys=True))
    except DatabaseError as exc:
        logger.warning("could not store %s: %s", key, exc)


def append_history(settings, text: str) -> None:
    """One line per run in logs/backup.log, the history the operations guide tails."""
    path = settings.logs_dir / "backup.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    line = redactor()(f"{stamp} {text}".replace("\n", " ")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


@contextmanager
def component_log(settings, component: str):
    """Also write logs/active/<component>.log when called from another process (the scheduler)."""
    from angles.logs import LOG_FORMAT, RedactingFilter, ReopeningFileHandler, UTCFormatter

    path = settings.active_logs_dir / f"{component}.log"
    root = logging.getLogger()
    if any(getattr(h, "baseFilename", None) == str(path) for h in root.handlers):
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = ReopeningFileHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(UTCFormatter(LOG_FORMAT))
    # The scheduler runs other jobs in other threads meanwhile; their lines belong in their own logs.
    thread = threading.get_ident()
    handler.addFilter(lambda record: record.thread == thread)
    handler.addFilter(RedactingFilter(redactor()))
    package = logging.getLogger("angles")
    package.addHandler(handler)
    try:
        yield
    finally:
        package.removeHandler(handler)
        handler.close()
