"""Alerts: every configured target took its last ping or notification."""

from __future__ import annotations

from angles.health.base import OK, WARNING, Check, CheckResult, Context


class AlertsCheck(Check):
    name = "alerts"
    label = "Alerts"

    def run(self, settings, context: Context) -> CheckResult:
        from angles import alerts

        status = alerts.delivery_status(settings)
        if not status:
            return self.result(OK, "off", "no alert target configured (HEALTHCHECKS_URL, ALERT_URLS)")
        failing = [s for s in status if s["ok"] is False]
        metrics = {"alert_targets": len(status), "alert_targets_failing": len(failing)}
        details = {"targets": status}
        if failing:
            shown = "; ".join(f"{s['target']}: {s['last_error']} (since {s['failing_since']})" for s in failing[:4])
            return self.result(
                WARNING,
                f"{len(failing)} failing",
                f"last alert delivery failed: {shown}; python backend_monitor.py --test-alerts",
                metrics,
                details,
            )
        sent = sum(1 for s in status if s["ok"])
        return self.result(
            OK,
            f"{len(status)} targets",
            f"{sent} of {len(status)} alert targets delivered their last alert",
            metrics,
            details,
        )
