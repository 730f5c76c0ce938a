"""Quantize one HF checkpoint folder with llm-compressor, then measure what it cost.

Run inside the llm-compressor runtime, by file path: `python job.py SPEC.json`. It imports
only the standard library, torch, transformers, datasets, llmcompressor and
compressed_tensors: the runtime has none of the toolkit's packages.

SPEC.json keys (written by `converters.quantize.run`):
    src, dest               input bf16 folder, output folder (created; must be empty)
    scheme, recipe          scheme name and its recipe (see recipes.py: modifiers as data)
    samples, max_seq_len    calibration budget (samples used whole if the set is smaller)
    calibration_file        JSONL of {"messages": [...]} / {"text": ...} samples, or null
    dataset_id, dataset_split  a hub dataset read with `datasets` instead of the file
    heldout_file            JSONL scored by the quality check (null: no check)
    heldout_samples, heldout_max_tokens  limits of the quality check
    cpu_workarounds         true / false / null (null: apply when no accelerator)
    dtype                   "auto" (bf16 checkpoints stay bf16), "bfloat16", "float32"
    kl_top_k                base-model tokens kept per position for the KL (default 128)
    seed, result_path

Progress: JSON lines on the ORIGINAL stdout only ({"event": "stage", "name": ...},
{"event": "info", ...}, {"event": "result", ...}); everything libraries print goes to
stderr. On failure the last stdout line is {"event": "error", "stage": ..., "message":
one line} and the exit code is 2 (bad input) or 1 (anything else).

Quality check: the unquantized model scores the held-out samples first (perplexity, and
its top-k log-probabilities per position); after saving, the quantized folder is loaded
back through compressed-tensors decompression (weights dequantized to bf16/fp32,
activation quantization still simulated), so the figures describe the files on disk and
are measurable on any hardware, NVFP4 included. KL(base || quant) per token is computed
over the base model's top-k tokens plus one bucket for the rest of the vocabulary: a
lower bound of the full KL that is tight when top-k holds nearly all the mass.
"""

from __future__ import annotations

import gc
import json
import math
import os
import random
import re
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

# Files copied verbatim from the source folder (transformers would rewrite some of them).
CARRY_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
)

_events: Any = None
_stage = "start"


class JobError(Exception):
    """A problem with the input or the request, reported as one line (exit code 2)."""


def emit(event: str, **fields: Any) -> None:
    line = json.dumps({"event": event, **fields}, default=str)
    if _events is None:
        print(line, flush=True)
    else:
        _events.write(line + "\n")
        _events.flush()


def stage(name: str, **fields: Any) -> None:
    global _stage
    _stage = name
    emit("stage", name=name, **fields)


def one_line(text: object, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- samples ------------------------------------------------------------------------------


def read_jsonl(path: str) -> list[dict[str, Any]]:
    samples = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise JobError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            samples.append(check_sample(raw, f"{path}:{number}"))
    if not samples:
        raise JobError(f"{path} holds no samples")
    return samples


def check_sample(raw: Any, where: str) -> dict[str, Any]:
    if isinstance(raw, dict) and isinstance(raw.get("text"), str) and raw["text"].strip():
        return {"text": raw["text"]}
    if isinstance(raw, dict) and isinstance(raw.get("messages"), list) and raw["messages"]:
        messages = []
        for message in raw["messages"]:
            if not (
                isinstance(message, dict)
                and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)
            ):
                raise JobError(f"{where}: each message needs a string role and content")
            messages.append({"role": message["role"], "content": message["content"]})
        return {"messages": messages}
    raise JobError(f'{where}: a sample is {{"messages": [...]}} or {{"text": "..."}}')


def hub_samples(dataset_id: str, split: str, wanted: int) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError as exc:
        raise JobError(
            "a hub calibration dataset needs the `datasets` package in the llm-compressor runtime"
        ) from exc
    try:
        rows = datasets.load_dataset(dataset_id, split=split, streaming=True)
    except Exception as exc:
        raise JobError(
            f"cannot load hub dataset {dataset_id} (split {split}): {one_line(exc, 200)}"
        ) from exc
    samples: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        if len(samples) >= wanted or index >= wanted * 20:
            break
        try:
            samples.append(check_sample(row, f"{dataset_id}[{index}]"))
        except JobError:
            continue
    if not samples:
        raise JobError(f"hub dataset {dataset_id} has no rows with 'messages' or 'text'")
    return samples


