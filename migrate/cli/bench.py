"""`migrate bench`: Ollama and vLLM side by side under concurrent load."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich import box
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from converters.errors import UsageError
from migrate.bench import BenchRequest, BenchResult, run_bench
from migrate.cli.errors import EXIT_FAILED, run_mapped
from migrate.cli.options import JsonOption, PlanOption, SourceOption, TargetOption
from migrate.cli.output import interactive, print_data, print_json, stderr
from migrate.ollama.api import normalize_ollama_url
from migrate.settings import load_settings
from validation.load.schemas import Arrival, LoadSpec, Role
from validation.load.sweep import SweepProgress


def bench_command(
    plan: PlanOption = None,
    source: SourceOption = None,
    target: TargetOption = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Model name \\[default: the plan's served model].")
    ] = None,
    concurrency: Annotated[
        str, typer.Option("--concurrency", help="Concurrency levels, comma-separated.")
    ] = "1,2,4,8,16,32",
    rate: Annotated[
        float | None, typer.Option("--rate", help="Requests/s (capped by the concurrency).")
    ] = None,
    arrival: Annotated[
        str, typer.Option("--arrival", help="With --rate: constant or poisson.")
    ] = "constant",
    input_tokens: Annotated[
        int, typer.Option("--input-tokens", min=1, help="Prompt length in tokens.")
    ] = 128,
    output_tokens: Annotated[
        int, typer.Option("--output-tokens", min=1, help="Tokens to generate per request.")
    ] = 128,
    requests: Annotated[
        int | None,
        typer.Option("--requests", min=1, help="Requests per level \\[default: 2 x level, >= 8]."),
    ] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", help="Seconds per level, instead of a count.")
    ] = None,
    warmup: Annotated[
        int, typer.Option("--warmup", min=0, help="Warm-up requests per endpoint.")
    ] = 1,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds before a request counts as failed.")
    ] = 300.0,
    slo_ttft: Annotated[
        float | None, typer.Option("--slo-ttft", help="Goodput SLO on TTFT, ms.")
    ] = None,
    slo_tpot: Annotated[
        float | None, typer.Option("--slo-tpot", help="Goodput SLO on TPOT, ms.")
    ] = None,
    users_at_tps: Annotated[
        float,
        typer.Option("--users-at-tps", help="Count concurrent users served at N tokens/s each."),
    ] = 30.0,
    agent_steps: Annotated[
        int, typer.Option("--agent-steps", min=0, help="Sequential requests in the agent loop.")
    ] = 20,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for bench.json, .csv, .html and .png.")
    ] = Path("bench-report"),
    json_out: JsonOption = False,
) -> None:
    """Measure the Ollama and vLLM endpoints under the same load, side by side."""

    def body() -> None:
        settings = load_settings(plan_path=plan)
        spec = load_spec(
            concurrency=concurrency, rate=rate, arrival=arrival, input_tokens=input_tokens,
            output_tokens=output_tokens, requests=requests, duration=duration, warmup=warmup,
            timeout=timeout, slo_ttft_ms=slo_ttft, slo_tpot_ms=slo_tpot,
            users_at_tps=users_at_tps, agent_steps=agent_steps,
        )  # fmt: skip
        request = BenchRequest(
            plan_path=settings.plan_path,
            plan_given=plan is not None,
            source_url=normalize_ollama_url(source) if source else None,
            target_url=target,
            model=model,
            spec=spec,
            out_dir=out,
        )
        default_source = normalize_ollama_url(settings.ollama_url) if settings.ollama_url else None
        log = lambda line: stderr.print(line, markup=False)  # noqa: E731
        if interactive():
            with progress_bar() as bar:
                result = run_bench(request, default_source, log, progress=bar)
        else:
            result = run_bench(request, default_source, log)
        stderr.print(summary_table(result))
        for line in summary_lines(result):
            stderr.print(line, markup=False)
        if json_out:
            print_json(result.model_dump(mode="json"))
        else:
            print_data(result.outputs["html"])
        if result.comparison.source.aborted or result.comparison.target.aborted:
            raise SystemExit(EXIT_FAILED)

    run_mapped(body)


def load_spec(concurrency: str, arrival: str, **fields: object) -> LoadSpec:
    try:
        levels = [int(part) for part in concurrency.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--concurrency {concurrency!r}: expected integers like 1,2,4") from None
    if arrival not in ("constant", "poisson"):
        raise UsageError(f"--arrival {arrival!r}: expected constant or poisson")
    chosen: Arrival = "poisson" if arrival == "poisson" else "constant"
    try:
        return LoadSpec(concurrency=levels, arrival=chosen, **fields)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"{where}: {first['msg']}".strip(": ")) from None


class progress_bar:  # lower case: used as a context manager, like rich's own
    """A rich progress bar fed by the library's progress callback (terminals only)."""

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[tokens]} tokens"),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
        )
        self.tasks: dict[tuple[Role, str], TaskID] = {}

    def __enter__(self) -> SweepProgress:
        self.bar.__enter__()
        return self.update

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def update(self, role: Role, label: str, done: int, total: int | None, tokens: int) -> None:
        key = (role, label)
        if key not in self.tasks:
            self.tasks[key] = self.bar.add_task(f"{role}: {label}", total=total, tokens=0)
        self.bar.update(self.tasks[key], completed=done, tokens=tokens)


