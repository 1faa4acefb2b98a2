"""The local PostgREST stand-in answers the way PostgREST's documentation says, so backend tests mean something."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.fakes.postgrest import FakePostgrest, fake_service_key


@pytest.fixture
def api():
    key = fake_service_key()
    with FakePostgrest(key) as fake:
        fake.create_schema(migrated=False)
        headers = {"apikey": key, "Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=f"{fake.url}/rest/v1", headers=headers) as client:
            client.post(
                "/sync_state",
                json=[
                    {"key": f"k{n}", "value": f"v{n}", "updated_at": f"2026-01-0{n + 1}T00:00:00Z"} for n in range(5)
                ],
            ).raise_for_status()
            yield client


def test_range_header_pages_and_content_range_reports_them(api):
    page = api.get("/sync_state", params={"select": "key", "order": "key"}, headers={"Range": "1-2"})
    assert page.status_code == 200
    assert [r["key"] for r in page.json()] == ["k1", "k2"]
    assert page.headers["Content-Range"] == "1-2/*"
    counted = api.get("/sync_state", params={"limit": 2, "order": "key.desc"}, headers={"Prefer": "count=exact"})
    assert counted.status_code == 206 and counted.headers["Content-Range"] == "0-1/5"
    assert [r["key"] for r in counted.json()] == ["k4", "k3"]


def test_horizontal_filters(api):
    def keys(**params):
        return sorted(r["key"] for r in api.get("/sync_state", params=params).json())

    assert keys(key="neq.k0") == ["k1", "k2", "k3", "k4"]
    assert keys(updated_at="lt.2026-01-03T00:00:00Z") == ["k0", "k1"]
    assert keys(updated_at="lte.2026-01-03T00:00:00+00:00") == ["k0", "k1", "k2"]
    assert keys(key='in.(k1,"k3")') == ["k1", "k3"]
    assert keys(value="is.null") == []
    assert keys(key="not.in.(k0,k1,k2)") == ["k3", "k4"]


def test_inserts_upserts_updates_and_deletes(api):
    created = api.post(
        "/job_slots",
        json={"job": "backup", "slot": "2026-01-01T02:00:00Z"},
        headers={"Prefer": "return=representation"},
    )
    assert created.status_code == 201 and created.json()[0]["slot"] == "2026-01-01T02:00:00+00:00"
    clash = api.post("/job_slots", json={"job": "backup", "slot": "2026-01-01T02:00:00+00:00"})
    assert clash.status_code == 409 and clash.json()["code"] == "23505"
    merged = api.post(
        "/sync_state",
        params={"on_conflict": "key"},
        json=[{"key": "k0", "value": "new"}],
        headers={"Prefer": "resolution=merge-duplicates,return=minimal"},
    )
    assert merged.status_code == 201 and merged.content == b""
    assert api.get("/sync_state", params={"key": "eq.k0"}).json()[0]["value"] == "new"
    patched = api.patch("/sync_state", params={"key": "eq.k1"}, json={"value": "patched"})
    assert patched.status_code == 204
    deleted = api.delete("/sync_state", params={"key": "in.(k2,k3)"}, headers={"Prefer": "return=representation"})
    assert sorted(r["key"] for r in deleted.json()) == ["k2", "k3"]
    assert len(api.get("/sync_state").json()) == 3


def test_error_bodies_follow_postgrest(api):
    missing = api.get("/no_such_table")
    assert missing.status_code == 404
    assert missing.json() == {
        "code": "PGRST205",
        "details": None,
        "hint": None,
        "message": "Could not find the table 'public.no_such_table' in the schema cache",
    }
    column = api.get("/sync_state", params={"nope": "eq.1"})
    assert column.status_code == 400 and column.json()["code"] == "42703"
    payload = api.post("/sync_state", json={"key": "x", "nope": 1})
    assert payload.status_code == 400 and payload.json()["code"] == "PGRST204"
    mixed = api.post("/sync_state", json=[{"key": "a"}, {"key": "b", "value": "v"}])
    assert mixed.status_code == 400 and mixed.json()["message"] == "All object keys must match"
    check = api.post("/decision_vault", json={"decision": "x", "type": "marketing"})
    assert check.status_code == 400 and check.json()["code"] == "23514"


def test_keys_are_checked_like_supabase(api):
    url = str(api.base_url)
    assert httpx.get(f"{url}/sync_state").status_code == 401
    wrong = httpx.get(f"{url}/sync_state", headers={"apikey": "not-the-key"})
    assert wrong.status_code == 401 and wrong.json()["message"] == "Invalid API key"
    bad_jwt = httpx.get(
        f"{url}/sync_state", headers={"apikey": api.headers["apikey"], "Authorization": "Bearer forged"}
    )
    assert bad_jwt.status_code == 401 and bad_jwt.json()["code"] == "PGRST301"


def test_over_the_configured_rate_is_429_with_retry_after():
    key = fake_service_key()
    with FakePostgrest(key, rpm=60) as fake:
        fake.create_schema()
        headers = {"apikey": key, "Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=f"{fake.url}/rest/v1", headers=headers) as client:
            first = client.get("/sync_state")
            second = client.get("/sync_state")
    assert first.status_code == 200
    assert second.status_code == 429 and int(second.headers["Retry-After"]) >= 1
    assert fake.rate_limited == 1


TEXTS = [
    "We deploy every service with Kubernetes",
    "The main database is PostgreSQL; the replica is read only",
    "Reporting moves to the warehouse",
    "Le café est servi à midi",
    "State of the art caching for services",
    "Security review: security keys for every admin",
]
WEBSEARCHES = [
    "services",
    "deployed",
    "main database",
    '"main database"',
    '"database main"',
    "database -replica",
    "reporting warehouse OR kubernetes",
    "cafe",
    '"state of the art"',
    '"state art"',
    "the",
    "security -admin OR midi",
]


@pytest.mark.postgres
def test_full_text_filters_match_what_postgresql_matches(api, pg_url):
    """The fake's to_tsvector / websearch_to_tsquery / phraseto_tsquery agree with a real server's."""
    import psycopg

    from angles.storage import migrations
    from angles.storage.postgres import PostgresStorage

    with PostgresStorage(pg_url) as storage:
        migrations.migrate(storage)
    rows = [
        {"id": f"00000000-0000-4000-8000-00000000000{n}", "decision": t, "type": "other"} for n, t in enumerate(TEXTS)
    ]
    api.post("/decision_vault", json=rows).raise_for_status()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO decision_vault (id, decision, type) SELECT (r->>'id')::uuid, r->>'decision', r->>'type'"
            " FROM jsonb_array_elements(%s::jsonb) r",
            (json.dumps(rows),),
        )
        for kind, function, queries in (
            ("wfts", "websearch_to_tsquery", WEBSEARCHES),
            ("phfts", "phraseto_tsquery", ["main database", "state of the art", "security keys"]),
            ("plfts", "plainto_tsquery", ["security admin", "deploying services"]),
        ):
            for query in queries:
                real = {
                    str(r[0])
                    for r in conn.execute(
                        f"SELECT id FROM decision_vault WHERE search_vector @@ {function}('angles_search', %s)",
                        (query,),
                    )
                }
                found = api.get(
                    "/decision_vault", params={"select": "id", "search_vector": f"{kind}(angles_search).{query}"}
                )
                assert found.status_code == 200, found.text
                assert {r["id"] for r in found.json()} == real, (kind, query)


def test_a_generated_column_cannot_be_written_and_is_returned_as_text(api):
    row = {"id": "00000000-0000-4000-8000-000000000001", "decision": "Main database", "type": "other"}
    refused = api.post("/decision_vault", json={**row, "search_vector": "'x':1"})
    assert refused.status_code == 400 and refused.json()["code"] == "428C9"
    api.post("/decision_vault", json=row).raise_for_status()
    got = api.get("/decision_vault", params={"select": "search_vector"}).json()
    assert got == [{"search_vector": "'databas':2A 'main':1A"}]
    unknown = api.get("/decision_vault", params={"search_vector": "wfts(klingon).main"})
    assert unknown.status_code == 400 and unknown.json()["code"] == "42704"


def test_foreign_keys_refuse_dangling_links_and_cascade_deletes(api):
    a, b = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"
    api.post("/decision_vault", json=[{"id": i, "decision": i, "type": "other"} for i in (a, b)]).raise_for_status()
    link = {"id": "00000000-0000-4000-8000-0000000000ab", "from_id": a, "to_id": b, "kind": "refines"}
    dangling = api.post("/decision_links", json={**link, "to_id": "00000000-0000-4000-8000-0000000000ff"})
    assert dangling.status_code == 409 and dangling.json()["code"] == "23503"
    api.post("/decision_links", json=link).raise_for_status()
    twin = api.post("/decision_links", json={**link, "id": "00000000-0000-4000-8000-0000000000ac"})
    assert twin.status_code == 409 and twin.json()["code"] == "23505"
    api.patch("/decision_vault", params={"id": f"eq.{a}"}, json={"superseded_by": b}).raise_for_status()
    held = api.delete("/decision_vault", params={"id": f"eq.{b}"})
    assert held.status_code == 409 and held.json()["code"] == "23503"
    api.delete("/decision_vault", params={"id": f"in.({a},{b})"}).raise_for_status()
    assert api.get("/decision_links").json() == []
