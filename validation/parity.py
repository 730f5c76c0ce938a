"""Output parity: does the vLLM target answer like the Ollama source, token for token?

Comparing free-running text alone cannot tell quantization noise from a broken migration:
the source is usually a 4-bit GGUF whose top two candidates are often ~0.1 nats apart, so
greedy answers diverge early even when the migration is perfect (FIELD-NOTES). So, per
prompt:

1. The SOURCE generates greedily through /v1/chat/completions with every penalty and
   truncation sampler neutral (llama.cpp applies `repeat_penalty` 1.1 by default even at
   temperature 0) and reports its own top-k log-probs. Its token pieces are mapped back
   to ids (`PieceVocab.align`): ids, never re-tokenised text.
2. The TARGET is teacher-forced on exactly those ids: its own rendering of the chat
   (`/tokenize` with messages) plus the source's output ids go to /v1/completions as a
   token-id prompt with `prompt_logprobs`, giving the target's log-prob of every source
   token and its own top-k at every position.
3. The TARGET also generates free-running greedily through chat, for the exact-match
   rate and the first position (in token ids) where the two answers diverge.

Metrics, pooled over all scored positions of all prompts:

- top-1 agreement: the target's argmax is the source's token;
- near-ties: a disagreement where the source's own top two were closer than
  `near_tie_nats` (default 0.3) is quantization noise, not a disagreement; agreement
  excluding near-ties = agree / (positions - near-ties);
- top-k overlap: |source top-k ∩ target top-k| / k;
- KL(source || target) on the top-k union, see `union_kl`;
- mean log-prob of the source's tokens under the target (and under the source);
- exact-match rate and first divergence of the free-running answers;
- alignment failures: generated pieces that did not map to an id (scoring stops there).

Prompts run concurrently (a semaphore per endpoint); llama.cpp serves one request at a
time, vLLM batches, so the wall time approaches the source's own generation time. The
busy time of each endpoint (union of its in-flight intervals) is reported beside it.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from converters.errors import MigrateError
from validation.client import EndpointError, OpenAIClient
from validation.pieces import PieceVocab, SourcePiece, bytes_from_logprob_entry
from validation.suite import SuitePrompt

DEFAULT_TOP_K = 5
NEAR_TIE_NATS = 0.3  # FIELD-NOTES: Q4 quantization moves log-probs by ~0.1 nats
TARGET_LOGPROBS = 20  # vLLM's default --max-logprobs: a wide target table for the KL
_FLOOR = 1e-12

# Greedy with every penalty and truncation sampler off, in each server's vocabulary:
# llama.cpp/Ollama read repeat_penalty, vLLM repetition_penalty; unknown fields are ignored.
NEUTRAL_SAMPLING: dict[str, Any] = {
    "temperature": 0.0,
    "top_p": 1.0,
    "top_k": 0,
    "min_p": 0.0,
    "repeat_penalty": 1.0,
    "repetition_penalty": 1.0,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
    "seed": 0,
}


class ParityError(MigrateError):
    """Parity cannot be measured against these endpoints at all."""


# --- per-position math (pure) -----------------------------------------------------------


def _fill(known: Mapping[int, float], support: Iterable[int], floor: float) -> dict[int, float]:
    """Probabilities of `support` from a partial log-prob table: known ids keep theirs;
    each unknown id gets min(the table's smallest reported probability, the unreported
    mass shared equally among the unknown ids of the support)."""
    support = list(support)
    missing = [t for t in support if t not in known]
    leftover = max(0.0, 1.0 - sum(math.exp(v) for v in known.values()))
    guess = min(math.exp(floor), leftover / len(missing)) if missing else 0.0
    return {t: max(math.exp(known[t]) if t in known else guess, _FLOOR) for t in support}


def union_kl(
    source: Mapping[int, float],
    target: Mapping[int, float],
    support: Iterable[int],
    *,
    source_floor: float | None = None,
    target_floor: float | None = None,
) -> float:
    """KL(source || target) in nats, estimated on `support` (the union of both top-k).

    The estimator: each side's log-probs on the support come from what that server
    reported (its top-k; the target also reports up to `TARGET_LOGPROBS` more); an id a
    side did not report gets min(that side's smallest reported probability — an upper
    bound, since the id ranked below all of them — , the probability mass the side left
    unreported divided among its unknown support ids). Both are then renormalised over
    the support and KL = sum p log(p / q). This is the "top-k renormalised" KL of
    FIELD-NOTES (0.0027 on a correct bf16 migration of a Q4_1 GGUF): it ignores the tail
    beyond the top-k, so it underestimates the full KL, but it is zero for identical
    tables and grows fast when the two top-k sets or their orders differ.
    """
    support = list(dict.fromkeys(support))
    if not support:
        return 0.0
    p = _fill(source, support, min(source.values()) if source_floor is None else source_floor)
    q = _fill(target, support, min(target.values()) if target_floor is None else target_floor)
    zp, zq = sum(p.values()), sum(q.values())
    return max(0.0, sum((p[t] / zp) * math.log((p[t] / zp) / (q[t] / zq)) for t in support))


@dataclass
class PositionScore:
    """How the target scored one source token."""

    source_id: int
    target_top1: int
    agree: bool
    near_tie: bool  # a disagreement excused: the source's own top two were within the noise
    source_gap: float | None  # source's top-1 minus top-2 log-prob; None: unknown
    source_logprob: float
    target_logprob: float | None  # None: the target did not report the source token
    target_margin: float | None  # target's top-1 log-prob minus target_logprob
    kl: float | None  # None: the source's top-k is incomplete or did not map to ids
    overlap: float | None
    source_greedy: bool  # the source's token was its own top-1 (no penalty at work)


def score_position(
    source_id: int,
    source_logprob: float,
    source_top: Sequence[tuple[int | None, float]],
    target: Mapping[int, tuple[float, int]],
    *,
    top_k: int = DEFAULT_TOP_K,
    near_tie_nats: float = NEAR_TIE_NATS,
) -> PositionScore:
    """Compare one position. `source_top`: the source's top-k as (id or None, log-prob);
    `target`: id -> (log-prob, rank) as vLLM's prompt_logprobs gives it (rank 1 = argmax).

    A source top-k with fewer than `top_k` entries came back collapsed: llama-cpp-python
    keys alternatives by their text, and pieces holding part of a UTF-8 character all
    read as "", so they overwrite each other. Its top-2 gap is then unknown (the target's
    margin between its top-1 and the source token stands in for the near-tie test) and no
    KL or overlap is estimated there.
    """
    values = sorted((lp for _, lp in source_top), reverse=True) or [source_logprob]
    collapsed = len(source_top) < top_k
    gap = values[0] - values[1] if len(values) > 1 and not collapsed else None
    ranked = sorted(target.items(), key=lambda kv: kv[1][1])
    target_top1 = ranked[0][0]
    # A source token tied with the target's best (bf16 logits tie often) counts as top-1.
    agree = target_top1 == source_id or (
        source_id in target and target[source_id][0] >= ranked[0][1][0]
    )
    target_lp = target[source_id][0] if source_id in target else None
    margin = ranked[0][1][0] - target_lp if target_lp is not None else None
    closest = gap if gap is not None else margin
    near_tie = not agree and closest is not None and closest < near_tie_nats
    greedy = source_logprob >= values[0] - 1e-4
    kl = overlap = None
    if source_top and not collapsed and all(t is not None for t, _ in source_top):
        src = {int(t): lp for t, lp in source_top if t is not None}
        src.setdefault(source_id, source_logprob)
        tgt_topk = [t for t, (_, rank) in ranked if rank <= top_k][:top_k]
        src_topk = sorted(src, key=lambda t: -src[t])[:top_k]
        # The smallest log-prob among the target's top-n bounds every unreported id; the
        # source token's own entry (vLLM adds it at its true rank) counts only when it is
        # the (n+1)-th.
        width = [lp for _, (lp, rank) in ranked if rank <= len(ranked)]
        kl = union_kl(
            src,
            {t: lp for t, (lp, _) in target.items()},
            [*src_topk, *tgt_topk],
            source_floor=min(src.values()),
            target_floor=min(width) if width else None,
        )
        overlap = len(set(src_topk) & set(tgt_topk)) / top_k
    return PositionScore(
        source_id=source_id,
        target_top1=target_top1,
        agree=agree,
        near_tie=near_tie,
        source_gap=gap,
        source_logprob=source_logprob,
        target_logprob=target_lp,
        target_margin=margin,
        kl=kl,
        overlap=overlap,
        source_greedy=greedy,
    )


def first_divergence(a: Sequence[int | None], b: Sequence[int]) -> int | None:
    """Index of the first token where two id sequences differ; None when identical.
    A sequence that is a strict prefix of the other diverges at its end."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def busy_seconds(intervals: Iterable[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals: the time an endpoint had work."""
    total, end = 0.0, -math.inf
    for start, stop in sorted(intervals):
        if start > end:
            total += stop - start
            end = stop
        elif stop > end:
            total += stop - end
            end = stop
    return total


