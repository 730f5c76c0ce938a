"""API-contract checks: does client code that worked against the source (Ollama, or
llama.cpp, Ollama's engine) keep working when only the endpoint URL changes to vLLM?

Every check sends the same request to both sides, the way a client would, and compares
what a client sees. The source is the reference: a behaviour the source lacks is never
held against the target (`warn` at most); a behaviour the source has and the target
lacks is a `fail`. Greedy requests turn every penalty off in each server's own names
(`greedy_params`), since llama.cpp's server applies repeat_penalty 1.1 by default.

Checks, in order (names as in `CHECK_NAMES`):

- `names`: every expected served name is listed by the target's /v1/models and answers
  a one-token chat; names the source lists (or `settings.source_names`) that the target
  lacks fail too.
- `chat`, `completion`: both endpoints answer with the OpenAI shape (choices[0].message
  .content / choices[0].text, finish_reason, usage with prompt/completion/total tokens
  that add up).
- `streaming`: SSE framing (enforced by `OpenAIClient.stream`), every chunk's choices
  carry a `delta`, a finish_reason arrives, and the concatenated text equals the
  non-streamed greedy text of the same side. A mismatch is re-tested with a second
  non-streamed request: when that differs too, the server is not deterministic (warn),
  else the stream is wrong (fail).
- `stream_usage`: with stream_options.include_usage the last chunk carries usage; the
  source doing it and the target not is a fail; neither doing it is a warn.
- `stop_sequence`: each side's greedy answer is cut at a word from its own middle by
  `stop`: finish_reason must be "stop", the text must not contain the stop string and
  should be the greedy text up to it.
- `max_tokens`: max_tokens N gives completion_tokens == N and finish_reason "length".
- `json_mode`: response_format json_object gives a parseable JSON object on the target
  (a warn when the source cannot either).
- `tools`: a simple function tool with tool_choice left to the server ("auto"), the
  way clients send tools: where the source returns tool_calls the target must too (else
  fail); where it does not, a warn. A second request names the function in tool_choice;
  a difference there only warns, because Ollama's /v1 ignores tool_choice (llama.cpp's
  server honours it with a grammar, vLLM 0.32 only with a --tool-call-parser).
- `long_prompt`: a prompt longer than both contexts: the kind of outcome (rejected with
  HTTP 4xx, or answered after silent truncation) is recorded for each side. Same kind:
  pass. Ollama truncates silently while vLLM rejects with HTTP 400: a warn, as clients
  that relied on truncation now get errors. A 5xx or no answer from the target: fail.
- `context_length`: the target's max_model_len (its /v1/models entry) must not be
  shorter than the source's context (`settings.source_context`, or what the source's
  own over-long error reports, whichever is larger): prompts that worked would now be
  rejected. A max_model_len other than `settings.max_model_len`: shorter fails, longer
  warns.
- `sampling_defaults`: vLLM exposes no endpoint for its request defaults, so they are
  measured, deterministically, with seeded sampling on the target. For each of a few
  seeds, three requests that differ only in sampling parameters: (A) none set, (B) the
  expected defaults set explicitly, (C) vLLM's neutral values (temperature 1, top_p 1,
  top_k off, min_p 0, no penalty) set explicitly. Same seed and same effective
  parameters give the same tokens, so A == B for every seed proves the defaults apply;
  any A != B fails (after one repeat of B rules out non-determinism, which warns). The
  probe is discriminating only if C differs from B for at least one seed; otherwise it
  warns. Expected defaults equal to vLLM's own need no override: pass. The source is
  probed with A and B only and reported in `data` (a llama.cpp stand-in does not apply
  Ollama's Modelfile parameters, so it is informational).
- `stop_tokens`: short questions answered greedily within a generous max_tokens: where
  the source ends with finish_reason "stop", the target must too (a lost EOS / stop
  token id makes it run to "length"); the target's text must not contain a stop string
  or a chat special token. A special token the target generated and ran past (seen in
  its logprobs) fails at once. Without such evidence, the greedy answers may just have
  diverged, so the target (vLLM) continues the source's own answer
  (continue_final_message): stopping there is a warn, running on a fail.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from validation.checks import (
    Check,
    Outcome,
    Status,
    attempt,
    completion_text,
    ensure_kind,
    finish_reason,
    greedy_params,
    logprob_tokens,
    message_text,
    one_line,
    sampling_params,
    short_json,
    usage_of,
    worst,
)
from validation.client import EndpointError, OpenAIClient

CHECK_NAMES = (
    "names",
    "chat",
    "completion",
    "streaming",
    "stream_usage",
    "stop_sequence",
    "max_tokens",
    "json_mode",
    "tools",
    "long_prompt",
    "context_length",
    "sampling_defaults",
    "stop_tokens",
)

# Chat special tokens that must never show up in answer text.
DEFAULT_MARKERS = [
    "<|im_end|>",
    "<|im_start|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<end_of_turn>",
    "<start_of_turn>",
    "</s>",
]
# vLLM's own request defaults when no generation config overrides them.
NEUTRAL_SAMPLING: dict[str, Any] = {
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": -1,
    "min_p": 0.0,
    "repetition_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}
SAMPLING_KEYS = frozenset(NEUTRAL_SAMPLING)

TINY = [{"role": "user", "content": "Hi"}]
QUESTION = [{"role": "user", "content": "Name three primary colours."}]
STORY = [{"role": "user", "content": "Write a short story about a cat who learns to fly."}]
POEM = [{"role": "user", "content": "Write a poem about the sea."}]
JSON_ASK = [
    {
        "role": "user",
        "content": 'Reply with a JSON object with one key, "capital", whose value is the '
        "capital of France.",
    }
]
WEATHER_ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city name"}},
            "required": ["city"],
        },
    },
}
SHORT_QUESTIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "What is 2 + 2?"}],
]
COMPLETION_PROMPT = "The capital of France is"
_CONTEXT_RE = re.compile(r"maximum context length is (\d+)")


class ContractSettings(BaseModel):
    """What the target should look like, mostly from the migration plan."""

    source_model: str  # the name the source serves the model under
    target_model: str | None = None  # default: the first expected name
    source_names: list[str] | None = None  # this model's names on the source; None: all listed
    max_model_len: int | None = None  # the context the target should serve
    source_context: int | None = None  # Ollama's num_ctx (llama.cpp's n_ctx)
    # Request defaults the target should apply, in vLLM's names (temperature, top_k,
    # top_p, min_p, repetition_penalty, ...): the plan's generation config.
    sampling_defaults: dict[str, Any] = Field(default_factory=dict)
    stop: list[str] = Field(default_factory=list)  # the Modelfile's stop strings
    stop_token_ids: list[int] = Field(default_factory=list)
    markers: list[str] = Field(default_factory=lambda: list(DEFAULT_MARKERS))
    long_prompt_margin: int = 256  # words beyond the longest context
    answer_max_tokens: int = 384  # "generous" for the stop_tokens check
    probe_tokens: int = 24  # tokens per sampling-defaults probe
    seeds: list[int] = Field(default_factory=lambda: [7, 1234, 99991])
    checks: list[str] | None = None  # run only these (CHECK_NAMES); None: all


@dataclass
class _Run:
    source: OpenAIClient
    target: OpenAIClient
    expected_names: list[str]
    settings: ContractSettings
    target_model: str
    greedy_cache: dict[tuple[str, str], Outcome] = field(default_factory=dict)
    target_models: Outcome | None = None
    long_data: dict[str, Any] | None = None

    def sides(self) -> tuple[tuple[str, OpenAIClient, str], tuple[str, OpenAIClient, str]]:
        return (
            ("source", self.source, self.settings.source_model),
            ("target", self.target, self.target_model),
        )

    async def greedy(self, side: str, key: str, payload: dict[str, Any]) -> Outcome:
        """A greedy chat, asked once per side and key (shared by several checks)."""
        if (side, key) not in self.greedy_cache:
            client, model = self._client(side)
            self.greedy_cache[side, key] = await attempt(
                client.chat({"model": model, **payload, **greedy_params(client)})
            )
        return self.greedy_cache[side, key]

    def _client(self, side: str) -> tuple[OpenAIClient, str]:
        if side == "source":
            return self.source, self.settings.source_model
        return self.target, self.target_model

    async def models_of_target(self) -> Outcome:
        if self.target_models is None:
            self.target_models = await attempt(self.target.models())
        return self.target_models


async def check_contract(
    source: OpenAIClient,
    target: OpenAIClient,
    expected_names: list[str],
    settings: ContractSettings,
) -> list[Check]:
    """Run the contract checks (all, or `settings.checks`) one after another."""
    if not expected_names:
        raise ValueError("expected_names is empty")
    unknown = sorted(set(settings.checks or []) - set(CHECK_NAMES))
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(CHECK_NAMES)}")
    await ensure_kind(source)
    await ensure_kind(target)
    run = _Run(source, target, expected_names, settings, settings.target_model or expected_names[0])
    wanted = set(settings.checks or CHECK_NAMES)
    checks: list[Check] = []
    for name, func in _CHECKS:
        if name not in wanted:
            continue
        try:
            checks.append(await func(run))
        except EndpointError as exc:
            checks.append(Check(name=name, status="fail", detail=exc.message))
    return checks


# --- names ---------------------------------------------------------------------------------


async def _names(run: _Run) -> Check:
    listed = await run.models_of_target()
    if not listed.ok:
        return Check(name="names", status="fail", detail=f"target /v1/models: {listed.summary()}")
    source_ids: list[str] | None = run.settings.source_names
    if source_ids is None:
        source_listed = await attempt(run.source.models())
        source_ids = _ids(source_listed.body) if source_listed.ok else None
    answers: dict[str, Outcome] = {}
    for name in run.expected_names:
        answers[name] = await attempt(
            run.target.chat(
                {"model": name, "messages": TINY, "max_tokens": 1, **greedy_params(run.target)}
            )
        )
    return judge_names(run.expected_names, source_ids, _ids(listed.body), answers)


def _ids(models: Any) -> list[str]:
    if not isinstance(models, list):
        return []
    return [str(m["id"]) for m in models if isinstance(m, dict) and "id" in m]


def judge_names(
    expected: list[str],
    source_ids: list[str] | None,
    target_ids: list[str],
    answers: dict[str, Outcome],
) -> Check:
    unlisted = [n for n in expected if n not in target_ids]
    silent = {
        n: (o.summary() if not o.ok else "no choices[0].message.content")
        for n, o in answers.items()
        if not o.ok or message_text(o.body) is None
    }
    source_only = [n for n in (source_ids or []) if n not in target_ids]
    data = {
        "expected": expected,
        "target_lists": target_ids,
        "source_lists": source_ids,
        "not_listed": unlisted,
        "not_answering": silent,
        "source_only": source_only,
    }
    problems = []
    if unlisted:
        problems.append(f"not listed by the target: {', '.join(unlisted)}")
    if silent:
        first = next(iter(silent))
        problems.append(
            f"not answering on the target: {', '.join(silent)} ({first}: {silent[first]})"
        )
    if source_only:
        problems.append(f"served by the source but not the target: {', '.join(source_only)}")
    if problems:
        return Check(name="names", status="fail", detail="; ".join(problems), data=data)
    detail = f"target lists and answers {', '.join(expected)}"
    status: Status = "pass"
    if source_ids is None:
        status, detail = "warn", detail + "; the source's /v1/models could not be read"
    return Check(name="names", status=status, detail=detail, data=data)


# --- shapes --------------------------------------------------------------------------------


def shape_problems(body: Any, kind: str) -> list[str]:
    """What a client reading an OpenAI answer would trip over (`kind`: chat|completion)."""
    if not isinstance(body, dict):
        return ["answer is not a JSON object"]
    problems = []
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ["no choices[0]"]
    if kind == "chat":
        message = choices[0].get("message")
        if not isinstance(message, dict):
            problems.append("no choices[0].message")
        else:
            if not isinstance(message.get("content"), str):
                problems.append("choices[0].message.content is not a string")
            if message.get("role") != "assistant":
                problems.append(f"choices[0].message.role is {message.get('role')!r}")
    elif not isinstance(choices[0].get("text"), str):
        problems.append("choices[0].text is not a string")
    if not isinstance(choices[0].get("finish_reason"), str):
        problems.append("choices[0].finish_reason is missing")
    usage = usage_of(body)
    if usage is None:
        problems.append("usage lacks prompt_tokens/completion_tokens/total_tokens")
    elif usage["total_tokens"] != usage["prompt_tokens"] + usage["completion_tokens"]:
        problems.append("usage.total_tokens != prompt_tokens + completion_tokens")
    return problems


def judge_shape(name: str, kind: str, source: Outcome, target: Outcome) -> Check:
    src = shape_problems(source.body, kind) if source.ok else [source.summary()]
    tgt = shape_problems(target.body, kind) if target.ok else [target.summary()]
    text = message_text if kind == "chat" else completion_text
    data = {
        "source": _answer_data(source, text),
        "target": _answer_data(target, text),
        "source_problems": src,
        "target_problems": tgt,
    }
    if not tgt:
        usage = usage_of(target.body) or {}
        detail = (
            f"target answers (finish_reason {finish_reason(target.body)}, usage "
            f"{usage.get('prompt_tokens')}+{usage.get('completion_tokens')})"
        )
        if src:
            detail += f"; the source did not: {src[0]}"
        return Check(name=name, status="pass", detail=detail, data=data)
    status: Status = "warn" if (src and set(tgt) <= set(src)) or not source.ok else "fail"
    suffix = f" (the source fails too: {src[0]})" if status == "warn" else ""
    return Check(name=name, status=status, detail=f"target: {'; '.join(tgt)}{suffix}", data=data)


def _answer_data(outcome: Outcome, text: Callable[[Any], str | None]) -> dict[str, Any]:
    if not outcome.ok:
        return {"error": outcome.summary(), "http_status": outcome.status}
    return {
        "text": text(outcome.body),
        "finish_reason": finish_reason(outcome.body),
        "usage": usage_of(outcome.body),
    }


async def _chat(run: _Run) -> Check:
    payload = {"messages": QUESTION, "max_tokens": 32}
    source, target = await asyncio.gather(
        run.greedy("source", "question", payload), run.greedy("target", "question", payload)
    )
    return judge_shape("chat", "chat", source, target)


async def _completion(run: _Run) -> Check:
    async def one(client: OpenAIClient, model: str) -> Outcome:
        payload = {"model": model, "prompt": COMPLETION_PROMPT, "max_tokens": 8}
        return await attempt(client.completion({**payload, **greedy_params(client)}))

    (_, src, src_model), (_, tgt, tgt_model) = run.sides()
    source, target = await asyncio.gather(one(src, src_model), one(tgt, tgt_model))
    return judge_shape("completion", "completion", source, target)


# --- streaming -----------------------------------------------------------------------------


def parse_stream(events: list[dict[str, Any]]) -> tuple[str, str | None, list[str]]:
    """(concatenated delta text, finish_reason, problems) of chat stream events."""
    text: list[str] = []
    reason: str | None = None
    problems: list[str] = []
    for index, event in enumerate(events):
        choices = event.get("choices")
        if choices is None:
            if event.get("usage") is None:
                problems.append(f"event {index} has neither choices nor usage")
            continue
        if not isinstance(choices, list):
            problems.append(f"event {index}: choices is not a list")
            continue
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                problems.append(f"event {index}: a choice has no delta")
                continue
            content = delta.get("content")
            if isinstance(content, str):
                text.append(content)
            if isinstance(choice.get("finish_reason"), str):
                reason = choice["finish_reason"]
    if not events:
        problems.append("no events")
    if reason is None:
        problems.append("no finish_reason in any chunk")
    return "".join(text), reason, problems


def stream_usage(events: list[dict[str, Any]]) -> dict[str, int] | None:
    """The usage of the final chunk (include_usage puts it there), if any."""
    return usage_of(events[-1]) if events else None


async def _stream_side(run: _Run, side: str) -> dict[str, Any]:
    client, model = run._client(side)
    payload = {"messages": QUESTION, "max_tokens": 32}
    reference = await run.greedy(side, "question", payload)
    result: dict[str, Any] = {}
    if not reference.ok:
        return {"error": f"non-streamed request: {reference.summary()}"}
    streamed = await attempt(
        client.stream("/v1/chat/completions", {"model": model, **payload, **greedy_params(client)})
    )
    if not streamed.ok:
        return {"error": streamed.summary()}
    text, reason, problems = parse_stream(streamed.body)
    expected = message_text(reference.body)
    result = {
        "events": len(streamed.body),
        "text": text,
        "finish_reason": reason,
        "non_streamed_text": expected,
        "problems": problems,
        "equal": text == expected,
    }
    if text != expected:
        again = await attempt(client.chat({"model": model, **payload, **greedy_params(client)}))
        result["deterministic"] = again.ok and message_text(again.body) == expected
    return result


def judge_streaming(source: dict[str, Any], target: dict[str, Any]) -> Check:
    data = {"source": source, "target": target}
    if "error" in target:
        status: Status = "warn" if "error" in source else "fail"
        return Check(
            name="streaming", status=status, detail=f"target: {target['error']}", data=data
        )
    if target["problems"]:
        same = set(target["problems"]) <= set(source.get("problems") or [])
        return Check(
            name="streaming",
            status="warn" if same else "fail",
            detail=f"target: {'; '.join(target['problems'])}",
            data=data,
        )
    if not target["equal"]:
        if not target.get("deterministic", True):
            return Check(
                name="streaming",
                status="warn",
                detail="target's greedy answers vary between identical requests; "
                "streamed text cannot be compared",
                data=data,
            )
        return Check(
            name="streaming",
            status="fail",
            detail=f"target's streamed text {short_json(target['text'], 60)} differs from its "
            f"non-streamed text {short_json(target['non_streamed_text'], 60)}",
            data=data,
        )
    detail = f"target streams {target['events']} events, text equal to the non-streamed answer"
    if "error" in source:
        detail += f"; source: {source['error']}"
    elif not source.get("equal"):
        detail += "; the source's streamed text differed from its non-streamed text"
    return Check(name="streaming", status="pass", detail=detail, data=data)


async def _streaming(run: _Run) -> Check:
    source, target = await asyncio.gather(_stream_side(run, "source"), _stream_side(run, "target"))
    return judge_streaming(source, target)


async def _usage_side(client: OpenAIClient, model: str) -> dict[str, Any]:
    payload = {
        "model": model,
        "messages": TINY,
        "max_tokens": 4,
        "stream_options": {"include_usage": True},
        **greedy_params(client),
    }
    streamed = await attempt(client.stream("/v1/chat/completions", payload))
    if not streamed.ok:
        return {"error": streamed.summary()}
    return {"events": len(streamed.body), "usage": stream_usage(streamed.body)}


def judge_stream_usage(source: dict[str, Any], target: dict[str, Any]) -> Check:
    data = {"source": source, "target": target}
    src_ok = bool(source.get("usage"))
    tgt_ok = bool(target.get("usage"))
    if tgt_ok:
        return Check(
            name="stream_usage",
            status="pass",
            detail=f"target's last chunk carries usage {target['usage']}"
            + ("" if src_ok else " (the source's does not)"),
            data=data,
        )
    why = target.get("error") or "no usage in the last chunk"
    if src_ok:
        return Check(
            name="stream_usage",
            status="fail",
            detail=f"the source reports usage with include_usage, the target does not: {why}",
            data=data,
        )
    return Check(
        name="stream_usage",
        status="warn",
        detail=f"neither side reports usage in streams ({why})",
        data=data,
    )


async def _stream_usage(run: _Run) -> Check:
    (_, src, src_model), (_, tgt, tgt_model) = run.sides()
    source, target = await asyncio.gather(_usage_side(src, src_model), _usage_side(tgt, tgt_model))
    return judge_stream_usage(source, target)


# --- stop sequences and max_tokens ---------------------------------------------------------


def choose_stop(text: str) -> str | None:
    """A word from the middle of `text` to stop on (its first occurrence not at the start)."""
    words = [w.strip(".,;:!?\"'()") for w in text.split()]
    candidates = [w for w in words[len(words) // 3 :] if len(w) >= 3]
    for word in candidates:
        if text.find(word) > 0:
            return word
    return None


async def _stop_side(run: _Run, side: str) -> dict[str, Any]:
    client, model = run._client(side)
    payload = {"messages": STORY, "max_tokens": 40}
    base = await run.greedy(side, "story", payload)
    if not base.ok:
        return {"error": base.summary()}
    text = message_text(base.body) or ""
    stop = choose_stop(text)
    if stop is None:
        return {"error": f"greedy answer too short to pick a stop string: {text!r}"}
    cut = await attempt(
        client.chat({"model": model, **payload, "stop": [stop], **greedy_params(client)})
    )
    if not cut.ok:
        return {"stop": stop, "error": cut.summary()}
    return {
        "stop": stop,
        "expected": text[: text.find(stop)],
        "text": message_text(cut.body),
        "finish_reason": finish_reason(cut.body),
    }


def stop_problems(result: dict[str, Any]) -> tuple[list[str], bool]:
    """(problems, text is the greedy prefix) of one side's stop-sequence probe."""
    if "error" in result:
        return [result["error"]], False
    problems = []
    text = result.get("text")
    if result.get("finish_reason") != "stop":
        problems.append(f"finish_reason {result.get('finish_reason')!r}, not 'stop'")
    if not isinstance(text, str):
        problems.append("no text")
    elif result["stop"] in text:
        problems.append(f"text contains the stop string {result['stop']!r}")
    prefix = isinstance(text, str) and text.rstrip() == str(result.get("expected", "")).rstrip()
    return problems, prefix


