"""Read Ollama's on-disk model store without the Ollama server.

Layout (server/manifest.go, types/model/name.go in ollama/ollama):
`<models>/manifests/<host>/<namespace>/<model>/<tag>` holds a Docker v2 manifest (JSON);
`<models>/blobs/sha256-<hex>` holds each layer and the config blob.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converters.errors import StoreError, UsageError
from migrate.ollama.records import MEDIA_TYPE_KINDS, Layer, ModelName, OllamaModel

log = logging.getLogger(__name__)

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

MAX_MANIFEST_BYTES = 32 << 20  # safetensors manifests list every tensor, so allow some room
MAX_SMALL_LAYER_BYTES = 4 << 20  # templates, licenses, params: real ones are kilobytes
HASH_CHUNK = 1 << 20

_DIGEST_RE = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")  # used with fullmatch
_PART_RE = re.compile(r"[A-Za-z0-9_.-]+")  # used with fullmatch
_MAX_NAME_LEN = 128  # Ollama's MaxNamePartLen, applied to the whole name as it does

TEXT_KINDS = ("template", "prompt", "system", "license")
JSON_KINDS = ("params", "messages")
WEIGHT_KINDS = ("model", "tensor")

# Layers that do not stop a migration but change what it carries over: (problem, what to do).
FLAGGED_KINDS = {
    "adapter": (
        "LoRA adapter layer: not merged, vLLM needs --enable-lora",
        "serve it with --enable-lora --lora-modules, or merge it into the weights first",
    ),
    "projector": (
        "vision projector layer: image input is not migrated",
        "only text chat carries over to vLLM",
    ),
    "draft": (
        "draft model layer: speculative decoding is not migrated",
        "the main model migrates without it",
    ),
}


# --- names --------------------------------------------------------------------------------


def _valid_part(kind: str, part: str) -> bool:
    if not part or not _PART_RE.fullmatch(part) or ".." in part:
        return False
    return not (kind == "namespace" and "." in part)  # dots mark a host, never a namespace


def _split_name(text: str) -> dict[str, str | None]:
    """Split like Ollama's ParseName: `[host/][namespace/]model[:tag][+build][@digest]`."""
    raw = text.strip()
    for scheme in ("http://", "https://"):
        raw = raw.removeprefix(scheme)
    if not raw or len(raw) > _MAX_NAME_LEN:
        raise ValueError("empty or too long")
    raw = raw.split("@", 1)[0]  # a digest pins a manifest; the name is what we match on
    raw = raw.split("+", 1)[0]  # the build part is Ollama-internal (quantization)
    head, slash, last = raw.rpartition("/")
    model, colon, tag = last.partition(":")
    if colon and (not tag or ":" in tag):
        raise ValueError("bad tag")
    path = (head.split("/") if slash else []) + [model]
    if len(path) > 3:
        raise ValueError("too many '/'")
    host = path[0] if len(path) == 3 else None
    namespace = path[-2] if len(path) >= 2 else None
    out: dict[str, str | None] = {
        "host": host,
        "namespace": namespace,
        "model": model,
        "tag": tag or None,
    }
    for kind, value in out.items():
        if value is not None and not _valid_part(kind, value):
            raise ValueError(f"bad {kind} {value!r}")
    if not model:
        raise ValueError("no model part")
    return out


def parse_model_name(text: str) -> ModelName:
    """`smollm2`, `me/mine:v1`, `hf.co/org/repo:Q4_K_M` -> ModelName with Ollama's defaults."""
    try:
        parts = _split_name(text)
    except ValueError as exc:
        raise UsageError(
            f"invalid model name {text!r}: {exc}",
            hint="names look like `llama3.2:1b`, `me/mine:latest` or `hf.co/org/repo:Q4_K_M`",
        ) from None
    return ModelName(
        host=parts["host"] or DEFAULT_HOST,
        namespace=parts["namespace"] or DEFAULT_NAMESPACE,
        model=parts["model"] or "",
        tag=parts["tag"] or DEFAULT_TAG,
    )


def _key(name: ModelName) -> tuple[str, str, str, str]:
    # Ollama compares names case-insensitively (Name.EqualFold).
    return (name.host.lower(), name.namespace.lower(), name.model.lower(), name.tag.lower())


