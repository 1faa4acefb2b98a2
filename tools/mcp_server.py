#!/usr/bin/env python3
"""The assistants' door: an MCP server over the decision vault, on stdio (default) or streamable HTTP at /mcp."""

import argparse
import sys
from pathlib import Path

# Run as `python tools/mcp_server.py` from anywhere: the angles package lives one folder up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from angles import cli  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind with --http (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on with --http (default 8765)")
    return parser


def main(args, settings) -> int:
    from angles.assistants.run import run_server

    if not 0 <= args.port <= 65535:
        print(f"error: --port {args.port} is not a TCP port (0-65535)", file=sys.stderr)
        return 1
    run_server(settings, http=args.http, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run("mcp_server", build_parser(), main))
