"""Entry point: `migrate <command>`."""

from __future__ import annotations

import typer

from migrate import __version__
from migrate.cli.bench import bench_command
from migrate.cli.convert import convert_command
from migrate.cli.demo import demo_store_command
from migrate.cli.plan import plan_command
from migrate.cli.runtime import runtime_app
from migrate.cli.serve import serve_command
from migrate.cli.standin import serve_gguf_command
from migrate.cli.validate import validate_command

app = typer.Typer(
    name="migrate",
    help="Move local LLMs from Ollama to vLLM so clients keep working after one change: the URL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("plan")(plan_command)
app.command("convert")(convert_command)
app.command("serve")(serve_command)
app.command("validate")(validate_command)
app.command("bench")(bench_command)
app.command("demo-store")(demo_store_command)
app.command("serve-gguf")(serve_gguf_command)
app.add_typer(runtime_app, name="runtime")


def _version(value: bool) -> None:
    if value:
        print(f"ollama-vllm-migrate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """Ollama -> vLLM migration: plan, convert, serve, validate, bench."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
