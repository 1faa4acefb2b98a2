"""The restore and verify actions behind restore_from_github.py and the scheduler's weekly restore drill."""

from __future__ import annotations

import logging

from angles.engines import restore_plan as restore
from angles.errors import AnglesError
from angles.logs import redactor
from angles.progress import progress_bar
from angles.runs import append_history, component_log, recorded_run, store_state
from angles.storage import migrations, open_storage

logger = logging.getLogger(__name__)

LEVELS = ("checksums", "restore", "live")


def run_restore(
    settings,
    *,
    dry_run: bool = False,
    restore_decisions: bool = False,
    at: str | None = None,
    prune: bool = False,
    prefer_backup: bool = False,
    level: str = "checksums",
    progress: bool = False,
) -> dict:
    """Verify a backup, report drift against the live database and, when asked, upsert its decisions.

    Decisions edited live after the backup keep their live version unless `prefer_backup`.
    """
    if prune and not restore_decisions:
        raise AnglesError("--prune only applies together with --restore-decisions")
    if prefer_backup and not restore_decisions:
        raise AnglesError("--prefer-backup only applies together with --restore-decisions")
    if level not in LEVELS:
        raise AnglesError(f"verification level {level!r} is unknown (one of {', '.join(LEVELS)})")
    writes = restore_decisions and not dry_run
    suffix = " (dry run)" if dry_run else ""
    with (
        component_log(settings, "restore"),
        open_storage(settings, create=writes) as storage,
        recorded_run(settings, "restore", "restore", storage=storage, record=writes) as run,
        progress_bar(progress) as bar,
    ):
        storage.ping()
        # Into an empty database the restore reads every line anyway: it checks them then, once.
        lines_later = writes and level == "checksums" and restore.restores_into_empty(storage)
        try:
            with restore.verified_checkout(settings, at, lines_checked_later=lines_later) as checkout:
                restore.check_schema(checkout, storage)
                if writes:
                    migrations.migrate(storage)
                result = _describe(checkout)
                result["verification"] = _levels(checkout, storage, level)
                found = restore.drift(checkout, storage, bar)
                result["drift"] = found.report()
                if writes:
                    result["restored"] = restore.restore_decisions(
                        checkout, storage, found, prune=prune, prefer_backup=prefer_backup, bar=bar
                    )
                elif restore_decisions:
                    kept = 0 if prefer_backup else len(found.newer_live)
                    result["would_restore"] = {
                        "upsert": len(found.only_backup) + len(found.changed) - kept,
                        "prune": len(found.only_live) if prune else 0,
                        "kept_newer": kept,
                    }
        except AnglesError as exc:
            if writes:
                append_history(settings, f"restore failed (exit {exc.exit_code}): {redactor()(str(exc))}")
            raise
        # Rows skipped as unstorable: the rest is restored and committed, but a script must notice the gap.
        skipped = result.get("restored", {}).get("skipped")
        result.update(
            dry_run=dry_run,
            restore_decisions=restore_decisions,
            prune=prune,
            prefer_backup=prefer_backup,
            exit_code=1 if skipped else 0,
        )
        result["duration_s"] = run.duration_s
        logger.info("restore completed%s: %s", suffix, restore_summary(result))
        if writes:
            run.finish("completed", restore_summary(result))
            append_history(settings, f"restore completed: {restore_summary(result)}")
    return result


def run_verify(settings, *, level: str = "restore", at: str | None = None) -> dict:
    """The restore drill: verify the latest backup from a fresh clone, restore it into scratch SQLite; no live writes.

    The outcome is stored as backup.last_verified, apart from backup.last, for the health check.
    """
    if level not in LEVELS:
        raise AnglesError(f"verification level {level!r} is unknown (one of {', '.join(LEVELS)})")
    with (
        component_log(settings, "restore"),
        open_storage(settings, create=False) as storage,
        recorded_run(settings, "verify", "verify", storage=storage) as run,
    ):
        try:
            with restore.verified_checkout(settings, at) as checkout:
                restore.check_schema(checkout, storage)
                result = _describe(checkout)
                result["verification"] = _levels(checkout, storage, level)
        except AnglesError as exc:
            message = redactor()(str(exc))
            store_state(
                storage,
                "backup.last_verified",
                {"time": run.started, "result": "failed", "level": level, "error": message},
            )
            append_history(settings, f"verify failed (exit {exc.exit_code}): {message}")
            raise
        scratch = result["verification"].get("scratch_restore")
        ok = scratch is None or scratch["counts_match"]
        result.update(level=level, result="ok" if ok else "failed", exit_code=0 if ok else 1)
        result["duration_s"] = run.duration_s
        line = verify_summary(result)
        if ok:
            logger.info("verify completed: %s", line)
        else:
            logger.error("verify failed: %s", line)
        run.finish("completed" if ok else "failed", line)
        store_state(
            storage,
            "backup.last_verified",
            {"time": run.started, "result": result["result"], "level": level, "commit": result["commit"]},
        )
        append_history(settings, f"verify {'completed' if ok else 'failed'}: {line}")
    return result


def _describe(checkout: restore.Checkout) -> dict:
    manifest = checkout.manifest
    return {
        "remote": checkout.clone.remote.describe(),
        "branch": checkout.clone.remote.branch,
        "commit": checkout.commit,
        "committed_at": checkout.committed_at,
        "backup_created_at": manifest.get("created_at"),
        "schema_version": manifest.get("schema_version"),
        "tool_version": manifest.get("tool_version"),
        "files": {name: {"rows": m.get("rows"), "sha256": m.get("sha256")} for name, m in manifest["files"].items()},
        "credential_like": len(manifest.get("credential_like") or []),
        "encrypted": bool(manifest.get("encryption")),
    }


def _levels(checkout, storage, level: str) -> dict:
    out: dict = {"checksums": "ok"}
    if level in ("restore", "live"):
        out["scratch_restore"] = restore.scratch_restore(checkout)
        if not out["scratch_restore"]["identical"]:
            logger.warning("restore drill: decisions restored into scratch SQLite do not re-export byte-identically")
    if level == "live":
        out["spot_check"] = restore.spot_check(checkout, storage)
    return out


def restore_summary(result: dict) -> str:
    drift = result["drift"]
    text = (
        f"backup {result['commit'][:12]} ({result['backup_created_at']}): "
        f"{drift['only_backup']['count']} only in backup, {drift['changed']['count']} changed "
        f"({drift['newer_live']['count']} edited live since), "
        f"{drift['only_live']['count']} only live, {drift['unchanged']} unchanged"
    )
    if "restored" in result:
        restored = result["restored"]
        text += f"; restored {restored['upserted']}, pruned {restored['pruned']}, kept {restored['kept_newer']} newer"
        if restored.get("skipped"):
            text += f", skipped {len(restored['skipped'])} unstorable"
    return text


def verify_summary(result: dict) -> str:
    text = f"backup {result['commit'][:12]} ({result['backup_created_at']}) checksums ok"
    scratch = result["verification"].get("scratch_restore")
    if scratch:
        text += (
            f", scratch restore {scratch['rows_restored']}/{scratch['rows_expected']} decisions"
            f"{', identical' if scratch['identical'] else ', NOT identical'}"
        )
    spot = result["verification"].get("spot_check")
    if spot:
        text += f", spot check {spot['sampled']} rows: {spot['different']} differ, {spot['missing_live']} missing live"
    return f"{text}, level {result['level']}"
