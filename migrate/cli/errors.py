"""The one place where errors become messages and exit codes.

Exit codes: 0 success; 1 failed or nothing usable; 2 usage (bad flag, bad input file,
bad plan); 3 validation verdict FAIL; 4 an endpoint could not be reached; 130 interrupted.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import TypeVar

from converters.errors import MigrateError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_VALIDATION_FAILED = 3
EXIT_UNREACHABLE = 4
EXIT_INTERRUPTED = 130

T = TypeVar("T")


def debug_enabled() -> bool:
    return os.environ.get("MIGRATE_DEBUG", "").lower() in ("1", "true", "yes")


def run_mapped(func: Callable[[], T]) -> T:
    """Run a command body; map every failure to one stderr line and an exit code."""
    try:
        return func()
    except MigrateError as exc:
        _report(f"error: {exc.one_line()}")
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        _report("interrupted")
        raise SystemExit(EXIT_INTERRUPTED) from None
    except OSError as exc:
        # Disk full, permission denied and the like: the OS message says what.
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        _report(f"error: {exc.strerror or exc}{where}")
        raise SystemExit(EXIT_FAILED) from None
    except Exception as exc:
        _report(
            f"error: unexpected {type(exc).__name__}: {exc} (set MIGRATE_DEBUG=1 for the traceback)"
        )
        raise SystemExit(EXIT_FAILED) from None


def _report(line: str) -> None:
    if debug_enabled():
        traceback.print_exc()
    print(" ".join(line.split()), file=sys.stderr)
