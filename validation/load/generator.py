"""The load generator: streaming chat requests at a concurrency level, or at a rate.

Each level sends its requests with at most `concurrency` in flight (vLLM's
`--max-concurrency`); with a rate, sends are also spaced at constant or exponential
(Poisson) intervals. A level is bounded by its request count or its duration, and every
request by `timeout`. Failures are recorded per request, never raised: a server that
dies mid-run shows up as errors in the level's metrics.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from validation.load.metrics import RequestOutcome
from validation.load.schemas import Arrival
from validation.load.stream import Endpoint, StreamError

CHAT_PATH = "/v1/chat/completions"
REFUSED = "cannot connect"
# (done, total or None, output tokens so far): called as requests finish.
Progress = Callable[[int, int | None, int], None]


class ChatLoad:
    """Streaming chat requests of a fixed size against one endpoint and model."""

    def __init__(self, endpoint: Endpoint, model: str, output_tokens: int, timeout: float) -> None:
        self.endpoint = endpoint
        self.model = model
        self.output_tokens = output_tokens
        self.timeout = timeout

    def payload(self, prompt: str) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.output_tokens,
            # Fixed output length where the server allows it (vLLM); the others stop at
            # EOS and the measured length is used.
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    async def send(self, prompt: str) -> RequestOutcome:
        try:
            async with asyncio.timeout(self.timeout):
                result = await self.endpoint.stream(CHAT_PATH, self.payload(prompt))
        except TimeoutError:
            return RequestOutcome(error=f"no answer within {self.timeout:g} s")
        except StreamError as exc:
            return RequestOutcome(error=str(exc))
        if result.first_token is None or result.last_token is None:
            return RequestOutcome(error="stream carried no generated text")
        usage = result.usage or {}
        return RequestOutcome(
            ttft=result.first_token - result.start,
            e2e=result.last_token - result.start,
            itl=result.gaps,
            output_tokens=int(usage.get("completion_tokens") or result.chunks),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
        )


@dataclass
class LevelRun:
    outcomes: list[RequestOutcome]
    duration_s: float
    max_in_flight: int
    aborted: str | None = None  # the server stopped accepting connections mid-level


async def run_level(
    load: ChatLoad,
    prompts: Callable[[], str],
    *,
    concurrency: int,
    requests: int | None,
    duration: float | None,
    rate: float | None = None,
    arrival: Arrival = "constant",
    rng: random.Random | None = None,
    progress: Progress | None = None,
) -> LevelRun:
    """Send requests until `requests` are sent or `duration` has passed; wait for all."""
    if requests is None and duration is None:
        raise ValueError("a level needs a request count or a duration")
    rng = rng or random.Random(0)
    slots = asyncio.Semaphore(concurrency)
    outcomes: list[RequestOutcome] = []
    tasks: set[asyncio.Task[None]] = set()
    state = {"in_flight": 0, "max": 0, "tokens": 0}
    aborted: list[str] = []
    start = time.perf_counter()
    deadline = start + duration if duration is not None else None
    next_send = start

    async def one(prompt: str) -> None:
        state["in_flight"] += 1
        state["max"] = max(state["max"], state["in_flight"])
        try:
            outcome = await load.send(prompt)
        finally:
            state["in_flight"] -= 1
            slots.release()
        outcomes.append(outcome)
        if outcome.error and outcome.error.startswith(REFUSED):
            aborted.append(outcome.error)  # nothing listens any more: stop sending
        state["tokens"] += outcome.output_tokens
        if progress is not None:
            progress(len(outcomes), requests, state["tokens"])

    sent = 0
    while requests is None or sent < requests:
        if rate is not None:
            next_send += rng.expovariate(rate) if arrival == "poisson" else 1.0 / rate
            await asyncio.sleep(max(0.0, next_send - time.perf_counter()))
        await slots.acquire()
        if aborted or (deadline is not None and time.perf_counter() >= deadline):
            slots.release()
            break
        task = asyncio.create_task(one(prompts()))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
    while tasks:
        await asyncio.gather(*list(tasks))
    return LevelRun(
        outcomes, time.perf_counter() - start, state["max"], aborted[0] if aborted else None
    )


async def run_sequence(load: ChatLoad, prompts: Callable[[], str], steps: int) -> tuple[float, int]:
    """`steps` requests one after the other, as an agent loop does: (seconds, errors)."""
    start = time.perf_counter()
    errors = 0
    for _ in range(steps):
        outcome = await load.send(prompts())
        errors += outcome.error is not None
    return time.perf_counter() - start, errors