class Renderer:
    """Chat samples through the model's chat template; text samples as they are."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.has_template = bool(getattr(tokenizer, "chat_template", None))
        self.fallbacks = 0

    def render(self, sample: dict[str, Any]) -> tuple[str, bool]:
        """(text, add_special_tokens): templates write their own BOS, plain text gets it."""
        if "text" in sample:
            return sample["text"], True
        messages = sample["messages"]
        if self.has_template:
            for attempt in (messages, merge_system(messages)):
                try:
                    text = self.tokenizer.apply_chat_template(attempt, tokenize=False)
                    if isinstance(text, str) and text:
                        return text, False
                except Exception:
                    continue
        self.fallbacks += 1
        return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages), True

    def encode(self, sample: dict[str, Any], max_tokens: int) -> list[int]:
        text, special = self.render(sample)
        ids = self.tokenizer(
            text, add_special_tokens=special, truncation=True, max_length=max_tokens
        )["input_ids"]
        return list(ids)


def merge_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """For templates that refuse a system role: fold it into the first user message."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system and rest and rest[0]["role"] == "user":
        rest[0]["content"] = "\n\n".join([*system, rest[0]["content"]])
    return rest


def encode_all(
    renderer: Renderer, samples: list[dict[str, Any]], count: int, max_tokens: int, seed: int
) -> list[list[int]]:
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    encoded: list[list[int]] = []
    for index in order:
        if len(encoded) >= count:
            break
        ids = renderer.encode(samples[index], max_tokens)
        if len(ids) >= 2:
            encoded.append(ids)
    return encoded


# -- model loading ------------------------------------------------------------------------


def pick_dtype(torch: Any, spec_dtype: str, config: dict[str, Any], cuda: bool) -> Any:
    if spec_dtype and spec_dtype != "auto":
        return getattr(torch, spec_dtype)
    stored = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    if stored in ("bfloat16", "float16"):
        # fp16 on CPU is slow and overflows more easily than bf16; keep fp16 on GPUs.
        return getattr(torch, stored) if cuda else torch.bfloat16
    return torch.float32


def load_model(path: str, dtype: Any, cuda: bool, decompress: bool = False) -> Any:
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": dtype}
    if cuda:
        kwargs["device_map"] = "auto"
    if decompress:
        from transformers import CompressedTensorsConfig

        kwargs["quantization_config"] = CompressedTensorsConfig(run_compressed=False)
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    model.eval()
    return model


def free(torch: Any) -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def check_weights(src: Path) -> None:
    if not (src / "config.json").is_file():
        raise JobError(f"no config.json in {src}")
    weights = list(src.glob("*.safetensors")) + list(src.glob("*.bin"))
    if not weights:
        raise JobError(f"no weights (*.safetensors) in {src}")


def ignored(name: str, module: Any, patterns: list[str]) -> bool:
    for pattern in patterns:
        if pattern.startswith("re:"):
            if re.match(pattern[3:], name):
                return True
        elif name == pattern or name.endswith("." + pattern) or type(module).__name__ == pattern:
            return True
    return False


def check_group_size(torch: Any, model: Any, group_size: int | None, patterns: list[str]) -> None:
    if not group_size:
        return
    bad = [
        (name, module.in_features)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and module.in_features % group_size
        and not ignored(name, module, patterns)
    ]
    if bad:
        name, size = bad[0]
        divisors = [g for g in (128, 64, 32, 16) if all(s % g == 0 for _, s in bad)]
        suggestion = f"; {divisors[0]} would fit" if divisors and divisors[0] < group_size else ""
        raise JobError(
            f"group size {group_size} does not divide the input size of {len(bad)} layer(s), "
            f"e.g. {name} ({size}): pick a group size that divides every input dimension"
            f"{suggestion}"
        )


