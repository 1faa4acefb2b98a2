"""The bulk dump behind the JSON export: PostgreSQL's server-built lines equal the generic path byte for byte."""

from __future__ import annotations

import json
import uuid

import pytest

from angles.engines.credential_scan import CredentialScanner
from angles.engines.decision_model import COLUMNS, validate
from angles.logs import TOKEN_PATTERNS, Redactor
from angles.storage import migrations
from angles.storage.base import Storage

AWKWARD_TEXT = [
    'quote " and backslash \\ and \\\\ two, then a trailing backslash \\',
    "tab\tnew line\ncarriage\rbell\x07 unit\x1f delete\x7f line-sep\u2028 para\u2029",
    "ünïcödé 決定 решение تصميم 🚀 and a surrogate-free astral 𝄞",
    "looks like COPY escapes: \\n \\t \\N \\\\N",
    'json in text {"a": 1, "b": [1, 2]} and 0.00001 and 1e-05',
]
AWKWARD_ANALYSIS = [
    {"confidence": 0.85, "summary": "plain"},
    {"confidence": 1e-05, "tiny": -2.5e-07, "big": 1e20, "whole": 3.0, "zero": 0.0, "neg_zero": -0.0},
    {"nested": {"list": [1, 2.5, [0.1 + 0.2, {"deep": 'x\\y"z'}]], "empty": {}, "none": []}, "flag": True},
    {"int": 12345678901234567890, "null": None, "text": 'ü\n\t"', "key_concepts": ["a", "b"]},
]


def awkward_rows(count: int) -> list[dict]:
    rows = []
    for n in range(count):
        record = {
            "decision": f"{AWKWARD_TEXT[n % len(AWKWARD_TEXT)]} #{n}",
            "type": "technical",
            "priority": ("P0", "P1", None)[n % 3],
            "tags": [["a, b", 'q"t', "ü"], [], ["x\\y"]][n % 3],
            "comment": None if n % 2 else f"comment {n}\n",
            "date": f"{2000 + n % 30}-0{1 + n % 9}-1{n % 10}",
            "created_at": f"2025-01-0{1 + n % 9}T10:00:00Z",
            "updated_at": f"2025-02-0{1 + n % 9}T10:00:00.{n % 7:06d}Z",
        }
        if n % 4:
            record["ai_analysis"] = AWKWARD_ANALYSIS[n % len(AWKWARD_ANALYSIS)]
            record["ai_hash"] = f"{n:064x}"
        if n % 5 == 0:
            record.update(notion_page_id=str(uuid.uuid4()), synced=True, synced_at="2025-03-01T00:00:00.5Z")
            record.update(deleted_at="2025-03-02T01:02:03.000004+02:00", notion_last_edited="2025-03-01 12:00:00")
        rows.append(validate(record))
    return rows


@pytest.fixture
def pg_storage(pg_url):
    from angles.storage.postgres import PostgresStorage

    storage = PostgresStorage(pg_url)
    migrations.migrate(storage)
    yield storage
    storage.close()


@pytest.mark.postgres
def test_postgres_dump_equals_the_generic_json_of_every_decision_in_id_order(pg_storage, monkeypatch):
    import angles.storage.postgres as postgres

    # Tiny spill batches so the temporary-file path is taken, not only the in-memory remainder.
    monkeypatch.setattr(postgres, "_SPILL_ROWS", 2)
    rows = awkward_rows(700)
    pg_storage.upsert_decisions(rows)
    first = rows[0]["id"]
    pg_storage.update_decision(rows[1]["id"], {"superseded_by": first})
    fast = [line for batch in pg_storage.dump_decisions(batch_bytes=4096) for line in batch]
    generic = [line for batch in Storage.dump_decisions(pg_storage) for line in batch]
    assert fast == generic
    lines = [line.decode() for line in fast]
    assert [json.loads(line)["id"] for line in lines] == sorted(r["id"] for r in rows)
    assert all(list(json.loads(line)) == list(COLUMNS) for line in lines[:20])


