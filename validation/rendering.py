"""Chat rendering parity: do both sides turn the same chat messages into the same prompt?

A wrong chat template, a lost default system prompt, a missing or doubled BOS or a
missing end-of-turn token all change the prompt the model sees, while every request
still "works". For each conversation (a single user turn, one with a system prompt,
multi-turn ones with assistant turns, with and without a system prompt), and for a plain
text prompt on /v1/completions (where the tokenizer's own BOS handling applies, which
chat prompts bypass: servers tokenize a rendered chat without adding special tokens):

1. Exact token ids, where both sides expose a chat tokenizer (vLLM's /tokenize with
   messages). Where only the target does, its rendered length is reported beside its
   usage.prompt_tokens.
2. usage.prompt_tokens of a one-token greedy chat request, on both sides: this is what
   every server reports, and a missing <|im_end|>, BOS or system prompt changes it.
3. The first greedy token on both sides (a rendering break usually changes it). Since
   quantization noise can swap near-tied candidates (measured: about 0.1 nats), a
   different first token counts as a near-tie, not a mismatch, when the other side's
   token is within `NEAR_TIE_NATS` of the top candidate in either side's top logprobs
   (`near_tie_nats`: a quantized target's own noise is larger, see thresholds.py).
   Without logprobs to judge by, a different first token only warns.

Any mismatch of ids or prompt_tokens, or a first token that is not a near-tie, fails
with the first differing conversation named. Caveat for a real Ollama source: its
prompt_tokens (prompt_eval_count) may leave out tokens served from its prompt cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from validation.checks import (
    Check,
    Outcome,
    Status,
    attempt,
    completion_text,
    ensure_kind,
    first_completion_logprobs,
    first_logprobs,
    greedy_params,
    message_text,
    short_json,
    usage_of,
)
from validation.client import OpenAIClient

NEAR_TIE_NATS = 0.5
TOP_LOGPROBS = 5

_SYSTEM = "You are a pirate. Always answer like a pirate."
DEFAULT_CONVERSATIONS: dict[str, list[dict[str, Any]]] = {
    "single_turn": [{"role": "user", "content": "What is the capital of France?"}],
    "with_system": [
        {"role": "system", "content": _SYSTEM},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    "multi_turn": [
        {"role": "user", "content": "Hi! My name is Ada."},
        {"role": "assistant", "content": "Hello Ada! How can I help you today?"},
        {"role": "user", "content": "What is my name?"},
    ],
    "multi_turn_system": [
        {"role": "system", "content": _SYSTEM},
        {"role": "user", "content": "Hi! My name is Ada."},
        {"role": "assistant", "content": "Ahoy Ada! What be yer question?"},
        {"role": "user", "content": "What is my name?"},
    ],
}

# Plain-text prompts: prompt_tokens on /v1/completions show the tokenizer's BOS handling.
DEFAULT_TEXT_PROMPTS: dict[str, str] = {"text_prompt": "The capital of France is"}

Conversations = Mapping[str, list[dict[str, Any]]] | Sequence[list[dict[str, Any]]]


async def check_rendering(
    source: OpenAIClient,
    target: OpenAIClient,
    model_names: list[str],
    conversations: Conversations | None = None,
    text_prompts: Mapping[str, str] | None = None,
    near_tie_nats: float = NEAR_TIE_NATS,
    first_token_differs: Status = "fail",
) -> list[Check]:
    """`first_token_differs`: what a first greedy token beyond the near-tie tolerance is,
    with equal prompts; "warn" for 4-bit targets, whose own noise can change it."""
    """One `rendering` check per model name (`rendering[name]` when there are several);
    the same name is sent to both sides, as a client that only changed the URL does."""
    await ensure_kind(source)
    await ensure_kind(target)
    named = _named(conversations if conversations is not None else DEFAULT_CONVERSATIONS)
    model_names = list(dict.fromkeys(model_names))  # a name given twice is checked once
    checks = []
    for model in model_names:
        rows = {}
        for label, messages in named.items():
            rows[label] = await render_row(source, target, model, messages, near_tie_nats)
        for label, prompt in (
            DEFAULT_TEXT_PROMPTS if text_prompts is None else text_prompts
        ).items():
            rows[label] = await render_text_row(source, target, model, prompt, near_tie_nats)
        name = "rendering" if len(model_names) == 1 else f"rendering[{model}]"
        checks.append(
            judge_rendering(rows, name=name, model=model, first_token_differs=first_token_differs)
        )
    return checks


def _named(conversations: Conversations) -> dict[str, list[dict[str, Any]]]:
    if isinstance(conversations, Mapping):
        return dict(conversations)
    return {f"conversation_{i + 1}": list(c) for i, c in enumerate(conversations)}


async def render_row(
    source: OpenAIClient,
    target: OpenAIClient,
    model: str,
    messages: list[dict[str, Any]],
    near_tie_nats: float = NEAR_TIE_NATS,
) -> dict[str, Any]:
    """Everything measured for one conversation; judged by `judge_rendering`."""
    src_ids, tgt_ids = await asyncio.gather(
        attempt(source.tokenize_chat(model, messages)),
        attempt(target.tokenize_chat(model, messages)),
    )

    def ask(client: OpenAIClient) -> Any:
        payload = {
            "model": model,
            "messages": messages,
            "max_tokens": 1,
            "logprobs": True,
            "top_logprobs": TOP_LOGPROBS,
            **greedy_params(client),
        }
        return attempt(client.chat(payload))

    src, tgt = await asyncio.gather(ask(source), ask(target))
    return row_from(src_ids, tgt_ids, src, tgt, near_tie_nats=near_tie_nats)


async def render_text_row(
    source: OpenAIClient,
    target: OpenAIClient,
    model: str,
    prompt: str,
    near_tie_nats: float = NEAR_TIE_NATS,
) -> dict[str, Any]:
    """A plain prompt on /v1/completions: prompt_tokens and the first greedy token. Ids are
    not compared: llama.cpp's tokenize endpoint never adds BOS, so it cannot show BOS."""

    def ask(client: OpenAIClient) -> Any:
        payload = {
            "model": model,
            "prompt": prompt,
            "max_tokens": 1,
            "logprobs": TOP_LOGPROBS,
            **greedy_params(client),
        }
        return attempt(client.completion(payload))

    src, tgt = await asyncio.gather(ask(source), ask(target))
    unmeasured = Outcome(body=None)
    return row_from(
        unmeasured,
        unmeasured,
        src,
        tgt,
        first=first_completion_logprobs,
        near_tie_nats=near_tie_nats,
    )