# --- results ----------------------------------------------------------------------------


class Disagreement(BaseModel):
    position: int
    source_token: str
    target_token: str
    source_gap: float | None  # nats between the source's own top two; None: unknown
    target_margin: float | None  # target's top-1 minus its log-prob of the source token
    near_tie: bool


class PromptParity(BaseModel):
    """Parity of one prompt."""

    id: str
    category: str
    source_text: str = ""
    target_text: str = ""
    source_tokens: int = 0  # generated by the source
    target_tokens: int = 0  # generated free-running by the target
    source_prompt_tokens: int | None = None
    target_prompt_tokens: int | None = None
    positions: int = 0  # source tokens the target scored
    agreements: int = 0
    near_ties: int = 0
    kl_positions: int = 0
    kl_sum: float = 0.0
    kl_max: float = 0.0
    overlap_sum: float = 0.0
    target_logprob_sum: float = 0.0
    source_logprob_sum: float = 0.0
    source_not_greedy: int = 0  # source tokens that were not its own top-1
    alignment_failures: int = 0  # generated pieces that mapped to no id
    unscored: int = 0  # source tokens after the first alignment failure
    exact_match: bool | None = None
    first_divergence: int | None = None
    disagreements: list[Disagreement] = Field(default_factory=list)
    source_seconds: float | None = None
    target_forced_seconds: float | None = None
    target_free_seconds: float | None = None
    source_error: str | None = None
    target_error: str | None = None

    @property
    def hard_disagreements(self) -> int:
        return self.positions - self.agreements - self.near_ties


