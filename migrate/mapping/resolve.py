"""Find the HuggingFace original of an Ollama model, with a confidence and the evidence.

Steps run in order (user override, GGUF lineage keys, hf.co name, Ollama library
name, GGUF identity, GGUF shape); the first high-confidence hit wins, otherwise the
best hit seen. Every step that fired is listed in `MappingResult.evidence`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from converters.errors import MappingError
from converters.gguf.info import GGUFInfo
from migrate.mapping.catalog import Catalog, load_catalog, valid_repo_id
from migrate.mapping.schema import CatalogEntry, Confidence, MappingResult
from migrate.ollama.records import OllamaModel

NO_ORIGINAL = "no HuggingFace original known: will be rebuilt from the GGUF"

_RANK: dict[str, int] = {"none": 0, "low": 1, "medium": 2, "high": 3}
_HF_HOSTS = ("hf.co", "huggingface.co")
_HF_URL = re.compile(
    r"^(?:https?://)?(?:www\.)?(?:huggingface\.co|hf\.co)/([^/\s?#]+)/([^/\s?#]+)", re.IGNORECASE
)
_NOT_MODEL_PATHS = {"datasets", "spaces", "collections", "docs", "papers", "blog", "models"}
_GGUF_SUFFIX = re.compile(r"(?:[-_.]i1)?[-_.]gguf$", re.IGNORECASE)
# Publishers of other people's GGUFs: their org is never the original's.
_QUANTIZERS = {
    "bartowski", "thebloke", "unsloth", "lmstudio-community", "quantfactory", "mradermacher",
    "maziyarpanahi", "second-state", "tensorblock", "ggml-org", "nikolaykozloff", "gaianet",
}  # fmt: skip
_GATED_ORGS = {"meta-llama", "mistralai"}
_SIZE_TOKEN = re.compile(r"\d+(?:\.\d+)?[kmbt]|\d+x\d+(?:\.\d+)?[kmbt]|a\d+(?:\.\d+)?b")
_SOFT_TOKEN = re.compile(r"v\d+(?:\.\d+)*|\d{4}")  # versions and yymm dates
_GENERIC = {"instruct", "chat", "it", "hf"}  # build markers, not model names
_ARCH_GROUPS = {"mistral": "llama", "mistral3": "llama"}  # converters disagree on these names


@dataclass(frozen=True)
class _Hit:
    repo: str
    confidence: Confidence
    reason: str
    entry: CatalogEntry | None = None
    yields: bool = False  # a later hit of equal confidence replaces it


@dataclass
class _Facts:
    """What is known about the weights, from the GGUF or (over the API) Ollama's model_info."""

    architecture: str | None = None
    parameter_count: int | None = None
    identity: dict[str, Any] = field(default_factory=dict)
    chat_template: str | None = None
    tokenizer_fingerprint: str | None = None
    source: str = "GGUF"  # named in reasons

    @classmethod
    def of(cls, model: OllamaModel, gguf: GGUFInfo | None) -> _Facts:
        if gguf is not None:
            return cls(
                architecture=gguf.architecture,
                parameter_count=gguf.parameter_count or None,
                identity=dict(gguf.identity),
                chat_template=gguf.chat_template or model.template,
                tokenizer_fingerprint=gguf.tokenizer_fingerprint,
            )
        info = model.api_model_info
        count = info.get("general.parameter_count")
        arch = info.get("general.architecture")
        return cls(
            architecture=arch if isinstance(arch, str) else None,
            parameter_count=count if isinstance(count, int) and count > 0 else None,
            identity={k: v for k, v in info.items() if k.startswith("general.")},
            chat_template=model.template,
            source="Ollama model info",
        )

    def describe(self) -> str:
        parts = [p for p in (self.architecture, _pretty_count(self.parameter_count)) if p]
        return ", ".join(parts)


@dataclass
class _Context:
    model: OllamaModel
    facts: _Facts
    catalog: Catalog
    overrides: Mapping[str, str]
    evidence: list[str] = field(default_factory=list)


