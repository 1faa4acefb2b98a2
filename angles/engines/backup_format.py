"""The backup snapshot format: one JSON Lines file per table, sorted by id, and a checksummed manifest."""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

from angles.engines.credential_scan import CredentialScanner
from angles.engines.decision_model import (
    ACTIVITY_COLUMNS,
    BOOL_COLUMNS,
    COLUMNS,
    HISTORY_COLUMNS,
    JSON_COLUMNS,
    LINK_COLUMNS,
)
from angles.errors import AnglesError
from angles.files import atomic_write

FORMAT = "angles-backup/1"
MANIFEST = "manifest.json"
CHUNK_ROWS = 500


class CorruptBackupError(AnglesError):
    """A backup file is missing, altered or unreadable; nothing was written."""


@dataclass(frozen=True)
class Table:
    name: str
    file: str
    columns: tuple[str, ...]
    nested: tuple[str, ...] = ()  # columns that may hold lists or objects


DECISIONS = Table("decision_vault", "decision_vault.jsonl", COLUMNS, JSON_COLUMNS)
ACTIVITY = Table("agent_activity", "agent_activity.jsonl", ACTIVITY_COLUMNS)
HISTORY = Table("decision_history", "decision_history.jsonl", HISTORY_COLUMNS, ("changed", "previous"))
LINKS = Table("decision_links", "decision_links.jsonl", LINK_COLUMNS)
TABLES = (DECISIONS, ACTIVITY, HISTORY, LINKS)


@dataclass
class Snapshot:
    """What one export wrote: per-file checksums and counts, and the records that look like they hold a credential."""

    files: dict[str, dict] = field(default_factory=dict)
    credential_like: list[dict] = field(default_factory=list)
    schema_version: int | None = None

    def rows(self, table: Table) -> int:
        return self.files.get(table.file, {}).get("rows", 0)

    def manifest(self, created_at: str, tool_version: str, database: str, encryption: dict | None = None) -> dict:
        manifest = {
            "format": FORMAT,
            "created_at": created_at,
            "tool": "angles",
            "tool_version": tool_version,
            "database": database,
            "schema_version": self.schema_version,
            "files": self.files,
            "credential_like": self.credential_like,
        }
        if encryption:
            manifest["encryption"] = encryption
        return manifest


def _sorted_keys(value):
    if isinstance(value, dict):
        return {k: _sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(v) for v in value]
    return value


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


_CONTAINERS = repeat((dict, list))


def encode_text(record: dict, columns: tuple[str, ...], nested: tuple[str, ...] | None = None) -> str:
    """One record as one canonical line: the table's column order, nested keys sorted, no newline inside.

    `nested` names the columns that may hold lists or objects (all columns are checked when it is None).
    """
    # Rows from storage already hold exactly these keys in this order: no copy unless a value needs sorting.
    exact = len(record) == len(columns) and tuple(record) == columns
    ordered = record if exact else {c: record.get(c) for c in columns}
    for column in columns if nested is None else nested:
        value = ordered[column]
        kind = type(value)
        if kind is dict or (kind is list and any(map(isinstance, value, _CONTAINERS))):
            if ordered is record:
                ordered = dict(record)
            ordered[column] = _sorted_keys(value)
    return _dumps(ordered) + "\n"


def encode(record: dict, columns: tuple[str, ...], nested: tuple[str, ...] | None = None) -> bytes:
    return encode_text(record, columns, nested).encode("utf-8")


def encode_row(table: Table, record: dict) -> bytes:
    """A record of `table` exactly as its backup file holds it."""
    return encode_text(record, table.columns, table.nested).encode("utf-8")


def line_key(line: bytes):
    """The id of an encoded line, read from its first field without parsing the rest."""
    end = line.find(b",", 6)
    if line.startswith(b'{"id":') and end > 0:
        value = line[6:end]
        # A plain quoted id (every UUID) needs no JSON parser; escapes and numbers still get one.
        if value[:1] == b'"' and value[-1:] == b'"' and b"\\" not in value:
            return value[1:-1].decode("utf-8")
        return json.loads(value)
    return json.loads(line)["id"]


# A JSON string whose escapes are \" \\ \/ \b \f \n \r \t only: each means the same in PostgreSQL's COPY text
# format (a backslash before any other character is that character), so its bytes between the quotes are its
# COPY cell. A \u escape (the only way a NUL or a lone surrogate gets into a line) is not plain. The pattern
# is strict JSON: a line it matches is a valid record once its bytes are valid UTF-8.
_STRING = rb'"([^"\\\x00-\x1f]*+(?:\\["\\/bfnrt][^"\\\x00-\x1f]*+)*+)"'
_PLAIN_VALUES = {
    **{column: rb"(?:(true|false)|null)" for column in BOOL_COLUMNS},
    # Text tags with no escape: the JSON text is the cell.
    "tags": rb'(\[(?:"[^"\\\x00-\x1f]*"(?:,"[^"\\\x00-\x1f]*")*)?\])',
    # An analysis (numbers, nesting) needs the JSON parser.
    "ai_analysis": rb"(?:null|(?!)())",
}
_PLAIN_LINE = re.compile(
    b"".join(
        (b"{" if i == 0 else b",")
        + json.dumps(column).encode()
        + b":"
        + _PLAIN_VALUES.get(column, rb"(?:null|" + _STRING + b")")
        for i, column in enumerate(COLUMNS)
    )
    + rb"}\n?"
)
COPY_NULL = b"\\N"


