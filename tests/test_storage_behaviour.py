"""One behaviour suite for every storage backend: SQLite, PostgreSQL (local server) and Supabase REST (local fake)."""

from __future__ import annotations

import inspect
import threading
import uuid

import pytest

from angles.engines.decision_model import validate
from angles.errors import DatabaseError, ExternalServiceError
from angles.storage import migrations
from tests.fakes.postgrest import FakePostgrest, fake_service_key

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "supabase"]


@pytest.fixture
def supabase_fake():
    fake = FakePostgrest(fake_service_key())
    fake.create_schema()
    with fake:
        yield fake


def open_backend(kind: str, request, *, migrate: bool = True):
    """A fresh, empty store of one kind (migrated unless asked not to)."""
    if kind == "sqlite":
        from angles.storage.sqlite import SQLiteStorage

        storage = SQLiteStorage(request.getfixturevalue("tmp_path") / f"vault-{uuid.uuid4().hex[:6]}.db")
    elif kind == "postgres":
        from angles.storage.postgres import PostgresStorage

        storage = PostgresStorage(request.getfixturevalue("pg_url"))
    else:
        from angles.storage.supabase_rest import SupabaseStorage

        fake = FakePostgrest(fake_service_key()).start()
        request.addfinalizer(fake.stop)
        if migrate:
            fake.create_schema()
        storage = SupabaseStorage(fake.url, fake.key, backoff=0.01)
        storage.fake = fake
    request.addfinalizer(storage.close)
    if migrate and kind != "supabase":
        migrations.migrate(storage)
    return storage


@pytest.fixture(params=BACKENDS)
def storage(request):
    return open_backend(request.param, request)


def decision(n: int, **extra) -> dict:
    record = {"decision": f"Decision number {n}", "type": "technical", "date": "2025-03-01", **extra}
    return validate(record, f"row {n}")


def test_batches_of_decisions_are_upserted_and_read_back_by_id(storage):
    rows = [decision(n, priority=["P0", "P1", "P2"][n % 3], tags=f"t{n % 4},shared") for n in range(1203)]
    assert storage.upsert_decisions(rows) == 1203
    assert storage.count_decisions() == 1203
    for row in rows[::97]:
        got = storage.get_decision(row["id"])
        assert got["decision"] == row["decision"]
        assert got["priority"] == row["priority"]
        assert got["tags"] == row["tags"]
        assert got["active"] is True and got["synced"] is False
    assert storage.get_decision(str(uuid.uuid4())) is None
    assert storage.get_decision("not-a-uuid") is None


def test_upserting_the_same_rows_again_creates_no_duplicates_and_changes_nothing(storage):
    rows = [decision(n, updated_at="2025-04-01T10:00:00Z", created_at="2025-04-01T09:00:00Z") for n in range(40)]
    storage.upsert_decisions(rows)
    before = list(storage.iter_decisions())
    storage.upsert_decisions(rows)
    assert storage.count_decisions() == 40
    assert list(storage.iter_decisions()) == before
    changed = {**rows[5], "decision": "Rewritten", "updated_at": "2025-05-01T00:00:00Z"}
    storage.upsert_decisions([changed])
    assert storage.count_decisions() == 40
    got = storage.get_decision(rows[5]["id"])
    assert got["decision"] == "Rewritten"
    assert got["updated_at"] == "2025-05-01T00:00:00.000000Z"
    assert got["created_at"] == "2025-04-01T09:00:00.000000Z"


def test_an_upsert_leaves_columns_it_does_not_mention_alone(storage):
    row = decision(1)
    storage.upsert_decisions([row])
    storage.update_decision(row["id"], {"notion_page_id": "page-1", "ai_analysis": {"summary": "ok"}})
    created = storage.get_decision(row["id"])["created_at"]
    storage.upsert_decisions([{**row, "decision": "Edited text"}])
    got = storage.get_decision(row["id"])
    assert got["decision"] == "Edited text" and got["created_at"] == created
    assert got["notion_page_id"] == "page-1" and got["ai_analysis"] == {"summary": "ok"}
    assert storage.find_decision_by_page("page-1")["id"] == row["id"]
    assert storage.find_decision_by_page("page-2") is None


