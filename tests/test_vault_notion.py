"""Supersession in Notion: "Superseded by" set by --setup-notion, written by the push, read back by the pull."""

from __future__ import annotations

import json

import pytest

from angles.engines import notion_pages, vault
from tests.fakes.notion_server import ApiError
from tests.test_memory_sync import SCHEMA, fake, notion, rows, storage, sync  # noqa: F401 - fixtures

WITH_RELATION = {**SCHEMA, notion_pages.SUPERSEDED_BY: "relation"}
WITH_TEXT = {**SCHEMA, notion_pages.SUPERSEDED_BY: "rich_text"}


@pytest.fixture
def notion_with(fake, home, clean_env):  # noqa: F811 - the imported fixture
    """A Notion database of a given schema, the environment pointing at it."""

    def make(schema: dict) -> dict:
        database_id = fake.add_database(schema)
        for key, value in {
            "NOTION_TOKEN": fake.token,
            "NOTION_DATABASE_ID": database_id,
            "NOTION_BASE_URL": fake.base_url,
            "NOTION_RPS": "500",
        }.items():
            clean_env.setenv(key, value)
        return {"fake": fake, "database_id": database_id}

    return make


def record(text: str) -> str:
    with storage() as store:
        return vault.record(store, {"text": text, "type": "process"}, source="cli")["id"]


def supersede(old: str, **kwargs) -> str:
    with storage() as store:
        return vault.supersede(store, old, source="cli", **kwargs)["new_id"]


def test_setup_adds_superseded_by_as_a_relation_to_the_same_database(fake, home, run_script):  # noqa: F811
    database_id = fake.add_database(SCHEMA)
    env = {"NOTION_TOKEN": fake.token, "NOTION_DATABASE_ID": database_id, "NOTION_BASE_URL": fake.base_url}
    result = json.loads(run_script("memory_sync.py", "--setup-notion", "--json", env=env).stdout)
    assert result["added"] == [notion_pages.SUPERSEDED_BY] and result["superseded_by"] == "relation"
    source = fake.sources[fake.data_source_of(database_id)]
    relation = source["properties"][notion_pages.SUPERSEDED_BY]["relation"]
    assert relation["data_source_id"] == source["id"] and relation["type"] == "single_property"
    again = json.loads(run_script("memory_sync.py", "--setup-notion", "--json", env=env).stdout)
    assert again["added"] == [] and notion_pages.SUPERSEDED_BY in again["already_present"]


def test_setup_falls_back_to_a_text_property_when_notion_refuses_the_relation(fake, home, run_script):  # noqa: F811
    fake.refuse_relations = True
    database_id = fake.add_database(SCHEMA)
    env = {"NOTION_TOKEN": fake.token, "NOTION_DATABASE_ID": database_id, "NOTION_BASE_URL": fake.base_url}
    done = run_script("memory_sync.py", "--setup-notion", env=env)
    assert done.returncode == 0, done.stderr
    assert "Superseded by is a text property" in done.stdout
    assert fake.schema(database_id)[notion_pages.SUPERSEDED_BY] == "rich_text"


def test_a_superseded_decision_turns_its_page_inactive_and_relates_it_to_the_new_one(notion_with):
    server = notion_with(WITH_RELATION)["fake"]
    old = record("Ship on Fridays")
    sync()
    new = supersede(old, new_fields={"text": "Ship on Tuesdays"}, reason="calm weekends")
    sync()
    current = rows()
    old_page = server.pages[current[old]["notion_page_id"]]
    assert server.value(old_page, "Active") is False
    assert server.value(old_page, notion_pages.SUPERSEDED_BY) == [current[new]["notion_page_id"]]
    assert server.text(old_page, "Decision") == "Ship on Fridays"
    assert len(server.live_pages()) == 2
    writes = server.writes
    assert sync()["counts"]["updated"] == 0 and server.writes == writes


