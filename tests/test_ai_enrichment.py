"""AI enrichment of stored decisions against a local OpenAI-compatible server."""

from __future__ import annotations

import json
import logging

import pytest

from angles.engines import enrichment as ai
from angles.engines.decision_model import text_hash, validate
from angles.errors import ExternalServiceError
from angles.services import openai_model
from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture
def api():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def ai_settings(home, clean_env, api):
    from angles.config import load_settings

    clean_env.setenv("OPENAI_API_KEY", api.key)
    clean_env.setenv("OPENAI_BASE_URL", api.base_url)
    return load_settings()


@pytest.fixture
def storage(ai_settings):
    from angles.storage import migrations, open_storage

    with open_storage(ai_settings) as store:
        migrations.migrate(store)
        yield store


def add(storage, text: str, **fields) -> str:
    row = validate({"decision": text, **fields})
    storage.upsert_decisions([row])
    return row["id"]


def test_new_decision_gets_a_stored_model_analysis(storage, ai_settings, api):
    decision_id = add(storage, "Rotate the security keys every quarter.")
    counts = ai.enrich_decisions(storage, ai_settings)
    row = storage.get_decision(decision_id)
    analysis = row["ai_analysis"]
    assert counts["online"] == 1 and counts["offline"] == 0 and counts["model"] == "gpt-5"
    assert analysis["model"] == "gpt-5" and analysis["response_model"].startswith("gpt-5")
    assert set(analysis) >= {"type", "priority", "summary", "impact", "recommendations", "key_concepts"}
    assert 0 <= analysis["confidence"] <= 1 and analysis["analyzed_at"]
    assert row["ai_hash"] == text_hash(row["decision"])
    assert row["type"] == "security" and row["type_source"] == "ai"


def test_requests_carry_only_parameters_the_model_accepts(storage, ai_settings, api):
    add(storage, "Adopt a weekly release review.")
    ai.enrich_decisions(storage, ai_settings)
    (body,) = api.chat_bodies()
    assert "temperature" not in body and "max_tokens" not in body
    assert body["max_completion_tokens"] == openai_model.MAX_COMPLETION_TOKENS
    assert body["reasoning_effort"] == "low"
    assert body["response_format"]["type"] == "json_schema"


def test_non_reasoning_model_is_not_sent_reasoning_effort(storage, ai_settings, api):
    from dataclasses import replace

    add(storage, "Adopt a weekly release review.")
    counts = ai.enrich_decisions(storage, replace(ai_settings, openai_model="gpt-4o"))
    assert counts["online"] == 1
    assert "reasoning_effort" not in api.chat_bodies()[0]


def test_malformed_answer_is_retried_once_then_recorded_as_offline(storage, ai_settings, api, caplog):
    decision_id = add(storage, "Use a monthly sprint review for the release workflow.")
    api.then("malformed", times=2)
    with caplog.at_level(logging.WARNING):
        counts = ai.enrich_decisions(storage, ai_settings)
    analysis = storage.get_decision(decision_id)["ai_analysis"]
    assert api.count() == 2
    assert counts["offline"] == 1 and counts["online"] == 0
    assert analysis["model"] == "offline"
    assert "malformed" in analysis["offline_reason"]
    assert "malformed" in counts["fallback_reason"]
    assert "AI answer was malformed, asking once more" in caplog.text
    assert "stored the offline analysis" in caplog.text


def test_malformed_answer_followed_by_a_good_one_is_stored_as_the_model_analysis(storage, ai_settings, api):
    decision_id = add(storage, "Use a monthly sprint review.")
    api.then("malformed")
    counts = ai.enrich_decisions(storage, ai_settings)
    assert api.count() == 2 and counts["online"] == 1
    assert storage.get_decision(decision_id)["ai_analysis"]["model"] == "gpt-5"


def test_answer_outside_the_schema_counts_as_malformed(storage, ai_settings, api):
    decision_id = add(storage, "Use a monthly sprint review.")
    api.then("off_schema", times=2)
    ai.enrich_decisions(storage, ai_settings)
    analysis = storage.get_decision(decision_id)["ai_analysis"]
    assert analysis["model"] == "offline" and "lacks impact" in analysis["offline_reason"]