def resolve_hf(
    model: OllamaModel, gguf: GGUFInfo | None, overrides: Mapping[str, str] | None = None
) -> MappingResult:
    """Map an Ollama model to its HF original; never raises for unknown models."""
    ctx = _Context(model, _Facts.of(model, gguf), load_catalog(), overrides or {})
    steps: tuple[Callable[[_Context], _Hit | None], ...] = (
        _from_override,
        _from_gguf_lineage,
        _from_hf_name,
        _from_ollama_name,
        _from_identity,
        _from_shape,
    )
    best: _Hit | None = None
    for step in steps:
        hit = step(ctx)
        if hit is None:
            continue
        ctx.evidence.append(f"{hit.confidence}: {hit.reason}")
        if best is None or _beats(hit, best):
            best = hit
        if best.confidence == "high":
            break
    if best is None:
        return MappingResult(
            repo=None,
            confidence="none",
            reason=NO_ORIGINAL,
            evidence=ctx.evidence,
            rebuild_from_gguf=True,
        )
    return _result(best, ctx)


def _beats(hit: _Hit, best: _Hit) -> bool:
    rank, best_rank = _RANK[hit.confidence], _RANK[best.confidence]
    return rank > best_rank or (rank == best_rank and best.yields)


def _result(hit: _Hit, ctx: _Context) -> MappingResult:
    entry = hit.entry or ctx.catalog.entry_for_repo(hit.repo)
    family = ctx.catalog.family(entry.family) if entry else None
    org = hit.repo.split("/")[0].lower()
    gated = (
        entry.gated if entry else org in _GATED_ORGS or hit.repo.lower().startswith("google/gemma")
    )
    return MappingResult(
        repo=entry.hf if entry else hit.repo,  # the catalog's spelling of a renamed repo
        confidence=hit.confidence,
        reason=hit.reason,
        evidence=ctx.evidence,
        family=entry.family if entry else None,
        gated=gated,
        prequantized=dict(entry.prequantized) if entry else {},
        tool_call_parser=family.tool_call_parser if family else None,
        reasoning_parser=family.reasoning_parser if family else None,
    )


# --- a. user override ---------------------------------------------------------


def _from_override(ctx: _Context) -> _Hit | None:
    if not ctx.overrides:
        return None
    name = ctx.model.name
    keys = [name.display]
    if name.tag == "latest":
        keys.append(name.display.removesuffix(":latest"))
    keys.append(name.model)  # the bare model name, any tag
    wanted = {k.lower(): v for k, v in ctx.overrides.items()}
    for key in keys:
        repo = wanted.get(key.lower())
        if repo is not None:
            # Overrides normally come through parse_overrides; check direct callers too.
            repo = _checked_repo(repo, f"mapping for {key}")
            return _Hit(repo, "high", f"user mapping {key}={repo}")
    return None


# --- b. GGUF lineage keys -----------------------------------------------------


def _from_gguf_lineage(ctx: _Context) -> _Hit | None:
    ident = ctx.facts.identity
    # The repo this file was converted from is the model itself.
    source = _repo_from_value(ident.get("general.source.huggingface.repository"))
    source = source or _repo_from_url(ident.get("general.source.repo_url"))
    source = source or _repo_from_url(ident.get("general.source.url"))
    if source:
        return _Hit(_canonical(ctx, source), "high", f"GGUF says it was converted from {source}")

    bases = _base_models(ctx)
    if not bases:
        return None
    repo, org = bases[0]
    repo = _canonical(ctx, repo)
    if len(bases) > 1:
        others = ", ".join(r for r, _ in bases[1:])
        return _Hit(
            repo,
            "medium",
            f"GGUF names several base models ({repo}, {others}): a merge",
            yields=True,
        )
    disagreement = _identity_disagrees(ident, repo, org)
    if disagreement:
        reason = f"GGUF names base model {repo}, but this file is a derivative ({disagreement})"
        return _Hit(repo, "medium", reason, yields=True)
    return _Hit(repo, "high", f"GGUF names base model {repo}")


