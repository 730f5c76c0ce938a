"""`migrate convert`: turn each planned model into a folder vLLM serves like Ollama did.

Per model: get the unquantized HF checkpoint (fetch the original, or rebuild it from the
GGUF) into `OUT/<slug>`, carry over the chat template, stop tokens and generation
defaults, and write the vLLM launch config. When the plan's scheme is a quantized one,
`OUT/<slug>-<scheme>` is then made from that bf16 base by llm-compressor in its own
runtime (or fetched, when the catalog knows a vetted pre-quantized repo), with its quality
against the base recorded. Each folder is staged and published whole; the plan records
the result after every model, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from converters.errors import NothingToDoError, UsageError
from converters.hf_fetch import fetch_hf_original
from converters.launch_config import LaunchSettings, write_launch_config
from converters.output import (
    StagingDir,
    check_disk_space,
    is_complete,
    model_slug_dir,
    read_manifest,
)
from converters.schemes import SCHEMES
from migrate import __version__
from migrate.plan.schema import ModelPlan, Plan, read_plan, write_plan

Source = Literal["auto", "hf", "gguf"]
Log = Callable[[str], None]

# Mappings this sure are fetched; weaker guesses are rebuilt from the GGUF Ollama ran.
FETCH_CONFIDENCE = ("high", "medium")
# Room for config/tokenizer files and filesystem slack on top of the weights.
DISK_SLACK = 1.05
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


class ConvertRequest(BaseModel):
    plan_path: Path
    out_root: Path
    only: list[str] = Field(default_factory=list)
    source: Source = "auto"
    dtype: str = "bfloat16"
    force: bool = False
    dry_run: bool = False
    offline: bool = False
    token: str | None = Field(default=None, repr=False)  # never stored or printed
    hf_cache: Path | None = None
    # Quantization (used when the scheme is not bf16)
    scheme: str | None = None  # overrides the plan's target scheme
    quantize: bool = False  # quantize locally even when a pre-quantized repo is known
    cache_dir: Path | None = None  # where `migrate runtime install` put the runtimes
    llmcompressor_python: Path | None = None
    calibration: str | None = None  # a JSONL file, or a hub dataset ORG/NAME[:SPLIT]
    samples: int | None = Field(default=None, gt=0)
    max_seq_len: int | None = Field(default=None, gt=0)
    quantize_timeout: float | None = None


class ConvertOutcome(BaseModel):
    name: str
    slug: str
    action: Literal["fetch", "rebuild", "quantize", "skip", "blocked"]
    scheme: str = "bf16"
    path: str | None = None
    detail: str = ""  # one line: what was or would be done
    seconds: float | None = None
    quality: dict[str, Any] | None = None  # quantized against the bf16 base, held-out text


def convert_plan(request: ConvertRequest, log: Log | None = None) -> list[ConvertOutcome]:
    if request.dtype not in DTYPE_BYTES:
        raise UsageError(f"--dtype {request.dtype} is not one of {', '.join(DTYPE_BYTES)}")
    if request.scheme is not None and request.scheme not in SCHEMES:
        raise UsageError(f"--scheme {request.scheme} is not one of {', '.join(SCHEMES)}")
    plan = read_plan(request.plan_path)
    models = select_models(plan, request.only)
    outcomes = []
    for model in models:
        scheme = planned_scheme(model, request)
        if scheme is None or scheme == "bf16":
            outcome = convert_model(plan, model, request, log)
        else:
            from migrate.quantize import quantize_model  # only when a scheme asks for it

            outcome = quantize_model(plan, model, scheme, request, log)
        outcomes.append(outcome)
        if not request.dry_run and outcome.action != "blocked":
            write_plan(plan, request.plan_path)  # resume point after every model
    return outcomes


def planned_scheme(model: ModelPlan, request: ConvertRequest) -> str | None:
    """--scheme, else the plan's target; None when the plan found nothing that fits."""
    if request.scheme is not None:
        return request.scheme
    return model.target.scheme if model.target is not None else "bf16"


def select_models(plan: Plan, only: list[str]) -> list[ModelPlan]:
    if not only:
        return list(plan.models)
    chosen = []
    for name in only:
        model = plan.find(name)
        if model is None:
            known = ", ".join(m.name for m in plan.models) or "none"
            raise NothingToDoError(f"no model {name!r} in the plan (planned: {known})")
        chosen.append(model)
    return chosen


def choose_source(model: ModelPlan, source: Source) -> tuple[Literal["fetch", "rebuild"], str]:
    hf = model.hf
    if source == "gguf":
        return "rebuild", "rebuild from the GGUF (--source gguf)"
    if source == "hf":
        if hf is None or hf.repo is None:
            raise UsageError(
                f"{model.name}: no HF original known", hint="map one with `migrate plan --map`"
            )
        return "fetch", f"fetch {hf.repo} (--source hf)"
    if hf is not None and hf.repo and hf.confidence in FETCH_CONFIDENCE:
        return "fetch", f"fetch {hf.repo} ({hf.confidence} confidence)"
    why = (
        "no HF original known"
        if hf is None or hf.repo is None
        else f"{hf.confidence}-confidence mapping"
    )
    return "rebuild", f"rebuild from the GGUF ({why})"


