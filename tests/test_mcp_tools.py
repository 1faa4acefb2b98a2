"""The assistants' door through the SDK's in-memory client: every tool, the resource, and every kind of bad input."""

from __future__ import annotations

import json

import anyio
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from mcp import Client
from mcp.shared.exceptions import MCPError

from angles.assistants.server import build_server


@pytest.fixture
def server(settings, sqlite_storage):
    return build_server(settings, sqlite_storage)


def call(server, *steps):
    """Run tool calls in one in-memory session; each step is (tool, arguments); returns the results."""

    async def session():
        results = []
        async with Client(server) as client:
            for tool, arguments in steps:
                results.append(await client.call_tool(tool, arguments))
        return results

    return anyio.run(session)


def one(server, tool, arguments):
    return call(server, (tool, arguments))[0]


def error_text(result) -> str:
    assert result.is_error, result.structured_content
    text = result.content[0].text
    assert "Traceback" not in text and "\n" not in text and "pydantic" not in text
    return text


def record(server, text, **fields):
    result = one(server, "record_decision", {"text": text, **fields})
    assert not result.is_error, result.content[0].text
    return result.structured_content


def test_the_server_offers_five_tools_and_the_decision_resource(server):
    async def listing():
        async with Client(server) as client:
            return (await client.list_tools()).tools, (await client.list_resource_templates()).resource_templates

    tools, templates = anyio.run(listing)
    assert sorted(t.name for t in tools) == [
        "get_decision",
        "link_decisions",
        "record_decision",
        "search_decisions",
        "supersede_decision",
    ]
    assert all(t.output_schema for t in tools)
    assert [t.uri_template for t in templates] == ["decision://{id}"]


def test_a_recorded_decision_is_stored_with_its_fields_and_found_by_search(server, sqlite_storage):
    made = record(server, "Use PostgreSQL for the shared vault", type="architecture", priority="P1", tags=["db"])
    assert made["status"] == "created"
    stored = sqlite_storage.get_decision(made["id"])
    assert (stored["decision"], stored["type"], stored["priority"], stored["tags"]) == (
        "Use PostgreSQL for the shared vault",
        "architecture",
        "P1",
        ["db"],
    )
    hits = one(server, "search_decisions", {"query": "postgresql"}).structured_content["hits"]
    assert [h["id"] for h in hits] == [made["id"]]
    assert hits[0]["type"] == "architecture" and hits[0]["active"] is True and hits[0]["snippet"]


def test_recording_the_same_decision_twice_stores_it_once(server, sqlite_storage):
    first = record(server, "Deploy on Fridays is forbidden.")
    again = record(server, "  deploy on FRIDAYS is forbidden ")
    assert again == {**again, "id": first["id"], "status": "already_recorded"}
    assert sqlite_storage.count_decisions() == 1


def test_stdio_writes_are_recorded_as_the_configured_agent(home, clean_env, sqlite_storage):
    from angles.config import load_settings

    clean_env.setenv("MCP_AGENT_NAME", "claude-desktop")
    made = record(build_server(load_settings(), sqlite_storage), "Keep the API versioned")
    mine = list(sqlite_storage.iter_activity(agent_name="claude-desktop"))
    assert [a["action"] for a in mine] == ["record_decision"] and made["id"] in mine[0]["details"]


def test_search_results_cut_long_texts_at_500_characters(server):
    long = "Caching policy " + "x" * 3000
    record(server, long)
    hit = one(server, "search_decisions", {"query": "caching"}).structured_content["hits"][0]
    assert len(hit["text"]) == 500 and long.startswith(hit["text"][:-1])


def test_get_decision_accepts_the_full_id_or_its_8_character_prefix(server):
    made = record(server, "Rotate keys every 90 days", type="security")
    by_full, by_prefix = call(server, ("get_decision", {"id": made["id"]}), ("get_decision", {"id": made["id"][:8]}))
    assert by_full.structured_content == by_prefix.structured_content
    shown = by_full.structured_content
    assert shown["decision"]["id"] == made["id"] and shown["decision"]["decision"] == "Rotate keys every 90 days"
    assert {"history", "links", "chain"} <= set(shown)


def test_superseding_keeps_the_old_decision_inactive_and_pointing_to_the_new(server, sqlite_storage):
    old = record(server, "Use MySQL")
    result = one(server, "supersede_decision", {"old_id": old["id"], "new_text": "Use PostgreSQL", "reason": "JSONB"})
    assert not result.is_error, result.content[0].text
    new_id = result.structured_content["new_id"]
    stored = sqlite_storage.get_decision(old["id"])
    assert stored["decision"] == "Use MySQL" and stored["active"] is False and stored["superseded_by"] == new_id
    assert sqlite_storage.get_decision(new_id)["decision"] == "Use PostgreSQL"
    history = one(server, "get_decision", {"id": old["id"]}).structured_content["history"]
    assert [(v["source"], v["reason"]) for v in history] == [("agent:mcp", "JSONB")]
    default = one(server, "search_decisions", {"query": "use"}).structured_content["hits"]
    everything = one(server, "search_decisions", {"query": "use", "include_inactive": True}).structured_content
    assert [h["id"] for h in default] == [new_id]
    assert {h["id"] for h in everything["hits"]} == {old["id"], new_id}


