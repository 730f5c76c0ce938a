"""Mapping Ollama models to HF originals: the catalog, each step of the chain, overrides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from converters.errors import MappingError
from converters.gguf.info import GGUFInfo
from converters.schemes import SCHEMES
from migrate.mapping.catalog import Catalog, load_catalog, parse_catalog, valid_repo_id
from migrate.mapping.resolve import NO_ORIGINAL, parse_overrides, resolve_hf
from migrate.ollama.records import ModelName, OllamaModel

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_IDENTITY = {
    "general.architecture": "llama",
    "general.type": "model",
    "general.name": "Smollm2 135M 8k Lc100K Mix1 Ep2",
    "general.organization": "HuggingFaceTB",
    "general.finetune": "8k-lc100k-mix1-ep2",
    "general.basename": "smollm2",
    "general.size_label": "135M",
    "general.license": "apache-2.0",
}
SMOLLM2_FINGERPRINT = "sha256:e3f79317b457a91937391f6e0ee99d97ba2a3adae02bc26db8f59710ddb27ffe"
CHATML = "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'}}"
LLAMA3_TEMPLATE = "<|start_header_id|>{{ role }}<|end_header_id|>\n\n{{ content }}<|eot_id|>"

# vLLM's registered parser names (tool_parsers / reasoning): a typo here breaks serving.
VLLM_TOOL_PARSERS = {
    "llama3_json",
    "hermes",
    "mistral",
    "granite",
    "phi4_mini_json",
    "qwen3_coder",
    "openai",
    "pythonic",
}
VLLM_REASONING_PARSERS = {"qwen3", "deepseek_r1", "granite", "openai_gptoss"}


def model(display: str, **extra: Any) -> OllamaModel:
    """An OllamaModel from a name as users type it: "llama3.2:3b", "me/x:latest", "hf.co/o/r:Q4"."""
    base, _, tag = display.rpartition(":") if ":" in display else (display, "", "latest")
    parts = base.split("/")
    if len(parts) == 3:
        name = ModelName(host=parts[0], namespace=parts[1], model=parts[2], tag=tag)
    elif len(parts) == 2:
        name = ModelName(namespace=parts[0], model=parts[1], tag=tag)
    else:
        name = ModelName(model=parts[0], tag=tag)
    return OllamaModel(name=name, source="disk", format="gguf", **extra)


def gguf(architecture: str = "llama", params: float = 0.1345e9, **extra: Any) -> GGUFInfo:
    return GGUFInfo(
        version=3, architecture=architecture, parameter_count=int(params), tensor_count=1, **extra
    )


def smollm2_gguf_info(**extra: Any) -> GGUFInfo:
    """The SmolLM2 test file's header, as FIELD-NOTES and the real file report it."""
    fields: dict[str, Any] = {
        "identity": dict(SMOLLM2_IDENTITY),
        "chat_template": CHATML,
        "tokenizer_fingerprint": SMOLLM2_FINGERPRINT,
    }
    fields.update(extra)
    return gguf("llama", 134_515_008, **fields)


# --- catalog ------------------------------------------------------------------


def test_catalog_is_big_enough() -> None:
    assert len(load_catalog().models) >= 40


def test_catalog_ollama_names_are_unique_and_tagged() -> None:
    names = [name.lower() for entry in load_catalog().models for name in entry.ollama]
    assert len(names) == len(set(names))
    assert all(":" in name for name in names)


def test_catalog_families_exist() -> None:
    catalog = load_catalog()
    assert {entry.family for entry in catalog.models} <= set(catalog.families)
    assert set(catalog.tokenizer_fingerprints.values()) <= set(catalog.families)


def test_catalog_prequantized_schemes_are_valid() -> None:
    for entry in load_catalog().models:
        assert set(entry.prequantized) <= set(SCHEMES), entry.hf