@pytest.mark.postgres
def test_postgres_dump_of_an_empty_or_missing_table_is_empty(pg_url):
    from angles.storage.postgres import PostgresStorage

    with PostgresStorage(pg_url) as storage:
        assert list(storage.dump_decisions()) == []
        migrations.migrate(storage)
        assert list(storage.dump_decisions()) == []


@pytest.mark.postgres
def test_export_from_postgres_holds_a_pasted_secret_as_stored_and_names_it(home, run_script, pg_url, pg_storage):
    key = "sk-proj-" + "abcdefghijKLMNOPQRST0123456789"
    rows = awkward_rows(300)
    rows[7] = validate({**rows[7], "decision": f"rotate {key} today"})
    pg_storage.upsert_decisions(rows)
    proc = run_script("memory_sync.py", "--export-only", env={"DATABASE_URL": pg_url})
    assert proc.returncode == 0, proc.stderr
    (path,) = list((home / "export").glob("decisions_*.json"))
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["count"] == 300 == len(data["decisions"])
    assert [d["id"] for d in data["decisions"]] == sorted(r["id"] for r in rows)
    assert next(d["decision"] for d in data["decisions"] if d["id"] == rows[7]["id"]) == f"rotate {key} today"
    assert "[REDACTED]" not in path.read_text(encoding="utf-8")
    assert f"decision {rows[7]['id']} looks like it holds a credential" in proc.stdout
    assert key not in proc.stdout + proc.stderr


def _fake(prefix: str, n: int = 36) -> str:
    # Built at run time so no token-shaped literal is committed.
    return prefix + "".join("abcdefghijKLMNOPQRST0123456789"[i % 30] for i in range(n))


SHAPES = [
    _fake("sk-proj-"),
    _fake("sk-"),
    *(_fake(f"gh{c}_") for c in "pousr"),
    _fake("github_pat_"),
    _fake("secret_", 44),
    _fake("ntn_"),
    _fake("sb_secret_"),
    _fake("sb_publishable_"),
    "eyJ" + _fake("h", 20) + ".eyJ" + _fake("p", 30) + "." + _fake("s", 30),
    "https://user:pa55word@example.org/x",
]


def test_the_quick_tests_never_clear_text_the_full_scan_would_report():
    configured = "plain-configured-value-1234"
    redactor = Redactor([configured])
    scanner = CredentialScanner([configured])
    for secret in [*SHAPES, configured]:
        text = f"before {secret} after"
        line = json.dumps({"id": "x", "decision": text})
        assert redactor(text) != text and redactor.may_hold_secret(text), secret
        assert scanner.fields({"decision": text}) == ["decision"], secret
        assert scanner.may_match(line.encode()) and scanner.line_may_match(line), secret
    clean = '{"id": "5e1c0f4e-0000-4000-8000-000000000000", "notion_sync_hash": "ab12", "decision": "risk - ok"}'
    assert not redactor.may_hold_secret(clean) and not scanner.may_match(clean.encode())
    assert redactor(clean) == clean
    assert not TOKEN_PATTERNS.search(clean)


@pytest.mark.parametrize(
    "text",
    [
        "Ship disk-encryption-at-rest this quarter",
        "Adopt the task-management-system-v2 for every team",
        "Keep the risk-assessment-spreadsheet up to date",
        "Use postgres as the vault database",
    ],
)
def test_ordinary_words_are_neither_redacted_nor_reported(text):
    # "postgres" is the password of the usual development URL, a configured secret too short to redact.
    redactor = Redactor(["postgres"])
    assert redactor(text) == text
    assert CredentialScanner(["postgres"]).fields({"decision": text}) == []