def test_decisions_stream_in_id_order_one_page_at_a_time(storage):
    rows = [decision(n) for n in range(230)]
    storage.upsert_decisions(r for r in rows)  # a generator is accepted: callers need not build a list
    stream = storage.iter_decisions(batch=50)
    assert inspect.isgenerator(stream)
    head = [next(stream) for _ in range(10)]
    # Rows written after the stream started: one sorts after every id, one before. A reader that fetched
    # everything up front would see neither; a keyset pager sees exactly the later one.
    late, early = "ffffffff-ffff-4fff-bfff-ffffffffffff", "00000000-0000-4000-8000-000000000000"
    storage.upsert_decisions([decision(900, id=late), decision(901, id=early)])
    ids = [r["id"] for r in head] + [r["id"] for r in stream]
    assert ids == sorted(ids)
    assert ids[-1] == late and early not in ids
    assert len(ids) == 231


def test_rows_changed_since_a_timestamp_and_filters(storage):
    old = "2025-01-01T00:00:00Z"
    rows = [
        decision(1, type="security", priority="P0", updated_at=old),
        decision(2, type="product", priority="P1", updated_at=old),
        decision(3, type="process", active=False, updated_at=old),
    ]
    storage.upsert_decisions(rows)
    storage.update_decision(rows[1]["id"], {"comment": "touched"})
    changed = list(storage.iter_decisions(since="2026-01-01T00:00:00Z"))
    assert [r["id"] for r in changed] == [rows[1]["id"]]
    assert changed[0]["comment"] == "touched" and changed[0]["updated_at"] > "2026"
    assert [r["id"] for r in storage.iter_decisions(type="security")] == [rows[0]["id"]]
    assert [r["id"] for r in storage.iter_decisions(priority="P1")] == [rows[1]["id"]]
    assert [r["id"] for r in storage.iter_decisions(active=False)] == [rows[2]["id"]]
    assert len(list(storage.iter_decisions(active=True))) == 2


def test_activity_is_recorded_and_read_back_in_order(storage):
    first = storage.record_activity("scheduler", "memory_sync", "completed", "synced 3", duration_s=1.5, host="h1")
    second = storage.record_activity(
        "scheduler",
        "backup",
        "failed",
        "remote said no",
        started_at="2026-01-01T02:00:00Z",
        finished_at="2026-01-01T02:00:03Z",
    )
    storage.record_activity("notion", "pull", details=None)
    assert second > first
    rows = list(storage.iter_activity(agent_name="scheduler"))
    assert [r["action"] for r in rows] == ["memory_sync", "backup"]
    assert rows[0]["duration_s"] == 1.5 and rows[0]["host"] == "h1" and rows[0]["status"] == "completed"
    assert rows[1]["started_at"] == "2026-01-01T02:00:00.000000Z" and rows[1]["status"] == "failed"
    assert [r["agent_name"] for r in storage.iter_activity(action="pull")] == ["notion"]
    assert len(list(storage.iter_activity(since="2000-01-01T00:00:00Z"))) == 3
    assert list(storage.iter_activity(since="2999-01-01T00:00:00Z")) == []


def test_state_values_are_stored_and_replaced(storage):
    assert storage.get_state("last_pull") is None
    storage.set_state("last_pull", "2026-01-01T00:00:00Z")
    storage.set_state("last_pull", "2026-02-01T00:00:00Z")
    storage.set_state("other", "x")
    assert storage.get_state("last_pull") == "2026-02-01T00:00:00Z"
    assert storage.get_state("other") == "x"