def test_catalog_repo_ids_are_well_formed() -> None:
    for entry in load_catalog().models:
        for repo in (entry.hf, *entry.hf_aliases, *entry.prequantized.values()):
            assert valid_repo_id(repo), repo
        assert entry.parameters_b and entry.architecture, entry.hf


def test_catalog_parsers_are_vllm_names() -> None:
    for name, family in load_catalog().families.items():
        assert family.tool_call_parser in VLLM_TOOL_PARSERS | {None}, name
        assert family.reasoning_parser in VLLM_REASONING_PARSERS | {None}, name


def test_catalog_is_loaded_once() -> None:
    assert load_catalog() is load_catalog()


@pytest.mark.parametrize(
    ("name", "repo"),
    [
        ("llama3.2:1b", "meta-llama/Llama-3.2-1B-Instruct"),
        ("llama3.2:3b", "meta-llama/Llama-3.2-3B-Instruct"),
        ("llama3.2:latest", "meta-llama/Llama-3.2-3B-Instruct"),
        ("llama3.1:8b", "meta-llama/Llama-3.1-8B-Instruct"),
        ("llama3.1:70b", "meta-llama/Llama-3.1-70B-Instruct"),
        ("llama3:8b", "meta-llama/Meta-Llama-3-8B-Instruct"),
        ("llama3.3:70b", "meta-llama/Llama-3.3-70B-Instruct"),
        ("qwen2.5:0.5b", "Qwen/Qwen2.5-0.5B-Instruct"),
        ("qwen2.5:1.5b", "Qwen/Qwen2.5-1.5B-Instruct"),
        ("qwen2.5:3b", "Qwen/Qwen2.5-3B-Instruct"),
        ("qwen2.5:7b", "Qwen/Qwen2.5-7B-Instruct"),
        ("qwen2.5:14b", "Qwen/Qwen2.5-14B-Instruct"),
        ("qwen2.5:32b", "Qwen/Qwen2.5-32B-Instruct"),
        ("qwen2.5:72b", "Qwen/Qwen2.5-72B-Instruct"),
        ("qwen2.5-coder:1.5b", "Qwen/Qwen2.5-Coder-1.5B-Instruct"),
        ("qwen2.5-coder:7b", "Qwen/Qwen2.5-Coder-7B-Instruct"),
        ("qwen2.5-coder:14b", "Qwen/Qwen2.5-Coder-14B-Instruct"),
        ("qwen2.5-coder:32b", "Qwen/Qwen2.5-Coder-32B-Instruct"),
        ("qwen3:0.6b", "Qwen/Qwen3-0.6B"),
        ("qwen3:1.7b", "Qwen/Qwen3-1.7B"),
        ("qwen3:4b", "Qwen/Qwen3-4B"),
        ("qwen3:8b", "Qwen/Qwen3-8B"),
        ("qwen3:14b", "Qwen/Qwen3-14B"),
        ("qwen3:32b", "Qwen/Qwen3-32B"),
        ("qwen3:30b-a3b", "Qwen/Qwen3-30B-A3B"),
        ("mistral:7b", "mistralai/Mistral-7B-Instruct-v0.3"),
        ("mistral:latest", "mistralai/Mistral-7B-Instruct-v0.3"),
        ("mistral-nemo:12b", "mistralai/Mistral-Nemo-Instruct-2407"),
        ("mistral-small:24b", "mistralai/Mistral-Small-24B-Instruct-2501"),
        ("mixtral:8x7b", "mistralai/Mixtral-8x7B-Instruct-v0.1"),
        ("gemma2:2b", "google/gemma-2-2b-it"),
        ("gemma2:9b", "google/gemma-2-9b-it"),
        ("gemma2:27b", "google/gemma-2-27b-it"),
        ("gemma3:1b", "google/gemma-3-1b-it"),
        ("gemma3:4b", "google/gemma-3-4b-it"),
        ("gemma3:12b", "google/gemma-3-12b-it"),
        ("gemma3:27b", "google/gemma-3-27b-it"),
        ("phi3:mini", "microsoft/Phi-3-mini-4k-instruct"),
        ("phi3:medium", "microsoft/Phi-3-medium-4k-instruct"),
        ("phi3.5:latest", "microsoft/Phi-3.5-mini-instruct"),
        ("phi4:14b", "microsoft/phi-4"),
        ("phi4-mini:latest", "microsoft/Phi-4-mini-instruct"),
        ("smollm2:135m", SMOLLM2),
        ("smollm2:360m", "HuggingFaceTB/SmolLM2-360M-Instruct"),
        ("smollm2:1.7b", "HuggingFaceTB/SmolLM2-1.7B-Instruct"),
        ("deepseek-r1:1.5b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"),
        ("deepseek-r1:7b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"),
        ("deepseek-r1:8b-llama-distill", "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"),
        ("deepseek-r1:14b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"),
        ("deepseek-r1:32b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"),
        ("deepseek-r1:70b", "deepseek-ai/DeepSeek-R1-Distill-Llama-70B"),
        ("granite3.1-dense:2b", "ibm-granite/granite-3.1-2b-instruct"),
        ("granite3.1-dense:8b", "ibm-granite/granite-3.1-8b-instruct"),
        ("granite3.3:2b", "ibm-granite/granite-3.3-2b-instruct"),
        ("granite3.3:8b", "ibm-granite/granite-3.3-8b-instruct"),
        ("tinyllama:latest", "TinyLlama/TinyLlama-1.1B-Chat-v1.0"),
    ],
)
def test_catalog_covers_popular_models(name: str, repo: str) -> None:
    model_name, _, tag = name.partition(":")
    match = load_catalog().lookup_ollama(model_name, tag)
    assert match is not None and match.entry.hf == repo