def plain_fields(line: bytes) -> tuple[bytes, ...] | None:
    """A decision's backup line as PostgreSQL COPY text cells in COLUMNS order, without parsing the JSON.

    Only a plain line qualifies: every column in order, no analysis, tags without escapes, no \\u escape
    anywhere (so nothing a backend refuses, see decision_model.unstorable). None for any other line, which
    the caller parses. The line's UTF-8 is not checked here.
    """
    match = _PLAIN_LINE.fullmatch(line)
    return match.groups(COPY_NULL) if match else None


def write_table(
    directory: Path,
    table: Table,
    records: Iterable[dict],
    scanner: CredentialScanner,
    found: list[dict],
    previous_sha256: str | None = None,
    vouched: set | None = None,
) -> dict:
    """Stream records into <file>.tmp, then rename over the file; returns its sha256, row count and size.

    Records are written exactly as given; those that look like they hold a credential are appended to `found`.
    When the result equals `previous_sha256` and the existing file holds exactly these bytes, that file is
    kept untouched (git need not re-read it); a file that differs from its manifest is replaced.
    `vouched` (the ids that scan reported) says the existing file passed this code's token-shape scan: chunks
    equal to its bytes at the same offset are only searched for configured secrets and those ids.
    """
    target = directory / table.file
    tmp = target.with_name(target.name + ".tmp")
    digest = hashlib.sha256()
    rows = 0
    size = 0
    last = None
    in_order = True
    pending: list[tuple[dict, str]] = []

    def flush() -> None:
        nonlocal size
        data = "".join(text for _, text in pending).encode("utf-8")
        same = old is not None and old.read(len(data)) == data
        # Secrets never span a newline, so a clean chunk means clean lines; only a hit is checked line by line.
        if scanner.may_match(data, shapes_checked=same):
            for record, text in pending:
                if scanner.line_may_match(text):
                    _report(table, record, scanner, found)
        elif same and vouched:
            for record, _ in pending:
                if record.get("id") in vouched:
                    _report(table, record, scanner, found)
        out.write(data)
        digest.update(data)
        size += len(data)
        pending.clear()

    reuse = vouched is not None and target.is_file()
    with _discarded_on_failure(tmp), open(tmp, "wb") as out, open(target, "rb") if reuse else nullcontext() as old:  # noqa: SIM115
        for record in records:
            key = record.get("id")
            if last is not None and key <= last:
                in_order = False
            last = key
            pending.append((record, encode_text(record, table.columns, table.nested)))
            rows += 1
            if len(pending) >= CHUNK_ROWS:
                flush()
        flush()
        if not in_order:
            out.close()
            _sort_file(tmp)
            digest = hashlib.sha256(tmp.read_bytes())
        result = {"table": table.name, "sha256": digest.hexdigest(), "rows": rows, "bytes": size}
        if not out.closed:
            out.flush()
        if result["sha256"] == previous_sha256 and target.is_file() and filecmp.cmp(tmp, target, shallow=False):
            tmp.unlink()
            return result
        if not out.closed:
            os.fsync(out.fileno())
    os.replace(tmp, target)
    return result