def find_model(models: list[OllamaModel], name: str) -> OllamaModel:
    """Resolve a user-typed name against scanned models; StoreError with close names if absent."""
    wanted = parse_model_name(name)
    typed_tag = _split_name(name)["tag"] is not None
    for model in models:
        if _key(model.name) == _key(wanted):
            return model
    if not typed_tag:
        # `smollm2` means `smollm2:latest` to Ollama; if there is no :latest but one tag, take it.
        same = [m for m in models if _key(m.name)[:3] == _key(wanted)[:3]]
        if len(same) == 1:
            return same[0]
        if len(same) > 1:
            tags = ", ".join(m.name.display for m in same)
            raise StoreError(
                f"model {name!r} has no :latest tag but several others: {tags}",
                hint="name one of them with its tag",
            )
    displays = [m.name.display for m in models]
    close = difflib.get_close_matches(wanted.display, displays, n=5, cutoff=0.5)
    close += [d for d in displays if wanted.model.lower() in d.lower() and d not in close]
    if close:
        hint = "close names: " + ", ".join(close[:5])
    elif displays:
        hint = f"the store holds {len(displays)} models: " + ", ".join(displays[:8])
        hint += ", ..." if len(displays) > 8 else ""
    else:
        hint = "the store holds no models"
    raise StoreError(f"no model named {name!r} in the Ollama store", hint=hint)


# --- where the store is -----------------------------------------------------------------


def default_models_dir(explicit: Path | None, env: Mapping[str, str]) -> Path:
    """explicit, then $OLLAMA_MODELS, then the first existing default; else ~/.ollama/models.

    A directory the user named (flag or OLLAMA_MODELS) is returned even when it does not
    exist, so the error names what they asked for instead of silently reading another store.
    """
    if explicit is not None:
        return Path(explicit).expanduser()
    if env.get("OLLAMA_MODELS"):
        return Path(env["OLLAMA_MODELS"]).expanduser()
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    user_store = home / ".ollama" / "models"
    # The Linux installer runs Ollama as the `ollama` user with its store here.
    for candidate in (user_store, Path("/usr/share/ollama/.ollama/models")):
        if candidate.is_dir():
            return candidate
    return user_store


# --- scanning ---------------------------------------------------------------------------


def blob_path(models_dir: Path, digest: str) -> Path:
    """`sha256:<hex>` -> `<models>/blobs/sha256-<hex>` (dash on disk, like GetBlobsPath)."""
    match = _DIGEST_RE.fullmatch(digest)
    if not match:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return models_dir / "blobs" / f"sha256-{match.group(1).lower()}"


def _iter_manifest_paths(manifests: Path) -> Iterator[tuple[ModelName, Path]]:
    """Every `<host>/<namespace>/<model>/<tag>` entry with a valid name, like Manifests()."""

    def subdirs(path: Path) -> list[Path]:
        try:
            return sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.is_dir())
        except OSError as exc:
            log.warning("skipping unreadable directory %s: %s", path, exc)
            return []

    for host in subdirs(manifests):
        for namespace in subdirs(host):
            for model in subdirs(namespace):
                try:
                    tags = sorted(p for p in model.iterdir() if not p.name.startswith("."))
                except OSError as exc:
                    log.warning("skipping unreadable directory %s: %s", model, exc)
                    continue
                for tag in tags:
                    parts = {
                        "host": host.name,
                        "namespace": namespace.name,
                        "model": model.name,
                        "tag": tag.name,
                    }
                    # Partial writes and editor droppings have names Ollama would reject too.
                    if not all(_valid_part(k, v) for k, v in parts.items()):
                        log.info("skipping %s: not a valid model name", tag)
                        continue
                    yield ModelName(**parts), tag


@dataclass
class _Scan:
    models_dir: Path
    verify: bool
    hashes: dict[str, bool] = field(default_factory=dict)  # digest -> matches, shared blobs once

    def digest_ok(self, digest: str, path: Path) -> bool:
        if digest not in self.hashes:
            sha = hashlib.sha256()
            with path.open("rb") as fh:
                while chunk := fh.read(HASH_CHUNK):
                    sha.update(chunk)
            self.hashes[digest] = f"sha256:{sha.hexdigest()}" == digest
        return self.hashes[digest]


def _human(size: int) -> str:
    return f"{size / (1 << 20):g} MiB" if size >= 1 << 20 else f"{size} bytes"


def _repair_hint(name: ModelName) -> str:
    return f"re-pull it with `ollama pull {name.display}` or re-create it with `ollama create`"