# -- llm-compressor -----------------------------------------------------------------------


def apply_cpu_workarounds() -> list[str]:
    """AWQ pins cached activations for faster host->device copies; with no accelerator
    `Tensor.pin_memory()` raises "Cannot access accelerator device when none is available".
    Pinning is only a speed-up for copies that never happen on CPU, so make it a no-op."""
    applied: list[str] = []
    try:
        from llmcompressor.pipelines.cache import IntermediatesCache
    except ImportError:
        return applied
    if hasattr(IntermediatesCache, "pin_memory"):

        def pin_memory(self: Any, batch_index: int, input_names: Any = None) -> None:
            return None

        IntermediatesCache.pin_memory = pin_memory
        applied.append("IntermediatesCache.pin_memory -> no-op (no accelerator to pin for)")
    return applied


def build_modifiers(recipe: dict[str, Any]) -> list[Any]:
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    entries = [dict(m) for m in recipe["modifiers"]]
    modifiers: list[Any] = []
    index = 0
    while index < len(entries):
        kind, args = entries[index]["kind"], dict(entries[index]["args"])
        if kind == "GPTQModifier":
            modifiers.append(GPTQModifier(**args))
        elif kind == "QuantizationModifier":
            modifiers.append(QuantizationModifier(**args))
        elif kind == "SmoothQuantModifier":
            try:
                from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier
            except ImportError:  # before 0.14
                from llmcompressor.modifiers.smoothquant import SmoothQuantModifier
            modifiers.append(SmoothQuantModifier(**args))
        elif kind == "AWQModifier":
            try:  # 0.14+: AWQ is a transform, followed by the QuantizationModifier
                from llmcompressor.modifiers.transform.awq import AWQModifier

                modifiers.append(AWQModifier(**args))
            except ImportError:  # older: one AWQModifier that also quantizes
                from llmcompressor.modifiers.awq import AWQModifier as LegacyAWQ

                following = entries[index + 1] if index + 1 < len(entries) else None
                if following and following["kind"] == "QuantizationModifier":
                    args.update(following["args"])
                    index += 1
                modifiers.append(LegacyAWQ(**args))
        else:
            raise JobError(f"unknown modifier kind {kind!r} in the recipe")
        index += 1
    return modifiers


def to_dataset(sequences: list[list[int]]) -> Any:
    from datasets import Dataset

    return Dataset.from_dict(
        {"input_ids": sequences, "attention_mask": [[1] * len(s) for s in sequences]}
    )


# -- quality ------------------------------------------------------------------------------


def input_device(model: Any) -> Any:
    return model.get_input_embeddings().weight.device


def log_probs(torch: Any, model: Any, ids: list[int]) -> Any:
    tokens = torch.tensor([ids], device=input_device(model))
    logits = model(input_ids=tokens, use_cache=False).logits[0, :-1]
    return torch.log_softmax(logits.float(), dim=-1)


def score_base(torch: Any, model: Any, sequences: list[list[int]], top_k: int) -> dict[str, Any]:
    nll, count, refs = 0.0, 0, []
    with torch.no_grad():
        for ids in sequences:
            logp = log_probs(torch, model, ids)
            targets = torch.tensor(ids[1:], device=logp.device)
            nll -= float(logp.gather(1, targets[:, None]).sum())
            count += len(ids) - 1
            values, indices = logp.topk(min(top_k, logp.shape[-1]), dim=-1)
            refs.append((values.cpu(), indices.cpu()))
    return {"nll": nll, "tokens": count, "refs": refs}


