"""Backup and restore under generated interleavings (Hypothesis stateful testing), on a real local bare git remote.

Rules, in any order: the vault changes (add, edit, supersede, soft-delete); a backup runs to completion or
dies at one of its steps (inside the export, before or after the manifest, the commit, the push); a backup
runs against an empty database by mistake; someone tampers with or deletes a file on the remote; a restore
(of the tip or of an older backup, with --prune) runs to completion or dies while it writes.

Invariants: a restore yields exactly the vault of one verified backup or leaves the database untouched; a
killed backup never leaves the remote with a manifest that does not match its files; no backup is ever
blanked by an empty or partial export.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import git
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from angles.actions.backup import run_backup
from angles.actions.restore import run_restore
from angles.config import load_settings
from angles.engines import backup_format as snapshot
from angles.engines.decision_model import TYPES, utc_now, validate
from angles.errors import AnglesError
from angles.services.git_remote import BackupClone
from angles.storage import migrations, open_storage
from tests.conftest import CONFIG_VARS, ROOT
from tests.stateful_world import EXAMPLES, SimulatedCrash, budget, counting_uuid4

# Issue 11, defect 5 (fixed): restore --prune used to delete the live-only rows after the upsert had committed.
# Upsert and prune are one transaction now, so a restore killed while pruning must leave the vault untouched.
PRUNE_IN_ONE_TRANSACTION = True
# Issue 11, defect 6: a restore keeps newer live edits by default once that lands; --prefer-backup (this
# keyword) then takes the backup's version, which is what "exactly the vault of one backup" means here.
PREFER_BACKUP = {"prefer_backup": True} if "prefer_backup" in inspect.signature(run_restore).parameters else {}
PREFER_BACKUP_FLAG = ("--prefer-backup",) if PREFER_BACKUP else ()

# Issue 11, defect 4 (fixed): a backup killed mid-fetch or mid-push left git lock files that failed every later
# backup. The backup clears stale locks itself now, so the real-kill variant leaves them for it.
BACKUP_CLEARS_STALE_LOCKS = True
# Issue 11, defect 1 (fixed): backups rewrote text that looks like a token ("disk-encryption-at-rest" matched
# sk-...) as [REDACTED]. They keep it exactly now, so the rule that writes such ordinary words is on.
BACKUPS_REWRITE_TEXT = False

PICK = st.integers(0, 255)

BACKUP_CRASHES = (
    ("export", "during"),
    ("manifest", "before"),
    ("manifest", "after"),
    ("commit", "before"),
    ("commit", "after"),
    ("push", "before"),
    ("push", "after"),
)


def git_cli(*args, cwd: Path) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **env})
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


def remote_files(remote: Path, commit: str) -> dict[str, bytes]:
    """Every file of one commit of the bare remote."""
    repo = git.Repo(remote)
    try:
        return {
            blob.path: blob.data_stream.read() for blob in repo.commit(commit).tree.traverse() if blob.type == "blob"
        }
    finally:
        repo.close()


def manifest_problem(files: dict[str, bytes]) -> str | None:
    """Why a commit's manifest does not match its files (None when it does), like snapshot.verify."""
    if snapshot.MANIFEST not in files:
        return "no manifest"
    try:
        manifest = json.loads(files[snapshot.MANIFEST])
    except ValueError:
        return "manifest is not JSON"
    for name, meta in manifest.get("files", {}).items():
        data = files.get(name)
        if data is None:
            return f"{name} is missing"
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            return f"{name} does not match its checksum"
        rows = data.count(b"\n")
        if rows != meta["rows"]:
            return f"{name} has {rows} rows, the manifest says {meta['rows']}"
    return None


