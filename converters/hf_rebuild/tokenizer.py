"""Rebuild a Hugging Face tokenizer (tokenizer.json + config) from a GGUF file's vocabulary.

The target is token-for-token agreement with llama.cpp on the same GGUF, because that is
what Ollama ran: the same vocabulary, merges and special-token splitting, llama.cpp's
pre-tokenizer regexes for `tokenizer.ggml.pre`, and BOS/EOS added exactly when llama.cpp
adds them. transformers' own GGUF tokenizer can drop `add_bos_token` and uses a Metaspace
that differs from llama.cpp after special tokens, so it is not used here.

Supported `tokenizer.ggml.model`s: "gpt2" (byte-level BPE) and "llama" (SentencePiece BPE
from scores, with byte fallback). The JSON is written by hand: no `tokenizers` needed.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import GGUFError
from converters.gguf.header import ArrayRef, read_header

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
SUPPORTED_MODELS = ("gpt2", "llama")

# llama.cpp token types (llama_token_type) and the GGUF array element types used here.
TYPE_UNKNOWN, TYPE_NORMAL, TYPE_CONTROL, TYPE_USER_DEFINED, TYPE_UNUSED, TYPE_BYTE = (
    2,
    1,
    3,
    4,
    5,
    6,
)
_INT32, _UINT32, _FLOAT32, _STRING = 5, 4, 6, 8
_U64 = struct.Struct("<Q")
SPIECE_SPACE = "\u2581"  # sentencepiece's visible space, "▁"

# --- llama.cpp's pre-tokenizer regexes (llama-vocab.cpp, llm_tokenizer_bpe) -----------------
# Copied as llama.cpp writes them (its adapted forms, not the HF originals), so that the
# split is llama.cpp's. Each list is applied in order, every match isolated, like llama.cpp.

_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
RE_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
RE_LLAMA3 = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
RE_QWEN2 = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
RE_QWEN35 = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
RE_MINICPM5 = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
RE_SEED_CODER = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
RE_BAILINGMOE = (
    r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"
)
RE_UFAKZEKA = r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
RE_EXAONE_MOE = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+"
)
RE_JAIS2 = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)"
    r"|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}"
)
# llama.cpp emulates "uppercase run then lowercase run" as "letter but not a-z" / "not A-Z".
_UPPER = r"((?=[\p{L}])([^a-z]))"
_LOWER = r"((?=[\p{L}])([^A-Z]))"
RE_TEKKEN = (
    rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
RE_GPT4O = (
    rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+{_CONTRACTIONS}?"
    rf"|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*{_CONTRACTIONS}?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# deepseek-llm's cased-letter class, spelled out by llama.cpp as code point ranges.
_DEEPSEEK_LETTERS = (
    "A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293"
    "\u0295-\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c"
    "\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5"
    "\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77"
    "\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59"
    "\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc"
    "\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107"
    "\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139"
    "\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee"
    "\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e"
    "\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a"
    "\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb"
    "\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943"
)
_CJK_HANGUL = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"
_CJK_KANA = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"
RES_DEEPSEEK_LLM = (
    r"[\r\n]",
    r"\s?[" + _DEEPSEEK_LETTERS + "]+",
    r"\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+",
    r"\s+$",
    _CJK_HANGUL,
    r"\p{N}+",
)
RES_DEEPSEEK_CODER = (r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _CJK_HANGUL, r"\p{N}")
RES_DEEPSEEK3 = (
    r"\p{N}{1,3}",
    _CJK_KANA,
    r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
    r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)
RE_PORO = " ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+"
RES_DEFAULT = (r"[\p{P}\$\+<=>\^~\|]+", RE_GPT2, r"\p{N}+", r"[0-9][0-9][0-9]")
RES_FALCON = (r"[\p{P}\$\+<=>\^~\|`]+", RE_GPT2, r"[0-9][0-9][0-9]")
RES_STARCODER = (r"\p{N}", RE_GPT2)


@dataclass(frozen=True, slots=True)
class PreTokenizerSpec:
    """How llama.cpp pre-tokenizes one `tokenizer.ggml.pre` family."""

    regexes: tuple[str, ...]
    ignore_merges: bool = False  # a word that is itself a token skips BPE
    add_bos: bool = False  # llama.cpp's default when the GGUF has no add_bos_token


_LLAMA3_SPEC = PreTokenizerSpec((RE_LLAMA3,), ignore_merges=True, add_bos=True)
_PRE_FAMILIES: tuple[tuple[tuple[str, ...], PreTokenizerSpec], ...] = (
    (("default",), PreTokenizerSpec(RES_DEFAULT)),
    (
        ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0"),
        _LLAMA3_SPEC,
    ),
    (("lfm2", "jina-v5-nano"), _LLAMA3_SPEC),
    (("dbrx", "smaug-bpe", "glm4", "chatglm-bpe"), PreTokenizerSpec((RE_LLAMA3,))),
    (("minicpm5",), PreTokenizerSpec((r"\p{N}{1,3}", RE_MINICPM5), ignore_merges=True)),
    (("deepseek-llm",), PreTokenizerSpec(RES_DEEPSEEK_LLM)),
    (("deepseek-coder",), PreTokenizerSpec(RES_DEEPSEEK_CODER)),
    (("deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4"), PreTokenizerSpec(RES_DEEPSEEK3)),
    (("falcon",), PreTokenizerSpec(RES_FALCON)),
    (
        ("starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"),
        PreTokenizerSpec(RES_STARCODER),
    ),
    (("mellum2",), PreTokenizerSpec(RES_STARCODER)),
    (
        ("gpt-2", "phi-2", "mpt", "olmo", "jais", "trillion", "granite-docling", "exaone4"),
        PreTokenizerSpec((RE_GPT2,)),
    ),
    (
        ("jina-es", "jina-de", "jina-v2-es", "jina-v2-de", "gigachat", "a.x-4.0", "mellum"),
        PreTokenizerSpec((RE_GPT2,)),
    ),
    (("modern-bert",), PreTokenizerSpec((RE_GPT2,))),
    (("jais-2",), PreTokenizerSpec((RE_JAIS2,))),
    (
        ("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan"),
        PreTokenizerSpec((RE_QWEN2,)),
    ),
    (("solar-open", "grok-2"), PreTokenizerSpec((RE_QWEN2,))),
    (("qwen35",), PreTokenizerSpec((RE_QWEN35,))),
    (("poro-chat", "bloom", "gpt3-finnish"), PreTokenizerSpec((RE_PORO,))),
    (("viking",), PreTokenizerSpec((RE_PORO, r"\p{N}"))),
    (("tekken",), PreTokenizerSpec((RE_TEKKEN,), ignore_merges=True, add_bos=True)),
    (("gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"), PreTokenizerSpec((RE_GPT4O,))),
    (("bailingmoe", "bailingmoe2", "llada-moe"), PreTokenizerSpec((RE_BAILINGMOE,))),
    (("seed-coder",), PreTokenizerSpec((RE_SEED_CODER,))),
    (("ufakzeka",), PreTokenizerSpec((RE_UFAKZEKA,))),
    (("laguna",), PreTokenizerSpec((r"[^\n]+|[\n]+", RE_QWEN2))),
    (("exaone-moe",), PreTokenizerSpec((RE_EXAONE_MOE,))),
)
PRE_TOKENIZERS: dict[str, PreTokenizerSpec] = {
    name: spec for names, spec in _PRE_FAMILIES for name in names
}
FALLBACK_PRE = "llama-bpe"

# Texts llama.cpp promotes to control tokens whatever their GGUF type (end-of-generation
# and FIM markers it detects by name), so its special-token split matches them too.
_FORCED_CONTROL = frozenset(
    {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
        "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<end_of_utterance>",
        "<|eom_id|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<eos>",
        "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "\u2581<PRE>",
        "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>", "\u2581<SUF>",
        "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "\u2581<MID>",
        "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",
        "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>",
    }
)  # fmt: skip
# gpt-oss markers llama.cpp always renders as text (user-defined, not control).
_FORCED_USER_DEFINED = frozenset({"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"})


class UnsupportedTokenizerError(GGUFError):
    """The GGUF's tokenizer model (tokenizer.ggml.model) cannot be rebuilt as a HF tokenizer."""