def row_from(
    src_ids: Outcome,
    tgt_ids: Outcome,
    source: Outcome,
    target: Outcome,
    *,
    first: Callable[[Any], tuple[str | None, dict[str, float]]] = first_logprobs,
    near_tie_nats: float = NEAR_TIE_NATS,
) -> dict[str, Any]:
    source_ids = src_ids.body if src_ids.ok else None
    target_ids = tgt_ids.body if tgt_ids.ok else None
    row: dict[str, Any] = {
        "source_rendered_tokens": len(source_ids) if source_ids is not None else None,
        "target_rendered_tokens": len(target_ids) if target_ids is not None else None,
        "ids_equal": None,
        "first_id_difference": None,
    }
    if source_ids is not None and target_ids is not None:
        row["ids_equal"] = source_ids == target_ids
        if source_ids != target_ids:
            row["first_id_difference"] = next(
                (i for i, (a, b) in enumerate(zip(source_ids, target_ids, strict=False)) if a != b),
                min(len(source_ids), len(target_ids)),
            )
    if target_ids is None and not tgt_ids.ok:
        row["target_tokenize_error"] = tgt_ids.summary()
    for side, outcome in (("source", source), ("target", target)):
        if not outcome.ok:
            row[f"{side}_error"] = outcome.summary()
            row[f"{side}_prompt_tokens"] = None
            row[f"{side}_first_token"] = None
            row[f"{side}_top_logprobs"] = {}
            continue
        usage = usage_of(outcome.body)
        token, tops = first(outcome.body)
        row[f"{side}_prompt_tokens"] = usage["prompt_tokens"] if usage else None
        fallback = message_text(outcome.body) or completion_text(outcome.body)
        row[f"{side}_first_token"] = token if token is not None else fallback
        row[f"{side}_top_logprobs"] = tops
    row.update(compare_first_tokens(row, near_tie_nats))
    return row


