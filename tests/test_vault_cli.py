"""tools/decisions.py search, edit, history, supersede, link, unlink, similar, duplicates, as an operator runs them."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.test_decisions_tool import TOOL, as_json
from tests.test_vault_storage import HOSTILE


@pytest.fixture
def vault(run_script):
    assert run_script("run_migration.py").returncode == 0

    def tool(*args, env=None):
        return run_script(TOOL, *args, env=env)

    return tool


def add(vault, text, *args) -> str:
    return as_json(vault("add", text, *args, "--json"))["id"]


def one_line_error(result, code=1) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    return lines[0]


def test_search_prints_snippets_and_json_gives_every_field(vault):
    first = add(vault, "We deploy every service with Kubernetes", "--type", "technical", "--tags", "infra")
    add(vault, "Marketing budget doubles next year", "--type", "strategy")
    text = vault("search", "deploying services")
    assert text.returncode == 0, text.stderr
    assert first[:8] in text.stdout and "[deploy]" in text.stdout and "1 result" in text.stdout
    hits = as_json(vault("search", "kubernetes", "--type", "technical", "--tag", "infra", "--json"))["results"]
    assert [h["id"] for h in hits] == [first]
    assert set(hits[0]) >= {"id", "text", "type", "priority", "date", "active", "superseded_by", "score", "snippet"}
    nothing = vault("search", "zebra")
    assert nothing.returncode == 0 and "no decision matches" in nothing.stdout


def test_hostile_queries_answer_or_fail_in_one_line_and_leave_the_vault_as_it_was(vault, home):
    add(vault, "The database stays on PostgreSQL", "--tags", "db")
    database = home / "data" / "angles.db"
    before = sqlite3.connect(database).execute("SELECT * FROM decision_vault").fetchall()
    # argv cannot carry a NUL: that query is covered through the library in test_vault_storage.
    for query in (q for q in HOSTILE if "\x00" not in q):
        result = vault("search", query, "--all")
        assert "Traceback" not in result.stderr and "fts5" not in (result.stdout + result.stderr).lower()
        if result.returncode:
            one_line_error(result)
    assert sqlite3.connect(database).execute("SELECT * FROM decision_vault").fetchall() == before
    assert "at most 1000" in one_line_error(vault("search", "x" * 10_000))
    assert "only excludes" in one_line_error(vault("search", "--", "-database"))
    assert "no words" in one_line_error(vault("search", "🚀"))
    assert "--limit" in one_line_error(vault("search", "x", "--limit", "many"))


def test_superseded_and_inactive_decisions_show_only_with_all(vault):
    old = add(vault, "Ship releases on Fridays")
    moved = as_json(
        vault("supersede", old[:8], "--text", "Ship releases on Tuesdays", "--reason", "calm weekends", "--json")
    )
    assert moved["old_id"] == old and moved["status"] == "created"
    assert [h["id"] for h in as_json(vault("search", "releases", "--json"))["results"]] == [moved["new_id"]]
    everything = vault("search", "releases", "--all")
    assert f"superseded by {moved['new_id'][:8]}" in everything.stdout and "2 results" in everything.stdout


def test_add_does_not_record_an_exact_duplicate_and_names_near_ones(vault):
    first = as_json(vault("add", "Adopt trunk-based development.", "--json"))
    again = vault("add", "adopt   TRUNK-based development")
    assert again.returncode == 0 and f"already recorded as {first['id']}" in again.stdout
    near = vault("add", "Adopt trunk-based development for the mobile apps")
    assert near.returncode == 0 and "added" in near.stdout and f"similar: {first['id'][:8]}" in near.stdout
    assert as_json(vault("list", "--json"))["count"] == 2
    closest = as_json(vault("similar", "trunk based development", "--json"))["similar"]
    assert first["id"] in [s["id"] for s in closest]


def test_import_skips_decisions_already_recorded(vault, home):
    existing = add(vault, "Keep the monorepo")
    path = home / "more.json"
    path.write_text(json.dumps([{"decision": "keep the MONOREPO!"}, {"decision": "Adopt Bazel"}]), encoding="utf-8")
    result = as_json(vault("import", str(path), "--json"))
    assert result["new"] == 1 and result["already_recorded"] == [{"where": "[0]", "id": existing}]
    assert "already recorded as" in vault("import", str(path)).stdout


def test_edit_then_history_lists_every_version_and_what_changed(vault):
    ident = add(vault, "Code review within 24 hours", "--type", "process")
    edited = vault("edit", ident[:8], "--text", "Code review within one working day", "--priority", "P1")
    assert edited.returncode == 0 and "decision, priority" in edited.stdout
    assert vault("edit", ident, "--inactive").returncode == 0
    same = vault("edit", ident, "--type", "process")
    assert "nothing changed" in same.stdout
    versions = as_json(vault("history", ident, "--json"))["versions"]
    assert [v["source"] for v in versions] == ["cli", "cli"]
    assert versions[0]["changed"]["decision"] == {
        "from": "Code review within 24 hours",
        "to": "Code review within one working day",
    }
    assert versions[1]["changed"] == {"active": {"from": True, "to": False}}
    text = vault("history", ident[:8]).stdout
    assert "version 1" in text and "decision: Code review within 24 hours → Code review within one working day" in text
    assert "nothing to change" in one_line_error(vault("edit", ident))
    assert "type 'marketing' is unknown" in one_line_error(vault("edit", ident, "--type", "marketing"))


def test_supersede_refuses_repeats_and_cycles_and_show_prints_the_chain(vault):
    a = add(vault, "Deploy with Ansible")
    b = add(vault, "Deploy with Terraform")
    assert vault("supersede", a, "--by", b[:8], "--reason", "state tracking").returncode == 0
    c = as_json(vault("supersede", b, "--text", "Deploy with Pulumi", "--type", "technical", "--json"))["new_id"]
    assert "already superseded" in one_line_error(vault("supersede", a, "--by", c))
    assert "cycle" in one_line_error(vault("supersede", c, "--by", a))
    assert "with --text" in one_line_error(vault("supersede", c, "--by", a, "--type", "process"))
    assert one_line_error(vault("supersede", c)).startswith("error:")
    shown = vault("show", b[:8])
    assert shown.returncode == 0
    assert f"{a[:8]} → [{b[:8]}] → {c[:8]}" in shown.stdout
    assert f"{a[:8]} superseded: state tracking" in shown.stdout
    described = as_json(vault("show", c, "--json"))
    assert described["chain"] == [a, b, c] and described["supersedes"] == [b]


def test_links_show_both_ways_and_unlink_removes_them(vault):
    a = add(vault, "Adopt event sourcing")
    b = add(vault, "Adopt Kafka")
    made = vault("link", a[:8], b[:8], "--kind", "depends_on")
    assert made.returncode == 0 and "linked" in made.stdout
    assert "already linked" in vault("link", a, b, "--kind", "depends_on").stdout
    assert "→ depends_on " + b[:8] in vault("show", a).stdout
    assert "← depends_on from " + a[:8] in vault("show", b).stdout
    assert "link kind 'blocks' is unknown" in one_line_error(vault("link", a, b, "--kind", "blocks"))
    assert "removed 1 link" in vault("unlink", a, b).stdout
    assert "no link from" in one_line_error(vault("unlink", a, b))
    assert as_json(vault("show", a, "--json"))["links"] == []


def test_unknown_and_ambiguous_ids_are_one_line(vault):
    add(vault, "Something")
    assert "no decision with an id starting" in one_line_error(vault("edit", "ffffffff", "--text", "x"))
    assert "too short" in one_line_error(vault("history", "abc"))
    assert "is not a decision id" in one_line_error(vault("link", "'; DROP TABLE x", "abcdefab", "--kind", "refines"))


def test_the_daily_cleanup_counts_words_again_for_the_duplicate_check(vault, home, settings):
    from angles.actions.maintenance import run_cleanup

    add(vault, "Adopt the quokka rota")
    database = home / "data" / "angles.db"

    def counted(word: str) -> int | None:
        row = sqlite3.connect(database).execute("SELECT docs FROM decision_term_stats WHERE term = ?", (word,))
        found = row.fetchone()
        return found[0] if found else None

    assert counted("quokka") is None
    assert run_cleanup(settings)["exit_code"] == 0
    assert counted("quokka") == 1