def test_rejected_key_stops_requests_and_falls_back_offline_for_the_run(storage, ai_settings, api):
    from dataclasses import replace

    ids = [add(storage, f"Decision number {i} about the release process.") for i in range(5)]
    counts = ai.enrich_decisions(storage, replace(ai_settings, openai_api_key="sk-" + "wrong-0123456789abcdefgh"))
    assert api.count() == 1, "a 401 must not be retried, nor repeated for every decision"
    assert counts["offline"] == 5 and counts["online"] == 0
    assert "401" in counts["fallback_reason"] and "OPENAI_API_KEY" in counts["fallback_reason"]
    for decision_id in ids:
        assert "401" in storage.get_decision(decision_id)["ai_analysis"]["offline_reason"]


def test_check_with_a_rejected_key_raises_an_external_service_error(ai_settings, api):
    from dataclasses import replace

    with pytest.raises(ExternalServiceError) as caught:
        openai_model.check_ai(replace(ai_settings, openai_api_key="sk-" + "wrong-0123456789abcdefgh"))
    assert caught.value.exit_code == 3
    assert "OpenAI refused the API key (401 invalid_api_key)" in str(caught.value)
    assert "sk-" + "wrong-0123456789abcdefgh" not in str(caught.value)
    assert len(api.requests) == 1


def test_check_reports_model_and_tokens(ai_settings, api):
    result = openai_model.check_ai(ai_settings)
    assert result["configured"] is True and result["model"] == "gpt-5"
    assert result["requests"] == 1 and result["tokens"] > 0


def test_check_without_key_reports_offline_without_a_request(settings, api):
    assert openai_model.check_ai(settings)["configured"] is False
    assert api.requests == []


def test_rate_limit_waits_for_retry_after_then_succeeds(storage, ai_settings, api):
    decision_id = add(storage, "Cache the Notion pages locally.")
    api.then("rate_limit", retry_after=1)
    counts = ai.enrich_decisions(storage, ai_settings)
    first, second = (r["at"] for r in api.requests)
    assert second - first >= 0.9, "the retry must wait for Retry-After"
    assert counts["online"] == 1
    assert storage.get_decision(decision_id)["ai_analysis"]["model"] == "gpt-5"


def test_server_error_is_retried_with_backoff(storage, ai_settings, api):
    add(storage, "Cache the Notion pages locally.")
    api.then("server_error")
    counts = ai.enrich_decisions(storage, ai_settings)
    assert api.count() == 2 and counts["online"] == 1


def test_unreachable_service_falls_back_offline_and_says_so(storage, home, clean_env):
    from angles.config import load_settings

    with FakeOpenAI() as gone:
        url = gone.base_url
    clean_env.setenv("OPENAI_API_KEY", "sk-" + "test-fake-key-0123456789abcdef")
    clean_env.setenv("OPENAI_BASE_URL", url)
    decision_id = add(storage, "Cache the Notion pages locally.")
    counts = ai.enrich_decisions(storage, load_settings())
    assert counts["offline"] == 1 and "cannot reach OpenAI" in counts["fallback_reason"]
    assert storage.get_decision(decision_id)["ai_analysis"]["model"] == "offline"


def test_unchanged_decisions_make_no_requests_on_the_next_run(storage, ai_settings, api):
    for i in range(3):
        add(storage, f"Decision {i}: keep the export for thirty days.")
    ai.enrich_decisions(storage, ai_settings)
    before = api.count()
    counts = ai.enrich_decisions(storage, ai_settings)
    assert api.count() == before == 3
    assert counts["skipped_unchanged"] == 3 and counts["analysed"] == 0 and counts["requests"] == 0


def test_changed_text_is_analysed_again(storage, ai_settings, api):
    decision_id = add(storage, "Keep exports for thirty days.")
    ai.enrich_decisions(storage, ai_settings)
    storage.update_decision(decision_id, {"decision": "Keep exports for ninety days for the security audit."})
    counts = ai.enrich_decisions(storage, ai_settings)
    row = storage.get_decision(decision_id)
    assert counts["analysed"] == 1 and api.count() == 2
    assert row["ai_hash"] == text_hash(row["decision"])


