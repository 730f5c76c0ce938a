"""Output helpers: data to stdout, everything else (tables, progress) to stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

# Logs and CI are not terminals: give tables room instead of rich's 80-column default.
stderr = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def print_data(line: str) -> None:
    sys.stdout.write(line + "\n")


def interactive() -> bool:
    """Progress bars only when a person is watching."""
    return sys.stderr.isatty()