class ParityResult(BaseModel):
    """Parity over a suite; aggregates pool all scored positions of all prompts."""

    model: str
    top_k: int
    near_tie_nats: float
    prompts: list[PromptParity]
    positions: int
    agreements: int
    near_ties: int
    hard_disagreements: int
    top1_agreement: float | None
    top1_agreement_excl_near_ties: float | None
    topk_overlap: float | None
    mean_kl: float | None
    kl_max: float  # the largest single-position KL
    kl_coverage: float | None  # share of scored positions with a KL estimate
    mean_target_logprob: float | None
    mean_source_logprob: float | None
    exact_match_rate: float | None
    first_divergence_median: float | None
    diverged_at_first_token: int
    alignment_failures: int
    unscored_tokens: int
    source_not_greedy: int
    prompt_render_mismatches: int  # prompts whose rendered prompt length differed
    source_errors: int
    target_errors: int
    source_tokens: int
    target_tokens: int
    wall_seconds: float
    source_busy_seconds: float
    target_busy_seconds: float

    def by_category(self) -> dict[str, dict[str, float | int | None]]:
        """Agreement (excluding near-ties), mean KL and exact matches per suite category."""
        out: dict[str, dict[str, float | int | None]] = {}
        for category in dict.fromkeys(r.category for r in self.prompts):
            rows = [r for r in self.prompts if r.category == category]
            positions = sum(r.positions for r in rows)
            counted = positions - sum(r.near_ties for r in rows)
            kl_positions = sum(r.kl_positions for r in rows)
            out[category] = {
                "prompts": len(rows),
                "positions": positions,
                "agreement_excl_near_ties": (
                    sum(r.agreements for r in rows) / counted if counted else None
                ),
                "mean_kl": sum(r.kl_sum for r in rows) / kl_positions if kl_positions else None,
                "exact_matches": sum(1 for r in rows if r.exact_match),
            }
        return out

    def summary(self) -> str:
        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{100 * v:.1f}%"

        kl = "n/a" if self.mean_kl is None else f"{self.mean_kl:.4f}"
        return (
            f"top-1 {pct(self.top1_agreement)} ({self.agreements}/{self.positions}), "
            f"{pct(self.top1_agreement_excl_near_ties)} excluding {self.near_ties} near-ties; "
            f"mean KL {kl}; top-{self.top_k} overlap {pct(self.topk_overlap)}; "
            f"exact match {pct(self.exact_match_rate)}; "
            f"alignment failures {self.alignment_failures}; "
            f"wall {self.wall_seconds:.1f} s (source busy {self.source_busy_seconds:.1f} s, "
            f"target busy {self.target_busy_seconds:.1f} s)"
        )


