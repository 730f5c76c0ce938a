"""`migrate runtime install|list`: the isolated environments for vLLM, llm-compressor, llama.cpp."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from migrate.cli.errors import run_mapped
from migrate.cli.options import JsonOption
from migrate.cli.output import print_json, stderr
from migrate.runtimes import RUNTIMES, install_runtime, list_runtimes, spec_for
from migrate.settings import load_settings

runtime_app = typer.Typer(
    help="Isolated environments for vLLM, llm-compressor and llama.cpp.", no_args_is_help=True
)


@runtime_app.command("install")
def install_command(
    names: Annotated[
        list[str], typer.Argument(help=f"Runtimes to install: {', '.join(RUNTIMES)}.")
    ],
    force: Annotated[bool, typer.Option("--force", help="Reinstall even when complete.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Create each runtime's venv with known-good pins and the documented workarounds."""

    def body() -> None:
        settings = load_settings()
        for name in names:
            spec_for(name)  # reject unknown names before any slow work
        results = []
        for name in names:
            info = install_runtime(
                settings.cache_dir,
                name,
                force=force,
                log=lambda line: stderr.print(line, markup=False),
            )
            results.append(info.model_dump())
            stderr.print(f"{name}: ready at {info.path}")
        if json_out:
            print_json(results)

    run_mapped(body)


@runtime_app.command("list")
def list_command(
    json_out: JsonOption = False,
) -> None:
    """Show each runtime, where it lives and whether it is installed."""

    def body() -> None:
        infos = list_runtimes(load_settings().cache_dir)
        if json_out:
            print_json([info.model_dump() for info in infos])
            return
        table = Table(title="Runtimes", title_justify="left")
        for column in ("name", "status", "packages", "path"):
            table.add_column(column)
        for info in infos:
            packages = (
                ", ".join(f"{k} {v}" for k, v in info.packages.items())
                or RUNTIMES[info.name].summary
            )
            status = "[green]installed[/]" if info.complete else "not installed"
            table.add_row(info.name, status, packages, info.path)
        stderr.print(table)

    run_mapped(body)
