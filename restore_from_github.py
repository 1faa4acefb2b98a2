#!/usr/bin/env python3
"""Verify a backup from the backup remote, report drift against the live database, restore decisions."""

import argparse
import sys

from angles import cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dry-run", action="store_true", help="verify and report what would change; write nothing")
    parser.add_argument(
        "--restore-decisions", action="store_true", help="upsert the backup's decisions by id in one transaction"
    )
    parser.add_argument("--at", metavar="REF|DATE", help="a backup commit, or the newest backup on or before a date")
    parser.add_argument("--prune", action="store_true", help="with --restore-decisions: delete rows not in the backup")
    parser.add_argument(
        "--prefer-backup",
        action="store_true",
        help="with --restore-decisions: also replace decisions edited after the backup (default: keep the live one)",
    )
    parser.add_argument(
        "--verify-only", action="store_true", help="the restore drill: verify and restore into scratch SQLite only"
    )
    parser.add_argument(
        "--level",
        choices=("checksums", "restore", "live"),
        help="verification depth: checksums of a fresh clone; + scratch restore; + spot check against live rows "
        "(default: checksums, or restore with --verify-only)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def main(args, settings) -> int:
    from angles.actions import restore
    from angles.progress import watching

    if args.verify_only:
        if args.restore_decisions or args.prune or args.prefer_backup:
            cli.print_error("--verify-only writes nothing; drop --restore-decisions/--prune/--prefer-backup")
            return 1
        result = restore.run_verify(settings, level=args.level or "restore", at=args.at)
        cli.emit(result, args.json, _verify_text)
    else:
        result = restore.run_restore(
            settings,
            dry_run=args.dry_run,
            restore_decisions=args.restore_decisions,
            at=args.at,
            prune=args.prune,
            prefer_backup=args.prefer_backup,
            level=args.level or "checksums",
            progress=watching(args.json),
        )
        cli.emit(result, args.json, _restore_text)
    return result["exit_code"]


def _head(result) -> list[str]:
    return [
        f"remote: {result['remote']} (branch {result['branch']})",
        f"backup: {result['commit'][:12]} made {result['backup_created_at']} "
        f"(schema {result['schema_version']}, tool {result['tool_version']}"
        f"{', encrypted' if result['encrypted'] else ''})",
        "checksums: every file matches manifest.json",
    ]


def _levels(result) -> list[str]:
    lines = []
    scratch = result["verification"].get("scratch_restore")
    if scratch:
        lines.append(
            f"scratch restore: {scratch['rows_restored']} of {scratch['rows_expected']} decisions restored into "
            f"SQLite, {'re-export identical' if scratch['identical'] else 're-export NOT identical'}"
        )
    spot = result["verification"].get("spot_check")
    if spot:
        lines.append(
            f"spot check: {spot['sampled']} rows compared with live: {spot['different']} differ, "
            f"{spot['missing_live']} missing live"
        )
    return lines


def _restore_text(result) -> str:
    lines = _head(result) + _levels(result)
    drift = result["drift"]
    for key, label in (("only_backup", "only in backup"), ("changed", "changed"), ("only_live", "only live")):
        part = drift[key]
        ids = f": {', '.join(part['first_ids'])}{' ...' if part['count'] > len(part['first_ids']) else ''}"
        lines.append(f"{label}: {part['count']}{ids if part['count'] else ''}")
    newer = drift["newer_live"]
    if newer["count"]:
        ids = ", ".join(newer["first_ids"]) + (" ..." if newer["count"] > len(newer["first_ids"]) else "")
        lines.append(f"changed, but edited live after the backup: {newer['count']}: {ids}")
    lines.append(f"unchanged: {drift['unchanged']}")
    if result.get("restored"):
        r = result["restored"]
        lines.append(
            f"restored: {r['upserted']} decisions upserted in one transaction, {r['pruned']} pruned, "
            f"{r['kept_newer']} kept because edited live after the backup (--prefer-backup replaces them)"
        )
        if r.get("skipped"):
            lines.append(
                f"warning: {len(r['skipped'])} decision(s) not restored: each holds a NUL character or other text "
                f"no backend stores alike (reasons in logs/active/restore.log): {', '.join(r['skipped'])}"
            )
    elif result.get("would_restore"):
        w = result["would_restore"]
        lines.append(
            f"would restore: {w['upsert']} decisions upserted, {w['prune']} pruned, "
            f"{w['kept_newer']} newer live edits kept (dry run)"
        )
    elif result["dry_run"]:
        lines.append("dry run: nothing written")
    else:
        lines.append("nothing written; add --restore-decisions to restore")
    return "\n".join(lines)


def _verify_text(result) -> str:
    lines = _head(result) + _levels(result)
    lines.append(f"restore drill {'passed' if result['exit_code'] == 0 else 'FAILED'} (level {result['level']})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(cli.run("restore", build_parser(), main))