# --- reading the vocabulary --------------------------------------------------------------


@dataclass(slots=True)
class GGUFVocab:
    """A GGUF's tokenizer metadata, with the big arrays decoded."""

    path: Path
    model: str
    pre: str | None
    tokens: list[str]
    token_types: list[int]
    scores: list[float] | None
    merges: list[str]
    kv: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def load_gguf_vocab(gguf_path: str | Path) -> GGUFVocab:
    """Read the tokenizer keys of a GGUF and decode its token, type, score and merge arrays."""
    path = Path(gguf_path)
    header = read_header(path)
    kv = header.kv
    model = kv.get("tokenizer.ggml.model")
    if not isinstance(model, str):
        raise GGUFError(
            f"{path}: GGUF has no tokenizer (tokenizer.ggml.model is missing)",
            hint="this file cannot be served without a tokenizer; use the original HF repo's",
        )
    if model not in SUPPORTED_MODELS:
        raise UnsupportedTokenizerError(
            f"{path}: tokenizer model {model!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_MODELS)})",
            hint="take tokenizer.json from the model's original Hugging Face repo instead",
        )
    notes: list[str] = []
    with open(path, "rb") as file:
        raw_tokens = _strings(file, kv.get("tokenizer.ggml.tokens"), "tokenizer.ggml.tokens", path)
        if raw_tokens is None:
            raise GGUFError(
                f"{path}: GGUF has no tokenizer.ggml.tokens array", hint="re-convert the model"
            )
        types = _numbers(file, kv.get("tokenizer.ggml.token_type"), len(raw_tokens))
        scores = _numbers(file, kv.get("tokenizer.ggml.scores"), len(raw_tokens))
        raw_merges = _strings(file, kv.get("tokenizer.ggml.merges"), "tokenizer.ggml.merges", path)
    for key, array in (("token_type", types), ("scores", scores)):
        if array is not None and len(array) < len(raw_tokens):  # llama.cpp refuses these too
            raise GGUFError(
                f"{path}: tokenizer.ggml.{key} has {len(array)} entries for "
                f"{len(raw_tokens)} tokens",
                hint="the file is damaged or badly converted: re-convert it",
            )
    tokens = _decode_tokens(raw_tokens, notes)
    merges = [m.decode("utf-8", errors="replace") for m in raw_merges or []]
    token_types = [int(t) for t in types] if types is not None else [TYPE_NORMAL] * len(tokens)
    pre = kv.get("tokenizer.ggml.pre")
    return GGUFVocab(
        path=path,
        model=model,
        pre=pre if isinstance(pre, str) else None,
        tokens=tokens,
        token_types=token_types,
        scores=[float(s) for s in scores] if scores is not None else None,
        merges=merges,
        kv=kv,
        notes=notes,
    )


