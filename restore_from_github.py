#!/usr/bin/env python3
"""Not yet implemented."""

import sys

from angles import cli

if __name__ == "__main__":
    sys.exit(cli.not_implemented("restore_from_github.py"))
