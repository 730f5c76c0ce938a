"""One record per Ollama model, the same whether read from disk or over the API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

# Ollama's layer media types (server/images.go and the registry), mapped to short kinds.
MEDIA_TYPE_KINDS: dict[str, str] = {
    "application/vnd.ollama.image.model": "model",
    "application/vnd.ollama.image.template": "template",
    "application/vnd.ollama.image.prompt": "prompt",  # legacy TEMPLATE
    "application/vnd.ollama.image.system": "system",
    "application/vnd.ollama.image.params": "params",
    "application/vnd.ollama.image.messages": "messages",
    "application/vnd.ollama.image.license": "license",
    "application/vnd.ollama.image.adapter": "adapter",
    "application/vnd.ollama.image.projector": "projector",
    "application/vnd.ollama.image.draft": "draft",
    "application/vnd.ollama.image.embed": "embed",
    "application/vnd.ollama.image.tensor": "tensor",  # safetensors-format models
    "application/vnd.ollama.image.json": "json",  # their config/tokenizer files
}

ModelFormat = Literal["gguf", "safetensors", "remote", "unknown"]


class Layer(BaseModel):
    kind: str  # a value of MEDIA_TYPE_KINDS, or "unknown"
    media_type: str
    digest: str  # "sha256:<hex>"
    size: int
    blob_path: str | None = None  # absolute path on disk; None over the API
    name: str | None = None  # tensor/json layers carry a file name


class ModelName(BaseModel):
    """An Ollama model reference split into its parts."""

    host: str = "registry.ollama.ai"
    namespace: str = "library"
    model: str
    tag: str = "latest"

    @property
    def display(self) -> str:
        """The name users type: `llama3.2:1b`, `me/mine:latest`, `hf.co/org/repo:Q4_K_M`."""
        if self.host == "registry.ollama.ai":
            base = self.model if self.namespace == "library" else f"{self.namespace}/{self.model}"
        else:
            base = f"{self.host}/{self.namespace}/{self.model}"
        return f"{base}:{self.tag}"


class OllamaModel(BaseModel):
    """Everything the store says about one model, before any GGUF is read."""

    name: ModelName
    source: Literal["disk", "api"]
    format: ModelFormat
    manifest_path: str | None = None
    manifest_digest: str | None = None  # sha256 of the manifest bytes
    layers: list[Layer] = Field(default_factory=list)
    size_bytes: int = 0  # sum of layer sizes, config blob included (as Ollama counts it)
    config: dict[str, Any] = Field(default_factory=dict)  # the config blob's JSON (disk only)

    # Decoded small layers.
    template: str | None = None  # Go text/template (TEMPLATE) or legacy prompt
    system: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)  # the params layer's JSON
    messages: list[dict[str, Any]] = Field(default_factory=list)
    license: str | None = None

    # Over the API, Ollama reports some facts directly.
    api_details: dict[str, Any] = Field(default_factory=dict)
    api_model_info: dict[str, Any] = Field(default_factory=dict)  # /api/show model_info (GGUF keys)

    remote_host: str | None = None  # cloud/remote models: where they actually run
    migratable: bool = True
    problems: list[str] = Field(default_factory=list)  # one line each, naming the problem

    @property
    def model_layer(self) -> Layer | None:
        return next((layer for layer in self.layers if layer.kind == "model"), None)

    def layers_of(self, kind: str) -> list[Layer]:
        return [layer for layer in self.layers if layer.kind == kind]