def _strings(file: Any, value: Any, key: str, path: Path) -> list[bytes] | None:
    """A string array's raw elements: one read, then a walk over the length prefixes."""
    if value is None:
        return None
    if isinstance(value, list):
        return [str(item).encode("utf-8") for item in value]
    if not isinstance(value, ArrayRef) or value.type != _STRING:
        raise GGUFError(f"{path}: {key} is not an array of strings", hint="re-convert the model")
    file.seek(value.offset)
    region = file.read(value.n_bytes)
    out: list[bytes] = []
    append, unpack, pos = out.append, _U64.unpack_from, 0
    for _ in range(value.count):
        length = unpack(region, pos)[0]
        append(region[pos + 8 : pos + 8 + length])
        pos += 8 + length
    return out


def _numbers(file: Any, value: Any, count: int) -> list[float] | list[int] | None:
    """An int32/uint32/float32 array (token types, scores) as a Python list."""
    if isinstance(value, list):
        return value[:count]
    if not isinstance(value, ArrayRef):
        return None
    dtype = {_INT32: "<i4", _UINT32: "<u4", _FLOAT32: "<f4"}.get(value.type)
    if dtype is None:
        return None
    file.seek(value.offset)
    array = np.frombuffer(file.read(value.n_bytes), dtype=dtype)
    result: list[float] | list[int] = array[:count].tolist()
    return result


