"""Job functions for the alert tests; FAIL_FLAG names a file whose presence makes `flaky` fail."""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

PLANTED = "ghp_" + "Pl4nt3dT0k3nInTh3L0gs0123"


def flaky(settings):
    """Fail while the flag file exists, after logging a line that holds a token and a configured secret."""
    logger.info("flaky working with %s and %s", PLANTED, os.environ.get("OPENAI_API_KEY", "-"))
    if Path(os.environ["FAIL_FLAG"]).exists():
        raise RuntimeError(f"remote refused {PLANTED}")
    return {"exit_code": 0}


def chatty_failure(settings):
    """Log far more than a fail ping may carry, then fail."""
    for n in range(400):
        logger.info("chatty line %03d %s", n, "x" * 80)
    return {"exit_code": 3}


def quick(settings):
    logger.info("quick ran")
    return {"exit_code": 0}