def _base_models(ctx: _Context) -> list[tuple[str, str | None]]:
    """(repo, organization) for each general.base_model.N that names an HF repo."""
    ident = ctx.facts.identity
    count = ident.get("general.base_model.count")
    n = count if isinstance(count, int) and 0 < count < 64 else 8
    found: list[tuple[str, str | None]] = []
    for i in range(n):
        prefix = f"general.base_model.{i}."
        org, name = ident.get(prefix + "organization"), ident.get(prefix + "name")
        repo = _repo_from_url(ident.get(prefix + "repo_url")) or _repo_from_url(
            ident.get(prefix + "url")
        )
        if repo is None and isinstance(org, str) and isinstance(name, str):
            repo = _repo_from_org_name(ctx, org, name)
        if repo and repo not in (r for r, _ in found):
            found.append((repo, org if isinstance(org, str) else None))
    return found


def _repo_from_org_name(ctx: _Context, org: str, name: str) -> str | None:
    # llama.cpp writes display names ("Meta Llama" / "Llama 3.1 8B"); dashed they
    # often spell the repo, which the catalog can confirm.
    dashed = f"{'-'.join(org.split())}/{'-'.join(name.split())}"
    entry = ctx.catalog.entry_for_repo(dashed)
    if entry is not None:
        return entry.hf
    plain = f"{org}/{name}"
    return plain if valid_repo_id(plain) else None


def _identity_disagrees(ident: Mapping[str, Any], repo: str, base_org: str | None) -> str | None:
    """Why this GGUF looks like a derivative of `repo` rather than `repo` itself."""
    own_org = ident.get("general.organization")
    repo_org, repo_name = repo.split("/")
    orgs = {_squash(repo_org)} | ({_squash(base_org)} if base_org else set())
    if isinstance(own_org, str) and own_org.strip() and _squash(own_org) not in orgs:
        return f"its organization is {own_org}"
    repo_tokens = set(_tokens(repo_name)) | set(_tokens(repo_org)) | set(_tokens(base_org or ""))
    for key in ("general.basename", "general.finetune", "general.size_label"):
        value = ident.get(key)
        if isinstance(value, str):
            missing = [t for t in _tokens(value) if t not in repo_tokens]
            if missing:
                return f"{key.split('.')[-1]} {value}"
    return None


# --- c. hf.co/<org>/<repo> names ----------------------------------------------


def _from_hf_name(ctx: _Context) -> _Hit | None:
    name = ctx.model.name
    if name.host.lower() not in _HF_HOSTS:
        return None
    gguf_repo = f"{name.namespace}/{name.model}"
    ctx.evidence.append(f"pulled from HuggingFace repo {gguf_repo} (tag {name.tag})")
    stripped = _GGUF_SUFFIX.sub("", name.model)
    entries = ctx.catalog.entries_for_repo_name(stripped)
    if len({e.hf for e in entries}) == 1:
        entry = entries[0]
        return _Hit(entry.hf, "high", f"{gguf_repo} is a GGUF build of {entry.hf}", entry)
    org = name.namespace
    if org.lower() in _QUANTIZERS:
        org = _guess_org(ctx.catalog, stripped) or org
    guess = f"{org}/{stripped}"
    if not valid_repo_id(guess):
        return None
    return _Hit(
        guess, "low", f"guessed {guess} from the GGUF repo name {gguf_repo}; not in the catalog"
    )


def _guess_org(catalog: Catalog, repo_name: str) -> str | None:
    """The one org whose catalog repos start with the same word (e.g. "Llama" -> meta-llama)."""
    first = _tokens(repo_name)[:1]
    orgs = {
        repo.split("/")[0]
        for entry in catalog.models
        for repo in (entry.hf, *entry.hf_aliases)
        if _tokens(repo.split("/")[1])[:1] == first
    }
    return orgs.pop() if len(orgs) == 1 else None


# --- d. Ollama library name ---------------------------------------------------