def judge_stop_sequence(source: dict[str, Any], target: dict[str, Any]) -> Check:
    data = {"source": source, "target": target}
    tgt, tgt_prefix = stop_problems(target)
    src, _ = stop_problems(source)
    if tgt:
        status: Status = "warn" if src else "fail"
        return Check(
            name="stop_sequence", status=status, detail=f"target: {'; '.join(tgt)}", data=data
        )
    if not tgt_prefix:
        return Check(
            name="stop_sequence",
            status="warn",
            detail=f"target stopped at {target['stop']!r} but its text is not the greedy "
            "answer up to it (non-deterministic greedy?)",
            data=data,
        )
    detail = f"target ends before {target['stop']!r} with finish_reason stop"
    if src:
        detail += f"; source: {src[0]}"
    return Check(name="stop_sequence", status="pass", detail=detail, data=data)


async def _stop_sequence(run: _Run) -> Check:
    source, target = await asyncio.gather(_stop_side(run, "source"), _stop_side(run, "target"))
    return judge_stop_sequence(source, target)


def max_tokens_problems(outcome: Outcome, limit: int) -> list[str]:
    if not outcome.ok:
        return [outcome.summary()]
    problems = []
    usage = usage_of(outcome.body)
    if usage is None or usage["completion_tokens"] != limit:
        got = usage["completion_tokens"] if usage else None
        problems.append(f"completion_tokens {got}, not max_tokens {limit}")
    if finish_reason(outcome.body) != "length":
        problems.append(f"finish_reason {finish_reason(outcome.body)!r}, not 'length'")
    return problems