def _decode_tokens(raw: list[bytes], notes: list[str]) -> list[str]:
    """Token texts; llama.cpp renames empty tokens, and JSON needs valid UTF-8."""
    tokens: list[str] = []
    seen: set[str] = set()
    repaired = 0
    for index, item in enumerate(raw):
        try:
            text = item.decode("utf-8")
        except UnicodeDecodeError:
            text = item.decode("utf-8", errors="replace")
            repaired += 1
        if not text:
            text = f"[EMPTY_{index}]"  # what llama.cpp calls it
        if text in seen:  # only after a lossy repair: keep ids distinct
            text = f"[INVALID_UTF8_{index}]"
        seen.add(text)
        tokens.append(text)
    if repaired:
        notes.append(f"{repaired} token(s) were not valid UTF-8 and were repaired")
    return tokens


# --- settings llama.cpp derives -----------------------------------------------------------


@dataclass(slots=True)
class TokenizerSettings:
    """What llama.cpp would use: pre-tokenizer, special ids, add flags (key or default)."""

    pre_name: str | None
    pre_spec: PreTokenizerSpec | None
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    bos_id: int | None
    eos_id: int | None
    unk_id: int | None
    pad_id: int | None
    context_length: int | None


def resolve_settings(vocab: GGUFVocab) -> TokenizerSettings:
    """The pre-tokenizer, special ids and BOS/EOS flags llama.cpp derives for this vocab."""
    kv, notes, n_tokens = vocab.kv, vocab.notes, len(vocab.tokens)
    pre_name, spec = _pre_tokenizer_spec(vocab)
    spm = vocab.model == "llama"
    add_bos = _flag(kv, "add_bos_token", spm or bool(spec and spec.add_bos), notes)
    add_eos = _flag(kv, "add_eos_token", False, notes)
    # llama.cpp's defaults when a key is missing: SPM 1/2/0; BPE 11 for BOS and EOS (only
    # worth keeping when llama.cpp would actually add it), none for glm4's BOS.
    bpe_default = None if pre_name in ("glm4", "chatglm-bpe") else 11
    bos_id = _token_id(kv, "bos_token_id", n_tokens, 1 if spm else bpe_default if add_bos else None)
    eos_id = _token_id(kv, "eos_token_id", n_tokens, 2 if spm else 11 if add_eos else None)
    for name, wanted, token_id in (("bos", add_bos, bos_id), ("eos", add_eos, eos_id)):
        if wanted and token_id is None:
            raise GGUFError(
                f"{vocab.path}: tokenizer.ggml.add_{name}_token is true but the GGUF has no "
                f"{name.upper()} token id",
                hint="llama.cpp refuses this file too; re-convert it",
            )
        if wanted and f"tokenizer.ggml.{name}_token_id" not in kv:
            notes.append(f"{name.upper()} id {token_id} is llama.cpp's default (not in the GGUF)")
    arch = kv.get("general.architecture")
    context = kv.get(f"{arch}.context_length") if isinstance(arch, str) else None
    return TokenizerSettings(
        pre_name=pre_name,
        pre_spec=spec,
        add_bos=add_bos,
        add_eos=add_eos,
        add_space_prefix=bool(kv.get("tokenizer.ggml.add_space_prefix", spm)),
        bos_id=bos_id,
        eos_id=eos_id,
        unk_id=_token_id(kv, "unknown_token_id", n_tokens, 0 if spm else None),
        pad_id=_token_id(kv, "padding_token_id", n_tokens, None),
        context_length=context if isinstance(context, int) else None,
    )