def test_every_catalog_name_resolves_high_with_a_consistent_gguf() -> None:
    for entry in load_catalog().models:
        info = gguf(entry.architecture, (entry.parameters_b or 0) * 1e9)
        for name in entry.ollama:
            tag_suffix = "" if name.endswith(":latest") else "-q4_K_M"
            result = resolve_hf(model(name + tag_suffix), info)
            assert (result.repo, result.confidence) == (entry.hf, "high"), name


def test_every_catalog_repo_is_found_from_its_name_in_gguf_identity() -> None:
    for entry in load_catalog().models:
        display = entry.hf.split("/")[1].replace("-", " ")
        info = gguf(
            entry.architecture, (entry.parameters_b or 0) * 1e9, identity={"general.name": display}
        )
        assert resolve_hf(model("me/x:latest"), info).repo == entry.hf, entry.hf


def _catalog_yaml(**override: Any) -> str:
    data: dict[str, Any] = {
        "schema_version": 1,
        "families": {"f": {}},
        "models": [{"ollama": ["m:1b"], "hf": "o/m", "family": "f", "architecture": "llama"}],
    }
    data.update(override)
    return json.dumps(data)  # JSON is YAML


def test_parse_catalog_accepts_a_minimal_catalog() -> None:
    assert isinstance(parse_catalog(_catalog_yaml()), Catalog)


@pytest.mark.parametrize(
    "models",
    [
        [{"ollama": ["m:1b"], "hf": "o/m", "family": "nope", "architecture": "llama"}],
        [
            {
                "ollama": ["m:1b"],
                "hf": "o/m",
                "family": "f",
                "architecture": "llama",
                "prequantized": {"int3": "o/q"},
            }
        ],
        [{"ollama": ["m:1b"], "hf": "not a repo", "family": "f", "architecture": "llama"}],
        [
            {"ollama": ["m:1b"], "hf": "o/m", "family": "f", "architecture": "llama"},
            {"ollama": ["M:1b"], "hf": "o/n", "family": "f", "architecture": "llama"},
        ],
    ],
    ids=["unknown-family", "unknown-scheme", "bad-repo", "duplicate-name"],
)
def test_parse_catalog_rejects_broken_entries(models: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="invalid mapping catalog"):
        parse_catalog(_catalog_yaml(models=models))


