"""The prompt suite output parity runs on: a built-in one, or the user's (`--suite FILE`).

A suite is JSON Lines, one prompt per line:

    {"id": "fact-capital-fr", "category": "factual",
     "messages": [{"role": "user", "content": "..."}], "max_tokens": 48}

`messages` is an OpenAI chat message list (string contents); `max_tokens` caps the
greedy answer both sides generate. Blank lines and lines starting with `#` are skipped.
The built-in suite (validation/data/suite.jsonl, written for this project) covers chat,
instructions, reasoning, code, several languages, short facts and one long-context
prompt of about 1,500 tokens that still fits a 2,048-token context with its answer.
"""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from converters.errors import UsageError

BUILTIN_SUITE = "suite.jsonl"


class SuiteError(UsageError):
    """A suite file is missing or has a line that is not a valid prompt."""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class SuitePrompt(BaseModel):
    """One prompt of a parity suite."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    category: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int = Field(default=48, gt=0, le=4096)

    @field_validator("messages")
    @classmethod
    def _ends_with_user(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if messages[-1].role != "user":
            raise ValueError("the last message must be the user's (the model answers it)")
        return messages

    def chat_messages(self) -> list[dict[str, Any]]:
        """The messages as plain dicts, ready for a request body."""
        return [m.model_dump() for m in self.messages]


def load_suite(path: Path | str | None = None) -> list[SuitePrompt]:
    """The built-in suite, or the JSONL file at `path`; raises SuiteError naming the line."""
    if path is None:
        text = resources.files("validation").joinpath("data", BUILTIN_SUITE).read_text("utf-8")
        return parse_suite(text, source=f"built-in {BUILTIN_SUITE}")
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteError(f"suite file {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"cannot read suite file {file}: {exc}") from None
    return parse_suite(text, source=str(file))


def parse_suite(text: str, *, source: str = "suite") -> list[SuitePrompt]:
    prompts: list[SuitePrompt] = []
    lines_of: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SuiteError(
                f"{source} line {number}: not valid JSON ({exc.msg} at column {exc.colno})",
                hint='each line must be one JSON object: {"id", "category", "messages", "max_tokens"}',
            ) from None
        if not isinstance(data, dict):
            raise SuiteError(f"{source} line {number}: expected a JSON object, got {_kind(data)}")
        try:
            prompt = SuitePrompt.model_validate(data)
        except ValidationError as exc:
            raise SuiteError(f"{source} line {number}: {_first_error(exc)}") from None
        if prompt.id in lines_of:
            raise SuiteError(
                f"{source} line {number}: id {prompt.id!r} already used on line {lines_of[prompt.id]}"
            )
        lines_of[prompt.id] = number
        prompts.append(prompt)
    if not prompts:
        raise SuiteError(f"{source} holds no prompts")
    return prompts


def categories(prompts: list[SuitePrompt]) -> dict[str, int]:
    return dict(Counter(p.category for p in prompts))


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ())) or "prompt"
    message = str(error.get("msg", "invalid"))
    extra = f" ({len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    return f"{where}: {message}{extra}"


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )
