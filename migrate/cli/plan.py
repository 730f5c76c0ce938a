"""`migrate plan`: inventory the Ollama store and write the migration plan."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from converters.errors import NothingToDoError, UsageError
from migrate.cli.errors import run_mapped
from migrate.cli.options import JsonOption
from migrate.cli.output import interactive, print_data, stderr
from migrate.mapping.resolve import parse_overrides
from migrate.ollama.api import normalize_ollama_url
from migrate.ollama.store import default_models_dir
from migrate.plan.build import PlanRequest, build_plan, count_ready
from migrate.plan.ollama_defaults import OllamaDefaults
from migrate.plan.schema import Plan, dump_plan, write_plan
from migrate.settings import Settings, load_settings
from migrate.targets.choose import Hardware, TargetChoice, hardware_from_spec
from migrate.targets.gpus import detect_gpu, lookup_gpu


def plan_command(
    models_dir: Annotated[
        Path | None,
        typer.Option("--models-dir", help="Ollama store on disk \\[env: OLLAMA_MODELS]."),
    ] = None,
    ollama_url: Annotated[
        str | None,
        typer.Option("--ollama-url", help="Read models over Ollama's API \\[env: OLLAMA_HOST]."),
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Check every blob's sha256 (slow on big stores).")
    ] = False,
    gpu: Annotated[
        str | None,
        typer.Option("--gpu", help="Target GPU (h100, l40s, rtx-4090, cpu, ...); default: detect."),
    ] = None,
    vram: Annotated[
        float | None,
        typer.Option("--vram", min=1, help="GPU memory in GiB, when it differs from the GPU's."),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option("--concurrency", min=1, help="Concurrent requests to size the KV cache for."),
    ] = 8,
    scheme: Annotated[
        str | None,
        typer.Option("--scheme", help="Force one scheme (bf16, fp8-dynamic, gptq-w4a16, ...)."),
    ] = None,
    maps: Annotated[
        list[str] | None,
        typer.Option("--map", help="NAME=org/repo: the HF original of a model (repeatable)."),
    ] = None,
    mapping_file: Annotated[
        Path | None, typer.Option("--mapping-file", help="YAML/JSON {name: org/repo}.")
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Plan only these models (repeatable).")
    ] = None,
    ollama_num_ctx: Annotated[
        int | None,
        typer.Option(
            "--ollama-num-ctx",
            min=1,
            help="Ollama's default context, when not 4096 \\[env: OLLAMA_CONTEXT_LENGTH].",
        ),
    ] = None,
    ollama_repeat_penalty: Annotated[
        float | None,
        typer.Option(
            "--ollama-repeat-penalty", help="Ollama's default repeat_penalty (1.1 before mid-2026)."
        ),
    ] = None,
    chat_template: Annotated[
        str,
        typer.Option(
            "--chat-template",
            help="When Ollama's TEMPLATE and the GGUF's differ: ollama (what clients saw) or gguf.",
        ),
    ] = "ollama",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Plan file to write \\[default: migration-plan.json]."),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Inventory Ollama models, map each to its HF original, choose a vLLM format, write a plan."""

    def body() -> None:
        if chat_template not in ("ollama", "gguf"):
            raise UsageError(f"--chat-template {chat_template!r} is not ollama or gguf")
        settings = load_settings(
            models_dir=models_dir,
            ollama_url=ollama_url,
            ollama_num_ctx=ollama_num_ctx,
            ollama_repeat_penalty=ollama_repeat_penalty,
            plan_path=out,
        )
        source_dir, source_url = source_of(
            settings, explicit_dir=models_dir is not None, explicit_url=ollama_url is not None
        )
        request = PlanRequest(
            hardware=resolve_hardware(gpu, vram),
            concurrency=concurrency,
            scheme=scheme,
            only=only or [],
            verify=verify,
            overrides=parse_overrides(maps or [], mapping_file),
            defaults=ollama_defaults(settings),
            chat_template="gguf" if chat_template == "gguf" else "ollama",
            models_dir=source_dir,
            ollama_url=source_url,
        )
        if interactive() and not json_out:
            with stderr.status("reading models...") as status:
                plan = build_plan(request, progress=lambda name: status.update(f"reading {name}"))
        else:
            plan = build_plan(request)
        write_plan(plan, settings.plan_path)
        if json_out:
            print_data(dump_plan(plan).rstrip("\n"))
        else:
            show_plan(plan)
            print_data(str(settings.plan_path))
        if count_ready(plan) == 0:
            raise NothingToDoError(
                f"no model can be migrated as planned (see problems in {settings.plan_path})"
            )

    run_mapped(body)