def _pre_tokenizer_spec(vocab: GGUFVocab) -> tuple[str | None, PreTokenizerSpec | None]:
    if vocab.model != "gpt2":
        return None, None  # sentencepiece has no pre-tokenizer regex in llama.cpp
    if vocab.pre is None:
        vocab.notes.append("GGUF has no tokenizer.ggml.pre: used llama.cpp's 'default' regexes")
        return "default", PRE_TOKENIZERS["default"]
    spec = PRE_TOKENIZERS.get(vocab.pre)
    if spec is None:
        vocab.notes.append(
            f"pre-tokenizer {vocab.pre!r} is not known here: used the llama3 regex instead; "
            "token ids may differ from llama.cpp's on some texts"
        )
        return vocab.pre, PRE_TOKENIZERS[FALLBACK_PRE]
    return vocab.pre, spec


def _token_id(kv: dict[str, Any], key: str, n_tokens: int, default: int | None) -> int | None:
    """A special token id as llama.cpp resolves it: the key if in range, else the default."""
    value = kv.get(f"tokenizer.ggml.{key}")
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < n_tokens:
        return value
    return default if default is not None and default < n_tokens else None


def _flag(kv: dict[str, Any], key: str, default: bool, notes: list[str]) -> bool:
    value = kv.get(f"tokenizer.ggml.{key}")
    if isinstance(value, (bool, int)):
        return bool(value)
    if default:
        notes.append(f"tokenizer.ggml.{key} is absent: used llama.cpp's default (true)")
    return default


# --- tokenizer.json pieces --------------------------------------------------------------


def effective_token_types(vocab: GGUFVocab) -> list[int]:
    """GGUF token types after llama.cpp's by-name promotions (EOG/FIM -> control, etc.)."""
    types = list(vocab.token_types)
    for index, text in enumerate(vocab.tokens):
        if text in _FORCED_USER_DEFINED and types[index] == TYPE_CONTROL:
            types[index] = TYPE_USER_DEFINED
        elif text in _FORCED_CONTROL and types[index] not in (TYPE_CONTROL, TYPE_USER_DEFINED):
            types[index] = TYPE_CONTROL
    return types


def _added_tokens(vocab: GGUFVocab, types: list[int]) -> list[dict[str, Any]]:
    """Tokens llama.cpp splits out before tokenizing: control, unknown and user-defined."""
    rstrip = _phi3_rstrip(vocab, types)
    added = []
    for index, (text, kind) in enumerate(zip(vocab.tokens, types, strict=True)):
        if kind not in (TYPE_CONTROL, TYPE_UNKNOWN, TYPE_USER_DEFINED):
            continue
        added.append(
            {
                "id": index,
                "content": text,
                "single_word": False,
                "lstrip": False,
                "rstrip": index in rstrip,
                "normalized": False,  # llama.cpp matches the raw text
                "special": kind != TYPE_USER_DEFINED,
            }
        )
    return added


def _phi3_rstrip(vocab: GGUFVocab, types: list[int]) -> set[int]:
    """llama.cpp strips whitespace after Phi-3's special tokens, picked by model name."""
    name = str(vocab.kv.get("general.name", "")).lower()
    if "phi-3" not in name and "phi3" not in name:
        return set()
    keep = {"<unk>", "<s>", "<|endoftext|>"}
    special = (TYPE_CONTROL, TYPE_UNKNOWN, TYPE_USER_DEFINED)
    return {
        index
        for index, (text, kind) in enumerate(zip(vocab.tokens, types, strict=True))
        if (kind in special or text == "</s>") and text not in keep
    }


def _byte_level_pre_tokenizer(spec: PreTokenizerSpec) -> dict[str, Any]:
    splits: list[dict[str, Any]] = [
        {
            "type": "Split",
            "pattern": {"Regex": regex},
            "behavior": "Isolated",  # matches and the text between them are all pieces
            "invert": False,
        }
        for regex in spec.regexes
    ]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True}
    return {"type": "Sequence", "pretokenizers": [*splits, {**byte_level, "use_regex": False}]}


