"""Host resources: CPU, memory, disk of the data directory and load average."""

from __future__ import annotations

import os
from pathlib import Path

from angles.health.base import OK, Check, CheckResult, Context, rising

# A quarter second is long enough for a stable sample and short enough to keep a whole run well under 2 s.
CPU_SAMPLE_SECONDS = 0.25


class CpuCheck(Check):
    name = "cpu"
    label = "CPU"
    waits = True

    def __init__(self, sample=None):
        self.sample = sample

    def run(self, settings, context: Context) -> CheckResult:
        percent = self.sample() if self.sample else _cpu_percent()
        status = rising(percent, settings.cpu_warning, settings.cpu_critical)
        return self.result(
            status,
            f"{percent:.1f}%",
            f"CPU {percent:.1f}% (warning at {settings.cpu_warning:g}%, critical at {settings.cpu_critical:g}%)",
            {"cpu_percent": round(percent, 1)},
        )


def _cpu_percent() -> float:
    import psutil

    return float(psutil.cpu_percent(interval=CPU_SAMPLE_SECONDS))


class MemoryCheck(Check):
    name = "memory"
    label = "Memory"

    def __init__(self, sample=None):
        self.sample = sample

    def run(self, settings, context: Context) -> CheckResult:
        if self.sample:
            percent, available = self.sample(), None
        else:
            import psutil

            memory = psutil.virtual_memory()
            percent, available = float(memory.percent), memory.available
        status = rising(percent, settings.memory_warning, settings.memory_critical)
        extra = f", {available / 2**30:.1f} GiB available" if available is not None else ""
        metrics = {"memory_percent": round(percent, 1)}
        if available is not None:
            metrics["memory_available_bytes"] = float(available)
        return self.result(
            status,
            f"{percent:.1f}%",
            f"memory {percent:.1f}% used{extra} (warning at {settings.memory_warning:g}%, "
            f"critical at {settings.memory_critical:g}%)",
            metrics,
        )


class DiskCheck(Check):
    name = "disk"
    label = "Disk"

    def __init__(self, sample=None):
        self.sample = sample

    def run(self, settings, context: Context) -> CheckResult:
        where = _existing(settings.data_dir)
        if self.sample:
            percent, free = self.sample(), None
        else:
            import psutil

            usage = psutil.disk_usage(str(where))
            percent, free = float(usage.percent), usage.free
        status = rising(percent, settings.disk_warning, settings.disk_critical)
        extra = f", {free / 2**30:.1f} GiB free" if free is not None else ""
        metrics = {"disk_percent": round(percent, 1)}
        if free is not None:
            metrics["disk_free_bytes"] = float(free)
        return self.result(
            status,
            f"{percent:.1f}%",
            f"disk of {where} {percent:.1f}% used{extra} (warning at {settings.disk_warning:g}%, "
            f"critical at {settings.disk_critical:g}%)",
            metrics,
            hint="" if status == OK else "free space: python scheduler.py --run-now cleanup",
        )


def _existing(path: Path) -> Path:
    """The data directory, or its nearest existing parent before the first run has created it."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class LoadCheck(Check):
    name = "load"
    label = "Load"

    def __init__(self, sample=None):
        self.sample = sample

    def run(self, settings, context: Context) -> CheckResult:
        cores = os.cpu_count() or 1
        if self.sample:
            load1, load5, load15 = self.sample()
        elif hasattr(os, "getloadavg"):
            load1, load5, load15 = os.getloadavg()
        else:
            return self.result("ok", "n/a", "load average is not available on this system")
        per_core = load5 / cores
        status = rising(per_core, settings.load_warning, settings.load_critical)
        return self.result(
            status,
            f"{load1:.2f} {load5:.2f} {load15:.2f}",
            f"5-minute load {load5:.2f} on {cores} cores = {per_core:.2f} per core "
            f"(warning at {settings.load_warning:g}, critical at {settings.load_critical:g})",
            {"load_1": round(load1, 2), "load_5": round(load5, 2), "load_15": round(load15, 2), "cpu_cores": cores},
        )