@contextmanager
def _discarded_on_failure(tmp: Path) -> Iterator[None]:
    """Remove a half-written temporary file when writing it fails: on a full disk it holds the space."""
    try:
        yield
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise AnglesError(f"cannot write the backup file {tmp.name}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _report(table: Table, record: dict, scanner: CredentialScanner, found: list[dict]) -> None:
    fields = scanner.fields(record)
    if fields:
        found.append({"table": table.name, "id": record.get("id"), "fields": fields})


def _sort_file(path: Path) -> None:
    # Only reached when a backend streams out of id order; the layout must not depend on it.
    lines = path.read_bytes().splitlines(keepends=True)
    lines.sort(key=line_key)
    path.write_bytes(b"".join(lines))


def write_manifest(directory: Path, manifest: dict) -> None:
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write(directory / MANIFEST, text.encode("utf-8"))


def same_data(snapshot: Snapshot, manifest: dict | None, tables: tuple[Table, ...] = TABLES) -> bool:
    """Whether the given tables' files are byte-identical to what a manifest records."""
    if not manifest:
        return False
    old = manifest.get("files", {})
    return all(snapshot.files.get(t.file, {}).get("sha256") == old.get(t.file, {}).get("sha256") for t in tables)


def iter_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Split a byte stream on newlines only (JSON text may hold U+2028, which str.splitlines would split on)."""
    rest = b""
    for chunk in chunks:
        rest += chunk
        *lines, rest = rest.split(b"\n")
        for line in lines:
            yield line + b"\n"
    if rest:
        yield rest


def read_chunks(stream, size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk


def _hashed(chunks: Iterable[bytes], digest) -> Iterator[bytes]:
    # One update per chunk instead of per line: a million lines cost a million calls otherwise.
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def diff_counts(old: Iterable[bytes], new: Iterable[bytes]) -> tuple[int, int, int]:
    """Added, changed and removed records between two id-sorted files, by a merge join."""
    added = changed = removed = 0
    old_it, new_it = iter(old), iter(new)
    a, b = next(old_it, None), next(new_it, None)
    while a is not None or b is not None:
        if b is None:
            removed += 1
            a = next(old_it, None)
        elif a is None:
            added += 1
            b = next(new_it, None)
        else:
            ka, kb = line_key(a), line_key(b)
            if ka == kb:
                changed += a != b
                a, b = next(old_it, None), next(new_it, None)
            elif ka < kb:
                removed += 1
                a = next(old_it, None)
            else:
                added += 1
                b = next(new_it, None)
    return added, changed, removed


def read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if not path.is_file():
        raise CorruptBackupError(f"backup is incomplete: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptBackupError(f"backup is corrupt: {MANIFEST} is not valid JSON ({exc})") from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or not isinstance(manifest.get("files"), dict)
    ):
        raise CorruptBackupError(f"backup is corrupt: {MANIFEST} is not an {FORMAT} manifest")
    return manifest


def verify(
    directory: Path,
    *,
    on_record: Callable[[Table, dict], None] | None = None,
    lines_checked_later: tuple[str, ...] = (),
) -> dict:
    """Check every file against the manifest (presence, SHA-256, row count, JSON per line); return the manifest.

    The files named in `lines_checked_later` are checked for presence, SHA-256 and row count only: their
    caller parses every line itself before it commits anything (a restore into an empty database), so the
    lines are read once instead of twice.
    """
    manifest = read_manifest(directory)
    known = {t.file: t for t in TABLES}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="angles-checksum") as hasher:
        for name, meta in sorted(manifest["files"].items()):
            path = directory / name
            if "/" in name or name.startswith(".") or not path.is_file():
                raise CorruptBackupError(f"backup is incomplete: {name} listed in {MANIFEST} is missing")
            # The checksum on a helper thread (hashing releases the GIL) while this one parses the lines.
            checksum = hasher.submit(_digest_and_rows, path)
            bad = None if name in lines_checked_later else _first_bad_line(path, known.get(name), on_record)
            sha256, rows = checksum.result()
            # A checksum mismatch is the more useful message when both are true (a flipped byte).
            if sha256 != meta.get("sha256"):
                raise CorruptBackupError(
                    f"backup is corrupt: {name} does not match its SHA-256 in {MANIFEST} "
                    f"(expected {str(meta.get('sha256'))[:12]}, found {sha256[:12]})"
                )
            if rows != meta.get("rows"):
                raise CorruptBackupError(
                    f"backup is corrupt: {name} has {rows} rows, {MANIFEST} says {meta.get('rows')}"
                )
            if bad is not None:
                raise bad_line(name, bad)
    if DECISIONS.file not in manifest["files"]:
        raise CorruptBackupError(f"backup is incomplete: {MANIFEST} lists no {DECISIONS.file}")
    return manifest


def bad_line(name: str, number: int) -> CorruptBackupError:
    return CorruptBackupError(f"backup is corrupt: {name} line {number} is not a JSON record with an id")


def _digest_and_rows(path: Path) -> tuple[str, int]:
    """A file's SHA-256 and its number of lines (a last line without a newline counts too)."""
    digest = hashlib.sha256()
    rows = 0
    last = b"\n"
    with open(path, "rb") as handle:
        for chunk in read_chunks(handle):
            digest.update(chunk)
            rows += chunk.count(b"\n")
            last = chunk[-1:]
    return digest.hexdigest(), rows + (last != b"\n")


def _first_bad_line(path: Path, table: Table | None, on_record: Callable[[Table, dict], None] | None) -> int | None:
    """The number of the first line that is not a JSON record with an id, or None."""
    with open(path, "rb") as handle:
        for number, line in enumerate(iter_lines(read_chunks(handle)), 1):
            record = parse_line(line)
            if record is None:
                return number
            if on_record and table is not None:
                on_record(table, record)
    return None


def parse_line(line: bytes) -> dict | None:
    """One encoded line as its record, or None when it is not a JSON object with an id."""
    try:
        # Decoding first is a quarter faster than handing json bytes (it sniffs the encoding per call).
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and "id" in record else None


def iter_records(path: Path) -> Iterator[dict]:
    """The records of a verified file, in file order (CorruptBackupError for a line verify left to its reader)."""
    with open(path, "rb") as handle:
        for number, line in enumerate(iter_lines(read_chunks(handle)), 1):
            record = parse_line(line)
            if record is None:
                raise bad_line(path.name, number)
            yield record


def file_stamp(path: Path) -> list[int] | None:
    """Size, modification time and inode: any rewrite of the file (git checkout, an edit) changes one."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]
