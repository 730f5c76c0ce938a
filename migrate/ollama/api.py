"""Read models from a running Ollama over its HTTP API (/api/tags, then /api/show each).

Gives the same OllamaModel records as the disk scan, minus what only the disk has:
layers and blob paths. The model digest comes from /api/tags (sha256 of the manifest).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import ollama

from converters.errors import NetworkError, UsageError
from migrate.ollama.records import ModelFormat, ModelName, OllamaModel
from migrate.ollama.store import parse_model_name

DEFAULT_PORT = 11434
CONNECT_HINT = "is `ollama serve` running? set --ollama-url or OLLAMA_HOST"
LIST_PARAMS = {"stop"}  # Ollama keeps these as lists even with one value

# Addresses a server binds to but a client cannot meaningfully dial everywhere.
_BIND_ALL = {"0.0.0.0": "127.0.0.1", "::": "::1"}
_HOST_RE = re.compile(r"[A-Za-z0-9._:%-]+")  # names, IPv4, IPv6 (with a zone)


def normalize_ollama_url(text: str | None) -> str:
    """OLLAMA_HOST forms -> `scheme://host:port[/path]`, as Ollama's envconfig.Host reads them.

    No scheme: http and port 11434. An explicit http:// or https:// URL without a port
    means 80 or 443, as for Ollama's own CLI and Python client. `0.0.0.0` (bind to all)
    becomes 127.0.0.1.
    """
    raw = (text or "").strip()
    scheme, sep, rest = raw.partition("://")
    if not sep:
        scheme, rest, port = "http", raw, DEFAULT_PORT
    elif scheme.lower() in ("http", "https"):
        scheme = scheme.lower()
        port = 80 if scheme == "http" else 443
    else:
        raise UsageError(f"invalid Ollama URL {text!r}: scheme must be http or https")
    hostport, _, path = rest.partition("/")
    host, port_text = _split_hostport(hostport)
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UsageError(f"invalid Ollama URL {text!r}: bad port {port_text!r}")
        port = int(port_text)
    host = _BIND_ALL.get(host, host or "127.0.0.1")
    if not _HOST_RE.fullmatch(host):
        raise UsageError(f"invalid Ollama URL {text!r}: bad host {host!r}")
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    path = path.strip("/")
    return f"{scheme}://{host}:{port}" + (f"/{path}" if path else "")


def _split_hostport(hostport: str) -> tuple[str, str]:
    if hostport.startswith("["):  # [v6]:port
        host, _, tail = hostport[1:].partition("]")
        return host, tail.removeprefix(":")
    if hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
        return host, port
    return hostport, ""  # bare name, or bare IPv6 without port


# --- /api/show `parameters` text --------------------------------------------------------

_GO_ESCAPES = {
    "a": 7,
    "b": 8,
    "f": 12,
    "n": 10,
    "r": 13,
    "t": 9,
    "v": 11,
    "\\": 92,
    '"': 34,
    "'": 39,
}


def _go_unquote(body: str) -> str:
    """Undo Go's strconv.Quote (what %#v writes for strings); body is without the quotes."""
    out = bytearray()
    i = 0
    while i < len(body):
        char = body[i]
        nxt = body[i + 1] if i + 1 < len(body) else ""
        if char != "\\" or not nxt:
            out += char.encode()
            i += 1
        elif nxt in _GO_ESCAPES:
            out.append(_GO_ESCAPES[nxt])
            i += 2
        elif nxt == "x":  # a raw byte, possibly part of a UTF-8 sequence
            out.append(int(body[i + 2 : i + 4], 16))
            i += 4
        elif nxt in "uU":
            width = 4 if nxt == "u" else 8
            out += chr(int(body[i + 2 : i + 2 + width], 16)).encode()
            i += 2 + width
        elif nxt in "01234567":
            out.append(int(body[i + 1 : i + 4], 8))
            i += 4
        else:
            out += char.encode()
            i += 1
    return out.decode("utf-8", errors="replace")


def _param_value(text: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return _go_unquote(text[1:-1])
        except ValueError:
            return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_parameters(text: str | None) -> dict[str, Any]:
    """`stop "<|im_end|>"` / `temperature 0.7` lines -> the params layer's JSON shape."""
    params: dict[str, Any] = {}
    for line in (text or "").splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) != 2:
            continue
        key, value = parts[0], _param_value(parts[1].strip())
        if key in LIST_PARAMS:
            params.setdefault(key, []).append(value)
        elif key in params:  # repeated key: keep every value
            old = params[key]
            params[key] = [*old, value] if isinstance(old, list) else [old, value]
        else:
            params[key] = value
    return params


# --- talking to the server --------------------------------------------------------------


def _short_reason(exc: BaseException) -> str:
    # The client replaces httpx.ConnectError with a generic ConnectionError; the original
    # (e.g. "[Errno 111] Connection refused") is still on __context__.
    cause = exc.__context__ if isinstance(exc, ConnectionError) and exc.__context__ else exc
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(cause).strip()) or type(cause).__name__
    return text[0].lower() + text[1:]


