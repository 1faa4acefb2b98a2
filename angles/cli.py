"""What every operator script shares: settings, logging, error-to-exit-code mapping, output."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable

from angles.errors import AnglesError

logger = logging.getLogger(__name__)


def run(component: str, parser: argparse.ArgumentParser, main: Callable, argv: list[str] | None = None) -> int:
    """Parse arguments, load settings, set up logging, run main(args, settings), map the outcome to an exit code."""
    _one_line_errors(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    from angles.config import ensure_home, load_settings
    from angles.logs import redactor, setup_logging

    try:
        settings = load_settings()
        ensure_home(settings)
    except AnglesError as exc:
        print_error(str(exc))
        return exc.exit_code
    log = setup_logging(component, settings, console=False)
    try:
        code = main(args, settings)
        sys.stdout.flush()
        return int(code or 0)
    except BrokenPipeError:
        # The reader stopped reading (`| head`): not an error of ours, and nothing more to say.
        _drop_stdout()
        return 0
    except AnglesError as exc:
        message = redactor()(str(exc))
        log.error("%s failed: %s", component, message)
        print_error(message)
        return exc.exit_code
    except KeyboardInterrupt:
        log.warning("%s interrupted", component)
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        # A full disk, a read-only folder: the operator's to fix, so one line, not "unexpected".
        message = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        log.error("%s failed: %s", component, message)
        print_error(message)
        return 1
    except Exception as exc:
        log.exception("%s failed with an unexpected error", component)
        print(
            f"error: unexpected {type(exc).__name__}: {redactor()(str(exc))} (details in logs/active/{component}.log)",
            file=sys.stderr,
        )
        return 1


def _drop_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush does not fail on the closed pipe again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Bad arguments are one line and exit 1, not argparse's usage block and exit 2 (2 means a database problem)."""

    def error(message: str):
        print_error(f"{message} (see {parser.prog} --help)")
        raise SystemExit(1)

    parser.error = error
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _one_line_errors(sub)


def print_error(message: str) -> None:
    """One `error:` line on stderr, through the redactor like every other line a command prints."""
    from angles.logs import redactor

    print(f"error: {redactor()(message)}", file=sys.stderr)


def emit(result, as_json: bool, text: Callable[[object], str] | None = None) -> None:
    """Print a result as JSON (for scripts) or as text (for people); both pass through the redactor."""
    from angles.logs import redactor

    if as_json:
        out = json.dumps(result, indent=2, ensure_ascii=False, default=str)
    else:
        out = text(result) if text else str(result)
    print(redactor()(out))