def test_person_set_type_and_priority_are_kept(storage, ai_settings, api):
    decision_id = add(storage, "Rotate the security keys urgently.", type="process", priority="P2")
    ai.enrich_decisions(storage, ai_settings)
    row = storage.get_decision(decision_id)
    assert row["ai_analysis"]["type"] == "security", "the analysis still records its suggestion"
    assert (row["type"], row["type_source"]) == ("process", "person")
    assert (row["priority"], row["priority_source"]) == ("P2", "person")


def test_suggestion_applies_where_no_person_chose(storage, ai_settings, api):
    api.answer_overrides["priority"] = "P1"
    decision_id = add(storage, "Rotate the security keys.", type="process")
    ai.enrich_decisions(storage, ai_settings)
    row = storage.get_decision(decision_id)
    assert (row["type"], row["type_source"]) == ("process", "person")
    assert (row["priority"], row["priority_source"]) == ("P1", "ai")


def test_cost_guard_defers_the_rest_to_the_next_run(storage, home, clean_env, api, caplog):
    from angles.config import load_settings

    clean_env.setenv("OPENAI_API_KEY", api.key)
    clean_env.setenv("OPENAI_BASE_URL", api.base_url)
    clean_env.setenv("AI_MAX_PER_RUN", "2")
    settings = load_settings()
    for i in range(5):
        add(storage, f"Decision {i}: review the backups.")
    with caplog.at_level(logging.INFO, logger="angles.engines.enrichment"):
        first = ai.enrich_decisions(storage, settings)
    assert (first["analysed"], first["deferred"], api.count()) == (2, 3, 2)
    assert f"{first['tokens']} tokens" in caplog.text and first["tokens"] > 0
    second = ai.enrich_decisions(storage, settings)
    third = ai.enrich_decisions(storage, settings)
    assert (second["analysed"], second["deferred"]) == (2, 1)
    assert (third["analysed"], third["deferred"], third["skipped_unchanged"]) == (1, 0, 4)
    assert api.count() == 5


def test_no_key_analyses_everything_offline_and_says_so(settings, sqlite_storage, api):
    for i in range(3):
        add(sqlite_storage, f"Decision {i}: encrypt the backups.")
    counts = ai.enrich_decisions(sqlite_storage, settings)
    assert counts["offline"] == 3 and counts["online"] == 0 and counts["model"] == "offline"
    assert counts["fallback_reason"] == "OPENAI_API_KEY is not set"
    for row in sqlite_storage.iter_decisions():
        assert row["ai_analysis"]["model"] == "offline" and row["ai_analysis"]["type"] == "security"
    assert api.requests == []


def test_enrichment_pages_through_more_decisions_than_one_batch(home, clean_env):
    from angles.config import load_settings
    from angles.storage import migrations, open_storage

    clean_env.setenv("BATCH_SIZE", "2")
    settings = load_settings()
    with open_storage(settings) as store:
        migrations.migrate(store)
        for i in range(5):
            add(store, f"Decision {i}: encrypt the backups.")
        assert ai.enrich_decisions(store, settings)["analysed"] == 5
        assert ai.enrich_decisions(store, settings)["skipped_unchanged"] == 5


def test_ai_client_tool_check_fails_with_exit_3_on_a_rejected_key(run_script, api):
    proc = run_script(
        "tools/ai_client.py",
        "--check",
        env={"OPENAI_API_KEY": "sk-" + "wrong-0123456789abcdefgh", "OPENAI_BASE_URL": api.base_url},
    )
    assert proc.returncode == 3
    assert "401" in proc.stderr and "sk-" + "wrong-0123456789abcdefgh" not in proc.stderr
    assert len(api.requests) == 1


