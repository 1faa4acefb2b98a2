"""Reading backups back: a verified checkout, drift against the live database, upserts, scratch restores."""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from angles.engines import backup_crypto
from angles.engines import backup_format as snapshot
from angles.engines.decision_model import COLUMNS, parse_timestamp, unstorable_field
from angles.errors import AnglesError
from angles.progress import Start, counted
from angles.scratch import scratch_dir
from angles.services.git_remote import BackupClone, BackupRemote
from angles.storage import migrations

logger = logging.getLogger(__name__)

FIRST_IDS = 5
SPOT_SAMPLE = 100


@dataclass
class Checkout:
    """One backup commit checked out in a throwaway clone, verified against its manifest."""

    clone: BackupClone
    commit: str
    committed_at: str
    manifest: dict

    @property
    def directory(self) -> Path:
        return self.clone.path

    def path(self, table: snapshot.Table) -> Path:
        return self.directory / table.file

    def redacted_fields(self, table: snapshot.Table = snapshot.DECISIONS) -> dict[str, list[str]]:
        """Fields that backups written before credentials were only reported hold as [REDACTED]."""
        return {
            str(r.get("id")): list(r.get("fields") or [])
            for r in self.manifest.get("redactions") or []
            if r.get("table") == table.name
        }


@contextmanager
def verified_checkout(settings, at: str | None = None, *, lines_checked_later: bool = False) -> Iterator[Checkout]:
    """Fetch the remote into a fresh temporary clone, check out the chosen backup, verify every file first.

    With `lines_checked_later` the decisions file's lines are not parsed here (checksum and row count are):
    the caller is a restore into an empty database, which reads every line through restore_lines (or
    iter_records), each refusing a bad one before anything is committed.
    """
    remote = BackupRemote(settings)
    if not remote.exists_locally:
        raise AnglesError(
            f"no backup yet: the local backup remote {remote.describe()} does not exist (run run_backup_now.py first)"
        )
    with scratch_dir("angles-restore-") as tmp, remote.open_clone(tmp / "backup") as clone:
        borrowed = clone.borrow_packs()
        tip = clone.fetch(depth=None if at or borrowed else 1)
        if tip is None:
            raise AnglesError(f"the backup remote {remote.describe()} holds no backup on branch {remote.branch}")
        commit = clone.resolve(at)
        clone.checkout(commit)
        # An encrypted backup is decrypted into its plain file names first; the scratch folder holds them.
        backup_crypto.open_directory(
            clone.path, snapshot.read_manifest(clone.path), settings.backup_passphrase, commit[:12]
        )
        later = (snapshot.DECISIONS.file,) if lines_checked_later else ()
        manifest = snapshot.verify(clone.path, lines_checked_later=later)
        logger.info("backup %s verified: %d files match manifest.json", commit[:12], len(manifest["files"]))
        yield Checkout(clone, commit, clone.commit_time(commit), manifest)


def restores_into_empty(storage) -> bool:
    """Whether a restore would write every backup decision into an empty table, in one transaction."""
    return storage.one_transaction and storage.count_decisions() == 0


def check_schema(checkout: Checkout, storage) -> None:
    """Refuse a backup written by a newer schema than this installation knows."""
    theirs = checkout.manifest.get("schema_version")
    ours = migrations.latest_version(storage.dialect)
    if isinstance(theirs, int) and theirs > ours:
        raise AnglesError(
            f"backup {checkout.commit[:12]} was written by schema version {theirs}, this installation knows "
            f"{ours}; upgrade the code first"
        )


DIGEST_SIZE = 16


def _digest(line: bytes) -> bytes:
    return hashlib.blake2b(line, digest_size=DIGEST_SIZE).digest()


@dataclass
class Drift:
    """Rows only in the backup, rows that differ (some edited live after the backup), rows only live."""

    only_backup: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    newer_live: list[str] = field(default_factory=list)  # changed rows whose live updated_at is the later one
    only_live: list[str] = field(default_factory=list)
    unchanged: int = 0
    live_ids: set[str] = field(default_factory=set)

    def report(self) -> dict:
        def part(ids):
            # nsmallest, not sorted(): a million ids need no full sort for five of them.
            return {"count": len(ids), "first_ids": heapq.nsmallest(FIRST_IDS, ids)}

        return {
            "only_backup": part(self.only_backup),
            "changed": part(self.changed),
            "newer_live": part(self.newer_live),
            "only_live": part(self.only_live),
            "unchanged": self.unchanged,
        }


