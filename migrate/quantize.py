"""The quantization step of `migrate convert`: bf16 base -> `OUT/<slug>-<scheme>`.

The base comes from the bf16 step (reused when already complete). llm-compressor runs in
its own runtime (its pins clash with vLLM's); its quality check against the base on
held-out text goes into the folder's manifest and the plan. When the catalog names a
vetted pre-quantized repo for the scheme and the user did not ask to quantize, that repo
is fetched instead.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from converters.errors import UsageError
from converters.hf_fetch import fetch_hf_original
from converters.launch_config import write_launch_config
from converters.output import StagingDir, check_disk_space, is_complete, model_slug_dir
from converters.quantize import QuantizeResult, quantize_checkpoint
from converters.schemes import W4A16_SCHEMES
from migrate import __version__
from migrate.convert import (
    ConvertOutcome,
    ConvertRequest,
    Log,
    add_stop_tokens,
    convert_model,
    convert_record,
    launch_settings,
    record_existing,
)
from migrate.plan.schema import ModelPlan, Plan
from migrate.runtimes import resolve_python
from migrate.targets.choose import choose_group_size

# 4-bit weights plus 16-bit embeddings and scales stay well under half the bf16 size.
QUANTIZED_DISK_FRACTION = 0.6


def quantize_model(
    plan: Plan, model: ModelPlan, scheme: str, request: ConvertRequest, log: Log | None
) -> ConvertOutcome:
    slug = f"{model.slug}-{scheme}"
    if model.status != "ready" or model.vllm is None or model.gguf is None:
        reason = model.problems[0] if model.problems else "not ready in the plan"
        return ConvertOutcome(
            name=model.name, slug=slug, scheme=scheme, action="blocked", detail=reason
        )
    dest = model_slug_dir(request.out_root, slug)
    if is_complete(dest) and not request.force:
        if not request.dry_run:
            record_existing(model, dest, scheme, request.dtype)
        return ConvertOutcome(
            name=model.name, slug=slug, scheme=scheme, action="skip", path=str(dest),
            detail="already quantized (--force redoes it)",
        )  # fmt: skip
    blocked = plan.hardware.allowed.get(scheme)
    if blocked and log:
        log(f"{model.name}: warning: {scheme} cannot be served on the planned hardware ({blocked});"
            " converting anyway, `migrate serve` will refuse it")  # fmt: skip
    repo = prequantized_repo(model, scheme)
    if repo and not request.quantize and request.source != "gguf":
        return fetch_prequantized(model, scheme, repo, dest, request, log)

    group_size = _group_size(model, scheme)
    detail = f"quantize to {scheme}" + (f" (group size {group_size})" if group_size else "")
    if request.dry_run:
        base = _base(plan, model, request, None)
        return ConvertOutcome(
            name=model.name, slug=slug, scheme=scheme, action="quantize", path=str(dest),
            detail=f"{base.detail}, then {detail}",
        )  # fmt: skip
    cache_dir = _cache_dir(request)
    python = resolve_python(
        cache_dir, ["llmcompressor"], request.llmcompressor_python, "--llmcompressor-python"
    )
    calibration, dataset_id = _calibration(request)
    start = time.monotonic()
    base = _base(plan, model, request, log)
    if base.action == "blocked" or base.path is None:
        return base.model_copy(update={"slug": slug, "scheme": scheme})
    # One record for the manifest and the plan, so a rerun that reuses the folder (and
    # reads it back from the manifest) sees the same shape.
    source = {
        "kind": "quantized",
        "base": base.path,
        "base_source": (model.stages.get("convert") or {}).get("source"),
    }
    check_disk_space(
        request.out_root, int(model.gguf.parameter_count * 2 * QUANTIZED_DISK_FRACTION)
    )
    if log:
        log(f"{model.name}: {detail} with llm-compressor")
    log_path = cache_dir / "logs" / f"quantize-{slug}.log"
    with StagingDir(
        request.out_root, slug, force=request.force, source_digest=model.ollama.model_digest,
        tool_versions={"ollama-vllm-migrate": __version__},
    ) as stage:  # fmt: skip
        result = quantize_checkpoint(
            Path(base.path), stage.path, scheme=scheme, python=python, group_size=group_size,
            calibration=calibration, dataset_id=dataset_id, samples=request.samples,
            max_seq_len=request.max_seq_len, log_path=log_path,
            progress=(lambda line: log(f"{model.name}: {scheme}: {line}")) if log else None,
            timeout=request.quantize_timeout,
        )  # fmt: skip
        write_launch_config(stage.path, launch_settings(model), final_dir=stage.final)
        summary = quantization_summary(result)
        stage.set_extra(source=source, quantization=summary, ollama_names=model.ollama.names)
    seconds = round(time.monotonic() - start, 1)
    model.stages["convert"] = convert_record(
        dest, request.dtype, scheme, source, seconds, quantization=summary
    )
    return ConvertOutcome(
        name=model.name, slug=slug, scheme=scheme, action="quantize", path=str(dest),
        detail=detail + _quality_note(result), seconds=seconds, quality=summary["quality"],
    )  # fmt: skip


def prequantized_repo(model: ModelPlan, scheme: str) -> str | None:
    target = model.target
    if target is not None and target.scheme == scheme and target.prequantized_repo:
        return target.prequantized_repo
    return model.hf.prequantized.get(scheme) if model.hf is not None else None


def fetch_prequantized(
    model: ModelPlan,
    scheme: str,
    repo: str,
    dest: Path,
    request: ConvertRequest,
    log: Log | None,
) -> ConvertOutcome:
    slug = dest.name
    detail = f"fetch the vetted pre-quantized {repo} (--quantize makes it locally instead)"
    if request.dry_run:
        return ConvertOutcome(
            name=model.name, slug=slug, scheme=scheme, action="fetch", path=str(dest),
            detail=detail,
        )  # fmt: skip
    assert model.vllm is not None
    if log:
        log(f"{model.name}: {detail}")
    start = time.monotonic()
    with StagingDir(
        request.out_root, slug, force=request.force, source_digest=model.ollama.model_digest,
        tool_versions={"ollama-vllm-migrate": __version__},
    ) as stage:  # fmt: skip
        fetched = fetch_hf_original(
            repo, stage.path, token=request.token, offline=request.offline,
            cache_dir=request.hf_cache, progress=False,
        )  # fmt: skip
        add_stop_tokens(stage.path / "generation_config.json", model.vllm.stop_token_ids)
        write_launch_config(stage.path, launch_settings(model), final_dir=stage.final)
        record = {"kind": "hf-prequantized", "repo": fetched.repo, "revision": fetched.revision}
        stage.set_extra(source=record, ollama_names=model.ollama.names)
    seconds = round(time.monotonic() - start, 1)
    # Vetted upstream, so no quality check here: `migrate validate` measures it.
    model.stages["convert"] = convert_record(dest, request.dtype, scheme, record, seconds)
    return ConvertOutcome(
        name=model.name, slug=slug, scheme=scheme, action="fetch", path=str(dest),
        detail=detail, seconds=seconds,
    )  # fmt: skip


def quantization_summary(result: QuantizeResult) -> dict[str, Any]:
    """What the manifest and the plan keep: everything but the file list."""
    return result.model_dump(mode="json", exclude={"files"})


def _base(plan: Plan, model: ModelPlan, request: ConvertRequest, log: Log | None) -> ConvertOutcome:
    """The bf16 base, reused when complete: --force redoes the quantized folder only."""
    return convert_model(plan, model, request.model_copy(update={"force": False}), log)


def _group_size(model: ModelPlan, scheme: str) -> int | None:
    if scheme not in W4A16_SCHEMES:
        return None  # fixed by the scheme (NVFP4: 16) or per channel (FP8, W8A8)
    if model.target is not None and model.target.scheme == scheme and model.target.group_size:
        return model.target.group_size
    assert model.gguf is not None
    return choose_group_size(model.gguf)[0]


def _calibration(request: ConvertRequest) -> tuple[Path | None, str | None]:
    """--calibration is a local JSONL file, or else a hub dataset id."""
    value = request.calibration
    if value is None:
        return None, None
    path = Path(value).expanduser()
    if path.exists() or value.endswith((".jsonl", ".json")):
        if not path.is_file():
            raise UsageError(f"calibration file {value} does not exist")
        return path, None
    if request.offline:
        raise UsageError(
            f"--calibration {value} is neither a file nor usable offline (a hub dataset)",
            hint="pass a local JSONL file",
        )
    return None, value


def _cache_dir(request: ConvertRequest) -> Path:
    if request.cache_dir is not None:
        return request.cache_dir
    from migrate.settings import load_settings

    return load_settings().cache_dir


def _quality_note(result: QuantizeResult) -> str:
    q = result.quality
    if q is None:
        return ""
    return f"; ppl x{q.ppl_ratio:.2f}, KL {q.mean_kl:.3f}, top-1 {q.top1_agreement:.0%}"
