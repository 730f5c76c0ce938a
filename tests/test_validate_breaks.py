"""`migrate validate` must discriminate: each classic migration break, made for real in a
copy of the correct bf16 folder and served by vLLM, FAILs against llama.cpp on the GGUF.

The correct migration's PASS is in test_validate_parity.py / test_validate_cli.py; the
noised weights and the missing served name are there too. Each break here gets its own
vLLM server (eager, for a quick start) except the shorter context and the lost stop
tokens, which touch different checks and share one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrate.plan.schema import read_plan, write_plan
from migrate.validate import ModelReport, ValidateRequest, run_validation
from tests.serving import serve_plan

pytestmark = pytest.mark.slow

Mutate = Callable[[Path], None]


def broken_plan(converted_plan: Path, root: Path, mutate: Mutate) -> Path:
    """A plan whose converted folder is a copy of the correct one, broken by `mutate`."""
    plan = read_plan(converted_plan)
    (model,) = plan.models
    folder = root / "model"
    shutil.copytree(model.stages["convert"]["path"], folder)
    mutate(folder)
    model.stages["convert"] = {
        **model.stages["convert"],
        "path": str(folder),
        "launch_config": str(folder / "vllm-config.yaml"),
    }
    model.stages.pop("serve", None)
    model.stages.pop("validate", None)
    write_plan(plan, root / "plan.json")
    return root / "plan.json"


def validate_break(
    tmp_path: Path,
    converted_plan: Path,
    vllm_python: Path,
    source: str,
    mutate: Mutate,
    checks: list[str],
    **request: Any,
) -> ModelReport:
    plan = broken_plan(converted_plan, tmp_path, mutate)
    with serve_plan(plan, vllm_python):
        report = run_validation(
            ValidateRequest(
                plan_path=plan,
                source_url=source,
                checks=checks,
                report_dir=tmp_path / "report",
                **request,
            ),
            None,
        )
    (model,) = report.models
    print(f"\n{model.verdict}: {model.reasons}")
    if model.parity is not None:
        print(f"  {model.parity.summary()}")
    return model


def _edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data, indent=2))


def _edit_yaml(path: Path, **changes: Any) -> None:
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_wrong_chat_template_fails(
    tmp_path: Path, converted_plan: Path, vllm_python: Path, llamacpp_smollm2: str
) -> None:
    """The common mistake: serving the model's own (GGUF / HF) template instead of the
    Modelfile TEMPLATE Ollama rendered. For SmolLM2 they differ in how the system turn
    ends, so every conversation with a system prompt renders differently."""
    (model,) = read_plan(converted_plan).models
    assert model.gguf is not None and model.gguf.chat_template
    gguf_template = model.gguf.chat_template
    assert (
        gguf_template != (Path(model.stages["convert"]["path"]) / "chat_template.jinja").read_text()
    )

    def mutate(folder: Path) -> None:
        (folder / "chat_template.jinja").write_text(gguf_template)

    report = validate_break(
        tmp_path, converted_plan, vllm_python, llamacpp_smollm2, mutate, ["rendering"]
    )
    assert report.verdict == "FAIL", report.reasons
    assert report.reasons[0].startswith("rendering"), report.reasons
    assert "differ" in report.reasons[0]


def test_wrong_bos_fails(
    tmp_path: Path, converted_plan: Path, vllm_python: Path, llamacpp_smollm2: str
) -> None:
    """A tokenizer that adds a BOS the GGUF does not (add_bos_token false): chat prompts
    are tokenized without special tokens so they hide it; text completions show it."""

    def mutate(folder: Path) -> None:
        bos = {"SpecialToken": {"id": "<|im_start|>", "type_id": 0}}
        tokenizer = json.loads((folder / "tokenizer.json").read_text())
        tokenizer["post_processor"] = {
            "type": "TemplateProcessing",
            "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<|im_start|>": {"id": "<|im_start|>", "ids": [1], "tokens": ["<|im_start|>"]}},
        }  # fmt: skip
        (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
        _edit_json(folder / "tokenizer_config.json", add_bos_token=True)

    report = validate_break(
        tmp_path, converted_plan, vllm_python, llamacpp_smollm2, mutate, ["rendering"]
    )
    assert report.verdict == "FAIL", report.reasons
    (reason,) = report.reasons
    assert reason.startswith("rendering: text_prompt: prompt_tokens differ"), reason
    rows = report.checks[0].data["conversations"]
    text = rows["text_prompt"]
    assert text["target_prompt_tokens"] == text["source_prompt_tokens"] + 1


def test_wrong_rope_theta_fails(
    tmp_path: Path, converted_plan: Path, vllm_python: Path, llamacpp_smollm2: str
) -> None:
    """rope_theta 10000 instead of SmolLM2's 100000: every request still works and the
    text stays fluent; only the output parity sees it (through the KL)."""

    def mutate(folder: Path) -> None:
        _edit_json(folder / "config.json", rope_theta=10000.0)

    report = validate_break(
        tmp_path, converted_plan, vllm_python, llamacpp_smollm2, mutate, ["parity"],
        max_prompts=12, max_tokens=32,
    )  # fmt: skip
    assert report.verdict == "FAIL", report.reasons
    assert any(r.startswith("parity:") for r in report.reasons), report.reasons
    parity = report.parity
    assert parity is not None and parity.target_errors == 0
    assert parity.mean_kl is not None and parity.mean_kl > 0.06  # the bf16 FAIL line


@pytest.fixture(scope="module")
def short_context_lost_stops(
    tmp_path_factory: pytest.TempPathFactory,
    converted_plan: Path,
    vllm_python: Path,
    llamacpp_smollm2: str,
) -> ModelReport:
    """Two breaks in one server (they touch different checks): max-model-len 1024 where
    Ollama gave 2048, and only <|endoftext|> as the end token, so vLLM no longer stops at
    <|im_end|> (the Modelfile's stop token)."""

    def mutate(folder: Path) -> None:
        _edit_yaml(folder / "vllm-config.yaml", **{"max-model-len": 1024})
        _edit_json(folder / "config.json", eos_token_id=0)
        _edit_json(folder / "generation_config.json", eos_token_id=0)
        _edit_json(folder / "tokenizer_config.json", eos_token="<|endoftext|>")

    return validate_break(
        tmp_path_factory.mktemp("short-context"), converted_plan, vllm_python, llamacpp_smollm2,
        mutate, ["context_length", "long_prompt", "stop_tokens"],
    )  # fmt: skip


def _check(report: ModelReport, name: str) -> Any:
    return next(c for c in report.checks if c.name == name)


def test_shorter_context_fails(short_context_lost_stops: ModelReport) -> None:
    report = short_context_lost_stops
    assert report.verdict == "FAIL"
    context = _check(report, "context_length")
    assert context.status == "fail", context.detail
    assert "1024" in context.detail and "2048" in context.detail


def test_lost_stop_tokens_fail(short_context_lost_stops: ModelReport) -> None:
    stops = _check(short_context_lost_stops, "stop_tokens")
    assert stops.status == "fail", stops.detail
    assert "<|im_end|>" in stops.detail
