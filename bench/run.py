#!/usr/bin/env python3
"""Run every benchmark (or --only some) and print one table of measured figure, baseline, ratio, target, met."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODULES = (
    "bench_startup",
    "bench_health",
    "bench_sync",
    "bench_export",
    "bench_backup",
    "bench_scheduler",
    "bench_vault",
    "bench_mcp",
)


def machine() -> str:
    import psutil

    mem = psutil.virtual_memory().total / 2**30
    cores = os.cpu_count()
    return f"{platform.node()} {platform.machine()} {cores} cores {mem:.0f} GiB, Python {platform.python_version()}"


def collect(only: set[str] | None) -> dict:
    benchmarks = {}
    for name in MODULES:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}":
                continue
            raise
        for key, fn in module.BENCHMARKS.items():
            if only is None or key in only:
                benchmarks[key] = fn
    return benchmarks


def render(rows: list[dict]) -> str:
    head = ("benchmark", "measured", "baseline", "ratio", "target", "met", "note")
    table = [head]
    for r in rows:
        measured = "-" if r["measured"] is None else f"{r['measured']:g} {r['unit']}"
        baseline = "-" if r["baseline"] is None else f"{r['baseline']:g} {r['unit']}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:g}"
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        table.append((r["benchmark"], measured, baseline, ratio, r["target"], met, r["note"]))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)) + " |" for row in table]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", action="append", help="run only this benchmark (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="where latest.json and latest.md go")
    args = parser.parse_args()
    benchmarks = collect(set(args.only) if args.only else None)
    if args.list:
        print("\n".join(benchmarks))
        return 0
    rows, started = [], time.time()
    for key, fn in benchmarks.items():
        print(f"running {key} ...", file=sys.stderr, flush=True)
        try:
            rows.extend(r.as_dict() for r in fn({}))
        except Exception as exc:
            traceback.print_exc()
            rows.append(
                {
                    "benchmark": key,
                    "measured": None,
                    "unit": "",
                    "baseline": None,
                    "ratio": None,
                    "target": "runs",
                    "met": False,
                    "note": f"failed: {type(exc).__name__}: {exc}"[:200],
                }
            )
    when = datetime.now(UTC).isoformat(timespec="seconds")
    table = render(rows)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"date": when, "machine": machine(), "seconds": round(time.time() - started, 1)}
    (out / "latest.json").write_text(json.dumps({**meta, "rows": rows}, indent=2, ensure_ascii=False) + "\n")
    (out / "latest.md").write_text(
        f"# Benchmark results\n\n{when} on {meta['machine']}, {meta['seconds']} s.\n\n{table}\n"
    )
    return 0 if all(r["met"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