class _Builder:
    """Collects one model's record and its problems."""

    def __init__(self, scan: _Scan, name: ModelName, path: Path) -> None:
        self.scan = scan
        self.model = OllamaModel(
            name=name, source="disk", format="unknown", manifest_path=str(path)
        )

    def problem(self, text: str, todo: str, *, blocking: bool = True) -> None:
        self.model.problems.append(f"{self.model.name.display}: {text}; {todo}")
        if blocking:
            self.model.migratable = False

    def check_blob(self, what: str, digest: str, size: int) -> Path | None:
        """The blob's path if it is present and whole; records a problem otherwise."""
        path = blob_path(self.scan.models_dir, digest)
        short = digest[:19]
        repair = _repair_hint(self.model.name)
        if not path.is_file():
            partial = any(path.parent.glob(path.name + "-partial*"))
            state = "only partly downloaded" if partial else "missing"
            self.problem(f"{what} blob {short}... is {state}", repair)
            return None
        actual = path.stat().st_size
        if actual != size:
            self.problem(
                f"{what} blob {short}... is {actual} bytes, the manifest says {size}", repair
            )
        elif self.scan.verify:
            try:
                if not self.scan.digest_ok(digest, path):
                    self.problem(f"{what} blob {short}... does not match its sha256 digest", repair)
            except OSError as exc:
                self.problem(
                    f"cannot read {what} blob {short}...: {exc.strerror}", "check its permissions"
                )
        return path

    def read_small(self, what: str, path: Path, size: int) -> bytes | None:
        limit = MAX_SMALL_LAYER_BYTES
        if size > limit or path.stat().st_size > limit:
            self.problem(
                f"{what} layer is {size} bytes, more than a {what} layer can be "
                f"({_human(limit)} at most): not read",
                _repair_hint(self.model.name),
            )
            return None
        try:
            return path.read_bytes()
        except OSError as exc:
            self.problem(f"cannot read the {what} layer: {exc.strerror}", "check its permissions")
            return None


