"""The local PostgREST stand-in answers the way PostgREST's documentation says, so backend tests mean something."""

from __future__ import annotations

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