def drift(checkout: Checkout, storage, bar: Start | None = None) -> Drift:
    """Compare the backup with live decisions, both as canonical lines; a differing row compares updated_at too."""
    # Per id: the digest of the live line followed by its updated_at, which only rows that differ compare.
    live: dict[str, bytes] = {}
    rows = storage.iter_decisions(batch=2000)
    for row in counted(rows, bar("read live", storage.count_decisions()) if bar else None):
        stamp = str(row.get("updated_at") or "").encode()
        live[str(row["id"])] = _digest(snapshot.encode_row(snapshot.DECISIONS, row)) + stamp
    result = Drift(live_ids=set(live))
    expected = checkout.manifest["files"][snapshot.DECISIONS.file].get("rows")
    with open(checkout.path(snapshot.DECISIONS), "rb") as handle:
        lines = snapshot.iter_lines(snapshot.read_chunks(handle))
        for number, line in enumerate(counted(lines, bar("compare", expected) if bar else None), 1):
            key = _line_key(line, number)
            theirs = live.pop(key, None)
            if theirs is None:
                result.only_backup.append(key)
            elif theirs[:DIGEST_SIZE] != _digest(line):
                result.changed.append(key)
                if _later(theirs[DIGEST_SIZE:].decode(), (snapshot.parse_line(line) or {}).get("updated_at")):
                    result.newer_live.append(key)
            else:
                result.unchanged += 1
    result.only_live = list(live)
    return result


def _line_key(line: bytes, number: int) -> str:
    """The id of a decision line; a line verification left unparsed may be no record at all."""
    try:
        return str(snapshot.line_key(line))
    except (ValueError, KeyError, TypeError):
        raise snapshot.bad_line(snapshot.DECISIONS.file, number) from None


def _later(live: str, backup: str | None) -> bool:
    """Whether the live row was updated after the backup's version of it."""
    try:
        return parse_timestamp(live) > parse_timestamp(backup or "")
    except ValueError:
        return False


def restore_rows(
    checkout: Checkout, storage, ids: set[str], live_ids: set[str], skipped: list[str] | None = None
) -> Iterator[dict]:
    """The backup's rows for `ids` (fields an older backup redacted replaced by live values), linked targets first.

    A row no backend can store alike (a NUL character, kept by SQLite before validation refused it) is
    left out with a warning and its id appended to `skipped`: one such row must not fail the whole restore.
    """
    redacted = {key: fields for key, fields in checkout.redacted_fields().items() if key in ids}
    # Read before the write transaction starts, so no backend has to read inside its own upsert.
    live_rows = {key: storage.get_decision(key) for key in redacted}
    rows = _ordered_rows(checkout, ids, redacted, live_rows, [] if skipped is None else skipped)
    return in_link_order(rows, set(live_ids))


_LINK = COLUMNS.index("superseded_by")


def restore_lines(checkout: Checkout, skipped: list[str]) -> Iterator[tuple[bytes, tuple[bytes, ...]] | dict]:
    """Every backup decision for an empty table, linked targets first, each line checked as it is read.

    A plain line (backup_format.plain_fields) goes on as (line, its COPY cells): it holds nothing
    restore_rows would change or refuse. Any other row is parsed and checked like there. A line that is not
    a JSON record with an id raises CorruptBackupError, before the caller commits (verification left these
    lines to this reader). The order is in_link_order's with nothing live: the file is sorted by id, so a
    link to a smaller id points at a row already given unless that row was held back; the few rows linking
    forward (or to a held row) wait until the end and go through in_link_order.
    """
    name = snapshot.DECISIONS.file
    redacted = checkout.redacted_fields()
    held: set[str] = set()
    waiting: list[bytes] = []
    wanted: set[str] = set()
    present: set[str] = set()
    with open(checkout.path(snapshot.DECISIONS), "rb") as handle:
        for number, line in enumerate(snapshot.iter_lines(snapshot.read_chunks(handle)), 1):
            cells = snapshot.plain_fields(line)
            link = cells and cells[_LINK]
            if cells and _utf8(line) and b"\\" not in cells[0] and (link == snapshot.COPY_NULL or b"\\" not in link):
                key = cells[0].decode()
                target = None if link == snapshot.COPY_NULL else link.decode()
                row: tuple | dict | None = (line, cells) if key not in redacted else json.loads(line)
            else:
                row = snapshot.parse_line(line)
                if row is None:
                    raise snapshot.bad_line(name, number)
                key, target = str(row["id"]), row.get("superseded_by")
                target = None if target is None else str(target)
            if target is not None and (target >= key or target in held):
                waiting.append(line)
                held.add(key)
                wanted.add(target)
                continue
            if isinstance(row, dict):
                row = _checked(row, redacted, skipped)
                if row is None:
                    held.add(key)
                    continue
            yield row
            if key in wanted:
                present.add(key)
    if waiting:
        rows = (_checked(json.loads(line), redacted, skipped) for line in waiting)
        yield from in_link_order((row for row in rows if row is not None), present)


