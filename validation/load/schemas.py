"""What a load run is asked to do and what it measured, as pydantic schemas.

Times are milliseconds in the results and seconds in the spec, as in vLLM's benchmark
output. Metric definitions are in `validation/load/metrics.py`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

Arrival = Literal["constant", "poisson"]
Role = Literal["source", "target"]


class LoadSpec(BaseModel):
    """One sweep, the same for both endpoints."""

    concurrency: list[int] = Field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    rate: float | None = Field(default=None, gt=0)  # requests/s; None: as fast as slots free
    arrival: Arrival = "constant"
    input_tokens: int = Field(default=128, ge=1)
    output_tokens: int = Field(default=128, ge=1)
    requests: int | None = Field(default=None, ge=1)  # per level; None: 2 x concurrency, >= 8
    duration: float | None = Field(default=None, gt=0)  # per level, seconds, instead of a count
    warmup: int = Field(default=1, ge=0)
    timeout: float = Field(default=300.0, gt=0)  # per request
    slo_ttft_ms: float | None = Field(default=None, gt=0)
    slo_tpot_ms: float | None = Field(default=None, gt=0)
    users_at_tps: float = Field(default=30.0, gt=0)
    agent_steps: int = Field(default=20, ge=0)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> LoadSpec:
        if not self.concurrency or min(self.concurrency) < 1:
            raise ValueError("concurrency levels must be integers >= 1")
        if self.requests is not None and self.duration is not None:
            raise ValueError("give a request count or a duration, not both")
        self.concurrency = sorted(set(self.concurrency))
        return self

    def requests_at(self, concurrency: int) -> int | None:
        """Requests to send at one level (None: as many as `duration` allows)."""
        if self.duration is not None:
            return None
        return self.requests if self.requests is not None else max(8, 2 * concurrency)


class Percentiles(BaseModel):
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None


class LevelMetrics(BaseModel):
    """One concurrency level on one endpoint."""

    concurrency: int
    rate: float | None = None
    requests: int
    completed: int
    errors: int
    error_rate: float
    duration_s: float
    input_tokens: int  # as the server counted them (usage), summed over completed requests
    output_tokens: int
    mean_output_tokens: float | None
    output_tokens_per_s: float
    requests_per_s: float
    goodput_per_s: float | None = None  # requests/s meeting every SLO given
    max_in_flight: int
    ttft_ms: Percentiles
    tpot_ms: Percentiles
    itl_ms: Percentiles
    e2e_ms: Percentiles
    error_samples: list[str] = Field(default_factory=list)


class EndpointResult(BaseModel):
    role: Role
    url: str
    model: str
    server: str  # vllm, llamacpp, ollama or unknown
    output_length: str  # how output tokens were counted: "usage" or "chunks"
    levels: list[LevelMetrics] = Field(default_factory=list)
    users_at_tps: int | None = None
    agent_loop_s: float | None = None
    agent_loop_errors: int = 0
    aborted: str | None = None  # why the sweep stopped early (the server went away)


class ComparisonRow(BaseModel):
    """One concurrency level, both endpoints. Ratios > 1 mean the target is better."""

    concurrency: int
    source_output_tps: float | None
    target_output_tps: float | None
    throughput_ratio: float | None
    source_p95_ttft_ms: float | None
    target_p95_ttft_ms: float | None
    ttft_ratio: float | None
    source_p95_tpot_ms: float | None
    target_p95_tpot_ms: float | None
    tpot_ratio: float | None
    source_errors: int | None
    target_errors: int | None


class LoadComparison(BaseModel):
    spec: LoadSpec
    prompt_tokens_measured_by: str  # which endpoint's tokenizer sized the prompts, or "estimate"
    source: EndpointResult
    target: EndpointResult
    rows: list[ComparisonRow]
    users_ratio: float | None = None
    agent_loop_ratio: float | None = None