def source_of(
    settings: Settings, explicit_dir: bool, explicit_url: bool
) -> tuple[Path | None, str | None]:
    """Disk unless an Ollama URL was given (flag, or OLLAMA_HOST without --models-dir)."""
    if explicit_dir and explicit_url:
        raise UsageError("--models-dir and --ollama-url both given", hint="pick one source")
    if settings.ollama_url and not explicit_dir and (explicit_url or settings.models_dir is None):
        return None, normalize_ollama_url(settings.ollama_url)
    return default_models_dir(settings.models_dir, os.environ), None


def resolve_hardware(gpu: str | None, vram: float | None) -> Hardware:
    if gpu:
        return hardware_from_spec(lookup_gpu(gpu), detected=False, vram_gib=vram)
    detected = detect_gpu()
    return hardware_from_spec(detected, detected=detected is not None, vram_gib=vram)


def ollama_defaults(settings: Settings) -> OllamaDefaults:
    defaults = OllamaDefaults()
    if settings.ollama_num_ctx:
        defaults.num_ctx = settings.ollama_num_ctx
    if settings.ollama_repeat_penalty is not None:
        defaults.repeat_penalty = settings.ollama_repeat_penalty
    return defaults


def show_plan(plan: Plan) -> None:
    table = Table(
        title=f"Migration plan ({plan.source.kind}: {plan.source.location})", title_justify="left"
    )
    for column in (
        "model",
        "arch",
        "params",
        "quant",
        "HF original",
        "conf.",
        "scheme",
        "ctx",
        "status",
    ):
        table.add_column(column, overflow="fold")
    for model in plan.models:
        info, hf, target, vllm = model.gguf, model.hf, model.target, model.vllm
        table.add_row(
            ", ".join(vllm.served_model_names) if vllm else model.name,
            info.architecture if info else "-",
            _params(info.parameter_count) if info else "-",
            (info.file_type_name or "-") if info else "-",
            (hf.repo or "rebuild from GGUF") if hf else "-",
            hf.confidence if hf else "-",
            _scheme_cell(target) if target else "-",
            str(vllm.max_model_len) if vllm else "-",
            "[green]ready[/]" if model.status == "ready" else "[red]blocked[/]",
        )
    stderr.print(table)
    hw = plan.hardware
    where = f"{hw.name or hw.gpu} ({hw.vram_gib} GiB)" if hw.gpu else "no GPU detected or named"
    stderr.print(f"target: {where}, {plan.concurrency} concurrent requests")
    for model in plan.models:
        for line in model.problems:
            stderr.print(f"[red]problem[/]: {line}")
        if model.hf and model.status == "ready":
            stderr.print(f"{model.name}: {model.hf.reason}")
        if model.target and model.target.scheme:
            stderr.print(f"{model.name}: {model.target.scheme}: {model.target.reason}")
        for warning in model.vllm.warnings if model.vllm else []:
            stderr.print(f"[yellow]note[/]: {model.name}: {warning}")
    for line in plan.problems:
        stderr.print(f"[red]problem[/]: {line}")


def _params(count: int) -> str:
    return f"{count / 1e9:.1f}B" if count >= 1e9 else f"{count / 1e6:.0f}M"


def _scheme_cell(target: TargetChoice) -> str:
    if target.scheme is None:
        return "none"
    return target.scheme + (" (not servable here)" if target.serve_blocked else "")
