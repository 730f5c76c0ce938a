"""A small async client for OpenAI-compatible servers (Ollama, llama.cpp, vLLM).

Validation talks to both endpoints the way client code does, through /v1, plus each
server's own tokenize endpoint where it has one. Every call returns parsed JSON or
raises `EndpointError` with one line naming the endpoint and what went wrong.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx

from converters.errors import NetworkError

ServerKind = Literal["vllm", "llamacpp", "ollama", "unknown"]


class EndpointError(NetworkError):
    """An endpoint refused, failed or answered something that is not what the API says."""


class HTTPStatusError(EndpointError):
    """The endpoint answered with an HTTP error status (kept for contract checks)."""

    def __init__(self, message: str, status: int, body: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class OpenAIClient:
    def __init__(
        self, base_url: str, *, timeout: float = 300.0, api_key: str | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, headers=headers)
        self.kind: ServerKind = "unknown"

    async def __aenter__(self) -> OpenAIClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- plain calls -----------------------------------------------------------------

    async def request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        try:
            response = await self._http.request(method, path, json=payload)
        except httpx.TimeoutException:
            raise EndpointError(f"{self.base_url}{path} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise EndpointError(
                f"cannot reach {self.base_url}: {type(exc).__name__}: {exc}"
            ) from None
        body = _json_or_text(response)
        if response.status_code >= 400:
            raise HTTPStatusError(
                f"{self.base_url}{path} answered HTTP {response.status_code}: {_short(body)}",
                response.status_code,
                body,
            )
        return body

    async def models(self) -> list[dict[str, Any]]:
        body = await self.request("GET", "/v1/models")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise EndpointError(f"{self.base_url}/v1/models did not list models: {_short(body)}")
        return data

    async def chat(self, payload: dict[str, Any]) -> dict[str, Any]:
        return dict(
            await self.request("POST", "/v1/chat/completions", {**payload, "stream": False})
        )

    async def completion(self, payload: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.request("POST", "/v1/completions", {**payload, "stream": False}))

    async def stream(self, path: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
        """POST with stream=true; returns the parsed `data:` events. Raises when the SSE
        framing is wrong (a non-data line with content, bad JSON, no `[DONE]`)."""
        events: list[dict[str, Any]] = []
        done = False
        try:
            async with self._http.stream(
                "POST", path, json={**payload, "stream": True}
            ) as response:
                if response.status_code >= 400:
                    body = _json_or_text_bytes(await response.aread())
                    raise HTTPStatusError(
                        f"{self.base_url}{path} answered HTTP {response.status_code}: {_short(body)}",
                        response.status_code,
                        body,
                    )
                async for line in response.aiter_lines():
                    if not line or line.startswith(":"):
                        continue  # event separators and SSE comments
                    if not line.startswith("data:"):
                        raise EndpointError(
                            f"{self.base_url}{path}: stream line is not SSE data: {line[:80]!r}"
                        )
                    data = line[5:].strip()
                    if data == "[DONE]":
                        done = True
                        continue
                    if done:
                        raise EndpointError(f"{self.base_url}{path}: event after [DONE]")
                    try:
                        events.append(json.loads(data))
                    except json.JSONDecodeError:
                        raise EndpointError(
                            f"{self.base_url}{path}: stream event is not JSON: {data[:80]!r}"
                        ) from None
        except httpx.HTTPError as exc:
            raise EndpointError(
                f"{self.base_url}{path} stream failed: {type(exc).__name__}: {exc}"
            ) from None
        if not done:
            raise EndpointError(f"{self.base_url}{path}: stream ended without `data: [DONE]`")
        return events

    # --- server kind and tokenization ------------------------------------------------

    async def detect(self) -> ServerKind:
        """vLLM has /version and /tokenize; llama.cpp's Python server /extras/tokenize;
        Ollama /api/version."""
        probes: list[tuple[str, str, dict[str, Any] | None, ServerKind]] = [
            ("GET", "/api/version", None, "ollama"),
            ("POST", "/extras/tokenize", {"input": "a"}, "llamacpp"),
            ("GET", "/version", None, "vllm"),
        ]
        for method, path, payload, kind in probes:
            try:
                body = await self.request(method, path, payload)
            except EndpointError:
                continue
            if isinstance(body, dict):
                self.kind = kind
                return kind
        self.kind = "unknown"
        return self.kind

    async def tokenize_text(
        self, model: str, text: str, add_special_tokens: bool = False
    ) -> list[int] | None:
        """Token ids of plain text, or None where the server has no tokenize endpoint."""
        if self.kind == "vllm":
            body = await self.request(
                "POST",
                "/tokenize",
                {"model": model, "prompt": text, "add_special_tokens": add_special_tokens},
            )
            return [int(t) for t in body["tokens"]]
        if self.kind == "llamacpp":
            # llama-cpp-python tokenizes with special-token parsing and without BOS here.
            body = await self.request("POST", "/extras/tokenize", {"input": text, "model": model})
            return [int(t) for t in body["tokens"]]
        return None

    async def tokenize_chat(
        self, model: str, messages: list[dict[str, Any]], add_generation_prompt: bool = True
    ) -> list[int] | None:
        """Ids of the prompt the server renders for chat messages (vLLM only)."""
        if self.kind != "vllm":
            return None
        body = await self.request(
            "POST",
            "/tokenize",
            {"model": model, "messages": messages, "add_generation_prompt": add_generation_prompt},
        )
        return [int(t) for t in body["tokens"]]


def _json_or_text(response: httpx.Response) -> Any:
    return _json_or_text_bytes(response.content)


def _json_or_text_bytes(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return content.decode("utf-8", errors="replace")


def _short(body: Any, limit: int = 160) -> str:
    text = body if isinstance(body, str) else json.dumps(body)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
