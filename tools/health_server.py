#!/usr/bin/env python3
"""The health dashboard: / (HTML), /health (JSON, 503 when critical or stale), /healthz, /metrics (Prometheus)."""

import argparse
import sys
from pathlib import Path

# Run as `python tools/health_server.py` from anywhere: the angles package lives one folder up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from angles import cli  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", help="address to bind (default HEALTH_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default HEALTH_PORT, 5000)")
    parser.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")
    return parser


def main(args, settings) -> int:
    from angles.health.server import serve

    if args.port is not None and not 0 <= args.port <= 65535:
        cli.print_error(f"--port {args.port} is not a TCP port (0-65535)")
        return 1
    serve(settings, host=args.host, port=args.port, threads=max(1, args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run("health_server", build_parser(), main))
