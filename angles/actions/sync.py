"""The memory_sync actions: sync with Notion and export, check every connection, set up the Notion database."""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack

from angles.engines import notion_pages as pages
from angles.engines.json_export import export_path, write_export
from angles.engines.notion_sync import NotionSync, new_counts
from angles.errors import AnglesError
from angles.health.base import CRITICAL, OK
from angles.locks import locked
from angles.logs import redactor
from angles.progress import progress_bar
from angles.runs import Run
from angles.services import notion
from angles.storage import migrations, open_storage

logger = logging.getLogger(__name__)

NOTION_OFF = "Notion sync is off: NOTION_TOKEN and NOTION_DATABASE_ID are not both set"


def _run_lock(settings):
    """One sync per host at a time: two would both create pages for the same new decisions."""
    return locked(
        settings.data_dir / "memory_sync.lock",
        busy="another memory_sync run is in progress on this host; try again when it ends",
    )


def _ensure_schema(storage, dry_run: bool) -> None:
    if not dry_run:
        migrations.ensure_current(storage)


def ai_summary(ai: dict) -> str:
    """One line saying how many decisions were analysed, and by which analyser."""
    verb = "would analyse" if ai["dry_run"] else "analysed"
    count = ai["would_analyse"] if ai["dry_run"] else ai["analysed"]
    if ai["model"] == "offline":
        return f"AI {verb} {count} decisions with the offline analyser (OPENAI_API_KEY unset)"
    line = f"AI {verb} {count} decisions: {ai['online']} by {ai['model']}, {ai['offline']} offline"
    if ai["deferred"]:
        line += f", {ai['deferred']} deferred to the next run"
    if ai["fallback_reason"]:
        line += f" (fallback: {ai['fallback_reason']})"
    return line


def _summary(result: dict) -> str:
    c = result["counts"]
    parts = []
    if result["notion"] == "on":
        parts.append(
            f"pulled {c['pulled']} (applied {c['applied']}, imported {c['imported']}, conflicts {c['conflicts']}, "
            f"skipped {c['skipped']}), created {c['created']}, updated {c['updated']}, archived {c['archived']}, "
            f"unchanged {c['unchanged']}, rejected {c['rejected']}, {result['notion_requests']} Notion requests"
        )
    elif result["sync"]:
        parts.append("Notion off")
    if result.get("ai"):
        parts.append(ai_summary(result["ai"]))
    if result["export"]:
        verb = "would export" if result["dry_run"] else "exported"
        parts.append(f"{verb} {result['export']['count']} decisions to {result['export']['path']}")
    return "; ".join(parts) or "nothing to do"


def run_sync(
    settings,
    *,
    sync: bool = True,
    export: bool = True,
    dry_run: bool = False,
    push_all: bool = False,
    progress: bool = False,
) -> dict:
    """Pull Notion edits, push the vault's changes, export to JSON; returns counts and an exit code."""
    run = Run(settings, "memory_sync", "sync" if sync else "export", record=not dry_run)
    suffix = " (dry run)" if dry_run else ""
    result = {
        "dry_run": dry_run,
        "sync": sync,
        "notion": "on" if settings.notion_enabled else "off",
        "counts": new_counts(),
        "problems": [],
        "notion_requests": 0,
        "export": None,
        "status": "completed",
        "error": None,
        "exit_code": 0,
    }
    if sync and not settings.notion_enabled:
        result["message"] = NOTION_OFF
        logger.info("%s", NOTION_OFF)
    storage = None
    try:
        storage = open_storage(settings, create=not dry_run)
        run.storage = storage
        storage.ping()
        _ensure_schema(storage, dry_run)
        with progress_bar(progress) as bar:
            _sync(storage, settings, result, bar, sync=sync, dry_run=dry_run, push_all=push_all)
            if export:
                result["export"] = _export(storage, settings, bar, dry_run=dry_run)
    except AnglesError as exc:
        result.update(status="failed", error=redactor()(str(exc)), exit_code=exc.exit_code)
    except Exception as exc:
        logger.exception("memory_sync stopped on an unexpected error")
        result.update(status="failed", error=redactor()(f"unexpected {type(exc).__name__}: {exc}"), exit_code=1)
    duration = run.duration_s
    result["duration_s"] = round(duration, 1)
    if result["status"] == "completed":
        logger.info("memory_sync completed%s: %s, duration %.1fs", suffix, _summary(result), duration)
    else:
        logger.error("memory_sync failed%s: %s, duration %.1fs", suffix, result["error"], duration)
    if storage is not None:
        try:
            details = {k: result.get(k) for k in ("notion", "counts", "notion_requests", "export", "error")}
            if result.get("ai"):
                details["ai"] = {k: result["ai"][k] for k in ("analysed", "online", "offline", "deferred", "model")}
            details["problems"] = result["problems"][:5]
            run.finish(result["status"], json.dumps(details, ensure_ascii=False, default=str))
        finally:
            storage.close()
    return result