def score_quant(
    torch: Any, model: Any, sequences: list[list[int]], base: dict[str, Any]
) -> dict[str, Any]:
    nll, kl_sum, agree, count = 0.0, 0.0, 0, 0
    with torch.no_grad():
        for ids, (ref_values, ref_indices) in zip(sequences, base["refs"], strict=True):
            logq = log_probs(torch, model, ids)
            targets = torch.tensor(ids[1:], device=logq.device)
            nll -= float(logq.gather(1, targets[:, None]).sum())
            count += len(ids) - 1
            logp_top = ref_values.to(logq.device)
            index = ref_indices.to(logq.device)
            logq_top = logq.gather(1, index)
            p_top = logp_top.exp()
            p_tail = (1.0 - p_top.sum(-1)).clamp_min(0.0)
            q_tail = (1.0 - logq_top.exp().sum(-1)).clamp_min(1e-12)
            tail = torch.where(
                p_tail > 1e-9,
                p_tail * (p_tail.clamp_min(1e-12).log() - q_tail.log()),
                torch.zeros_like(p_tail),
            )
            kl = (p_top * (logp_top - logq_top)).sum(-1) + tail
            kl_sum += float(kl.sum())
            agree += int((logq.argmax(-1) == index[:, 0]).sum())
    return {"nll": nll, "tokens": count, "kl": kl_sum, "agree": agree}


def perplexity(nll: float, tokens: int) -> float:
    return math.exp(nll / tokens) if tokens else float("nan")


# -- output -------------------------------------------------------------------------------


def save(model: Any, src: Path, dest: Path) -> dict[str, Any]:
    from transformers import GenerationConfig

    # transformers refuses to save a generation config whose sampling keys are set with
    # do_sample unset (Ollama defaults are); the source file is copied verbatim instead.
    model.generation_config = GenerationConfig()
    model.save_pretrained(str(dest), save_compressed=True)
    for name in CARRY_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dest / name)
        elif name == "generation_config.json":
            (dest / name).unlink(missing_ok=True)
    for path in dest.rglob("*"):
        if path.is_file():
            path.chmod(0o644)  # safetensors are written 0600
    config = json.loads((dest / "config.json").read_text(encoding="utf-8"))
    quant = config.get("quantization_config") or {}
    if quant.get("quant_method") != "compressed-tensors":
        raise RuntimeError("saved config.json has no compressed-tensors quantization_config")
    return {
        "quant_method": quant.get("quant_method"),
        "format": quant.get("format"),
        "ignore": quant.get("ignore"),
    }


# -- main ---------------------------------------------------------------------------------


