"""`migrate convert`: HF checkpoints and vLLM launch configs for every planned model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from converters.errors import MigrateError, UsageError
from migrate.cli.errors import run_mapped
from migrate.cli.options import JsonOption, PlanOption
from migrate.cli.output import print_json, stderr
from migrate.convert import ConvertRequest, convert_plan
from migrate.settings import load_settings


def convert_command(
    plan: PlanOption = None,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Convert only these models (repeatable).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where model folders go \\[default: migrated-models]."),
    ] = None,
    source: Annotated[
        str, typer.Option("--source", help="auto (fetch when the mapping is sure), hf, or gguf.")
    ] = "auto",
    from_gguf: Annotated[bool, typer.Option("--from-gguf", help="Same as --source gguf.")] = False,
    dtype: Annotated[
        str, typer.Option("--dtype", help="bfloat16, float16 or float32.")
    ] = "bfloat16",
    force: Annotated[bool, typer.Option("--force", help="Redo models already converted.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be done; write nothing.")
    ] = False,
    offline: Annotated[
        bool, typer.Option("--offline", help="Use the HF cache only \\[env: HF_HUB_OFFLINE].")
    ] = False,
    token: Annotated[
        str | None, typer.Option("--token", help="HF token \\[env: HF_TOKEN].", show_default=False)
    ] = None,
    scheme: Annotated[
        str | None,
        typer.Option(
            "--scheme", help="Write this scheme instead of the plan's (bf16, gptq-w4a16, ...)."
        ),
    ] = None,
    quantize: Annotated[
        bool,
        typer.Option(
            "--quantize", help="Quantize locally even when a vetted pre-quantized repo exists."
        ),
    ] = False,
    calibration: Annotated[
        str | None,
        typer.Option(
            "--calibration",
            help="Calibration JSONL file, or a hub dataset ORG/NAME[:SPLIT] \\[default: built-in set].",
        ),
    ] = None,
    samples: Annotated[
        int | None,
        typer.Option("--samples", min=1, help="Calibration samples \\[default: by model size]."),
    ] = None,
    max_seq_len: Annotated[
        int | None,
        typer.Option(
            "--max-seq-len", min=1, help="Calibration sequence length \\[default: by model size]."
        ),
    ] = None,
    llmcompressor_python: Annotated[
        Path | None,
        typer.Option(
            "--llmcompressor-python",
            help="Python of an existing llm-compressor environment \\[env: MIGRATE_LLMCOMPRESSOR_PYTHON].",
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Fetch each model's HF original, or rebuild it from the GGUF, quantize it when the plan's
    scheme says so, and write its vLLM launch config."""

    def body() -> None:
        if source not in ("auto", "hf", "gguf"):
            raise UsageError(f"--source {source!r} is not auto, hf or gguf")
        settings = load_settings(
            plan_path=plan, out_dir=out, llmcompressor_python=llmcompressor_python
        )
        secret = token or (settings.hf_token.get_secret_value() if settings.hf_token else None)
        request = ConvertRequest(
            plan_path=settings.plan_path,
            out_root=settings.out_dir,
            only=only or [],
            source="gguf" if from_gguf else source,  # type: ignore[arg-type]
            dtype=dtype,
            force=force,
            dry_run=dry_run,
            offline=offline or settings.hf_offline,
            token=secret,
            scheme=scheme,
            quantize=quantize,
            cache_dir=settings.cache_dir,
            llmcompressor_python=settings.llmcompressor_python,
            calibration=calibration,
            samples=samples,
            max_seq_len=max_seq_len,
        )
        outcomes = convert_plan(request, log=lambda line: stderr.print(line, markup=False))
        if json_out:
            print_json([o.model_dump() for o in outcomes])
        else:
            table = Table(title="Convert" + (" (dry run)" if dry_run else ""), title_justify="left")
            for column in ("model", "scheme", "action", "detail", "folder"):
                table.add_column(column, overflow="fold")
            for o in outcomes:
                table.add_row(o.name, o.scheme, o.action, o.detail, o.path or "-")
            stderr.print(table)
            for o in outcomes:
                if o.path and o.action in ("fetch", "rebuild", "quantize", "skip") and not dry_run:
                    print(o.path)
        blocked = [o for o in outcomes if o.action == "blocked"]
        if blocked and len(blocked) == len(outcomes):
            raise MigrateError(
                f"no model could be converted: {blocked[0].name}: {blocked[0].detail}"
            )

    run_mapped(body)
