"""tools/decisions.py as an operator uses it: add, list, show, import (JSON, the original export, CSV)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import CONFIG_VARS, ROOT
from tests.fakes.postgrest import FakePostgrest, fake_service_key

TOOL = "tools/decisions.py"

ORIGINAL_EXPORT = {
    "decisions": [
        {
            "id": "6f1c2a53-5d0e-4c43-9a55-0f7b1b5f3d11",
            "decision": "Adopt Notion as the reading surface — für alle 📚",
            "type": "process",
            "date": "2024-01-02",
            "active": True,
            "comment": None,
        },
        {
            "decision": "Exported without an id",
            "type": "strategy",
            "date": "2024-01-03",
            "active": False,
            "comment": "c",
        },
        {"decision": "", "type": "strategy", "date": "2024-01-03", "active": True, "comment": None},
        {"decision": "Unknown type", "type": "marketing", "date": "2024-01-04", "active": True, "comment": None},
        {"decision": "Bad date", "type": "other", "date": "2024-13-45", "active": True, "comment": None},
    ],
    "exported_at": "2024-05-01T00:00:00Z",
}


@pytest.fixture
def vault(run_script):
    """A migrated embedded database and a runner for the tool."""
    assert run_script("run_migration.py").returncode == 0

    def tool(*args, env=None):
        return run_script(TOOL, *args, env=env)

    return tool


def as_json(result):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_add_stores_one_decision_with_every_field(vault):
    added = as_json(
        vault(
            "add",
            "Use Postgres für alles 🚀",
            "--type",
            "technical",
            "--priority",
            "p1",
            "--tags",
            "db, infra",
            "--comment",
            "see ADR-1",
            "--date",
            "2025-02-03",
            "--json",
        )
    )["decision"]
    assert added["decision"] == "Use Postgres für alles 🚀"
    assert (added["type"], added["priority"], added["tags"]) == ("technical", "P1", ["db", "infra"])
    assert (added["comment"], added["date"], added["active"]) == ("see ADR-1", "2025-02-03", True)
    shown = as_json(vault("show", added["id"], "--json"))["decision"]
    assert shown == added


def test_add_rejects_bad_input_with_one_line_and_stores_nothing(vault):
    for args, fragment in (
        (["   "], "decision text is empty"),
        (["x", "--type", "marketing"], "type 'marketing' is unknown"),
        (["x", "--priority", "P9"], "priority 'P9' is unknown"),
        (["x", "--date", "yesterday"], "is not a date"),
    ):
        result = vault("add", *args)
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr
    assert as_json(vault("list", "--json"))["count"] == 0


def test_add_in_a_fresh_home_prepares_the_embedded_database_itself(run_script, home):
    result = run_script(TOOL, "add", "First decision, before any migration", "--json")
    assert result.returncode == 0, result.stderr
    assert (home / "data" / "angles.db").exists()
    listed = json.loads(run_script(TOOL, "list", "--json").stdout)
    assert [d["decision"] for d in listed["decisions"]] == ["First decision, before any migration"]


@pytest.mark.postgres
def test_add_to_a_shared_database_without_its_schema_asks_for_run_migration(run_script, pg_url):
    result = run_script(TOOL, "add", "Too early", env={"DATABASE_URL": pg_url})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "run python run_migration.py" in result.stderr


def test_list_filters_by_type_priority_state_and_date(vault):
    for args in (
        ["Old security rule", "--type", "security", "--priority", "P0", "--date", "2023-05-01"],
        ["New product bet", "--type", "product", "--priority", "P1", "--date", "2025-01-10"],
        ["Process tweak", "--type", "process", "--date", "2025-03-01"],
    ):
        assert vault("add", *args).returncode == 0
    everything = as_json(vault("list", "--json"))
    assert [d["decision"] for d in everything["decisions"]] == ["Old security rule", "New product bet", "Process tweak"]

    def names(*args):
        return [d["decision"] for d in as_json(vault("list", *args, "--json"))["decisions"]]

    assert names("--type", "product") == ["New product bet"]
    assert names("--priority", "p0") == ["Old security rule"]
    assert names("--since", "2025-01-01") == ["New product bet", "Process tweak"]
    assert names("--inactive") == []
    assert len(names("--active")) == 3
    text = vault("list", "--type", "security")
    assert "Old security rule" in text.stdout and "1 decision" in text.stdout
    bad = vault("list", "--since", "last week")
    assert bad.returncode == 1 and "--since" in bad.stderr


def test_show_accepts_the_short_id_list_prints_and_shows_the_ai_analysis(vault, settings):
    added = as_json(vault("add", "Keep a stored analysis", "--json"))["decision"]
    from angles.storage import open_storage

    with open_storage(settings) as storage:
        storage.update_decision(added["id"], {"ai_analysis": {"summary": "Sound call", "impact": "high"}})
    shown = vault("show", added["id"][:8])
    assert shown.returncode == 0, shown.stderr
    assert added["id"] in shown.stdout and "Sound call" in shown.stdout and "ai_analysis" in shown.stdout
    for field in ("notion_page_id", "synced", "created_at", "updated_at", "type_source"):
        assert field in shown.stdout
    missing = vault("show", "00000000-0000-4000-8000-000000000000")
    assert missing.returncode == 1 and "no decision with id" in missing.stderr


def test_importing_the_original_export_reports_bad_rows_and_keeps_the_good(vault, home):
    path = home / "export.json"
    path.write_text(json.dumps(ORIGINAL_EXPORT, ensure_ascii=False), encoding="utf-8")
    result = vault("import", str(path))
    assert result.returncode == 1
    assert "decisions[2]: decision text is empty" in result.stdout
    assert "decisions[3]: type 'marketing' is unknown" in result.stdout
    assert "decisions[4]: date '2024-13-45' is not a date" in result.stdout
    assert "2 new, 0 updated, 0 unchanged, 3 invalid" in result.stdout
    stored = as_json(vault("list", "--json"))["decisions"]
    assert [d["decision"] for d in stored] == [
        "Adopt Notion as the reading surface — für alle 📚",
        "Exported without an id",
    ]
    assert stored[0]["id"] == "6f1c2a53-5d0e-4c43-9a55-0f7b1b5f3d11"
    assert stored[1]["active"] is False and stored[1]["comment"] == "c"


def test_reimporting_the_same_file_creates_no_duplicates(vault, home):
    path = home / "export.json"
    path.write_text(json.dumps(ORIGINAL_EXPORT), encoding="utf-8")
    vault("import", str(path))
    first = as_json(vault("list", "--json"))["decisions"]
    again = vault("import", str(path))
    assert "0 new, 0 updated, 2 unchanged" in again.stdout
    assert as_json(vault("list", "--json"))["decisions"] == first


def test_an_edited_file_updates_only_the_fields_it_carries(vault, home, settings):
    path = home / "export.json"
    path.write_text(json.dumps(ORIGINAL_EXPORT["decisions"][:1]), encoding="utf-8")
    assert vault("import", str(path)).returncode == 0
    decision_id = ORIGINAL_EXPORT["decisions"][0]["id"]
    from angles.storage import open_storage

    with open_storage(settings) as storage:
        storage.update_decision(decision_id, {"priority": "P0", "notion_page_id": "page-9"})
    edited = [{**ORIGINAL_EXPORT["decisions"][0], "comment": "now with a comment", "active": False}]
    path.write_text(json.dumps(edited), encoding="utf-8")
    result = vault("import", str(path))
    assert "0 new, 1 updated, 0 unchanged" in result.stdout
    shown = as_json(vault("show", decision_id, "--json"))["decision"]
    assert shown["comment"] == "now with a comment" and shown["active"] is False
    assert shown["priority"] == "P0" and shown["notion_page_id"] == "page-9"


def test_csv_with_a_header_imports_and_reports_bad_lines(vault, home):
    path = home / "decisions.csv"
    path.write_text(
        "decision,type,priority,tags,date,active,comment\n"
        'Use WAL mode,technical,P2,"db,sqlite",2025-01-01,true,\n'
        ",strategy,,,2025-01-02,true,empty text\n"
        '"Multi-line, quoted\ntext ✓",architecture,P1,,2025-01-03,false,ok\n'
        "Bad priority,process,P7,,2025-01-04,true,\n",
        encoding="utf-8",
    )
    result = vault("import", str(path), "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 1
    assert (report["new"], report["unchanged"]) == (2, 0)
    assert [p["where"] for p in report["invalid"]] == ["line 3", "line 6"]
    stored = as_json(vault("list", "--json"))["decisions"]
    assert stored[0]["tags"] == ["db", "sqlite"] and stored[0]["priority"] == "P2"
    assert stored[1]["decision"] == "Multi-line, quoted\ntext ✓" and stored[1]["active"] is False
    again = json.loads(vault("import", str(path), "--json").stdout)
    assert (again["new"], again["unchanged"]) == (0, 2)


def test_import_dry_run_writes_nothing(vault, home):
    path = home / "export.json"
    path.write_text(json.dumps(ORIGINAL_EXPORT), encoding="utf-8")
    report = json.loads(vault("import", str(path), "--dry-run", "--json").stdout)
    assert report["dry_run"] is True and report["new"] == 2 and len(report["invalid"]) == 3
    assert as_json(vault("list", "--json"))["count"] == 0


@pytest.mark.parametrize(
    "content,fragment",
    [
        ("{not json", "not valid JSON (line 1"),
        ('{"rows": []}', 'expected a list of decisions or {"decisions": [...]}'),
    ],
)
def test_an_unreadable_import_file_is_one_clear_line(vault, home, content, fragment):
    path = home / "bad.json"
    path.write_text(content, encoding="utf-8")
    result = vault("import", str(path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and fragment in result.stderr
    missing = vault("import", str(home / "nope.csv"))
    assert missing.returncode == 1 and "no such file" in missing.stderr
    headerless = home / "plain.csv"
    headerless.write_text("just,some,values\n", encoding="utf-8")
    assert "must name a 'decision' column" in vault("import", str(headerless)).stderr


@pytest.mark.postgres
def test_import_is_idempotent_on_postgres(run_script, home, pg_url):
    env = {"DATABASE_URL": pg_url}
    assert run_script("run_migration.py", env=env).returncode == 0
    path = home / "export.json"
    path.write_text(json.dumps(ORIGINAL_EXPORT), encoding="utf-8")
    assert "2 new" in run_script(TOOL, "import", str(path), env=env).stdout
    assert "0 new, 0 updated, 2 unchanged" in run_script(TOOL, "import", str(path), env=env).stdout
    listed = json.loads(run_script(TOOL, "list", "--json", env=env).stdout)
    assert listed["count"] == 2


def test_import_is_idempotent_over_supabase_rest(run_script, home):
    key = fake_service_key()
    with FakePostgrest(key) as fake:
        fake.create_schema()
        # A fast client-side limit: these tests are about the answers, not the pacing.
        env = {"SUPABASE_URL": fake.url, "SUPABASE_KEY": key, "SUPABASE_RPM": "6000"}
        path = home / "export.json"
        path.write_text(json.dumps(ORIGINAL_EXPORT), encoding="utf-8")
        first = run_script(TOOL, "import", str(path), env=env)
        assert "2 new" in first.stdout, first.stderr
        assert "0 new, 0 updated, 2 unchanged" in run_script(TOOL, "import", str(path), env=env).stdout
        assert len(fake.rows("decision_vault")) == 2
        assert key not in first.stdout + first.stderr


def test_a_large_import_is_idempotent_too(vault, home):
    rows = [{"decision": f"Bulk decision {n} — ✓", "type": "other", "date": "2025-01-01"} for n in range(180)]
    path = home / "bulk.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    first = json.loads(vault("import", str(path), "--json").stdout)
    assert (first["new"], first["unchanged"]) == (180, 0)
    rows[7]["comment"] = "edited"
    path.write_text(json.dumps(rows), encoding="utf-8")
    second = json.loads(vault("import", str(path), "--json").stdout)
    assert (second["new"], second["updated"], second["unchanged"]) == (0, 1, 179)
    assert as_json(vault("list", "--json"))["count"] == 180


# Each value is one bad row; the file around it holds good rows before and after.
BAD_ROWS = {
    "numeric timestamp": {"decision": "numeric stamp", "created_at": 1735689600},
    "boolean timestamp": {"decision": "boolean stamp", "updated_at": True},
    "year past 9999 in UTC": {"decision": "far future", "created_at": "9999-12-31T23:30:00-05:00"},
    "lone surrogate": {"decision": "broken \ud800 text"},
    "NUL character": {"decision": "nul \u0000 inside"},
    "NUL in a comment": {"decision": "nul in the comment", "comment": "a\u0000b"},
    "NUL in the analysis": {"decision": "nul in the analysis", "ai_analysis": {"summary": "x\u0000"}},
    "trailing garbage after a date": {"decision": "garbage date", "date": "2025-01-01garbage"},
    "numeric date": {"decision": "numeric date", "date": 20250101},
    "NaN": {"decision": "nan analysis", "ai_analysis": {"confidence": float("nan")}},
    "Infinity": {"decision": "infinite analysis", "ai_analysis": {"score": float("inf")}},
    "deep nesting": {"decision": "deep", "ai_analysis": json.loads("[" * 500 + "]" * 500)},
}


def good(n: int) -> dict:
    return {"decision": f"good decision {n}", "type": "technical", "date": "2025-02-01"}


def test_each_bad_row_is_skipped_with_one_line_and_every_good_row_imports(vault, home):
    rows, bad_at = [], {}
    for n, (label, bad) in enumerate(BAD_ROWS.items()):
        rows.append(good(n))
        bad_at[f"[{len(rows)}]"] = label
        rows.append(bad)
    rows.append(good(len(BAD_ROWS)))
    path = home / "mixed.json"
    # allow_nan: the file holds NaN/Infinity literally, as other tools write them.
    path.write_text(json.dumps(rows, allow_nan=True), encoding="utf-8")
    result = vault("import", str(path), "--json")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr
    report = json.loads(result.stdout)
    assert {p["where"]: bad_at.get(p["where"]) for p in report["invalid"]} == {w: bad_at[w] for w in bad_at}
    assert report["new"] == len(BAD_ROWS) + 1
    text = vault("import", str(path)).stdout
    assert all(sum(line.startswith(f"{where}: ") for line in text.splitlines()) == 1 for where in bad_at)
    listed = as_json(vault("list", "--json"))
    assert sorted(d["decision"] for d in listed["decisions"]) == sorted(f"good decision {n}" for n in range(13))


def test_an_export_after_a_rejected_nan_is_valid_json(vault, home, run_script):
    path = home / "nan.json"
    path.write_text('[{"decision": "fine", "ai_analysis": {"confidence": NaN}}, {"decision": "ok"}]')
    assert vault("import", str(path)).returncode == 1
    assert run_script("memory_sync.py", "--export-only").returncode == 0
    exported = next((home / "export").glob("*.json")).read_text()
    assert "NaN" not in exported
    json.loads(exported, parse_constant=lambda name: pytest.fail(f"{name} in the export"))


def test_json_nested_too_deeply_to_read_is_one_line(vault, home):
    path = home / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    result = vault("import", str(path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "nested too deeply" in result.stderr and "RecursionError" not in result.stderr


def test_a_csv_field_over_128_kib_is_imported_not_fatal(vault, home):
    long_text = "long " * 40_000
    path = home / "long.csv"
    path.write_text(f'decision,type\nfirst,other\n"{long_text}",other\nlast,other\n', encoding="utf-8")
    result = vault("import", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    stored = as_json(vault("list", "--json"))["decisions"]
    assert sorted(len(d["decision"]) for d in stored) == [4, 5, len(long_text.strip())]


def test_a_duplicate_id_inside_one_file_is_reported_and_exits_1(vault, home):
    same = "0b5e4c1e-1111-4c43-9a55-0f7b1b5f3d11"
    path = home / "dup.json"
    path.write_text(
        json.dumps([{"id": same, "decision": "first"}, {"id": same, "decision": "second"}, {"decision": "other"}])
    )
    result = vault("import", str(path))
    assert result.returncode == 1
    assert f"[1]: same id as [0] ({same}), skipped" in result.stdout
    assert "2 new" in result.stdout and "1 duplicate ids" in result.stdout
    assert as_json(vault("show", same, "--json"))["decision"]["decision"] == "first"


@pytest.mark.postgres
def test_a_nul_row_is_skipped_on_postgres_and_the_rows_after_it_import(run_script, home, pg_url):
    env = {"DATABASE_URL": pg_url}
    assert run_script("run_migration.py", env=env).returncode == 0
    path = home / "nul.json"
    path.write_text(json.dumps([good(1), {"decision": "a\u0000b"}, good(2), good(3)]))
    result = run_script(TOOL, "import", str(path), env=env)
    assert result.returncode == 1 and "3 new" in result.stdout
    assert "[1]: decision holds a NUL character" in result.stdout


def _superseding_file(home):
    """Rows superseded by a later row of the file (a chain), by nothing that exists, and by itself."""
    first, second, third = (f"0b5e4c1e-2222-4c43-9a55-0f7b1b5f3d1{n}" for n in range(3))
    missing, selfish = "0b5e4c1e-3333-4c43-9a55-0f7b1b5f3d10", "0b5e4c1e-4444-4c43-9a55-0f7b1b5f3d10"
    rows = [
        {"id": first, "decision": "Paint it red", "active": False, "superseded_by": second},
        {"id": second, "decision": "Paint it blue", "active": False, "superseded_by": third},
        {"decision": "Points nowhere", "superseded_by": missing},
        {"id": selfish, "decision": "Points at itself", "superseded_by": selfish},
        {"id": third, "decision": "Paint it green"},
        good(1),
    ]
    path = home / "chain.json"
    path.write_text(json.dumps(rows))
    return path, (first, second, third), missing


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_import_keeps_supersede_chains_and_skips_rows_superseded_by_nothing(backend, run_script, home, request):
    env = {"DATABASE_URL": request.getfixturevalue("pg_url")} if backend == "postgres" else {}
    assert run_script("run_migration.py", env=env).returncode == 0
    path, (first, second, third), missing = _superseding_file(home)
    result = run_script(TOOL, "import", str(path), env=env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "FOREIGN KEY" not in result.stdout + result.stderr
    assert f"[2]: superseded_by {missing} names no decision" in result.stdout
    assert "[3]: superseded_by names the decision itself" in result.stdout
    assert "4 new" in result.stdout
    shown = json.loads(run_script(TOOL, "show", first, "--json", env=env).stdout)
    assert shown["decision"]["superseded_by"] == second
    assert shown["chain"] == [first, second, third]
    # The same file again changes nothing and still names the same two rows.
    again = run_script(TOOL, "import", str(path), env=env)
    assert again.returncode == 1 and "0 new" in again.stdout and "2 invalid" in again.stdout


@pytest.mark.parametrize("args", [("list",), ("list", "--json"), ("search", "decision")])
def test_a_reader_that_stops_reading_is_no_error(vault, home, args):
    """`tools/decisions.py list | head` ends quietly with exit 0, with no "Broken pipe" and no traceback."""
    path = home / "some.json"
    path.write_text(json.dumps([good(n) for n in range(5)]))
    assert vault("import", str(path)).returncode == 0
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the tool writes its first line
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS} | {"ANGLES_HOME": str(home)}
    try:
        proc = subprocess.run(
            [sys.executable, str(ROOT / TOOL), *args],
            cwd=home,
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 0 and proc.stderr == ""
