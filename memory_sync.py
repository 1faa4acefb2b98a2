#!/usr/bin/env python3
"""Two-way sync of decisions with Notion, then a JSON export (no flag = --sync-decisions and an export)."""

import argparse
import sys

from angles import cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--test", action="store_true", help="read-only check of the database, Notion and AI")
    mode.add_argument("--sync-decisions", action="store_true", help="two-way sync with Notion (no export)")
    mode.add_argument("--export-only", action="store_true", help="write the JSON export, touch no API")
    mode.add_argument("--setup-notion", action="store_true", help="add missing properties to the Notion database")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and write nothing anywhere")
    parser.add_argument("--all", action="store_true", help="push every decision again, changed or not")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def main(args, settings) -> int:
    from angles.actions import sync
    from angles.progress import watching

    if args.test:
        result = sync.run_test(settings)
        cli.emit(result, args.json, _test_text)
    elif args.setup_notion:
        result = sync.run_setup_notion(settings, dry_run=args.dry_run)
        cli.emit(result, args.json, _setup_text)
    else:
        result = sync.run_sync(
            settings,
            sync=not args.export_only,
            export=not args.sync_decisions,
            dry_run=args.dry_run,
            push_all=args.all,
            progress=watching(args.json),
        )
        cli.emit(result, args.json, _sync_text)
        if result["error"]:
            cli.print_error(result["error"])
    return result["exit_code"]


def _sync_text(result) -> str:
    from angles.actions import sync

    c = result["counts"]
    lines = []
    if result.get("message"):
        lines.append(result["message"])
    if result["notion"] == "on" and result["sync"] and result["status"] == "completed":
        if result["dry_run"]:
            lines.append(
                f"plan (dry run): create {c['created']}, update {c['updated']}, archive {c['archived']}, "
                f"unchanged {c['unchanged']}; from Notion: apply {c['applied']}, import {c['imported']}, "
                f"conflicts {c['conflicts']}, skip {c['skipped']} of {c['pulled']} pages read"
            )
        else:
            lines.append(
                f"Notion: created {c['created']}, updated {c['updated']}, archived {c['archived']}, "
                f"unchanged {c['unchanged']}, rejected {c['rejected']}; pulled {c['pulled']} pages: "
                f"applied {c['applied']}, imported {c['imported']}, conflicts {c['conflicts']}, "
                f"skipped {c['skipped']} ({result['notion_requests']} requests)"
            )
    for problem in result["problems"]:
        lines.append(f"warning: {problem['kind']}: {problem['message']}")
    if result.get("ai"):
        lines.append(sync.ai_summary(result["ai"]))
    if result["export"]:
        verb = "would export" if result["dry_run"] else "exported"
        lines.append(f"{verb} {result['export']['count']} decisions to {result['export']['path']}")
        for found in result["export"].get("credential_like") or []:
            lines.append(
                f"warning: decision {found['id']} looks like it holds a credential (fields: "
                f"{', '.join(found['fields'])}); exported as stored: rotate the credential, then edit the decision"
            )
    return "\n".join(lines)


def _test_text(result) -> str:
    lines = []
    for name, check in result["checks"].items():
        detail = check.get("message", "")
        if name == "database" and check["status"] != "fail":
            detail = (
                f"{check['database']}, schema {check['schema_version']} (latest {check['latest_version']}), "
                f"{check['decisions']} decisions, {check['with_page']} with a page, {check['to_push']} to push"
                + (f"; {detail}" if detail else "")
            )
        elif name == "notion" and check["status"] in ("ok", "warn"):
            detail = (
                f"integration {check['integration']}, data source {check['data_source_id']}"
                + (f"; missing {', '.join(check['missing'])}" if check["missing"] else "")
                + "".join(f"; {m['property']} is {m['actual']}, expected {m['expected']}" for m in check["mistyped"])
                + (f"; {detail}" if detail else "")
            )
        lines.append(f"{name:<9} {check['status'].upper():<5} {detail}")
    return "\n".join(lines)


def _setup_text(result) -> str:
    if result.get("message"):
        return result["message"]
    lines = [f"data source {result['data_source_id']} (title property {result['title_property']!r})"]
    if result["dry_run"]:
        lines.append(f"would add: {', '.join(result['would_add']) or 'nothing'} (dry run)")
    else:
        lines.append(f"added: {', '.join(result['added']) or 'nothing'}")
    lines.append(f"already present: {', '.join(result['already_present']) or 'none'}")
    if result.get("superseded_by"):
        shown = "a relation to the same database" if result["superseded_by"] == "relation" else "a text property"
        lines.append(f"Superseded by is {shown}")
    for m in result["mistyped"]:
        lines.append(f"mistyped: {m['property']} is {m['actual']}, expected {m['expected']} (change it in Notion)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(cli.run("memory_sync", build_parser(), main))