def _from_ollama_name(ctx: _Context) -> _Hit | None:
    name = ctx.model.name
    if name.host != "registry.ollama.ai" or name.namespace != "library":
        return None
    match = ctx.catalog.lookup_ollama(name.model, name.tag)
    if match is None:
        return None
    entry, shown = match.entry, name.display
    via = "" if match.how == "exact" else f" (as {match.alias})"
    contradictions = _contradictions(entry, ctx.facts)
    if not contradictions:
        if ctx.facts.architecture is None and ctx.facts.parameter_count is None:
            reason = f"Ollama library model {shown}{via} is {entry.hf}; no GGUF read to confirm it"
            return _Hit(entry.hf, "medium", reason, entry)
        reason = (
            f"Ollama library model {shown}{via} is {entry.hf}; "
            f"the {ctx.facts.source} agrees ({ctx.facts.describe()})"
        )
        return _Hit(entry.hf, "high", reason, entry)
    sibling = _sibling(ctx, name.model, entry)
    if sibling is not None:
        alias, other = sibling
        reason = (
            f"Ollama library model {shown} is {other.hf}: the {ctx.facts.source} "
            f"({ctx.facts.describe()}) "
            f"matches {alias}, not {match.alias}"
        )
        return _Hit(other.hf, "high", reason, other)
    reason = f"Ollama name {shown} suggests {entry.hf}, but {'; '.join(contradictions)}"
    return _Hit(entry.hf, "low", reason, entry)


def _sibling(ctx: _Context, model: str, rejected: CatalogEntry) -> tuple[str, CatalogEntry] | None:
    """Another entry for the same model and size that the weights do match
    (e.g. deepseek-r1:8b, which Ollama re-pointed from a Llama to a Qwen3 distill)."""
    sizes = {
        name.split(":")[1].split("-")[0] for name in rejected.ollama if not name.endswith(":latest")
    }
    fits = {
        entry.hf: (f"{model}:{alias}", entry)
        for alias, entry in ctx.catalog.entries_for_model(model)
        if entry.hf != rejected.hf and alias.split("-")[0] in sizes and _confirmed(entry, ctx.facts)
    }
    return next(iter(fits.values())) if len(fits) == 1 else None


def _contradictions(entry: CatalogEntry, facts: _Facts) -> list[str]:
    found: list[str] = []
    if facts.architecture and not _same_arch(facts.architecture, entry.architecture):
        found.append(
            f"the {facts.source} architecture is {facts.architecture}, not {entry.architecture}"
        )
    if facts.parameter_count and not _close(facts.parameter_count / 1e9, entry.parameters_b):
        found.append(
            f"the {facts.source} has {_pretty_count(facts.parameter_count)} parameters, "
            f"not about {_pretty_count(int((entry.parameters_b or 0) * 1e9))}"
        )
    return found


def _confirmed(entry: CatalogEntry, facts: _Facts) -> bool:
    known = facts.architecture is not None or facts.parameter_count is not None
    return known and not _contradictions(entry, facts)


# --- e. GGUF identity, then shape ---------------------------------------------


def _from_identity(ctx: _Context) -> _Hit | None:
    ident = ctx.facts.identity
    basename = _str(ident.get("general.basename"))
    size = _str(ident.get("general.size_label"))
    finetune = _str(ident.get("general.finetune"))
    name = _str(ident.get("general.name"))
    if basename:
        words = set(_tokens(basename)) | set(_tokens(size or "")) | set(_tokens(finetune or ""))
    elif name:
        words = set(_tokens(name))
    else:
        return None
    own_org = _str(ident.get("general.organization"))
    scored: list[tuple[tuple[int, int, int], str, CatalogEntry, bool]] = []
    for entry in ctx.catalog.models:
        if _contradictions(entry, ctx.facts) or not _size_fits(size, entry):
            continue
        for repo in (entry.hf, *entry.hf_aliases):
            score = _identity_score(repo, words, basename, entry, ctx.facts)
            if score is None:
                continue
            org_ok = own_org is None or _squash(own_org) == _squash(repo.split("/")[0])
            scored.append(((int(org_ok and own_org is not None), *score), repo, entry, org_ok))
    if not scored:
        return None
    scored.sort(key=lambda item: item[0], reverse=True)
    top = scored[0][0]
    best = {item[2].hf: item for item in scored if item[0] == top}
    label = " / ".join(v for v in (own_org, basename or name, size, finetune) if v)
    if len(best) > 1:
        ctx.evidence.append(f"GGUF identity ({label}) fits several models: {_some(sorted(best))}")
        return None
    _, _, entry, org_ok = next(iter(best.values()))
    if not org_ok:
        reason = f"GGUF identity ({label}) resembles {entry.hf}, but from another organization"
        return _Hit(entry.hf, "low", reason, entry)
    return _Hit(entry.hf, "medium", f"GGUF identity ({label}) matches {entry.hf}", entry)


