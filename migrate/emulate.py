"""`migrate serve --emulate`: serve a scheme the hardware has no kernels for (NVFP4 off
Blackwell) as its bf16 emulation, so `migrate validate` can measure its quality here.

The emulated folder, `<slug>-<scheme>-emulated` beside the quantized one, holds the
quantized weights decompressed to bf16 (made once, in the llm-compressor runtime); the
plan's thresholds for the scheme still apply. Activations stay 16-bit: for NVFP4 (W4A4)
this emulates the weights only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from converters.errors import UsageError
from converters.launch_config import write_launch_config
from converters.output import StagingDir, is_complete
from converters.quantize.emulate import emulate_checkpoint
from migrate import __version__
from migrate.convert import launch_settings
from migrate.plan.schema import ModelPlan
from migrate.runtimes import resolve_python

SUFFIX = "-emulated"


def emulated_path(stage: dict[str, Any]) -> Path:
    quantized = Path(stage["path"])
    return quantized.parent / f"{quantized.name}{SUFFIX}"


def base_folder(model: ModelPlan, stage: dict[str, Any]) -> Path:
    source = stage.get("source") or {}
    base = source.get("base") if source.get("kind") == "quantized" else None
    if not base:
        raise UsageError(
            f"{model.name}: emulation needs the bf16 base the quantized folder was made from",
            hint="convert it locally: `migrate convert --scheme SCHEME --quantize`",
        )
    return Path(base)


def ensure_emulated(model: ModelPlan, cache_dir: Path, llmcompressor_python: Path | None) -> Path:
    """The emulated folder for the model's converted scheme, made when missing."""
    stage = model.stages["convert"]
    dest = emulated_path(stage)
    if is_complete(dest):
        return dest
    quantized = Path(stage["path"])
    base = base_folder(model, stage)
    python = resolve_python(
        cache_dir, ["llmcompressor"], llmcompressor_python, "--llmcompressor-python"
    )
    with StagingDir(
        dest.parent,
        dest.name,
        force=True,  # an incomplete leftover is replaced
        source_digest=model.ollama.model_digest,
        tool_versions={"ollama-vllm-migrate": __version__},
    ) as staging:
        emulate_checkpoint(
            quantized,
            base,
            staging.path,
            python=python,
            log_path=cache_dir / "logs" / f"emulate-{dest.name}.log",
        )
        write_launch_config(staging.path, launch_settings(model), final_dir=staging.final)
        staging.set_extra(
            source={"kind": "emulated", "quantized": str(quantized)},
            scheme=stage.get("scheme_written"),
            ollama_names=model.ollama.names,
        )
    return dest
