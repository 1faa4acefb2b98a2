"""The backup action behind run_backup_now.py and the scheduler's daily backup."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from angles import __version__
from angles.engines import backup_format as snapshot
from angles.engines.decision_model import parse_timestamp
from angles.errors import AnglesError
from angles.files import atomic_write
from angles.logs import redactor
from angles.progress import Start, counted, progress_bar
from angles.runs import append_history, component_log, recorded_run, store_state
from angles.services.git_remote import PUSH_ATTEMPTS, BackupClone, BackupRemote, RemoteMovedError, backup_lock
from angles.storage import open_storage

logger = logging.getLogger(__name__)

CLONE_DIR = "backup-repo"
# Inside the clone's .git folder (never committed): files this code wrote after its token-shape scan.
SCANNED = "angles-scanned.json"
# Activity grows with every job run; alone it is committed at most once a day so "nothing changed" stays quiet.
ACTIVITY_ONLY_EVERY = timedelta(hours=24)


def run_backup(settings, *, dry_run: bool = False, progress: bool = False) -> dict:
    """Export every table into the backup clone, commit when something changed, push without force."""
    suffix = " (dry run)" if dry_run else ""
    with (
        component_log(settings, "backup"),
        open_storage(settings, create=False) as storage,
        recorded_run(settings, "backup", "backup", storage=storage, record=not dry_run) as run,
        progress_bar(progress) as bar,
    ):
        logger.info(
            "backup started%s: remote %s, branch %s", suffix, BackupRemote(settings).describe(), settings.backup_branch
        )
        try:
            result = _dry_run(settings, storage, bar) if dry_run else _backup(settings, storage, bar)
        except AnglesError as exc:
            if not dry_run:
                message = redactor()(str(exc))
                store_state(storage, "backup.last", {"time": run.started, "result": "failed", "error": message})
                append_history(settings, f"backup failed (exit {exc.exit_code}): {message}")
            raise
        result.update(dry_run=dry_run, duration_s=run.duration_s, exit_code=0)
        for redaction in result["redactions"]:
            logger.warning(
                "a %s record (id %s) contained a secret; redacted in the backup only (fields: %s)",
                redaction["table"],
                redaction["id"],
                ", ".join(redaction["fields"]),
            )
        logger.info("backup completed%s: %s", suffix, summary(result))
        if not dry_run:
            run.finish("completed", summary(result))
            store_state(
                storage,
                "backup.last",
                {
                    "time": run.started,
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


def export(
    storage, directory: Path, scanner: snapshot.SecretScanner, previous: dict | None = None, bar: Start | None = None
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
        if bar is not None:
            phase, total = (
                ("decisions", storage.count_decisions()) if table is snapshot.DECISIONS else ("activity", None)
            )
            records = counted(records, bar(phase, total))
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
        atomic_write(git_dir / SCANNED, json.dumps(scanned, sort_keys=True).encode("utf-8"))


def _backup(settings, storage, bar: Start | None) -> dict:
    remote = BackupRemote(settings)
    with backup_lock(settings):
        remote.create_default()
        with remote.open_clone(settings.data_dir / CLONE_DIR) as clone:
            return _backup_in(clone, remote, storage, settings, bar)


def _backup_in(clone: BackupClone, remote: BackupRemote, storage, settings, bar: Start | None) -> dict:
    """Reset to the remote tip, export, commit if changed, push; on a moved remote commit on top and retry."""
    clone.fetch()
    clone.reset_to_remote()
    raw = clone.head_file(snapshot.MANIFEST)
    snap = export(storage, clone.path, snapshot.secret_scanner(settings), json.loads(raw) if raw else None, bar)
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
    # A decisions file that differs from HEAD although the manifests agree means the remote's copy
    # does not match its own manifest (damaged or edited by hand): commit the repair.
    if _unchanged(snap, previous) and not clone.modified(snapshot.DECISIONS.file):
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


def _dry_run(settings, storage, bar: Start | None) -> dict:
    """Export into a temporary folder and compare with the last backup this host knows; write nothing."""
    remote = BackupRemote(settings)
    tip = remote.check()
    clone = remote.existing_clone(settings.data_dir / CLONE_DIR)
    try:
        with tempfile.TemporaryDirectory(prefix="angles-backup-dry-run-") as tmp:
            outcome = _compare(clone, Path(tmp), storage, settings, bar)
    finally:
        if clone is not None:
            clone.close()
    outcome.update(
        remote=remote.describe(), branch=remote.branch, remote_tip=tip, remote_exists=remote.exists_locally, attempts=0
    )
    return outcome


def _compare(clone: BackupClone | None, directory: Path, storage, settings, bar: Start | None) -> dict:
    snap = export(storage, directory, snapshot.secret_scanner(settings), bar=bar)
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
