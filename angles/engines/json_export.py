"""The JSON export of every decision, its history and links: export/decisions_<UTC timestamp>.json, atomically."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from angles.engines import credential_scan
from angles.engines.credential_scan import CredentialScanner
from angles.engines.decision_model import utc_now
from angles.errors import AnglesError
from angles.logs import redactor
from angles.progress import Advance, Start

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


class _Scan:
    """Notes the decisions that look like they hold a credential; the export itself holds them as stored."""

    def __init__(self, scanner: CredentialScanner):
        self.scanner = scanner
        self.found: list[dict] = []

    def __call__(self, block: bytes, absent: bytes = b"") -> None:
        if not self.scanner.may_match(block, absent=absent):
            return
        for line in block.split(b"\n"):
            text = line.decode("utf-8")
            if text and self.scanner.line_may_match(text):
                record = json.loads(text)
                fields = self.scanner.fields(record)
                if fields:
                    self.found.append({"table": "decision_vault", "id": record["id"], "fields": fields})


def _write(storage, handle, expected: int, scan: _Scan, advance: Advance | None = None) -> int:
    """Stream the header and the rows; returns the number of rows written."""
    header = {"exported_at": utc_now(), "count": expected, "schema_version": storage.schema_version()}
    handle.write(b"{\n")
    for key, value in header.items():
        handle.write(f"  {json.dumps(key)}: {json.dumps(value)},\n".encode())
    handle.write(b'  "decisions": [')
    written = 0
    # One write in flight on a thread (a large write releases the GIL) while the next batch is prepared.
    with ThreadPoolExecutor(max_workers=1) as writer:
        in_flight = None
        for lines in storage.dump_decisions(scan=scan):
            data = (b"\n    " if written == 0 else b",\n    ") + b",\n    ".join(lines)
            written += len(lines)
            if advance is not None:
                advance(len(lines))
            if in_flight is not None:
                in_flight.result()
            in_flight = writer.submit(handle.write, data)
        if in_flight is not None:
            in_flight.result()
    handle.write(b"\n  ]" if written else b"]")
    # History and links are the user's data too: exported exactly as stored.
    for key, rows in (("history", storage.iter_history()), ("links", storage.iter_links())):
        handle.write(f',\n  "{key}": ['.encode())
        handle.write(b"\n  ]" if _write_rows(handle, rows) else b"]")
    handle.write(b"\n}\n")
    return written


def _write_rows(handle, rows, batch: int = 1000) -> int:
    """Every row as one JSON line of the array being written; returns how many."""
    count = 0
    lines: list[bytes] = []

    def flush() -> None:
        handle.write((b"\n    " if count == len(lines) else b",\n    ") + b",\n    ".join(lines))
        lines.clear()

    for row in rows:
        lines.append(json.dumps(row, ensure_ascii=False, default=str).encode())
        count += 1
        if len(lines) >= batch:
            flush()
    if lines:
        flush()
    return count


def write_export(storage, settings, *, progress: Start | None = None) -> dict:
    """Write all decisions exactly as stored, sorted by id, with a header (time, count, schema version), then
    their history and links.

    Returns the file's path, the count and the decisions that look like they hold a credential (also named in
    one warning).
    """
    settings.export_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(ATTEMPTS):
        expected = storage.count_decisions()
        scan = _Scan(CredentialScanner((*settings.secrets, *redactor().secrets)))
        fd, tmp = tempfile.mkstemp(prefix=".decisions_", suffix=".json.tmp", dir=settings.export_dir)
        try:
            with os.fdopen(fd, "wb") as handle:
                advance = progress("export", expected) if progress else None
                written = _write(storage, handle, expected, scan, advance)
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
        if scan.found:
            logger.warning(
                "%d decision(s) look like they hold a credential; exported exactly as stored (rotate the credential, "
                "then edit the decision): %s",
                len(scan.found),
                credential_scan.describe(scan.found),
            )
        logger.info("exported %d decisions to %s", written, path)
        return {"path": str(path), "count": written, "credential_like": scan.found}
    raise AnglesError("decisions kept changing during the export; try again")
