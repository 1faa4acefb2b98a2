"""The memory_sync actions: sync with Notion and export, check every connection, set up the Notion database."""

from __future__ import annotations

import json
import logging
import socket
import time
from contextlib import ExitStack, contextmanager

from angles.engines import notion_pages as pages
from angles.engines.decision_model import utc_now
from angles.engines.json_export import export_path, write_export
from angles.engines.notion_sync import NotionSync, new_counts
from angles.errors import AnglesError, DatabaseError, ExternalServiceError
from angles.logs import redactor
from angles.services.notion import (
    NotionAuthError,
    NotionClient,
    NotionError,
    NotionNotFoundError,
    NotionRejectedError,
)
from angles.storage import migrations, open_storage

logger = logging.getLogger(__name__)

NOTION_OFF = "Notion sync is off: NOTION_TOKEN and NOTION_DATABASE_ID are not both set"


def notion_client(settings, **options) -> NotionClient:
    return NotionClient(settings.notion_token, base_url=settings.notion_base_url, rps=settings.notion_rps, **options)


@contextmanager
def _progress_bar(enabled: bool):
    """A rich progress bar per phase when a person is watching; nothing otherwise."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
    ) as bar:

        def start(phase: str, total: int | None):
            task = bar.add_task(phase, total=total)
            return lambda: bar.advance(task)

        yield start


@contextmanager
def _run_lock(settings):
    """One sync per host at a time: two would both create pages for the same new decisions."""
    import fcntl

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.data_dir / "memory_sync.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AnglesError("another memory_sync run is in progress on this host; try again when it ends") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
    started, clock = utc_now(), time.monotonic()
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
        storage.ping()
        _ensure_schema(storage, dry_run)
        with ExitStack() as stack:
            engine = None
            if sync and settings.notion_enabled:
                if not dry_run:
                    stack.enter_context(_run_lock(settings))
                client = stack.enter_context(notion_client(settings))
                bar = stack.enter_context(_progress_bar(progress))
                engine = NotionSync(
                    storage,
                    client,
                    settings.notion_database_id,
                    dry_run=dry_run,
                    push_all=push_all,
                    progress=bar,
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
        if export:
            if dry_run:
                result["export"] = {"path": str(export_path(settings)), "count": storage.count_decisions()}
            else:
                path = write_export(storage, settings)
                result["export"] = {"path": str(path), "count": storage.count_decisions()}
    except AnglesError as exc:
        result.update(status="failed", error=redactor()(str(exc)), exit_code=exc.exit_code)
    except Exception as exc:
        logger.exception("memory_sync stopped on an unexpected error")
        result.update(status="failed", error=redactor()(f"unexpected {type(exc).__name__}: {exc}"), exit_code=1)
    duration = time.monotonic() - clock
    result["duration_s"] = round(duration, 1)
    if result["status"] == "completed":
        logger.info("memory_sync completed%s: %s, duration %.1fs", suffix, _summary(result), duration)
    else:
        logger.error("memory_sync failed%s: %s, duration %.1fs", suffix, result["error"], duration)
    if storage is not None:
        try:
            if not dry_run:
                details = {k: result.get(k) for k in ("notion", "counts", "notion_requests", "export", "error")}
                if result.get("ai"):
                    details["ai"] = {k: result["ai"][k] for k in ("analysed", "online", "offline", "deferred", "model")}
                details["problems"] = result["problems"][:5]
                storage.record_activity(
                    "memory_sync",
                    "sync" if sync else "export",
                    result["status"],
                    json.dumps(details, ensure_ascii=False, default=str),
                    started_at=started,
                    finished_at=utc_now(),
                    duration_s=round(duration, 3),
                    host=socket.gethostname(),
                )
        except DatabaseError as exc:
            logger.warning("could not record the run in agent_activity: %s", exc)
        finally:
            storage.close()
    return result


def _database_check(settings) -> dict:
    check = {"status": "ok"}
    try:
        with open_storage(settings, create=False) as storage:
            storage.ping()
            check["database"] = storage.describe()
            check["schema_version"] = storage.schema_version()
            check["latest_version"] = migrations.latest_version(storage.dialect)
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
            check.update(decisions=total, with_page=with_page, to_push=pending, interrupted_creates=interrupted)
            if check["schema_version"] != check["latest_version"]:
                check["status"] = "warn"
                check["message"] = (
                    f"schema version {check['schema_version']}, latest {check['latest_version']}: "
                    "run python run_migration.py"
                )
            elif interrupted:
                check["status"] = "warn"
                check["message"] = (
                    f"{interrupted} decisions were interrupted while their page was being created; "
                    "the next sync looks their page up before creating one"
                )
    except DatabaseError as exc:
        check = {"status": "fail", "message": redactor()(str(exc))}
    return check


def check_notion(settings) -> dict:
    """Token, database access and properties; status ok, warn, off or fail (for --test, monitors, verification)."""
    if not settings.notion_enabled:
        return {"status": "off", "message": NOTION_OFF}
    try:
        # A check answers within seconds: fewer attempts and a shorter timeout than a sync's.
        with notion_client(settings, attempts=3, timeout=10) as client:
            me = client.me()
            source_id = client.resolve_data_source(settings.notion_database_id)
            schema = pages.check_schema(client.retrieve_data_source(source_id))
    except NotionError as exc:
        return {
            "status": "fail",
            "message": redactor()(str(exc)),
            "auth": isinstance(exc, NotionAuthError),
            "http_status": exc.status,
        }
    check = {
        "status": "ok",
        "integration": me.get("name") or me.get("id"),
        "data_source_id": source_id,
        "title_property": schema["title_property"],
        "missing": schema["missing"],
        "mistyped": schema["mistyped"],
    }
    if schema["missing"] or schema["mistyped"]:
        check["status"] = "warn"
        check["message"] = "properties missing or of the wrong type: run python memory_sync.py --setup-notion"
    return check


def check_ai_status(settings) -> dict:
    """One tiny analysis request; status ok, off or fail, with the failure's kind (for --test and verification)."""
    from angles.engines.enrichment import check_ai

    try:
        ai = check_ai(settings)
    except ExternalServiceError as exc:
        return {"status": "fail", "message": redactor()(str(exc)), "kind": getattr(exc, "kind", None)}
    if not ai["configured"]:
        return {"status": "off", "message": ai["detail"]}
    return {
        "status": "ok",
        "message": f"model {ai['model']} answered with a valid analysis in {ai['latency_s']} s ({ai['tokens']} tokens)",
    }


def run_test(settings) -> dict:
    """Read-only check of the database, Notion and AI settings, and of the data's integrity."""
    checks = {"database": _database_check(settings), "notion": check_notion(settings)}
    checks["ai"] = check_ai_status(settings)
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
    except (NotionRejectedError, NotionNotFoundError) as exc:
        logger.warning(
            "Notion refused a relation for %r (%s); adding a text property instead", pages.SUPERSEDED_BY, exc
        )
        client.update_data_source(source_id, pages.superseded_schema("rich_text", source_id))


def run_setup_notion(settings, *, dry_run: bool = False) -> dict:
    """Add the properties the sync needs to the Notion data source; existing ones are left alone."""
    if not settings.notion_enabled:
        return {"status": "off", "message": NOTION_OFF, "exit_code": 1}
    with notion_client(settings) as client:
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