def compare_first_tokens(
    row: dict[str, Any], near_tie_nats: float = NEAR_TIE_NATS
) -> dict[str, Any]:
    """`first_token`: same | near_tie | differs | unknown, with the logprob gaps (nats)
    of the other side's token below each side's top candidate."""
    src, tgt = row.get("source_first_token"), row.get("target_first_token")
    if src is None or tgt is None:
        return {"first_token": "unknown", "gap_on_target": None, "gap_on_source": None}
    if src == tgt:
        return {"first_token": "same", "gap_on_target": 0.0, "gap_on_source": 0.0}
    gap_t = _gap(row.get("target_top_logprobs") or {}, src)
    gap_s = _gap(row.get("source_top_logprobs") or {}, tgt)
    gaps = [g for g in (gap_t, gap_s) if g is not None]
    if any(g <= near_tie_nats for g in gaps):
        verdict = "near_tie"
    elif not (row.get("target_top_logprobs") or row.get("source_top_logprobs")):
        verdict = "unknown"
    else:
        verdict = "differs"
    return {"first_token": verdict, "gap_on_target": gap_t, "gap_on_source": gap_s}


def _gap(tops: dict[str, float], token: str) -> float | None:
    if not tops or token not in tops:
        return None
    return round(max(tops.values()) - tops[token], 4)


def row_problems(
    row: dict[str, Any], first_token_differs: Status = "fail"
) -> tuple[Status, str | None]:
    """The worst problem of one conversation's row, as (status, one line)."""
    if row.get("target_error"):
        return "fail", f"target: {row['target_error']}"
    if row.get("ids_equal") is False:
        return "fail", (
            f"rendered token ids differ at position {row['first_id_difference']} "
            f"(source {row['source_rendered_tokens']} ids, target {row['target_rendered_tokens']})"
        )
    src_n, tgt_n = row.get("source_prompt_tokens"), row.get("target_prompt_tokens")
    if src_n is not None and tgt_n is not None and src_n != tgt_n:
        return "fail", f"prompt_tokens differ: source {src_n}, target {tgt_n}"
    if row.get("first_token") == "differs":
        return first_token_differs, (
            f"first greedy token differs: source {short_json(row['source_first_token'])}, "
            f"target {short_json(row['target_first_token'])} (gap on target "
            f"{row.get('gap_on_target')}, on source {row.get('gap_on_source')} nats)"
        )
    if row.get("source_error"):
        return "warn", f"source: {row['source_error']}"
    if src_n is None or tgt_n is None:
        return "warn", "prompt_tokens not reported by both sides"
    if row.get("first_token") == "unknown" and row.get("source_first_token") != row.get(
        "target_first_token"
    ):
        return "warn", (
            f"first greedy token differs (source {short_json(row['source_first_token'])}, "
            f"target {short_json(row['target_first_token'])}) and no logprobs tell if it is a near-tie"
        )
    return "pass", None


def judge_rendering(
    rows: dict[str, dict[str, Any]],
    *,
    name: str = "rendering",
    model: str | None = None,
    first_token_differs: Status = "fail",
) -> Check:
    data: dict[str, Any] = {"model": model, "conversations": rows}
    verdicts = {label: row_problems(row, first_token_differs) for label, row in rows.items()}
    for level in ("fail", "warn"):
        for label, (status, problem) in verdicts.items():
            if status == level:
                return Check(name=name, status=status, detail=f"{label}: {problem}", data=data)
    counts = ", ".join(f"{label} {row.get('target_prompt_tokens')}" for label, row in rows.items())
    ties = [label for label, row in rows.items() if row.get("first_token") == "near_tie"]
    exact = [label for label, row in rows.items() if row.get("ids_equal")]
    method = "token ids equal" if len(exact) == len(rows) else "prompt_tokens equal"
    detail = (
        f"{len(rows)} conversations render alike ({method}: {counts}); first greedy tokens equal"
    )
    if ties:
        detail += f" except near-ties in {', '.join(ties)}"
    return Check(name=name, status="pass", detail=detail, data=data)
