"""`migrate plan` end to end on real Ollama stores, as a library and as a command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from converters.gguf.header import gguf_info_from_kv
from migrate.ollama.demo import build_demo_store, write_model
from migrate.plan.build import PlanRequest, build_plan, unique_slug
from migrate.plan.schema import dump_plan, read_plan
from migrate.targets.choose import hardware_from_spec
from migrate.targets.gpus import lookup_gpu
from tests.cli import run_cli


def request(store: Path, gpu: str = "cpu", **kw: object) -> PlanRequest:
    hardware = hardware_from_spec(lookup_gpu(gpu), detected=False, vram_gib=None)
    return PlanRequest(models_dir=store, hardware=hardware, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Path:
    store = tmp_path_factory.mktemp("ollama") / "models"
    build_demo_store(store, smollm2_gguf)
    return store


def test_demo_plan_reproduces_ollama(demo_store: Path) -> None:
    plan = build_plan(request(demo_store))
    (model,) = plan.models
    assert model.status == "ready" and model.problems == []
    assert model.name == "smollm2:135m" and model.slug == "smollm2-135m"
    assert model.hf is not None
    assert (model.hf.repo, model.hf.confidence) == ("HuggingFaceTB/SmolLM2-135M-Instruct", "high")
    assert model.gguf is not None and model.gguf.architecture == "llama"
    assert model.target is not None and model.target.scheme == "bf16"
    vllm = model.vllm
    assert vllm is not None
    assert vllm.served_model_names == ["smollm2:135m"]
    assert (vllm.max_model_len, vllm.max_model_len_reason) == (
        2048,
        "num_ctx 2048 from the Modelfile",
    )
    # The Modelfile's params, Ollama's defaults for the rest.
    assert vllm.generation_config == {
        "temperature": 0.2,
        "top_k": 40,
        "top_p": 0.9,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
    }
    # Both stop strings are special tokens of SmolLM2's vocabulary: server-side stops.
    assert vllm.stop_token_ids == [1, 2]
    # Ollama's smollm2 TEMPLATE renders the system turn without <|im_end|>: clients saw that.
    assert vllm.chat_template_source == "ollama+system"
    assert any("renders differently" in w for w in vllm.warnings)


def test_gguf_template_on_request(demo_store: Path) -> None:
    (model,) = build_plan(request(demo_store, chat_template="gguf")).models
    assert model.vllm is not None and model.vllm.chat_template_source == "gguf+system"


def test_plan_is_deterministic_and_round_trips(demo_store: Path, tmp_path: Path) -> None:
    first = dump_plan(build_plan(request(demo_store)))
    assert first == dump_plan(build_plan(request(demo_store)))
    path = tmp_path / "plan.json"
    path.write_text(first)
    assert dump_plan(read_plan(path)) == first


def test_tags_of_one_model_become_one_entry(tmp_path: Path, smollm2_gguf: Path) -> None:
    for name in ("assistant:latest", "assistant:v1"):
        write_model(tmp_path, name, gguf=smollm2_gguf, params={"stop": ["<|im_end|>"]})
    write_model(tmp_path, "assistant:cold", gguf=smollm2_gguf, params={"temperature": 0.0})
    plan = build_plan(request(tmp_path))
    assert [m.name for m in plan.models] == ["assistant:cold", "assistant:latest"]
    merged = plan.models[1]
    assert merged.ollama.names == ["assistant:latest", "assistant:v1"]
    assert merged.vllm is not None
    assert merged.vllm.served_model_names == ["assistant:latest", "assistant", "assistant:v1"]
    # A user namespace-free name with no catalog entry: found from the GGUF's identity.
    assert merged.hf is not None and merged.hf.repo == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert merged.hf.confidence == "medium"
    assert plan.find("assistant") is merged


def test_bad_models_do_not_stop_the_inventory(tmp_path: Path, smollm2_gguf: Path) -> None:
    write_model(tmp_path, "good:1", gguf=smollm2_gguf)
    data = smollm2_gguf.read_bytes()
    write_model(tmp_path, "cut:1", model_bytes=data[:5000])  # header cut mid-way
    write_model(tmp_path, "v1:1", model_bytes=b"GGUF\x01\x00\x00\x00" + bytes(64))
    plan = build_plan(request(tmp_path))
    status = {m.name: m.status for m in plan.models}
    assert status == {"cut:1": "blocked", "good:1": "ready", "v1:1": "blocked"}
    cut = plan.find("cut:1")
    assert cut is not None and cut.problems[0].startswith("cut:1: ")
    assert "truncated" in cut.problems[0]
    v1 = plan.find("v1:1")
    assert v1 is not None and "version 1" in v1.problems[0]


def test_context_defaults_and_caps(tmp_path: Path, smollm2_gguf: Path) -> None:
    write_model(tmp_path, "plain:1", gguf=smollm2_gguf)
    write_model(tmp_path, "huge:1", gguf=smollm2_gguf, params={"num_ctx": 131072})
    plan = build_plan(request(tmp_path))
    plain, huge = plan.find("plain:1"), plan.find("huge:1")
    assert (
        plain is not None and plain.vllm is not None and huge is not None and huge.vllm is not None
    )
    assert plain.vllm.max_model_len == 4096 and "default" in plain.vllm.max_model_len_reason
    assert huge.vllm.max_model_len == 8192 and "capped" in huge.vllm.max_model_len_reason


def test_non_token_stop_strings_are_flagged(tmp_path: Path, smollm2_gguf: Path) -> None:
    write_model(
        tmp_path,
        "stops:1",
        gguf=smollm2_gguf,
        params={"stop": ["<|im_end|>", "User:"], "mirostat": 2},
    )
    (model,) = build_plan(request(tmp_path)).models
    assert model.vllm is not None
    assert model.vllm.stop_token_ids == [2]
    warnings = " | ".join(model.vllm.warnings)
    assert "stop string 'User:' is not a single special token" in warnings
    assert "mirostat=2 has no vLLM server-side default" in warnings


def test_forced_w4a16_needs_group_size_64(demo_store: Path) -> None:
    (model,) = build_plan(request(demo_store, scheme="gptq-w4a16")).models
    assert model.target is not None and model.target.group_size == 64
    assert model.target.group_size_note is not None and "576" in model.target.group_size_note


def test_api_model_info_gives_gguf_info() -> None:
    info = gguf_info_from_kv(
        {
            "general.architecture": "llama",
            "general.parameter_count": 134515008,
            "llama.context_length": 8192,
            "llama.embedding_length": 576,
            "llama.attention.head_count": 9,
            "llama.attention.head_count_kv": 3,
            "llama.block_count": 30,
            "tokenizer.ggml.tokens": None,
        }
    )
    assert info.parameter_count == 134515008 and info.head_dim == 64
    assert info.tokenizer_fingerprint is None


def test_slugs_are_safe_and_unique() -> None:
    taken: set[str] = set()
    assert unique_slug("hf.co/org/Repo:Q4_K_M", taken) == "hf.co-org-repo-q4_k_m"
    assert unique_slug("../../etc/passwd", taken) == "etc-passwd"
    again = unique_slug("../../etc/passwd", taken)
    assert again.startswith("etc-passwd-") and again != "etc-passwd"
    assert unique_slug("..", taken) == "model"


# --- the command ------------------------------------------------------------------


def test_cli_plan_writes_file_and_json(demo_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    done = run_cli(
        "plan", "--models-dir", str(demo_store), "--gpu", "cpu", "--out", str(out), "--json"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == json.loads(out.read_text())
    assert json.loads(done.stdout)["models"][0]["target"]["scheme"] == "bf16"


def test_cli_reads_ollama_models_env(demo_store: Path, tmp_path: Path) -> None:
    done = run_cli(
        "plan",
        "--gpu",
        "h100",
        "--out",
        str(tmp_path / "p.json"),
        env={"OLLAMA_MODELS": str(demo_store)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "p.json")
    assert "smollm2:135m" in done.stderr and "HuggingFaceTB/SmolLM2-135M-Instruct" in done.stderr


def test_cli_over_the_api(ollama_api: str, tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    done = run_cli("plan", "--gpu", "l4", "--out", str(out), env={"OLLAMA_HOST": ollama_api})
    assert done.returncode == 0, done.stderr
    plan = read_plan(out)
    assert plan.source.kind == "api"
    smol = plan.find("smollm2:135m")
    assert smol is not None and smol.status == "ready" and smol.gguf is not None
    assert smol.gguf.parameter_count == 134515008
    cloud = plan.find("gpt-oss:120b-cloud")
    assert cloud is not None and cloud.status == "blocked"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--models-dir", "/nonexistent/models"], 1, "no Ollama store at /nonexistent/models"),
        (["--gpu", "tpu"], 2, "unknown GPU 'tpu'"),
        (["--scheme", "int3"], 2, "unknown scheme 'int3'"),
        (["--map", "smollm2:135m"], 2, "--map"),
        (["--chat-template", "mine"], 2, "--chat-template"),
        (["--ollama-url", "127.0.0.1:9"], 4, "cannot reach Ollama at http://127.0.0.1:9"),
    ],
)
def test_cli_bad_input_is_one_line(
    demo_store: Path, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    base = (
        []
        if "--models-dir" in args or "--ollama-url" in args
        else ["--models-dir", str(demo_store)]
    )
    out = tmp_path / "plan.json"
    done = run_cli("plan", *base, *args, "--out", str(out))
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_cli_nothing_usable_exits_1_with_plan(tmp_path: Path) -> None:
    store = tmp_path / "models"
    write_model(store, "cut:1", model_bytes=b"GGUF\x03\x00\x00\x00" + bytes(10))
    out = tmp_path / "plan.json"
    done = run_cli("plan", "--models-dir", str(store), "--out", str(out))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: no model can be migrated")
    assert read_plan(out).models[0].status == "blocked"


def test_cli_empty_store(tmp_path: Path) -> None:
    (tmp_path / "models" / "manifests").mkdir(parents=True)
    done = run_cli(
        "plan", "--models-dir", str(tmp_path / "models"), "--out", str(tmp_path / "p.json")
    )
    assert done.returncode == 1 and done.stderr.startswith("error: ")
    assert len(done.stderr.strip().splitlines()) == 1


def test_debug_shows_traceback(tmp_path: Path) -> None:
    done = run_cli("plan", "--models-dir", str(tmp_path / "none"), env={"MIGRATE_DEBUG": "1"})
    assert done.returncode == 1 and "Traceback" in done.stderr