def test_offline_analyses_are_upgraded_once_a_key_is_set(settings, storage, ai_settings, api):
    decision_id = add(storage, "Encrypt the backups.")
    ai.enrich_decisions(storage, settings)
    assert storage.get_decision(decision_id)["ai_analysis"]["model"] == "offline"
    counts = ai.enrich_decisions(storage, ai_settings)
    assert counts["online"] == 1
    assert storage.get_decision(decision_id)["ai_analysis"]["model"] == "gpt-5"


def test_offline_analyses_are_not_rewritten_while_the_service_fails(settings, storage, ai_settings, api):
    from dataclasses import replace

    old_id = add(storage, "Encrypt the backups.")
    ai.enrich_decisions(storage, settings)
    before = storage.get_decision(old_id)["ai_analysis"]
    add(storage, "Rotate the keys.")
    counts = ai.enrich_decisions(storage, replace(ai_settings, openai_api_key="sk-" + "wrong-0123456789abcdefgh"))
    assert (counts["offline"], counts["deferred"], api.count()) == (1, 1, 1)
    assert storage.get_decision(old_id)["ai_analysis"] == before


def test_dry_run_neither_calls_nor_writes(storage, ai_settings, api):
    decision_id = add(storage, "Encrypt the backups.")
    counts = ai.enrich_decisions(storage, ai_settings, dry_run=True)
    assert counts["would_analyse"] == 1 and counts["analysed"] == 0
    assert api.requests == []
    assert storage.get_decision(decision_id)["ai_analysis"] is None


def test_soft_deleted_decisions_are_not_analysed(storage, ai_settings, api):
    add(storage, "Encrypt the backups.", deleted_at="2026-01-01T00:00:00Z")
    counts = ai.enrich_decisions(storage, ai_settings)
    assert counts["analysed"] == 0 and api.requests == []


def test_run_is_recorded_in_the_activity_history(storage, ai_settings, api):
    add(storage, "Encrypt the backups.")
    ai.enrich_decisions(storage, ai_settings)
    (entry,) = list(storage.iter_activity(agent_name="ai_enrichment"))
    details = json.loads(entry["details"])
    assert entry["status"] == "completed" and details["online"] == 1 and details["tokens"] > 0


def test_truncated_answer_is_not_stored_as_an_analysis(storage, ai_settings, api, monkeypatch):
    monkeypatch.setattr(openai_model, "MAX_COMPLETION_TOKENS", 80)
    decision_id = add(storage, "Encrypt the backups.")
    ai.enrich_decisions(storage, ai_settings)
    analysis = storage.get_decision(decision_id)["ai_analysis"]
    assert analysis["model"] == "offline" and "cut off" in analysis["offline_reason"]


def test_ai_client_tool_prints_an_offline_analysis_without_key(run_script):
    proc = run_script("tools/ai_client.py", "Encrypt the nightly backups immediately.")
    assert proc.returncode == 0, proc.stderr
    analysis = json.loads(proc.stdout)
    assert analysis["model"] == "offline" and analysis["type"] == "security" and analysis["priority"] == "P0"


def test_ai_client_tool_uses_the_configured_server(run_script, api):
    proc = run_script(
        "tools/ai_client.py", "Encrypt the backups.", env={"OPENAI_API_KEY": api.key, "OPENAI_BASE_URL": api.base_url}
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model"] == "gpt-5"


def test_offline_analysis_has_the_model_analysis_shape():
    analysis = ai.offline_analysis("We must rotate passwords after the breach.", "test")
    assert openai_model.validate_analysis(analysis)["type"] == "security"
    assert analysis["priority"] == "P0" and analysis["model"] == "offline"


@pytest.mark.parametrize("bad", ["Encrypt\u0000 them", "Encrypt \ud800 them"])
def test_an_answer_the_database_could_not_store_counts_as_malformed(storage, ai_settings, api, bad):
    decision_id = add(storage, "Encrypt the backups.")
    api.answer_overrides["summary"] = bad
    counts = ai.enrich_decisions(storage, ai_settings)
    analysis = storage.get_decision(decision_id)["ai_analysis"]
    assert analysis["model"] == "offline" and "summary holds" in analysis["offline_reason"]
    assert counts["analysed"] == 1
