"""Shapes of the curated catalog and of a mapping result."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Confidence = Literal["high", "medium", "low", "none"]


class FamilyInfo(BaseModel):
    """Serving facts shared by a model family (e.g. every qwen2.5 size)."""

    tool_call_parser: str | None = None  # vLLM --tool-call-parser
    reasoning_parser: str | None = None  # vLLM --reasoning-parser
    notes: str | None = None
    # Strings that all appear in this family's chat template (HF Jinja or Ollama Go
    # template); a weak hint when nothing better identifies a model.
    chat_markers: list[str] = Field(default_factory=list)


class CatalogEntry(BaseModel):
    """One Ollama library model (one size) and its HuggingFace original."""

    ollama: list[
        str
    ]  # Ollama names that mean this model, e.g. ["qwen2.5:7b", "qwen2.5:7b-instruct"]
    hf: str  # the HF original, "org/repo"
    hf_aliases: list[str] = Field(default_factory=list)  # older names of the same repo (renames)
    family: str  # key into the catalog's families
    architecture: str  # GGUF general.architecture, e.g. "qwen2"
    size_label: str | None = None  # e.g. "7B", "135M"
    parameters_b: float | None = None  # approx. parameter count in billions
    gated: bool = False  # HF repo needs an accepted licence
    prequantized: dict[str, str] = Field(default_factory=dict)  # scheme -> public vLLM-ready repo


class MappingResult(BaseModel):
    """Where a model came from, how sure we are, and why."""

    repo: str | None = None  # None: no HF original known, rebuild from the GGUF
    confidence: Confidence = "none"
    reason: str  # one line, shown to the user
    evidence: list[str] = Field(default_factory=list)  # each step of the chain that fired
    family: str | None = None
    gated: bool = False
    prequantized: dict[str, str] = Field(default_factory=dict)
    tool_call_parser: str | None = None
    reasoning_parser: str | None = None
    rebuild_from_gguf: bool = False
