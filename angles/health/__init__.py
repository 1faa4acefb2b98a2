"""Health checks, one module per family, each a small Check with the same run(settings, context) interface."""

from __future__ import annotations

from angles.health.base import CRITICAL, OK, WARNING, Check, CheckResult, Context


def default_checks() -> list[Check]:
    """Every check backend_monitor.py runs, in display order."""
    from angles.health.alerts import AlertsCheck
    from angles.health.assistants import MCPServerCheck
    from angles.health.backup import (
        BackupAgeCheck,
        BackupRemoteCheck,
        BackupVerificationCheck,
        CredentialContentCheck,
    )
    from angles.health.dashboard import DashboardCheck
    from angles.health.database import DatabaseCheck
    from angles.health.scheduler import SchedulerCheck
    from angles.health.services import AICheck, NotionCheck
    from angles.health.sync import SyncRateCheck
    from angles.health.system import CpuCheck, DiskCheck, LoadCheck, MemoryCheck

    return [
        CpuCheck(),
        MemoryCheck(),
        DiskCheck(),
        LoadCheck(),
        DatabaseCheck(),
        NotionCheck(),
        AICheck(),
        BackupRemoteCheck(),
        BackupAgeCheck(),
        BackupVerificationCheck(),
        CredentialContentCheck(),
        SchedulerCheck(),
        DashboardCheck(),
        MCPServerCheck(),
        SyncRateCheck(),
        AlertsCheck(),
    ]


__all__ = ["CRITICAL", "OK", "WARNING", "Check", "CheckResult", "Context", "default_checks"]