# --- Ollama name lookup ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "alias", "how"),
    [
        ("llama3.2:3b", "llama3.2:3b", "exact"),
        ("llama3.2:3b-instruct-q4_K_M", "llama3.2:3b-instruct", "prefix"),
        ("qwen2.5:7b-instruct-fp16", "qwen2.5:7b-instruct", "prefix"),
        ("qwen3:8b-q4_K_M", "qwen3:8b", "prefix"),
        ("llama3.2:1b-text-q4_K_M", "llama3.2:1b-text", "prefix"),
        ("mistral:7b-instruct-v0.2-q4_0", "mistral:7b-instruct-v0.2", "prefix"),
        ("qwen3:q4_K_M", "qwen3:latest", "latest"),
    ],
)
def test_lookup_ollama_tags(name: str, alias: str, how: str) -> None:
    model_name, _, tag = name.partition(":")
    match = load_catalog().lookup_ollama(model_name, tag)
    assert match is not None and (match.alias, match.how) == (alias, how)


@pytest.mark.parametrize(
    "name",
    [
        "codellama:7b-code-q4_0",
        "tinyllama:1.1b-chat-v0.6-q4_0",
        "qwen2.5:7b-base",
        "nosuchmodel:latest",
    ],
)
def test_lookup_ollama_refuses_other_variants(name: str) -> None:
    # A tag that adds more than quant/instruct markers is another model.
    model_name, _, tag = name.partition(":")
    assert load_catalog().lookup_ollama(model_name, tag) is None


# --- a. user override -------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["me/assistant:latest", "me/assistant", "assistant", "ME/Assistant"]
)
def test_override_matches_display_name_forms(key: str) -> None:
    result = resolve_hf(model("me/assistant:latest"), None, {key: "org/repo"})
    assert (result.repo, result.confidence) == ("org/repo", "high")
    assert "user mapping" in result.reason
    assert result.evidence and "user mapping" in result.evidence[0]


def test_override_beats_a_contradicting_catalog_name() -> None:
    result = resolve_hf(
        model("llama3.2:3b"), gguf("qwen2", 7.6e9), {"llama3.2:3b": "Qwen/Qwen2.5-7B-Instruct"}
    )
    assert result.repo == "Qwen/Qwen2.5-7B-Instruct"
    assert (result.confidence, result.family, result.tool_call_parser) == (
        "high",
        "qwen2.5",
        "hermes",
    )


def test_override_given_directly_is_still_checked() -> None:
    with pytest.raises(MappingError, match="not a HuggingFace repo id"):
        resolve_hf(model("me/x:latest"), None, {"me/x": "no spaces allowed/x"})


def test_override_without_latest_does_not_match_other_tags() -> None:
    result = resolve_hf(model("me/assistant:v2"), None, {"me/assistant": "org/repo"})
    assert result.repo is None


# --- b. GGUF lineage keys ---------------------------------------------------------


def test_gguf_source_repository_is_high() -> None:
    info = gguf(
        identity={"general.source.huggingface.repository": "HuggingFaceTB/SmolLM2-135M-Instruct"}
    )
    result = resolve_hf(model("me/x:latest"), info)
    assert (result.repo, result.confidence, result.family) == (SMOLLM2, "high", "smollm2")


def test_gguf_source_url_on_the_hub_is_high() -> None:
    info = gguf(identity={"general.source.url": "https://huggingface.co/someorg/SomeModel-1B"})
    result = resolve_hf(model("me/x:latest"), info)
    assert (result.repo, result.confidence) == ("someorg/SomeModel-1B", "high")


def test_gguf_source_url_elsewhere_is_ignored() -> None:
    info = gguf(identity={"general.source.url": "https://example.com/someorg/SomeModel"})
    assert resolve_hf(model("me/x:latest"), info).repo is None


