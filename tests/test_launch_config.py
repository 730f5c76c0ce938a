"""Tests for converters.launch_config: the YAML content, and that vLLM's own parser takes it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from converters.launch_config import (
    CHAT_TEMPLATE_NAME,
    CONFIG_NAME,
    SERVER_MODULE,
    LaunchSettings,
    launch_command,
    write_launch_config,
)

TEMPLATE = (
    "{%- for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)


def _settings(**overrides: object) -> LaunchSettings:
    values: dict[str, object] = {
        "served_model_names": ["smollm2:135m", "smollm2"],
        "max_model_len": 2048,
        "dtype": "bfloat16",
        "generation_overrides": {"temperature": 0.8, "top_k": 40, "repetition_penalty": 1.0},
        "chat_template": TEMPLATE,
        "tool_call_parser": "hermes",
        "reasoning_parser": None,
    }
    values.update(overrides)
    return LaunchSettings.model_validate(values)


def test_yaml_content(tmp_path: Path) -> None:
    path = write_launch_config(tmp_path, _settings(extra={"enforce_eager": True}))
    assert path == tmp_path / CONFIG_NAME
    config = yaml.safe_load(path.read_text())
    assert config == {
        "model": str(tmp_path.absolute()),
        "served-model-name": ["smollm2:135m", "smollm2"],
        "max-model-len": 2048,
        "dtype": "bfloat16",
        "generation-config": "vllm",
        "override-generation-config": {"temperature": 0.8, "top_k": 40, "repetition_penalty": 1.0},
        "chat-template": str(tmp_path.absolute() / CHAT_TEMPLATE_NAME),
        "enable-auto-tool-choice": True,
        "tool-call-parser": "hermes",
        "enforce-eager": True,
        "host": "127.0.0.1",
    }
    assert (tmp_path / CHAT_TEMPLATE_NAME).read_text() == TEMPLATE
    assert "trust-remote-code" not in path.read_text()


def test_minimal_settings_omit_optional_keys(tmp_path: Path) -> None:
    settings = LaunchSettings(served_model_names=["m"])
    config = yaml.safe_load(write_launch_config(tmp_path, settings).read_text())
    assert set(config) == {"model", "served-model-name", "dtype", "generation-config", "host"}
    assert not (tmp_path / CHAT_TEMPLATE_NAME).exists()


def test_reasoning_parser_and_quantization(tmp_path: Path) -> None:
    settings = _settings(tool_call_parser=None, reasoning_parser="deepseek_r1", quantization="fp8")
    config = yaml.safe_load(write_launch_config(tmp_path, settings).read_text())
    assert config["reasoning-parser"] == "deepseek_r1"
    assert config["quantization"] == "fp8"
    assert "enable-auto-tool-choice" not in config and "tool-call-parser" not in config


def test_final_dir_used_for_paths_inside_staging(tmp_path: Path) -> None:
    staging, final = tmp_path / ".m.partial-x", tmp_path / "m"
    staging.mkdir()
    config = yaml.safe_load(write_launch_config(staging, _settings(), final_dir=final).read_text())
    assert config["model"] == str(final) and config["chat-template"] == str(
        final / CHAT_TEMPLATE_NAME
    )
    assert (staging / CHAT_TEMPLATE_NAME).is_file()


@pytest.mark.parametrize(
    "bad",
    [
        {"served_model_names": []},
        {"served_model_names": ["--port"]},
        {"generation_overrides": {"stop": ["<|im_end|>"]}},  # vLLM would ignore it silently
        {"extra": {"trust_remote_code": True}},
        {"extra": {"--trust-remote-code": False}},
        {"extra": {"served_model_name": "x"}},
        {"max_model_len": 0},
        {"unknown_field": 1},
    ],
)
def test_invalid_settings_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _settings(**bad)


def test_launch_command(tmp_path: Path) -> None:
    config = write_launch_config(tmp_path, _settings())
    argv = launch_command(tmp_path, config, "/rt/bin/python", "127.0.0.1", 8123)
    assert argv == [
        "/rt/bin/python",
        "-m",
        SERVER_MODULE,
        "--config",
        str(config),
        "--port",
        "8123",
    ]
    other = launch_command(tmp_path, config, "/rt/bin/python", "0.0.0.0", 8123)
    assert other[-4:] == ["--host", "0.0.0.0", "--port", "8123"]


def test_launch_command_after_folder_moved(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    write_launch_config(old, _settings())
    old.rename(new)
    argv = launch_command(new, new / CONFIG_NAME, "python", "127.0.0.1", 8000)
    assert argv[argv.index("--model") + 1] == str(new)
    assert argv[argv.index("--chat-template") + 1] == str(new / CHAT_TEMPLATE_NAME)


# vLLM's own parser, built as its OpenAI server builds it, without starting anything.
# The module holding make_arg_parser moved between vLLM releases: try both.
_PARSE_WITH_VLLM = """
import json, sys
from vllm.utils.argparse_utils import FlexibleArgumentParser
try:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
except ImportError:
    from vllm.entrypoints.openai.cli_args import make_arg_parser, validate_parsed_serve_args
parser = make_arg_parser(FlexibleArgumentParser())
args = parser.parse_args(sys.argv[1:])
validate_parsed_serve_args(args)
keys = ["model", "served_model_name", "max_model_len", "dtype", "generation_config",
        "override_generation_config", "chat_template", "enable_auto_tool_choice",
        "tool_call_parser", "reasoning_parser", "quantization", "host", "port",
        "trust_remote_code", "enforce_eager"]
print(json.dumps({k: getattr(args, k) for k in keys}, default=str))
"""


@pytest.mark.slow
def test_vllm_parser_accepts_config(vllm_python: Path, tmp_path: Path) -> None:
    odd_names = ["smollm2:135m", "yes", "1.5", "null", "a: b", "#hash"]  # YAML-ambiguous
    settings = _settings(
        served_model_names=odd_names,
        reasoning_parser="deepseek_r1",
        extra={"enforce_eager": True},
    )
    config = write_launch_config(tmp_path, settings)
    argv = launch_command(tmp_path, config, vllm_python, "127.0.0.1", 8123)
    assert argv[1:3] == ["-m", SERVER_MODULE]
    run = subprocess.run(
        [str(vllm_python), "-c", _PARSE_WITH_VLLM, *argv[3:]],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    parsed = json.loads(run.stdout.strip().splitlines()[-1])
    assert parsed == {
        "model": str(tmp_path.absolute()),
        "served_model_name": odd_names,
        "max_model_len": 2048,
        "dtype": "bfloat16",
        "generation_config": "vllm",
        "override_generation_config": {"temperature": 0.8, "top_k": 40, "repetition_penalty": 1.0},
        "chat_template": str(tmp_path.absolute() / CHAT_TEMPLATE_NAME),
        "enable_auto_tool_choice": True,
        "tool_call_parser": "hermes",
        "reasoning_parser": "deepseek_r1",
        "quantization": None,
        "host": "127.0.0.1",
        "port": 8123,
        "trust_remote_code": False,
        "enforce_eager": True,
    }


def test_module_does_not_import_cli_layers() -> None:
    code = (
        "import sys, converters.launch_config, converters.output, converters.hf_fetch;"
        "bad = [m for m in ('migrate', 'typer', 'rich') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parent.parent
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=root
    )
    assert run.returncode == 0, run.stdout + run.stderr