def _identity_score(
    repo: str, words: set[str], basename: str | None, entry: CatalogEntry, facts: _Facts
) -> tuple[int, int] | None:
    """(words shared, -unexplained soft words), or None when the repo names something
    the identity does not (e.g. "Coder" or "Hermes")."""
    org, repo_name = repo.split("/")
    repo_words = _tokens(repo_name)
    org_words = set(_tokens(org))
    if basename and not set(_tokens(basename)) <= set(repo_words) | org_words:
        return None
    penalty = 0
    for word in repo_words:
        if word in words or word in org_words:
            continue
        if word in _GENERIC or _SOFT_TOKEN.fullmatch(word):
            penalty += 1
        elif _SIZE_TOKEN.fullmatch(word) and facts.parameter_count:
            if not _close(facts.parameter_count / 1e9, entry.parameters_b):
                return None
        else:
            return None
    return len(words & set(repo_words)), -penalty


def _size_fits(size_label: str | None, entry: CatalogEntry) -> bool:
    if not size_label or not entry.parameters_b:
        return True
    if entry.size_label and size_label.lower() == entry.size_label.lower():
        return True
    value = _parse_size(size_label)
    return value is None or _close(value, entry.parameters_b)


def _from_shape(ctx: _Context) -> _Hit | None:
    """Architecture and size, narrowed by a family hint (tokenizer or chat template).
    Shape alone is not enough: every finetune shares its base model's shape."""
    facts = ctx.facts
    if not facts.architecture or not facts.parameter_count:
        return None
    fp_family = ctx.catalog.tokenizer_fingerprints.get(facts.tokenizer_fingerprint or "")
    if fp_family:
        families, hint = {fp_family}, f"tokenizer of the {fp_family} family"
    else:
        families = _template_families(ctx.catalog, facts.chat_template or "")
        hint = f"chat template of the {_some(sorted(families))} family"
    if not families:
        return None
    candidates = {
        entry.hf: entry
        for entry in ctx.catalog.models
        if entry.family in families and _confirmed(entry, facts)
    }
    shape = f"{facts.describe()}; {hint}"
    if len(candidates) != 1:
        if candidates:
            ctx.evidence.append(
                f"GGUF shape ({shape}) fits several models: {_some(sorted(candidates))}"
            )
        return None
    entry = next(iter(candidates.values()))
    return _Hit(entry.hf, "low", f"GGUF shape ({shape}) fits only {entry.hf}", entry)


def _template_families(catalog: Catalog, template: str) -> set[str]:
    """Families whose chat markers all appear, keeping only the most specific ones."""
    hits = {
        name: len(info.chat_markers)
        for name, info in catalog.families.items()
        if info.chat_markers and all(marker in template for marker in info.chat_markers)
    }
    if not hits:
        return set()
    most = max(hits.values())
    return {name for name, n in hits.items() if n == most}


# --- overrides from the command line and a mapping file ------------------------