def _backlog(storage) -> dict:
    """What the next sync has to push, and creates a crash interrupted (the data's integrity, for --test)."""
    total = pending = interrupted = with_page = 0
    for row in storage.iter_decisions():
        total += 1
        if row.get("notion_page_id"):
            with_page += 1
            # Either form: whether pages show "Superseded by" is known only to the data source.
            shown = (pages.sync_hash(row), pages.sync_hash(row, shows_superseded=True))
            if row.get("notion_sync_hash") not in shown:
                pending += 1
        elif not row.get("deleted_at"):
            pending += 1
            if row.get("notion_attempted_at"):
                interrupted += 1
    return {"decisions": total, "with_page": with_page, "to_push": pending, "interrupted_creates": interrupted}


def _sync(storage, settings, result: dict, bar, *, sync: bool, dry_run: bool, push_all: bool) -> None:
    """Pull from Notion, analyse, push to Notion: each step that is configured and asked for."""
    with ExitStack() as stack:
        engine = None
        if sync and settings.notion_enabled:
            if not dry_run:
                stack.enter_context(_run_lock(settings))
            client = stack.enter_context(notion.client_for(settings))
            engine = NotionSync(
                storage, client, settings.notion_database_id, dry_run=dry_run, push_all=push_all, progress=bar
            )
            result["counts"] = engine.counts
            result["problems"] = engine.problems
            stack.callback(lambda: result.update(notion_requests=client.requests))
            engine.connect()
            engine.pull()
        if sync:
            # Analyse after the pull (Notion edits count) and before the push (the summary reaches Notion).
            from angles.engines.enrichment import enrich_decisions

            result["ai"] = enrich_decisions(storage, settings, dry_run=dry_run)
        if engine is not None:
            engine.push()


def _export(storage, settings, bar, *, dry_run: bool) -> dict:
    if dry_run:
        return {"path": str(export_path(settings)), "count": storage.count_decisions()}
    return write_export(storage, settings, progress=bar)


def _database_status(result, context) -> dict:
    if result.status == CRITICAL or "database" not in result.details:
        return {"status": "fail", "message": result.reason}
    check = {"status": "ok" if result.status == OK else "warn", **result.details}
    if result.status != OK:
        check["message"] = result.reason
    if context.database_missing():
        check.update(decisions=0, with_page=0, to_push=0, interrupted_creates=0)
        return check
    check.update(_backlog(context.storage()))
    if check["status"] == "ok" and check["interrupted_creates"]:
        check["status"] = "warn"
        check["message"] = (
            f"{check['interrupted_creates']} decisions were interrupted while their page was being created; "
            "the next sync looks their page up before creating one"
        )
    return check


def _notion_status(access, schema) -> dict:
    if access.details.get("configured") is False:
        return {"status": "off", "message": access.reason}
    if access.status != OK:
        extra = {k: access.details.get(k) for k in ("auth", "http_status")}
        return {"status": "fail", "message": access.reason, **extra}
    check = {"status": "ok", **access.details}
    if schema is not None and schema.status != OK:
        check["status"] = "warn"
        check["message"] = "properties missing or of the wrong type: run python memory_sync.py --setup-notion"
    return check


