"""Shared pieces of the generated (Hypothesis stateful) tests: example budget, a simulated clock, a crash."""

from __future__ import annotations

import itertools
import os
import threading
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, settings

# The default run stays small enough for CI on two cores; ANGLES_STATEFUL_EXAMPLES raises it for a long run.
EXAMPLES = int(os.environ.get("ANGLES_STATEFUL_EXAMPLES") or 0)
STEPS = int(os.environ.get("ANGLES_STATEFUL_STEPS") or 0)


def budget(examples: int, steps: int) -> settings:
    """Hypothesis settings for one machine: its default budget unless the environment raises it."""
    return settings(
        max_examples=EXAMPLES or examples,
        stateful_step_count=STEPS or steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
        # Failures are written down as ordinary regression tests; no database of examples next to the code.
        database=None,
        print_blob=True,
    )


class SimulatedCrash(BaseException):  # noqa: N818 - it stands for a killed process, not an error to handle
    """The process dies here: no except clause of the code under test catches it, no recording runs."""


# Monday 2 March 2026, 09:00:00 UTC: a minute boundary, so minute rounding is deterministic.
BASE = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


class SimClock:
    """True time of the simulated world. Notion reads it as it is, the vault with its own offset.

    Every read moves time on by one millisecond, so two reads never see the same instant, and the
    whole run is deterministic (no wall clock involved), which Hypothesis needs to shrink a failure.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.true = BASE
        self.mono = 1000.0
        self.vault_offset = 0.0

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.true += timedelta(seconds=seconds)
            self.mono += seconds

    def _read(self) -> datetime:
        with self._lock:
            self.true += timedelta(milliseconds=1)
            self.mono += 0.001
            return self.true

    def notion_now(self) -> datetime:
        return self._read()

    def vault_now(self) -> datetime:
        return self._read() + timedelta(seconds=self.vault_offset)

    def monotonic(self) -> float:
        with self._lock:
            return self.mono

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def vault_datetime(self) -> type:
        """A datetime class whose now() is the vault's clock (patched into decision_model, home of utc_now)."""
        clock = self

        class AnyDatetime(type):
            # Code checks isinstance(value, datetime) against the patched name: every real datetime still is one.
            def __instancecheck__(cls, obj) -> bool:
                return isinstance(obj, datetime)

        class VaultDatetime(datetime, metaclass=AnyDatetime):
            @classmethod
            def now(cls, tz=None):
                moment = clock.vault_now()
                return moment.astimezone(tz) if tz else moment.replace(tzinfo=None)

        return VaultDatetime


def counting_uuid4():
    """A uuid4 stand-in counting up from 1: ids (and so every order by id) are the same in each replay."""
    numbers = itertools.count(1)
    lock = threading.Lock()

    def uuid4() -> uuid.UUID:
        with lock:
            return uuid.UUID(int=next(numbers), version=4)

    return uuid4
