"""llama.cpp's server (Ollama's own engine) as the Ollama endpoint in tests: no Ollama
server can run here. The server itself is `validation.llamacpp.LlamaCppServer`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from validation.llamacpp import LlamaCppServer, gguf_with_chat_template

__all__ = ["gguf_with_chat_template", "llamacpp_server"]


@contextmanager
def llamacpp_server(
    python: Path, model: Path, alias: str, log: Path, n_ctx: int = 2048
) -> Iterator[str]:
    """The URL of llama.cpp serving `model` as `alias`, until the block ends."""
    with LlamaCppServer(python, model, alias=alias, log_path=log, n_ctx=n_ctx) as server:
        server.wait_ready(timeout=180)
        yield server.url