# --- talking to the servers -------------------------------------------------------------


@dataclass
class _SourceAnswer:
    text: str
    pieces: list[SourcePiece]
    logprobs: list[float]
    tops: list[list[tuple[SourcePiece, float]]]
    finish_reason: str | None
    prompt_tokens: int | None


@dataclass
class _Clock:
    t0: float = field(default_factory=time.monotonic)
    source: list[tuple[float, float]] = field(default_factory=list)
    target: list[tuple[float, float]] = field(default_factory=list)


def _parse_source(body: dict[str, Any]) -> _SourceAnswer:
    try:
        choice = body["choices"][0]
        text = choice["message"].get("content") or ""
        logprobs = choice.get("logprobs")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise EndpointError("source chat answer has no choices[0].message") from None
    if not isinstance(logprobs, dict) or not isinstance(logprobs.get("content"), list):
        raise EndpointError(
            "source returned no logprobs (it needs OpenAI `logprobs`/`top_logprobs` support)"
        )
    pieces: list[SourcePiece] = []
    lps: list[float] = []
    tops: list[list[tuple[SourcePiece, float]]] = []
    try:
        for entry in logprobs["content"]:
            pieces.append(SourcePiece(str(entry.get("token", "")), bytes_from_logprob_entry(entry)))
            lps.append(float(entry["logprob"]))
            tops.append(
                [
                    (
                        SourcePiece(str(t.get("token", "")), bytes_from_logprob_entry(t)),
                        float(t["logprob"]),
                    )
                    for t in entry.get("top_logprobs") or []
                ]
            )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EndpointError(f"source logprobs are malformed: {type(exc).__name__}: {exc}") from None
    usage = body.get("usage") or {}
    prompt_tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return _SourceAnswer(
        text=text,
        pieces=pieces,
        logprobs=lps,
        tops=tops,
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=int(prompt_tokens) if isinstance(prompt_tokens, int) else None,
    )


def _map_top(
    vocab: PieceVocab, top: list[tuple[SourcePiece, float]], chosen: SourcePiece, chosen_id: int
) -> list[tuple[int | None, float]]:
    out: list[tuple[int | None, float]] = []
    for piece, lp in top:
        if piece == chosen:
            out.append((chosen_id, lp))
            continue
        cands = vocab.candidates(piece)
        out.append((cands[0] if len(cands) == 1 else None, lp))
    return out