def _utf8(line: bytes) -> bool:
    if line.isascii():
        return True
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _checked(record: dict, redacted: dict, skipped: list[str]) -> dict | None:
    """A parsed backup row for an empty table, or None (logged, id appended to `skipped`) when no backend stores it."""
    key = str(record["id"])
    refused = unstorable_field(record)
    if refused:
        logger.warning("decision %s is not restored: its %s %s", key, *refused)
        skipped.append(key)
        return None
    if key in redacted:
        logger.warning(
            "decision %s is restored with redacted fields (%s): it is not in the live database",
            key,
            ", ".join(redacted[key]),
        )
    return record


def _ordered_rows(
    checkout: Checkout, ids: set[str], redacted: dict, live_rows: dict, skipped: list[str]
) -> Iterator[dict]:
    for record in snapshot.iter_records(checkout.path(snapshot.DECISIONS)):
        key = str(record["id"])
        if key not in ids:
            continue
        refused = unstorable_field(record)
        if refused:
            logger.warning("decision %s is not restored: its %s %s", key, *refused)
            skipped.append(key)
            continue
        if key in redacted:
            live = live_rows.get(key)
            if live is not None:
                for name in redacted[key]:
                    record[name] = live.get(name)
            else:
                logger.warning(
                    "decision %s is restored with redacted fields (%s): it is not in the live database",
                    key,
                    ", ".join(redacted[key]),
                )
        yield record


def restore_decisions(
    checkout: Checkout,
    storage,
    found: Drift,
    *,
    prune: bool = False,
    prefer_backup: bool = False,
    bar: Start | None = None,
    on_replace: Callable[[dict], None] | None = None,
) -> dict:
    """Upsert the missing and changed rows by id and, with prune, delete the rows only live: one transaction.

    A row edited live after the backup keeps its live version unless `prefer_backup`. A live decision the
    restore replaces keeps its version before in its history (source "restore"); `on_replace` is handed each
    live row the restore overwrites or deletes, before the write. The backup's history and links that the
    database lacks come back too.
    """
    migrations.migrate(storage)
    kept = set() if prefer_backup else set(found.newer_live)
    replaced = [key for key in found.changed if key not in kept]
    doomed = list(found.only_live) if prune else []
    _refuse_broken_links(storage, kept, set(doomed))
    if on_replace is not None:
        for key in (*replaced, *doomed):
            old = storage.get_decision(key)
            if old is not None:
                on_replace(old)
    written = pruned = 0
    skipped: list[str] = []
    if not found.live_ids and found.only_backup:
        # An empty table takes every backup row: no id set to build, and lines a backend can copy as they are.
        count = len(found.only_backup)
        rows = counted(restore_lines(checkout, skipped), bar("restore", count) if bar else None)
        written = storage.restore_lines(rows, source="restore")
        ids = found.only_backup
    else:
        ids = set(found.only_backup) | set(replaced)
        if ids or doomed:
            rows = restore_rows(checkout, storage, ids, found.live_ids, skipped) if ids else iter(())
            rows = counted(rows, bar("restore", len(ids)) if bar else None)
            written, pruned = storage.upsert_and_prune(rows, doomed, source="restore")
    if written:
        storage.refresh_search_statistics()
    return {
        "upserted": len(ids) - len(skipped),
        "written": written,
        "pruned": pruned,
        "kept_newer": len(kept),
        "skipped": sorted(skipped),
        **restore_history_and_links(checkout, storage),
    }