def _bpe_model(
    vocab: GGUFVocab,
    merges: list[list[str]],
    *,
    spm: bool,
    ignore_merges: bool,
    unk: str | None,
) -> dict[str, Any]:
    return {
        "type": "BPE",
        "dropout": None,
        "unk_token": unk,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": spm,
        "byte_fallback": spm,  # <0xNN> tokens, as llama.cpp's SPM resegmentation
        "ignore_merges": ignore_merges,
        "vocab": {text: index for index, text in enumerate(vocab.tokens)},
        "merges": merges,
    }


def _gpt2_merges(vocab: GGUFVocab) -> list[list[str]]:
    """GGUF merges ("a b") as pairs; ones naming tokens not in the vocab are dropped."""
    index = set(vocab.tokens)
    pairs: list[list[str]] = []
    dropped = 0
    for merge in vocab.merges:
        cut = merge.find(" ", 1)  # llama.cpp splits at the first space after the first char
        left, right = (merge[:cut], merge[cut + 1 :]) if cut > 0 else ("", "")
        if left in index and right in index and left + right in index:
            pairs.append([left, right])
        else:
            dropped += 1
    if dropped:
        vocab.notes.append(f"{dropped} merge(s) name tokens outside the vocabulary: dropped")
    return pairs


def _spm_merges(vocab: GGUFVocab) -> list[list[str]]:
    """Merges equivalent to llama.cpp's SPM: join any two pieces that make a token, best score first.

    llama.cpp merges the adjacent pair whose concatenation is the highest-scoring token; a BPE
    whose merge ranks follow that score picks the same pairs (ties between different tokens
    of equal score aside: llama.cpp then prefers the leftmost pair).
    """
    scores = vocab.scores or [0.0] * len(vocab.tokens)
    index = {text: i for i, text in enumerate(vocab.tokens)}
    found: list[tuple[float, int, int, str, str]] = []
    for token_id, text in enumerate(vocab.tokens):
        for cut in range(1, len(text)):
            left, right = text[:cut], text[cut:]
            if left in index and right in index:
                found.append((-scores[token_id], token_id, -cut, left, right))
    found.sort()
    return [[left, right] for *_, left, right in found]


def _spm_normalizer(settings: TokenizerSettings) -> dict[str, Any]:
    """Spaces become "▁"; with add_space_prefix, every text run gets a leading one.

    llama.cpp prepends the space to each text fragment that follows a special token (or
    starts the text); a normalizer runs once per such fragment, so Prepend does the same.
    """
    replace = {"type": "Replace", "pattern": {"String": " "}, "content": SPIECE_SPACE}
    if not settings.add_space_prefix:
        return replace
    return {
        "type": "Sequence",
        "normalizers": [{"type": "Prepend", "prepend": SPIECE_SPACE}, replace],
    }


def _spm_decoder(settings: TokenizerSettings) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {"type": "Replace", "pattern": {"String": SPIECE_SPACE}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
    ]
    if settings.add_space_prefix:
        steps.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    return {"type": "Sequence", "decoders": steps}


def _post_processor(settings: TokenizerSettings, tokens: Sequence[str]) -> dict[str, Any]:
    """BOS/EOS around each sequence exactly when llama.cpp adds them (add_special=True)."""
    bos = tokens[settings.bos_id] if settings.add_bos and settings.bos_id is not None else None
    eos = tokens[settings.eos_id] if settings.add_eos and settings.eos_id is not None else None

    def template(sequence: str, type_id: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if bos is not None:
            items.append({"SpecialToken": {"id": bos, "type_id": type_id}})
        items.append({"Sequence": {"id": sequence, "type_id": type_id}})
        if eos is not None:
            items.append({"SpecialToken": {"id": eos, "type_id": type_id}})
        return items

    special: dict[str, Any] = {}
    for text, token_id in ((bos, settings.bos_id), (eos, settings.eos_id)):
        if text is not None:
            special[text] = {"id": text, "ids": [token_id], "tokens": [text]}
    return {
        "type": "TemplateProcessing",
        "single": template("A", 0),
        "pair": template("A", 0) + template("B", 1),
        "special_tokens": special,
    }


def build_tokenizer_json(vocab: GGUFVocab, settings: TokenizerSettings) -> dict[str, Any]:
    """The `tokenizers` JSON document for this vocabulary."""
    types = effective_token_types(vocab)
    document: dict[str, Any] = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": _added_tokens(vocab, types),
    }
    if vocab.model == "gpt2":
        assert settings.pre_spec is not None  # set for every gpt2 vocab
        document["normalizer"] = None
        document["pre_tokenizer"] = _byte_level_pre_tokenizer(settings.pre_spec)
        document["post_processor"] = _post_processor(settings, vocab.tokens)
        document["decoder"] = {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": True,
            "use_regex": True,
        }
        document["model"] = _bpe_model(
            vocab,
            _gpt2_merges(vocab),
            spm=False,
            ignore_merges=settings.pre_spec.ignore_merges,
            unk=None,  # byte-level: every byte has a token, llama.cpp never emits unk
        )
    else:
        unk = vocab.tokens[settings.unk_id] if settings.unk_id is not None else None
        document["normalizer"] = _spm_normalizer(settings)
        document["pre_tokenizer"] = None
        document["post_processor"] = _post_processor(settings, vocab.tokens)
        document["decoder"] = _spm_decoder(settings)
        document["model"] = _bpe_model(
            vocab, _spm_merges(vocab), spm=True, ignore_merges=False, unk=unk
        )
    return document


