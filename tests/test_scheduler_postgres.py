"""Several schedulers on one PostgreSQL database: one leader, standbys take over, no slot runs twice."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest

from tests.fakes.daemon import log_text, start, state, stop, wait_for, write_jobs

pytestmark = pytest.mark.postgres


def test_one_leader_lock_per_database_and_a_standby_gets_it_when_the_leader_session_ends(pg_url):
    from angles.jobs.locks import PostgresLeader

    first, second = PostgresLeader(pg_url, retry_seconds=0), PostgresLeader(pg_url, retry_seconds=0)
    try:
        assert first.check() is True
        assert second.check() is False
        assert first.check() is True, "the leader re-checks its session every tick and keeps the lock"
        first.conn.close()  # what a crashed leader's session looks like from its side
        assert first.check() is False
        # The server ends the old session a moment after the client goes; the standby simply retries.
        wait_for(second.check, timeout=5, interval=0.05, what="the standby to take the lock")
        assert first.check() is False
    finally:
        first.release()
        second.release()


def _migrated(pg_url):
    from angles.storage import migrations
    from angles.storage.postgres import PostgresStorage

    with PostgresStorage(pg_url) as storage:
        migrations.migrate(storage)
    return PostgresStorage


def _rows(storage_class, pg_url, job):
    with storage_class(pg_url) as storage:
        return [r for r in storage.iter_activity(agent_name=job) if r["action"] == "scheduled_run"]


def _slots(rows) -> Counter:
    return Counter(r["details"].split(";")[0] for r in rows if r["status"] in ("completed", "failed"))


def _marks(path) -> list[tuple[int, float]]:
    if not path.exists():
        return []
    return [(int(pid), float(at)) for pid, at in (line.split() for line in path.read_text().splitlines())]


def _host(tmp_path, name, marks, pg_url):
    home = tmp_path / name
    home.mkdir()
    write_jobs(home, [{"name": "tick", "call": "mark", "every_seconds": 1}], leader_retry_seconds=0.5)
    env = {"SCHEDULER_JOBS_FILE": "jobs.json", "DATABASE_URL": pg_url, "MARK_FILE": str(marks), "MARK_SECONDS": "0.05"}
    return home, env


def test_two_schedulers_on_one_database_run_each_slot_exactly_once(tmp_path, clean_env, pg_url):
    storage_class = _migrated(pg_url)
    marks = tmp_path / "marks"
    homes = [_host(tmp_path, name, marks, pg_url) for name in ("host_a", "host_b")]
    procs = [start(home, name=home.name, **env) for home, env in homes]
    try:
        wait_for(lambda: len(_marks(marks)) >= 5, timeout=30, what="five runs")
        states = [state(home) for home, _ in homes]
    finally:
        codes = [stop(proc) for proc in procs]
    assert codes == [0, 0]
    assert sorted(s["leader"] for s in states) == [False, True]
    leader = next(p for p, s in zip(procs, states, strict=True) if s["leader"])
    standby_home = next(home for (home, _), s in zip(homes, states, strict=True) if not s["leader"])
    assert "standing by" in log_text(standby_home)
    assert {pid for pid, _ in _marks(marks)} == {leader.pid}
    slots = _slots(_rows(storage_class, pg_url, "tick"))
    assert slots and max(slots.values()) == 1
    assert len(_marks(marks)) == sum(slots.values())


@pytest.mark.slow
def test_killing_the_leader_hands_over_within_30_s_and_no_slot_runs_twice(tmp_path, clean_env, pg_url):
    storage_class = _migrated(pg_url)
    marks = tmp_path / "marks"
    (home_a, env_a), (home_b, env_b) = (_host(tmp_path, name, marks, pg_url) for name in ("host_a", "host_b"))
    leader = start(home_a, name="a", **env_a)
    standby = None
    try:
        wait_for(lambda: state(home_a).get("leader") and len(_marks(marks)) >= 2, 60, what="the first leader to run")
        standby = start(home_b, name="b", **env_b)
        wait_for(lambda: state(home_b).get("leader") is False, 60, what="the standby to stand by")
        time.sleep(1.5)
        os.kill(leader.pid, signal.SIGKILL)
        leader.wait(10)
        killed_at = time.monotonic()
        wait_for(lambda: state(home_b).get("leader"), timeout=30, what="the standby to take over")
        took = time.monotonic() - killed_at
        runs_before = len(_marks(marks))
        wait_for(
            lambda: (
                {pid for pid, _ in _marks(marks)} >= {leader.pid, standby.pid} and len(_marks(marks)) >= runs_before + 3
            ),
            timeout=60,
            what="the new leader to run",
        )
    finally:
        if leader.poll() is None:
            leader.kill()
        if standby is not None:
            assert stop(standby) == 0
    assert took <= 30
    assert "leading: this host holds the scheduler leader lock" in log_text(home_b)
    slots = _slots(_rows(storage_class, pg_url, "tick"))
    assert max(slots.values()) == 1, [slot for slot, n in slots.items() if n > 1]
    # Each slot started once, on one host; every run left its "started" row before its mark (the kill may have
    # landed between the two), and every finished run its result row.
    started = Counter(r["details"] for r in _rows(storage_class, pg_url, "tick") if r["status"] == "started")
    assert max(started.values()) == 1
    assert len(_marks(marks)) <= sum(started.values()) <= len(_marks(marks)) + 1
    assert sum(slots.values()) <= len(_marks(marks)) <= sum(slots.values()) + 1