def _refuse_broken_links(storage, kept: set[str], doomed: set[str]) -> None:
    """A kept live row may link to a row only live; pruning that row would break the link: refuse before writing."""
    if not kept or not doomed:
        return
    for key in sorted(kept):
        target = (storage.get_decision(key) or {}).get("superseded_by")
        if target and str(target) in doomed:
            raise AnglesError(
                f"--prune would delete decision {target}, which decision {key} (edited after the backup, so kept) "
                "links to as superseded_by; add --prefer-backup to restore the backup's version of it, or edit it first"
            )


def restore_history_and_links(checkout: Checkout, storage) -> dict:
    """Store the backup's history rows and links that are not in the database (a backup older than them has none)."""
    counts = {}
    for table, write in ((snapshot.HISTORY, storage.upsert_history), (snapshot.LINKS, storage.upsert_links)):
        present = table.file in checkout.manifest["files"]
        counts[f"{table.name.removeprefix('decision_')}_restored"] = (
            write(snapshot.iter_records(checkout.path(table))) if present else 0
        )
    return counts


def scratch_restore(checkout: Checkout) -> dict:
    """Restore every decision into a new SQLite database and compare counts and the re-exported file."""
    from angles.storage.sqlite import SQLiteStorage

    expected = checkout.manifest["files"][snapshot.DECISIONS.file]
    with scratch_dir("angles-drill-") as tmp, SQLiteStorage(tmp / "drill.db") as db:
        migrations.migrate(db)
        records = snapshot.iter_records(checkout.path(snapshot.DECISIONS))
        db.upsert_decisions(in_link_order(records), atomic=True)
        count = db.count_decisions()
        digest = hashlib.sha256()
        for row in db.iter_decisions(batch=2000):
            digest.update(snapshot.encode_row(snapshot.DECISIONS, row))
    return {
        "rows_expected": expected["rows"],
        "rows_restored": count,
        "counts_match": count == expected["rows"],
        "identical": digest.hexdigest() == expected["sha256"],
    }


def in_link_order(records: Iterator[dict], present: set[str] | None = None) -> Iterator[dict]:
    """Rows ordered so a superseded_by target is written before the row pointing at it.

    Each row is written once (a second write would fire Postgres's updated_at trigger); only rows whose
    target never arrives (a cycle, or a dangling link the database will refuse) go in first without the
    link and get it in a second write at the end.
    """
    present = set() if present is None else present
    waiting: dict[str, list[dict]] = {}

    def admit(record: dict) -> Iterator[dict]:
        ready = [record]
        while ready:
            row = ready.pop()
            yield row
            key = str(row["id"])
            present.add(key)
            ready.extend(waiting.pop(key, ()))

    for record in records:
        target = record.get("superseded_by")
        if target and str(target) not in present:
            waiting.setdefault(str(target), []).append(record)
        elif waiting:
            yield from admit(record)
        else:
            # Nothing waits for a target (the usual case): no per-row generator needed.
            yield record
            present.add(str(record["id"]))
    leftovers = [row for group in waiting.values() for row in group]
    for row in leftovers:
        yield {**row, "superseded_by": None}
    yield from leftovers


def spot_check(checkout: Checkout, storage, sample: int = SPOT_SAMPLE) -> dict:
    """Compare an even sample of backup rows with the live rows of the same ids."""
    total = checkout.manifest["files"][snapshot.DECISIONS.file]["rows"]
    step = max(1, total // sample) if total else 1
    checked = missing = different = 0
    differing: list[str] = []
    with open(checkout.path(snapshot.DECISIONS), "rb") as handle:
        for number, line in enumerate(snapshot.iter_lines(snapshot.read_chunks(handle))):
            if number % step:
                continue
            key = str(snapshot.line_key(line))
            live = storage.get_decision(key)
            checked += 1
            if live is None:
                missing += 1
                differing.append(key)
                continue
            ours = snapshot.encode_row(snapshot.DECISIONS, live)
            if ours != line:
                different += 1
                differing.append(key)
    return {"sampled": checked, "missing_live": missing, "different": different, "first_ids": differing[:FIRST_IDS]}