def test_export_names_a_token_used_as_a_key_and_a_secret_with_quotes_without_changing_them(
    home, run_script, sqlite_storage
):
    configured = 'plain "configured\\ value-1234'
    as_key = _fake("ghp_")
    rows = awkward_rows(40)
    rows[3] = validate({**rows[3], "ai_analysis": {as_key: "a token used as a key"}})
    rows[5] = validate({**rows[5], "comment": f"the key is {configured}"})
    rows[8] = validate({**rows[8], "decision": "Ship disk-encryption-at-rest and the task-management-system-v2"})
    sqlite_storage.upsert_decisions(rows)
    before = {r["id"]: r for r in sqlite_storage.iter_decisions()}

    proc = run_script("memory_sync.py", "--export-only", env={"OPENAI_API_KEY": configured})

    assert proc.returncode == 0, proc.stderr
    (path,) = list((home / "export").glob("decisions_*.json"))
    exported = {d["id"]: d for d in json.loads(path.read_text(encoding="utf-8"))["decisions"]}
    assert exported == before
    assert f"decision {rows[3]['id']} looks like it holds a credential (fields: ai_analysis)" in proc.stdout
    assert f"decision {rows[5]['id']} looks like it holds a credential (fields: comment)" in proc.stdout
    assert rows[8]["id"] not in proc.stdout
    log = (home / "logs" / "active" / "memory_sync.log").read_text()
    assert "1 decision(s)" not in log and "2 decision(s) look like they hold a credential" in log
    for text in (proc.stdout, proc.stderr, log):
        assert configured not in text and as_key not in text


@pytest.mark.postgres
def test_export_from_postgres_names_tokens_among_text_that_has_no_hyphen_or_underscore(
    home, run_script, pg_url, pg_storage
):
    # Text without '_' lets the dump skip the token scans that need one; a token must still switch them back on.
    keys = [_fake("sk-proj-"), _fake("ghp_"), _fake("ntn_")]
    rows = [validate({"decision": f"plain words number {n}", "type": "process"}) for n in range(400)]
    for n, key in enumerate(keys):
        rows[n * 100] = validate({**rows[n * 100], "decision": f"rotate {key} today"})
    pg_storage.upsert_decisions(rows)
    proc = run_script("memory_sync.py", "--export-only", env={"DATABASE_URL": pg_url})
    assert proc.returncode == 0, proc.stderr
    (path,) = list((home / "export").glob("decisions_*.json"))
    text = path.read_text(encoding="utf-8")
    assert json.loads(text)["count"] == 400
    for n, key in enumerate(keys):
        assert key in text and f"decision {rows[n * 100]['id']} looks like" in proc.stdout


@pytest.mark.postgres
def test_a_development_database_password_never_cuts_a_word_out_of_decisions(home, run_script, pg_url, pg_storage):
    url = pg_url.replace("postgres@", "postgres:postgres@", 1)
    texts = ["Run postgres everywhere", "Ship disk-encryption-at-rest", "Keep the risk-assessment-spreadsheet"]
    pg_storage.upsert_decisions([validate({"decision": t, "type": "technical"}) for t in texts])
    env = {"DATABASE_URL": url}

    exported = run_script("memory_sync.py", "--export-only", env=env)
    listed = run_script("tools/decisions.py", "list", env=env)
    backup = run_script("run_backup_now.py", env=env)
    pg_storage.delete_decisions([r["id"] for r in pg_storage.iter_decisions()])
    restored = run_script("restore_from_github.py", "--restore-decisions", env=env)

    for done in (exported, listed, backup, restored):
        assert done.returncode == 0, done.stderr
    (path,) = list((home / "export").glob("decisions_*.json"))
    export_texts = {d["decision"] for d in json.loads(path.read_text(encoding="utf-8"))["decisions"]}
    assert export_texts == set(texts)
    for text in texts:
        assert text in listed.stdout
    assert {r["decision"] for r in pg_storage.iter_decisions()} == set(texts)
    assert "credential" not in exported.stdout + backup.stdout
