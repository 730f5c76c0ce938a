"""What a validation check reports, and the small request helpers the checks share.

A `Check` is one verdict: `pass`, `warn` (a difference a client may notice but that is
expected or cannot be judged), or `fail` (client code that worked against the source
would break against the target). `detail` is one line for people; `data` holds the
measured values for reports and for debugging.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from validation.client import EndpointError, HTTPStatusError, OpenAIClient

Status = Literal["pass", "warn", "fail"]
_RANK: dict[str, int] = {"pass": 0, "warn": 1, "fail": 2}


class Check(BaseModel):
    name: str
    status: Status
    detail: str
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("detail")
    @classmethod
    def _one_line(cls, detail: str) -> str:
        return one_line(detail)

    def line(self) -> str:
        return f"{self.status.upper():4} {self.name}: {self.detail}"


def one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe status (`pass` for none)."""
    result: Status = "pass"
    for status in statuses:
        if _RANK[status] > _RANK[result]:
            result = status
    return result


def overall(checks: Iterable[Check]) -> Status:
    return worst(check.status for check in checks)


def format_checks(checks: Iterable[Check]) -> str:
    """One line per check, for logs and assertion messages."""
    return "\n".join(check.line() for check in checks)


# --- calling endpoints -------------------------------------------------------------------


@dataclass
class Outcome:
    """An answer or an error, so that judging code never has to catch."""

    body: Any = None
    error: str | None = None
    status: int | None = None  # the HTTP status of an error answer; None: no answer at all

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def kind(self) -> str:
        """`ok`, `rejected` (HTTP 4xx), `server_error` (HTTP 5xx) or `no_answer`."""
        if self.error is None:
            return "ok"
        if self.status is None:
            return "no_answer"
        return "rejected" if 400 <= self.status < 500 else "server_error"

    def summary(self) -> str:
        return "ok" if self.error is None else one_line(self.error, 200)


async def attempt(call: Awaitable[Any]) -> Outcome:
    try:
        return Outcome(body=await call)
    except HTTPStatusError as exc:
        return Outcome(error=_error_text(exc), status=exc.status, body=exc.body)
    except EndpointError as exc:
        return Outcome(error=exc.message)


def _error_text(exc: HTTPStatusError) -> str:
    """`HTTP 400: <the server's own message>` where the body has one (OpenAI's
    {"error": {"message"}}, llama.cpp's and FastAPI's variants), else the client's line."""
    body = exc.body
    message: Any = None
    if isinstance(body, dict):
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        message = message or body.get("detail") or body.get("message")
    if isinstance(message, str) and message.strip():
        return f"HTTP {exc.status}: {message}"
    return exc.message


async def ensure_kind(client: OpenAIClient) -> str:
    if client.kind == "unknown":
        await client.detect()
    return client.kind


def greedy_params(client: OpenAIClient) -> dict[str, Any]:
    """Greedy decoding with every penalty off, in each server's own parameter names.

    llama-cpp-python's server applies repeat_penalty 1.1 by default even at temperature
    0, and vLLM applies the served generation config's repetition_penalty; both are
    turned off so that greedy means argmax on both sides.
    """
    params: dict[str, Any] = {"temperature": 0.0}
    if client.kind == "llamacpp":
        params["repeat_penalty"] = 1.0
    elif client.kind == "vllm":
        params["repetition_penalty"] = 1.0
    return params


def sampling_params(client: OpenAIClient, values: dict[str, Any]) -> dict[str, Any]:
    """vLLM-named sampling values (temperature, top_k, top_p, min_p, repetition_penalty,
    presence/frequency_penalty) in the names `client`'s server reads."""
    params = dict(values)
    params.pop("max_new_tokens", None)  # a max_tokens default, not a sampling parameter
    if client.kind in ("llamacpp", "ollama") and "repetition_penalty" in params:
        params["repeat_penalty"] = params.pop("repetition_penalty")
    return params


def message_text(body: Any) -> str | None:
    """choices[0].message.content of a chat answer (None when absent)."""
    try:
        content = body["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    return content if isinstance(content, str) else None


def completion_text(body: Any) -> str | None:
    try:
        text = body["choices"][0]["text"]
    except (KeyError, IndexError, TypeError):
        return None
    return text if isinstance(text, str) else None


def finish_reason(body: Any) -> str | None:
    try:
        reason = body["choices"][0].get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    return reason if isinstance(reason, str) else None


def usage_of(body: Any) -> dict[str, int] | None:
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return None
    keys = ("prompt_tokens", "completion_tokens", "total_tokens")
    if not all(isinstance(usage.get(k), int) for k in keys):
        return None
    return {k: int(usage[k]) for k in keys}


def first_logprobs(body: Any) -> tuple[str | None, dict[str, float]]:
    """The first generated token and its top alternatives ({token: logprob}), from a chat
    answer with logprobs (OpenAI format: choices[0].logprobs.content[0])."""
    try:
        entry = body["choices"][0]["logprobs"]["content"][0]
    except (KeyError, IndexError, TypeError):
        return None, {}
    if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
        return None, {}
    token: str = entry["token"]
    tops: dict[str, float] = {}
    for alt in entry.get("top_logprobs") or []:
        if isinstance(alt, dict) and isinstance(alt.get("token"), str):
            value = alt.get("logprob")
            if isinstance(value, int | float):
                tops.setdefault(alt["token"], float(value))
    if token not in tops and isinstance(entry.get("logprob"), int | float):
        tops[token] = float(entry["logprob"])
    return token, tops


def first_completion_logprobs(body: Any) -> tuple[str | None, dict[str, float]]:
    """The first generated token and its top alternatives from a text completion with
    logprobs (the legacy format: choices[0].logprobs.tokens / top_logprobs[0])."""
    try:
        logprobs = body["choices"][0]["logprobs"]
        token = logprobs["tokens"][0]
        top = (logprobs.get("top_logprobs") or [{}])[0] or {}
    except (KeyError, IndexError, TypeError, AttributeError):
        return None, {}
    if not isinstance(token, str) or not isinstance(top, dict):
        return None, {}
    tops = {str(k): float(v) for k, v in top.items() if isinstance(v, int | float)}
    return token, tops


def logprob_tokens(body: Any) -> list[str]:
    """Every generated token string reported in chat logprobs (empty when none)."""
    try:
        content = body["choices"][0]["logprobs"]["content"]
    except (KeyError, IndexError, TypeError):
        return []
    if not isinstance(content, list):
        return []
    return [e["token"] for e in content if isinstance(e, dict) and isinstance(e.get("token"), str)]


def short_json(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return one_line(text, limit)