def test_a_chain_pushed_in_one_run_points_each_page_at_its_successor(notion_with):
    server = notion_with(WITH_RELATION)["fake"]
    a = record("Use Jenkins")
    b = supersede(a, new_fields={"text": "Use GitHub Actions"})
    c = supersede(b, new_fields={"text": "Use Buildkite"})
    sync()
    current = rows()
    assert len(server.live_pages()) == 3
    for old, new in ((a, b), (b, c)):
        page = server.pages[current[old]["notion_page_id"]]
        assert server.value(page, notion_pages.SUPERSEDED_BY) == [current[new]["notion_page_id"]]
    writes = server.writes
    sync()
    assert server.writes == writes


def test_setting_the_relation_in_notion_supersedes_in_the_vault(notion_with):
    server = notion_with(WITH_RELATION)["fake"]
    old = record("Weekly planning on Monday")
    new = record("Planning every two weeks")
    sync()
    pages = {i: r["notion_page_id"] for i, r in rows().items()}
    server.edit_as_person(pages[old], {notion_pages.SUPERSEDED_BY: [pages[new]], "Comment": "moved to sprints"})

    result = sync()

    assert result["counts"]["applied"] == 1
    stored = rows()[old]
    assert stored["superseded_by"] == new and stored["active"] is False and stored["comment"] == "moved to sprints"
    with storage() as store:
        versions = vault.history(store, old)
    assert [(v["source"], v["reason"]) for v in versions][-1] == ("notion", "set in Notion")
    assert server.value(server.pages[pages[old]], "Active") is False
    writes = server.writes
    assert sync()["counts"]["applied"] == 0 and server.writes == writes


def test_a_relation_to_a_page_outside_the_vault_is_reported_and_changes_nothing(notion_with):
    made = notion_with(WITH_RELATION)
    server = made["fake"]
    old = record("Keep the wiki")
    sync()
    stranger = server.create_as_person(made["database_id"], {"Name": "Not synced yet"})
    server.pages[stranger]["in_trash"] = True
    server.edit_as_person(rows()[old]["notion_page_id"], {notion_pages.SUPERSEDED_BY: [stranger]})
    result = sync()
    assert any(p["kind"] == "unknown successor" for p in result["problems"])
    assert rows()[old]["superseded_by"] is None


def test_a_text_property_names_the_successor_by_id_both_ways(notion_with):
    server = notion_with(WITH_TEXT)["fake"]
    old = record("Docs in Confluence")
    new = supersede(old, new_fields={"text": "Docs in the repository"})
    other = record("Design reviews on Thursdays")
    later = record("Design reviews on demand")
    sync()
    current = rows()
    assert server.text(server.pages[current[old]["notion_page_id"]], notion_pages.SUPERSEDED_BY) == new
    server.edit_as_person(current[other]["notion_page_id"], {notion_pages.SUPERSEDED_BY: later[:8]})
    sync()
    assert rows()[other]["superseded_by"] == later and rows()[other]["active"] is False


def test_without_the_property_only_active_turns_off_and_nothing_is_rewritten_again(notion):  # noqa: F811
    server = notion["fake"]
    old = record("Release trains monthly")
    sync()
    supersede(old, new_fields={"text": "Release trains weekly"})
    sync()
    assert server.value(server.pages[rows()[old]["notion_page_id"]], "Active") is False
    writes = server.writes
    sync()
    sync()
    assert server.writes == writes


def test_the_fake_notion_checks_relation_values_like_notion(notion_with):
    made = notion_with(WITH_RELATION)
    server = made["fake"]
    page = server.create_as_person(made["database_id"], {"Name": "A"})
    other_database = server.add_database({})
    foreign = server.create_as_person(other_database, {"Name": "B"})
    source = server.sources[server.data_source_of(made["database_id"])]
    for bad in ([{"id": foreign}], [{"id": "nope"}], {"id": page}):
        with pytest.raises(ApiError):
            server._apply_values(source, {}, {notion_pages.SUPERSEDED_BY: {"relation": bad}})
    stored = server._apply_values(source, {}, {notion_pages.SUPERSEDED_BY: {"relation": [{"id": page}]}})
    assert stored[notion_pages.SUPERSEDED_BY]["relation"] == [{"id": page}]
    assert stored[notion_pages.SUPERSEDED_BY]["has_more"] is False