def test_gguf_base_model_matching_identity_is_high() -> None:
    info = gguf(
        identity={
            "general.basename": "SomeModel",
            "general.base_model.count": 1,
            "general.base_model.0.repo_url": "https://huggingface.co/someorg/SomeModel",
        }
    )
    result = resolve_hf(model("me/x:latest"), info)
    assert (result.repo, result.confidence) == ("someorg/SomeModel", "high")


def test_gguf_base_model_of_a_finetune_is_medium() -> None:
    info = gguf(
        identity={
            "general.organization": "Someone",
            "general.basename": "Cool-Tune",
            "general.base_model.count": 1,
            "general.base_model.0.organization": "Someorg",
            "general.base_model.0.repo_url": "https://huggingface.co/someorg/SomeModel",
        }
    )
    result = resolve_hf(model("me/x:latest"), info)
    assert (result.repo, result.confidence) == ("someorg/SomeModel", "medium")
    assert "derivative" in result.reason


def test_gguf_base_model_yields_to_a_catalog_identity_match() -> None:
    # llama.cpp copies the model card's base_model: an Instruct file names the base repo.
    info = gguf(
        "llama",
        8.03e9,
        identity={
            "general.organization": "Meta Llama",
            "general.basename": "Meta-Llama-3.1",
            "general.size_label": "8B",
            "general.finetune": "Instruct",
            "general.base_model.count": 1,
            "general.base_model.0.organization": "Meta Llama",
            "general.base_model.0.name": "Meta Llama 3.1 8B",
            "general.base_model.0.repo_url": "https://huggingface.co/meta-llama/Meta-Llama-3.1-8B",
        },
    )
    result = resolve_hf(model("me/x:latest"), info)
    assert (result.repo, result.confidence) == ("meta-llama/Llama-3.1-8B-Instruct", "medium")
    assert any(
        "meta-llama/Llama-3.1-8B" in line and "derivative" in line for line in result.evidence
    )


def test_gguf_base_model_display_names_resolve_through_the_catalog() -> None:
    info = gguf(
        "qwen2",
        7.6e9,
        identity={
            "general.base_model.0.organization": "Qwen",
            "general.base_model.0.name": "Qwen2.5 7B Instruct",
        },
    )
    result = resolve_hf(model("me/x:latest"), info)
    assert (result.repo, result.confidence) == ("Qwen/Qwen2.5-7B-Instruct", "high")


# --- c. hf.co names -------------------------------------------------------------------


def test_hf_gguf_repo_of_a_catalog_model_is_high() -> None:
    result = resolve_hf(model("hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M"), None)
    assert (result.repo, result.confidence, result.gated) == (
        "meta-llama/Llama-3.2-3B-Instruct",
        "high",
        True,
    )
    assert any("bartowski/Llama-3.2-3B-Instruct-GGUF" in line for line in result.evidence)


@pytest.mark.parametrize(
    "name",
    [
        "hf.co/bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M",  # the repo's old name
        "huggingface.co/lmstudio-community/Llama-3.1-8B-Instruct-gguf:Q8_0",
        "hf.co/mradermacher/Llama-3.1-8B-Instruct-i1-GGUF:IQ4_XS",
    ],
)
def test_hf_gguf_repo_suffixes_and_hosts(name: str) -> None:
    result = resolve_hf(model(name), None)
    assert (result.repo, result.confidence) == ("meta-llama/Llama-3.1-8B-Instruct", "high")


def test_hf_gguf_repo_of_an_unknown_model_is_a_low_guess() -> None:
    result = resolve_hf(model("hf.co/someone/Wizard-Tune-7B-GGUF:Q4_K_M"), None)
    assert (result.repo, result.confidence) == ("someone/Wizard-Tune-7B", "low")
    assert "guess" in result.reason


