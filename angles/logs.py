"""Per-component log files in logs/active with UTC timestamps and secret redaction."""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path

REDACTED = "[REDACTED]"
# A configured secret shorter than this is too likely an ordinary word ("postgres" in a development URL) to be
# cut out of every text it appears in; the URL pattern below still hides a URL's password of any length.
MIN_SECRET_LENGTH = 12

# A token starts and ends at a word boundary (no letter, digit, "_" or "-" on either side), so "disk-encryption-at-
# rest" is not an OpenAI key; a plain "sk-" key also holds a digit, as random keys do and hyphenated prose rarely does.
_START = r"(?<![\w-])"
_END = r"(?![\w-])"
TOKEN_PATTERNS = re.compile(
    "|".join(
        (
            rf"{_START}sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{{16,}}{_END}",
            rf"{_START}sk-(?=[A-Za-z_-]*[0-9])[A-Za-z0-9_-]{{16,}}{_END}",
            rf"{_START}ghp_[A-Za-z0-9]{{20,}}{_END}",
            rf"{_START}gh[ousr]_[A-Za-z0-9]{{20,}}{_END}",
            rf"{_START}github_pat_[A-Za-z0-9_]{{20,}}{_END}",
            rf"{_START}secret_[A-Za-z0-9]{{20,}}{_END}",
            rf"{_START}ntn_[A-Za-z0-9]{{20,}}{_END}",
            rf"{_START}sb_secret_[A-Za-z0-9_-]{{10,}}{_END}",
            rf"{_START}sb_publishable_[A-Za-z0-9_-]{{10,}}{_END}",
            rf"{_START}eyJ[A-Za-z0-9_-]{{8,}}\.eyJ[A-Za-z0-9_-]{{8,}}\.[A-Za-z0-9_-]{{8,}}{_END}",
            r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)",
        )
    )
)

# Every TOKEN_PATTERNS match contains one of these literal texts (a URL credential both "://" and "@"), so text
# without any skips the regex. Each is a literal scan, behind a gate: one character that text holding the literal
# must hold, found faster still.
TOKEN_HINTS = (
    ("-", "sk-"),
    ("_", "gh[pousr]_"),
    ("_", "github_pat_"),
    ("_", "secret_"),
    ("_", "ntn_"),
    ("_", "sb_publishable_"),
    ("J", "eyJ"),
    ("@", "://"),
)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Redactor:
    """Replaces configured secret values (of MIN_SECRET_LENGTH or more) and well-known token shapes with a marker."""

    def __init__(self, secrets: tuple[str, ...] | list[str] = ()):
        self.secrets = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        hints = [*TOKEN_HINTS, *(("", re.escape(s)) for s in self.secrets)]
        self._hints = tuple((gate, re.compile(pattern)) for gate, pattern in hints)

    def may_hold_secret(self, text: str) -> bool:
        """False when the text surely holds no secret: a few literal scans, cheaper than the regex."""
        return any(gate in text and hint.search(text) is not None for gate, hint in self._hints)

    def __call__(self, text: str) -> str:
        if not self.may_hold_secret(text):
            return text
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return TOKEN_PATTERNS.sub(REDACTED, text)

    def contains_secret(self, text: str) -> bool:
        if not self.may_hold_secret(text):
            return False
        return any(s in text for s in self.secrets) or bool(TOKEN_PATTERNS.search(text))


class RedactingFilter(logging.Filter):
    """Redacts the fully formatted message, exception text included."""

    def __init__(self, redactor: Redactor):
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = self.redactor(message)
        record.args = None
        if record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor(record.stack_info)
        return True


class UTCFormatter(logging.Formatter):
    converter = time.gmtime

    def formatTime(self, record, datefmt=None):  # noqa: N802 - logging's API
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"

    def format(self, record):
        # One line per record keeps the logs greppable; tracebacks are indented continuation lines.
        text = super().format(record)
        return text.replace("\n", "\n    ")


class ReopeningFileHandler(logging.FileHandler):
    """Appends to a file and reopens it when log rotation has moved it away; never fails the caller.

    A log file that cannot be opened or written (a read-only folder, files left by a `sudo` run, a full
    disk) costs one warning line on stderr; records of WARNING and above then go to stderr instead.
    """

    def emit(self, record):
        try:
            self._reopen_if_moved()
        except OSError as exc:
            self._unwritable(exc, record)
            return
        super().emit(record)

    def _reopen_if_moved(self) -> None:
        try:
            stat = Path(self.baseFilename).stat()
            moved = self.stream is not None and (stat.st_ino, stat.st_dev) != self._ident
        except FileNotFoundError:
            moved = True
        if moved and self.stream is not None:
            self._drop_stream()
        if self.stream is None:
            Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
            self.stream = self._open()

    def _open(self):
        stream = super()._open()
        stat = Path(self.baseFilename).stat()
        self._ident = (stat.st_ino, stat.st_dev)
        return stream

    def handleError(self, record):  # noqa: N802 - logging's API
        # Called by StreamHandler.emit from its except clause; logging's own version prints a traceback per record.
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handleError(record)
            return
        self._drop_stream()
        self._unwritable(exc, record)

    def _drop_stream(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                try:
                    self.stream.close()
                except OSError:
                    pass  # the buffered lines cannot be written anywhere
                self.stream = None
        finally:
            self.release()

    def _unwritable(self, exc: OSError, record: logging.LogRecord) -> None:
        try:
            if self.baseFilename not in _UNWRITABLE:
                _UNWRITABLE.add(self.baseFilename)
                reason = exc.strerror or type(exc).__name__
                sys.stderr.write(
                    f"warning: cannot write the log file {self.baseFilename} ({reason}); "
                    "warnings and errors go to stderr instead\n"
                )
            if record.levelno >= logging.WARNING:
                # One line per record: a traceback belongs in the file, not in the operator's terminal.
                bare = {**record.__dict__, "exc_info": None, "exc_text": None, "stack_info": None}
                sys.stderr.write(self.format(logging.makeLogRecord(bare)) + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # stderr is gone too: nothing left to tell


# Log files already reported unwritable in this process: one warning each, not one per record or handler.
_UNWRITABLE: set[str] = set()
_redactor = Redactor()


def redactor() -> Redactor:
    """The process-wide redactor, loaded with the configured secrets by setup_logging."""
    return _redactor


def setup_logging(component: str, settings, *, console: bool = True, level: str | None = None) -> logging.Logger:
    """Route the root logger to logs/active/<component>.log (and stderr), redacting secrets."""
    global _redactor
    _redactor = Redactor(settings.secrets)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level or settings.log_level)
    formatter = UTCFormatter(LOG_FORMAT)
    redacting = RedactingFilter(_redactor)
    path = settings.active_logs_dir / f"{component}.log"
    handlers: list[logging.Handler] = [ReopeningFileHandler(path, encoding="utf-8", delay=True)]
    if console:
        stream = logging.StreamHandler()
        stream.setLevel(logging.WARNING)
        handlers.append(stream)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(redacting)
        root.addHandler(handler)
    for noisy in ("urllib3", "httpx", "httpcore", "git", "waitress", "openai", "hpack", "notion_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return logging.getLogger(component)