def test_a_job_slot_is_claimed_exactly_once_even_by_racing_threads(storage):
    slot = "2026-03-01T02:00:00Z"
    results = []
    barrier = threading.Barrier(6)

    def claim(host):
        barrier.wait()
        results.append(storage.claim_slot("backup", slot, host))

    threads = [threading.Thread(target=claim, args=(f"host-{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]
    assert storage.claim_slot("backup", slot, "late-host") is False
    assert storage.claim_slot("backup", "2026-03-02T02:00:00Z", "host-0") is True
    assert storage.claim_slot("health_check", slot, "host-0") is True


def test_old_slot_claims_are_pruned_and_recent_ones_still_block(storage):
    from angles.engines.decision_model import to_iso

    old, recent = to_iso("2026-01-01T02:00:00Z"), to_iso("2026-03-01T02:00:00Z")
    assert storage.claim_slot("backup", old, "host-0") and storage.claim_slot("backup", recent, "host-0")
    assert storage.prune_slots(to_iso("2026-02-01T00:00:00Z")) == 1
    assert storage.claim_slot("backup", recent, "host-1") is False
    assert storage.claim_slot("backup", old, "host-1") is True


def test_unicode_emoji_and_long_text_round_trip_unchanged(storage):
    long_text = ("Entscheidung über Ωmega — 決定 🚀 " * 700)[:20000]
    row = decision(
        1,
        decision=long_text,
        comment="quotes ' \" and\nnewlines\tand \\ backslashes 😀",
        tags=["ünïcødé", "emoji 🎯", "plain"],
    )
    storage.upsert_decisions([row])
    storage.update_decision(row["id"], {"ai_analysis": {"summary": "résumé 📈", "risks": ["ä", "ß"], "score": 0.5}})
    got = storage.get_decision(row["id"])
    assert len(got["decision"]) == 20000 and got["decision"] == long_text
    assert got["comment"] == row["comment"]
    assert got["tags"] == ["ünïcødé", "emoji 🎯", "plain"]
    assert got["ai_analysis"] == {"summary": "résumé 📈", "risks": ["ä", "ß"], "score": 0.5}


def test_an_atomic_batch_is_all_or_nothing(storage):
    good = [decision(n) for n in range(5)]
    bad = {**decision(99), "type": "not-a-type"}  # bypasses validation: the schema's CHECK must refuse it
    with pytest.raises(DatabaseError):
        storage.upsert_decisions([*good, bad], atomic=True)
    assert storage.count_decisions() == 0
    assert storage.upsert_decisions(good, atomic=True) == 5


def test_deleted_rows_are_gone(storage):
    rows = [decision(n) for n in range(5)]
    storage.upsert_decisions(rows)
    storage.delete_decisions([rows[0]["id"], rows[3]["id"]])
    assert storage.count_decisions() == 3
    assert storage.get_decision(rows[0]["id"]) is None


def test_one_store_can_be_shared_by_threads(storage):
    errors = []

    def work(worker):
        try:
            for n in range(15):
                row = decision(worker * 100 + n)
                storage.upsert_decisions([row])
                assert storage.get_decision(row["id"])["decision"] == row["decision"]
                storage.record_activity(f"worker-{worker}", "write")
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert storage.count_decisions() == 60
    assert len(list(storage.iter_activity())) == 60


@pytest.mark.parametrize("kind", BACKENDS)
def test_an_empty_unmigrated_database_reads_as_empty(kind, request):
    storage = open_backend(kind, request, migrate=False)
    assert storage.applied_migrations() == []
    assert storage.schema_version() is None
    assert storage.count_decisions() == 0
    assert storage.get_decision(str(uuid.uuid4())) is None
    assert list(storage.iter_decisions()) == []
    assert storage.get_state("x") is None


@pytest.mark.postgres
def test_every_backend_returns_identical_dicts_for_the_same_input(request):
    stores = {kind: open_backend(kind, request) for kind in ("sqlite", "postgres", "supabase")}
    stamps = {"created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z"}
    rows = [
        decision(
            1,
            priority="P2",
            tags="a,b",
            comment="c",
            created_at="2025-06-01T12:00:00Z",
            updated_at="2025-06-02 12:00:00.5+02:00",
        ),
        decision(2, type="", active="no", synced="yes", synced_at="2025-06-03T00:00:00Z", **stamps),
        decision(3, decision="🚀 ünï", date="2024-02-29", **stamps),
    ]
    extra = {
        "ai_analysis": {"summary": "s", "impact": {"level": "high"}, "list": [1, 2.5, None]},
        "ai_hash": "h",
        "notion_page_id": "p-1",
        "notion_last_edited": "2025-06-05T01:02:03Z",
        "superseded_by": rows[2]["id"],
        "deleted_at": "2025-06-06T00:00:00Z",
        "updated_at": "2025-06-07T00:00:00Z",
    }
    results = {}
    for kind, storage in stores.items():
        storage.upsert_decisions(rows)
        storage.update_decision(rows[0]["id"], extra)
        results[kind] = list(storage.iter_decisions())
    assert results["sqlite"] == results["postgres"] == results["supabase"]
    first = results["sqlite"][[r["id"] for r in results["sqlite"]].index(rows[0]["id"])]
    assert first["updated_at"] == "2025-06-07T00:00:00.000000Z"
    assert first["created_at"] == "2025-06-01T12:00:00.000000Z"
    assert set(first) == set(results["postgres"][0])


def test_supabase_rest_refuses_ddl():
    from angles.errors import MigrationError
    from angles.storage.supabase_rest import SupabaseStorage

    with FakePostgrest(fake_service_key()) as fake:
        storage = SupabaseStorage(fake.url, fake.key)
        with pytest.raises(MigrationError, match="cannot run DDL over Supabase REST"):
            storage.apply_migration(1, "x", "c", "CREATE TABLE x (id int)")
        storage.close()


def test_supabase_rest_unreachable_is_an_external_service_failure():
    from angles.storage.supabase_rest import SupabaseStorage

    storage = SupabaseStorage("http://127.0.0.1:1", fake_service_key(), backoff=0.01)
    with pytest.raises(ExternalServiceError, match="127.0.0.1:1 is unreachable") as info:
        storage.count_decisions()
    assert info.value.exit_code == 3
    storage.close()


def test_supabase_rest_wrong_key_is_refused_without_echoing_it(supabase_fake):
    from angles.storage.supabase_rest import SupabaseStorage

    wrong = fake_service_key()
    storage = SupabaseStorage(supabase_fake.url, wrong)
    with pytest.raises(ExternalServiceError, match="refused the API key") as info:
        storage.ping()
    assert wrong not in str(info.value)
    storage.close()


def test_supabase_rest_retries_a_busy_gateway_and_honours_retry_after(supabase_fake):
    from angles.storage.supabase_rest import SupabaseStorage

    storage = SupabaseStorage(supabase_fake.url, supabase_fake.key, backoff=0.01)
    supabase_fake.fail_next(503)
    supabase_fake.fail_next(429, {"message": "Too Many Requests"}, headers={"Retry-After": "0.2"})
    assert storage.count_decisions() == 0
    supabase_fake.fail_next(503, times=5)
    with pytest.raises(ExternalServiceError, match="HTTP 503"):
        storage.count_decisions()
    storage.close()


def test_supabase_rest_at_the_configured_rate_is_never_refused(home, clean_env):
    from angles.config import load_settings
    from angles.storage import open_storage

    # 600 a minute on both sides keeps the test short; the default is 100 (SUPABASE_RPM).
    with FakePostgrest(fake_service_key(), rpm=600) as fake:
        fake.create_schema()
        clean_env.setenv("SUPABASE_URL", fake.url)
        clean_env.setenv("SUPABASE_KEY", fake.key)
        clean_env.setenv("SUPABASE_RPM", "600")
        with open_storage(load_settings()) as storage:
            for n in range(25):
                storage.set_state(f"key {n}", "value")
            storage.record_activity("tests", "rate")
        assert len(fake.requests) == 26 and fake.rate_limited == 0


def test_supabase_rest_over_the_rate_waits_out_each_429_and_loses_nothing():
    from angles.storage.supabase_rest import SupabaseStorage

    with FakePostgrest(fake_service_key(), rpm=120) as fake:
        fake.create_schema()
        # No client-side limit: this client sends faster than the server allows.
        storage = SupabaseStorage(fake.url, fake.key, backoff=0.01)
        for n in range(6):
            storage.record_activity("tests", f"burst {n}")
        assert fake.rate_limited > 0
        assert [r["action"] for r in fake.rows("agent_activity")] == [f"burst {n}" for n in range(6)]
        storage.close()


def test_supabase_rpm_defaults_to_100_a_minute(home, clean_env):
    from angles.config import load_settings
    from angles.storage import open_storage

    clean_env.setenv("SUPABASE_URL", "http://127.0.0.1:1")
    clean_env.setenv("SUPABASE_KEY", fake_service_key())
    settings = load_settings()
    assert settings.supabase_rpm == 100
    with open_storage(settings) as storage:
        assert storage.bucket.rate == pytest.approx(100 / 60)


def test_supabase_rest_streams_everything_when_the_server_caps_page_size(supabase_fake):
    from angles.storage.supabase_rest import SupabaseStorage

    supabase_fake.max_rows = 7
    storage = SupabaseStorage(supabase_fake.url, supabase_fake.key)
    rows = [decision(n) for n in range(30)]
    storage.upsert_decisions(rows)
    assert [r["id"] for r in storage.iter_decisions(batch=1000)] == sorted(r["id"] for r in rows)
    reads = [r for r in supabase_fake.requests if r["method"] == "GET" and "order=id" in r["query"]]
    assert all("limit=" in r["query"] for r in reads)
    storage.close()


def test_supabase_rest_schema_errors_are_database_errors(supabase_fake):
    from angles.storage.supabase_rest import SupabaseStorage

    del supabase_fake.tables["agent_activity"]
    storage = SupabaseStorage(supabase_fake.url, supabase_fake.key)
    with pytest.raises(DatabaseError, match="PGRST205"):
        storage.record_activity("a", "b")
    storage.close()


def test_a_malformed_postgres_url_is_refused_without_echoing_the_password():
    from angles.storage.postgres import PostgresStorage

    with pytest.raises(DatabaseError, match="not a valid PostgreSQL connection string") as info:
        PostgresStorage("postgresql://vault:pw-that-must-not-show@[broken/vault")
    assert "pw-that-must-not-show" not in str(info.value)


@pytest.mark.postgres
def test_postgres_connect_failure_is_one_line_without_the_password():
    from angles.storage.postgres import PostgresStorage

    with pytest.raises(DatabaseError) as info:
        PostgresStorage("postgresql://someone:pw-that-must-not-show@127.0.0.1:1/vault")
    message = str(info.value)
    assert "\n" not in message
    assert "127.0.0.1:1" in message and "refused" in message.lower()
    assert "pw-that-must-not-show" not in message


@pytest.mark.postgres
def test_postgres_connection_is_reopened_after_the_server_drops_it(pg_url):
    import psycopg

    from angles.storage.postgres import PostgresStorage

    storage = PostgresStorage(pg_url)
    migrations.migrate(storage)
    pid = storage.conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(DatabaseError):
        storage.count_decisions()
    assert storage.count_decisions() == 0
    storage.close()


@pytest.mark.postgres
def test_postgres_works_through_a_transaction_pooler(pg_url):
    from angles.storage.postgres import PostgresStorage

    # Supabase's pooler on port 6543 hands each transaction to any server connection: no prepared statements.
    storage = PostgresStorage(pg_url.replace("postgresql://postgres@", "postgresql://postgres:pw-hidden@"))
    assert storage.conn.prepare_threshold is None
    assert "pw-hidden" not in storage.describe() and storage.describe().startswith("postgresql://127.0.0.1:")
    storage.close()