def test_hf_gguf_repo_from_a_quantizer_guesses_the_org_from_the_catalog() -> None:
    result = resolve_hf(model("hf.co/bartowski/Qwen2.5-7B-Instruct-abliterated-GGUF:Q4_K_M"), None)
    assert (result.repo, result.confidence) == ("Qwen/Qwen2.5-7B-Instruct-abliterated", "low")


# --- d. Ollama library name ---------------------------------------------------------


def test_library_name_confirmed_by_gguf_is_high() -> None:
    result = resolve_hf(model("qwen3:8b-q4_K_M"), gguf("qwen3", 8.19e9))
    assert (result.repo, result.confidence) == ("Qwen/Qwen3-8B", "high")
    assert (result.tool_call_parser, result.reasoning_parser, result.family) == (
        "hermes",
        "qwen3",
        "qwen3",
    )
    assert result.prequantized["fp8-dynamic"] == "RedHatAI/Qwen3-8B-FP8-dynamic"
    assert not result.rebuild_from_gguf


def test_library_name_confirmed_by_api_model_info_is_high() -> None:
    info = {"general.architecture": "gemma3", "general.parameter_count": 4_300_079_472}
    result = resolve_hf(model("gemma3:latest", api_model_info=info), None)
    assert (result.repo, result.confidence, result.gated) == ("google/gemma-3-4b-it", "high", True)


def test_library_name_without_gguf_is_medium() -> None:
    result = resolve_hf(model("llama3.2:3b"), None)
    assert (result.repo, result.confidence) == ("meta-llama/Llama-3.2-3B-Instruct", "medium")
    assert result.tool_call_parser == "llama3_json"


def test_library_name_contradicted_by_gguf_is_low() -> None:
    result = resolve_hf(model("llama3.2:3b"), gguf("qwen2", 3.1e9))
    assert (result.repo, result.confidence) == ("meta-llama/Llama-3.2-3B-Instruct", "low")
    assert "architecture is qwen2" in result.reason


def test_library_name_contradicted_by_size_is_low() -> None:
    result = resolve_hf(model("llama3.1:8b"), gguf("llama", 70.6e9))
    assert result.confidence == "low"
    assert "parameters" in result.reason


@pytest.mark.parametrize(
    ("arch", "params", "repo"),
    [
        ("llama", 8.03e9, "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"),
        ("qwen3", 8.19e9, "deepseek-ai/DeepSeek-R1-0528-Qwen3-8B"),
    ],
)
def test_library_name_picks_the_variant_the_gguf_matches(
    arch: str, params: float, repo: str
) -> None:
    # Ollama re-pointed deepseek-r1:8b from the Llama distill to the Qwen3 one.
    result = resolve_hf(model("deepseek-r1:8b"), gguf(arch, params))
    assert (result.repo, result.confidence, result.reasoning_parser) == (
        repo,
        "high",
        "deepseek_r1",
    )


def test_library_latest_alias_also_finds_the_variant() -> None:
    result = resolve_hf(model("deepseek-r1:latest"), gguf("llama", 8.03e9))
    assert (result.repo, result.confidence) == ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "high")


def test_mistral_gguf_written_as_llama_confirms() -> None:
    result = resolve_hf(model("mistral:7b-instruct-q4_K_M"), gguf("llama", 7.25e9))
    assert (result.repo, result.confidence, result.tool_call_parser) == (
        "mistralai/Mistral-7B-Instruct-v0.3",
        "high",
        "mistral",
    )


def test_user_namespace_does_not_use_the_library_catalog() -> None:
    result = resolve_hf(model("me/llama3.2:3b"), None)
    assert result.repo is None and result.rebuild_from_gguf


