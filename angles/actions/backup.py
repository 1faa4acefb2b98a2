"""The backup action behind run_backup_now.py and the scheduler's daily backup."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from angles import __version__
from angles.engines import backup_crypto, credential_scan
from angles.engines import backup_format as snapshot
from angles.engines.backup_crypto import BackupCipher, PassphraseError
from angles.engines.decision_model import parse_timestamp
from angles.errors import AnglesError, DatabaseError
from angles.files import atomic_write
from angles.logs import redactor
from angles.progress import Start, counted, progress_bar
from angles.runs import append_history, component_log, recorded_run, store_state
from angles.scratch import scratch_dir
from angles.services.git_remote import PUSH_ATTEMPTS, BackupClone, BackupRemote, RemoteMovedError, backup_lock
from angles.storage import open_storage

logger = logging.getLogger(__name__)

CLONE_DIR = "backup-repo"
# In the clone's .git folder (never committed): files this code wrote after its token-shape scan, and what it found.
SCANNED = "angles-scanned.json"
# In the clone's .git folder: the plaintext files of an encrypted backup, kept for the next run's comparison.
PLAIN_DIR = "angles-plain"
# Activity grows with every job run; alone it is committed at most once a day so "nothing changed" stays quiet.
ACTIVITY_ONLY_EVERY = timedelta(hours=24)
# State key: the decisions the last backup reported as credential-like, for the health check.
CREDENTIAL_STATE = "backup.credential_like"


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
                store_state(storage, "backup.last", _failure_state(storage, run.started, message))
                append_history(settings, f"backup failed (exit {exc.exit_code}): {message}")
            raise
        result.update(dry_run=dry_run, duration_s=run.duration_s, exit_code=0)
        if result["credential_like"]:
            logger.warning(
                "%d record(s) look like they hold a credential; backed up exactly as stored (rotate the credential, "
                "then edit the record): %s",
                len(result["credential_like"]),
                credential_scan.describe(result["credential_like"]),
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
            store_state(storage, CREDENTIAL_STATE, {"time": run.started, "records": _with_edit_stamps(storage, result)})
            append_history(settings, f"backup completed: {summary(result)}")
    return result


def _failure_state(storage, started: str, message: str) -> dict:
    """backup.last for a failed run, still naming the last good backup and counting the failures since it."""
    state = {"time": started, "result": "failed", "error": message, "failures_since_success": 1}
    try:
        previous = json.loads(storage.get_state("backup.last") or "{}")
    except (DatabaseError, ValueError):
        previous = {}
    if not isinstance(previous, dict):
        return state
    if previous.get("result") == "failed":
        count = previous.get("failures_since_success")
        state["last_success"] = previous.get("last_success")
        state["failures_since_success"] = (count if isinstance(count, int) and count > 0 else 1) + 1
    elif previous.get("time"):
        state["last_success"] = {"time": previous["time"], "commit": previous.get("commit")}
    return state


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
    if result.get("encrypted"):
        text += ", encrypted"
    if result["credential_like"]:
        text += f", {len(result['credential_like'])} record(s) look like they hold a credential"
    return f"{text}, {result.get('duration_s', 0):.1f}s"


def credential_scanner(settings) -> credential_scan.CredentialScanner:
    return credential_scan.CredentialScanner((*settings.secrets, *redactor().secrets))


def _with_edit_stamps(storage, result: dict) -> list[dict]:
    """The decisions reported, each with its updated_at: the health check warns until that changes."""
    records = []
    for record in result["credential_like"]:
        if record["table"] != snapshot.DECISIONS.name:
            continue
        live = storage.get_decision(str(record["id"]))
        records.append({**record, "updated_at": live.get("updated_at") if live else None})
    return records


def export(
    storage,
    directory: Path,
    scanner: credential_scan.CredentialScanner,
    previous: dict | None = None,
    scanned_file: Path | None = None,
    bar: Start | None = None,
) -> snapshot.Snapshot:
    """Stream every table into its file in `directory` (atomic renames); the manifest is written by the caller.

    `scanned_file` keeps, between runs, which of these files this code wrote after its token-shape scan.
    """
    snap = snapshot.Snapshot(schema_version=storage.schema_version())
    known = (previous or {}).get("files", {})
    scanned = _scanned(scanned_file)
    sources = (
        (snapshot.DECISIONS, storage.iter_decisions(batch=2000)),
        (snapshot.ACTIVITY, storage.iter_activity()),
        (snapshot.HISTORY, storage.iter_history()),
        (snapshot.LINKS, storage.iter_links()),
    )
    for table, records in sources:
        if bar is not None:
            phase, total = (
                ("decisions", storage.count_decisions()) if table is snapshot.DECISIONS else ("activity", None)
            )
            records = counted(records, bar(phase, total))
        path = directory / table.file
        sha256 = known.get(table.file, {}).get("sha256")
        entry = dict(scanned.get(table.file) or {})
        reported = entry.pop("reported", [])
        vouched = set(reported) if sha256 and entry == _vouch(sha256, path) else None
        before = len(snap.credential_like)
        snap.files[table.file] = snapshot.write_table(
            directory, table, records, scanner, snap.credential_like, sha256, vouched
        )
        scanned[table.file] = _vouch(snap.files[table.file]["sha256"], path)
        scanned[table.file]["reported"] = [r["id"] for r in snap.credential_like[before:]]
    if scanned_file is not None:
        atomic_write(scanned_file, json.dumps(scanned, sort_keys=True).encode("utf-8"))
    return snap


def _vouch(sha256: str, path: Path) -> dict:
    return {"sha256": sha256, "shapes": credential_scan.SHAPES_FINGERPRINT, "stamp": snapshot.file_stamp(path)}


def _scanned(path: Path | None) -> dict:
    """Which files this code wrote after its token-shape scan (see snapshot.write_table)."""
    if path is None:
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def backup_cipher(settings, previous: dict | None, remote: BackupRemote) -> BackupCipher | None:
    """The key this backup is sealed with: None without BACKUP_PASSPHRASE, the branch's key once it is encrypted."""
    where = f"{remote.describe()} branch {remote.branch}"
    encrypted = bool((previous or {}).get("encryption"))
    if not settings.backup_passphrase:
        if encrypted:
            raise PassphraseError(
                f"the backups on {where} are encrypted but BACKUP_PASSPHRASE is not set: set it "
                "(backups without encryption need another BACKUP_BRANCH)"
            )
        return None
    if encrypted:
        try:
            return BackupCipher.for_manifest(settings.backup_passphrase, previous, where)
        except PassphraseError:
            raise PassphraseError(
                f"BACKUP_PASSPHRASE is not the passphrase the backups on {where} were encrypted with; nothing was "
                "written (a new passphrase needs another BACKUP_BRANCH)"
            ) from None
    logger.info("BACKUP_PASSPHRASE is set: this backup and every later one on %s is encrypted", where)
    return BackupCipher.create(settings.backup_passphrase)


