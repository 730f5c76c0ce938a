"""Options several commands share, declared once so their names and help never drift."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

PlanOption = Annotated[
    Path | None, typer.Option("--plan", help="Plan file \\[default: migration-plan.json].")
]
SourceOption = Annotated[
    str | None,
    typer.Option(
        "--source", help="Ollama endpoint \\[env: OLLAMA_HOST; default http://127.0.0.1:11434]."
    ),
]
TargetOption = Annotated[
    str | None,
    typer.Option("--target", help="vLLM endpoint \\[default: the one `migrate serve` started]."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
VllmPythonOption = Annotated[
    Path | None,
    typer.Option(
        "--vllm-python", help="Python of an existing vLLM env \\[env: MIGRATE_VLLM_PYTHON]."
    ),
]
