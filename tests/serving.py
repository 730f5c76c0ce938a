"""Serve a plan's converted model with `migrate serve`'s library function, for one test."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from migrate.serve import ServeRequest, start_servers
from migrate.settings import load_settings


@contextlib.contextmanager
def serve_plan(
    plan: Path, vllm_python: Path, *, eager: bool = True, **options: Any
) -> Iterator[str]:
    """The vLLM URL of the plan's converted model; the server stops on exit. Eager by
    default: no torch.compile warm-up, which takes minutes on a busy CPU."""
    request = ServeRequest(
        plan_path=plan,
        cache_dir=load_settings().cache_dir,
        vllm_python=vllm_python,
        eager=eager,
        **options,
    )
    servers, served = start_servers(request)
    try:
        yield served[0].url
    finally:
        for server in servers:
            server.stop()
