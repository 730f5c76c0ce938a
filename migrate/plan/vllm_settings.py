"""The vLLM settings that make a served model behave like it did under Ollama."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from converters.gguf.info import GGUFInfo
from migrate.mapping.schema import MappingResult
from migrate.ollama.records import OllamaModel
from migrate.ollama.template import (
    compare_templates,
    translate_go_template,
    with_default_system,
    with_fixed_messages,
)
from migrate.plan.ollama_defaults import OllamaDefaults

# Ollama param -> vLLM generation-config key (vLLM reads these as request defaults).
_SAMPLING_KEYS = {
    "temperature": "temperature",
    "top_k": "top_k",
    "top_p": "top_p",
    "min_p": "min_p",
    "repeat_penalty": "repetition_penalty",
}
# Ollama params that shape the runner, not the output: nothing to carry over.
_RUNNER_KEYS = {
    "num_gpu",
    "num_thread",
    "num_batch",
    "main_gpu",
    "use_mmap",
    "use_mlock",
    "numa",
    "low_vram",
    "num_keep",
}


class VllmSettings(BaseModel):
    served_model_names: list[str]
    max_model_len: int
    max_model_len_reason: str
    dtype: str = "bfloat16"
    generation_config: dict[str, Any] = Field(default_factory=dict)  # --override-generation-config
    stop: list[str] = Field(default_factory=list)  # the Modelfile's stop strings
    stop_token_ids: list[int] = Field(default_factory=list)  # those that are single tokens
    chat_template: str | None = None
    chat_template_source: str = "none"  # gguf | ollama | gguf+system | ...
    tool_call_parser: str | None = None
    reasoning_parser: str | None = None
    warnings: list[str] = Field(default_factory=list)


def served_names(models: list[OllamaModel]) -> list[str]:
    """Every name a client may send: `name:tag`, and `name` alone when the tag is latest."""
    names: list[str] = []
    for model in models:
        display = model.name.display
        names.append(display)
        if model.name.tag == "latest":
            names.append(display.rsplit(":", 1)[0])
    return list(dict.fromkeys(names))


def context_length(model: OllamaModel, info: GGUFInfo, defaults: OllamaDefaults) -> tuple[int, str]:
    trained = info.context_length
    num_ctx = model.params.get("num_ctx")
    if isinstance(num_ctx, int | float) and num_ctx > 0:
        value, why = int(num_ctx), f"num_ctx {int(num_ctx)} from the Modelfile"
    else:
        value, why = (
            defaults.num_ctx,
            f"Ollama's default context {defaults.num_ctx} (no num_ctx set)",
        )
    if trained and value > trained:
        return trained, f"{why}, capped at the model's trained context {trained}"
    return value, why


def generation_overrides(
    model: OllamaModel, info: GGUFInfo, defaults: OllamaDefaults
) -> tuple[dict[str, Any], list[str]]:
    """Request defaults: the Modelfile's params, else Ollama's defaults (Ollama ignores general.sampling.*)."""
    params = model.params
    warnings: list[str] = []
    config: dict[str, Any] = {}
    for ollama_key, vllm_key in _SAMPLING_KEYS.items():
        if ollama_key in params:
            config[vllm_key] = params[ollama_key]
        else:
            config[vllm_key] = getattr(defaults, ollama_key)
    num_predict = params.get("num_predict")
    if isinstance(num_predict, int) and num_predict > 0:
        config["max_new_tokens"] = num_predict
    if config.get("repetition_penalty", 1.0) != 1.0:
        warnings.append(
            "repeat_penalty differs: llama.cpp penalises the last repeat_last_n tokens, "
            "vLLM's repetition_penalty the whole sequence"
        )
    for key in sorted(params):
        if (
            key in _SAMPLING_KEYS
            or key in _RUNNER_KEYS
            or key in ("num_ctx", "num_predict", "stop")
        ):
            continue
        warnings.append(
            f"parameter {key}={params[key]!r} has no vLLM server-side default: clients must send it"
        )
    return config, warnings


def stop_settings(model: OllamaModel, info: GGUFInfo) -> tuple[list[str], list[int], list[str]]:
    """Stop strings that are special tokens become stop token ids; the rest need clients."""
    raw = model.params.get("stop", [])
    stops = [raw] if isinstance(raw, str) else [str(s) for s in raw]
    known = {
        text: token_id
        for text, token_id in (
            (info.eos_token, info.eos_token_id),
            (info.eot_token, info.eot_token_id),
            (info.bos_token, info.bos_token_id),
        )
        if text is not None and token_id is not None
    }
    known.update(info.special_token_ids)
    ids: list[int] = []
    warnings: list[str] = []
    for stop in stops:
        if stop in known:
            ids.append(known[stop])
        else:
            warnings.append(
                f"stop string {stop!r} is not a single special token: vLLM cannot apply it "
                "server-side, clients must send it in `stop`"
            )
    if info.eos_token_id is not None and info.eos_token_id not in ids:
        ids.insert(0, info.eos_token_id)
    return stops, list(dict.fromkeys(ids)), warnings


def chat_template(
    model: OllamaModel, info: GGUFInfo, prefer: str = "ollama"
) -> tuple[str | None, str, list[str]]:
    """The template clients saw: Ollama's TEMPLATE translated, unless it renders exactly like
    the GGUF's own Jinja template (then the original) or cannot be translated."""
    notes: list[str] = []
    gguf_template = info.chat_template
    go_template = model.template
    chosen, source = gguf_template, "gguf" if gguf_template else "none"
    if go_template:
        translation = translate_go_template(go_template)
        if translation.jinja is None:
            notes.append(
                "Ollama TEMPLATE not translatable ("
                + ", ".join(translation.unsupported)
                + "): using the GGUF's chat template; check with `migrate validate`"
            )
        elif gguf_template is None:
            chosen, source = translation.jinja, "ollama"
        else:
            comparison = compare_templates(translation.jinja, gguf_template, model.system)
            if not comparison.identical and prefer == "ollama":
                chosen, source = translation.jinja, "ollama"
                notes.append(
                    "Ollama TEMPLATE renders differently from the GGUF's chat template "
                    f"({comparison.first_difference}): using Ollama's, which clients saw "
                    "(--chat-template gguf uses the GGUF's)"
                )
            elif not comparison.identical:
                notes.append(
                    "Ollama TEMPLATE renders differently from the GGUF's chat template: "
                    "using the GGUF's as asked; prompts will differ from Ollama's"
                )
        if source == "ollama" and translation.approximate:
            notes.append(
                "Ollama TEMPLATE translated approximately: " + "; ".join(translation.approximate)
            )
    if chosen is None:
        notes.append(
            "no chat template in the GGUF or the Modelfile: chat requests will fail on vLLM"
        )
        return None, "none", notes
    if source == "ollama" and info.add_bos_token:
        # Ollama templates never print BOS (llama.cpp adds it when tokenizing); vLLM's chat
        # path tokenizes without special tokens, so the template must carry it.
        chosen = "{{- bos_token }}" + chosen
    if model.messages:
        chosen = with_fixed_messages(chosen, model.messages)
        source += "+messages"
    if model.system:
        chosen = with_default_system(chosen, model.system)
        source += "+system"
    return chosen, source, notes


def vllm_settings(
    models: list[OllamaModel],
    info: GGUFInfo,
    mapping: MappingResult,
    defaults: OllamaDefaults,
    dtype: str,
    template_preference: str = "ollama",
) -> VllmSettings:
    primary = models[0]
    max_len, max_len_reason = context_length(primary, info, defaults)
    config, warnings = generation_overrides(primary, info, defaults)
    stops, stop_ids, stop_warnings = stop_settings(primary, info)
    template, template_source, template_notes = chat_template(primary, info, template_preference)
    return VllmSettings(
        served_model_names=served_names(models),
        max_model_len=max_len,
        max_model_len_reason=max_len_reason,
        dtype=dtype,
        generation_config=config,
        stop=stops,
        stop_token_ids=stop_ids,
        chat_template=template,
        chat_template_source=template_source,
        tool_call_parser=mapping.tool_call_parser,
        reasoning_parser=mapping.reasoning_parser,
        warnings=warnings + stop_warnings + template_notes,
    )
