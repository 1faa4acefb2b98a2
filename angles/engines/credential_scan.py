"""Finds credential-looking content in records: reported by exports and backups, never rewritten."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from angles.logs import MIN_SECRET_LENGTH, TOKEN_PATTERNS

# Every well-known token shape starts with one of these; most lines contain none, so the regex rarely runs.
TOKEN_PREFIXES = ("sk-", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "secret_", "ntn_", "sb_", "eyJ", "://")
# Which token-shape scan vouched for a file: bytes it passed need no second pass of the same scan.
SHAPES_FINGERPRINT = hashlib.sha256(repr((TOKEN_PREFIXES, TOKEN_PATTERNS.pattern)).encode("utf-8")).hexdigest()
# How many record ids one warning line names before it says "and N more".
NAMED_IN_WARNING = 20


class CredentialScanner:
    """Configured secrets (of MIN_SECRET_LENGTH or more) and token shapes in records: keys, values, nested or not."""

    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        # Encoded JSON lines hold a secret with quotes or backslashes in its escaped form.
        escaped = {json.dumps(s, ensure_ascii=False)[1:-1] for s in self.secrets}
        self._line_secrets = tuple(sorted({*self.secrets, *escaped}, key=len, reverse=True))
        self._secret_needles = tuple(n.encode("utf-8") for n in self._line_secrets)
        self._shape_needles = tuple(p.encode("utf-8") for p in TOKEN_PREFIXES)

    def may_match(self, data: bytes, *, shapes_checked: bool = False, absent: bytes = b"") -> bool:
        """A cheap byte-level test on a block of encoded lines: False means no line in it needs a closer look.

        `shapes_checked` says these exact bytes already passed this scan's token shapes (they equal a file it
        wrote), so only the configured secrets, which may have changed since, are looked for. `absent` names
        characters the caller knows the block's values lack; token prefixes holding one are skipped.
        """
        if any(map(data.__contains__, self._secret_needles)):
            return True
        if shapes_checked:
            return False
        needles = (n for n in self._shape_needles if not any(c in n for c in absent)) if absent else self._shape_needles
        return any(map(data.__contains__, needles))

    def line_may_match(self, line: str) -> bool:
        """Whether one encoded line holds a configured secret or a token prefix (then fields() decides)."""
        return any(map(line.__contains__, self._line_secrets)) or any(map(line.__contains__, TOKEN_PREFIXES))

    def matches(self, text: str) -> bool:
        return any(s in text for s in self.secrets) or TOKEN_PATTERNS.search(text) is not None

    def fields(self, record: dict) -> list[str]:
        """The columns of a record whose text, object keys included, looks like a credential."""
        return [name for name, value in record.items() if self._holds(value)]

    def _holds(self, value) -> bool:
        if isinstance(value, str):
            return self.matches(value)
        if isinstance(value, dict):
            return any(self.matches(str(k)) or self._holds(v) for k, v in value.items())
        if isinstance(value, list):
            return any(self._holds(v) for v in value)
        return False


def describe(found: list[dict]) -> str:
    """One line naming the records found, table by table, shortened after NAMED_IN_WARNING ids."""
    parts = []
    for record in found[:NAMED_IN_WARNING]:
        fields = ", ".join(record.get("fields") or [])
        parts.append(f"{record['table']} {record['id']} ({fields})" if fields else f"{record['table']} {record['id']}")
    more = len(found) - NAMED_IN_WARNING
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