async def _max_tokens(run: _Run) -> Check:
    limit = 5
    payload = {"messages": STORY, "max_tokens": limit}
    source, target = await asyncio.gather(
        run.greedy("source", "story5", payload), run.greedy("target", "story5", payload)
    )
    src, tgt = max_tokens_problems(source, limit), max_tokens_problems(target, limit)
    data = {"max_tokens": limit, "source": _answer_data(source, message_text)}
    data["target"] = _answer_data(target, message_text)
    if tgt:
        status: Status = "warn" if src else "fail"
        return Check(
            name="max_tokens", status=status, detail=f"target: {'; '.join(tgt)}", data=data
        )
    return Check(
        name="max_tokens",
        status="pass",
        detail=f"target stops at exactly {limit} tokens with finish_reason length"
        + (f"; source: {src[0]}" if src else ""),
        data=data,
    )


# --- JSON mode and tools -------------------------------------------------------------------


def json_outcome(outcome: Outcome) -> tuple[str, Any]:
    """(`json` | `invalid` | an error kind, the parsed object or the text / error)."""
    if not outcome.ok:
        return outcome.kind, outcome.summary()
    text = message_text(outcome.body) or ""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return "invalid", text
    return ("json", value) if isinstance(value, dict) else ("invalid", text)


async def _json_mode(run: _Run) -> Check:
    payload = {"messages": JSON_ASK, "max_tokens": 64, "response_format": {"type": "json_object"}}
    source, target = await asyncio.gather(
        run.greedy("source", "json", payload), run.greedy("target", "json", payload)
    )
    return judge_json(source, target)


