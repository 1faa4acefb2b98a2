#!/usr/bin/env python3
"""Analyse one decision text with the configured model (or the offline analyser) and print the analysis."""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from angles import cli  # noqa: E402 - the project root must be importable first


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("text", nargs="?", help="the decision text to analyse")
    parser.add_argument("--offline", action="store_true", help="use the offline analyser even when a key is set")
    parser.add_argument("--check", action="store_true", help="send one tiny request to check key and model, and exit")
    return parser


def main(args, settings) -> int:
    from angles.engines import enrichment as ai
    from angles.errors import ValidationError
    from angles.services.openai_model import check_ai

    if args.check:
        cli.emit(check_ai(settings), True)
        return 0
    if not args.text or not args.text.strip():
        raise ValidationError('give the decision text to analyse, e.g. tools/ai_client.py "Use SQLite by default."')
    if args.offline:
        analysis = ai.offline_analysis(args.text, "--offline given")
    else:
        analysis = ai.analyse_text(settings, args.text)
    cli.emit(analysis, True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run("ai_client", build_parser(), main))