def _previous_plain(clone: BackupClone, plain: Path, previous: dict | None, cipher: BackupCipher) -> dict:
    """Hard links to the plaintext of the last backup's sealed files, where this host still holds it unchanged.

    Sealing is deterministic, so an unchanged line's record is the last backup's record: reusing it spares the
    sealing, and the plaintext spares decrypting the last backup for the commit's counts. Returns, per file
    name, the link and the sha256 of its content.
    """
    if not cipher.same_key(previous):
        return {}
    scanned = _scanned(clone.git_dir / SCANNED)
    found = {}
    for table in snapshot.TABLES:
        meta = (previous.get("files") or {}).get(table.file) or {}
        path = plain / table.file
        entry = scanned.get(table.file) or {}
        ours = entry.get("sha256") == meta.get("sha256") and entry.get("stamp") == snapshot.file_stamp(path)
        sealed = clone.path / backup_crypto.sealed_name(table.file)
        if not (meta.get("sha256") and ours and _sha256_of(sealed) == meta.get("sealed_sha256")):
            continue
        link = path.with_name(path.name + ".prev")
        link.unlink(missing_ok=True)
        os.link(path, link)
        found[table.file] = (link, meta["sha256"])
    return found


def _seal(clone: BackupClone, plain: Path, snap: snapshot.Snapshot, cipher: BackupCipher, previous: dict, prior: dict):
    """Encrypt each plaintext file into <file>.enc in the clone; an unchanged file keeps its committed bytes."""
    for table in snapshot.TABLES:
        meta = snap.files[table.file]
        target = clone.path / backup_crypto.sealed_name(table.file)
        # A plaintext copy committed before encryption was switched on leaves the branch with this commit.
        (clone.path / table.file).unlink(missing_ok=True)
        link, sha256 = prior.get(table.file, (None, None))
        if sha256 == meta["sha256"]:
            meta["sealed_sha256"] = previous["files"][table.file]["sealed_sha256"]
            continue
        with contextlib.ExitStack() as stack:
            lines = snapshot.iter_lines(snapshot.read_chunks(stack.enter_context(open(plain / table.file, "rb"))))
            reuse = ()
            if link is not None:
                old_lines = snapshot.iter_lines(snapshot.read_chunks(stack.enter_context(open(link, "rb"))))
                records = backup_crypto.iter_records(stack.enter_context(open(target, "rb")), target.name)
                reuse = zip(old_lines, records, strict=True)
            meta["sealed_sha256"] = cipher.seal_lines(table.name, lines, target, reuse)