def _call(client: ollama.Client, url: str, method: str, path: str, **kwargs: Any) -> Any:
    """One request's JSON. Connection trouble -> NetworkError; HTTP errors -> ResponseError."""
    try:
        # Raw on purpose: the client's typed ShowResponse drops system, messages and
        # remote_host, which the migration needs.
        response = client._request_raw(method, path, **kwargs)
    except ollama.ResponseError:
        raise
    except httpx.TimeoutException:
        raise NetworkError(
            f"cannot reach Ollama at {url}: no answer to {path} in time", hint=CONNECT_HINT
        ) from None
    except (ConnectionError, httpx.HTTPError) as exc:
        raise NetworkError(
            f"cannot reach Ollama at {url}: {_short_reason(exc)}", hint=CONNECT_HINT
        ) from None
    try:
        return response.json()
    except ValueError:
        raise NetworkError(
            f"cannot reach Ollama at {url}: {path} did not answer JSON (another server on that port?)",
            hint=CONNECT_HINT,
        ) from None


def _name(text: str) -> ModelName:
    try:
        return parse_model_name(text)
    except UsageError:
        return ModelName(model=text)  # keep it listed; problems say why


def _format(details: dict[str, Any]) -> ModelFormat:
    fmt = str(details.get("format") or "").lower()
    return fmt if fmt in ("gguf", "safetensors") else "unknown"  # type: ignore[return-value]


def _model(client: ollama.Client, url: str, entry: dict[str, Any]) -> OllamaModel:
    raw_name = str(entry.get("name") or entry.get("model") or "")
    model = OllamaModel(
        name=_name(raw_name),
        source="api",
        format="unknown",
        manifest_digest=entry.get("digest") or None,
        size_bytes=int(entry.get("size") or 0),
        api_details=dict(entry.get("details") or {}),
    )

    def problem(text: str, todo: str, *, blocking: bool = True) -> None:
        model.problems.append(f"{model.name.display}: {text}; {todo}")
        model.migratable = model.migratable and not blocking

    try:
        show = _call(client, url, "POST", "/api/show", json={"model": raw_name})
    except ollama.ResponseError as exc:
        problem(f"/api/show failed (HTTP {exc.status_code}: {exc.error})", "check `ollama show`")
        return model
    if not isinstance(show, dict):
        problem("/api/show did not answer a JSON object", "check `ollama show`")
        return model

    model.api_details = dict(show.get("details") or model.api_details)
    model.api_model_info = dict(show.get("model_info") or {})
    model.template = show.get("template") or None
    model.system = show.get("system") or None
    lic = show.get("license")
    model.license = "\n\n".join(lic) if isinstance(lic, list) else (lic or None)
    model.params = parse_parameters(show.get("parameters"))
    model.messages = [m for m in show.get("messages") or [] if isinstance(m, dict)]

    remote = show.get("remote_host") or entry.get("remote_host")
    if remote or show.get("remote_model") or entry.get("remote_model"):
        model.format = "remote"
        model.remote_host = str(remote) if remote else None
        where = f" (runs on {remote})" if remote else ""
        problem(f"cloud model: no local weights{where}", "nothing to migrate; skip it")
        return model
    model.format = _format(model.api_details)
    if model.format == "unknown":
        fmt = model.api_details.get("format")
        problem(f"Ollama reports an unsupported model format {fmt!r}", "nothing to migrate")
    modelfile = str(show.get("modelfile") or "")
    if re.search(r"(?m)^ADAPTER ", modelfile):
        problem(
            "LoRA adapter layer: not merged, vLLM needs --enable-lora",
            "serve it with --enable-lora --lora-modules, or merge it into the weights first",
            blocking=False,
        )
    if show.get("projector_info"):
        problem(
            "vision projector layer: image input is not migrated",
            "only text chat carries over to vLLM",
            blocking=False,
        )
    return model


def scan_api(base_url: str, timeout: float = 10.0) -> list[OllamaModel]:
    """Every model a running Ollama lists, sorted by name; NetworkError if it can't be read."""
    url = normalize_ollama_url(base_url)
    with ollama.Client(host=url, timeout=timeout) as client:
        try:
            tags = _call(client, url, "GET", "/api/tags")
        except ollama.ResponseError as exc:
            raise NetworkError(
                f"cannot reach Ollama at {url}: /api/tags answered HTTP {exc.status_code}",
                hint="is that Ollama's address? set --ollama-url or OLLAMA_HOST",
            ) from None
        entries = tags.get("models") if isinstance(tags, dict) else None
        if not isinstance(entries, list):
            raise NetworkError(
                f"cannot reach Ollama at {url}: /api/tags has no model list",
                hint="is that Ollama's address? set --ollama-url or OLLAMA_HOST",
            )
        models = [_model(client, url, e) for e in entries if isinstance(e, dict)]
    return sorted(models, key=lambda m: (m.name.display.lower(), m.name.display))
