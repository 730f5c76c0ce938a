"""llama.cpp's server (Ollama's own engine) as the Ollama endpoint in tests.

No Ollama server can run here. llama-cpp-python's server runs the same GGUF through the
same engine; to render prompts the way Ollama does for the demo model, it is given a copy
of the GGUF whose chat template is the plan's (Ollama's TEMPLATE translated, with the
SYSTEM layer folded in), written with gguf-py's own metadata-copy tool.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gguf
from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

from validation.launch import free_port, log_tail


def gguf_with_chat_template(src: Path, dst: Path, template: str) -> Path:
    reader = gguf.GGUFReader(src)
    arch = str(reader.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(dst, arch=arch, endianess=reader.endianess)
    new = {gguf.Keys.Tokenizer.CHAT_TEMPLATE: MetadataDetails(gguf.GGUFValueType.STRING, template)}
    copy_with_new_metadata(reader, writer, new, [])
    return dst


@contextmanager
def llamacpp_server(
    python: Path, model: Path, alias: str, log: Path, n_ctx: int = 2048
) -> Iterator[str]:
    port = free_port()
    argv = [
        str(python),
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        alias,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        # One request at a time, like Ollama's default; never cut a running stream short.
        "--interrupt_requests",
        "False",
        "--n_threads",
        "1",
        "--n_threads_batch",
        "2",
    ]
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}  # idle OpenMP threads must not spin
    with log.open("ab") as handle:
        process = subprocess.Popen(
            argv, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited: {log_tail(log)}")
            try:
                with urllib.request.urlopen(f"{url}/v1/models", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"llama.cpp server not ready: {log_tail(log)}") from None
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
