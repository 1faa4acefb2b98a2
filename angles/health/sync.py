"""Memory sync success rate over the last 24 hours, from the activity table."""

from __future__ import annotations

from datetime import timedelta

from angles.health.base import CRITICAL, OK, WARNING, Check, CheckResult, Context, one_line

WINDOW = timedelta(hours=24)


class SyncRateCheck(Check):
    name = "sync"
    label = "Sync"

    def run(self, settings, context: Context) -> CheckResult:
        if context.database_missing():
            return self.result(OK, "no runs", "no memory sync has run yet")
        from angles.engines.decision_model import to_iso

        since = to_iso(context.now - WINDOW)
        try:
            rows = context.storage().iter_activity(since=since, agent_name="memory_sync", action="sync")
            completed = failed = 0
            last = None
            for row in rows:
                status = str(row.get("status") or "").lower()
                if status == "completed":
                    completed += 1
                elif status == "failed":
                    failed += 1
                else:
                    continue
                last = row
        except Exception as exc:
            return self.result(WARNING, "unknown", f"cannot read sync history: {one_line(exc, 150)}")
        total = completed + failed
        details = {"runs_24h": total, "failed_24h": failed}
        if last is not None:
            details["last_time"] = last.get("finished_at") or last.get("created_at")
            details["last_status"] = last.get("status")
        if total == 0:
            return self.result(OK, "no runs", "no memory sync in the last 24 h", {"sync_runs_24h": 0}, details)
        rate = 100.0 * completed / total
        details["rate"] = round(rate, 1)
        metrics = {"sync_success_rate": round(rate, 1), "sync_runs_24h": total, "sync_failed_24h": failed}
        value = f"{rate:.0f}% of {total}"
        kind = " (export only, Notion off)" if _notion_was_off(last) else ""
        reason = f"{completed} of {total} memory syncs{kind} succeeded in 24 h ({rate:.0f}%)"
        if rate < settings.sync_success_critical:
            status = CRITICAL
            reason += f", critical below {settings.sync_success_critical:g}%"
        elif rate < settings.sync_success_warning:
            status = WARNING
            reason += f", warning below {settings.sync_success_warning:g}%"
        else:
            status = OK
        return self.result(status, value, reason, metrics, details)


def _notion_was_off(row: dict) -> bool:
    """Whether the run recorded in `row` synced nothing with Notion (it was not configured) and only exported."""
    import json

    try:
        details = json.loads(row.get("details") or "{}")
    except (TypeError, ValueError):
        return False
    return isinstance(details, dict) and details.get("notion") == "off"
