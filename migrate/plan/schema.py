"""The plan file: the contract between stages.

`migrate plan` writes it; every later stage reads it and adds its own section under
`ModelPlan.stages`, so any stage can be rerun or resumed alone. The file is deterministic
for the same inputs (no timestamps, sorted models) so reruns diff cleanly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from converters.errors import PlanError
from converters.files import write_text_atomic
from converters.gguf.info import GGUFInfo
from migrate.mapping.schema import MappingResult
from migrate.plan.vllm_settings import VllmSettings
from migrate.targets.choose import Hardware, TargetChoice

SCHEMA_VERSION = 1


class OllamaSummary(BaseModel):
    """The Ollama side of one model, enough to find it again and to explain it."""

    names: list[str]  # every tag that points at this same model
    format: str
    model_digest: str | None = None  # the weights blob: "sha256:..."
    model_path: str | None = None  # on disk, when read from disk
    size_bytes: int = 0
    layers: list[str] = Field(default_factory=list)  # layer kinds, in manifest order
    params: dict[str, Any] = Field(default_factory=dict)
    system: str | None = None
    template: str | None = None
    messages: list[dict[str, Any]] = Field(default_factory=list)


class ModelPlan(BaseModel):
    name: str  # the primary Ollama name
    slug: str  # file-system safe, unique within the plan
    status: Literal["ready", "blocked"]  # blocked: cannot be migrated as planned
    problems: list[str] = Field(default_factory=list)
    ollama: OllamaSummary
    gguf: GGUFInfo | None = None
    hf: MappingResult | None = None
    target: TargetChoice | None = None
    vllm: VllmSettings | None = None
    stages: dict[str, Any] = Field(default_factory=dict)  # later stages add their results


class PlanSource(BaseModel):
    kind: Literal["disk", "api"]
    location: str  # the models dir or the Ollama URL


class Plan(BaseModel):
    schema_version: int = SCHEMA_VERSION
    tool: str
    source: PlanSource
    hardware: Hardware
    concurrency: int
    models: list[ModelPlan] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)  # store-level, one line each

    def find(self, name: str) -> ModelPlan | None:
        for model in self.models:
            if name == model.name or name == model.slug or name in model.ollama.names:
                return model
            if model.vllm and name in model.vllm.served_model_names:
                return model
        return None


def dump_plan(plan: Plan) -> str:
    return json.dumps(plan.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"


def write_plan(plan: Plan, path: Path) -> None:
    """Atomic: a crash leaves the old plan or the new one, never half of one."""
    write_text_atomic(path, dump_plan(plan))


def read_plan(path: Path) -> Plan:
    if not path.is_file():
        raise PlanError(
            f"no plan file at {path}", hint="run `migrate plan` first or pass --plan FILE"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanError(
            f"plan file {path} is not readable JSON: {exc}", hint="rerun `migrate plan`"
        ) from exc
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise PlanError(
            f"plan file {path} has schema version {version!r}, this toolkit reads {SCHEMA_VERSION}",
            hint="rerun `migrate plan` with this version",
        )
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PlanError(
            f"plan file {path} is invalid at {where}: {first['msg']}", hint="rerun `migrate plan`"
        ) from exc