def _entry(raw: Any, what: str) -> tuple[str, str, int, dict[str, Any]]:
    """Validate one manifest descriptor: (mediaType, sha256:<hex>, size, the raw dict)."""
    if not isinstance(raw, dict):
        raise ValueError(f"{what} is not an object")
    media, digest, size = raw.get("mediaType"), raw.get("digest"), raw.get("size")
    if not isinstance(media, str) or not isinstance(digest, str):
        raise ValueError(f"{what} lacks mediaType or digest")
    match = _DIGEST_RE.fullmatch(digest)
    if not match:
        raise ValueError(f"{what} has a bad digest {digest!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"{what} has a bad size {size!r}")
    return media, f"sha256:{match.group(1).lower()}", size, raw


def _read_manifest(b: _Builder, path: Path) -> dict[str, Any] | None:
    repair = _repair_hint(b.model.name)
    if not path.is_file():
        what = "a directory" if path.is_dir() else "not a regular file"
        b.problem(f"manifest is {what}", f"remove {path} or {repair}")
        return None
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            b.problem("manifest is too big to be an Ollama manifest", repair)
            return None
        data = path.read_bytes()
    except OSError as exc:
        b.problem(f"cannot read the manifest: {exc.strerror}", "check its permissions")
        return None
    b.model.manifest_digest = hashlib.sha256(data).hexdigest()  # as /api/tags reports it
    try:
        manifest = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        b.problem("manifest is not valid JSON", repair)
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        b.problem("manifest has no layer list", repair)
        return None
    return manifest


def _read_config(b: _Builder, raw: Any) -> None:
    try:
        _, digest, size, _ = _entry(raw, "config")
    except ValueError as exc:
        b.problem(f"manifest config is not valid: {exc}", _repair_hint(b.model.name))
        return
    b.model.size_bytes += size
    path = b.check_blob("config", digest, size)
    data = b.read_small("config", path, size) if path else None
    if data is None:
        return
    try:
        config = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        config = None
    if not isinstance(config, dict):
        b.problem("config blob is not a JSON object", _repair_hint(b.model.name))
        return
    b.model.config = config


def _decode_layer(b: _Builder, layer: Layer, path: Path) -> None:
    data = b.read_small(layer.kind, path, layer.size)
    if data is None:
        return
    m = b.model
    if layer.kind in TEXT_KINDS:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # Go strings hold any bytes, so Ollama itself would still run this model.
            text = data.decode("utf-8", errors="replace")
            b.problem(
                f"{layer.kind} layer is not valid UTF-8", "check it after migration", blocking=False
            )
        if layer.kind == "template" or (layer.kind == "prompt" and m.template is None):
            m.template = text  # TEMPLATE wins over the legacy prompt layer
        elif layer.kind == "system":
            m.system = text
        elif layer.kind == "license":
            m.license = text if m.license is None else f"{m.license}\n\n{text}"
        return
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        value = None
    if layer.kind == "params" and isinstance(value, dict):
        m.params = value
    elif layer.kind == "messages" and isinstance(value, list):
        m.messages = [x for x in value if isinstance(x, dict)]
    else:
        want = "object" if layer.kind == "params" else "list"
        b.problem(f"{layer.kind} layer is not a JSON {want}", _repair_hint(m.name))


def _is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"GGUF"
    except OSError:
        return False


def _classify(b: _Builder) -> None:
    """Decide format and migratability from the layers and the config."""
    m = b.model
    kinds = [layer.kind for layer in m.layers]
    remote = m.config.get("remote_host") or m.config.get("remote_model")
    if remote:
        m.format = "remote"
        m.remote_host = str(m.config.get("remote_host") or "") or None
        where = f" (runs on {m.remote_host})" if m.remote_host else ""
        b.problem(f"cloud model: no local weights{where}", "nothing to migrate; skip it")
        return
    if "tensor" in kinds:
        m.format = "safetensors"
    elif "model" in kinds:
        m.format = "gguf"
        if kinds.count("model") > 1:
            b.problem(
                f"{kinds.count('model')} model layers (split GGUF?)",
                "merge the shards into one GGUF and `ollama create` it",
            )
        layer = m.model_layer
        if layer and layer.blob_path and not _is_gguf(Path(layer.blob_path)):
            b.problem("model blob is not a GGUF file", _repair_hint(m.name))
    else:
        b.problem("no model or tensor layer: no local weights", "nothing to migrate; skip it")
        return
    for kind, (text, todo) in FLAGGED_KINDS.items():
        if kind in kinds:
            b.problem(text, todo, blocking=False)


def _scan_one(scan: _Scan, name: ModelName, path: Path) -> OllamaModel:
    b = _Builder(scan, name, path)
    manifest = _read_manifest(b, path)
    if manifest is None:
        return b.model
    try:
        entries = [_entry(raw, f"layer {i}") for i, raw in enumerate(manifest["layers"])]
    except ValueError as exc:
        b.problem(f"manifest is not valid: {exc}", _repair_hint(name))
        return b.model
    _read_config(b, manifest.get("config"))
    for media, digest, size, raw in entries:
        kind = MEDIA_TYPE_KINDS.get(media, "unknown")
        layer = Layer(
            kind=kind,
            media_type=media,
            digest=digest,
            size=size,
            name=raw.get("name") if isinstance(raw.get("name"), str) else None,
        )
        b.model.layers.append(layer)
        b.model.size_bytes += size
        if kind == "unknown":
            b.problem(f"unknown layer type {media}: ignored", "check the result", blocking=False)
        path_ = b.check_blob(f"{kind} layer", digest, size)
        if path_ is None:
            continue
        layer.blob_path = str(path_)
        if kind in TEXT_KINDS or kind in JSON_KINDS:
            _decode_layer(b, layer, path_)
    _classify(b)
    return b.model


def scan_store(models_dir: Path, verify: bool = False) -> list[OllamaModel]:
    """Every model in the store, sorted by name; per-model trouble goes to `model.problems`."""
    models_dir = Path(models_dir).expanduser()
    hint = "set --models-dir or OLLAMA_MODELS"
    if not models_dir.exists():
        raise StoreError(f"no Ollama store at {models_dir}", hint=hint)
    if not models_dir.is_dir():
        raise StoreError(f"the Ollama store {models_dir} is not a directory", hint=hint)
    manifests = models_dir / "manifests"
    if not manifests.is_dir():
        raise StoreError(
            f"no manifests directory in {models_dir}: not an Ollama store",
            hint="point --models-dir or OLLAMA_MODELS at the directory holding manifests/ and blobs/",
        )
    if not os.access(manifests, os.R_OK | os.X_OK):
        raise StoreError(f"cannot read {manifests}", hint="run as a user who can read the store")
    scan = _Scan(models_dir=models_dir, verify=verify)
    models = [_scan_one(scan, name, path) for name, path in _iter_manifest_paths(manifests)]
    if not models:
        raise StoreError(
            f"the Ollama store at {models_dir} holds no models",
            hint="pull one with `ollama pull NAME`, or point --models-dir at another store",
        )
    return sorted(models, key=lambda m: (m.name.display.lower(), m.name.display))