def judge_json(source: Outcome, target: Outcome) -> Check:
    (src, src_value), (tgt, tgt_value) = json_outcome(source), json_outcome(target)
    data = {
        "source": src,
        "target": tgt,
        "source_value": src_value,
        "target_value": tgt_value,
        "target_finish_reason": finish_reason(target.body) if target.ok else None,
    }
    if tgt == "json":
        return Check(
            name="json_mode",
            status="pass",
            detail=f"target gives JSON {short_json(tgt_value, 80)}"
            + ("" if src == "json" else f" (source: {src})"),
            data=data,
        )
    detail = f"target: {tgt} {short_json(tgt_value, 80)}"
    if src == "json":
        return Check(
            name="json_mode", status="fail", detail=detail + "; the source gives JSON", data=data
        )
    return Check(
        name="json_mode", status="warn", detail=detail + f"; the source neither ({src})", data=data
    )


def tool_outcome(outcome: Outcome) -> str:
    """`tool_calls` (well formed), `text`, or an error kind."""
    if not outcome.ok:
        return outcome.kind
    try:
        message = outcome.body["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        return "malformed"
    calls = message.get("tool_calls") if isinstance(message, dict) else None
    if not calls:
        return "text"
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            return "malformed"
        try:
            json.loads(function.get("arguments") or "")
        except (json.JSONDecodeError, TypeError):
            return "malformed"
    return "tool_calls"


def judge_tools(modes: dict[str, tuple[Outcome, Outcome]]) -> Check:
    """`modes`: {"auto" | "named": (source outcome, target outcome)}. Only "auto" can
    fail: it is how clients send tools, and the only mode Ollama implements."""
    data: dict[str, Any] = {}
    statuses: list[Status] = []
    notes: list[str] = []
    for mode, (source, target) in modes.items():
        src, tgt = tool_outcome(source), tool_outcome(target)
        data[mode] = {
            "source": src,
            "target": tgt,
            "source_error": None if source.ok else source.summary(),
            "target_error": None if target.ok else target.summary(),
        }
        if src == "tool_calls" and tgt != "tool_calls":
            statuses.append("fail" if mode == "auto" else "warn")
            why = target.summary() if not target.ok else tgt
            notes.append(f"{mode}: the source returns tool_calls, the target {why}")
        elif src == "tool_calls":
            statuses.append("pass")
            notes.append(f"{mode}: tool_calls on both")
        elif tgt == "tool_calls":
            statuses.append("pass")
            notes.append(f"{mode}: tool_calls on the target (the source: {src})")
        else:
            statuses.append("warn")
            why = target.summary() if not target.ok else tgt
            notes.append(f"{mode}: the source does not return tool_calls ({src}); target: {why}")
    return Check(name="tools", status=worst(statuses), detail="; ".join(notes), data=data)


async def _tools(run: _Run) -> Check:
    base = {"messages": WEATHER_ASK, "tools": [WEATHER_TOOL], "max_tokens": 64}
    named = {**base, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
    modes: dict[str, tuple[Outcome, Outcome]] = {}
    for mode, payload in (("auto", base), ("named", named)):
        source, target = await asyncio.gather(
            run.greedy("source", f"tools-{mode}", payload),
            run.greedy("target", f"tools-{mode}", payload),
        )
        modes[mode] = (source, target)
    return judge_tools(modes)


# --- context -------------------------------------------------------------------------------


def target_context(models: Any, model: str) -> int | None:
    """max_model_len of `model` in a /v1/models list (vLLM reports it; others do not)."""
    for entry in models if isinstance(models, list) else []:
        if isinstance(entry, dict) and entry.get("id") == model:
            value = entry.get("max_model_len")
            return int(value) if isinstance(value, int) else None
    return None


def context_in_error(outcome: Outcome) -> int | None:
    match = _CONTEXT_RE.search(outcome.error or "") or _CONTEXT_RE.search(
        json.dumps(outcome.body) if outcome.body is not None else ""
    )
    return int(match.group(1)) if match else None


def long_prompt_kind(outcome: Outcome) -> str:
    """What a client sees for an over-long prompt: `rejected` (HTTP 4xx), `truncated`
    (answered anyway), `server_error` (5xx) or `no_answer`."""
    return "truncated" if outcome.ok else outcome.kind


async def _long_probe(run: _Run) -> dict[str, Any]:
    if run.long_data is not None:
        return run.long_data
    listed = await run.models_of_target()
    target_len = target_context(listed.body, run.target_model) if listed.ok else None
    longest = max(
        target_len or 0, run.settings.source_context or 0, run.settings.max_model_len or 0
    )
    words = (longest or 4096) + run.settings.long_prompt_margin
    messages = [{"role": "user", "content": "hello " * words}]
    (_, src, src_model), (_, tgt, tgt_model) = run.sides()
    source = await attempt(src.chat({"model": src_model, "messages": messages, "max_tokens": 1}))
    target = await attempt(tgt.chat({"model": tgt_model, "messages": messages, "max_tokens": 1}))
    run.long_data = {
        "words": words,
        "target_max_model_len": target_len,
        "source": _long_side(source),
        "target": _long_side(target),
    }
    return run.long_data


def _long_side(outcome: Outcome) -> dict[str, Any]:
    usage = usage_of(outcome.body) if outcome.ok else None
    return {
        "kind": long_prompt_kind(outcome),
        "http_status": outcome.status,
        "message": None if outcome.ok else outcome.summary(),
        "prompt_tokens": usage["prompt_tokens"] if usage else None,
        "context_in_error": context_in_error(outcome) if not outcome.ok else None,
    }


def judge_long_prompt(data: dict[str, Any]) -> Check:
    src, tgt = data["source"]["kind"], data["target"]["kind"]
    detail = f"{data['words']}-word prompt: source {_describe_long(data['source'])}, target {_describe_long(data['target'])}"
    if tgt in ("server_error", "no_answer"):
        return Check(name="long_prompt", status="fail", detail=detail, data=data)
    if src == tgt:
        return Check(name="long_prompt", status="pass", detail=detail, data=data)
    if src == "truncated" and tgt == "rejected":
        detail += "; clients that relied on silent truncation now get HTTP errors"
    return Check(name="long_prompt", status="warn", detail=detail, data=data)


def _describe_long(side: dict[str, Any]) -> str:
    if side["kind"] == "truncated":
        return f"answered (prompt_tokens {side['prompt_tokens']})"
    if side["kind"] == "rejected":
        return f"rejected with HTTP {side['http_status']}"
    return f"{side['kind']}: {side['message']}"


async def _long_prompt(run: _Run) -> Check:
    return judge_long_prompt(await _long_probe(run))


def judge_context(
    target_len: int | None,
    expected_len: int | None,
    source_context: int | None,
    measured_source: int | None,
) -> Check:
    source_len = max((v for v in (source_context, measured_source) if v), default=None)
    data = {
        "target_max_model_len": target_len,
        "expected_max_model_len": expected_len,
        "source_context_setting": source_context,
        "source_context_measured": measured_source,
        "source_context": source_len,
    }
    if target_len is None:
        if expected_len is None:
            return Check(
                name="context_length",
                status="warn",
                detail="the target does not report max_model_len and none is expected",
                data=data,
            )
        target_len = expected_len
        data["target_max_model_len_assumed"] = True
    if source_len is not None and target_len < source_len:
        return Check(
            name="context_length",
            status="fail",
            detail=f"target serves {target_len} tokens, the source {source_len}: prompts that "
            "fit the source will be rejected",
            data=data,
        )
    if expected_len is not None and target_len < expected_len:
        return Check(
            name="context_length",
            status="fail",
            detail=f"target serves {target_len} tokens, {expected_len} expected",
            data=data,
        )
    if source_len is None:
        return Check(
            name="context_length",
            status="warn",
            detail=f"target serves {target_len} tokens; the source's context is unknown",
            data=data,
        )
    if expected_len is not None and target_len != expected_len:
        return Check(
            name="context_length",
            status="warn",
            detail=f"target serves {target_len} tokens, {expected_len} expected (source {source_len})",
            data=data,
        )
    return Check(
        name="context_length",
        status="pass",
        detail=f"target serves {target_len} tokens, source {source_len}",
        data=data,
    )


async def _context_length(run: _Run) -> Check:
    measured: int | None = None
    if run.settings.source_context is None or "long_prompt" in (run.settings.checks or CHECK_NAMES):
        measured = (await _long_probe(run))["source"]["context_in_error"]
    listed = await run.models_of_target()
    target_len = target_context(listed.body, run.target_model) if listed.ok else None
    return judge_context(
        target_len, run.settings.max_model_len, run.settings.source_context, measured
    )


# --- request defaults ----------------------------------------------------------------------


async def _sampling_defaults(run: _Run) -> Check:
    expected = {k: v for k, v in run.settings.sampling_defaults.items() if k in SAMPLING_KEYS}
    if not expected:
        return Check(
            name="sampling_defaults", status="warn", detail="no expected sampling defaults given"
        )
    if all(
        NEUTRAL_SAMPLING[k] == v or (k == "top_k" and v in (0, -1)) for k, v in expected.items()
    ):
        return Check(
            name="sampling_defaults",
            status="pass",
            detail="the expected defaults are vLLM's own: nothing to override",
            data={"expected": expected},
        )
    target_rows = await _sampling_rows(run.target, run.target_model, expected, run.settings, True)
    source_rows = await _sampling_rows(
        run.source, run.settings.source_model, expected, run.settings, False
    )
    return judge_sampling(expected, target_rows, source_rows)


async def _sampling_rows(
    client: OpenAIClient,
    model: str,
    expected: dict[str, Any],
    settings: ContractSettings,
    control: bool,
) -> list[dict[str, Any]]:
    """Per seed: the text with no sampling parameters, with the expected ones set (and, for
    the target, with vLLM's neutral ones set and the expected ones asked again on a
    mismatch). Sequential: batching could change the numerics."""

    async def ask(seed: int, params: dict[str, Any]) -> str | None:
        payload = {
            "model": model,
            "messages": POEM,
            "max_tokens": settings.probe_tokens,
            "seed": seed,
            **params,
        }
        outcome = await attempt(client.chat(payload))
        return message_text(outcome.body) if outcome.ok else None

    rows = []
    for seed in settings.seeds:
        row: dict[str, Any] = {
            "seed": seed,
            "default": await ask(seed, {}),
            "expected": await ask(seed, sampling_params(client, expected)),
        }
        if control:
            neutral = {k: NEUTRAL_SAMPLING[k] for k in set(expected) | {"temperature"}}
            row["neutral"] = await ask(seed, sampling_params(client, neutral))
            if row["default"] != row["expected"]:
                row["expected_again"] = await ask(seed, sampling_params(client, expected))
        rows.append(row)
    return rows


def judge_sampling(
    expected: dict[str, Any],
    target_rows: list[dict[str, Any]],
    source_rows: list[dict[str, Any]] | None = None,
) -> Check:
    data: dict[str, Any] = {"expected": expected, "target": target_rows, "source": source_rows}
    if source_rows:
        data["source_matches_expected"] = all(
            r["default"] is not None and r["default"] == r["expected"] for r in source_rows
        )
    source_note = ""
    if source_rows and not data["source_matches_expected"]:
        source_note = "; the source's own defaults differ from the expected ones"
    if any(r["default"] is None or r["expected"] is None for r in target_rows):
        return Check(
            name="sampling_defaults",
            status="fail",
            detail="the target did not answer a seeded sampling request",
            data=data,
        )
    mismatched = [r for r in target_rows if r["default"] != r["expected"]]
    if mismatched:
        unstable = [r for r in mismatched if r.get("expected_again") != r["expected"]]
        if unstable:
            return Check(
                name="sampling_defaults",
                status="warn",
                detail=f"seeded sampling is not reproducible on the target (seed {unstable[0]['seed']}); "
                "defaults cannot be measured",
                data=data,
            )
        like_neutral = all(r.get("neutral") == r["default"] for r in mismatched)
        why = " (it samples like vLLM's own defaults)" if like_neutral else ""
        return Check(
            name="sampling_defaults",
            status="fail",
            detail=f"a request without sampling parameters is not sampled with the expected "
            f"defaults {short_json(expected, 120)}{why}; seed {mismatched[0]['seed']}",
            data=data,
        )
    discriminating = any(r.get("neutral") != r["expected"] for r in target_rows)
    if not discriminating:
        return Check(
            name="sampling_defaults",
            status="warn",
            detail="requests without parameters match the expected defaults, but vLLM's own "
            "defaults gave the same text: the probe cannot tell them apart" + source_note,
            data=data,
        )
    return Check(
        name="sampling_defaults",
        status="pass",
        detail=f"requests without parameters sample exactly like {short_json(expected, 120)} "
        f"on {len(target_rows)} seeds, unlike vLLM's own defaults" + source_note,
        data=data,
    )


# --- stop tokens ---------------------------------------------------------------------------


def markers_in(text: str | None, markers: list[str]) -> list[str]:
    return [m for m in markers if text and m in text]


async def _stop_tokens(run: _Run) -> Check:
    markers = list(dict.fromkeys([*run.settings.stop, *run.settings.markers]))
    rows = []
    for index, messages in enumerate(SHORT_QUESTIONS):
        payload = {"messages": messages, "max_tokens": run.settings.answer_max_tokens}
        source = await run.greedy("source", f"short{index}", payload)
        target = await attempt(
            run.target.chat(
                {
                    "model": run.target_model,
                    **payload,
                    "logprobs": True,
                    **greedy_params(run.target),
                }
            )
        )
        row = stop_token_row(messages[-1]["content"], source, target, markers)
        if _needs_teacher_forcing(row) and run.target.kind == "vllm":
            forced = await attempt(
                run.target.chat(
                    {
                        "model": run.target_model,
                        "messages": [
                            *messages,
                            {"role": "assistant", "content": row["source"]["text"]},
                        ],
                        "continue_final_message": True,
                        "add_generation_prompt": False,
                        "max_tokens": 8,
                        "logprobs": True,
                        # ids, so that a stop token id shows even if its text is unknown
                        "return_tokens_as_token_ids": bool(run.settings.stop_token_ids),
                        **greedy_params(run.target),
                    }
                )
            )
            row["teacher_forced"] = _stop_side_data(forced, markers, run.settings.stop_token_ids)
        rows.append(row)
    return judge_stop_tokens(rows)


def _needs_teacher_forcing(row: dict[str, Any]) -> bool:
    """The source stopped, the target ran on without any sign of a skipped end token:
    greedy answers may just have diverged (near-tied tokens), so check where the source
    stopped instead."""
    src, tgt = row["source"], row["target"]
    return (
        src.get("finish_reason") == "stop"
        and isinstance(src.get("text"), str)
        and "error" not in tgt
        and tgt["finish_reason"] != "stop"
        and not tgt["markers_in_text"]
        and not tgt["markers_generated"]
    )


def _stop_side_data(
    outcome: Outcome, markers: list[str], stop_ids: list[int] | None = None
) -> dict[str, Any]:
    """What one answer shows about stopping. Logprob tokens are text, or `token_id:N`
    when asked with return_tokens_as_token_ids (then matched against `stop_ids`)."""
    if not outcome.ok:
        return {"error": outcome.summary()}
    usage = usage_of(outcome.body)
    text = message_text(outcome.body)
    tokens = logprob_tokens(outcome.body)
    reason = finish_reason(outcome.body)
    # The final token may be the EOS itself; special tokens before it were generated and
    # decoded past.
    inner = tokens if reason == "length" else tokens[:-1]
    generated = {m for t in inner for m in markers if m in t}
    ids = {f"token_id:{i}" for i in stop_ids or []}
    generated |= {t for t in inner if t in ids}
    return {
        "finish_reason": reason,
        "completion_tokens": usage["completion_tokens"] if usage else None,
        "text": text,
        "markers_in_text": markers_in(text, markers),
        "markers_generated": sorted(generated),
    }


def stop_token_row(
    prompt: str, source: Outcome, target: Outcome, markers: list[str]
) -> dict[str, Any]:
    return {
        "prompt": prompt,
        "source": _stop_side_data(source, markers),
        "target": _stop_side_data(target, markers),
    }


def judge_stop_tokens(rows: list[dict[str, Any]]) -> Check:
    statuses: list[Status] = []
    notes: list[str] = []
    for row in rows:
        status, note = _stop_token_verdict(row)
        statuses.append(status)
        notes.append(f"{short_json(row['prompt'], 40)}: {note}")
    status = worst(statuses)
    first = next((n for s, n in zip(statuses, notes, strict=True) if s == status), "")
    detail = first if status != "pass" else "; ".join(notes)
    return Check(name="stop_tokens", status=status, detail=one_line(detail), data={"rows": rows})


def _stop_token_verdict(row: dict[str, Any]) -> tuple[Status, str]:
    src, tgt = row["source"], row["target"]
    if "error" in tgt:
        return "fail", f"target: {tgt['error']}"
    if tgt["markers_in_text"]:
        return "fail", f"target's text contains {', '.join(tgt['markers_in_text'])}"
    if tgt["finish_reason"] == "stop":
        return "pass", f"stop after {tgt['completion_tokens']} tokens"
    if src.get("finish_reason") != "stop":
        why = src.get("finish_reason") or src.get("error")
        return "warn", f"neither side stops (source {why}, target {tgt['finish_reason']})"
    ran_on = (
        f"the source stops after {src.get('completion_tokens')} tokens, the target runs to "
        f"{tgt['finish_reason']!r} at {tgt['completion_tokens']}"
    )
    if tgt["markers_generated"]:
        return "fail", f"{ran_on}, generating {', '.join(tgt['markers_generated'])} on the way"
    forced = row.get("teacher_forced")
    if forced is None:
        return "fail", ran_on
    if forced.get("finish_reason") == "stop":
        return "warn", (
            f"{ran_on}, but stops right where the source's answer ends: the greedy answers "
            "diverged, the stop token works"
        )
    evidence = forced.get("markers_generated") or []
    return "fail", (
        f"{ran_on}; continuing the source's answer it still runs to "
        f"{forced.get('finish_reason') or forced.get('error')!r}"
        + (f", generating {', '.join(evidence)}" if evidence else "")
    )


_CHECKS: list[tuple[str, Callable[[_Run], Awaitable[Check]]]] = [
    ("names", _names),
    ("chat", _chat),
    ("completion", _completion),
    ("streaming", _streaming),
    ("stream_usage", _stream_usage),
    ("stop_sequence", _stop_sequence),
    ("max_tokens", _max_tokens),
    ("json_mode", _json_mode),
    ("tools", _tools),
    ("long_prompt", _long_prompt),
    ("context_length", _context_length),
    ("sampling_defaults", _sampling_defaults),
    ("stop_tokens", _stop_tokens),
]
assert tuple(name for name, _ in _CHECKS) == CHECK_NAMES
