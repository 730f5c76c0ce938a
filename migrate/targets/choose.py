"""Pick the best-quality scheme that the hardware serves and the memory holds."""

from __future__ import annotations

from pydantic import BaseModel, Field

from converters.errors import UsageError
from converters.gguf.info import GGUFInfo
from converters.schemes import SCHEMES, W4A16_SCHEMES
from migrate.targets.gpus import GPUSpec, allowed_schemes
from migrate.targets.memory import MemoryEstimate, estimate

# Best quality first. FP8 and int8 W8A8 are near-lossless; 4-bit weight-only schemes lose
# a little more; NVFP4 with 4-bit activations (W4A4) the most.
QUALITY_ORDER = (
    "bf16",
    "fp8-dynamic",
    "w8a8-int8",
    "gptq-w4a16",
    "awq-w4a16-asym",
    "awq-w4a16",
    "nvfp4a16",
    "nvfp4",
)
assert set(QUALITY_ORDER) == set(SCHEMES)

DEFAULT_GROUP_SIZE = 128


class Hardware(BaseModel):
    """The serving target the plan was made for."""

    gpu: str | None  # KNOWN_GPUS key or the detected name; None: none known
    name: str | None = None
    compute_capability: float | None = None
    vram_gib: float | None = None
    detected: bool = False  # True: read from nvidia-smi on this machine
    allowed: dict[str, str | None] = Field(default_factory=dict)  # scheme -> why not


class SchemeOption(BaseModel):
    memory: MemoryEstimate
    allowed: bool
    why_not: str | None = None


class TargetChoice(BaseModel):
    scheme: str | None  # None: nothing fits
    reason: str
    forced: bool = False
    group_size: int | None = None  # W4A16 only
    group_size_note: str | None = None
    prequantized_repo: str | None = None  # a vetted public repo for this scheme
    # A forced scheme this hardware cannot serve: convert still produces it (its quality is
    # measurable anywhere), `migrate serve` refuses it with this reason.
    serve_blocked: str | None = None
    options: list[SchemeOption] = Field(default_factory=list)


def hardware_from_spec(spec: GPUSpec | None, detected: bool, vram_gib: float | None) -> Hardware:
    if spec is None:
        return Hardware(gpu=None, vram_gib=vram_gib, allowed={s: None for s in SCHEMES})
    return Hardware(
        gpu=spec.key,
        name=spec.name,
        compute_capability=spec.compute_capability,
        vram_gib=vram_gib if vram_gib is not None else spec.vram_gib,
        detected=detected,
        allowed=allowed_schemes(spec),
    )


def input_dims(info: GGUFInfo) -> list[int]:
    """Input sizes of the linear layers quantization touches (q/k/v/o, gate/up/down)."""
    dims = [info.embedding_length or 0, info.feed_forward_length or 0]
    if info.head_count and info.head_dim:
        dims.append(info.head_count * info.head_dim)  # o_proj input
    return [d for d in dims if d > 0]


def choose_group_size(info: GGUFInfo) -> tuple[int, str | None]:
    """The largest of 128, 64, 32, 16 that divides every input dimension."""
    dims = input_dims(info)
    for size in (128, 64, 32, 16):
        if all(d % size == 0 for d in dims):
            if size == DEFAULT_GROUP_SIZE:
                return size, None
            return size, (
                f"group size {size}, not the default {DEFAULT_GROUP_SIZE}: "
                f"input dimensions {sorted(set(dims))} are not all multiples of {DEFAULT_GROUP_SIZE}"
            )
    return 0, f"no group size divides input dimensions {sorted(set(dims))}: use per-channel"


def choose_target(
    info: GGUFInfo,
    hardware: Hardware,
    max_model_len: int,
    concurrency: int,
    forced_scheme: str | None = None,
    prequantized: dict[str, str] | None = None,
) -> TargetChoice:
    if forced_scheme is not None and forced_scheme not in SCHEMES:
        raise UsageError(
            f"unknown scheme '{forced_scheme}'", hint=f"use one of: {', '.join(SCHEMES)}"
        )
    group_size, group_note = choose_group_size(info)
    options = []
    for scheme in QUALITY_ORDER:
        why_not = hardware.allowed.get(scheme)
        memory = estimate(
            info, scheme, max_model_len, concurrency, hardware.vram_gib, group_size or 128
        )
        options.append(SchemeOption(memory=memory, allowed=why_not is None, why_not=why_not))

    def finish(
        scheme: str | None, reason: str, forced: bool = False, blocked: str | None = None
    ) -> TargetChoice:
        w4 = scheme in W4A16_SCHEMES
        return TargetChoice(
            scheme=scheme,
            reason=reason,
            forced=forced,
            group_size=group_size if w4 else None,
            group_size_note=group_note if w4 else None,
            prequantized_repo=(prequantized or {}).get(scheme or ""),
            serve_blocked=blocked,
            options=options,
        )

    need = f"{max_model_len} tokens x {concurrency} concurrent"
    if forced_scheme is not None:
        option = next(o for o in options if o.memory.scheme == forced_scheme)
        if not option.allowed:
            return finish(
                forced_scheme,
                f"--scheme {forced_scheme} asked for: convert makes it, but it cannot be served"
                f" here ({option.why_not})",
                True,
                blocked=option.why_not,
            )
        note = ""
        if option.memory.fits is False:
            note = f"; warning: needs {option.memory.total_gib:.1f} GiB for {need}, more than fits"
        return finish(forced_scheme, f"--scheme {forced_scheme} asked for{note}", True)
    if hardware.gpu is None:
        return finish(
            "bf16", "no GPU detected or named: bf16 without a fit check (pass --gpu NAME)"
        )
    for option in options:
        if option.allowed and option.memory.fits is not False:
            scheme = option.memory.scheme
            if option.memory.fits is None:
                return finish(
                    scheme, f"best-quality scheme {hardware.gpu} serves (memory size unknown)"
                )
            budget = hardware.vram_gib or 0
            return finish(
                scheme,
                f"best-quality scheme that fits: {option.memory.total_gib:.1f} GiB of "
                f"{budget:.0f} GiB x 0.9 for {need}",
            )
    smallest = min(
        (o for o in options if o.allowed), key=lambda o: o.memory.total_gib, default=None
    )
    if smallest is None:
        return finish(None, f"{hardware.gpu} serves none of the schemes")
    m = smallest.memory
    return finish(
        None,
        f"nothing fits: even {m.scheme} needs {m.total_gib:.1f} GiB "
        f"(weights {m.weights_gib:.1f} + KV {m.kv_cache_gib:.1f} for {need}) on "
        f"{hardware.vram_gib:.0f} GiB; lower --concurrency or num_ctx, or use a bigger GPU",
    )