def _n(value: float | int | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


def summary_table(result: BenchResult) -> Table:
    """Source | target | ratio per metric, narrow enough for 80 columns (errors are listed
    below it, with their reasons)."""
    table = Table(
        title="Bench: source (Ollama) vs target (vLLM); ratio > 1: the target is better",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
    )
    for column in (
        "\n\nconc.", "\ntok/s\nsource", "\ntok/s\ntarget", "\n\nratio", "TTFT\np95 ms\nsource",
        "TTFT\np95 ms\ntarget", "\n\nratio", "TPOT\np95 ms\nsource", "TPOT\np95 ms\ntarget",
        "\n\nratio",
    ):  # fmt: skip
        table.add_column(column, justify="right", no_wrap=True)
    for row in result.comparison.rows:
        table.add_row(
            str(row.concurrency),
            _n(row.source_output_tps, 0 if (row.source_output_tps or 0) >= 1000 else 1),
            _n(row.target_output_tps, 0 if (row.target_output_tps or 0) >= 1000 else 1),
            _x(row.throughput_ratio),
            _n(row.source_p95_ttft_ms, 0),
            _n(row.target_p95_ttft_ms, 0),
            _x(row.ttft_ratio),
            _n(row.source_p95_tpot_ms),
            _n(row.target_p95_tpot_ms),
            _x(row.tpot_ratio),
        )
    return table


def summary_lines(result: BenchResult) -> list[str]:
    comparison = result.comparison
    spec, src, tgt = comparison.spec, comparison.source, comparison.target
    within = f"p95 TPOT <= {1000 / spec.users_at_tps:.1f} ms"
    if spec.slo_ttft_ms is not None:
        within += f", p95 TTFT <= {spec.slo_ttft_ms:g} ms"
    lines = [
        f"users at {spec.users_at_tps:g} tok/s each ({within}): "
        f"source {_n(src.users_at_tps, 0)}, target {_n(tgt.users_at_tps, 0)}",
    ]
    if spec.agent_steps:
        lines.append(
            f"{spec.agent_steps}-step agent loop: source {_n(src.agent_loop_s, 2)} s, "
            f"target {_n(tgt.agent_loop_s, 2)} s ({_x(comparison.agent_loop_ratio)})"
        )
    for side in (src, tgt):
        if side.output_length == "chunks":
            lines.append(f"{side.role}: no usage chunk, output tokens counted as stream chunks")
        errors = sum(level.errors for level in side.levels)
        if errors:
            sent = sum(level.requests for level in side.levels)
            lines.append(f"{side.role}: {errors} of {sent} requests failed")
        for level in side.levels:
            for sample in level.error_samples:
                lines.append(f"{side.role} at concurrency {level.concurrency}: {sample}")
        if side.aborted:
            lines.append(f"{side.role}: stopped early: {side.aborted}")
    lines.append(f"report: {result.outputs['html']}")
    return lines
