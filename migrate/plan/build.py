"""Build a plan: inventory -> GGUF metadata -> HF mapping -> target -> vLLM settings."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from converters.errors import MigrateError, NothingToDoError
from converters.gguf.header import gguf_info_from_kv, read_gguf_info
from converters.gguf.info import GGUFInfo
from converters.hf_rebuild.names import SUPPORTED_ARCHITECTURES
from migrate import __version__
from migrate.mapping.resolve import resolve_hf
from migrate.ollama.api import scan_api
from migrate.ollama.records import OllamaModel
from migrate.ollama.store import scan_store
from migrate.plan.ollama_defaults import OllamaDefaults
from migrate.plan.schema import ModelPlan, OllamaSummary, Plan, PlanSource
from migrate.plan.vllm_settings import vllm_settings
from migrate.targets.choose import Hardware, choose_target


class PlanRequest(BaseModel):
    """Everything `migrate plan` needs, already resolved from flags and settings."""

    models_dir: Path | None = None  # read the store from disk ...
    ollama_url: str | None = None  # ... or over Ollama's API
    verify: bool = False
    hardware: Hardware
    concurrency: int = 1
    scheme: str | None = None
    only: list[str] = Field(default_factory=list)  # limit to these names
    overrides: dict[str, str] = Field(default_factory=dict)  # --map NAME=org/repo
    defaults: OllamaDefaults = Field(default_factory=OllamaDefaults)
    chat_template: Literal["ollama", "gguf"] = "ollama"  # which wins when they differ


Progress = Callable[[str], None]


def build_plan(request: PlanRequest, progress: Progress | None = None) -> Plan:
    if request.ollama_url:
        source = PlanSource(kind="api", location=request.ollama_url)
        records = scan_api(request.ollama_url)
    elif request.models_dir is not None:
        models_dir = request.models_dir.absolute()
        source = PlanSource(kind="disk", location=str(models_dir))
        records = scan_store(models_dir, verify=request.verify)
    else:
        raise ValueError("PlanRequest needs models_dir or ollama_url")
    if request.only:
        records = [r for r in records if _matches(r, request.only)]
        if not records:
            raise NothingToDoError(f"no model named {', '.join(request.only)} in {source.location}")
    plan = Plan(
        tool=f"ollama-vllm-migrate {__version__}",
        source=source,
        hardware=request.hardware,
        concurrency=request.concurrency,
    )
    slugs: set[str] = set()
    for group in group_aliases(records):
        if progress:
            progress(group[0].name.display)
        model_plan = plan_model(group, request)
        model_plan.slug = unique_slug(model_plan.name, slugs)
        plan.models.append(model_plan)
    return plan


def _matches(record: OllamaModel, names: list[str]) -> bool:
    display = record.name.display
    bare = display.removesuffix(":latest")
    return any(n in (display, bare, record.name.model) for n in names)


def group_aliases(records: list[OllamaModel]) -> list[list[OllamaModel]]:
    """Tags that share weights and every behaviour layer are one model with several names."""
    groups: dict[str, list[OllamaModel]] = {}
    for record in records:
        groups.setdefault(_behaviour_key(record), []).append(record)
    return sorted(groups.values(), key=lambda g: g[0].name.display)


def _behaviour_key(record: OllamaModel) -> str:
    weights = record.model_layer.digest if record.model_layer else f"name:{record.name.display}"
    if not record.migratable:
        weights = f"name:{record.name.display}"  # never merge broken records
    extra = sorted(
        layer.digest for layer in record.layers if layer.kind in ("adapter", "projector")
    )
    payload = [weights, record.template, record.system, record.params, record.messages, extra]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def plan_model(group: list[OllamaModel], request: PlanRequest) -> ModelPlan:
    primary = group[0]
    layer = primary.model_layer
    summary = OllamaSummary(
        names=[r.name.display for r in group],
        format=primary.format,
        model_digest=layer.digest if layer else None,
        model_path=layer.blob_path if layer else None,
        size_bytes=primary.size_bytes,
        layers=[item.kind for item in primary.layers],
        params=primary.params,
        system=primary.system,
        template=primary.template,
        messages=primary.messages,
    )
    model_plan = ModelPlan(name=primary.name.display, slug="", status="blocked", ollama=summary)
    model_plan.problems.extend(primary.problems)
    if not primary.migratable:
        return model_plan
    if primary.format != "gguf":
        model_plan.problems.append(
            f"{primary.name.display}: {primary.format}-format Ollama models are not supported yet"
        )
        return model_plan
    try:
        info = model_gguf_info(primary)
    except MigrateError as exc:
        model_plan.problems.append(f"{primary.name.display}: {exc.one_line()}")
        return model_plan
    model_plan.gguf = info
    mapping = resolve_hf(primary, info, request.overrides)
    model_plan.hf = mapping
    if mapping.repo is None and info.architecture not in SUPPORTED_ARCHITECTURES:
        model_plan.problems.append(
            f"{primary.name.display}: no HF original known and architecture "
            f"{info.architecture} cannot be rebuilt from GGUF (supported: "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}); map it with --map NAME=org/repo"
        )
        return model_plan
    hardware = request.hardware
    dtype = (
        "float16"
        if hardware.compute_capability and hardware.compute_capability < 8.0
        else "bfloat16"
    )
    settings = vllm_settings(group, info, mapping, request.defaults, dtype, request.chat_template)
    model_plan.vllm = settings
    target = choose_target(
        info,
        hardware,
        settings.max_model_len,
        request.concurrency,
        forced_scheme=request.scheme,
        prequantized=mapping.prequantized,
    )
    model_plan.target = target
    if target.scheme is None:
        model_plan.problems.append(f"{primary.name.display}: {target.reason}")
        return model_plan
    model_plan.status = "ready"
    return model_plan


def model_gguf_info(record: OllamaModel) -> GGUFInfo:
    """From the blob on disk, or from what /api/show reported when read over the API."""
    layer = record.model_layer
    if layer is not None and layer.blob_path:
        return read_gguf_info(Path(layer.blob_path))
    return gguf_info_from_kv(record.api_model_info)


_UNSAFE = re.compile(r"[^a-z0-9._-]+")


def unique_slug(name: str, taken: set[str]) -> str:
    """A folder name safe from path tricks (`..`, `/`, NUL), unique within the plan."""
    slug = _UNSAFE.sub("-", name.lower()).strip("-.") or "model"
    slug = slug[:80]
    if slug in taken:
        slug = f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    taken.add(slug)
    return slug


def count_ready(plan: Plan) -> int:
    return sum(1 for m in plan.models if m.status == "ready")
