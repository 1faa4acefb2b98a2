"""memory_sync's sync analyses decisions before pushing, so the analysis reaches Notion; unchanged ones cost nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from angles.engines.decision_model import text_hash, to_iso, validate
from angles.engines.enrichment import offline_analysis
from tests.fakes.notion_server import FakeNotion
from tests.fakes.openai_server import FakeOpenAI
from tests.test_memory_sync import SCHEMA


@pytest.fixture
def services(home, clean_env):
    notion = FakeNotion(rps=2000, burst=2000)
    notion.start()
    with FakeOpenAI() as openai:
        database_id = notion.add_database(SCHEMA)
        env = {
            "NOTION_TOKEN": notion.token,
            "NOTION_DATABASE_ID": database_id,
            "NOTION_BASE_URL": notion.base_url,
            "NOTION_RPS": "500",
            "OPENAI_API_KEY": openai.key,
            "OPENAI_BASE_URL": openai.base_url,
        }
        for key, value in env.items():
            clean_env.setenv(key, value)
        yield {"notion": notion, "openai": openai, "env": env}
    notion.stop()


def _settings():
    from angles.config import load_settings

    return load_settings()


def _storage():
    from angles.storage import migrations, open_storage

    store = open_storage(_settings())
    migrations.migrate(store)
    return store


def _sync() -> dict:
    from angles.actions.sync import run_sync

    result = run_sync(_settings(), export=False)
    assert result["error"] is None, result["error"]
    return result


def _chat_requests(openai) -> int:
    return sum(1 for r in openai.requests if r["path"].endswith("/chat/completions"))


def test_sync_stores_the_model_analysis_and_its_summary_type_and_priority_reach_notion(services):
    notion, openai = services["notion"], services["openai"]
    with _storage() as store:
        row = validate({"decision": "Rotate every API token monthly and keep them out of logs."})
        store.upsert_decisions([row])
    result = _sync()
    assert result["ai"]["online"] == 1 and result["ai"]["offline"] == 0
    with _storage() as store:
        stored = store.get_decision(row["id"])
    analysis = stored["ai_analysis"]
    assert analysis["model"] == "gpt-5" and stored["type_source"] == "ai"
    page = notion.pages[stored["notion_page_id"]]
    assert notion.text(page, "AI summary") == analysis["summary"]
    assert notion.value(page, "Type") == analysis["type"] == stored["type"]
    assert notion.value(page, "Priority") == analysis["priority"] == stored["priority"]

    chats, writes = _chat_requests(openai), notion.writes
    again = _sync()
    assert _chat_requests(openai) == chats, "an unchanged decision was sent to the model again"
    assert notion.writes == writes
    assert again["ai"]["analysed"] == 0


def test_memory_sync_test_exits_3_when_the_model_rejects_the_key(services, run_script):
    env = {**services["env"], "OPENAI_API_KEY": "wrong-key-for-the-fake-server"}
    result = run_script("memory_sync.py", "--test", env=env)
    assert result.returncode == 3
    ai_line = next(line for line in result.stdout.splitlines() if line.startswith("ai"))
    assert "FAIL" in ai_line
    assert "wrong-key-for-the-fake-server" not in result.stdout + result.stderr


def test_memory_sync_says_which_analyser_was_used(run_script):
    run_script("run_migration.py")
    run_script("tools/decisions.py", "add", "Publish the pricing page before launch")
    result = run_script("memory_sync.py")
    assert result.returncode == 0
    assert "AI analysed 1 decisions with the offline analyser" in result.stdout


def test_a_settled_run_lets_the_next_one_scan_only_recent_edits(settings, sqlite_storage):
    from angles.engines.enrichment import enrich_decisions

    old = to_iso(datetime.now(UTC) - timedelta(hours=2))
    rows = []
    for i in range(30):
        text = f"Decision {i}: keep the queue"
        rows.append(
            validate(
                {
                    "decision": text,
                    "type": "process",
                    "ai_hash": text_hash(text),
                    "ai_analysis": offline_analysis(text, "seed"),
                    "updated_at": old,
                    "created_at": old,
                }
            )
        )
    sqlite_storage.upsert_decisions(rows)
    first = enrich_decisions(sqlite_storage, settings)
    assert not first["incremental"] and first["skipped_unchanged"] == 30
    second = enrich_decisions(sqlite_storage, settings)
    assert second["incremental"] and second["skipped_unchanged"] == 0 and second["analysed"] == 0
    sqlite_storage.update_decision(rows[4]["id"], {"decision": "Decision 4: replace the queue"})
    third = enrich_decisions(sqlite_storage, settings)
    assert third["analysed"] == 1
    assert "replace" in sqlite_storage.get_decision(rows[4]["id"])["ai_analysis"]["summary"]


def test_setting_a_key_rescans_everything_to_upgrade_offline_analyses(settings, sqlite_storage, clean_env):
    from angles.config import load_settings
    from angles.engines.enrichment import enrich_decisions

    sqlite_storage.upsert_decisions([validate({"decision": "Adopt weekly releases", "type": "process"})])
    assert enrich_decisions(sqlite_storage, settings)["offline"] == 1
    with FakeOpenAI() as openai:
        clean_env.setenv("OPENAI_API_KEY", openai.key)
        clean_env.setenv("OPENAI_BASE_URL", openai.base_url)
        online = enrich_decisions(sqlite_storage, load_settings())
    assert not online["incremental"] and online["online"] == 1
    state = json.loads(sqlite_storage.get_state("ai.scan"))
    assert state["model"] == "gpt-5" and state["settled_at"]