# --- config files -------------------------------------------------------------------------


def _special_texts(vocab: GGUFVocab, settings: TokenizerSettings) -> dict[str, str]:
    ids = {
        "bos_token": settings.bos_id,
        "eos_token": settings.eos_id,
        "unk_token": settings.unk_id,
        "pad_token": settings.pad_id,
    }
    return {name: vocab.tokens[token_id] for name, token_id in ids.items() if token_id is not None}


def build_tokenizer_config(
    vocab: GGUFVocab,
    settings: TokenizerSettings,
    added_tokens: list[dict[str, Any]],
    chat_template: str | None,
) -> dict[str, Any]:
    """tokenizer_config.json: flags exactly as llama.cpp applies them, and the template."""
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **_special_texts(vocab, settings),
        "add_bos_token": settings.add_bos,
        "add_eos_token": settings.add_eos,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": {
            str(token["id"]): {key: value for key, value in token.items() if key != "id"}
            for token in added_tokens
        },
    }
    if settings.context_length:
        config["model_max_length"] = settings.context_length
    template = (
        chat_template if chat_template is not None else vocab.kv.get("tokenizer.chat_template")
    )
    if isinstance(template, str):
        config["chat_template"] = template
    return config


@dataclass(slots=True)
class TokenizerFiles:
    """The three files' contents, and what the rebuild had to assume or approximate."""

    documents: dict[str, dict[str, Any]]
    notes: list[str]
    settings: TokenizerSettings


def build_tokenizer_files(
    gguf_path: str | Path, chat_template: str | None = None
) -> TokenizerFiles:
    """Everything `write_tokenizer_files` writes, without writing it."""
    vocab = load_gguf_vocab(gguf_path)
    settings = resolve_settings(vocab)
    tokenizer = build_tokenizer_json(vocab, settings)
    config = build_tokenizer_config(vocab, settings, tokenizer["added_tokens"], chat_template)
    special_map = _special_texts(vocab, settings)
    return TokenizerFiles(
        documents={
            "tokenizer.json": tokenizer,
            "tokenizer_config.json": config,
            "special_tokens_map.json": special_map,
        },
        notes=vocab.notes,
        settings=settings,
    )


def tokenizer_notes(gguf_path: str | Path) -> list[str]:
    """What rebuilding this GGUF's tokenizer would assume or approximate (empty: nothing)."""
    return build_tokenizer_files(gguf_path).notes


def write_tokenizer_files(
    gguf_path: Path, out_dir: Path, chat_template: str | None = None
) -> list[str]:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json; return their names."""
    files = build_tokenizer_files(gguf_path, chat_template)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, document in files.documents.items():
        text = json.dumps(
            document, ensure_ascii=False, indent=None if name == "tokenizer.json" else 2
        )
        (out_dir / name).write_text(text + "\n", encoding="utf-8")
    return list(files.documents)
