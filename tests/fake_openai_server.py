"""A deterministic fake of an OpenAI-compatible server (vLLM-like or llama.cpp-like), run
in-process through httpx.MockTransport, for fast tests of the validation checks.

The "model" works on whitespace words: a chat is rendered with a ChatML template to text,
split into tokens (special markers are tokens of their own), and the greedy answer is a
fixed word sequence picked by a hash of the rendered prompt, then the end-of-turn token.
So a rendering change (template, system prompt, BOS) changes the prompt token count and
usually the first token, as with a real model. Seeded sampling is reproducible: the
answer is picked from the prompt, the seed and the effective sampling parameters (the
server defaults overridden by the request).

Breaks are switches: `default_system=None` (template without the default system
prompt), `bos=True` (a BOS token added), `lost_stop=True` (the end-of-turn token no
longer stops generation), `defaults=...` (request defaults), `stream_usage=False`,
`auto_tools=...`, `ramble=True` (greedy answers loop without an end token, though
continuing a finished answer stops at once) and more.
"""

from __future__ import annotations

import json
import random
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from validation.client import OpenAIClient

WORDS = [
    "paris",
    "river",
    "light",
    "blue",
    "window",
    "garden",
    "story",
    "silver",
    "morning",
    "quiet",
    "forest",
    "stone",
    "music",
    "little",
    "bright",
    "ocean",
    "winter",
    "yellow",
    "candle",
    "mountain",
]
EOS = "<|im_end|>"
_TOKEN = re.compile(r"<\|[^|]+\|>|\S+")
LLAMACPP_DEFAULTS = {
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.95,
    "min_p": 0.05,
    "repetition_penalty": 1.1,
}
VLLM_DEFAULTS = {
    "temperature": 1.0,
    "top_k": -1,
    "top_p": 1.0,
    "min_p": 0.0,
    "repetition_penalty": 1.0,
}


