"""Export 1,000,000 decisions from PostgreSQL to JSON against `psql \\copy` of the same rows."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from bench.datagen import COPY_COLUMNS, make_decisions
from bench.harness import Row, bench_env, python, ratio_row, run_measured, scratch_pg_database

ROWS = int(os.environ.get("BENCH_EXPORT_ROWS", "1000000"))


def fill_postgres(url: str, count: int, seed: int = 7) -> None:
    """Create the schema and load `count` decisions with COPY (setup, not measured)."""
    import json

    import psycopg

    from angles.storage.migrations import migrate
    from angles.storage.postgres import PostgresStorage

    with PostgresStorage(url) as storage:
        migrate(storage)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY decision_vault ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy:
            for d in make_decisions(count, seed):
                d["tags"] = json.dumps(d["tags"])
                copy.write_row([d[c] for c in COPY_COLUMNS])


def bench_export(ctx) -> list[Row]:
    with scratch_pg_database() as url:
        fill_postgres(url, ROWS)
        out = Path(tempfile.mkdtemp(prefix="bench-export-"))
        baseline_file = out / "baseline.json"
        copy_sql = f"\\copy (select row_to_json(d) from decision_vault d) to '{baseline_file}'"

        def baseline() -> float:
            base_s, _, base = run_measured(["psql", url, "-q", "-c", copy_sql])
            if base.returncode != 0:
                raise RuntimeError(f"psql baseline failed: {base.stderr.strip()[:200]}")
            baseline_file.unlink()
            return base_s

        baselines = [baseline()]
        seconds, peak_mb, result = run_measured(
            [python(), "memory_sync.py", "--export-only"], env=bench_env(out, DATABASE_URL=url)
        )
        if result.returncode != 0:
            raise RuntimeError(f"memory_sync.py --export-only exited {result.returncode}: {result.stderr[:200]}")
        files = list((out / "export").glob("decisions_*.json"))
        size = sum(f.stat().st_size for f in files) / 2**20
        baselines.append(baseline())
        subprocess.run(["rm", "-rf", str(out)], check=False)
    return [
        ratio_row(
            f"export {ROWS:,} decisions from Postgres to JSON",
            seconds,
            baselines,
            "s",
            1.2,
            "≤ 1.2× psql \\copy",
            note=f"{size:.0f} MiB written",
        ),
        Row(f"export {ROWS:,} decisions: peak RSS", round(peak_mb, 1), "MB", "≤ 200 MB", peak_mb <= 200),
    ]


BENCHMARKS = {"export": bench_export}
