"""Output helpers: data to stdout, everything else (tables, progress) to stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

stderr = Console(stderr=True, highlight=False, soft_wrap=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def print_data(line: str) -> None:
    sys.stdout.write(line + "\n")


def interactive() -> bool:
    """Progress bars only when a person is watching."""
    return sys.stderr.isatty()