def _sha256_of(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in snapshot.read_chunks(handle):
            digest.update(chunk)
    return digest.hexdigest()


def _head_lines(
    clone: BackupClone | None, previous: dict | None, cipher: BackupCipher | None, prior: dict
) -> Iterator[bytes]:
    """The decisions file of the last backup, line by line: its plaintext kept here, or HEAD's, decrypted if sealed."""
    if clone is None:
        return iter(())
    if not (previous or {}).get("encryption"):
        return clone.head_lines(snapshot.DECISIONS.file)
    link, sha256 = prior.get(snapshot.DECISIONS.file, (None, None))
    if sha256 is not None and sha256 == previous["files"].get(snapshot.DECISIONS.file, {}).get("sha256"):
        return _file_lines(link)
    name = backup_crypto.sealed_name(snapshot.DECISIONS.file)
    data = clone.head_file(name)
    if data is None or cipher is None:
        return iter(())
    return cipher.open_lines(snapshot.DECISIONS.name, io.BytesIO(data), name)


def _file_lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        yield from snapshot.iter_lines(snapshot.read_chunks(handle))


def _diff(clone: BackupClone | None, previous: dict | None, cipher: BackupCipher | None, new: Path, prior: dict):
    """Added, changed and removed decisions against the last backup."""
    try:
        return snapshot.diff_counts(_head_lines(clone, previous, cipher, prior), _file_lines(new))
    except backup_crypto.CorruptEncryptedBackupError as exc:
        logger.warning("%s; this backup replaces it", exc)
    return snapshot.diff_counts(iter(()), _file_lines(new))


def _backup(settings, storage, bar: Start | None) -> dict:
    remote = BackupRemote(settings)
    with backup_lock(settings):
        remote.clear_stale_locks()
        remote.create_default()
        with remote.open_clone(settings.data_dir / CLONE_DIR) as clone:
            return _backup_in(clone, remote, storage, settings, bar)


def _backup_in(clone: BackupClone, remote: BackupRemote, storage, settings, bar: Start | None) -> dict:
    """Reset to the remote tip, export, commit if changed, push; on a moved remote commit on top and retry."""
    base = clone.fetch()
    clone.reset_to_remote()
    raw = clone.head_file(snapshot.MANIFEST)
    previous = json.loads(raw) if raw else None
    cipher = backup_cipher(settings, previous, remote)
    # Encrypted, the plaintext files stay inside .git (never committed) for the next run's comparison.
    plain = clone.path if cipher is None else clone.git_dir / PLAIN_DIR
    plain.mkdir(exist_ok=True)
    prior = _previous_plain(clone, plain, previous, cipher) if cipher is not None else {}
    try:
        return _export_and_push(clone, remote, storage, settings, base, previous, cipher, plain, prior, bar)
    finally:
        for link, _ in prior.values():
            link.unlink(missing_ok=True)


def _export_and_push(
    clone, remote, storage, settings, base, previous, cipher, plain: Path, prior: dict, bar: Start | None
) -> dict:
    snap = export(storage, plain, credential_scanner(settings), previous, clone.git_dir / SCANNED, bar)
    if cipher is not None:
        _seal(clone, plain, snap, cipher, previous, prior)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        outcome = _commit_if_changed(clone, plain, snap, now, storage.kind, cipher, prior)
        if outcome["result"] == "unchanged":
            break
        try:
            clone.push()
            clone.maintain()
            break
        except RemoteMovedError as exc:
            tip = clone.fetch()
            if tip == base:
                # Refused although nothing else landed: a retry would meet the same refusal.
                raise AnglesError(
                    f"the backup remote {remote.describe()} refused the push although no other host pushed: "
                    f"{exc.detail or 'no message from git'}"
                ) from None
            logger.warning("backup remote moved on (another host pushed); committing on top (attempt %d)", attempt)
            time.sleep(0.2 * attempt)
            base = tip
            clone.move_onto_remote()
    else:
        raise AnglesError(f"could not push the backup: the remote kept moving for {PUSH_ATTEMPTS} attempts")
    outcome.update(attempts=attempt, remote=remote.describe(), branch=remote.branch)
    return outcome


def _commit_if_changed(
    clone: BackupClone,
    plain: Path,
    snap: snapshot.Snapshot,
    now: str,
    database: str,
    cipher: BackupCipher | None,
    prior: dict,
) -> dict:
    raw = clone.head_file(snapshot.MANIFEST)
    previous = json.loads(raw) if raw else None
    _refuse_empty(snap, previous)
    outcome = _outcome(snap, previous, cipher)
    outcome["commit"] = clone.head()
    # A decisions file that differs from HEAD although the manifests agree, or an activity file at HEAD that
    # differs from its manifest entry, means the remote does not match its own manifest (damaged or edited
    # by hand): commit the repair.
    stored = snapshot.DECISIONS.file if cipher is None else backup_crypto.sealed_name(snapshot.DECISIONS.file)
    if (
        _unchanged(snap, previous, cipher)
        and not clone.modified(stored)
        and _head_matches_manifest(clone, previous, snapshot.ACTIVITY, cipher)
    ):
        outcome["result"] = "unchanged"
        return outcome
    added, changed, removed = _diff(clone, previous, cipher, plain / snapshot.DECISIONS.file, prior)
    encryption = cipher.meta(snap.files) if cipher is not None else None
    snapshot.write_manifest(clone.path, snap.manifest(now, __version__, database, encryption))
    message = f"backup {now}: {outcome['decisions']} decisions (+{added} ~{changed} -{removed})"
    if outcome["activity_rows"]:
        message += f", {outcome['activity_rows']} activity rows"
    outcome.update(added=added, changed=changed, removed=removed, message=message, result="committed")
    outcome["commit"] = clone.commit(message)
    return outcome


def _head_matches_manifest(
    clone: BackupClone, manifest: dict, table: snapshot.Table, cipher: BackupCipher | None
) -> bool:
    """Whether the file committed at HEAD is the one its manifest describes (an unlisted file is not checked)."""
    meta = (manifest.get("files") or {}).get(table.file)
    if meta is None:
        return True
    if cipher is None:
        name, digest = table.file, "sha256"
    else:
        name, digest = backup_crypto.sealed_name(table.file), "sealed_sha256"
    data = clone.head_file(name)
    return data is not None and hashlib.sha256(data).hexdigest() == meta.get(digest)


def _refuse_empty(snap: snapshot.Snapshot, previous: dict | None) -> None:
    """An empty export over a backup that holds decisions is almost always a wrong DATABASE_URL."""
    held = ((previous or {}).get("files", {}).get(snapshot.DECISIONS.file) or {}).get("rows") or 0
    if held and not snap.rows(snapshot.DECISIONS):
        raise AnglesError(
            f"refusing to back up 0 decisions over a backup that holds {held}: the database looks empty "
            "or missing (check DATABASE_URL); the last backup is kept as it is"
        )


def _outcome(snap: snapshot.Snapshot, previous: dict | None, cipher: BackupCipher | None) -> dict:
    return {
        "encrypted": cipher is not None,
        "decisions": snap.rows(snapshot.DECISIONS),
        "activity_rows": snap.rows(snapshot.ACTIVITY),
        "added": 0,
        "changed": 0,
        "removed": 0,
        "credential_like": snap.credential_like,
        "files": snap.files,
        "previous_backup_at": previous.get("created_at") if previous else None,
        "message": None,
    }


def _unchanged(snap: snapshot.Snapshot, previous: dict | None, cipher: BackupCipher | None) -> bool:
    if not previous or previous.get("schema_version") != snap.schema_version:
        return False
    if bool(previous.get("encryption")) != (cipher is not None):
        return False
    # The manifest lists what looks like a credential; a newly configured secret changes that list.
    if (previous.get("credential_like") or []) != snap.credential_like:
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
        with scratch_dir("angles-backup-dry-run-") as tmp:
            outcome = _compare(clone, remote, tmp, storage, settings, bar)
    finally:
        if clone is not None:
            clone.close()
    outcome.update(
        remote=remote.describe(), branch=remote.branch, remote_tip=tip, remote_exists=remote.exists_locally, attempts=0
    )
    return outcome


def _compare(
    clone: BackupClone | None, remote: BackupRemote, directory: Path, storage, settings, bar: Start | None
) -> dict:
    raw = clone.head_file(snapshot.MANIFEST) if clone else None
    previous = json.loads(raw) if raw else None
    cipher = backup_cipher(settings, previous, remote)
    snap = export(storage, directory, credential_scanner(settings), bar=bar)
    outcome = _outcome(snap, previous, cipher)
    outcome["commit"] = clone.head() if clone else None
    if _unchanged(snap, previous, cipher):
        outcome["result"] = "would be unchanged"
        return outcome
    added, changed, removed = _diff(clone, previous, cipher, directory / snapshot.DECISIONS.file, {})
    outcome.update(added=added, changed=changed, removed=removed, result="would commit")
    return outcome
