"""Notion sync against the local Notion API: 300 changes among 10,000 at 3 req/s; 100,000 unchanged decisions."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.datagen import make_decisions
from bench.harness import Row, bench_env, python, ratio_row, run_measured

ROWS = int(os.environ.get("BENCH_SYNC_ROWS", "10000"))
CHANGED = int(os.environ.get("BENCH_SYNC_CHANGED", "300"))
UNCHANGED_ROWS = int(os.environ.get("BENCH_SYNC_UNCHANGED_ROWS", "100000"))
RPS = 3.0


def _workspace(rows: int, seed: int):
    """A fake Notion with a ready database, and an ANGLES_HOME whose SQLite database holds `rows` decisions."""
    from angles.config import load_settings
    from angles.engines import notion_pages
    from angles.engines.decision_model import validate
    from angles.storage import migrations, open_storage
    from tests.fakes.notion_server import FakeNotion

    fake = FakeNotion(rps=5000, burst=5000)
    fake.start()
    schema = {n: k for n, k in notion_pages.PROPERTIES.items() if k != "title"}
    database_id = fake.add_database(schema)
    home = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    settings = load_settings({"ANGLES_HOME": str(home)}, dotenv=False)
    storage = open_storage(settings)
    migrations.migrate(storage)
    storage.upsert_decisions(validate(d) for d in make_decisions(rows, seed))
    env = bench_env(
        home, NOTION_TOKEN=fake.token, NOTION_DATABASE_ID=database_id, NOTION_BASE_URL=fake.base_url, NOTION_RPS=2000
    )
    return fake, database_id, home, storage, env


def _sync(env: dict):
    seconds, _, result = run_measured([python(), "memory_sync.py", "--sync-decisions"], env=env, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"memory_sync.py --sync-decisions exited {result.returncode}: {result.stderr[:200]}")
    return seconds


def bench_changed(ctx) -> list[Row]:
    fake, _, home, storage, env = _workspace(ROWS, seed=11)
    try:
        _sync(env)  # first run: one page per decision
        _sync(env)  # second run: reads those pages back once, leaving the steady state
        for row in list(storage.iter_decisions())[:: max(1, ROWS // CHANGED)][:CHANGED]:
            storage.update_decision(row["id"], {"comment": "changed for the benchmark"})
        fake.set_rate(RPS, burst=RPS)
        first, writes, limited = len(fake.stamps), fake.writes, fake.count(status=429)
        seconds = _sync({**env, "NOTION_RPS": str(RPS)})
        stamps = fake.stamps[first:]
        rate = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
        writes, limited = fake.writes - writes, fake.count(status=429) - limited
    finally:
        storage.close()
        fake.stop()
        subprocess.run(["rm", "-rf", str(home)], check=False)
    label = f"sync {ROWS:,} decisions, {CHANGED} changed, at {RPS:g} req/s"
    return [
        Row(f"{label}: write requests", writes, "requests", f"= {CHANGED}", writes == CHANGED),
        Row(
            f"{label}: sustained rate",
            round(rate, 2),
            "req/s",
            f"≥ 95% of {RPS:g}",
            rate >= 0.95 * RPS,
            note=f"{len(stamps)} requests in {seconds:.0f} s",
        ),
        Row(f"{label}: 429 answers", limited, "responses", "0", limited == 0),
    ]


FULL_READ = (
    "from angles.config import load_settings\n"
    "from angles.storage import open_storage\n"
    "with open_storage(load_settings()) as s:\n"
    "    sum(1 for _ in s.iter_decisions())\n"
)
# An unchanged sync reads every row once to compare hashes, so a plain read of them is its floor. The first
# run against this baseline (2 cores, load about 2) gave 7.7 s against a 3.2 s read: 2.44×.
UNCHANGED_LIMIT = 2.5


def _full_read(env: dict) -> float:
    seconds, _, result = run_measured([python(), "-c", FULL_READ], env=env)
    if result.returncode != 0:
        raise RuntimeError(f"full read failed: {result.stderr[:200]}")
    return seconds


def bench_unchanged(ctx) -> list[Row]:
    from angles.engines import notion_pages
    from angles.engines.decision_model import text_hash, to_iso, utc_now

    fake, database_id, home, storage, env = _workspace(UNCHANGED_ROWS, seed=12)
    try:
        # The state a previous sync leaves behind, hours ago: every row analysed and synced, its hash stored,
        # the pull time and the AI scan recorded.
        source_id = fake.data_source_of(database_id)
        edited = to_iso(datetime.now(UTC) - timedelta(hours=7))
        earlier = to_iso(datetime.now(UTC) - timedelta(hours=6))
        for row in list(storage.iter_decisions()):
            row["ai_analysis"] = {"model": "offline", "summary": row["decision"][:120]}
            row["ai_hash"] = text_hash(row["decision"])
            storage.update_decision(
                row["id"],
                {
                    "ai_analysis": row["ai_analysis"],
                    "ai_hash": row["ai_hash"],
                    "notion_page_id": row["id"],
                    "notion_sync_hash": notion_pages.sync_hash(row),
                    "synced": True,
                    "updated_at": edited,
                },
            )
        storage.set_state("notion_last_pull", utc_now())
        storage.set_state(f"notion_data_source:{database_id}", source_id)
        storage.set_state("ai.scan", json.dumps({"model": "offline", "settled_at": earlier}))
        baselines = [_full_read(env)]
        before = fake.count()
        seconds = _sync(env)
        requests = fake.count() - before
        baselines.append(_full_read(env))
    finally:
        storage.close()
        fake.stop()
        subprocess.run(["rm", "-rf", str(home)], check=False)
    label = f"sync {UNCHANGED_ROWS:,} unchanged decisions"
    return [
        ratio_row(
            f"{label}: whole run",
            seconds,
            baselines,
            "s",
            UNCHANGED_LIMIT,
            f"≤ {UNCHANGED_LIMIT:g}× full read",
            note=f"absolute {seconds:.2f} s; baseline reads every row through the same driver in a fresh process",
        ),
        Row(f"{label}: Notion requests", requests, "requests", "≤ 2", requests <= 2),
    ]


BENCHMARKS = {"sync_changed": bench_changed, "sync_unchanged": bench_unchanged}
