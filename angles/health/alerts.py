"""Alerts: every configured target took its last ping or notification."""

from __future__ import annotations

from angles.health.base import OK, WARN, WARNING, Check, CheckResult, Context


class AlertsCheck(Check):
    name = "alerts"
    label = "Alerts"

    def run(self, settings, context: Context) -> CheckResult:
        from angles import alerts

        if context.thorough:
            return self._reachable(alerts, settings)
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

    def _reachable(self, alerts, settings) -> CheckResult:
        """The checklist's view: each target answers a TCP connect (nothing is sent)."""
        configured = alerts.targets(settings)
        if not configured:
            return self.result(
                OK,
                "off",
                "no alert target: nobody hears of a failed job",
                hint="set HEALTHCHECKS_URL or ALERT_URLS",
                verdict=WARN,
            )
        reachable, problems = [], []
        for target in configured:
            problem = alerts.probe(target)
            if problem is None:
                reachable.append(f"{target.name} reachable")
            elif problem == "not probed":
                reachable.append(f"{target.name} (not probed)")
            else:
                problems.append(f"{target.name}: {problem}")
        if problems:
            return self.result(
                WARNING,
                f"{len(problems)} unreachable",
                "; ".join(problems + reachable),
                hint="check the URL and the network; python backend_monitor.py --test-alerts sends a test",
            )
        return self.result(OK, f"{len(configured)} targets", "; ".join(reachable) + " (TCP connect, nothing sent)")
