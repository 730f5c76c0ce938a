"""Every setting the toolkit reads, in one place.

Order: command-line flags (passed in by the CLI), then `MIGRATE_*` variables, then the
ecosystem's own (`OLLAMA_MODELS`, `OLLAMA_HOST`, `OLLAMA_CONTEXT_LENGTH`, `HF_TOKEN`,
`HF_HOME`), then defaults. Secrets are `SecretStr` so they never print by accident.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MIGRATE_", extra="ignore", populate_by_name=True)

    models_dir: Path | None = Field(
        default=None, validation_alias=AliasChoices("MIGRATE_MODELS_DIR", "OLLAMA_MODELS")
    )
    ollama_url: str | None = Field(
        default=None, validation_alias=AliasChoices("MIGRATE_OLLAMA_URL", "OLLAMA_HOST")
    )
    ollama_num_ctx: int | None = Field(
        default=None,
        validation_alias=AliasChoices("MIGRATE_OLLAMA_NUM_CTX", "OLLAMA_CONTEXT_LENGTH"),
    )
    ollama_repeat_penalty: float | None = None
    plan_path: Path = Field(default=Path("migration-plan.json"), validation_alias="MIGRATE_PLAN")
    out_dir: Path = Field(default=Path("migrated-models"), validation_alias="MIGRATE_OUT_DIR")
    hf_offline: bool = Field(default=False, validation_alias="HF_HUB_OFFLINE")
    vllm_python: Path | None = None  # MIGRATE_VLLM_PYTHON: an existing vLLM environment
    llmcompressor_python: Path | None = None  # MIGRATE_LLMCOMPRESSOR_PYTHON
    llamacpp_python: Path | None = None  # MIGRATE_LLAMACPP_PYTHON: llama-cpp-python[server]
    cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "ollama-vllm-migrate",
        validation_alias="MIGRATE_CACHE_DIR",
    )
    hf_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("MIGRATE_HF_TOKEN", "HF_TOKEN")
    )
    hf_home: Path | None = Field(default=None, validation_alias="HF_HOME")
    debug: bool = Field(default=False, validation_alias="MIGRATE_DEBUG")


def load_settings(**flags: object) -> Settings:
    """Settings from the environment, with flags that were given (not None) on top."""
    settings = Settings()
    given = {key: value for key, value in flags.items() if value is not None}
    return settings.model_copy(update=given) if given else settings