def test_recording_with_supersedes_replaces_the_named_decision(server, sqlite_storage):
    old = record(server, "Release monthly")
    new = record(server, "Release weekly", supersedes=old["id"])
    assert sqlite_storage.get_decision(old["id"])["superseded_by"] == new["id"]


def test_links_show_on_both_decisions(server):
    a, b = record(server, "Adopt event sourcing"), record(server, "Keep an audit log")
    link = {"from_id": a["id"][:8], "to_id": b["id"], "kind": "depends_on"}
    linked, again = call(server, ("link_decisions", link), ("link_decisions", link))
    expected = {"from_id": a["id"], "to_id": b["id"], "kind": "depends_on", "status": "created"}
    assert linked.structured_content == expected
    assert again.structured_content["status"] == "already_linked"
    for side, other, direction in ((a, b, "out"), (b, a, "in")):
        links = one(server, "get_decision", {"id": side["id"]}).structured_content["links"]
        assert [(x["kind"], x["direction"], x["other_id"]) for x in links] == [("depends_on", direction, other["id"])]


def test_the_decision_resource_reads_as_json(server):
    made = record(server, "Document every public API")

    async def read(*uris):
        answers = []
        async with Client(server) as client:
            for uri in uris:
                try:
                    answers.append(await client.read_resource(uri))
                except MCPError as exc:
                    answers.append(exc)
        return answers

    found, missing, malformed = anyio.run(
        read, f"decision://{made['id'][:8]}", "decision://00000000-0000-4000-8000-000000000000", "decision://x"
    )
    assert found.contents[0].mime_type == "application/json"
    assert json.loads(found.contents[0].text)["decision"]["decision"] == "Document every public API"
    assert isinstance(missing, MCPError) and "no decision" in str(missing)
    assert isinstance(malformed, MCPError) and "not a decision id" in str(malformed)


@pytest.mark.parametrize(
    ("tool", "arguments", "says"),
    [
        ("record_decision", {"text": ""}, "empty"),
        ("record_decision", {"text": "   "}, "empty"),
        ("record_decision", {"text": "x" * 20_001}, "at most 20000"),
        ("record_decision", {"text": "fine", "type": "dream"}, "'type' is invalid"),
        ("record_decision", {"text": "fine", "priority": "P9"}, "'priority' is invalid"),
        ("record_decision", {"text": 42}, "'text' is invalid"),
        ("record_decision", {}, "'text' is required"),
        ("search_decisions", {"query": "x", "limit": "many"}, "'limit' is invalid"),
        ("search_decisions", {"query": "x", "limit": 0}, "'limit' is invalid"),
        ("get_decision", {"id": "no-such-decision"}, "not a decision id"),
        ("get_decision", {"id": "abc"}, "too short"),
        ("get_decision", {"id": "00000000-0000-4000-8000-000000000000"}, "no decision"),
        ("supersede_decision", {"old_id": "00000000-0000-4000-8000-000000000000", "new_text": "y"}, "no decision"),
        ("link_decisions", {"from_id": "a", "to_id": "b", "kind": "loves"}, "'kind' is invalid"),
    ],
)
def test_bad_input_is_a_tool_error_of_one_sentence_and_the_server_keeps_serving(server, tool, arguments, says):
    bad, good = call(server, (tool, arguments), ("search_decisions", {"query": "anything"}))
    text = error_text(bad)
    assert text.startswith(f"Error executing tool {tool}: ") and says in text
    assert not good.is_error


def test_linking_an_unknown_decision_is_a_tool_error(server):
    made = record(server, "Prefer composition")
    text = error_text(one(server, "link_decisions", {"from_id": made["id"], "to_id": "deadbeef", "kind": "refines"}))
    assert "no decision" in text


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
TOOLS = ["record_decision", "search_decisions", "get_decision", "supersede_decision", "link_decisions"]
ARGUMENT_NAMES = ["text", "type", "priority", "tags", "comment", "supersedes", "query", "include_inactive", "limit"]
ARGUMENT_NAMES += ["id", "old_id", "new_text", "new_id", "reason", "from_id", "to_id", "kind", "unexpected"]


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    calls=st.lists(
        st.tuples(st.sampled_from(TOOLS), st.dictionaries(st.sampled_from(ARGUMENT_NAMES), JSON_VALUES, max_size=5)),
        min_size=1,
        max_size=4,
    )
)
def test_fuzzed_tool_arguments_never_kill_the_server(server, calls):
    results = call(server, *calls, ("search_decisions", {"query": "still serving"}))
    for result in results:
        if result.is_error:
            assert "Traceback" not in result.content[0].text
    assert not results[-1].is_error
