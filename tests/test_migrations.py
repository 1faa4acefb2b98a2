"""run_migration.py on SQLite, PostgreSQL and Supabase REST, and the in-place upgrade of the original schema."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg.rows import dict_row

from angles.errors import MigrationError
from angles.storage import migrations
from tests.fakes.postgrest import FakePostgrest, fake_service_key

# The newest migration this checkout ships (other branches add theirs).
SHIPPED = migrations.latest_version("sqlite")

# The original system's schema, as its database was created (issue 2, item 5).
ORIGINAL_SCHEMA = """
CREATE TABLE decision_vault (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    decision text NOT NULL,
    date date NOT NULL DEFAULT current_date,
    type text NOT NULL CHECK (type IN ('strategy', 'technical', 'ethical', 'architecture', 'process',
                                       'security', 'other')),
    active boolean NOT NULL DEFAULT true,
    comment text,
    synced boolean NOT NULL DEFAULT false,
    synced_at timestamptz,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);
CREATE OR REPLACE FUNCTION update_updated_at_column() RETURNS trigger AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER update_decision_vault_updated_at BEFORE UPDATE ON decision_vault
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();
CREATE TABLE agent_activity (
    id bigserial PRIMARY KEY,
    agent_name text NOT NULL,
    action text NOT NULL,
    details text,
    status text DEFAULT 'completed',
    created_at timestamptz
);
"""

ORIGINAL_COLUMNS = ("id", "decision", "date", "type", "active", "comment", "synced", "synced_at", "created_at")


def pg_rows(url: str, sql: str, params=()) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def pg_exec(url: str, sql: str, params=()) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql, params)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# SQLite, the embedded default


def test_fresh_checkout_creates_the_sqlite_database_and_a_second_run_has_nothing_to_do(run_script, home):
    first = run_script("run_migration.py")
    assert first.returncode == 0, first.stderr
    assert (home / "data" / "angles.db").is_file()
    assert "applied 0001 original_schema" in first.stdout and "applied 0002 vault_v2" in first.stdout
    second = run_script("run_migration.py")
    assert second.returncode == 0, second.stderr
    assert "nothing pending" in second.stdout
    report = json.loads(run_script("run_migration.py", "--json").stdout)
    assert report["pending"] == [] and report["schema_version"] == report[
        "latest_version"
    ] == migrations.latest_version("sqlite")


def test_dry_run_on_a_fresh_checkout_lists_migrations_and_creates_nothing(run_script, home):
    result = run_script("run_migration.py", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would apply 0001 original_schema (dry run)" in result.stdout
    assert "would apply 0002 vault_v2 (dry run)" in result.stdout
    assert not (home / "data" / "angles.db").exists()


def test_a_changed_applied_migration_is_refused(run_script, home):
    assert run_script("run_migration.py").returncode == 0
    import sqlite3

    with sqlite3.connect(home / "data" / "angles.db") as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    result = run_script("run_migration.py")
    assert result.returncode == 2
    assert lines(result.stderr) == [lines(result.stderr)[0]]
    assert "0001_original_schema.sql was changed after it was applied" in result.stderr


@pytest.fixture
def broken_migrations(tmp_path, monkeypatch):
    """The shipped migrations plus one more whose last statement fails after earlier ones succeeded."""
    root = tmp_path / "migrations"
    for dialect in ("sqlite", "postgres"):
        shutil.copytree(migrations.MIGRATIONS_DIR / dialect, root / dialect)
        (root / dialect / f"{SHIPPED + 1:04d}_half_done.sql").write_text(
            "CREATE TABLE half_done (id integer);\n"
            "ALTER TABLE decision_vault ADD COLUMN half_column integer;\n"
            "INSERT INTO agent_activity (agent_name, action) VALUES ('migration', 'half');\n"
            "SELECT * FROM no_such_table;\n"
        )
    monkeypatch.setattr(migrations, "MIGRATIONS_DIR", root)
    return root


def _assert_nothing_half_applied(storage, columns_of):
    with pytest.raises(MigrationError, match=f"{SHIPPED + 1:04d}_half_done.sql failed and was rolled back") as info:
        migrations.migrate(storage)
    assert info.value.exit_code == 2
    assert storage.schema_version() == SHIPPED
    assert "half_column" not in columns_of("decision_vault")
    assert columns_of("half_done") == []
    assert [r["action"] for r in storage.iter_activity()] == []


def test_failing_sql_on_sqlite_is_rolled_back_whole(broken_migrations, tmp_path):
    from angles.storage.sqlite import SQLiteStorage

    storage = SQLiteStorage(tmp_path / "vault.db")

    def columns_of(table):
        return [r[1] for r in storage.conn.execute(f"PRAGMA table_info({table})")]

    _assert_nothing_half_applied(storage, columns_of)
    storage.close()


# PostgreSQL


@pytest.mark.postgres
def test_postgres_migration_dry_run_then_apply_then_nothing_pending(run_script, pg_url):
    env = {"DATABASE_URL": pg_url}
    dry = run_script("run_migration.py", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would apply 0001 original_schema (dry run)" in dry.stdout
    assert pg_rows(pg_url, "SELECT to_regclass('decision_vault') AS t")[0]["t"] is None
    applied = run_script("run_migration.py", env=env)
    assert applied.returncode == 0, applied.stderr
    assert "applied 0002 vault_v2" in applied.stdout
    again = run_script("run_migration.py", env=env)
    assert again.returncode == 0 and "nothing pending" in again.stdout
    versions = pg_rows(pg_url, "SELECT version FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in versions] == [m.version for m in migrations.available("postgres")]


@pytest.mark.postgres
def test_postgres_refuses_a_changed_applied_migration(run_script, pg_url):
    assert run_script("run_migration.py", env={"DATABASE_URL": pg_url}).returncode == 0
    pg_exec(pg_url, "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 2")
    result = run_script("run_migration.py", env={"DATABASE_URL": pg_url})
    assert result.returncode == 2
    assert "0002_vault_v2.sql was changed after it was applied" in result.stderr


@pytest.mark.postgres
def test_failing_sql_on_postgres_is_rolled_back_whole(broken_migrations, pg_url):
    from angles.storage.postgres import PostgresStorage

    storage = PostgresStorage(pg_url)

    def columns_of(table):
        rows = pg_rows(pg_url, "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,))
        return [r["column_name"] for r in rows]

    _assert_nothing_half_applied(storage, columns_of)
    storage.close()


def test_unreachable_database_exits_2_with_one_line(run_script):
    result = run_script("run_migration.py", env={"DATABASE_URL": "postgresql://127.0.0.1:1/x"})
    assert result.returncode == 2
    assert lines(result.stderr) == ["error: cannot connect to PostgreSQL at 127.0.0.1:1: Connection refused"]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_connect_failure_never_shows_the_password(run_script):
    url = "postgresql://vault:pw-not-for-eyes@127.0.0.1:1/vault"
    result = run_script("run_migration.py", env={"DATABASE_URL": url})
    assert result.returncode == 2
    assert "pw-not-for-eyes" not in result.stderr + result.stdout


# Supabase REST


def test_supabase_rest_prints_the_sql_to_apply_instead_of_running_it(run_script, home):
    key = fake_service_key()
    with FakePostgrest(key) as fake:
        # A fast client-side limit: these tests are about the answers, not the pacing.
        env = {"SUPABASE_URL": fake.url, "SUPABASE_KEY": key, "SUPABASE_RPM": "6000"}
        dry = run_script("run_migration.py", "--dry-run", env=env)
        assert dry.returncode == 0, dry.stderr
        assert "CREATE TABLE IF NOT EXISTS decision_vault" in dry.stdout
        assert "would apply 0001 original_schema" in dry.stdout
        real = run_script("run_migration.py", env=env)
        assert real.returncode == 1
        assert "Supabase REST cannot run DDL" in real.stdout and "-- 0002_vault_v2.sql" in real.stdout
        assert key not in real.stdout + real.stderr
        fake.create_schema(migrated=True)
        done = run_script("run_migration.py", env=env)
        assert done.returncode == 0 and "nothing pending" in done.stdout
    assert not (home / "data" / "angles.db").exists()


def test_supabase_rest_unreachable_exits_3(run_script):
    env = {"SUPABASE_URL": "http://127.0.0.1:1", "SUPABASE_KEY": fake_service_key()}
    result = run_script("run_migration.py", env=env)
    assert result.returncode == 3
    assert len(lines(result.stderr)) == 1 and "unreachable" in result.stderr


# The original system's database, upgraded in place


@pytest.fixture
def original_database(pg_url):
    """A database exactly as the original system left it, with rows in both tables."""
    pg_exec(pg_url, ORIGINAL_SCHEMA)
    rows = [
        (
            "Adopt Postgres für alles — 決定 ✅",
            "2024-01-15",
            "architecture",
            True,
            "Äußerst wichtig 🚀",
            True,
            "2024-01-16T08:00:00+00",
            "2024-01-15T09:00:00+00",
            "2024-01-16T08:00:00+00",
        ),
        (
            "Weekly security review",
            "2024-02-01",
            "security",
            True,
            None,
            False,
            None,
            "2024-02-01T10:00:00+00",
            "2024-02-01T10:00:00+00",
        ),
        (
            "Retire the old CRM",
            "2023-11-30",
            "strategy",
            False,
            "superseded by the 2024 plan",
            True,
            "2023-12-01T00:00:00+00",
            "2023-11-30T12:00:00+00",
            "2023-12-01T00:00:00+00",
        ),
        ("Écrire les tests d'abord", "2024-03-03", "process", True, "", False, None, None, None),
        ("Ethics board sign-off", "2024-03-04", "ethical", True, None, False, None, "2024-03-04T07:00:00+00", None),
        (
            "Use type hints",
            "2024-03-05",
            "technical",
            True,
            "mypy later",
            False,
            None,
            "2024-03-05T07:00:00+00",
            "2024-03-05T07:30:00+00",
        ),
        ("Misc", "2024-03-06", "other", True, None, False, None, "2024-03-06T07:00:00+00", "2024-03-06T07:00:00+00"),
    ]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE decision_vault DISABLE TRIGGER USER")  # keep the historical updated_at values
        for row in rows:
            conn.execute(
                "INSERT INTO decision_vault (decision, date, type, active, comment, synced, synced_at, created_at,"
                " updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                row,
            )
        conn.execute("ALTER TABLE decision_vault ENABLE TRIGGER USER")
        conn.execute(
            "INSERT INTO decision_vault (id, decision, type) VALUES (%s, 'Defaults only', 'other')",
            (str(uuid.uuid4()),),
        )
        for agent, action, details, status, created in (
            ("sync", "notion_sync", "ok ✓", "completed", "2024-03-01T00:00:00+00"),
            ("sync", "notion_sync", None, None, None),
            ("backup", "git_push", "rejected: ünï", "failed", "2024-03-02T00:00:00+00"),
        ):
            conn.execute(
                "INSERT INTO agent_activity (agent_name, action, details, status, created_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                (agent, action, details, status, created),
            )
    before = {
        "decisions": pg_rows(pg_url, "SELECT * FROM decision_vault ORDER BY id"),
        "activity": pg_rows(pg_url, "SELECT * FROM agent_activity ORDER BY id"),
    }
    return pg_url, before


@pytest.mark.postgres
def test_the_original_schema_is_upgraded_in_place_losing_nothing(run_script, original_database):
    url, before = original_database
    result = run_script("run_migration.py", env={"DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    after = pg_rows(url, "SELECT * FROM decision_vault ORDER BY id")
    assert len(after) == len(before["decisions"]) == 8
    for old, new in zip(before["decisions"], after, strict=True):
        for column in ORIGINAL_COLUMNS:
            if column != "created_at":
                assert new[column] == old[column], (column, old, new)
        # Timestamps the original left empty are filled from the other one, or from the decision's date.
        fallback = datetime.combine(old["date"], datetime.min.time(), UTC)
        assert new["created_at"] == (old["created_at"] or old["updated_at"] or fallback)
        assert new["updated_at"] == (old["updated_at"] or old["created_at"] or fallback)
        assert new["tags"] == [] and new["priority"] is None and new["type_source"] == "person"
        assert new["ai_analysis"] is None and new["deleted_at"] is None
    synced_before = {r["id"]: r["synced_at"] for r in before["decisions"] if r["synced"]}
    synced_after = {r["id"]: r["synced_at"] for r in after if r["synced"]}
    assert synced_after == synced_before and len(synced_after) == 2
    assert pg_rows(url, "SELECT * FROM agent_activity ORDER BY id") == [
        {**r, "started_at": None, "finished_at": None, "duration_s": None, "host": None} for r in before["activity"]
    ]


@pytest.mark.postgres
def test_the_upgraded_schema_accepts_product_and_keeps_explicit_updated_at(run_script, original_database):
    url, before = original_database
    assert run_script("run_migration.py", env={"DATABASE_URL": url}).returncode == 0
    pg_exec(url, "INSERT INTO decision_vault (decision, type) VALUES ('Ship the mobile app', 'product')")
    with pytest.raises(psycopg.errors.CheckViolation):
        pg_exec(url, "INSERT INTO decision_vault (decision, type) VALUES ('x', 'marketing')")
    # Any row with a historical updated_at (ids are random, so never rely on the first one).
    original = next(r for r in before["decisions"] if r["updated_at"] and r["updated_at"].year < 2025)
    target = original["id"]
    # A person editing in the Supabase dashboard still gets updated_at stamped by the trigger ...
    pg_exec(url, "UPDATE decision_vault SET comment = 'edited by hand' WHERE id = %s", (target,))
    stamped = pg_rows(url, "SELECT updated_at FROM decision_vault WHERE id = %s", (target,))[0]["updated_at"]
    assert stamped > original["updated_at"] and stamped.date() == datetime.now(UTC).date()
    # ... while a writer that sets updated_at (a restore) keeps its value.
    pg_exec(url, "UPDATE decision_vault SET updated_at = '2020-01-01T00:00:00Z' WHERE id = %s", (target,))
    kept = pg_rows(url, "SELECT updated_at FROM decision_vault WHERE id = %s", (target,))[0]["updated_at"]
    assert kept == datetime(2020, 1, 1, tzinfo=UTC)


@pytest.mark.postgres
def test_the_upgraded_rows_read_through_storage_like_any_other(run_script, original_database):
    from angles.storage.postgres import PostgresStorage

    url, before = original_database
    assert run_script("run_migration.py", env={"DATABASE_URL": url}).returncode == 0
    with PostgresStorage(url) as storage:
        rows = list(storage.iter_decisions())
        assert [r["id"] for r in rows] == sorted(str(r["id"]) for r in before["decisions"])
        first = storage.get_decision(str(before["decisions"][0]["id"]))
        assert first["decision"] == before["decisions"][0]["decision"]
        assert first["synced"] == before["decisions"][0]["synced"]
        assert [r["action"] for r in storage.iter_activity()] == ["notion_sync", "notion_sync", "git_push"]


def test_commands_on_an_unmigrated_postgres_say_to_run_the_migration(run_script, pg_url):
    result = run_script("memory_sync.py", "--export-only", env={"DATABASE_URL": pg_url})
    assert result.returncode == 2
    assert "run python run_migration.py" in result.stderr
    assert run_script("run_migration.py", env={"DATABASE_URL": pg_url}).returncode == 0
    assert run_script("memory_sync.py", "--export-only", env={"DATABASE_URL": pg_url}).returncode == 0


def test_migration_names_every_sqlite_row_holding_a_nul_character(sqlite_storage, run_script):
    ids = [str(uuid.UUID(int=n, version=4)) for n in range(1, 6)]
    sqlite_storage.upsert_decisions(
        [
            {"id": ids[0], "decision": "clean text", "type": "other", "date": "2025-01-01"},
            {"id": ids[1], "decision": "in the text \x00", "type": "other", "date": "2025-01-01"},
            {"id": ids[2], "decision": "c", "comment": "in \x00 the comment", "type": "other", "date": "2025-01-01"},
            {"id": ids[3], "decision": "a", "ai_analysis": {"summary": "\x00"}, "type": "other", "date": "2025-01-01"},
            # Looks like an escaped NUL in the stored JSON, but is a backslash followed by text: not one.
            {"id": ids[4], "decision": "l", "ai_analysis": {"note": "\\u0000"}, "type": "other", "date": "2025-01-01"},
        ]
    )
    assert sqlite_storage.ids_with_nul_text() == sorted(ids[1:4])
    done = run_script("run_migration.py", "--json")
    assert done.returncode == 0
    assert json.loads(done.stdout)["nul_text_ids"] == sorted(ids[1:4])
