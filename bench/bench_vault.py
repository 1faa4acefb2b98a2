"""The searchable vault at 1,000,000 decisions: search p95, index-build migration, add with duplicate check, history.

Texts follow a Zipf word distribution (English stop words among the most frequent, then 30,000 content
words), so a search for a common word matches many decisions, as in a real vault. Queries are taken from
stored texts: one content word, three content words of one decision, two consecutive words as a phrase.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

from bench.harness import Row, bench_env, python, run_measured, scratch_pg_database, settle_pg

ROWS = int(os.environ.get("BENCH_VAULT_ROWS", "1000000"))
HISTORY_ROWS = int(os.environ.get("BENCH_VAULT_HISTORY_ROWS", "100000"))
QUERIES = int(os.environ.get("BENCH_VAULT_QUERIES", "200"))
ADDS = int(os.environ.get("BENCH_VAULT_ADDS", "200"))
VOCABULARY = 30_000
POOL = 4_000_000
SAMPLE_DOCS = 5_000
COLUMNS = ("id", "decision", "date", "type", "priority", "tags", "active", "comment", "type_source")
TYPES = ("strategy", "technical", "architecture", "process", "security", "ethical", "product", "other")


def _words(seed: int = 3) -> list[str]:
    """Stop words where English has them (most frequent first), then made-up content words."""
    from angles.engines.search_query import STOP_WORDS

    rng = random.Random(seed)
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["qu", "th", "ch", "sh", "ng"]
    content: list[str] = []
    seen: set[str] = set(STOP_WORDS)
    while len(content) < VOCABULARY:
        word = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            content.append(word)
    stops = sorted(STOP_WORDS)
    rng.shuffle(stops)
    ranked = stops[:40]
    # The other stop words spread over the first few hundred ranks, as "than" or "again" do in English.
    for i, word in enumerate(content):
        ranked.append(word)
        if stops[40:] and i % 4 == 3:
            ranked.append(stops.pop())
    return ranked


def _pool(words: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    weights = [1 / (rank**1.07) for rank in range(1, len(words) + 1)]
    return rng.choices(words, weights=weights, k=POOL)


def _text(rng: random.Random, pool: list[str]) -> str:
    n = rng.choice((8, 20, 40, 80, 160)) if rng.random() > 0.02 else rng.randint(800, 3000)
    start = rng.randrange(0, POOL - n)
    return " ".join(pool[start : start + n]).capitalize() + "."


def vault_rows(count: int, seed: int = 11):
    """`count` decisions (dicts of COLUMNS) with Zipf-distributed words, the same for the same seed."""
    rng = random.Random(seed)
    pool = _pool(_words(), seed)
    start = date(2024, 1, 1)
    for _ in range(count):
        yield {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "decision": _text(rng, pool),
            "date": (start + timedelta(days=rng.randint(0, 900))).isoformat(),
            "type": rng.choice(TYPES),
            "priority": rng.choice(("P0", "P1", "P2", None)),
            "tags": json.dumps(rng.sample(("infra", "ai", "people", "cost", "risk", "legal"), rng.randint(0, 3))),
            "active": rng.random() > 0.1,
            "comment": None if rng.random() < 0.6 else _text(rng, pool)[:120],
            "type_source": "person",
        }


def _queries(texts: list[str], seed: int = 5) -> dict[str, list[str]]:
    from angles.engines.search_query import STOP_WORDS

    rng = random.Random(seed)
    out: dict[str, list[str]] = {"1-word": [], "3-word": [], "phrase": []}
    while min(len(v) for v in out.values()) < QUERIES:
        words = [w.strip(".").lower() for w in rng.choice(texts).split()]
        content = [w for w in words if w not in STOP_WORDS]
        if len(set(content)) < 3:
            continue
        out["1-word"].append(rng.choice(content))
        out["3-word"].append(" ".join(rng.sample(sorted(set(content)), 3)))
        pairs = [(a, b) for a, b in zip(words, words[1:], strict=False) if a not in STOP_WORDS and b not in STOP_WORDS]
        if pairs:
            out["phrase"].append('"{} {}"'.format(*rng.choice(pairs)))
    return {k: v[:QUERIES] for k, v in out.items()}


def _p95(samples: list[float]) -> float:
    return round(statistics.quantiles(samples, n=100)[94] * 1000, 1)


def _before_vault(storage) -> None:
    """The schema as it was before the vault migration (0004), so the benchmark can time that migration."""
    from angles.storage import migrations

    for m in migrations.available(storage.dialect):
        if m.version < 4:
            storage.apply_migration(m.version, m.name, m.checksum, m.sql)


def _vault_migrations(dialect: str) -> list[Path]:
    """The migration files run_migration.py applies to such a vault (0004 on): the plain-SQL baseline runs them too."""
    from angles.storage import migrations

    return [m.path for m in migrations.available(dialect) if m.version >= 4]


def _fill_sqlite(path: Path, count: int) -> list[str]:
    from angles.engines.decision_model import utc_now
    from angles.storage.sqlite import SQLiteStorage

    with SQLiteStorage(path) as storage:
        _before_vault(storage)
    now = utc_now()
    sample: list[str] = []
    conn = sqlite3.connect(path)
    names = (*COLUMNS, "created_at", "updated_at")
    batch = []
    with conn:
        for n, row in enumerate(vault_rows(count)):
            if n % (count // SAMPLE_DOCS or 1) == 0:
                sample.append(row["decision"])
            batch.append((*(row[c] for c in COLUMNS), now, now))
            if len(batch) == 10_000:
                conn.executemany(
                    f"INSERT INTO decision_vault ({', '.join(names)}) VALUES ({', '.join('?' * 11)})", batch
                )
                batch = []
        if batch:
            conn.executemany(f"INSERT INTO decision_vault ({', '.join(names)}) VALUES ({', '.join('?' * 11)})", batch)
    conn.close()
    return sample


def _fill_postgres(url: str, count: int) -> list[str]:
    import psycopg

    from angles.engines.decision_model import utc_now
    from angles.storage.postgres import PostgresStorage

    with PostgresStorage(url) as storage:
        _before_vault(storage)
    now = utc_now()
    sample: list[str] = []
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        names = (*COLUMNS, "created_at", "updated_at")
        with cur.copy(f"COPY decision_vault ({', '.join(names)}) FROM STDIN") as copy:
            for n, row in enumerate(vault_rows(count)):
                if n % (count // SAMPLE_DOCS or 1) == 0:
                    sample.append(row["decision"])
                copy.write_row([*(row[c] for c in COLUMNS), now, now])
    return sample


def _search_rows(label: str, storage, queries: dict[str, list[str]]) -> list[Row]:
    from angles.engines import vault

    for q in queries["1-word"][:10]:
        vault.search(storage, q)
    rows = []
    for kind, items in queries.items():
        times, cpu, hits = [], [], 0
        for q in items:
            start, start_cpu = time.perf_counter(), time.process_time()
            hits += len(vault.search(storage, q))
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        p95 = _p95(times)
        rows.append(
            Row(
                f"search {kind} p95, {ROWS:,} decisions, {label}",
                p95,
                "ms",
                "≤ 50 ms",
                p95 <= 50,
                note=f"{len(items)} queries, median {round(statistics.median(times) * 1000, 1)} ms, "
                f"this process's CPU p95 {_p95(cpu)} ms, {hits / len(items):.1f} hits each",
            )
        )
    return rows


def _add_rows(label: str, storage, texts: list[str]) -> Row:
    from angles.engines import vault

    rng = random.Random(17)
    fresh = [r["decision"] + " " + uuid.uuid4().hex[:6] for r in vault_rows(ADDS, seed=99)]
    duplicates = [t.lower() for t in rng.sample(texts, max(1, ADDS // 10))]
    items = fresh + duplicates
    rng.shuffle(items)
    times, cpu, already = [], [], 0
    for text in items:
        start, start_cpu = time.perf_counter(), time.process_time()
        result = vault.record(storage, {"text": text}, source="cli")
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        already += result["status"] == "already_recorded"
    p95 = _p95(times)
    return Row(
        f"add with duplicate check p95, {ROWS:,} decisions, {label}",
        p95,
        "ms",
        "≤ 20 ms",
        p95 <= 20,
        note=f"{len(items)} adds ({already} already recorded), median {round(statistics.median(times) * 1000, 1)} ms,"
        f" this process's CPU p95 {_p95(cpu)} ms",
    )


def bench_vault_sqlite(ctx) -> list[Row]:
    from angles.storage.sqlite import SQLiteStorage

    work = Path(tempfile.mkdtemp(prefix="bench-vault-"))
    try:
        home = work / "home"
        (home / "data").mkdir(parents=True)
        database = home / "data" / "angles.db"
        texts = _fill_sqlite(database, ROWS)
        baseline_db = work / "baseline.db"
        shutil.copy(database, baseline_db)
        sql = "\n".join(f.read_text() for f in _vault_migrations("sqlite"))
        start = time.perf_counter()
        done = subprocess.run(["sqlite3", str(baseline_db)], input=sql, text=True, capture_output=True)
        base_s = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"sqlite3 baseline failed: {done.stderr.strip()[:200]}")
        baseline_db.unlink()
        seconds, _, result = run_measured([python(), "run_migration.py"], env=bench_env(home), timeout=3600)
        if result.returncode != 0:
            raise RuntimeError(f"run_migration.py exited {result.returncode}: {result.stderr[:200]}")
        rows = [
            Row(
                f"index-build migration, {ROWS:,} decisions, SQLite",
                round(seconds, 1),
                "s",
                "≤ 3× baseline",
                seconds <= 3 * base_s,
                baseline=round(base_s, 1),
                ratio=round(seconds / base_s, 2),
                note="baseline: the same SQL (migrations 0004 on) through the sqlite3 shell",
            )
        ]
        with SQLiteStorage(database) as storage:
            rows += _search_rows("SQLite", storage, _queries(texts))
            rows.append(_add_rows("SQLite", storage, texts))
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_vault_postgres(ctx) -> list[Row]:
    import psycopg

    from angles.storage.postgres import PostgresStorage

    with scratch_pg_database() as url:
        texts = _fill_postgres(url, ROWS)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE decision_vault")
        # The baseline database gets the same rows by COPY from the first (setup, not timed), and is dropped
        # before anything else is timed: its autovacuum would otherwise run beside the searches.
        with scratch_pg_database() as baseline_url:
            with psycopg.connect(baseline_url) as target:
                with PostgresStorage(baseline_url) as storage:
                    _before_vault(storage)
                with (
                    psycopg.connect(url) as source,
                    source.cursor().copy("COPY decision_vault TO STDOUT") as out,
                    target.cursor().copy("COPY decision_vault FROM STDIN") as into,
                ):
                    for data in out:
                        into.write(data)
            with psycopg.connect(baseline_url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE decision_vault")
            files = [arg for f in _vault_migrations("postgres") for arg in ("-f", str(f))]
            psql = ["psql", baseline_url, "-q", "-v", "ON_ERROR_STOP=1", "-1"]
            base_s, _, base = run_measured([*psql, *files], timeout=3600)
            if base.returncode != 0:
                raise RuntimeError(f"psql baseline failed: {base.stderr.strip()[:200]}")
        home = Path(tempfile.mkdtemp(prefix="bench-vault-pg-"))
        seconds, _, result = run_measured(
            [python(), "run_migration.py"], env=bench_env(home, DATABASE_URL=url), timeout=3600
        )
        shutil.rmtree(home, ignore_errors=True)
        if result.returncode != 0:
            raise RuntimeError(f"run_migration.py exited {result.returncode}: {result.stderr[:200]}")
        rows = [
            Row(
                f"index-build migration, {ROWS:,} decisions, PostgreSQL",
                round(seconds, 1),
                "s",
                "≤ 3× baseline",
                seconds <= 3 * base_s,
                baseline=round(base_s, 1),
                ratio=round(seconds / base_s, 2),
                note="baseline: the same SQL (migrations 0004 on) through psql -1 -f",
            )
        ]
        # similar_candidates reads the common words from the statistics ANALYZE gathers.
        settle_pg(url)
        with PostgresStorage(url) as storage:
            rows += _search_rows("PostgreSQL", storage, _queries(texts))
            rows.append(_add_rows("PostgreSQL", storage, texts))
        return rows


def _history_vault(path: Path, count: int, *, with_history: bool) -> None:
    """`count` decisions, 1% of them edited once: through edits (history) or written edited (none)."""
    from angles.engines import vault
    from angles.engines.decision_model import validate
    from angles.storage import migrations
    from angles.storage.sqlite import SQLiteStorage

    rows = [validate({**r, "tags": json.loads(r["tags"])}) for r in vault_rows(count, seed=23)]
    edited = {r["id"] for r in rows[::100]}
    with SQLiteStorage(path) as storage:
        migrations.migrate(storage)
        if not with_history:
            rows = [{**r, "decision": r["decision"] + " (edited)"} if r["id"] in edited else r for r in rows]
        storage.upsert_decisions(rows)
        if with_history:
            for decision_id in sorted(edited):
                text = storage.get_decision(decision_id)["decision"] + " (edited)"
                vault.edit(storage, decision_id, {"text": text}, source="cli")


def bench_vault_history(ctx) -> list[Row]:
    from angles.actions.backup import credential_scanner, export
    from angles.config import load_settings
    from angles.engines.json_export import write_export
    from angles.storage.sqlite import SQLiteStorage

    work = Path(tempfile.mkdtemp(prefix="bench-vault-history-"))
    try:
        measured = {}
        for with_history in (False, True):
            home = work / ("with" if with_history else "without")
            (home / "data").mkdir(parents=True)
            path = home / "data" / "angles.db"
            _history_vault(path, HISTORY_ROWS, with_history=with_history)
            settings = load_settings({"ANGLES_HOME": str(home)}, dotenv=False)
            times = []
            with SQLiteStorage(path) as storage:
                for _ in range(3):
                    start = time.perf_counter()
                    write_export(storage, settings)
                    times.append(time.perf_counter() - start)
                backup = home / "backup"
                backup.mkdir()
                snap = export(storage, backup, credential_scanner(settings))
            measured[with_history] = (statistics.median(times), sum(f["bytes"] for f in snap.files.values()))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (plain_s, plain_bytes), (hist_s, hist_bytes) = measured[False], measured[True]
    time_ratio, size_ratio = hist_s / plain_s, hist_bytes / plain_bytes
    return [
        Row(
            f"export with history (1% of {HISTORY_ROWS:,} edited once), SQLite",
            round(hist_s, 2),
            "s",
            "≤ 1.1× without history",
            time_ratio <= 1.1,
            baseline=round(plain_s, 2),
            ratio=round(time_ratio, 3),
            note="median of 3 exports",
        ),
        Row(
            f"backup size with history (1% of {HISTORY_ROWS:,} edited once)",
            round(hist_bytes / 2**20, 2),
            "MiB",
            "≤ 1.1× without history",
            size_ratio <= 1.1,
            baseline=round(plain_bytes / 2**20, 2),
            ratio=round(size_ratio, 3),
        ),
    ]


BENCHMARKS = {
    "vault_sqlite": bench_vault_sqlite,
    "vault_postgres": bench_vault_postgres,
    "vault_history": bench_vault_history,
}
