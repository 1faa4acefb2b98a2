"""An unchanged backup skips re-running the token-shape scan on bytes it already vouched for, never the secrets,
and still reports every record the earlier scan found."""

from __future__ import annotations

import shutil

from angles.actions.backup import run_backup
from angles.config import load_settings
from angles.engines import backup_format as snapshot
from angles.engines.credential_scan import CredentialScanner
from angles.engines.decision_model import validate
from angles.storage import migrations, open_storage

LATER_SECRET = "plain-value-configured-later-8812"


def make_settings(home, **env):
    return load_settings({"ANGLES_HOME": str(home), **env}, dotenv=False)


def seed(settings, count: int = 1200) -> list[dict]:
    rows = [
        validate({"decision": f"Decision {n} " + "word " * 40, "type": "technical", "date": "2025-03-01"}, "row")
        for n in range(count)
    ]
    rows[700]["comment"] = f"old key {LATER_SECRET} still in use"
    rows[200]["comment"] = "token " + "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2" + " pasted here"
    with open_storage(settings) as storage:
        migrations.migrate(storage)
        storage.upsert_decisions(rows, atomic=True)
    return rows


def spy_on_scans(monkeypatch) -> list[bool]:
    seen: list[bool] = []
    original = CredentialScanner.may_match

    def spy(self, data, *, shapes_checked=False, absent=b""):
        seen.append(shapes_checked)
        return original(self, data, shapes_checked=shapes_checked, absent=absent)

    monkeypatch.setattr(CredentialScanner, "may_match", spy)
    return seen


def test_a_secret_configured_after_a_backup_is_reported_by_the_next_unchanged_export(home, monkeypatch):
    settings = make_settings(home)
    rows = seed(settings)
    first = run_backup(settings)
    clone = home / "data" / "backup-repo"
    data = (clone / "decision_vault.jsonl").read_bytes()
    assert [r["id"] for r in first["credential_like"]] == [rows[200]["id"]]
    seen = spy_on_scans(monkeypatch)

    result = run_backup(make_settings(home, OPENAI_API_KEY=LATER_SECRET))

    assert result["result"] == "committed" and "(+0 ~0 -0)" in result["message"], "the manifest's list changed"
    assert any(seen), "the unchanged chunks took the vouched-for path"
    assert (clone / "decision_vault.jsonl").read_bytes() == data
    reported = {r["id"]: r["fields"] for r in result["credential_like"] if r["table"] == "decision_vault"}
    assert reported == {rows[700]["id"]: ["comment"], rows[200]["id"]: ["comment"]}


def test_a_rewritten_file_in_the_clone_is_scanned_in_full_again(home, monkeypatch):
    settings = make_settings(home)
    seed(settings)
    run_backup(settings)
    seen = spy_on_scans(monkeypatch)
    run_backup(settings)
    # Every untouched file is vouched for; only the activity file, which each run adds to, is scanned again.
    assert seen and seen.count(False) == 1, seen

    seen.clear()
    path = home / "data" / "backup-repo" / "decision_vault.jsonl"
    shutil.copyfile(path, path.with_suffix(".copy"))
    path.with_suffix(".copy").replace(path)  # same bytes, a different file
    run_backup(settings)

    # The rewritten decisions file (and the activity file) are scanned in full; history and links, written
    # after them and untouched, stay vouched for.
    untouched = len(snapshot.TABLES) - 2
    assert seen and not any(seen[:-untouched]) and all(seen[-untouched:]), seen