@pytest.mark.parametrize(
    ("name", "tool", "reasoning"),
    [
        ("phi4-mini:3.8b", "phi4_mini_json", None),
        ("granite3.3:8b", "granite", "granite"),
        ("granite3.1-dense:8b", "granite", None),
        ("gemma3:4b", None, None),
        ("deepseek-r1:14b", None, "deepseek_r1"),
        ("qwen2.5:7b", "hermes", None),
    ],
)
def test_family_parsers_reach_the_result(
    name: str, tool: str | None, reasoning: str | None
) -> None:
    result = resolve_hf(model(name), None)
    assert (result.tool_call_parser, result.reasoning_parser) == (tool, reasoning)


# --- e. GGUF identity and shape -------------------------------------------------------


def test_identity_maps_a_user_named_model_medium() -> None:
    result = resolve_hf(model("me/assistant:latest"), smollm2_gguf_info())
    assert (result.repo, result.confidence, result.family) == (SMOLLM2, "medium", "smollm2")
    assert "identity" in result.reason


def test_identity_prefers_the_plain_model_over_a_specialised_one() -> None:
    info = gguf(
        "qwen2",
        7.6e9,
        identity={
            "general.organization": "Qwen",
            "general.basename": "Qwen2.5",
            "general.size_label": "7B",
            "general.finetune": "Instruct",
        },
    )
    result = resolve_hf(model("me/x:latest"), info)
    assert (result.repo, result.confidence) == ("Qwen/Qwen2.5-7B-Instruct", "medium")


def test_identity_ignores_case_dashes_and_dots() -> None:
    info = gguf(
        "qwen2",
        1.54e9,
        identity={
            "general.basename": "qwen25_coder",
            "general.size_label": "1.5b",
            "general.finetune": "instruct",
        },
    )
    result = resolve_hf(model("me/x:latest"), info)
    assert (result.repo, result.confidence) == ("Qwen/Qwen2.5-Coder-1.5B-Instruct", "medium")


def test_identity_from_general_name_only() -> None:
    info = gguf("llama", 3.21e9, identity={"general.name": "Llama 3.2 3B Instruct"})
    result = resolve_hf(model("me/x:latest"), info)
    assert (result.repo, result.confidence) == ("meta-llama/Llama-3.2-3B-Instruct", "medium")


def test_identity_from_another_organization_is_low() -> None:
    info = gguf(
        "llama", 0.1345e9, identity={**SMOLLM2_IDENTITY, "general.organization": "SomeoneElse"}
    )
    result = resolve_hf(model("me/x:latest"), info)
    assert (result.repo, result.confidence) == (SMOLLM2, "low")


def test_identity_with_wrong_size_does_not_match() -> None:
    info = gguf("llama", 0.362e9, identity={**SMOLLM2_IDENTITY, "general.size_label": "360M"})
    result = resolve_hf(model("me/x:latest"), info)
    assert result.repo == "HuggingFaceTB/SmolLM2-360M-Instruct"


def test_shape_with_tokenizer_fingerprint_is_low() -> None:
    info = smollm2_gguf_info(identity={}, chat_template=None)
    result = resolve_hf(model("me/x:latest"), info)
    assert (result.repo, result.confidence) == (SMOLLM2, "low")
    assert "tokenizer" in result.reason


def test_shape_with_chat_template_markers_is_low() -> None:
    info = smollm2_gguf_info(identity={}, tokenizer_fingerprint=None)
    result = resolve_hf(model("me/x:latest"), info)
    assert (result.repo, result.confidence) == (SMOLLM2, "low")
    assert "chat template" in result.reason


def test_shape_without_a_family_hint_maps_nothing() -> None:
    # Every finetune shares its base's shape: architecture and size alone prove nothing.
    result = resolve_hf(model("me/x:latest"), gguf("llama", 0.1345e9))
    assert result.repo is None


def test_shape_that_fits_several_models_maps_nothing() -> None:
    result = resolve_hf(model("me/x:latest"), gguf("llama", 8.03e9, chat_template=LLAMA3_TEMPLATE))
    assert result.repo is None and result.confidence == "none"
    assert any("fits several" in line for line in result.evidence)


# --- f. nothing known ------------------------------------------------------------------


