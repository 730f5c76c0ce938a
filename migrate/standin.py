"""`migrate serve-gguf`: llama.cpp on the plan's GGUF as a stand-in Ollama endpoint.

For validating or benchmarking where no Ollama server runs (the demo, CI, a store copied
off its server): the GGUF blob Ollama ran, through Ollama's own engine, rendering chat
prompts with the plan's template and serving Ollama's context length, under the model's
Ollama name. The server is recorded like `migrate serve --detach`'s, so
`migrate serve --stop` stops it too.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from converters.errors import NothingToDoError, UsageError
from migrate.plan.schema import ModelPlan, read_plan
from migrate.runtimes import resolve_python
from migrate.serve import ServedModel
from validation.llamacpp import LlamaCppServer, gguf_with_chat_template

Log = Callable[[str], None]


class StandinRequest(BaseModel):
    plan_path: Path
    cache_dir: Path
    model: str | None = None  # default: the plan's first model that has a GGUF on disk
    host: str = "127.0.0.1"
    port: int | None = None
    timeout: float = 300.0
    llamacpp_python: Path | None = None


def pick_model(models: list[ModelPlan], wanted: str | None) -> ModelPlan:
    on_disk = [m for m in models if m.ollama.model_path and m.vllm is not None]
    for model in on_disk:
        if wanted is None or wanted in {model.name, model.slug, *model.ollama.names}:
            return model
    if wanted is not None:
        raise NothingToDoError(f"no model {wanted!r} with a GGUF on disk in the plan")
    raise NothingToDoError(
        "no model in the plan has its GGUF on disk", hint="plan from the store (--models-dir)"
    )


def prepared_gguf(model: ModelPlan, cache_dir: Path) -> Path:
    """The GGUF with the plan's chat template, cached by blob and template."""
    assert model.ollama.model_path is not None and model.vllm is not None
    template = model.vllm.chat_template
    source = Path(model.ollama.model_path)
    if not source.is_file():
        raise UsageError(f"{model.name}: the GGUF {source} is gone", hint="rerun `migrate plan`")
    if template is None:
        return source
    key = hashlib.sha256(f"{model.ollama.model_digest}\n{template}".encode()).hexdigest()[:12]
    target = cache_dir / "standin" / f"{model.slug}-{key}.gguf"
    if not target.is_file():
        gguf_with_chat_template(source, target, template)
    return target


def start_standin(
    request: StandinRequest, log: Log | None = None
) -> tuple[LlamaCppServer, ServedModel]:
    plan = read_plan(request.plan_path)
    model = pick_model(plan.models, request.model)
    assert model.vllm is not None
    python = resolve_python(
        request.cache_dir, ["llamacpp"], request.llamacpp_python, "--llamacpp-python"
    )
    gguf_file = prepared_gguf(model, request.cache_dir)
    alias = model.ollama.names[0]
    server = LlamaCppServer(
        python,
        gguf_file,
        alias=alias,
        log_path=request.cache_dir / "logs" / f"serve-gguf-{model.slug}.log",
        host=request.host,
        port=request.port,
        n_ctx=model.vllm.max_model_len,  # Ollama's num_ctx, as the plan worked it out
    )
    server.start()
    if log:
        log(f"{alias}: starting llama.cpp on {server.url} (log: {server.log_path})")
    try:
        ready = server.wait_ready(request.timeout)
    except BaseException:
        server.stop()
        raise
    assert server.process is not None
    entry = ServedModel(
        name=alias,
        url=server.url,
        served_model_names=[alias],
        pgid=os.getpgid(server.process.pid),
        log=str(server.log_path),
        command=server.argv,
        ready_seconds=ready,
    )
    if log:
        log(f"{alias}: llama.cpp ready in {ready:.1f} s at {server.url}")
    return server, entry
