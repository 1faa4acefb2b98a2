"""Bearer tokens for the assistants' HTTP door: made once, kept only as a hash, limited in writes per minute."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from datetime import UTC, datetime

from angles.config import AGENT_NAME
from angles.engines.decision_model import to_iso
from angles.errors import AnglesError, ValidationError

SCOPES = ("read", "write")
# A recognisable prefix lets secret scanners (and people) tell what leaked.
PREFIX = "angles_mcp_"


class WriteLimitError(AnglesError):
    """A token used up its writes for this minute."""

    def __init__(self, name: str, limit: int, retry_after: int):
        super().__init__(f"token {name!r} made its {limit} writes this minute; retry in {retry_after} seconds")
        self.retry_after = retry_after


def token_hash(token: str) -> str:
    """What is stored: a token holds 256 random bits, so a plain SHA-256 cannot be reversed by guessing."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not AGENT_NAME.fullmatch(name):
        raise ValidationError(
            f"token name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def create(storage, name: str, scope: str) -> dict:
    """A new token; its secret is in the answer and nowhere else."""
    name = check_name(name)
    if scope not in SCOPES:
        raise ValidationError(f"scope {scope!r} is unknown (read or write)")
    # Hex: no character sequence the log redactor looks for, so the one printing of it is never mangled.
    token = PREFIX + secrets.token_hex(32)
    if not storage.add_token(name, scope, token_hash(token)):
        raise ValidationError(f"a token named {name!r} already exists; revoke it first or choose another name")
    return {"name": name, "scope": scope, "token": token}


def authenticate(storage, token: str) -> dict | None:
    """The unrevoked token this secret belongs to, or None."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    found = storage.find_token(token_hash(token))
    if found is None or found["revoked_at"] is not None:
        return None
    return found


class TokenCache:
    """authenticate() through a short memory: a known secret is looked up again only after `seconds`.

    The bound is also how long a revoked token may still pass on a server that saw it just before; 0 looks
    every request up. Only tokens found valid are kept, by hash, so an unknown secret is always looked up.
    """

    def __init__(self, storage, seconds: float):
        self.storage = storage
        self.seconds = seconds
        self._found: dict[str, tuple[float, dict]] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> dict | None:
        """The token this secret belongs to if it was verified less than `seconds` ago, else None."""
        if self.seconds <= 0 or not token.startswith(PREFIX) or len(token) > 200:
            return None
        with self._lock:
            entry = self._found.get(token_hash(token))
        if entry is None or time.monotonic() - entry[0] >= self.seconds:
            return None
        return entry[1]

    def authenticate(self, token: str) -> dict | None:
        """authenticate() from the database, remembered for `seconds` when the token is valid."""
        found = self.cached(token)
        if found is not None:
            return found
        found = authenticate(self.storage, token)
        if self.seconds > 0:
            key = token_hash(token)
            with self._lock:
                if found is None:
                    self._found.pop(key, None)
                else:
                    self._found[key] = (time.monotonic(), found)
        return found


def take_write(storage, name: str, limit: int, now: datetime | None = None) -> None:
    """Count one write of this token in the current minute; raise WriteLimitError past the limit."""
    now = now or datetime.now(UTC)
    window = now.replace(second=0, microsecond=0)
    if storage.count_token_write(name, to_iso(window)) > limit:
        raise WriteLimitError(name, limit, max(1, 60 - now.second))
