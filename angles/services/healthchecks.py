"""The healthchecks.io ping protocol (hc-ping.com, self-hosted Healthchecks and compatible services)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import requests

from angles.errors import ExternalServiceError

# Connect and read timeouts: two pings a run (start and end) stay within 10 s of delay even when both hang.
TIMEOUT = (2.0, 3.0)
USER_AGENT = "angles-ai-universe"
SIGNALS = ("start", "success", "fail", "log")


class PingError(ExternalServiceError):
    """A ping did not reach the service; the message is safe to log (no URL, no key)."""


def ping_url(url: str, signal: str, *, run_id: str | None = None) -> str:
    """The URL for one signal: `<url>/start`, `<url>`, `<url>/fail` or `<url>/log`, with ?create=1 (and rid)."""
    if signal not in SIGNALS:
        raise ValueError(f"unknown healthchecks signal {signal!r}")
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if signal != "success":
        path = f"{path}/{signal}"
    # create=1 auto-provisions a missing slug check; services ignore it on UUID URLs.
    query = [q for q in parts.query.split("&") if q and not q.startswith(("create=", "rid="))]
    query.append("create=1")
    if run_id:
        query.append(f"rid={run_id}")
    return urlunsplit((parts.scheme, parts.netloc, path, "&".join(query), ""))


def job_url(base: str, job: str) -> str:
    """The slug URL of one job under a ping-key base: `https://hc-ping.com/<ping-key>/<job>`."""
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, f"{parts.path.rstrip('/')}/{job}", parts.query, ""))


def send(url: str, signal: str, body: str = "", *, run_id: str | None = None, timeout=TIMEOUT) -> int:
    """Send one signal; returns the HTTP status, raises PingError when the service did not take it."""
    target = ping_url(url, signal, run_id=run_id)
    try:
        answer = requests.post(
            target,
            data=body.encode("utf-8"),
            headers={"User-Agent": USER_AGENT, "Content-Type": "text/plain; charset=utf-8"},
            timeout=timeout,
        )
    except requests.Timeout:
        raise PingError("timed out") from None
    except requests.ConnectionError:
        raise PingError("connection failed") from None
    except requests.RequestException as exc:
        raise PingError(f"request failed ({type(exc).__name__})") from None
    if answer.status_code >= 300:
        raise PingError(f"HTTP {answer.status_code}")
    return answer.status_code
