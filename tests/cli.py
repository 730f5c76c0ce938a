"""Run the real `migrate` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The caller's own settings must not leak into a test's command.
_SCRUBBED = ("OLLAMA_", "MIGRATE_", "HF_")


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED)}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "migrate.cli.main", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=REPO,
        timeout=timeout,
    )
