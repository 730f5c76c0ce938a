"""`migrate validate`: API contract, prompt rendering and output parity, Ollama vs vLLM."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from migrate.cli.errors import EXIT_VALIDATION_FAILED, run_mapped
from migrate.cli.options import JsonOption, PlanOption, SourceOption, TargetOption
from migrate.cli.output import interactive, print_data, print_json, stderr
from migrate.ollama.api import normalize_ollama_url
from migrate.settings import load_settings
from migrate.validate import ValidateRequest, run_validation

COLOR = {"PASS": "green", "WARN": "yellow", "FAIL": "red"}


def validate_command(
    plan: PlanOption = None,
    source: SourceOption = None,
    target: TargetOption = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Validate only these models (repeatable).")
    ] = None,
    suite: Annotated[
        Path | None,
        typer.Option("--suite", help="Prompt suite (JSONL) instead of the built-in one."),
    ] = None,
    report: Annotated[
        Path, typer.Option("--report", help="Folder for report.json and report.html.")
    ] = Path("validation-report"),
    max_prompts: Annotated[
        int | None, typer.Option("--max-prompts", min=1, help="Use the first N prompts only.")
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", min=1, help="Tokens to generate per prompt.")
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Prompts in flight on each side.")
    ] = 8,
    check: Annotated[
        list[str] | None,
        typer.Option(
            "--check",
            help="Run only these checks (repeatable): a contract check, rendering or parity.",
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Prove the swap is safe: exit 0 on PASS or WARN, 3 on FAIL."""

    def body() -> None:
        settings = load_settings(plan_path=plan)
        request = ValidateRequest(
            plan_path=settings.plan_path,
            source_url=normalize_ollama_url(source) if source else None,
            target_url=target,
            models=model or [],
            suite=suite,
            max_prompts=max_prompts,
            max_tokens=max_tokens,
            concurrency=concurrency,
            report_dir=report,
            checks=check or [],
        )
        default_source = normalize_ollama_url(settings.ollama_url) if settings.ollama_url else None

        def log(line: str) -> None:
            stderr.print(line, markup=False)

        if interactive():
            with _progress_bar() as update:
                result = run_validation(request, default_source, log=log, progress=update)
        else:
            result = run_validation(request, default_source, log=log)
        table = Table(title="Validation", title_justify="left")
        for column in (
            "model",
            "scheme",
            "verdict",
            "top-1 agreement",
            "mean KL",
            "exact match",
            "reasons",
        ):
            table.add_column(column, overflow="fold")
        for entry in result.models:
            parity = entry.parity
            agreement = (
                f"{parity.agreements}/{parity.positions}" if parity and parity.positions else "-"
            )
            kl = f"{parity.mean_kl:.4f}" if parity and parity.mean_kl is not None else "-"
            exact = (
                f"{parity.exact_match_rate:.0%}"
                if parity and parity.exact_match_rate is not None
                else "-"
            )
            table.add_row(
                entry.name,
                entry.scheme,
                f"[{COLOR[entry.verdict]}]{entry.verdict}[/]",
                agreement,
                kl,
                exact,
                "; ".join(entry.reasons) or "-",
            )
        stderr.print(table)
        stderr.print(f"report: {result.html_path}", markup=False)
        if json_out:
            print_json(result.model_dump(mode="json"))
        else:
            print_data(str(result.html_path))
        if result.verdict == "FAIL":
            raise SystemExit(EXIT_VALIDATION_FAILED)

    run_mapped(body)


@contextlib.contextmanager
def _progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """Parity prompts done per model, on a terminal only."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def update(model: str, done: int, total: int) -> None:
        if model not in tasks:
            tasks[model] = bar.add_task(f"{model}: parity prompts", total=total)
        bar.update(tasks[model], completed=done)

    with bar:
        yield update
