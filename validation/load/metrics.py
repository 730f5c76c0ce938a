"""Per-level metrics, with the definitions of vLLM's own serving benchmark.

- TTFT: request sent -> first chunk carrying generated text.
- TPOT: (E2E - TTFT) / (output tokens - 1), per request with more than one token.
- ITL: every gap between consecutive text-bearing chunks, pooled over requests.
- E2E: request sent -> last text-bearing chunk.
- Output tokens/s and requests/s: over the level's wall time, first send to last answer.
- Goodput: requests/s of completed requests within every SLO given (TPOT counted as 0
  for one-token answers, as vLLM does).
Percentiles use numpy's default (linear interpolation), as vLLM does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from validation.load.schemas import LevelMetrics, Percentiles


@dataclass(slots=True)
class RequestOutcome:
    """One request as the load generator saw it; times in seconds."""

    ttft: float | None = None
    e2e: float | None = None
    itl: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int = 0
    error: str | None = None

    @property
    def tpot(self) -> float | None:
        if self.error or self.ttft is None or self.e2e is None or self.output_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)


def percentiles_ms(values: list[float]) -> Percentiles:
    if not values:
        return Percentiles()
    array = np.asarray(values) * 1000.0
    p50, p90, p95, p99 = np.percentile(array, [50, 90, 95, 99])
    return Percentiles(
        mean=_r(float(array.mean())), p50=_r(p50), p90=_r(p90), p95=_r(p95), p99=_r(p99)
    )


def summarize(
    outcomes: list[RequestOutcome],
    *,
    concurrency: int,
    duration_s: float,
    max_in_flight: int,
    rate: float | None = None,
    slo_ttft_ms: float | None = None,
    slo_tpot_ms: float | None = None,
) -> LevelMetrics:
    done = [o for o in outcomes if o.error is None]
    errors = len(outcomes) - len(done)
    output = sum(o.output_tokens for o in done)
    wall = max(duration_s, 1e-9)
    goodput = None
    if slo_ttft_ms is not None or slo_tpot_ms is not None:
        good = sum(1 for o in done if _within(o, slo_ttft_ms, slo_tpot_ms))
        goodput = _r(good / wall)
    reasons = Counter(o.error for o in outcomes if o.error)
    return LevelMetrics(
        concurrency=concurrency,
        rate=rate,
        requests=len(outcomes),
        completed=len(done),
        errors=errors,
        error_rate=_r(errors / len(outcomes)) if outcomes else 0.0,
        duration_s=_r(duration_s),
        input_tokens=sum(o.prompt_tokens for o in done),
        output_tokens=output,
        mean_output_tokens=_r(output / len(done)) if done else None,
        output_tokens_per_s=_r(output / wall),
        requests_per_s=_r(len(done) / wall),
        goodput_per_s=goodput,
        max_in_flight=max_in_flight,
        ttft_ms=percentiles_ms([o.ttft for o in done if o.ttft is not None]),
        tpot_ms=percentiles_ms([t for o in done if (t := o.tpot) is not None]),
        itl_ms=percentiles_ms([gap for o in done for gap in o.itl]),
        e2e_ms=percentiles_ms([o.e2e for o in done if o.e2e is not None]),
        error_samples=[f"{count} x {reason}" for reason, count in reasons.most_common(3)],
    )


def _within(outcome: RequestOutcome, slo_ttft_ms: float | None, slo_tpot_ms: float | None) -> bool:
    if slo_ttft_ms is not None and (outcome.ttft is None or outcome.ttft * 1000 > slo_ttft_ms):
        return False
    tpot = outcome.tpot or 0.0  # one-token answers: vLLM counts TPOT as 0
    return slo_tpot_ms is None or tpot * 1000 <= slo_tpot_ms


def users_at_speed(
    levels: list[LevelMetrics], tokens_per_s: float, ttft_limit_ms: float | None = None
) -> int | None:
    """The largest concurrency whose p95 TPOT is at or under 1000/N ms, with no errors.

    A server that queues requests (Ollama's default, llama.cpp's server) keeps TPOT low
    while its users wait ever longer for a first token; with `ttft_limit_ms` (the TTFT
    SLO) a level also needs its p95 TTFT within it.
    """
    limit_ms = 1000.0 / tokens_per_s
    fit = [
        level.concurrency
        for level in levels
        if level.completed
        and not level.errors
        and level.tpot_ms.p95 is not None
        and level.tpot_ms.p95 <= limit_ms
        and (ttft_limit_ms is None or (level.ttft_ms.p95 or 0.0) <= ttft_limit_ms)
    ]
    return max(fit) if fit else None


def _r(value: float) -> float:
    return round(float(value), 3)
