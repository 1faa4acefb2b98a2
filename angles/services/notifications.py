"""Notifications through Apprise: one URL per target (ntfy, Slack, Discord, Telegram, e-mail, json:// webhooks)."""

from __future__ import annotations

import contextvars
import logging

from angles.errors import ExternalServiceError

LEVEL_TYPES = {"ok": "success", "info": "info", "warning": "warning", "critical": "failure"}
MAX_REASON = 200

# Apprise's warnings for the send in progress; Apprise runs services in worker threads with a copy of this context.
_reasons: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("apprise_reasons", default=None)


class NotifyError(ExternalServiceError):
    """A notification was not delivered; the message is safe to log (no URL, no token)."""


class _ReasonCollector(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        found = _reasons.get()
        if found is not None:
            found.append(record.getMessage())


def _quiet_apprise() -> None:
    """Apprise's warnings become the reason of our one warning per failing target, not a line per attempt."""
    apprise_logger = logging.getLogger("apprise")
    if not any(isinstance(h, _ReasonCollector) for h in apprise_logger.handlers):
        collector = _ReasonCollector(logging.WARNING)
        apprise_logger.addHandler(collector)
        apprise_logger.propagate = False


def is_valid(url: str) -> bool:
    """True when Apprise knows the URL's scheme and can parse it."""
    import apprise

    _quiet_apprise()
    return bool(apprise.Apprise().add(url))


def send(url: str, title: str, body: str, level: str = "info") -> None:
    """Deliver one notification to one Apprise URL; raises NotifyError when Apprise reports a failure.

    Apprise bounds each HTTP request with its own 4 s connect and read timeouts (the URL's cto= and rto=
    change them); the caller caps the whole call, since some services make several requests.
    """
    import apprise

    _quiet_apprise()
    sender = apprise.Apprise()
    if not sender.add(url):
        raise NotifyError("not a valid Apprise URL")
    found: list[str] = []
    token = _reasons.set(found)
    try:
        delivered = sender.notify(body=body, title=title, notify_type=LEVEL_TYPES.get(level, "info"))
    except Exception as exc:
        raise NotifyError(f"Apprise raised {type(exc).__name__}") from None
    finally:
        _reasons.reset(token)
    if not delivered:
        reason = found[0] if found else "the service did not accept it"
        raise NotifyError(reason[:MAX_REASON])
