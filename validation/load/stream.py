"""A minimal HTTP/1.1 streaming client for OpenAI-style SSE, on raw asyncio streams.

The load generator must never be the bottleneck, so the hot path does as little as
possible per event: bytes arrive in large reads, the chunked transfer coding and the
SSE framing are undone with `bytes.find`, and each `data:` line is classified by a
byte pattern instead of a JSON decode. Only the rare events that matter as a whole
(usage, errors, anything unexpected) are decoded.

Connections are kept alive and reused (one pool per endpoint), as real clients do.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# A choice chunk that carries generated text: content, reasoning or completion text,
# non-empty. JSON strings escape every inner quote, so the pattern cannot match text.
_TEXT = re.compile(rb'"(?:content|reasoning_content|reasoning|text)"\s*:\s*"[^"]')
_CHOICE = re.compile(rb'"choices"\s*:\s*\[\s*\{')
_WHOLE = re.compile(rb'"(?:finish_reason|usage)"\s*:\s*["{]')
_READ_SIZE = 1 << 18


class StreamError(Exception):
    """One request failed: connection refused or lost, HTTP error, malformed stream.
    Messages leave out the endpoint (the caller knows it) so that they group by reason."""


@dataclass(slots=True)
class StreamResult:
    """Timestamps (perf_counter seconds) and counts of one streamed completion."""

    start: float
    first_token: float | None = None
    last_token: float | None = None
    gaps: list[float] = field(default_factory=list)  # between text-bearing chunks
    chunks: int = 0  # text-bearing chunks
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None


class Endpoint:
    """One server's base URL with a pool of kept-alive connections."""

    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        parts = urlsplit(base_url if "://" in base_url else f"http://{base_url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = parts.scheme == "https"
        self.prefix = parts.path.rstrip("/").removesuffix("/v1")
        self.api_key = api_key
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def _connect(
        self, reuse: bool = True
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while reuse and self._idle:
            reader, writer = self._idle.pop()
            if not reader.at_eof():  # the server closes idle connections (uvicorn: after 5 s)
                return reader, writer
            writer.close()
        context = ssl.create_default_context() if self.tls else None
        try:
            return await asyncio.open_connection(
                self.host, self.port, ssl=context, limit=_READ_SIZE
            )
        except OSError as exc:
            raise StreamError(f"cannot connect: {exc.strerror or exc}") from None

    def _release(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self._idle.append(conn)

    async def aclose(self) -> None:
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()

    def _head(self, path: str, body: bytes) -> bytes:
        lines = [
            f"POST {self.prefix}{path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Content-Type: application/json",
            "Accept: text/event-stream",
            f"Content-Length: {len(body)}",
        ]
        if self.api_key:
            lines.append(f"Authorization: Bearer {self.api_key}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def stream(
        self,
        path: str,
        payload: dict[str, Any],
        on_token: Callable[[], None] | None = None,
    ) -> StreamResult:
        """POST `payload` and read its SSE stream to the end. Raises StreamError."""
        body = json.dumps(payload).encode()
        for attempt in (0, 1):  # a kept-alive connection may be closed as it is reused
            reused = attempt == 0 and bool(self._idle)
            reader, writer = await self._connect(reuse=attempt == 0)
            result = StreamResult(start=time.perf_counter())
            try:
                writer.write(self._head(path, body) + body)
                keep = await _read_response(reader, result, on_token)
            except (OSError, asyncio.IncompleteReadError, _ClosedBeforeResponse) as exc:
                writer.close()
                if reused and isinstance(exc, _ClosedBeforeResponse):
                    continue  # nothing was answered: send it again on a new connection
                raise StreamError(f"connection lost: {_why(exc)}") from None
            except BaseException:
                writer.close()
                raise
            if keep:
                self._release((reader, writer))
            else:
                writer.close()
            return result
        raise AssertionError("unreachable")


class _ClosedBeforeResponse(Exception):
    pass


def _why(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return "stream cut short"
    if isinstance(exc, _ClosedBeforeResponse):
        return "closed before answering"
    return str(exc) or type(exc).__name__


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise _ClosedBeforeResponse() from None
        raise
    except ConnectionResetError:
        raise _ClosedBeforeResponse() from None
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def _read_response(
    reader: asyncio.StreamReader, result: StreamResult, on_token: Callable[[], None] | None
) -> bool:
    """Read one response into `result`; returns whether the connection can be reused."""
    status, headers = await _read_head(reader)
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    length = headers.get("content-length")
    keep = headers.get("connection", "").lower() != "close" and (chunked or length is not None)
    body = _Body(reader, chunked, int(length) if length is not None else None)
    if status >= 400:
        text = (await body.read_all()).decode("utf-8", errors="replace")
        raise StreamError(f"HTTP {status}: {_short(text)}")
    events = _Events(result, on_token)
    while True:
        data = await body.read()
        if not data:
            break
        events.feed(data, time.perf_counter())
    events.finish()
    return keep


class _Body:
    """The response body, with the chunked transfer coding undone."""

    def __init__(self, reader: asyncio.StreamReader, chunked: bool, length: int | None) -> None:
        self.reader = reader
        self.chunked = chunked
        self.left = length  # bytes left of a Content-Length body
        self.buffer = b""
        self.done = False

    async def read(self) -> bytes:
        if self.done:
            return b""
        if not self.chunked:
            if self.left == 0:
                self.done = True
                return b""
            data = await self.reader.read(_READ_SIZE if self.left is None else self.left)
            if not data:
                if self.left is not None:
                    raise asyncio.IncompleteReadError(b"", self.left)
                self.done = True
            elif self.left is not None:
                self.left -= len(data)
            return data
        out: list[bytes] = []
        while not out:
            decoded, finished = self._decode()
            if decoded:
                out.append(decoded)
            if finished:
                self.done = True
                break
            if not decoded:
                more = await self.reader.read(_READ_SIZE)
                if not more:
                    raise asyncio.IncompleteReadError(self.buffer, None)
                self.buffer += more
        return b"".join(out)

    def _decode(self) -> tuple[bytes, bool]:
        """Every complete chunk in the buffer; (data, whether the last-chunk was seen)."""
        buffer, pos = self.buffer, 0
        parts: list[bytes] = []
        while True:
            eol = buffer.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(buffer[pos:eol].split(b";", 1)[0], 16)
            if size == 0:
                end = buffer.find(b"\r\n\r\n", eol)  # trailers, then the final blank line
                if end < 0:
                    break
                self.buffer = buffer[end + 4 :]
                return b"".join(parts), True
            start, stop = eol + 2, eol + 2 + size
            if len(buffer) < stop + 2:
                break
            parts.append(buffer[start:stop])
            pos = stop + 2
        self.buffer = buffer[pos:]
        return b"".join(parts), False

    async def read_all(self) -> bytes:
        parts = []
        while data := await self.read():
            parts.append(data)
        return b"".join(parts)


class _Events:
    """SSE `data:` lines -> timestamps and counts in a StreamResult."""

    def __init__(self, result: StreamResult, on_token: Callable[[], None] | None) -> None:
        self.result = result
        self.on_token = on_token
        self.pending = b""
        self.done = False

    def feed(self, data: bytes, now: float) -> None:
        lines = (self.pending + data).split(b"\n")
        self.pending = lines.pop()
        result = self.result
        for line in lines:
            if not line.startswith(b"data:"):
                if line.strip() and not line.startswith(b":") and not _is_field(line):
                    raise StreamError(
                        f"stream line is not SSE: {_short(line.decode(errors='replace'))}"
                    )
                continue
            payload = line[5:].strip()
            if _CHOICE.search(payload) and _TEXT.search(payload):
                if result.first_token is None:
                    result.first_token = now
                else:
                    result.gaps.append(now - result.last_token)  # type: ignore[operator]
                result.last_token = now
                result.chunks += 1
                if self.on_token is not None:
                    self.on_token()
                if _WHOLE.search(payload):
                    self._decode(payload)
            elif payload == b"[DONE]":
                self.done = True
            else:
                self._decode(payload)

    def _decode(self, payload: bytes) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            raise StreamError(
                f"stream event is not JSON: {_short(payload.decode(errors='replace'))}"
            ) from None
        if not isinstance(event, dict):
            return
        if event.get("error") is not None or event.get("object") == "error":
            raise StreamError(f"error event in stream: {_short(json.dumps(event))}")
        if isinstance(event.get("usage"), dict):
            self.result.usage = event["usage"]
        for choice in event.get("choices") or []:
            if isinstance(choice, dict) and choice.get("finish_reason"):
                self.result.finish_reason = str(choice["finish_reason"])

    def finish(self) -> None:
        if self.pending.strip():
            self.feed(b"\n", time.perf_counter())
        if not self.done:
            raise StreamError("stream ended without `data: [DONE]`")


def _is_field(line: bytes) -> bool:
    return line.startswith((b"event:", b"id:", b"retry:", b"\r"))


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
