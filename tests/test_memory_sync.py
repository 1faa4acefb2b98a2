"""memory_sync.py against a local Notion API: incremental two-way sync, crash safety, faults, export."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from angles.engines import notion_pages
from angles.engines.decision_model import COLUMNS, text_hash, to_iso, validate
from tests.conftest import CONFIG_VARS, ROOT
from tests.fakes.notion_server import FakeNotion

SCHEMA = {name: kind for name, kind in notion_pages.PROPERTIES.items() if kind != "title"}


@pytest.fixture
def fake():
    # Rate is not the point of most tests: the fake allows far more than Notion, the client stays below it.
    server = FakeNotion(rps=2000, burst=2000)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def notion(fake, home, clean_env):
    """A Notion database with every property the sync needs, and the environment pointing at it."""
    database_id = fake.add_database(SCHEMA)
    env = {
        "NOTION_TOKEN": fake.token,
        "NOTION_DATABASE_ID": database_id,
        "NOTION_BASE_URL": fake.base_url,
        "NOTION_RPS": "500",
    }
    for key, value in env.items():
        clean_env.setenv(key, value)
    return {"fake": fake, "database_id": database_id, "env": env}


@pytest.fixture
def fast_retries(monkeypatch):
    import angles.services.notion

    monkeypatch.setattr(angles.services.notion, "BACKOFF_BASE", 0.01)


def settings():
    from angles.config import load_settings

    return load_settings()


def storage():
    from angles.storage import migrations, open_storage

    store = open_storage(settings())
    migrations.migrate(store)
    return store


def seed(count: int, text=lambda i: f"Decision number {i}: adopt the queue", **extra) -> list[str]:
    rows = [validate({"decision": text(i), "type": "technical", "tags": ["ops", "q4"], **extra}) for i in range(count)]
    with storage() as store:
        store.upsert_decisions(rows)
    return sorted(r["id"] for r in rows)


def sync(**kwargs) -> dict:
    from angles.actions.sync import run_sync

    result = run_sync(settings(), **{"export": False, **kwargs})
    assert result["error"] is None, result["error"]
    return result


def rows() -> dict[str, dict]:
    with storage() as store:
        return {r["id"]: r for r in store.iter_decisions()}


def assert_one_page_each_with_equal_content(fake: FakeNotion) -> None:
    by_id = fake.pages_by_external_id()
    current = rows()
    assert sorted(by_id) == sorted(current)
    for decision_id, row in current.items():
        assert len(by_id[decision_id]) == 1, f"{decision_id} has {len(by_id[decision_id])} pages"
        page = by_id[decision_id][0]
        assert row["notion_page_id"] == page["id"]
        assert fake.text(page, "Decision") == row["decision"]
        assert fake.value(page, "Type") == row["type"]
        assert fake.value(page, "Tags") == row["tags"]
        assert fake.value(page, "Date") == row["date"]


def spawn(home, env: dict, *args: str) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    full.update(env, ANGLES_HOME=str(home))
    return subprocess.Popen(
        [sys.executable, str(ROOT / "memory_sync.py"), *args],
        cwd=home,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# incremental push


def test_new_decisions_get_one_page_each_without_429_and_a_second_run_writes_nothing(notion):
    fake = notion["fake"]
    seed(500)
    first = sync()
    assert first["counts"]["created"] == 500
    assert fake.count(status=429) == 0
    assert_one_page_each_with_equal_content(fake)
    writes = fake.writes
    second = sync()
    assert fake.writes == writes
    assert second["counts"]["unchanged"] == 500
    assert second["notion_requests"] <= 7  # data source check + five pages of the pull query
    assert all(r["synced"] and r["synced_at"] for r in rows().values())


@pytest.mark.slow
def test_sync_at_the_real_three_requests_per_second_never_hits_the_rate_limit(notion, monkeypatch):
    fake = notion["fake"]
    fake.set_rate(3, burst=3)
    monkeypatch.setenv("NOTION_RPS", "3")
    seed(12)
    started = time.monotonic()
    result = sync()
    elapsed = time.monotonic() - started
    assert result["counts"]["created"] == 12
    assert fake.count(status=429) == 0
    assert elapsed >= (fake.count() - 1) / 3 - 1  # the requests really were spaced, not rejected


def test_a_database_edit_updates_exactly_that_page(notion):
    fake = notion["fake"]
    ids = seed(20)
    sync()
    before = {p["id"]: json.dumps(p["properties"], sort_keys=True) for p in fake.live_pages()}
    with storage() as store:
        store.update_decision(
            ids[7],
            {"decision": "Revised: adopt the queue after the audit", "priority": "P0", "priority_source": "person"},
        )
    writes = fake.writes
    result = sync()
    assert result["counts"]["updated"] == 1 and result["counts"]["created"] == 0
    assert fake.writes == writes + 1
    changed = [p for p in fake.live_pages() if json.dumps(p["properties"], sort_keys=True) != before[p["id"]]]
    assert [fake.text(p, "External ID") for p in changed] == [ids[7]]
    assert fake.value(changed[0], "Priority") == "P0"
    assert_one_page_each_with_equal_content(fake)


def test_an_edit_made_in_notion_flows_back_to_the_database(notion):
    fake = notion["fake"]
    ids = seed(5)
    sync()
    page_id = rows()[ids[2]]["notion_page_id"]
    fake.edit_as_person(page_id, {"Decision": "Edited in Notion", "Type": "process", "Tags": ["people"]})
    writes = fake.writes
    result = sync()
    assert result["counts"]["applied"] == 1
    row = rows()[ids[2]]
    assert (row["decision"], row["type"], row["tags"], row["type_source"]) == (
        "Edited in Notion",
        "process",
        ["people"],
        "person",
    )
    # The edited text is analysed again and only its new AI summary goes back to the page.
    assert fake.writes == writes + 1
    assert fake.text(fake.pages[page_id], "AI summary") == row["ai_analysis"]["summary"]
    assert "Edited in Notion" in row["ai_analysis"]["summary"]
    assert sync()["counts"]["applied"] == 0


@pytest.mark.parametrize("newer", ["notion", "database"])
def test_a_conflict_resolves_to_the_newer_edit_and_is_recorded(notion, newer):
    fake = notion["fake"]
    ids = seed(3)
    sync()
    row = rows()[ids[0]]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    db_time, notion_time = (now - timedelta(minutes=1), now + timedelta(minutes=1))
    if newer == "database":
        db_time, notion_time = now + timedelta(minutes=3), now
    with storage() as store:
        store.update_decision(row["id"], {"decision": "Database version", "updated_at": to_iso(db_time)})
    fake.edit_as_person(row["notion_page_id"], {"Decision": "Notion version"}, when=notion_time)
    result = sync()
    assert result["counts"]["conflicts"] == 1
    expected = "Notion version" if newer == "notion" else "Database version"
    assert rows()[row["id"]]["decision"] == expected
    assert fake.text(fake.pages[row["notion_page_id"]], "Decision") == expected
    with storage() as store:
        conflicts = [a for a in store.iter_activity(agent_name="memory_sync") if a["action"] == "conflict"]
    assert len(conflicts) == 1
    details = json.loads(conflicts[0]["details"])
    assert details["winner"] == newer
    assert details["database"]["decision"] == "Database version"
    assert details["notion"]["decision"] == "Notion version"


def test_all_pushes_every_decision_again_without_making_a_second_page(notion):
    fake = notion["fake"]
    seed(6)
    sync()
    result = sync(push_all=True)
    assert (result["counts"]["updated"], result["counts"]["created"]) == (6, 0)
    assert_one_page_each_with_equal_content(fake)


def test_a_page_deleted_for_good_in_notion_is_made_again_when_its_decision_changes(notion):
    fake = notion["fake"]
    ids = seed(2)
    sync()
    gone = rows()[ids[0]]["notion_page_id"]
    with fake.lock:
        del fake.pages[gone]
        fake.order.remove(gone)
    with storage() as store:
        store.update_decision(ids[0], {"comment": "still here"})
    assert sync()["counts"]["created"] == 1
    assert rows()[ids[0]]["notion_page_id"] != gone
    assert_one_page_each_with_equal_content(fake)


def test_dry_run_plans_a_notion_edit_as_a_pull_not_as_a_push(notion):
    fake = notion["fake"]
    ids = seed(3)
    sync()
    fake.edit_as_person(rows()[ids[1]]["notion_page_id"], {"Comment": "from Notion"})
    with storage() as store:
        store.update_decision(ids[2], {"comment": "from the vault"})
    plan = sync(dry_run=True)["counts"]
    assert (plan["applied"], plan["updated"], plan["created"], plan["unchanged"]) == (1, 1, 0, 2)
    assert rows()[ids[1]]["comment"] is None


def test_a_page_created_in_notion_becomes_a_decision_and_gets_its_external_id(notion):
    fake = notion["fake"]
    seed(2)
    sync()
    page_id = fake.create_as_person(
        notion["database_id"], {"Name": "Hire two SREs", "Type": "process", "Priority": "P1", "Date": "2026-03-01"}
    )
    result = sync()
    assert result["counts"]["imported"] == 1
    row = next(r for r in rows().values() if r["notion_page_id"] == page_id)
    assert (row["decision"], row["type"], row["priority"]) == ("Hire two SREs", "process", "P1")
    assert row["date"] == "2026-03-01"
    assert fake.text(fake.pages[page_id], "External ID") == row["id"]
    assert_one_page_each_with_equal_content(fake)


def test_a_notion_edit_that_fails_validation_is_reported_and_never_half_applied(notion):
    fake = notion["fake"]
    ids = seed(2)
    sync()
    row = rows()[ids[0]]
    fake.edit_as_person(row["notion_page_id"], {"Decision": "Half edit", "Type": "marketing"})
    result = sync()
    assert result["counts"]["skipped"] == 1
    assert "marketing" in result["problems"][0]["message"]
    assert rows()[ids[0]]["decision"] == row["decision"]


def test_deactivated_rows_uncheck_active_and_deleted_rows_archive_their_page(notion):
    fake = notion["fake"]
    ids = seed(3)
    sync()
    with storage() as store:
        store.update_decision(ids[0], {"active": False})
        store.update_decision(ids[1], {"deleted_at": to_iso(datetime.now(UTC))})
    result = sync()
    assert (result["counts"]["updated"], result["counts"]["archived"]) == (1, 1)
    current = rows()
    assert fake.pages[current[ids[0]]["notion_page_id"]]["properties"]["Active"]["checkbox"] is False
    assert fake.pages[current[ids[1]]["notion_page_id"]]["in_trash"] is True
    assert sorted(fake.pages_by_external_id()) == sorted([ids[0], ids[2]])
    assert sync()["counts"]["archived"] == 0


def test_long_emoji_and_non_latin_text_round_trips_unchanged(notion):
    fake = notion["fake"]
    text = ("Décision 決定 решение تصميم 🚀👩🏽‍💻 " * 700)[:20000]
    assert notion_pages.utf16_units(text) > 20000
    (decision_id,) = seed(1, text=lambda i: text, comment="コメント 💬" * 400)
    sync()
    page = fake.pages[rows()[decision_id]["notion_page_id"]]
    assert fake.text(page, "Decision") == text
    pieces = page["properties"]["Decision"]["rich_text"]
    assert all(notion_pages.utf16_units(i["text"]["content"]) <= 2000 for i in pieces)
    fake.edit_as_person(page["id"], {"Comment": "ok"})
    sync()
    assert rows()[decision_id]["decision"] == text


def test_split_text_never_cuts_a_character_or_exceeds_2000_utf16_units():
    rng = random.Random(3)
    alphabet = "aé決🚀👩🏽‍💻\n "
    for _ in range(50):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9000)))
        pieces = notion_pages.split_text(text)
        assert "".join(pieces) == text
        assert all(0 < notion_pages.utf16_units(p) <= 2000 for p in pieces)


def test_dry_run_plans_and_writes_nothing_anywhere(notion, home, run_script):
    fake = notion["fake"]
    seed(4)
    before = rows()
    proc = run_script("memory_sync.py", "--dry-run", "--json", env=notion["env"])
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["counts"]["created"] == 4 and plan["dry_run"] is True
    assert fake.writes == 0 and fake.count("PATCH") == 0
    assert rows() == before
    assert not list((home / "export").glob("*.json"))
    with storage() as store:
        assert list(store.iter_activity(agent_name="memory_sync")) == []


def test_setup_notion_adds_missing_properties_and_leaves_existing_ones(fake, home, run_script):
    database_id = fake.add_database({"Type": "rich_text", "Comment": "rich_text"})
    env = {"NOTION_TOKEN": fake.token, "NOTION_DATABASE_ID": database_id, "NOTION_BASE_URL": fake.base_url}
    check = run_script("memory_sync.py", "--test", "--json", env=env)
    notion_check = json.loads(check.stdout)["checks"]["notion"]
    assert "Decision" in notion_check["missing"]
    assert notion_check["mistyped"] == [{"property": "Type", "expected": "select", "actual": "rich_text"}]
    assert check.returncode == 1
    proc = run_script("memory_sync.py", "--setup-notion", "--json", env=env)
    result = json.loads(proc.stdout)
    assert "Decision" in result["added"] and "Comment" not in result["added"]
    schema = fake.schema(database_id)
    assert schema["Type"] == "rich_text" and schema["Decision"] == "rich_text" and schema["Priority"] == "select"
    assert proc.returncode == 1  # Type still has the wrong type; a person must change it


def test_the_ai_summary_is_written_to_its_property_and_a_new_summary_updates_the_page(notion):
    fake = notion["fake"]
    text = "Decision number 0: adopt the queue"
    (decision_id,) = seed(1, ai_analysis={"summary": "Queues decouple the services."}, ai_hash=text_hash(text))
    sync()
    page = fake.pages[rows()[decision_id]["notion_page_id"]]
    assert fake.text(page, "AI summary") == "Queues decouple the services."
    with storage() as store:
        store.update_decision(decision_id, {"ai_analysis": {"summary": "Revised analysis."}})
    assert sync()["counts"]["updated"] == 1
    assert fake.text(page, "AI summary") == "Revised analysis."


# failures


def test_a_decision_notion_cannot_hold_is_rejected_and_the_others_still_sync(notion):
    fake = notion["fake"]
    ids = seed(3, text=lambda i: "short decision" if i else "x" * 200_001)
    result = sync()
    assert (result["counts"]["created"], result["counts"]["rejected"]) == (2, 1)
    assert "200,000" in result["problems"][0]["message"]
    assert len(fake.live_pages()) == 2
    assert sum(1 for r in rows().values() if r["synced"]) == 2 and len(ids) == 3


def test_the_fake_notion_checks_what_notion_checks(fake):
    import httpx

    database_id = fake.add_database(SCHEMA)
    source = fake.data_source_of(database_id)
    headers = {"Authorization": f"Bearer {fake.token}", "Notion-Version": "2025-09-03"}
    with httpx.Client(base_url=fake.base_url) as http:
        no_version = http.get("/v1/users/me", headers={"Authorization": headers["Authorization"]})
        assert (no_version.status_code, no_version.json()["code"]) == (400, "missing_version")
        bad_token = http.get("/v1/users/me", headers={**headers, "Authorization": "Bearer nope"})
        assert bad_token.json() == {**bad_token.json(), "object": "error", "status": 401, "code": "unauthorized"}
        too_long = http.post(
            "/v1/pages",
            headers=headers,
            json={
                "parent": {"type": "data_source_id", "data_source_id": source},
                "properties": {"Decision": {"rich_text": [{"text": {"content": "🚀" * 1001}}]}},
            },
        )
        assert too_long.status_code == 400 and "should be ≤ `2000`, instead was `2002`" in too_long.json()["message"]
        wrong_type = http.post(
            "/v1/pages",
            headers=headers,
            json={"parent": {"data_source_id": source}, "properties": {"Active": {"rich_text": []}}},
        )
        assert wrong_type.json()["message"] == "Active is expected to be checkbox."
        big_page = http.post(f"/v1/data_sources/{source}/query", headers=headers, json={"page_size": 101})
        assert big_page.status_code == 400
        for _ in range(3):
            fake.create_as_person(database_id, {"Name": "n"})
        first = http.post(f"/v1/data_sources/{source}/query", headers=headers, json={"page_size": 2}).json()
        assert first["has_more"] and len(first["results"]) == 2
        rest = http.post(
            f"/v1/data_sources/{source}/query", headers=headers, json={"start_cursor": first["next_cursor"]}
        ).json()
        assert not rest["has_more"] and len(rest["results"]) == 1
        assert rest["results"][0]["last_edited_time"].endswith(":00.000Z")
        fake.set_rate(1, burst=1)
        answers = [http.get("/v1/users/me", headers=headers) for _ in range(3)]
        limited = [a for a in answers if a.status_code == 429]
        assert limited and limited[0].json()["code"] == "rate_limited" and int(limited[0].headers["Retry-After"]) >= 1


def test_invalid_token_exits_3_and_marks_nothing_synced(notion, run_script):
    seed(3)
    proc = run_script("memory_sync.py", "--sync-decisions", env={**notion["env"], "NOTION_TOKEN": "ntn_wrong"})
    assert proc.returncode == 3
    assert "token" in proc.stderr and "ntn_wrong" not in proc.stderr
    assert all(not r["synced"] and r["notion_page_id"] is None for r in rows().values())
    with storage() as store:
        (run,) = [a for a in store.iter_activity(agent_name="memory_sync") if a["action"] == "sync"]
    assert run["status"] == "failed"


def test_notion_off_says_so_in_one_line_exports_and_exits_0(home, run_script):
    seed(3)
    proc = run_script("memory_sync.py")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "Notion sync is off: NOTION_TOKEN and NOTION_DATABASE_ID are not both set"
    (path,) = list((home / "export").glob("decisions_*.json"))
    assert json.loads(path.read_text())["count"] == 3


@pytest.mark.slow
def test_injected_429_500_529_and_dropped_connections_reach_the_same_state_without_duplicates(notion, fast_retries):
    fake = notion["fake"]
    fake.retry_after = 1
    ids = seed(30)
    fake.inject(429, 2, route="/v1/pages")
    fake.inject(500, 2, route="/v1/pages")
    fake.inject(529, 1, route="/v1/pages")
    fake.inject(502, 1, route="/v1/pages")
    fake.inject("drop", 2, route="/v1/pages")
    fake.inject("drop", 2, route="/v1/pages", after=True)  # created, but the answer never arrives
    fake.inject(500, 1, route="/v1/pages", after=True)
    fake.inject(503, 1, route="/v1/data_sources/{id}/query")
    result = sync()
    assert result["counts"]["created"] == 30
    with storage() as store:
        for decision_id in ids[:5]:
            store.update_decision(decision_id, {"comment": "changed"})
    fake.inject("drop", 2, route="/v1/pages/{id}")
    fake.inject(529, 1, route="/v1/pages/{id}", after=True)
    assert sync()["counts"]["updated"] == 5
    assert_one_page_each_with_equal_content(fake)
    assert fake.faults == []


def test_unreachable_notion_exits_3(home, run_script, fast_retries):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"NOTION_TOKEN": "ntn_x", "NOTION_DATABASE_ID": "abc", "NOTION_BASE_URL": f"http://127.0.0.1:{port}"}
    from angles.actions.sync import run_sync

    os.environ.update(env)
    try:
        result = run_sync(settings(), export=False)
    finally:
        for key in env:
            os.environ.pop(key)
    assert result["exit_code"] == 3 and "cannot reach Notion" in result["error"]


def test_a_second_sync_on_the_same_host_is_refused_while_one_runs(notion, home):
    import fcntl

    from angles.actions.sync import run_sync

    seed(2)
    (home / "data").mkdir(exist_ok=True)
    with open(home / "data" / "memory_sync.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = run_sync(settings(), export=False)
    assert result["exit_code"] == 1 and "in progress" in result["error"]
    assert notion["fake"].writes == 0
    assert sync()["counts"]["created"] == 2


# crash safety


@pytest.mark.slow
def test_sync_survives_a_kill_between_creating_a_page_and_recording_it(notion, home):
    fake = notion["fake"]
    seed(40)
    proc = spawn(home, notion["env"], "--sync-decisions")
    created = []

    def kill_after_create(method, route, page):
        if route == "/v1/pages":
            created.append(page["id"])
            if len(created) == 17:
                os.kill(proc.pid, signal.SIGKILL)

    fake.after_write = kill_after_create
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    fake.after_write = None
    orphan = next(r for r in rows().values() if fake.text(fake.pages[created[-1]], "External ID") == r["id"])
    assert orphan["notion_page_id"] is None and orphan["notion_attempted_at"]
    rerun = spawn(home, notion["env"], "--sync-decisions")
    assert rerun.wait(timeout=60) == 0, rerun.stderr.read()
    assert_one_page_each_with_equal_content(fake)


@pytest.mark.slow
def test_sync_killed_at_random_points_then_rerun_leaves_exactly_one_page_each(notion, home):
    fake = notion["fake"]
    seed(60)
    rng = random.Random()
    for _ in range(3):
        proc = spawn(home, {**notion["env"], "NOTION_RPS": "40"}, "--sync-decisions")
        time.sleep(rng.uniform(0.4, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    final = spawn(home, notion["env"], "--sync-decisions")
    assert final.wait(timeout=60) == 0, final.stderr.read()
    assert_one_page_each_with_equal_content(fake)


# records and export


def test_each_run_is_recorded_with_counts_and_a_greppable_summary_line(notion, home):
    seed(2)
    sync()
    with storage() as store:
        (run,) = [a for a in store.iter_activity(agent_name="memory_sync") if a["action"] == "sync"]
    assert run["status"] == "completed" and run["duration_s"] is not None
    assert json.loads(run["details"])["counts"]["created"] == 2


def test_summary_line_counts_runs_in_the_log(notion, home, run_script):
    seed(2)
    for _ in range(2):
        assert run_script("memory_sync.py", env=notion["env"]).returncode == 0
    lines = (home / "logs" / "active" / "memory_sync.log").read_text().splitlines()
    summaries = [line for line in lines if "memory_sync completed" in line]
    assert len(summaries) == 2
    assert "created 2" in summaries[0] and "duration " in summaries[0] and summaries[0].endswith("s")


def test_export_is_sorted_by_id_with_stable_keys_and_a_header(home, run_script):
    ids = seed(25)
    proc = run_script("memory_sync.py", "--export-only")
    assert proc.returncode == 0, proc.stderr
    (path,) = list((home / "export").glob("decisions_*.json"))
    assert path.name.startswith("decisions_") and path.name.endswith("Z.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert list(data) == ["exported_at", "count", "schema_version", "decisions", "history", "links"]
    assert data["count"] == 25 and data["schema_version"] >= 2
    assert [d["id"] for d in data["decisions"]] == ids
    assert all(list(d) == list(COLUMNS) for d in data["decisions"])
    assert not [p for p in (home / "export").iterdir() if p.name.startswith(".")]


def test_export_holds_a_pasted_secret_as_stored_and_names_the_decision(home, run_script):
    key = "sk-" + "proj-abcdefghijklmnopqrstuvwxyz0123456789"
    (pasted,) = seed(1, text=lambda i: f"rotate key {key} today")
    done = run_script("memory_sync.py", "--export-only")
    assert done.returncode == 0, done.stderr
    (path,) = list((home / "export").glob("decisions_*.json"))
    assert json.loads(path.read_text())["decisions"][0]["decision"] == f"rotate key {key} today"
    assert f"decision {pasted} looks like it holds a credential" in done.stdout
    assert key not in done.stdout + done.stderr


def test_full_sync_against_postgres(notion, pg_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", pg_url)
    fake = notion["fake"]
    seed(10)
    sync()
    page_id = rows()[sorted(rows())[0]]["notion_page_id"]
    fake.edit_as_person(page_id, {"Decision": "Edited in Notion"})
    assert sync()["counts"]["applied"] == 1
    assert_one_page_each_with_equal_content(fake)


def test_rate_limiter_spaces_requests_to_the_configured_average():
    from angles.rate_limit import TokenBucket

    now = [0.0]
    bucket = TokenBucket(3, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    for _ in range(31):
        bucket.acquire()
    assert now[0] == pytest.approx(10.0)
    bucket.pause(5)
    bucket.acquire()
    assert now[0] == pytest.approx(15.0)