def _ai_status(ai) -> dict:
    if ai.details.get("configured") is False:
        return {"status": "off", "message": ai.reason}
    if ai.status != OK:
        return {"status": "fail", "message": ai.reason, "kind": ai.details.get("kind")}
    return {"status": "ok", "message": ai.reason}


def run_test(settings) -> dict:
    """Read-only check of the database, Notion and AI settings, and of the data's integrity."""
    from angles.health.base import Context, run_check
    from angles.health.database import DatabaseCheck
    from angles.health.services import AICheck, NotionCheck, NotionSchemaCheck

    context = Context(settings, thorough=True)
    try:
        checks = {
            "database": _database_status(run_check(DatabaseCheck(), settings, context), context),
            "notion": _notion_status(
                run_check(NotionCheck(), settings, context), run_check(NotionSchemaCheck(), settings, context)
            ),
            "ai": _ai_status(run_check(AICheck(), settings, context)),
        }
    finally:
        context.close()
    exit_code = 0
    if "fail" in (checks["notion"]["status"], checks["ai"]["status"]):
        exit_code = 3
    if checks["database"]["status"] == "fail":
        exit_code = 2
    if exit_code == 0 and checks["notion"].get("mistyped"):
        exit_code = 1
    logger.info(
        "memory_sync test: database %s, notion %s, ai %s",
        checks["database"]["status"],
        checks["notion"]["status"],
        checks["ai"]["status"],
    )
    return {"checks": checks, "exit_code": exit_code}


def _add_superseded_by(client, source_id: str) -> None:
    """A relation to the data source itself; a text property where Notion will not make the relation."""
    try:
        client.update_data_source(source_id, pages.superseded_schema("relation", source_id))
    except (notion.NotionRejectedError, notion.NotionNotFoundError) as exc:
        logger.warning(
            "Notion refused a relation for %r (%s); adding a text property instead", pages.SUPERSEDED_BY, exc
        )
        client.update_data_source(source_id, pages.superseded_schema("rich_text", source_id))


def run_setup_notion(settings, *, dry_run: bool = False) -> dict:
    """Add the properties the sync needs to the Notion data source; existing ones are left alone."""
    if not settings.notion_enabled:
        return {"status": "off", "message": NOTION_OFF, "exit_code": 1}
    with notion.client_for(settings) as client:
        source_id = client.resolve_data_source(settings.notion_database_id)
        schema = pages.check_schema(client.retrieve_data_source(source_id))
        missing = schema["missing"] + ([] if schema["superseded_by"] else [pages.SUPERSEDED_BY])
        if missing and not dry_run:
            if schema["missing"]:
                client.update_data_source(source_id, pages.setup_properties(schema["missing"]))
            if not schema["superseded_by"]:
                _add_superseded_by(client, source_id)
            after = pages.check_schema(client.retrieve_data_source(source_id))
        else:
            after = schema
    result = {
        "data_source_id": source_id,
        "title_property": schema["title_property"],
        "added": []
        if dry_run
        else [p for p in schema["missing"] if p not in after["missing"]]
        + ([pages.SUPERSEDED_BY] if after["superseded_by"] and not schema["superseded_by"] else []),
        "would_add": missing if dry_run else [],
        "already_present": [p for p in pages.PROPERTIES if p != "Name" and p not in schema["missing"]]
        + ([pages.SUPERSEDED_BY] if schema["superseded_by"] else []),
        "superseded_by": after["superseded_by"],
        "mistyped": after["mistyped"],
        "dry_run": dry_run,
        "exit_code": 1 if after["mistyped"] else 0,
    }
    logger.info(
        "notion setup%s: added %s; mistyped %s",
        " (dry run)" if dry_run else "",
        ", ".join(result["added"] or result["would_add"]) or "nothing",
        ", ".join(m["property"] for m in after["mistyped"]) or "none",
    )
    return result
