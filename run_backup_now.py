#!/usr/bin/env python3
"""Back up every table to the backup remote: export, manifest, credential scan, commit, push (never forced)."""

import argparse
import sys

from angles import cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dry-run", action="store_true", help="export and compare only: no commit, no push")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def main(args, settings) -> int:
    from angles.actions.backup import run_backup
    from angles.progress import watching

    result = run_backup(settings, dry_run=args.dry_run, progress=watching(args.json))
    cli.emit(result, args.json, _text)
    return result["exit_code"]


def _text(result) -> str:
    from angles.actions.backup import summary

    lines = [f"remote: {result['remote']} (branch {result['branch']})"]
    if result["result"] == "committed":
        lines.append(f"backup pushed: {result['message']}")
    elif result["result"] == "unchanged":
        lines.append("nothing changed since the last backup: no commit")
    lines.append(summary(result) + (" (dry run)" if result["dry_run"] else ""))
    for r in result["credential_like"]:
        lines.append(
            f"warning: {r['table']} record {r['id']} looks like it holds a credential (fields: "
            f"{', '.join(r['fields'])}); backed up as stored: rotate the credential, then edit the record"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(cli.run("backup", build_parser(), main))
