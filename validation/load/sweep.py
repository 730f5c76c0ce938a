"""Both endpoints, one after the other, through the same sweep; then side by side.

The endpoints are measured one at a time so that neither steals the other's CPU or
GPU. Each gets the same prompts (the same seed), a warm-up, every concurrency level and
the agent loop. An endpoint that cannot be reached at the start raises (a setup
problem); one that goes away mid-run ends its sweep, and the report says so.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from pydantic import BaseModel

from validation.client import EndpointError, OpenAIClient
from validation.load.generator import ChatLoad, Progress, run_level, run_sequence
from validation.load.metrics import summarize, users_at_speed
from validation.load.prompts import PromptMaker, prompt_maker
from validation.load.schemas import (
    ComparisonRow,
    EndpointResult,
    LevelMetrics,
    LoadComparison,
    LoadSpec,
    Role,
)
from validation.load.stream import Endpoint

# (role, stage label, done, total or None, output tokens so far)
SweepProgress = Callable[[Role, str, int, int | None, int], None]
Log = Callable[[str], None]


class EndpointTarget(BaseModel):
    url: str
    model: str | None = None  # None: the first model the endpoint lists


async def compare_endpoints(
    source: EndpointTarget,
    target: EndpointTarget,
    spec: LoadSpec,
    progress: SweepProgress | None = None,
    log: Log | None = None,
) -> LoadComparison:
    sides: tuple[tuple[Role, EndpointTarget], ...] = (("source", source), ("target", target))
    clients = {role: OpenAIClient(wanted.url) for role, wanted in sides}
    try:
        models: dict[Role, str] = {}
        for role, wanted in sides:
            models[role] = await _check_model(clients[role], wanted.model)
            await clients[role].detect()
        if log:
            log(
                " vs ".join(
                    f"{role} {wanted.url} ({models[role]}, {clients[role].kind})"
                    for role, wanted in sides
                )
            )
        # vLLM's tokenizer is the HF one: prefer it for sizing prompts.
        maker = await prompt_maker(
            [(clients["target"], models["target"]), (clients["source"], models["source"])]
        )
        if log and not maker.exact:
            log("no endpoint can tokenize: input lengths are estimated at one token per word")
        results: dict[Role, EndpointResult] = {}
        for role, wanted in sides:
            results[role] = await measure_endpoint(
                role, wanted.url, models[role], clients[role].kind, spec, maker, progress, log
            )
    finally:
        for client in clients.values():
            await client.aclose()
    return side_by_side(spec, maker.measured_by, results["source"], results["target"])


async def _check_model(client: OpenAIClient, wanted: str | None) -> str:
    listed = [str(m.get("id")) for m in await client.models()]  # unreachable: raises
    if wanted is None:
        if not listed:
            raise EndpointError(f"{client.base_url} serves no model")
        return listed[0]
    return wanted


async def measure_endpoint(
    role: Role,
    url: str,
    model: str,
    server: str,
    spec: LoadSpec,
    maker: PromptMaker,
    progress: SweepProgress | None = None,
    log: Log | None = None,
) -> EndpointResult:
    rng = random.Random(spec.seed)  # both endpoints get the same prompts, in the same order

    def next_prompt() -> str:
        return maker.make(spec.input_tokens, rng)

    def reporter(label: str) -> Progress | None:
        if progress is None:
            return None
        return lambda done, total, tokens: progress(role, label, done, total, tokens)

    endpoint = Endpoint(url)
    load = ChatLoad(endpoint, model, spec.output_tokens, spec.timeout)
    result = EndpointResult(role=role, url=url, model=model, server=server, output_length="chunks")
    try:
        if spec.warmup:
            warm = await run_level(
                load,
                next_prompt,
                concurrency=1,
                requests=spec.warmup,
                duration=None,
                progress=reporter("warm-up"),
            )
            result.aborted = warm.aborted
        for concurrency in spec.concurrency:
            if result.aborted:
                break
            if log:
                log(f"{role} {url}: concurrency {concurrency}")
            run = await run_level(
                load,
                next_prompt,
                concurrency=concurrency,
                requests=spec.requests_at(concurrency),
                duration=spec.duration,
                rate=spec.rate,
                arrival=spec.arrival,
                rng=random.Random(spec.seed + concurrency),
                progress=reporter(f"concurrency {concurrency}"),
            )
            result.levels.append(
                summarize(
                    run.outcomes,
                    concurrency=concurrency,
                    duration_s=run.duration_s,
                    max_in_flight=run.max_in_flight,
                    rate=spec.rate,
                    slo_ttft_ms=spec.slo_ttft_ms,
                    slo_tpot_ms=spec.slo_tpot_ms,
                )
            )
            result.aborted = run.aborted
        if spec.agent_steps and not result.aborted:
            if log:
                log(f"{role} {url}: agent loop of {spec.agent_steps} sequential requests")
            seconds, errors = await run_sequence(load, next_prompt, spec.agent_steps)
            result.agent_loop_s, result.agent_loop_errors = round(seconds, 3), errors
    finally:
        await endpoint.aclose()
    result.users_at_tps = users_at_speed(result.levels, spec.users_at_tps, spec.slo_ttft_ms)
    result.output_length = "usage" if _usage_seen(result.levels) else "chunks"
    if log and result.aborted:
        log(f"{role} {url}: stopped early: {result.aborted}")
    return result


def _usage_seen(levels: list[LevelMetrics]) -> bool:
    # Servers that send a usage chunk report prompt tokens; chunk counting cannot.
    return any(level.input_tokens > 0 for level in levels)


def side_by_side(
    spec: LoadSpec, measured_by: str, source: EndpointResult, target: EndpointResult
) -> LoadComparison:
    by_level = {
        c: (
            next((lv for lv in source.levels if lv.concurrency == c), None),
            next((lv for lv in target.levels if lv.concurrency == c), None),
        )
        for c in spec.concurrency
    }
    rows = []
    for concurrency, (src, tgt) in by_level.items():
        src_tps = src.output_tokens_per_s if src and src.completed else None
        tgt_tps = tgt.output_tokens_per_s if tgt and tgt.completed else None
        src_ttft, tgt_ttft = (src.ttft_ms.p95 if src else None), (tgt.ttft_ms.p95 if tgt else None)
        src_tpot, tgt_tpot = (src.tpot_ms.p95 if src else None), (tgt.tpot_ms.p95 if tgt else None)
        rows.append(
            ComparisonRow(
                concurrency=concurrency,
                source_output_tps=src_tps,
                target_output_tps=tgt_tps,
                throughput_ratio=ratio(tgt_tps, src_tps),
                source_p95_ttft_ms=src_ttft,
                target_p95_ttft_ms=tgt_ttft,
                ttft_ratio=ratio(src_ttft, tgt_ttft),
                source_p95_tpot_ms=src_tpot,
                target_p95_tpot_ms=tgt_tpot,
                tpot_ratio=ratio(src_tpot, tgt_tpot),
                source_errors=src.errors if src else None,
                target_errors=tgt.errors if tgt else None,
            )
        )
    return LoadComparison(
        spec=spec,
        prompt_tokens_measured_by=measured_by,
        source=source,
        target=target,
        rows=rows,
        users_ratio=ratio(target.users_at_tps, source.users_at_tps),
        agent_loop_ratio=ratio(source.agent_loop_s, target.agent_loop_s),
    )


def ratio(better_if_larger: float | int | None, other: float | int | None) -> float | None:
    if better_if_larger is None or other is None or other == 0:
        return None
    return round(better_if_larger / other, 2)