def test_nothing_known_means_rebuild_from_gguf() -> None:
    result = resolve_hf(model("me/mymodel:latest"), gguf("llama", 1.234e9))
    assert result.repo is None
    assert (result.confidence, result.reason, result.rebuild_from_gguf) == (
        "none",
        NO_ORIGINAL,
        True,
    )


# --- SmolLM2: the demo model ---------------------------------------------------------------


def test_smollm2_library_name_is_high() -> None:
    result = resolve_hf(model("smollm2:135m"), smollm2_gguf_info())
    assert (result.repo, result.confidence, result.rebuild_from_gguf) == (SMOLLM2, "high", False)
    assert (result.family, result.gated) == ("smollm2", False)


def test_smollm2_real_file(smollm2_gguf: Path) -> None:
    header = pytest.importorskip("converters.gguf.header")
    info = header.read_gguf_info(smollm2_gguf)
    assert load_catalog().tokenizer_fingerprints.get(info.tokenizer_fingerprint or "") == "smollm2"
    library = resolve_hf(model("smollm2:135m"), info)
    assert (library.repo, library.confidence) == (SMOLLM2, "high")
    user = resolve_hf(model("me/assistant:latest"), info)
    assert (user.repo, user.confidence) == (SMOLLM2, "medium")


# --- parse_overrides ------------------------------------------------------------------------


def test_parse_overrides_items() -> None:
    got = parse_overrides(
        ["llama3.2:3b=meta-llama/Llama-3.2-3B-Instruct", " me/x = org/x-1.5B_v2 "], None
    )
    assert got == {"llama3.2:3b": "meta-llama/Llama-3.2-3B-Instruct", "me/x": "org/x-1.5B_v2"}


def test_parse_overrides_accepts_hub_urls() -> None:
    got = parse_overrides(["x=https://huggingface.co/org/repo", "y=hf.co/org/other"], None)
    assert got == {"x": "org/repo", "y": "org/other"}


@pytest.mark.parametrize(
    "item",
    [
        "llama3.2:3b",
        "=org/repo",
        "x=",
        "x=justaname",
        "x=org/re po",
        "x=a/b/c",
        "x=org--x/y",
        "x=-org/y",
        "x=org/y.git",
    ],
)
def test_parse_overrides_rejects_malformed_items(item: str) -> None:
    with pytest.raises(MappingError) as excinfo:
        parse_overrides([item], None)
    line = excinfo.value.one_line()
    assert "\n" not in line and excinfo.value.hint
    assert excinfo.value.exit_code == 2


def test_parse_overrides_rejects_conflicting_items() -> None:
    with pytest.raises(MappingError, match="twice"):
        parse_overrides(["x=org/a", "X=org/b"], None)


def test_parse_overrides_yaml_file_and_items_win(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text('"llama3.2:3b": meta-llama/Llama-3.2-3B-Instruct\nme/x: org/x\n')
    got = parse_overrides(["me/x=org/y"], path)
    assert got == {"llama3.2:3b": "meta-llama/Llama-3.2-3B-Instruct", "me/x": "org/y"}


def test_parse_overrides_json_file(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"me/x:latest": "org/x"}))
    assert parse_overrides([], path) == {"me/x:latest": "org/x"}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("map.yaml", "- a\n- b\n", "not NAME: org/repo"),
        ("map.yaml", "x: [unclosed\n", "not valid YAML"),
        ("map.json", "{nope", "not valid JSON"),
        ("map.yaml", "x: not a repo\n", "not a HuggingFace repo id"),
        ("map.yaml", "x: 3\n", "is not NAME: org/repo"),
    ],
)
def test_parse_overrides_rejects_malformed_files(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(MappingError, match=message) as excinfo:
        parse_overrides([], path)
    assert "\n" not in excinfo.value.one_line()


def test_parse_overrides_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="cannot be read"):
        parse_overrides([], tmp_path / "absent.yaml")
