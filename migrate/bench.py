"""`migrate bench`: the Ollama endpoint and the vLLM endpoint side by side under load.

Endpoints and model names come from the flags, else from the plan: the source is
OLLAMA_HOST (default 127.0.0.1:11434) serving the model's Ollama name, the target is the
URL `migrate serve` recorded, serving the model's first vLLM name. Without a plan file,
`--target` is required and each side benchmarks `--model` or the first model it lists.
The load itself is `validation.load`; this module picks what to measure and where the
outputs go, and records a summary in the plan.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import BaseModel

from converters.errors import NothingToDoError, UsageError
from migrate.plan.schema import ModelPlan, Plan, read_plan, write_plan
from migrate.validate import DEFAULT_OLLAMA_URL
from validation.load.report import write_outputs
from validation.load.schemas import LoadComparison, LoadSpec
from validation.load.sweep import EndpointTarget, Log, SweepProgress, compare_endpoints


class BenchRequest(BaseModel):
    plan_path: Path
    plan_given: bool = False  # an explicit --plan must exist; the default one may not
    source_url: str | None = None  # default: OLLAMA_HOST, else Ollama's default address
    target_url: str | None = None  # default: the URL `migrate serve` recorded in the plan
    model: str | None = None
    spec: LoadSpec = LoadSpec()
    out_dir: Path = Path("bench-report")


class BenchResult(BaseModel):
    comparison: LoadComparison
    outputs: dict[str, str]  # kind (json, csv, html, png) -> path


def run_bench(
    request: BenchRequest,
    default_source: str | None,
    log: Log | None = None,
    progress: SweepProgress | None = None,
) -> BenchResult:
    use_plan = request.plan_given or request.plan_path.is_file()
    plan = read_plan(request.plan_path) if use_plan else None
    model = pick_model(plan, request) if plan else None
    source, target = endpoints(model, request, default_source)
    comparison = asyncio.run(compare_endpoints(source, target, request.spec, progress, log))
    outputs = write_outputs(comparison, request.out_dir)
    if plan is not None and model is not None:
        model.stages["bench"] = {
            "report": outputs["html"],
            "users_at_tps": {
                "tokens_per_s": request.spec.users_at_tps,
                "source": comparison.source.users_at_tps,
                "target": comparison.target.users_at_tps,
            },
            "max_throughput_ratio": max(
                (r.throughput_ratio for r in comparison.rows if r.throughput_ratio), default=None
            ),
        }
        write_plan(plan, request.plan_path)
    return BenchResult(comparison=comparison, outputs=outputs)


def pick_model(plan: Plan, request: BenchRequest) -> ModelPlan | None:
    """The model to measure: --model, else the first one `migrate serve` started."""
    if request.model:
        found = plan.find(request.model)
        if found is None and request.target_url is None:
            raise UsageError(
                f"{request.model} is not in {request.plan_path}",
                hint="name a model of the plan, or pass --target URL",
            )
        return found
    served = [m for m in plan.models if (m.stages.get("serve") or {}).get("url")]
    return served[0] if served else None


def endpoints(
    model: ModelPlan | None, request: BenchRequest, default_source: str | None
) -> tuple[EndpointTarget, EndpointTarget]:
    target_url = request.target_url or (
        (model.stages.get("serve") or {}).get("url") if model else None
    )
    if target_url is None:
        raise NothingToDoError(
            "no vLLM endpoint to benchmark", hint="run `migrate serve` or pass --target URL"
        )
    source_url = request.source_url or default_source or DEFAULT_OLLAMA_URL
    if model is None:
        return (
            EndpointTarget(url=source_url, model=request.model),
            EndpointTarget(url=target_url, model=request.model),
        )
    target_names = model.vllm.served_model_names if model.vllm else [model.name]
    return (
        EndpointTarget(url=source_url, model=model.ollama.names[0]),
        EndpointTarget(url=target_url, model=target_names[0]),
    )
