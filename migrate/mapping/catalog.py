"""The curated catalog (catalog.yaml, shipped as package data) and lookups into it."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from converters.schemes import SCHEMES
from migrate.mapping.schema import CatalogEntry, FamilyInfo

CATALOG_RESOURCE = "catalog.yaml"

# HF repo ids: "org/name", ASCII word characters plus . and -, not starting or
# ending with . or -, no "--" or "..", at most 96 characters per part.
_REPO_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?")

# Tag segments that only say how a model was quantized or that it is the chat
# build: "3b-instruct-q4_K_M" still means the "3b" entry.
_HARMLESS_SEGMENT = re.compile(
    r"(instruct|chat|it|q\d(_[0-9a-z]+)*|iq\d(_[0-9a-z]+)*|f16|fp16|bf16|f32|fp32|fp8|int4|int8|mxfp4)"
)


def valid_repo_id(repo: str) -> bool:
    """True for a well-formed HF model id ("org/name")."""
    parts = repo.split("/")
    if len(parts) != 2:
        return False
    return all(
        _REPO_PART.fullmatch(part) and "--" not in part and ".." not in part for part in parts
    ) and not repo.endswith(".git")


def split_ollama_name(name: str) -> tuple[str, str]:
    """`"llama3.2:3b"` -> `("llama3.2", "3b")`; a missing tag is "latest"."""
    model, _, tag = name.strip().lower().partition(":")
    return model, tag or "latest"


class OllamaMatch(BaseModel):
    """How an Ollama library name matched the catalog."""

    entry: CatalogEntry
    alias: str  # the catalog name that matched, e.g. "llama3.2:3b"
    how: Literal["exact", "prefix", "latest"]


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1]
    families: dict[str, FamilyInfo]
    models: list[CatalogEntry]
    tokenizer_fingerprints: dict[str, str] = Field(default_factory=dict)

    _by_name: dict[str, CatalogEntry] = PrivateAttr(default_factory=dict)
    _by_repo: dict[str, CatalogEntry] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Catalog:
        # A broken catalog is a packaging bug: fail on load, naming the entry.
        problems: list[str] = []
        for entry in self.models:
            if entry.family not in self.families:
                problems.append(f"{entry.hf}: unknown family {entry.family!r}")
            for repo in (entry.hf, *entry.hf_aliases, *entry.prequantized.values()):
                if not valid_repo_id(repo):
                    problems.append(f"{entry.hf}: malformed repo id {repo!r}")
            for scheme in entry.prequantized:
                if scheme not in SCHEMES:
                    problems.append(f"{entry.hf}: unknown scheme {scheme!r}")
            for name in entry.ollama:
                key = name.lower()
                if ":" not in key:
                    problems.append(f"{entry.hf}: Ollama name {name!r} has no tag")
                elif key in self._by_name:
                    problems.append(f"Ollama name {name!r} listed twice")
                self._by_name[key] = entry
            for repo in (entry.hf, *entry.hf_aliases):
                if repo.lower() in self._by_repo:
                    problems.append(f"HF repo {repo!r} listed twice")
                self._by_repo[repo.lower()] = entry
        for fingerprint, family in self.tokenizer_fingerprints.items():
            if family not in self.families:
                problems.append(f"fingerprint {fingerprint}: unknown family {family!r}")
        if problems:
            raise ValueError("invalid mapping catalog: " + "; ".join(problems))
        return self

    def family(self, name: str | None) -> FamilyInfo | None:
        return self.families.get(name) if name else None

    def entry_for_repo(self, repo: str) -> CatalogEntry | None:
        """The entry whose HF repo (or an older name of it) is `repo`, ignoring case."""
        return self._by_repo.get(repo.lower())

    def entries_for_repo_name(self, name: str) -> list[CatalogEntry]:
        """Entries whose repo name (the part after the org) is `name`, ignoring case."""
        wanted = name.lower()
        return [
            entry
            for entry in self.models
            if any(r.split("/")[1].lower() == wanted for r in (entry.hf, *entry.hf_aliases))
        ]

    def entries_for_model(self, model: str) -> list[tuple[str, CatalogEntry]]:
        """(tag, entry) for every catalog name of one Ollama model, e.g. all "qwen3:*"."""
        prefix = model.lower() + ":"
        return [
            (name[len(prefix) :], entry)
            for name, entry in self._by_name.items()
            if name.startswith(prefix)
        ]

    def lookup_ollama(self, model: str, tag: str) -> OllamaMatch | None:
        """Exact name, then the longest catalog tag that the tag only extends with
        quant/instruct segments, then ":latest" when the tag is nothing but those."""
        model, tag = model.lower(), tag.lower()
        exact = self._by_name.get(f"{model}:{tag}")
        if exact is not None:
            return OllamaMatch(entry=exact, alias=f"{model}:{tag}", how="exact")
        best: tuple[str, CatalogEntry] | None = None
        for alias_tag, entry in self.entries_for_model(model):
            if alias_tag == "latest" or not tag.startswith(alias_tag + "-"):
                continue
            rest = tag[len(alias_tag) + 1 :].split("-")
            harmless = all(_HARMLESS_SEGMENT.fullmatch(seg) for seg in rest)
            if harmless and (best is None or len(alias_tag) > len(best[0])):
                best = (alias_tag, entry)
        if best is not None:
            return OllamaMatch(entry=best[1], alias=f"{model}:{best[0]}", how="prefix")
        if all(_HARMLESS_SEGMENT.fullmatch(seg) for seg in tag.split("-")):
            latest = self._by_name.get(f"{model}:latest")
            if latest is not None:
                return OllamaMatch(entry=latest, alias=f"{model}:latest", how="latest")
        return None


def parse_catalog(text: str) -> Catalog:
    """Parse catalog YAML text (the shipped file, or a test's)."""
    return Catalog.model_validate(yaml.safe_load(text))


@cache
def load_catalog() -> Catalog:
    """The shipped catalog, parsed once per process."""
    text = resources.files("migrate.mapping").joinpath(CATALOG_RESOURCE).read_text("utf-8")
    return parse_catalog(text)