def run(spec: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    seconds: dict[str, float] = {}
    mark = time.monotonic()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        seconds[name] = round(now - mark, 1)
        mark = now

    stage("load")
    src, dest = Path(spec["src"]), Path(spec["dest"])
    check_weights(src)
    if dest.exists() and any(dest.iterdir()):
        raise JobError(f"output folder {dest} is not empty")
    recipe = spec["recipe"]
    seed = int(spec.get("seed", 0))

    import torch
    import transformers
    from transformers import AutoTokenizer

    torch.manual_seed(seed)
    cuda = bool(torch.cuda.is_available())
    accelerator = cuda or bool(
        getattr(torch, "accelerator", None) and torch.accelerator.is_available()
    )
    config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    dtype = pick_dtype(torch, spec.get("dtype", "auto"), config, cuda)
    import compressed_tensors
    import llmcompressor

    versions = {
        "llmcompressor": getattr(llmcompressor, "__version__", "?"),
        "compressed_tensors": getattr(compressed_tensors, "__version__", "?"),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    device = "cuda" if cuda else "cpu"
    emit("info", device=device, dtype=str(dtype).removeprefix("torch."), versions=versions)

    tokenizer = AutoTokenizer.from_pretrained(str(src))
    renderer = Renderer(tokenizer)
    max_seq_len = int(spec["max_seq_len"])
    limit = config.get("max_position_embeddings")
    if isinstance(limit, int) and 0 < limit < max_seq_len:
        max_seq_len = limit

    calibration: list[list[int]] = []
    if recipe["calibration"]:
        wanted = int(spec["samples"])
        if spec.get("dataset_id"):
            raw = hub_samples(spec["dataset_id"], spec.get("dataset_split") or "train", wanted)
        else:
            raw = read_jsonl(spec["calibration_file"])
        calibration = encode_all(renderer, raw, wanted, max_seq_len, seed)
        if not calibration:
            raise JobError("no calibration sample has 2 tokens or more")
        emit(
            "info",
            calibration_samples=len(calibration),
            calibration_tokens=sum(map(len, calibration)),
            requested=wanted,
        )

    heldout: list[list[int]] = []
    if spec.get("heldout_file"):
        raw = read_jsonl(spec["heldout_file"])
        count = int(spec.get("heldout_samples") or len(raw))
        heldout = encode_all(renderer, raw, count, int(spec["heldout_max_tokens"]), seed + 1)
    lap("load")

    base: dict[str, Any] | None = None
    if heldout:
        stage("baseline", samples=len(heldout))
        model = load_model(str(src), dtype, cuda)
        base = score_base(torch, model, heldout, int(spec.get("kl_top_k", 128)))
        del model
        free(torch)
        emit("info", perplexity_base=round(perplexity(base["nll"], base["tokens"]), 4))
        lap("baseline")

    stage("calibrate", samples=len(calibration))
    workarounds_wanted = spec.get("cpu_workarounds")
    if workarounds_wanted is None:
        workarounds_wanted = not accelerator
    workarounds = apply_cpu_workarounds() if workarounds_wanted else []
    from llmcompressor import oneshot

    model = load_model(str(src), dtype, cuda=False)  # oneshot onloads to the GPU itself
    check_group_size(torch, model, recipe.get("group_size"), list(recipe.get("ignore", [])))
    modifiers = build_modifiers(recipe)
    kwargs: dict[str, Any] = {"model": model, "recipe": modifiers, "tokenizer": tokenizer}
    if calibration:
        kwargs.update(
            dataset=to_dataset(calibration),
            max_seq_length=max_seq_len,
            num_calibration_samples=len(calibration),
            shuffle_calibration_samples=False,
        )
    oneshot(**kwargs)
    lap("calibrate")

    stage("save")
    dest.mkdir(parents=True, exist_ok=True)
    saved = save(model, src, dest)
    del model, kwargs
    free(torch)
    lap("save")

    quality: dict[str, Any] | None = None
    if base is not None:
        stage("evaluate", samples=len(heldout))
        model = load_model(str(dest), dtype, cuda, decompress=True)
        quant = score_quant(torch, model, heldout, base)
        del model
        free(torch)
        ppl_base = perplexity(base["nll"], base["tokens"])
        ppl_quant = perplexity(quant["nll"], quant["tokens"])
        quality = {
            "perplexity_base": round(ppl_base, 4),
            "perplexity_quant": round(ppl_quant, 4),
            "ppl_ratio": round(ppl_quant / ppl_base, 4),
            "mean_kl": round(max(quant["kl"], 0.0) / quant["tokens"], 6),
            "top1_agreement": round(quant["agree"] / quant["tokens"], 4),
            "heldout_samples": len(heldout),
            "heldout_tokens": quant["tokens"],
            "kl_top_k": int(spec.get("kl_top_k", 128)),
        }
        lap("evaluate")

    seconds["total"] = round(time.monotonic() - started, 1)
    return {
        "scheme": spec["scheme"],
        "group_size": recipe.get("group_size"),
        "samples": len(calibration),
        "calibration_tokens": sum(map(len, calibration)),
        "max_seq_len": max_seq_len,
        "seconds": seconds,
        "quality": quality,
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "cpu_workarounds": workarounds,
        "render_fallbacks": renderer.fallbacks,
        "quantization_config": saved,
        "versions": versions,
    }


def main(argv: list[str]) -> int:
    global _events
    # Events keep the real stdout; whatever libraries print goes to stderr instead.
    _events = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    if len(argv) != 2:
        emit("error", stage=_stage, message="usage: job.py SPEC.json")
        return 2
    try:
        spec = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
        result = run(spec)
        if spec.get("result_path"):
            Path(spec["result_path"]).write_text(json.dumps(result, indent=2), encoding="utf-8")
        emit("result", **result)
        return 0
    except JobError as exc:
        emit("error", stage=_stage, message=one_line(exc))
        return 2
    except BaseException as exc:  # every failure must end in one JSON line
        traceback.print_exc(file=sys.stderr)
        message = one_line(f"{type(exc).__name__}: {exc}")
        emit("error", stage=_stage, message=message)
        return 130 if isinstance(exc, KeyboardInterrupt) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
