"""The JSON export of every decision, its history and links: export/decisions_<UTC timestamp>.json, atomically."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from angles.engines.decision_model import utc_now
from angles.errors import AnglesError
from angles.logs import REDACTED, redactor

logger = logging.getLogger(__name__)

ATTEMPTS = 3


def export_path(settings, now: datetime | None = None) -> Path:
    """The next free export file name; a second export within the same second gets a suffix."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    path = settings.export_dir / f"decisions_{stamp}.json"
    n = 2
    while path.exists():
        path = settings.export_dir / f"decisions_{stamp}_{n}.json"
        n += 1
    return path


class _Scrubber:
    """Redacts the lines of a block that hold a secret, counting them; clean blocks pass after a few scans."""

    def __init__(self):
        self.redactor = redactor()
        self.redacted = 0

    def __call__(self, block: bytes, absent: bytes = b"") -> bytes:
        if not self.redactor.may_hold_secret(block, absent):
            return block
        out = []
        for line in block.splitlines(keepends=True):
            if self.redactor.may_hold_secret(line):
                text = line.decode()
                clean = self.redactor(text)
                if clean != text:
                    # A secret pasted into a decision must not reach an export (and so a backup).
                    self.redacted += 1
                    logger.warning(
                        "decision %s holds a secret-shaped text; written as %s in the export",
                        json.loads(text)["id"],
                        REDACTED,
                    )
                    line = clean.encode()
            out.append(line)
        return b"".join(out)


def _write(storage, handle, expected: int) -> tuple[int, int]:
    """Stream the header and the rows; returns (rows written, rows with redactions)."""
    header = {"exported_at": utc_now(), "count": expected, "schema_version": storage.schema_version()}
    handle.write(b"{\n")
    for key, value in header.items():
        handle.write(f"  {json.dumps(key)}: {json.dumps(value)},\n".encode())
    handle.write(b'  "decisions": [')
    written = 0
    scrub = _Scrubber()
    # One write in flight on a thread (a large write releases the GIL) while the next batch is prepared.
    with ThreadPoolExecutor(max_workers=1) as writer:
        in_flight = None
        for lines in storage.dump_decisions(scrub=scrub):
            data = (b"\n    " if written == 0 else b",\n    ") + b",\n    ".join(lines)
            written += len(lines)
            if in_flight is not None:
                in_flight.result()
            in_flight = writer.submit(handle.write, data)
        if in_flight is not None:
            in_flight.result()
    handle.write(b"\n  ]" if written else b"]")
    for key, rows in (("history", storage.iter_history()), ("links", storage.iter_links())):
        handle.write(f',\n  "{key}": ['.encode())
        handle.write(b"\n  ]" if _write_rows(handle, rows, scrub) else b"]")
    handle.write(b"\n}\n")
    return written, scrub.redacted


def _write_rows(handle, rows, scrub, batch: int = 1000) -> int:
    """Every row as one JSON line of the array being written; returns how many."""
    count = 0
    lines: list[bytes] = []

    def flush() -> None:
        block = scrub(b"\n".join(lines) + b"\n").rstrip(b"\n")
        handle.write((b"\n    " if count == len(lines) else b",\n    ") + block.replace(b"\n", b",\n    "))
        lines.clear()

    for row in rows:
        lines.append(json.dumps(row, ensure_ascii=False, default=str).encode())
        count += 1
        if len(lines) >= batch:
            flush()
    if lines:
        flush()
    return count


def write_export(storage, settings) -> Path:
    """Write all decisions sorted by id, with a header (time, count, schema version); returns the file's path."""
    settings.export_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(ATTEMPTS):
        expected = storage.count_decisions()
        fd, tmp = tempfile.mkstemp(prefix=".decisions_", suffix=".json.tmp", dir=settings.export_dir)
        try:
            with os.fdopen(fd, "wb") as handle:
                written, redacted = _write(storage, handle, expected)
                handle.flush()
                os.fsync(handle.fileno())
            if written != expected:
                # Rows were added or removed while streaming; the header count must match the body.
                logger.info("decision count moved from %d to %d during the export; writing it again", expected, written)
                os.unlink(tmp)
                continue
            path = export_path(settings)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        dir_fd = os.open(settings.export_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        logger.info("exported %d decisions to %s%s", written, path, f" ({redacted} redacted)" if redacted else "")
        return path
    raise AnglesError("decisions kept changing during the export; try again")