@dataclass
class FakeServer:
    kind: Literal["vllm", "llamacpp"] = "vllm"
    names: list[str] = field(default_factory=lambda: ["m:1b"])
    context: int = 2048
    default_system: str | None = "You are a helpful assistant."
    bos: bool = False
    lost_stop: bool = False
    defaults: dict[str, Any] = field(default_factory=dict)
    stream_usage: bool = True
    auto_tools: Literal["tool_calls", "text", "reject"] = "reject"
    named_tools: bool = True
    json_mode: bool = True
    truncate_long: bool = False  # Ollama: silently keep the last `context` tokens
    answer_words: int = 12
    swap_first: bool = False
    ramble: bool = False  # free-running greedy answers never end (they diverged)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        base = VLLM_DEFAULTS if self.kind == "vllm" else LLAMACPP_DEFAULTS
        self.defaults = {**base, **self.defaults}

    # --- the model -------------------------------------------------------------------

    def render(self, messages: list[dict[str, Any]]) -> list[str]:
        text = "<|bos|> " if self.bos else ""
        if messages[0]["role"] != "system" and self.default_system:
            text += f"<|im_start|> system {self.default_system} {EOS} "
        for message in messages:
            text += f"<|im_start|> {message['role']} {message['content']} {EOS} "
        return _TOKEN.findall(text + "<|im_start|> assistant")

    def answer(self, prompt: list[str], params: dict[str, Any], seed: int | None) -> list[str]:
        """The generated tokens, EOS included, before stop/max_tokens handling."""
        greedy = float(params["temperature"]) == 0.0
        key = " ".join(prompt)
        if not greedy:
            key += f"|{seed if seed is not None else random.random()}|"
            key += json.dumps({k: params[k] for k in sorted(VLLM_DEFAULTS)})
        rng = random.Random(zlib.crc32(key.encode()))
        words = [rng.choice(WORDS) for _ in range(self.answer_words)]
        return [*words, EOS]

    def first_logprobs(self, top: str, chosen: str) -> list[dict[str, Any]]:
        """Top candidates for the first token: `top` clearly first, or, when noise made
        `chosen` win, the two within 0.05 nats."""
        if chosen != top:
            head = [{"token": chosen, "logprob": -0.6}, {"token": top, "logprob": -0.65}]
        else:
            head = [{"token": top, "logprob": -0.1}]
        others = [w for w in WORDS if w not in (top, chosen)][:3]
        return head + [{"token": w, "logprob": -2.5 - i} for i, w in enumerate(others)]

    # --- HTTP ------------------------------------------------------------------------

    def client(self) -> OpenAIClient:
        client = OpenAIClient(f"http://{self.kind}.test")
        client._http = httpx.AsyncClient(
            base_url=client.base_url, transport=httpx.MockTransport(self.handle)
        )
        return client

    def handle(self, request: httpx.Request) -> httpx.Response:
        body: dict[str, Any] = json.loads(request.content) if request.content else {}
        self.requests.append({"path": request.url.path, "body": body})
        path = request.url.path
        if path == "/version" and self.kind == "vllm":
            return httpx.Response(200, json={"version": "fake"})
        if path == "/extras/tokenize" and self.kind == "llamacpp":
            return httpx.Response(
                200, json={"tokens": [_id(t) for t in _TOKEN.findall(body["input"])]}
            )
        if path == "/tokenize" and self.kind == "vllm":
            if "messages" in body:
                tokens = self.render(body["messages"])
            else:
                tokens = _TOKEN.findall(body["prompt"])
            return httpx.Response(200, json={"tokens": [_id(t) for t in tokens]})
        if path == "/v1/models":
            data: list[dict[str, Any]] = [{"id": n, "object": "model"} for n in self.names]
            if self.kind == "vllm":
                for entry in data:
                    entry["max_model_len"] = self.context
            return httpx.Response(200, json={"object": "list", "data": data})
        if path in ("/v1/chat/completions", "/v1/completions"):
            return self.generate(path, body)
        return httpx.Response(404, json={"error": "not found"})

    def generate(self, path: str, body: dict[str, Any]) -> httpx.Response:
        if body.get("model") not in self.names:
            return _error(404, f"The model `{body.get('model')}` does not exist.")
        chat = path.endswith("chat/completions")
        if chat:
            prompt = self.render(body["messages"])
        else:  # a text prompt: the tokenizer's own BOS, if it adds one
            prompt = (["<|bos|>"] if self.bos else []) + _TOKEN.findall(body["prompt"])
        if len(prompt) >= self.context:
            if not self.truncate_long:
                return _error(
                    400,
                    f"This model's maximum context length is {self.context} tokens. However, "
                    f"your prompt contains {len(prompt)} input tokens.",
                )
            prompt = prompt[-self.context + 1 :]
        params = dict(self.defaults)
        for key in VLLM_DEFAULTS:
            if key in body:
                params[key] = body[key]
        if "repeat_penalty" in body:
            params["repetition_penalty"] = body["repeat_penalty"]
        if body.get("tools"):
            if isinstance(body.get("tool_choice"), dict):
                if not self.named_tools:
                    return _error(400, "named tool choice is not supported")
                return self.tool_call(body, prompt)
            if self.auto_tools == "reject":
                return _error(400, '"auto" tool choice requires --enable-auto-tool-choice')
            if self.auto_tools == "tool_calls":
                return self.tool_call(body, prompt)
        max_tokens = body.get("max_tokens") or self.context - len(prompt)
        tokens = self.answer(prompt, params, body.get("seed"))
        top = tokens[0]
        if body.get("continue_final_message"):  # the assistant's answer is complete
            tokens = [EOS]
        elif self.ramble:  # the greedy answer diverged into a loop: no end token
            tokens = tokens[:-1] * (max_tokens // len(tokens) + 1)
        if self.swap_first:  # quantization noise: a near-tied second candidate wins
            tokens[0] = WORDS[(WORDS.index(top) + 1) % len(WORDS)]
        if self.lost_stop:
            filler = ["<|im_start|>", "user", *WORDS]
            while len(tokens) < max_tokens:
                tokens += filler
        if (body.get("response_format") or {}).get("type") == "json_object" and self.json_mode:
            tokens = ['{"name":', '"Ada",', '"age":', "36}", EOS]
        generated: list[str] = []
        reason = "length"
        for token in tokens[:max_tokens]:
            generated.append(token)
            if token == EOS and not self.lost_stop:
                reason = "stop"
                break
        text = " ".join(t for t in generated if not t.startswith("<|"))
        stops = body.get("stop") or []
        for stop in [stops] if isinstance(stops, str) else stops:
            if stop in text:
                text, reason = text[: text.find(stop)], "stop"
                generated = _TOKEN.findall(text)
        usage = {
            "prompt_tokens": len(prompt),
            "completion_tokens": len(generated),
            "total_tokens": len(prompt) + len(generated),
        }
        if body.get("stream"):
            return self.stream(body, generated, reason, usage, chat)
        choice_body: dict[str, Any] = {"index": 0, "finish_reason": reason}
        if chat:
            choice_body["message"] = {"role": "assistant", "content": text}
            if body.get("logprobs"):
                shown = (
                    [f"token_id:{_id(t)}" for t in generated]
                    if body.get("return_tokens_as_token_ids")
                    else generated
                )
                content = [{"token": t, "logprob": -0.1, "top_logprobs": []} for t in shown]
                if content and body.get("top_logprobs"):
                    content[0]["top_logprobs"] = self.first_logprobs(top, generated[0])
                choice_body["logprobs"] = {"content": content}
        else:
            choice_body["text"] = text
            if body.get("logprobs") and generated:  # the legacy completions format
                tops = [{t: -0.1} for t in generated]
                first = self.first_logprobs(top, generated[0])
                tops[0] = {alt["token"]: alt["logprob"] for alt in first}
                choice_body["logprobs"] = {"tokens": generated, "top_logprobs": tops}
        return httpx.Response(
            200,
            json={
                "id": "x",
                "object": "chat.completion" if chat else "text_completion",
                "model": body["model"],
                "choices": [choice_body],
                "usage": usage,
            },
        )

    def tool_call(self, body: dict[str, Any], prompt: list[str]) -> httpx.Response:
        call = {
            "id": "call_1",
            "type": "function",
            "function": {
                "name": body["tools"][0]["function"]["name"],
                "arguments": '{"city": "Paris"}',
            },
        }
        return httpx.Response(
            200,
            json={
                "id": "x",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                        "finish_reason": "tool_calls",
                    }
                ],
                "usage": {
                    "prompt_tokens": len(prompt),
                    "completion_tokens": 8,
                    "total_tokens": len(prompt) + 8,
                },
            },
        )

    def stream(
        self,
        body: dict[str, Any],
        generated: list[str],
        reason: str,
        usage: dict[str, int],
        chat: bool,
    ) -> httpx.Response:
        visible = [t for t in generated if not t.startswith("<|")]
        events: list[dict[str, Any]] = []
        for index, token in enumerate(visible):
            piece = token if index == 0 else " " + token
            choice = (
                {"index": 0, "delta": {"content": piece}} if chat else {"index": 0, "text": piece}
            )
            events.append({"id": "x", "choices": [{**choice, "finish_reason": None}]})
        last: dict[str, Any] = {"index": 0, "finish_reason": reason}
        last["delta" if chat else "text"] = {} if chat else ""
        events.append({"id": "x", "choices": [last]})
        if self.stream_usage and (body.get("stream_options") or {}).get("include_usage"):
            events.append({"id": "x", "choices": [], "usage": usage})
        lines = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(
            200, content=lines.encode(), headers={"content-type": "text/event-stream"}
        )


def _id(token: str) -> int:
    return zlib.crc32(token.encode()) % 49152


def _error(status: int, message: str) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"message": message, "type": "invalid_request_error"}}
    )