def _parse_prompt_logprobs(body: dict[str, Any]) -> list[dict[int, tuple[float, int]] | None]:
    try:
        table = body["choices"][0]["prompt_logprobs"]
    except (KeyError, IndexError, TypeError):
        table = None
    if not isinstance(table, list):
        raise EndpointError(
            "target returned no prompt_logprobs (teacher forcing needs vLLM's /v1/completions)"
        )
    out: list[dict[int, tuple[float, int]] | None] = []
    for entry in table:
        if not isinstance(entry, dict):
            out.append(None)
            continue
        out.append(
            {
                int(t): (float(v["logprob"]), int(v.get("rank") or 10**9))
                for t, v in entry.items()
                if isinstance(v, dict) and v.get("logprob") is not None
            }
        )
    return out


def _target_ids(body: dict[str, Any], vocab: PieceVocab) -> tuple[str, list[int], str | None]:
    choice = body["choices"][0]
    text = choice["message"].get("content") or ""
    ids: list[int] = []
    for entry in (choice.get("logprobs") or {}).get("content") or []:
        token = str(entry.get("token", ""))
        if token.startswith("token_id:"):
            ids.append(int(token.removeprefix("token_id:")))
        else:  # a server without return_tokens_as_token_ids: map like a source piece
            cands = vocab.candidates(SourcePiece(token, bytes_from_logprob_entry(entry)))
            ids.append(cands[0] if cands else -1)
    finish = choice.get("finish_reason")
    if finish == "stop":
        while ids and ids[-1] in vocab.special_ids:
            ids.pop()  # the end-of-turn token the source does not report
    return text, ids, finish


