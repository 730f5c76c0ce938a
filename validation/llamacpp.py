"""llama.cpp's server, Ollama's own engine, on the GGUF Ollama ran: a stand-in for an
Ollama endpoint where none is running (the demo, CI, a store copied off its server).

llama-cpp-python's server runs the same GGUF through the same engine. To render chat
prompts the way Ollama did, it is given a copy of the GGUF whose chat template is the
plan's (Ollama's TEMPLATE translated, with the SYSTEM layer folded in), written with
gguf-py's own metadata-copy tool. It answers one request at a time, like Ollama's
default, and never cuts a running stream short.
"""

from __future__ import annotations

import os
from pathlib import Path

from validation.launch import ManagedServer, free_port

# Idle OpenMP threads must not spin: on a shared CPU they starve the other server.
_ENV = {"OMP_WAIT_POLICY": "passive"}


def gguf_with_chat_template(src: Path, dst: Path, template: str) -> Path:
    """A copy of `src` whose tokenizer.chat_template is `template` (tensors untouched)."""
    import gguf  # numpy-heavy: load on use
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(src)
    arch = str(reader.fields["general.architecture"].contents())
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(dst.name + ".partial")
    writer = gguf.GGUFWriter(partial, arch=arch, endianess=reader.endianess)
    new = {gguf.Keys.Tokenizer.CHAT_TEMPLATE: MetadataDetails(gguf.GGUFValueType.STRING, template)}
    copy_with_new_metadata(reader, writer, new, [])
    os.replace(partial, dst)  # a crash leaves no file that looks complete
    return dst


class LlamaCppServer(ManagedServer):
    """`with LlamaCppServer(python, gguf, alias=...) as server:` serves `gguf` as `alias`."""

    engine = "llama.cpp"
    health_path = "/v1/models"

    def __init__(
        self,
        python: Path,
        model: Path,
        *,
        alias: str,
        log_path: Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        n_ctx: int = 2048,
        threads: int | None = None,
    ) -> None:
        port = port or free_port(host)
        threads = threads or max(1, (os.cpu_count() or 2) // 2)
        argv = [
            str(python), "-m", "llama_cpp.server",
            "--model", str(model), "--model_alias", alias,
            "--host", host, "--port", str(port),
            "--n_ctx", str(n_ctx),
            "--interrupt_requests", "False",
            "--n_threads", str(threads), "--n_threads_batch", str(max(threads, 2)),
        ]  # fmt: skip
        super().__init__(argv, host=host, port=port, log_path=log_path, env={**os.environ, **_ENV})
