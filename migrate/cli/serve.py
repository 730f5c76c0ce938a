"""`migrate serve`: boot vLLM for each converted model, answering under the Ollama names."""

from __future__ import annotations

import shlex
import signal
import time
from typing import Annotated

import typer

from converters.errors import MigrateError
from migrate.cli.errors import run_mapped
from migrate.cli.options import JsonOption, PlanOption, VllmPythonOption
from migrate.cli.output import print_data, print_json, stderr
from migrate.serve import ServeRequest, dry_run, record_detached, start_servers, stop_detached
from migrate.settings import load_settings


def serve_command(
    plan: PlanOption = None,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Serve only these models (repeatable).")
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; 127.0.0.1 unless you mean otherwise.")
    ] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option("--port", help="First port (default: free ports).")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for each server's /health.")
    ] = 600.0,
    vllm_python: VllmPythonOption = None,
    eager: Annotated[
        bool,
        typer.Option(
            "--eager",
            help="Pass --enforce-eager: no compile warm-up, faster start, slower serving.",
        ),
    ] = False,
    emulate: Annotated[
        bool,
        typer.Option(
            "--emulate",
            help="Serve schemes without kernels here (NVFP4 off Blackwell) as their bf16 emulation.",
        ),
    ] = False,
    detach: Annotated[
        bool, typer.Option("--detach", help="Leave the servers running; stop them with --stop.")
    ] = False,
    stop: Annotated[
        bool, typer.Option("--stop", help="Stop the servers a detached serve started.")
    ] = False,
    dry_run_: Annotated[
        bool, typer.Option("--dry-run", help="Print the exact commands; start nothing.")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Start vLLM for every converted model; Ctrl-C stops them all."""

    def body() -> None:
        settings = load_settings(plan_path=plan, vllm_python=vllm_python)
        if stop:
            stopped = stop_detached(settings.cache_dir)
            for entry in stopped:
                stderr.print(f"stopped {entry.name} at {entry.url}", markup=False)
            if json_out:
                print_json([s.model_dump() for s in stopped])
            if not stopped:
                stderr.print("no detached servers were running")
            return
        request = ServeRequest(
            plan_path=settings.plan_path,
            cache_dir=settings.cache_dir,
            only=only or [],
            host=host,
            port=port,
            timeout=timeout,
            vllm_python=settings.vllm_python,
            eager=eager,
            emulate=emulate,
            llmcompressor_python=settings.llmcompressor_python,
        )
        if dry_run_:
            for argv in dry_run(request):
                print_data(shlex.join(argv))
            return
        servers, served = start_servers(request, log=lambda line: stderr.print(line, markup=False))
        if json_out:
            print_json([s.model_dump() for s in served])
        else:
            for entry in served:
                print_data(f"{entry.url}/v1  {', '.join(entry.served_model_names)}")
        if detach:
            record_detached(settings.cache_dir, served)
            stderr.print("servers left running: `migrate serve --stop` stops them")
            return
        signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the servers like Ctrl-C
        stderr.print("serving; Ctrl-C stops every server")
        try:
            while True:
                for server, entry in zip(servers, served, strict=True):
                    if server.process is not None and server.process.poll() is not None:
                        raise MigrateError(
                            f"vLLM for {entry.name} exited", hint=f"log: {entry.log}"
                        )
                time.sleep(1)
        finally:
            for server in servers:
                server.stop()

    run_mapped(body)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