async def measure_parity(
    source: OpenAIClient,
    target: OpenAIClient,
    model: str,
    prompts: Sequence[SuitePrompt],
    *,
    top_k: int = DEFAULT_TOP_K,
    max_tokens: int | None = None,
    concurrency: int = 8,
    vocab: PieceVocab,
    near_tie_nats: float = NEAR_TIE_NATS,
    target_model: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ParityResult:
    """Measure output parity of `model` between `source` (Ollama / llama.cpp) and
    `target` (vLLM) over `prompts`. `max_tokens`, when given, replaces each prompt's own.
    `target_model` is the target's served name when it differs from the source's.
    `progress(done, total)` is called as each prompt finishes."""
    if top_k < 1:
        raise ParityError("top_k must be at least 1")
    if target.kind == "unknown":
        await target.detect()
    if target.kind != "vllm":
        raise ParityError(
            f"the target at {target.base_url} is not vLLM (detected: {target.kind})",
            hint="teacher forcing needs vLLM's /tokenize and prompt_logprobs",
        )
    served = target_model or model
    source_gate = asyncio.Semaphore(max(1, concurrency))
    target_gate = asyncio.Semaphore(max(1, concurrency))
    clock = _Clock()

    async def timed(
        gate: asyncio.Semaphore, spans: list[tuple[float, float]], call: Any
    ) -> tuple[Any, float]:
        async with gate:
            start = time.monotonic()
            try:
                return await call, time.monotonic() - start
            finally:
                spans.append((start - clock.t0, time.monotonic() - clock.t0))

    async def free_run(prompt: SuitePrompt, limit: int) -> tuple[dict[str, Any], float]:
        payload = {
            "model": served,
            "messages": prompt.chat_messages(),
            "max_tokens": limit,
            **NEUTRAL_SAMPLING,
            "logprobs": True,
            "top_logprobs": 0,
            "return_tokens_as_token_ids": True,
        }
        result: tuple[dict[str, Any], float] = await timed(
            target_gate, clock.target, target.chat(payload)
        )
        return result

    async def one(prompt: SuitePrompt) -> PromptParity:
        limit = max_tokens or prompt.max_tokens
        row = PromptParity(id=prompt.id, category=prompt.category)
        messages = prompt.chat_messages()
        # The source is the slow side: its request goes out first; the target's free run
        # and its rendering of the prompt run meanwhile.
        free_task = asyncio.create_task(free_run(prompt, limit))
        render_task = asyncio.create_task(
            timed(target_gate, clock.target, target.tokenize_chat(served, messages))
        )
        source_payload = {
            "model": model,
            "messages": messages,
            "max_tokens": limit,
            **NEUTRAL_SAMPLING,
            "logprobs": True,
            "top_logprobs": top_k,
        }
        answer: _SourceAnswer | None = None
        try:
            body, row.source_seconds = await timed(
                source_gate, clock.source, source.chat(source_payload)
            )
            answer = _parse_source(body)
        except EndpointError as exc:
            row.source_error = str(exc)
        prompt_ids: list[int] | None = None
        try:
            prompt_ids, _ = await render_task
        except EndpointError as exc:
            row.target_error = f"tokenize: {exc}"
        ids: list[int | None] = []
        if answer is not None:
            ids = _score_source(row, answer, vocab)
            row.source_prompt_tokens = answer.prompt_tokens
            if prompt_ids is not None:
                row.target_prompt_tokens = len(prompt_ids)
                await _teacher_force(row, answer, ids, prompt_ids)
        try:
            body, row.target_free_seconds = await free_task
            row.target_text, target_ids, _ = _target_ids(body, vocab)
            row.target_tokens = len(target_ids)
            if answer is not None:
                src = [
                    t if t is not None else _match_text(vocab, answer.pieces[i], target_ids, i)
                    for i, t in enumerate(ids)
                ]
                row.first_divergence = first_divergence(src[:limit], target_ids[:limit])
                row.exact_match = row.first_divergence is None
        except (EndpointError, KeyError, IndexError, TypeError, ValueError) as exc:
            row.target_error = row.target_error or f"free-running chat: {exc}"
        return row

    async def _teacher_force(
        row: PromptParity,
        answer: _SourceAnswer,
        ids: list[int | None],
        prompt_ids: list[int],
    ) -> None:
        n = next((i for i, t in enumerate(ids) if t is None), len(ids))
        row.unscored = len(ids) - n - (1 if n < len(ids) else 0)
        forced = [int(t) for t in ids[:n] if t is not None]
        if not forced:
            return
        payload = {
            "model": served,
            "prompt": [*prompt_ids, *forced],
            "max_tokens": 1,
            "temperature": 0.0,
            "prompt_logprobs": max(top_k, TARGET_LOGPROBS),
        }
        try:
            body, row.target_forced_seconds = await timed(
                target_gate, clock.target, target.completion(payload)
            )
            table = _parse_prompt_logprobs(body)
        except EndpointError as exc:
            if "logprobs" not in str(exc) or top_k >= TARGET_LOGPROBS:
                row.target_error = f"teacher forcing: {exc}"
                return
            payload["prompt_logprobs"] = top_k  # a server with a lower --max-logprobs
            try:
                body, row.target_forced_seconds = await timed(
                    target_gate, clock.target, target.completion(payload)
                )
                table = _parse_prompt_logprobs(body)
            except EndpointError as exc2:
                row.target_error = f"teacher forcing: {exc2}"
                return
        base = len(prompt_ids)
        for i, token_id in enumerate(forced):
            entry = table[base + i] if base + i < len(table) else None
            if not entry:
                continue
            top = _map_top(vocab, answer.tops[i], answer.pieces[i], token_id)
            score = score_position(
                token_id,
                answer.logprobs[i],
                top,
                entry,
                top_k=top_k,
                near_tie_nats=near_tie_nats,
            )
            _add(row, i, score, vocab)

    t_start = time.monotonic()
    finished = 0

    async def counted(prompt: SuitePrompt) -> PromptParity:
        nonlocal finished
        row = await one(prompt)
        finished += 1
        if progress is not None:
            progress(finished, len(prompts))
        return row

    rows = await asyncio.gather(*(counted(p) for p in prompts))
    wall = time.monotonic() - t_start
    return _summarise(
        model,
        list(rows),
        top_k=top_k,
        near_tie_nats=near_tie_nats,
        wall=wall,
        source_busy=busy_seconds(clock.source),
        target_busy=busy_seconds(clock.target),
    )


def _score_source(row: PromptParity, answer: _SourceAnswer, vocab: PieceVocab) -> list[int | None]:
    row.source_text = answer.text
    row.source_tokens = len(answer.pieces)
    ids = vocab.align(answer.pieces, answer.text)
    row.alignment_failures = sum(1 for t in ids if t is None)
    return ids


def _match_text(vocab: PieceVocab, piece: SourcePiece, target_ids: list[int], i: int) -> int | None:
    """An unmapped source piece counts as equal to the target's token of the same text."""
    if i < len(target_ids) and vocab.text_of(target_ids[i]) == piece.text:
        return target_ids[i]
    return None


def _add(row: PromptParity, position: int, score: PositionScore, vocab: PieceVocab) -> None:
    row.positions += 1
    row.agreements += score.agree
    row.near_ties += score.near_tie
    row.source_logprob_sum += score.source_logprob
    row.source_not_greedy += not score.source_greedy
    if score.target_logprob is not None:
        row.target_logprob_sum += score.target_logprob
    if score.kl is not None and score.overlap is not None:
        row.kl_positions += 1
        row.kl_sum += score.kl
        row.kl_max = max(row.kl_max, score.kl)
        row.overlap_sum += score.overlap
    if not score.agree:
        row.disagreements.append(
            Disagreement(
                position=position,
                source_token=vocab.text_of(score.source_id),
                target_token=vocab.text_of(score.target_top1),
                source_gap=None if score.source_gap is None else round(score.source_gap, 4),
                target_margin=None
                if score.target_margin is None
                else round(score.target_margin, 4),
                near_tie=score.near_tie,
            )
        )


def _summarise(
    model: str,
    rows: list[PromptParity],
    *,
    top_k: int,
    near_tie_nats: float,
    wall: float,
    source_busy: float,
    target_busy: float,
) -> ParityResult:
    positions = sum(r.positions for r in rows)
    agreements = sum(r.agreements for r in rows)
    near_ties = sum(r.near_ties for r in rows)
    kl_positions = sum(r.kl_positions for r in rows)
    compared = [r for r in rows if r.exact_match is not None]
    diverged = [r.first_divergence for r in compared if r.first_divergence is not None]

    def ratio(num: float, den: float) -> float | None:
        return num / den if den else None

    return ParityResult(
        model=model,
        top_k=top_k,
        near_tie_nats=near_tie_nats,
        prompts=rows,
        positions=positions,
        agreements=agreements,
        near_ties=near_ties,
        hard_disagreements=positions - agreements - near_ties,
        top1_agreement=ratio(agreements, positions),
        top1_agreement_excl_near_ties=ratio(agreements, positions - near_ties),
        topk_overlap=ratio(sum(r.overlap_sum for r in rows), kl_positions),
        mean_kl=ratio(sum(r.kl_sum for r in rows), kl_positions),
        kl_max=max((r.kl_max for r in rows), default=0.0),
        kl_coverage=ratio(kl_positions, positions),
        mean_target_logprob=ratio(sum(r.target_logprob_sum for r in rows), positions),
        mean_source_logprob=ratio(sum(r.source_logprob_sum for r in rows), positions),
        exact_match_rate=ratio(sum(1 for r in compared if r.exact_match), len(compared)),
        first_divergence_median=float(statistics.median(diverged)) if diverged else None,
        diverged_at_first_token=sum(1 for d in diverged if d == 0),
        alignment_failures=sum(r.alignment_failures for r in rows),
        unscored_tokens=sum(r.unscored for r in rows),
        source_not_greedy=sum(r.source_not_greedy for r in rows),
        prompt_render_mismatches=sum(
            1
            for r in rows
            if r.source_prompt_tokens is not None
            and r.target_prompt_tokens is not None
            and r.source_prompt_tokens != r.target_prompt_tokens
        ),
        source_errors=sum(1 for r in rows if r.source_error),
        target_errors=sum(1 for r in rows if r.target_error),
        source_tokens=sum(r.source_tokens for r in rows),
        target_tokens=sum(r.target_tokens for r in rows),
        wall_seconds=round(wall, 2),
        source_busy_seconds=round(source_busy, 2),
        target_busy_seconds=round(target_busy, 2),
    )
