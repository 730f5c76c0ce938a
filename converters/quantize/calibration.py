"""Calibration data for quantization: the built-in set, user files, hub datasets, defaults.

Formats (JSON Lines: one sample per line, blank lines skipped):

    {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}
    {"text": "plain prose, code, anything"}

Chat samples are rendered inside the job with the model's own chat template (the
folder's `chat_template.jinja` / tokenizer config, through `apply_chat_template`), so the
calibration activations look like the prompts the model will serve; text samples are
tokenized as they are. Each sample is truncated to `max_seq_len` tokens.

The built-in sets, `data/calibration.jsonl` (calibration) and `data/heldout.jsonl`
(the quality check; no overlap with calibration), are original text written for this
project: chat conversations (how-to, explanations, coding help, multi-turn, with and
without a system prompt), prose, code in several languages, and text in French, German,
Spanish, Italian, Portuguese, Dutch, Polish, Russian, Chinese, Japanese, Korean, Arabic,
Hindi and Turkish. No third-party data set was copied; the project's licence applies.

Defaults by model size (parameters counted from the safetensors headers):

| parameters | samples | max_seq_len | why                                                      |
|------------|---------|-------------|----------------------------------------------------------|
| < 1B       | 64      | 512         | tiny models run on CPU; GPTQ/AWQ statistics settle early |
| 1B - 10B   | 128     | 1024        | llm-compressor examples' range for 7-8B models           |
| > 10B      | 256     | 2048        | more layers and wider matrices want more tokens          |

A set smaller than the request is used whole: the built-in one holds 146 samples of
40-480 tokens (median about 180, 27.5k tokens in all with a Llama-style tokenizer), so
past ~146 samples or ~500 tokens per sample pass `--calibration FILE` or a hub dataset.
The job reports the samples and tokens it actually used.

A hub dataset is given as `ORG/NAME` or `ORG/NAME:SPLIT` (default split `train`) and is
read inside the job with `datasets` (rows with `messages` or `text`), only when the hub is
reachable: the caller decides that; this module only checks the id's shape.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from converters.errors import UsageError

ROLES = frozenset({"system", "user", "assistant", "tool"})
# (upper bound of parameters, samples, max_seq_len), first match wins.
SIZE_DEFAULTS: tuple[tuple[float, int, int], ...] = (
    (1e9, 64, 512),
    (10e9, 128, 1024),
    (float("inf"), 256, 2048),
)
HELDOUT_MAX_TOKENS = 512  # the quality check scores at most this many tokens per sample
_DATASET_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_SPLIT = re.compile(r"^[\w.\-\[\]:%]+$")


class CalibrationDataError(UsageError):
    """A calibration or held-out file is missing or malformed."""


@dataclass(frozen=True)
class CalibrationBudget:
    samples: int
    max_seq_len: int


def _data_file(name: str) -> Path:
    return Path(str(resources.files("converters.quantize").joinpath("data", name)))


def builtin_calibration_path() -> Path:
    """The built-in calibration set (shipped as package data)."""
    return _data_file("calibration.jsonl")


def builtin_heldout_path() -> Path:
    """The built-in held-out set the quality check scores."""
    return _data_file("heldout.jsonl")


def default_budget(param_count: int | None) -> CalibrationBudget:
    """Samples and tokens per sample for a model of `param_count` parameters (None: < 1B row)."""
    count = 0 if param_count is None else param_count
    for limit, samples, seq_len in SIZE_DEFAULTS:
        if count < limit:
            return CalibrationBudget(samples, seq_len)
    raise AssertionError("unreachable: the last row has no upper bound")


def count_parameters(model_dir: Path) -> int | None:
    """Parameters in the folder's `*.safetensors` (headers only); None when there are none."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        for info in _safetensors_header(file).values():
            if isinstance(info, dict) and "shape" in info:
                count = 1
                for dim in info["shape"]:
                    count *= int(dim)
                total += count
    return total


def _safetensors_header(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100 * 1024 * 1024:
                raise ValueError("header too large")
            header = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error) as exc:
        raise UsageError(f"cannot read safetensors header of {path}: {exc}") from exc
    if not isinstance(header, dict):
        raise UsageError(f"cannot read safetensors header of {path}: not a JSON object")
    return header


def iter_samples(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, validated sample) for each sample in a JSONL file."""
    path = Path(path)
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed by the `with` below
    except OSError as exc:
        raise CalibrationDataError(
            f"cannot read calibration file {path}: {exc.strerror or exc}"
        ) from exc
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                stripped = line.strip()
                if not stripped:
                    continue
                try:
                    raw = json.loads(stripped)
                except json.JSONDecodeError as exc:
                    raise CalibrationDataError(
                        f"{path}:{number}: not valid JSON ({exc.msg})",
                        hint='each line is {"messages": [...]} or {"text": "..."}',
                    ) from exc
                yield number, validate_sample(raw, f"{path}:{number}")
        except UnicodeDecodeError as exc:
            raise CalibrationDataError(f"{path}: not UTF-8 text ({exc.reason})") from exc


def load_samples(path: Path) -> list[dict[str, Any]]:
    """Every sample of a JSONL calibration file; `CalibrationDataError` on the first bad line."""
    samples = [sample for _, sample in iter_samples(path)]
    if not samples:
        raise CalibrationDataError(
            f"calibration file {path} holds no samples",
            hint='write one JSON object per line: {"messages": [...]} or {"text": "..."}',
        )
    return samples


def validate_sample(raw: Any, where: str) -> dict[str, Any]:
    """`{"messages": [...]}` or `{"text": str}`, checked; `CalibrationDataError` otherwise."""
    hint = 'each line is {"messages": [{"role": ..., "content": ...}, ...]} or {"text": "..."}'
    if not isinstance(raw, dict):
        raise CalibrationDataError(f"{where}: a sample must be a JSON object", hint=hint)
    has_messages, has_text = "messages" in raw, "text" in raw
    if has_messages == has_text:
        raise CalibrationDataError(
            f"{where}: a sample needs exactly one of 'messages' or 'text'", hint=hint
        )
    if has_text:
        text = raw["text"]
        if not isinstance(text, str) or not text.strip():
            raise CalibrationDataError(f"{where}: 'text' must be a non-empty string", hint=hint)
        return {"text": text}
    messages = raw["messages"]
    if not isinstance(messages, list) or not messages:
        raise CalibrationDataError(f"{where}: 'messages' must be a non-empty list", hint=hint)
    clean: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise CalibrationDataError(f"{where}: message {index} is not an object", hint=hint)
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise CalibrationDataError(
                f"{where}: message {index} has role {role!r}",
                hint=f"roles are {', '.join(sorted(ROLES))}",
            )
        if not isinstance(content, str):
            raise CalibrationDataError(
                f"{where}: message {index} content must be a string", hint=hint
            )
        clean.append({"role": role, "content": content})
    if not any(m["content"].strip() for m in clean):
        raise CalibrationDataError(f"{where}: every message is empty", hint=hint)
    return {"messages": clean}


def parse_dataset_id(value: str) -> tuple[str, str]:
    """`ORG/NAME[:SPLIT]` -> (id, split); `UsageError` when it cannot be a hub dataset id."""
    name, _, split = value.strip().partition(":")
    split = split or "train"
    if not _DATASET_ID.match(name) or not _SPLIT.match(split):
        raise UsageError(
            f"invalid hub dataset id {value!r}",
            hint="use ORG/NAME or ORG/NAME:SPLIT, e.g. HuggingFaceH4/ultrachat_200k:train_sft",
        )
    return name, split
