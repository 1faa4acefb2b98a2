#!/usr/bin/env python3
"""Create or upgrade the database schema: versioned, checksummed migrations, one transaction each."""

import argparse
import sys

from angles import cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dry-run", action="store_true", help="list what would run and change nothing")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def main(args, settings) -> int:
    from angles.actions.migrate import run_migrate
    from angles.progress import watching

    result = run_migrate(settings, dry_run=args.dry_run, progress=watching(args.json))
    cli.emit(result, args.json, _text)
    return result["exit_code"]


def _text(result) -> str:
    lines = [f"database: {result['database']}"]
    suffix = " (dry run)" if result["dry_run"] else ""
    if result.get("sql"):
        lines.append("Supabase REST cannot run DDL; apply this SQL in the Supabase SQL editor (or set DATABASE_URL):")
        lines.append(result["sql"])
    if result["pending"]:
        verb = "would apply" if result["dry_run"] or result.get("sql") else "applied"
        for m in result["pending"]:
            lines.append(f"{verb} {m['version']:04d} {m['name']}{suffix}")
    else:
        lines.append(f"nothing pending: schema version {result['schema_version']} is current{suffix}")
    lines.append(f"schema version: {result['schema_version']} (latest {result['latest_version']})")
    if result["nul_text_ids"]:
        lines.append(
            f"warning: {len(result['nul_text_ids'])} decision(s) hold a NUL character (\\u0000), which PostgreSQL "
            f"cannot store and a restore there skips; re-import them by id with the text fixed: "
            f"{', '.join(result['nul_text_ids'])}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(cli.run("migration", build_parser(), main))
