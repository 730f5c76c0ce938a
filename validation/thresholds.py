"""PASS / WARN / FAIL for output parity, per target scheme, with the reasoning.

What the numbers mean (validation/parity.py measures them):

- The source is usually a quantized GGUF (Q4_0/Q4_1/Q4_K are Ollama's defaults) run by
  llama.cpp, which also quantizes activations to 8 bits inside its matmuls. A *perfect*
  migration to bf16 therefore still sees the source's own quantization noise: about
  0.1 nats on the log-probs, enough to swap two candidates whose log-probs are closer
  than that. FIELD-NOTES measured a correct bf16 rebuild of SmolLM2's Q4_1 GGUF at 0.963
  top-1 agreement (316/328), 11 of the 12 disagreements near-ties, top-5 KL 0.0027.
  tests/test_validate_parity.py re-measures it on the built-in suite (see the figures
  under BF16 below).
- Near-ties (the source's own top two within 0.3 nats) are excluded from the agreement
  the verdict uses: they say nothing about the migration. What remains are positions
  where the source was confident, and a correct bf16 target agrees on nearly all.
- A broken migration (wrong rope theta, a wrong or missing q/k permutation, a tokenizer
  or template mismatch, corrupted weights) shows first in the KL, which rises by one to
  three orders of magnitude (a wrong rope theta x35 on short prompts, noised weights x7
  to x4000: see BF16), then in the agreement. The FAIL lines sit between the two.
- A quantized target adds its own error on top of the source's, in positions where the
  source was confident too, so agreement excluding near-ties drops and KL rises:
  8-bit schemes (FP8 dynamic, W8A8 int8) are near-lossless and move little; 4-bit
  weight-only schemes (GPTQ/AWQ W4A16, NVFP4A16) roughly double the noise; NVFP4 (W4A4)
  quantizes activations to 4 bits as well and loosens further. W8A8 int8, GPTQ and AWQ
  W4A16 were measured here on SmolLM2 (figures beside each row); FP8 and NVFP4 rows are
  reasoned from their error levels relative to the others: tighten them once measured.
- Sources less quantized than Q4 (Q8_0, F16 GGUFs) agree better still; these thresholds
  are set for the common 4-bit case and are loose for them.
- Alignment failures (source pieces that map to no id) make scoring stop early for that
  prompt; a few are tolerable (multi-byte text through a lossy server), many mean the
  vocabulary differs: a tokenizer problem in itself.
- Free-running exact match is reported but never judged: with a 4-bit source it is low
  even for a perfect migration (4 of 5 short answers diverged in FIELD-NOTES).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from converters.errors import UsageError
from validation.parity import ParityResult

Status = Literal["PASS", "WARN", "FAIL"]
_ORDER: dict[Status, int] = {"PASS": 0, "WARN": 1, "FAIL": 2}


@dataclass(frozen=True)
class Thresholds:
    """PASS needs every metric on the pass side; any metric past its fail line FAILs;
    anything in between WARNs."""

    agreement_pass: float  # top-1 agreement excluding near-ties, at least
    agreement_fail: float  # below this: FAIL
    kl_pass: float  # mean top-k KL(source || target), at most
    kl_fail: float  # above this: FAIL
    alignment_pass: float = 0.01  # share of source tokens that did not map, at most
    alignment_fail: float = 0.05
    # Prompt rendering: a different first greedy token within this many nats of the top
    # candidate is a near-tie, not a rendering break (quantized targets move log-probs more).
    first_token_nats: float = 0.5
    # ... and a first token beyond that, with equal prompts: a break ("fail"), or, where
    # the target's own noise can change it outright, only a "warn".
    first_token_differs: Literal["warn", "fail"] = "fail"
    why: str = ""


# bf16 / fp16: the target is the source's weights dequantized exactly, so every
# difference is the source's own quantization noise. Measured on SmolLM2 (Q4_1 GGUF on
# llama.cpp vs its bf16 rebuild on vLLM), tests/test_validate_parity.py:
#   correct migration, 54-prompt suite: agreement excl. near-ties 0.999 (30 near-ties,
#     2 confident disagreements, both with a source gap of 0.31-0.33 nats), top-5 KL 0.0028
#     (FIELD-NOTES: 0.0027); on the 12-prompt x 32-token subset 0.997 and 0.0030;
#   Gaussian noise on every weight (std = s x the tensor's std), same subset:
#     s=0.02: 0.974 / 0.021   s=0.05: 0.890 / 0.115   s=0.1: 0.726 / 0.48
#     s=0.2: 0.158 / 3.5      s=0.5: 0.000 / 11.5
#   rope_theta 10000 instead of 100000 (short prompts, 32 tokens): 0.936 / 0.099.
# The FAIL lines catch the wrong rope theta (through the KL) and noise from s=0.05 up;
# s=0.02, an error below the source's own 4-bit rounding (~0.1 x std), only WARNs. The
# KL lines leave room for bigger models and coarser sources (Q4_0, Q4_K), whose own
# noise is larger than SmolLM2 Q4_1's: see `source_quant` in `verdict_for`.
BF16 = Thresholds(
    agreement_pass=0.97,
    agreement_fail=0.93,
    kl_pass=0.02,
    kl_fail=0.06,
    why="dequantized weights: only the source's 4-bit noise remains",
)
# FP8 dynamic (per-channel weights, per-token activations) and W8A8 int8: about 0.01-0.03
# nats of their own error, small beside the source's ~0.1. Measured: SmolLM2 W8A8 int8
# (llm-compressor, from the bf16 rebuild) vs the Q4_1 source, 12 prompts x 32 tokens:
# agreement excl. near-ties 0.990, KL 0.017 (bf16 on the same subset: 0.997, 0.0030).
EIGHT_BIT = Thresholds(
    agreement_pass=0.95,
    agreement_fail=0.88,
    kl_pass=0.05,
    kl_fail=0.15,
    first_token_nats=0.75,
    why="8-bit target: near-lossless, its error is small beside the source's",
)
# W4A16 (GPTQ, AWQ; group size 128 or less) and NVFP4A16: 4-bit weights re-quantized on
# another grid than the source's, an error as large as the source's own (~0.1 x std per
# weight, the noise sweep's s=0.1), and the two do not cancel. The pass lines are where a
# correct 4-bit migration of a model of a billion parameters or more is expected to land
# (small models suffer most from 4 bits). A 135M model lands below them, measured here:
# SmolLM2 GPTQ W4A16 0.737 / KL 0.43, AWQ W4A16 0.793 / 0.27 (12 prompts x 32): WARN, a
# true statement about 4 bits on so small a model. The FAIL lines sit beyond that, where
# only a break goes (noise s=0.2 on bf16: 0.16 / 3.5). A subtler break on top of a 4-bit
# target (a wrong rope theta: KL +0.1 on bf16) hides in the target's own error: check
# such a migration at bf16 first.
FOUR_BIT_WEIGHTS = Thresholds(
    agreement_pass=0.85,
    agreement_fail=0.60,
    kl_pass=0.20,
    kl_fail=1.00,
    # Measured: SmolLM2 GPTQ W4A16's first token in a multi-turn chat with a system prompt
    # was 0.63 nats below llama.cpp's choice, with identical prompt token counts.
    first_token_nats=1.5,
    # Measured: SmolLM2 NVFP4A16 (bf16 emulation) answered a pirate-system chat with "Ah"
    # where llama.cpp said "I", neither in the other's top 5, with identical prompts.
    first_token_differs="warn",
    why="4-bit weights on both sides: two independent quantization errors",
)
# NVFP4 (W4A4): activations in 4 bits too. Not measured (no CPU kernel; Blackwell only).
FOUR_BIT_ALL = Thresholds(
    agreement_pass=0.80,
    agreement_fail=0.50,
    kl_pass=0.30,
    kl_fail=1.50,
    first_token_nats=2.0,
    first_token_differs="warn",
    why="4-bit weights and activations: the loosest scheme",
)

THRESHOLDS: dict[str, Thresholds] = {
    "bf16": BF16,
    "fp16": BF16,
    "fp8-dynamic": EIGHT_BIT,
    "w8a8-int8": EIGHT_BIT,
    "gptq-w4a16": FOUR_BIT_WEIGHTS,
    "awq-w4a16": FOUR_BIT_WEIGHTS,
    "awq-w4a16-asym": FOUR_BIT_WEIGHTS,
    "w4a16": FOUR_BIT_WEIGHTS,
    "nvfp4a16": FOUR_BIT_WEIGHTS,
    "nvfp4": FOUR_BIT_ALL,
}

MIN_POSITIONS = 100  # fewer scored tokens: the agreement's error bar is several points
SOURCE_NOT_GREEDY_WARN = 0.02  # share of source tokens that were not its own argmax
KL_COVERAGE_WARN = 0.5


def thresholds_for(scheme: str) -> Thresholds:
    key = scheme.strip().lower()
    if key not in THRESHOLDS:
        raise UsageError(
            f"no parity thresholds for scheme {scheme!r}",
            hint=f"use one of: {', '.join(sorted(THRESHOLDS))}",
        )
    return THRESHOLDS[key]


def source_bits(source_quant: str | None) -> int | None:
    """Bits per weight of a GGUF quantization name (Q4_K_M -> 4, IQ3_XXS -> 3, F16 -> 16)."""
    if not source_quant:
        return None
    match = re.match(r"^(?:I?Q|TQ)(\d)|^(?:F|BF)(16|32)|^MXFP(4)", source_quant.strip().upper())
    if not match:
        return None
    return int(next(g for g in match.groups() if g))


def adjusted(limits: Thresholds, source_quant: str | None) -> Thresholds:
    """Thresholds for a source coarser than 4 bits (Q2_K, Q3_K, IQ1-IQ3): its own noise
    is several times larger (llama.cpp's KL-divergence tables grow about threefold from
    Q4_K to Q3_K and again to Q2_K), so the KL lines triple and the agreement lines drop
    by 0.05. Reasoned, not measured here. Finer sources keep the 4-bit lines, which they
    pass easily."""
    bits = source_bits(source_quant)
    if bits is None or bits >= 4:
        return limits
    return replace(
        limits,
        agreement_pass=limits.agreement_pass - 0.05,
        agreement_fail=limits.agreement_fail - 0.05,
        kl_pass=limits.kl_pass * 3,
        kl_fail=limits.kl_fail * 3,
        why=f"{limits.why}; loosened for a {bits}-bit source",
    )


def verdict_for(
    result: ParityResult, scheme: str, *, source_quant: str | None = None
) -> tuple[Status, list[str]]:
    """The parity verdict for a target of `scheme`, and one line per reason it is not a
    clean PASS (empty for a clean PASS). `source_quant`: the source GGUF's quantization
    (e.g. "Q4_K_M"), which loosens the lines for sources coarser than 4 bits."""
    limits = adjusted(thresholds_for(scheme), source_quant)
    status: Status = "PASS"
    reasons: list[str] = []

    def flag(level: Status, line: str) -> None:
        nonlocal status
        if _ORDER[level] > _ORDER[status]:
            status = level
        reasons.append(f"{level}: {line}")

    if result.positions == 0:
        flag("FAIL", "no source token could be scored (see the per-prompt errors)")
        return status, reasons
    if result.target_errors:
        flag("FAIL", f"the target failed on {result.target_errors} prompt(s)")
    if result.source_errors:
        flag("WARN", f"the source failed on {result.source_errors} prompt(s): not scored")

    agreement = result.top1_agreement_excl_near_ties
    if agreement is not None:
        line = (
            f"top-1 agreement excluding {result.near_ties} near-ties {agreement:.3f} "
            f"({result.hard_disagreements} confident disagreements in {result.positions})"
        )
        if agreement < limits.agreement_fail:
            flag("FAIL", f"{line} < {limits.agreement_fail} for {scheme}")
        elif agreement < limits.agreement_pass:
            flag("WARN", f"{line} < {limits.agreement_pass} for {scheme}")

    if result.mean_kl is None:
        flag("WARN", "no position had a KL estimate (source top-k pieces did not map)")
    else:
        line = f"mean top-{result.top_k} KL {result.mean_kl:.4f} nats"
        if result.mean_kl > limits.kl_fail:
            flag("FAIL", f"{line} > {limits.kl_fail} for {scheme}")
        elif result.mean_kl > limits.kl_pass:
            flag("WARN", f"{line} > {limits.kl_pass} for {scheme}")
        if result.kl_coverage is not None and result.kl_coverage < KL_COVERAGE_WARN:
            flag("WARN", f"KL estimated on only {100 * result.kl_coverage:.0f}% of positions")

    total = result.source_tokens or 1
    failures = result.alignment_failures / total
    line = f"{result.alignment_failures} of {result.source_tokens} source tokens did not map to ids"
    if failures > limits.alignment_fail:
        flag("FAIL", f"{line}: the vocabularies differ")
    elif failures > limits.alignment_pass:
        flag("WARN", line)

    if result.source_not_greedy / max(result.positions, 1) > SOURCE_NOT_GREEDY_WARN:
        flag(
            "WARN",
            f"{result.source_not_greedy} source tokens were not its own top-1: a penalty or "
            "sampler is active on the source (e.g. a Modelfile repeat_penalty), so "
            "agreement understates parity",
        )
    if result.prompt_render_mismatches:
        flag(
            "WARN",
            f"{result.prompt_render_mismatches} prompt(s) rendered to a different number of "
            "tokens on the two servers: check the chat template",
        )
    if result.positions < MIN_POSITIONS:
        flag("WARN", f"only {result.positions} positions scored: a larger suite is surer")
    return status, reasons
