"""The alert test behind backend_monitor.py --test-alerts: a test ping and notification to every target."""

from __future__ import annotations

import logging

from angles import alerts
from angles.errors import ConfigError

logger = logging.getLogger(__name__)

EXIT_EXTERNAL = 3


def run_test_alerts(settings) -> dict:
    """PASS or FAIL per configured target; exit code 3 when any target failed."""
    if not alerts.targets(settings):
        raise ConfigError("no alert target configured: set HEALTHCHECKS_URL and/or ALERT_URLS (see docs/alerts.md)")
    results = alerts.test_targets(settings)
    failed = [r for r in results if not r["ok"]]
    for result in results:
        logger.info("alert test %s: %s", result["target"], "PASS" if result["ok"] else f"FAIL ({result['reason']})")
    return {"targets": results, "exit_code": EXIT_EXTERNAL if failed else 0}
