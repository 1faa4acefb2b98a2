"""History, links and supersession travel with the JSON export and the backup, and come back with a restore."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from angles.actions.backup import run_backup
from angles.actions.restore import run_restore
from angles.engines import vault
from angles.engines.json_export import write_export
from angles.storage import open_storage
from tests.test_backup_restore import make_settings, open_migrated, wipe_database


def build_vault(settings) -> dict:
    """A small vault with edits, a supersede chain with a reason and links both ways."""
    with open_migrated(settings) as storage:
        a = vault.record(storage, {"text": "Deploy with Ansible", "type": "technical"}, source="cli")["id"]
        b = vault.record(storage, {"text": "Keep staging in sync"}, source="cli")["id"]
        vault.edit(storage, b, {"text": "Keep staging in sync with production", "priority": "P1"}, source="cli")
        vault.edit(storage, b, {"tags": "ops"}, source="agent:claude")
        c = vault.supersede(storage, a, new_fields={"text": "Deploy with Terraform"}, reason="drift", source="cli")
        vault.link(storage, b, c["new_id"], "depends_on", source="cli")
        vault.link(storage, c["new_id"], b, "relates_to", source="cli")
        return {
            "ids": (a, b, c["new_id"]),
            "described": {i: vault.describe(storage, i) for i in (a, b, c["new_id"])},
            "history": list(storage.iter_history()),
            "links": list(storage.iter_links()),
        }


def test_backup_wipe_restore_brings_back_history_links_and_supersession(home):
    settings = make_settings(home)
    before = build_vault(settings)
    first = run_backup(settings)
    assert first["result"] == "committed"
    backup = home / "data" / "backup-repo"
    assert len((backup / "decision_history.jsonl").read_text().splitlines()) == len(before["history"]) == 3
    assert len((backup / "decision_links.jsonl").read_text().splitlines()) == 2

    wipe_database(settings)
    restored = run_restore(settings, restore_decisions=True)

    assert restored["restored"]["history_restored"] == 3 and restored["restored"]["links_restored"] == 2
    with open_storage(settings) as storage:
        assert list(storage.iter_history()) == before["history"]
        assert list(storage.iter_links()) == before["links"]
        for ident, described in before["described"].items():
            assert vault.describe(storage, ident) == described
    a, _, c = before["ids"]
    assert before["described"][a]["chain"] == [a, c] and before["described"][a]["reason"] == "drift"
    assert run_backup(settings)["result"] == "unchanged"
    # A second restore finds everything in place and writes nothing twice.
    again = run_restore(settings, restore_decisions=True)
    assert again["restored"]["history_restored"] == 0 and again["restored"]["links_restored"] == 0


def test_a_restore_that_replaces_a_live_edit_keeps_it_in_history(home):
    settings = make_settings(home)
    with open_migrated(settings) as storage:
        ident = vault.record(storage, {"text": "Backups every night"}, source="cli")["id"]
    run_backup(settings)
    with open_storage(settings) as storage:
        vault.edit(storage, ident, {"text": "Backups every hour"}, source="cli")

    # The live edit is newer than the backup: only --prefer-backup replaces it, and its history keeps it.
    run_restore(settings, restore_decisions=True, prefer_backup=True)

    with open_storage(settings) as storage:
        versions = vault.history(storage, ident)
        assert storage.get_decision(ident)["decision"] == "Backups every night"
    assert [(v["source"], v["fields"]["decision"]) for v in versions] == [
        ("cli", "Backups every night"),
        ("restore", "Backups every hour"),
    ]


def test_the_json_export_holds_history_and_links(home):
    settings = make_settings(home)
    before = build_vault(settings)
    with open_storage(settings) as storage:
        path = Path(write_export(storage, settings)["path"])
    exported = json.loads(path.read_text(encoding="utf-8"))
    assert exported["count"] == len(exported["decisions"]) == 3
    assert exported["history"] == json.loads(json.dumps(before["history"]))
    assert exported["links"] == json.loads(json.dumps(before["links"]))


@pytest.mark.postgres
def test_a_sqlite_backup_restores_history_and_links_into_postgres(home, pg_url):
    sqlite_settings = make_settings(home)
    before = build_vault(sqlite_settings)
    run_backup(sqlite_settings)
    pg_settings = make_settings(home, DATABASE_URL=pg_url)

    run_restore(pg_settings, restore_decisions=True)

    with open_storage(pg_settings) as storage:
        assert list(storage.iter_history()) == before["history"]
        assert list(storage.iter_links()) == before["links"]
        for ident, described in before["described"].items():
            assert vault.describe(storage, ident) == described
        assert [h["id"] for h in vault.search(storage, "terraform")] == [before["ids"][2]]