def convert_model(
    plan: Plan, model: ModelPlan, request: ConvertRequest, log: Log | None
) -> ConvertOutcome:
    if model.status != "ready" or model.vllm is None or model.gguf is None:
        reason = model.problems[0] if model.problems else "not ready in the plan"
        return ConvertOutcome(name=model.name, slug=model.slug, action="blocked", detail=reason)
    dest = model_slug_dir(request.out_root, model.slug)
    if is_complete(dest) and not request.force:
        if not request.dry_run:
            record_existing(model, dest, written_scheme(request.dtype), request.dtype)
        return ConvertOutcome(
            name=model.name,
            slug=model.slug,
            action="skip",
            path=str(dest),
            detail="already converted (--force redoes it)",
        )
    action, detail = choose_source(model, request.source)
    if action == "rebuild" and not model.ollama.model_path:
        return ConvertOutcome(
            name=model.name,
            slug=model.slug,
            action="blocked",
            detail="the GGUF lives on the Ollama server: plan from its store (--models-dir) to rebuild",
        )
    if request.dry_run:
        return ConvertOutcome(
            name=model.name, slug=model.slug, action=action, path=str(dest), detail=detail
        )
    if log:
        log(f"{model.name}: {detail}")
    needed = int(model.gguf.parameter_count * DTYPE_BYTES[request.dtype] * DISK_SLACK)
    check_disk_space(request.out_root, needed)
    start = time.monotonic()
    source_digest = model.ollama.model_digest
    with StagingDir(
        request.out_root,
        model.slug,
        force=request.force,
        source_digest=source_digest,
        tool_versions={"ollama-vllm-migrate": __version__},
    ) as stage:
        if action == "fetch":
            record = fetch_into(model, stage.path, request)
        else:
            record = rebuild_into(model, stage.path, request)
        write_launch_config(stage.path, launch_settings(model), final_dir=stage.final)
        stage.set_extra(source=record, ollama_names=model.ollama.names)
    seconds = round(time.monotonic() - start, 1)
    model.stages["convert"] = convert_record(
        dest, request.dtype, written_scheme(request.dtype), record, seconds
    )
    return ConvertOutcome(
        name=model.name,
        slug=model.slug,
        action=action,
        path=str(dest),
        detail=detail,
        seconds=seconds,
    )


def written_scheme(dtype: str) -> str:
    return "bf16" if dtype == "bfloat16" else dtype


def record_existing(model: ModelPlan, dest: Path, scheme: str, dtype: str) -> None:
    """A complete folder is reused: point the plan at it (the last one asked for is served)."""
    stage = model.stages.get("convert") or {}
    if stage.get("status") == "done" and stage.get("path") == str(dest):
        return
    manifest = read_manifest(dest)
    extra = manifest.extra if manifest is not None else {}
    model.stages["convert"] = convert_record(
        dest, dtype, scheme, extra.get("source"), 0.0, quantization=extra.get("quantization")
    )


def convert_record(
    dest: Path, dtype: str, scheme: str, source: Any, seconds: float, **more: Any
) -> dict[str, Any]:
    """The plan's `stages.convert`: the folder `migrate serve` starts and how it was made."""
    return {
        "status": "done",
        "path": str(dest),
        "launch_config": str(dest / "vllm-config.yaml"),
        "dtype": dtype,
        "scheme_written": scheme,
        "source": source,
        "seconds": seconds,
        **more,
    }


def fetch_into(model: ModelPlan, folder: Path, request: ConvertRequest) -> dict[str, Any]:
    assert model.hf is not None and model.hf.repo is not None and model.vllm is not None
    result = fetch_hf_original(
        model.hf.repo,
        folder,
        token=request.token,
        offline=request.offline,
        cache_dir=request.hf_cache,
        progress=False,
    )
    add_stop_tokens(folder / "generation_config.json", model.vllm.stop_token_ids)
    return {"kind": "hf", "repo": result.repo, "revision": result.revision, "files": result.files}


def rebuild_into(model: ModelPlan, folder: Path, request: ConvertRequest) -> dict[str, Any]:
    from converters.hf_rebuild.rebuild import rebuild_from_gguf  # numpy-heavy: load on use

    assert model.vllm is not None and model.ollama.model_path is not None
    generation = dict(model.vllm.generation_config)
    generation["eos_token_id"] = model.vllm.stop_token_ids
    result = rebuild_from_gguf(
        Path(model.ollama.model_path),
        folder,
        dtype=request.dtype,
        generation_config=generation,
        chat_template=model.vllm.chat_template,
    )
    return {
        "kind": "gguf",
        "blob": model.ollama.model_digest,
        "tensors": result.tensor_count,
        "seconds": result.seconds,
    }


def add_stop_tokens(path: Path, stop_ids: list[int]) -> None:
    """vLLM stops on generation_config.json's eos_token_id: add the Modelfile's stop tokens."""
    config: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    current = config.get("eos_token_id")
    ids = [current] if isinstance(current, int) else list(current or [])
    merged = list(dict.fromkeys([*ids, *stop_ids]))
    config["eos_token_id"] = merged[0] if len(merged) == 1 else merged
    path.write_text(json.dumps(config, indent=2) + "\n")


def launch_settings(model: ModelPlan) -> LaunchSettings:
    assert model.vllm is not None
    vllm = model.vllm
    return LaunchSettings(
        served_model_names=vllm.served_model_names,
        max_model_len=vllm.max_model_len,
        dtype=vllm.dtype,
        generation_overrides=vllm.generation_config,
        chat_template=vllm.chat_template,
        tool_call_parser=vllm.tool_call_parser,
        reasoning_parser=vllm.reasoning_parser,
    )
