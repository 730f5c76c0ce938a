"""`migrate serve-gguf`: llama.cpp on the plan's GGUF, a stand-in Ollama endpoint."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from converters.errors import MigrateError
from migrate.cli.errors import run_mapped
from migrate.cli.options import JsonOption, PlanOption
from migrate.cli.output import print_data, print_json, stderr
from migrate.serve import record_detached
from migrate.settings import load_settings
from migrate.standin import StandinRequest, start_standin


def serve_gguf_command(
    plan: PlanOption = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Which model \\[default: the first on disk].")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option("--port", help="Port \\[default: a free one].")
    ] = None,
    llamacpp_python: Annotated[
        Path | None,
        typer.Option(
            "--llamacpp-python",
            help="Python with llama-cpp-python[server] \\[env: MIGRATE_LLAMACPP_PYTHON].",
        ),
    ] = None,
    detach: Annotated[
        bool,
        typer.Option("--detach", help="Leave it running; `migrate serve --stop` stops it."),
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Serve the plan's GGUF with llama.cpp (Ollama's engine) as a stand-in Ollama endpoint,
    for `migrate validate` / `migrate bench` where no Ollama server runs."""

    def body() -> None:
        settings = load_settings(plan_path=plan, llamacpp_python=llamacpp_python)
        request = StandinRequest(
            plan_path=settings.plan_path,
            cache_dir=settings.cache_dir,
            model=model,
            host=host,
            port=port,
            llamacpp_python=settings.llamacpp_python,
        )
        server, entry = start_standin(request, log=lambda line: stderr.print(line, markup=False))
        if json_out:
            print_json(entry.model_dump())
        else:
            print_data(entry.url)
        if detach:
            record_detached(settings.cache_dir, [entry])
            return
        signal.signal(signal.SIGTERM, _interrupt)
        stderr.print("serving; Ctrl-C stops it")
        try:
            while server.process is not None and server.process.poll() is None:
                time.sleep(1)
            raise MigrateError("llama.cpp exited", hint=f"log: {entry.log}")
        finally:
            server.stop()

    run_mapped(body)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