class BackupWorld(RuleBasedStateMachine):
    """A vault (SQLite) backed up to the default local bare remote under data/."""

    def __init__(self):
        super().__init__()
        self.home = Path(tempfile.mkdtemp(prefix="angles-stateful-backup-"))
        self.settings = load_settings({"ANGLES_HOME": str(self.home)}, dotenv=False)
        self.remote = self.home / "data" / "backup-remote.git"
        self.stack = ExitStack()
        self.stack.enter_context(mock.patch.object(uuid, "uuid4", counting_uuid4()))
        self.storage = open_storage(self.settings)
        self.stack.callback(self.storage.close)
        migrations.migrate(self.storage)
        self.counter = 0
        self.backups: dict[str, list[dict]] = {}  # commit -> the vault it was made from
        self.tampered = False
        self.checked_tip: str | None = None

    def teardown(self):
        self.stack.close()
        shutil.rmtree(self.home, ignore_errors=True)

    # helpers

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def dump(self) -> list[dict]:
        return list(self.storage.iter_decisions())

    def tip(self) -> str | None:
        if not (self.remote / "HEAD").is_file():
            return None
        done = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", "refs/heads/main"],
            cwd=self.remote,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip() or None

    @staticmethod
    def pick(items: list, index: int):
        """The index-th item, wrapping around; None when there is none.

        Rules draw a plain number instead of sampling the current list, so the draws do not depend on the
        state: in the real-kill variant the same draws can meet a different state (the kill lands later).
        """
        return items[index % len(items)] if items else None

    def live_ids(self) -> list[str]:
        return sorted(r["id"] for r in self.dump() if not r["deleted_at"])

    # the vault

    @rule(count=st.integers(1, 3), kind=st.sampled_from(TYPES))
    def add_decisions(self, count, kind):
        rows = []
        for _ in range(count):
            n = self._next()
            rows.append(validate({"decision": f"Decision {n}: keep option {n}", "type": kind, "tags": [f"t{n}"]}))
        self.storage.upsert_decisions(rows)

    @rule(pick=PICK, field=st.sampled_from(("decision", "comment", "tags", "priority", "active")))
    def edit_decision(self, pick, field):
        decision_id = self.pick(self.live_ids(), pick)
        if decision_id is None:
            return
        n = self._next()
        value = {
            "decision": f"Decision {n}: changed its mind",
            "comment": f"comment {n}",
            "tags": [f"e{n}"],
            "priority": ("P0", "P1", "P2")[n % 3],
            "active": bool(n % 2),
        }[field]
        self.storage.update_decision(decision_id, {field: value})

    @rule(superseded=PICK, by=PICK)
    def supersede(self, superseded, by):
        ids = self.live_ids()
        if len(ids) < 2:
            return
        old = self.pick(ids, superseded)
        new = self.pick([i for i in ids if i != old], by)
        self.storage.update_decision(old, {"superseded_by": new, "active": False})

    @precondition(lambda self: not BACKUPS_REWRITE_TEXT)
    @rule(pick=PICK, word=st.sampled_from(("disk-encryption-at-rest", "task-management-system-v2", "postgres")))
    def write_words_that_look_like_secrets(self, pick, word):
        decision_id = self.pick(self.live_ids(), pick)
        if decision_id is None:
            return
        self.storage.update_decision(decision_id, {"decision": f"Decision {self._next()}: adopt {word} everywhere"})

    @rule()
    def lose_every_decision(self):
        # A fresh machine, or a database emptied by mistake: links first, so the foreign key allows the deletes.
        rows = self.dump()
        for row in rows:
            if row["superseded_by"]:
                self.storage.update_decision(row["id"], {"superseded_by": None})
        self.storage.delete_decisions([r["id"] for r in rows])

    @rule(pick=PICK)
    def soft_delete(self, pick):
        decision_id = self.pick(self.live_ids(), pick)
        if decision_id is None:
            return
        self.storage.update_decision(decision_id, {"deleted_at": utc_now()})

    # backups

    @rule(crash=st.one_of(st.none(), st.sampled_from(BACKUP_CRASHES)), rows_before_crash=st.integers(0, 5))
    def backup(self, crash, rows_before_crash):
        vault = self.dump()
        before = self.tip()
        try:
            with ExitStack() as patches:
                if crash:
                    patches.enter_context(self._crash_at(*crash, rows_before_crash))
                result = run_backup(self.settings)
        except SimulatedCrash:
            result = None
        except AnglesError as exc:
            # Only an empty vault over a backup holding decisions may be refused.
            assert not vault and "refusing to back up 0 decisions" in str(exc), str(exc)
            result = None
        after = self.tip()
        if after != before:
            self.backups[after] = vault
            self.tampered = False
        if result is not None:
            self.tampered = False
            assert result["decisions"] == len(vault)

    def _crash_at(self, step: str, when: str, rows: int):
        if step == "export":
            real = snapshot.write_table

            def write_table(directory, table, records, *args, **kwargs):
                def dying():
                    for number, record in enumerate(records):
                        if number == rows:
                            raise SimulatedCrash(f"killed while exporting {table.file}")
                        yield record
                    raise SimulatedCrash(f"killed at the end of {table.file}")

                return real(directory, table, dying(), *args, **kwargs)

            return mock.patch.object(snapshot, "write_table", write_table)
        target, name = {
            "manifest": (snapshot, "write_manifest"),
            "commit": (BackupClone, "commit"),
            "push": (BackupClone, "push"),
        }[step]
        real = getattr(target, name)

        def dying(*args, **kwargs):
            if when == "before":
                raise SimulatedCrash(f"killed before {step}")
            real(*args, **kwargs)
            raise SimulatedCrash(f"killed after {step}")

        return mock.patch.object(target, name, dying)

    @rule()
    def backup_an_empty_database_by_mistake(self):
        typo = load_settings(
            {"ANGLES_HOME": str(self.home), "DATABASE_URL": f"sqlite:///{self.home}/data/typo.db"}, dotenv=False
        )
        before = self.tip()
        held = len(self.backups.get(before, [])) if before and not self.tampered else 0
        try:
            run_backup(typo)
        except AnglesError as exc:
            assert "refusing to back up 0 decisions" in str(exc) or self.tampered, str(exc)
        finally:
            (self.home / "data" / "typo.db").unlink(missing_ok=True)
        if held:
            assert self.tip() == before, "an empty database replaced a backup that held decisions"
        elif self.tip() != before:
            self.backups[self.tip()] = []
            self.tampered = False

    # someone else touches the remote

    @rule(
        damage=st.sampled_from(
            ("flip a byte", "drop the last line", "delete the decisions", "delete the manifest", "edit the activity")
        )
    )
    def tamper_with_the_remote(self, damage):
        if self.tip() is None:
            return
        work = Path(tempfile.mkdtemp(prefix="tamper-", dir=self.home))
        git_cli("clone", "-q", str(self.remote), str(work / "w"), cwd=work)
        clone = work / "w"
        data = clone / snapshot.DECISIONS.file
        if damage == "flip a byte" and data.is_file() and data.stat().st_size:
            raw = bytearray(data.read_bytes())
            raw[len(raw) // 2] = ord("x") if raw[len(raw) // 2] != ord("x") else ord("y")
            data.write_bytes(bytes(raw))
        elif damage == "drop the last line" and data.is_file():
            data.write_bytes(b"".join(data.read_bytes().splitlines(keepends=True)[:-1]))
        elif damage == "edit the activity":
            activity = clone / snapshot.ACTIVITY.file
            activity.write_bytes(activity.read_bytes().replace(b"backup", b"b4ckup", 1) if activity.is_file() else b"")
        elif damage == "delete the decisions":
            data.unlink(missing_ok=True)
        else:
            (clone / snapshot.MANIFEST).unlink(missing_ok=True)
        git_cli("add", "-A", cwd=clone)
        if git_cli("status", "--porcelain", cwd=clone).strip():
            git_cli("commit", "-qm", f"someone: {damage}", cwd=clone)
            git_cli("push", "-q", "origin", "main", cwd=clone)
            self.tampered = True
        shutil.rmtree(work, ignore_errors=True)

    # restores

    @rule(
        pick=st.one_of(st.none(), PICK),
        crash=st.one_of(st.none(), st.sampled_from(("upsert", "prune"))),
        rows_before_crash=st.integers(0, 5),
    )
    def restore(self, pick, crash, rows_before_crash):
        at = None if pick is None else self.pick(list(self.backups), pick)
        wanted = at or self.tip()
        before = self.dump()
        result = failure = None
        try:
            with ExitStack() as patches:
                if crash:
                    patches.enter_context(self._crash_restore(crash, rows_before_crash))
                result = run_restore(self.settings, restore_decisions=True, prune=True, at=at, **PREFER_BACKUP)
        except SimulatedCrash:
            pass
        except AnglesError as exc:
            failure = str(exc)
        after = self.dump()
        if result is None:
            if crash == "prune" and not PRUNE_IN_ONE_TRANSACTION:
                return
            if failure and "FOREIGN KEY" in failure and not PRUNE_IN_ONE_TRANSACTION:
                return
            assert after == before, f"a restore that did not complete changed the database ({failure or crash})"
            # A tampered tip must be refused; a verified backup may only fail by a crash.
            assert crash or wanted not in self.backups, failure
            return
        assert wanted in self.backups, f"restored {wanted[:12]}, which no backup of this vault made"
        assert after == self.backups[wanted], "the restored vault is not the vault that backup was made from"

    def _crash_restore(self, step: str, rows: int):
        storage_class = type(self.storage)
        if step == "prune":

            def delete_decisions(self_, ids):
                raise SimulatedCrash("killed before pruning")

            return mock.patch.object(storage_class, "delete_decisions", delete_decisions)
        real = storage_class.upsert_decisions

        def upsert_decisions(self_, records, **kwargs):
            def dying():
                for number, record in enumerate(records):
                    if number == rows:
                        raise SimulatedCrash("killed while restoring")
                    yield record

            return real(self_, dying(), **kwargs)

        return mock.patch.object(storage_class, "upsert_decisions", upsert_decisions)

    # invariants

    @invariant()
    def the_remote_tip_matches_its_manifest(self):
        tip = self.tip()
        if tip is None or tip == self.checked_tip or self.tampered:
            return
        problem = manifest_problem(remote_files(self.remote, tip))
        assert problem is None, f"the remote tip {tip[:12]} is not a verified backup: {problem}"
        self.checked_tip = tip

    @invariant()
    def every_backup_holds_the_whole_vault_it_was_made_from(self):
        tip = self.tip()
        if tip is None or self.tampered or tip not in self.backups:
            return
        files = remote_files(self.remote, tip)
        lines = files[snapshot.DECISIONS.file].splitlines()
        expected = self.backups[tip]
        assert len(lines) == len(expected), f"backup {tip[:12]} holds {len(lines)} of {len(expected)} decisions"
        assert [json.loads(line)["id"] for line in lines] == [r["id"] for r in expected]


@pytest.mark.timeout(0 if EXAMPLES else 600)
def test_backup_and_restore_under_generated_interleavings():
    run_state_machine_as_test(BackupWorld, settings=budget(examples=15, steps=15))


class BackupWorldKilled(BackupWorld):
    """The same world where a backup or a restore is a real process killed with SIGKILL after a while."""

    @rule(after=st.sampled_from((0.05, 0.2, 0.4, 0.7, 1.0, None)))
    def backup(self, after):
        vault = self.dump()
        before = self.tip()
        if after is None:
            self._backup_clearing_stale_locks()
        else:
            self._killed("run_backup_now.py", after)
        if self.tip() != before:
            self.backups[self.tip()] = vault
            self.tampered = False

    def _backup_clearing_stale_locks(self):
        try:
            run_backup(self.settings)
        except AnglesError as exc:
            if BACKUP_CLEARS_STALE_LOCKS or not list(self._stale_locks()):
                raise
            for lock in self._stale_locks():
                print(f"issue 11 defect 4: deleting stale {lock} by hand after: {exc}")
                lock.unlink()
            run_backup(self.settings)

    def _stale_locks(self):
        for place in (self.home / "data" / "backup-repo" / ".git", self.remote):
            yield from place.rglob("*.lock") if place.is_dir() else ()

    def _killed(self, script: str, after: float, *args: str) -> None:
        environment = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
        process = subprocess.Popen(
            [sys.executable, str(ROOT / script), *args],
            cwd=self.home,
            env={**environment, "ANGLES_HOME": str(self.home)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            process.wait(timeout=after)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()

    @rule(after=st.sampled_from((0.1, 0.4, 0.8, 1.2)))
    def restore_killed(self, after):
        before = self.dump()
        wanted = self.tip()
        self._killed("restore_from_github.py", after, "--restore-decisions", "--prune", *PREFER_BACKUP_FLAG)
        now = self.dump()
        if now != before:
            assert wanted in self.backups, "a restore of a backup this vault never made changed the database"
            assert now == self.backups[wanted] or not PRUNE_IN_ONE_TRANSACTION, "a killed restore left half a restore"


@pytest.mark.slow
@pytest.mark.timeout(0 if EXAMPLES else 900)
def test_backup_and_restore_killed_for_real_under_generated_interleavings():
    run_state_machine_as_test(BackupWorldKilled, settings=budget(examples=6, steps=12))


# Failures the generated runs found, kept as ordinary tests.


def test_the_next_backup_repairs_an_activity_file_edited_on_the_remote():
    # Only the decisions file was compared with HEAD, so an edited activity file stayed on the remote, not
    # matching its manifest, and every restore of the latest backup was refused while backups said "unchanged".
    world = BackupWorld()
    try:
        world.add_decisions(count=1, kind="process")
        world.backup(crash=None, rows_before_crash=0)
        world.add_decisions(count=1, kind="process")
        world.backup(crash=None, rows_before_crash=0)
        world.tamper_with_the_remote(damage="edit the activity")
        assert world.tampered
        world.backup(crash=None, rows_before_crash=0)
        world.the_remote_tip_matches_its_manifest()
        world.restore(pick=None, crash=None, rows_before_crash=0)
    finally:
        world.teardown()


# Defects of issue 11 the generated runs reached, kept as the examples that showed them (now fixed).


@pytest.mark.skipif(BACKUPS_REWRITE_TEXT, reason="issue 11, defect 1: backups rewrite token-like words")
def test_a_restore_onto_an_empty_database_brings_back_words_that_look_like_tokens():
    world = BackupWorld()
    try:
        world.add_decisions(count=1, kind="process")
        (decision_id,) = world.live_ids()
        world.storage.update_decision(decision_id, {"decision": "Decision 9: adopt disk-encryption-at-rest everywhere"})
        world.backup(crash=None, rows_before_crash=0)
        world.lose_every_decision()
        world.restore(pick=None, crash=None, rows_before_crash=0)
    finally:
        world.teardown()


@pytest.mark.skipif(not PRUNE_IN_ONE_TRANSACTION, reason="issue 11, defect 5: --prune runs after the upsert committed")
def test_a_restore_pruning_linked_live_rows_is_one_transaction():
    world = BackupWorld()
    try:
        world.add_decisions(count=1, kind="process")
        world.backup(crash=None, rows_before_crash=0)
        world.add_decisions(count=2, kind="process")
        first, second = world.live_ids()[1:]
        # The row that goes first in id order is the link's target, so pruning in id order breaks the link.
        world.storage.update_decision(second, {"superseded_by": first, "active": False})
        world.edit_decision(pick=0, field="comment")
        world.restore(pick=None, crash=None, rows_before_crash=0)
    finally:
        world.teardown()
