"""A progress bar where a person waits (rows or bytes, rate, time left) on stderr; nothing under nohup, cron or --json.

An action takes `progress: bool`; progress_bar() then yields start(phase, total) -> advance(n=1), or None.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

Advance = Callable[..., None]
Start = Callable[[str, "int | None"], Advance]

# Counting rows one by one into the bar costs more than the rows; it is told in steps of this many.
STEP = 1000


def watching(as_json: bool = False) -> bool:
    """A person watches: stderr is a terminal and the output is not JSON for a program."""
    return not as_json and sys.stderr.isatty()


@contextmanager
def progress_bar(enabled: bool, unit: str = "rows") -> Iterator[Start | None]:
    """One bar per phase while the block runs, gone when it ends; unit "rows" or "bytes"."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:,.0f} {unit}/s" if task.speed else f"- {unit}/s")

    counts = (DownloadColumn(), TransferSpeedColumn()) if unit == "bytes" else (MofNCompleteColumn(), Rate())
    columns = (TextColumn("{task.description}"), BarColumn(), *counts, TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:

        def start(phase: str, total: int | None) -> Advance:
            if total == 0:
                return lambda n=1: None
            task = bar.add_task(phase, total=total)
            return lambda n=1: bar.advance(task, n)

        yield start


def counted(items: Iterable, advance: Advance | None) -> Iterable:
    """The items unchanged; the bar (if any) is told how many went by, every STEP of them and at the end."""
    if advance is None:
        return items
    return _counting(items, advance)


def _counting(items: Iterable, advance: Advance) -> Iterator:
    pending = 0
    for item in items:
        yield item
        pending += 1
        if pending == STEP:
            advance(pending)
            pending = 0
    if pending:
        advance(pending)
