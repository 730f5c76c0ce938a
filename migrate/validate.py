"""`migrate validate`: prove the swap is safe, model by model.

For each served model: the API contract a client relies on, the rendered prompt, and
output parity on a prompt suite, between the Ollama endpoint (source) and the vLLM
endpoint (target). Each model gets PASS / WARN / FAIL with its reasons; the report is
written as JSON and as one self-contained HTML file, and the verdict goes into the plan.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from converters.errors import NothingToDoError, UsageError
from migrate import __version__
from migrate.plan.schema import ModelPlan, read_plan, write_plan
from validation.checks import Check
from validation.client import OpenAIClient
from validation.contract import CHECK_NAMES, ContractSettings, check_contract
from validation.parity import ParityResult, measure_parity
from validation.pieces import PieceVocab
from validation.rendering import check_rendering
from validation.report import write_report
from validation.suite import load_suite
from validation.thresholds import thresholds_for, verdict_for

Verdict = Literal["PASS", "WARN", "FAIL"]
Log = Callable[[str], None]
DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"


class ValidateRequest(BaseModel):
    plan_path: Path
    source_url: str | None = None  # default: OLLAMA_HOST, else Ollama's default address
    target_url: str | None = None  # default: the URL `migrate serve` recorded in the plan
    models: list[str] = Field(default_factory=list)
    suite: Path | None = None
    max_prompts: int | None = None
    max_tokens: int | None = None
    concurrency: int = 8
    report_dir: Path = Path("validation-report")
    source_context: int | None = None  # Ollama's num_ctx, when the plan's is not it
    checks: list[str] = Field(default_factory=list)  # only these (VALIDATION_CHECKS); []: all


# Every check `--check` can name: the contract's, prompt rendering, and output parity.
VALIDATION_CHECKS = (*CHECK_NAMES, "rendering", "parity")


class ModelReport(BaseModel):
    name: str
    scheme: str
    source: str
    target: str
    verdict: Verdict
    reasons: list[str]
    checks: list[Check]
    parity: ParityResult | None = None
    seconds: float


class ValidationReport(BaseModel):
    tool: str
    suite: str
    prompts: int
    models: list[ModelReport]
    json_path: str | None = None
    html_path: str | None = None

    @property
    def verdict(self) -> Verdict:
        return worst_verdict(m.verdict for m in self.models)


def worst_verdict(verdicts: Any) -> Verdict:
    order = {"PASS": 0, "WARN": 1, "FAIL": 2}
    result: Verdict = "PASS"
    for verdict in verdicts:
        if order[verdict] > order[result]:
            result = verdict
    return result


Progress = Callable[[str, int, int], None]  # (model, prompts done, prompts in all)


def run_validation(
    request: ValidateRequest,
    default_source: str | None,
    log: Log | None = None,
    progress: Progress | None = None,
) -> ValidationReport:
    unknown = sorted(set(request.checks) - set(VALIDATION_CHECKS))
    if unknown:
        raise UsageError(
            f"unknown check {unknown[0]!r}", hint=f"use one of: {', '.join(VALIDATION_CHECKS)}"
        )
    plan = read_plan(request.plan_path)
    targets = select(plan.models, request)
    prompts = load_suite(request.suite)
    if request.max_prompts:
        prompts = prompts[: request.max_prompts]
    source_url = request.source_url or default_source or DEFAULT_OLLAMA_URL
    reports = []
    for model, target_url in targets:
        if log:
            log(
                f"{model.name}: validating {source_url} (source) against {target_url} (target), {len(prompts)} prompts"
            )
        report = asyncio.run(
            validate_model(model, source_url, target_url, prompts, request, progress)
        )
        reports.append(report)
        model.stages["validate"] = {
            "verdict": report.verdict,
            "reasons": report.reasons,
            "target": target_url,
        }
        if log:
            log(
                f"{model.name}: {report.verdict}"
                + (f" ({'; '.join(report.reasons)})" if report.reasons else "")
            )
    result = ValidationReport(
        tool=f"ollama-vllm-migrate {__version__}",
        suite=str(request.suite or "built-in"),
        prompts=len(prompts),
        models=reports,
    )
    json_path, html_path = write_report(result.model_dump(mode="json"), request.report_dir)
    result.json_path, result.html_path = str(json_path), str(html_path)
    for model, _ in targets:
        model.stages["validate"]["report"] = str(html_path)
    write_plan(plan, request.plan_path)
    return result


def select(models: list[ModelPlan], request: ValidateRequest) -> list[tuple[ModelPlan, str]]:
    chosen = []
    for model in models:
        names = {model.name, model.slug, *model.ollama.names}
        if request.models and not names & set(request.models):
            continue
        url = request.target_url or (model.stages.get("serve") or {}).get("url")
        if url is None:
            if request.models:
                raise UsageError(
                    f"{model.name}: no target URL", hint="run `migrate serve` or pass --target URL"
                )
            continue
        chosen.append((model, url))
    if not chosen:
        raise NothingToDoError(
            "no served model to validate", hint="run `migrate serve` or pass --target URL"
        )
    return chosen


def scheme_of(model: ModelPlan) -> str:
    convert = model.stages.get("convert") or {}
    return str(
        convert.get("scheme_written") or (model.target.scheme if model.target else None) or "bf16"
    )


async def validate_model(
    model: ModelPlan,
    source_url: str,
    target_url: str,
    prompts: list[Any],
    request: ValidateRequest,
    progress: Progress | None = None,
) -> ModelReport:
    start = time.monotonic()
    vllm = model.vllm
    assert vllm is not None
    names = vllm.served_model_names
    source_name = model.ollama.names[0]
    folder = Path((model.stages.get("convert") or {}).get("path", ""))
    settings = ContractSettings(
        source_model=source_name,
        target_model=names[0],
        source_names=model.ollama.names,
        max_model_len=vllm.max_model_len,
        source_context=request.source_context or vllm.max_model_len,
        sampling_defaults=vllm.generation_config,
        stop=vllm.stop,
        stop_token_ids=vllm.stop_token_ids,
        checks=[c for c in request.checks if c in CHECK_NAMES] or None,
    )
    wanted = set(request.checks) or set(VALIDATION_CHECKS)
    async with OpenAIClient(source_url) as source, OpenAIClient(target_url) as target:
        # An endpoint that cannot be reached at all is a setup problem, not a FAIL verdict.
        await source.models()
        await target.models()
        await source.detect()
        await target.detect()
        checks: list[Check] = []
        if wanted & set(CHECK_NAMES):
            checks += await check_contract(source, target, names, settings)
        if "rendering" in wanted:
            limits = thresholds_for(scheme_of(model))
            checks += await check_rendering(
                source,
                target,
                [source_name, names[0]],
                near_tie_nats=limits.first_token_nats,
                first_token_differs=limits.first_token_differs,
            )
        parity = None
        reasons = [f"{c.name}: {c.detail}" for c in checks if c.status != "pass"]
        verdict: Verdict = worst_verdict(
            {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}[c.status] for c in checks
        )
        vocab_file = folder / "tokenizer.json"
        if "parity" in wanted and vocab_file.is_file():
            parity = await measure_parity(
                source,
                target,
                source_name,
                prompts,
                max_tokens=request.max_tokens,
                concurrency=request.concurrency,
                vocab=PieceVocab.from_folder(folder),
                target_model=names[0],
                progress=(lambda done, total: progress(model.name, done, total))
                if progress
                else None,
            )
            parity_verdict, parity_reasons = verdict_for(parity, scheme_of(model))
            verdict = worst_verdict([verdict, parity_verdict])
            reasons += [f"parity: {r}" for r in parity_reasons]
        elif "parity" in wanted:
            verdict = worst_verdict([verdict, "WARN"])
            reasons.append(f"parity not measured: no tokenizer.json in {folder} to align token ids")
    emulated = bool((model.stages.get("serve") or {}).get("emulated"))
    return ModelReport(
        name=model.name,
        # Judged with the scheme's own thresholds; the label says what was served.
        scheme=scheme_of(model) + (" (bf16 emulation)" if emulated else ""),
        source=source_url,
        target=target_url,
        verdict=verdict,
        reasons=reasons,
        checks=checks,
        parity=parity,
        seconds=round(time.monotonic() - start, 1),
    )
