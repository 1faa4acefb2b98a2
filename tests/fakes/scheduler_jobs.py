"""Job functions for scheduler tests; they read their parameters from the daemon's environment."""

from __future__ import annotations

import logging
import os
import time

logger = logging.getLogger(__name__)


def explode(settings):
    """Always raise, with a token-shaped value in the message that the log must redact."""
    raise RuntimeError("remote said no to ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2")


_calls = []


def explode_two_ways(settings):
    """Raise one of two different errors, in turn."""
    _calls.append(1)
    if len(_calls) % 2:
        raise ValueError("odd run")
    raise KeyError("even run")


def quick(settings):
    logger.info("quick ran")
    return {"exit_code": 0}


def slow(settings):
    time.sleep(float(os.environ.get("SLOW_JOB_SECONDS", "3")))
    return {"exit_code": 0}


def mark(settings):
    """Append this process's pid and the time to a shared file, then take a little while."""
    with open(os.environ["MARK_FILE"], "a", encoding="utf-8") as out:
        out.write(f"{os.getpid()} {time.time():.6f}\n")
    time.sleep(float(os.environ.get("MARK_SECONDS", "0.2")))
    return {"exit_code": 0}


def chatter(settings):
    """Log numbered lines steadily, so a rotation in the middle can be checked for lost lines."""
    count = int(os.environ.get("CHATTER_LINES", "2000"))
    for n in range(count):
        logger.info("chatter line %06d", n)
        time.sleep(0.001)
    logger.info("chatter done")
    return {"exit_code": 0}


def auth_refused(settings):
    """Report a backup-remote authentication failure the way an action does: an exit code in the result."""
    return {"exit_code": 4}


def raise_auth_error(settings):
    from angles.errors import BackupAuthError

    raise BackupAuthError("backup remote rejected the token")
