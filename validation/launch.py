"""Start and stop a vLLM OpenAI-compatible server from a migrated model's launch config.

The server runs in its own process group so that stopping it leaves no orphan workers
(vLLM forks an engine core and workers). Output goes to a log file; a start-up failure
raises with the log's last lines.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from converters.errors import MigrateError
from converters.launch_config import launch_command

# vLLM's CPU backend needs a KV-cache size (GiB) and spins OpenMP threads otherwise;
# applied only when the runtime is the CPU build.
CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}


class ServerStartError(MigrateError):
    """vLLM exited or did not become healthy in time."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_taken(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


class ManagedServer:
    """A server process in its own group: start, wait until healthy, stop with no orphans.
    Subclasses set the command line; `with Server(...) as server:` starts and stops it."""

    engine = "server"
    health_path = "/health"

    def __init__(
        self, argv: list[str], *, host: str, port: int, log_path: Path, env: dict[str, str]
    ) -> None:
        self.argv = argv
        self.host = host
        self.port = port
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        if port_taken(self.host, self.port):
            raise ServerStartError(
                f"port {self.port} on {self.host} is taken", hint="pass another --port"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,  # its own process group: stop() reaps every worker
            )

    def wait_ready(self, timeout: float, progress: Callable[[float], None] | None = None) -> float:
        """Seconds from start until the health endpoint answered 200."""
        assert self.process is not None
        start = time.monotonic()
        while True:
            elapsed = time.monotonic() - start
            code = self.process.poll()
            if code is not None:
                raise ServerStartError(
                    f"{self.engine} exited with code {code} while starting: "
                    f"{log_tail(self.log_path)}",
                    hint=f"full log: {self.log_path}",
                )
            if _healthy(self.url + self.health_path):
                self.ready_seconds = round(elapsed, 1)
                return self.ready_seconds
            if elapsed > timeout:
                self.stop()
                raise ServerStartError(
                    f"{self.engine} not healthy after {timeout:.0f} s: {log_tail(self.log_path)}",
                    hint=f"raise --timeout, or read {self.log_path}",
                )
            if progress:
                progress(elapsed)
            time.sleep(0.2)  # polling slack counts as our overhead: keep it small

    def stop(self, grace: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        pgid = os.getpgid(self.process.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)  # workers that outlived the main process

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class VllmServer(ManagedServer):
    """vLLM's OpenAI-compatible server on a migrated folder, from its vllm-config.yaml."""

    engine = "vLLM"

    def __init__(
        self,
        python: Path,
        model_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_path: Path,
        cpu: bool = False,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.config_path = self.model_dir / "vllm-config.yaml"
        port = port or free_port(host)
        argv = launch_command(self.model_dir, self.config_path, python, host, port)
        super().__init__(
            argv + (extra_args or []),
            host=host,
            port=port,
            log_path=log_path,
            env={**os.environ, **(CPU_ENV if cpu else {}), **(env or {})},
        )

    def start(self) -> None:
        if not self.config_path.is_file():
            raise MigrateError(
                f"no launch config at {self.config_path}", hint="run `migrate convert` first"
            )
        super().start()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    useful = [line.strip() for line in text if line.strip()]
    return " | ".join(useful[-lines:])