def parse_overrides(items: Sequence[str], mapping_file: Path | None = None) -> dict[str, str]:
    """`--map NAME=org/repo` items and a YAML/JSON {name: org/repo} file; items win."""
    result: dict[str, str] = {}
    if mapping_file is not None:
        result.update(_read_mapping_file(mapping_file))
    given: dict[str, str] = {}
    for item in items:
        name, sep, repo = item.partition("=")
        name, repo = name.strip(), repo.strip()
        if not sep or not name or not repo:
            raise MappingError(
                f"--map {item!r} is not NAME=org/repo",
                hint="e.g. --map llama3.2:3b=meta-llama/Llama-3.2-3B-Instruct",
            )
        repo = _checked_repo(repo, f"--map {item!r}")
        if name.lower() in given and given[name.lower()] != repo:
            raise MappingError(
                f"--map gives {name} twice ({given[name.lower()]} and {repo})", hint="keep one"
            )
        given[name.lower()] = repo
        result[name] = repo
    return result


def _read_mapping_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(
            f"mapping file {path} cannot be read: {exc.strerror or exc}", hint="check the path"
        ) from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MappingError(
            f"mapping file {path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {first}",
            hint="it should hold NAME: org/repo pairs",
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MappingError(
            f"mapping file {path} holds a {type(data).__name__}, not NAME: org/repo pairs",
            hint="e.g. 'llama3.2:3b: meta-llama/Llama-3.2-3B-Instruct'",
        )
    result: dict[str, str] = {}
    for name, repo in data.items():
        if not isinstance(name, str) or not name.strip() or not isinstance(repo, str):
            raise MappingError(
                f"mapping file {path}: entry {name!r}: {repo!r} is not NAME: org/repo",
                hint="quote names and repo ids as strings",
            )
        result[name.strip()] = _checked_repo(repo.strip(), f"mapping file {path}, entry {name!r}")
    return result


def _checked_repo(repo: str, where: str) -> str:
    # Accept a pasted hub URL, store the bare id.
    found = _repo_from_url(repo)
    repo = found or repo
    if not valid_repo_id(repo):
        raise MappingError(
            f"{where}: {repo!r} is not a HuggingFace repo id",
            hint="use org/name with letters, digits, '.', '_' or '-'",
        )
    return repo


# --- small helpers -------------------------------------------------------------


def _repo_from_url(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    match = _HF_URL.match(value.strip())
    if not match or match.group(1).lower() in _NOT_MODEL_PATHS:
        return None
    repo = f"{match.group(1)}/{match.group(2).removesuffix('.git')}"
    return repo if valid_repo_id(repo) else None


def _repo_from_value(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if valid_repo_id(value) else _repo_from_url(value)


def _canonical(ctx: _Context, repo: str) -> str:
    entry = ctx.catalog.entry_for_repo(repo)
    return entry.hf if entry else repo


def _same_arch(a: str, b: str) -> bool:
    def norm(arch: str) -> str:
        arch = re.sub(r"[-_]", "", arch.lower())
        return _ARCH_GROUPS.get(arch, arch)

    return norm(a) == norm(b)


def _close(value_b: float, expected_b: float | None) -> bool:
    """Within about 20%: quantized files, vision towers and tied embeddings shift counts."""
    return expected_b is None or abs(value_b - expected_b) <= 0.2 * expected_b


def _parse_size(label: str) -> float | None:
    """ "135M" -> 0.135, "8x7B" -> 56.0 (billions); None when not a plain size."""
    match = re.fullmatch(r"(?:(\d+)x)?(\d+(?:\.\d+)?)([KMBT])", label.strip(), re.IGNORECASE)
    if not match:
        return None
    scale = {"k": 1e-6, "m": 1e-3, "b": 1.0, "t": 1e3}[match.group(3).lower()]
    return float(match.group(2)) * scale * int(match.group(1) or 1)


def _pretty_count(count: int | None) -> str | None:
    if not count:
        return None
    if count >= 1e9:
        return f"{count / 1e9:.1f}B"
    return f"{count / 1e6:.1f}M"


def _some(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} (+{len(names) - limit} more)"


def _tokens(text: str) -> list[str]:
    """Lower-case words split on spaces, dashes, underscores and slashes; dots dropped
    inside a word, so "Qwen2.5" and "Qwen25", "3.2" and "32" compare equal."""
    return [t.replace(".", "") for t in re.split(r"[\s_/-]+", text.lower()) if t.strip(".")]


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _str(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None
