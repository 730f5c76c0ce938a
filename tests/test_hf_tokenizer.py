"""The HF tokenizer rebuilt from a GGUF gives llama.cpp's token ids, BOS/EOS included.

llama.cpp is the reference: one subprocess per session (the llama.cpp runtime's Python)
loads every GGUF with `vocab_only=True` and tokenizes every text, with `add_bos=True`
(llama.cpp's add_special: BOS/EOS only where the vocab says so) and with `add_bos=False`,
both with `special=True` (control tokens in the text are parsed, as the HF side does).
"""

from __future__ import annotations

import json
import subprocess
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import jinja2
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from converters.errors import GGUFError
from converters.gguf.header import read_header
from converters.hf_rebuild.tokenizer import (
    PRE_TOKENIZERS,
    UnsupportedTokenizerError,
    build_tokenizer_files,
    tokenizer_notes,
    write_tokenizer_files,
)

tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")

# --- texts ---------------------------------------------------------------------------

PLAIN_TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll've DON'T we'd You're It'S",
    "def add(a, b):\n    return a + b\n\n\nclass Foo:\n\tdef bar(self):\n\t\tpass\n",
    'int main() {\n  printf("%d\\n", 42);\n  return 0;\n}',
    '{"key": [1, 2.5, null], "nested": {"a": true}}',
    "12345 3.14159 1,234,567.89 0x1F -42 2024-01-15 10:30:00",
    "9999999999999999 007 1e-10 ½ ² ① ٣",
    "Ça va? Élève naïve façade. Größe Straße. ¿Dónde está el niño?",
    "Привет, как дела? Ελληνικά γράμματα. مرحبا بالعالم. שלום עולם",
    "नमस्ते दुनिया। Tiếng Việt có dấu. ภาษาไทย",
    "你好，世界！今天天气很好。",  # noqa: RUF001 (fullwidth punctuation on purpose)
    "こんにちは世界、カタカナとひらがな。한국어 안녕하세요 세계",
    "emoji 👋🌍🚀 family 👨\u200d👩\u200d👧\u200d👦 flag 🇫🇷 ❤️",
    "combining e\u0301 n\u0303 a\u0308 vs é ñ ä",
    "a    b     c",
    "   leading spaces",
    "trailing spaces   ",
    "\n\n\nnewlines\n\n",
    "\t\ttabs\tand\t\ttabs",
    "line1\r\nline2\rline3",
    " \n \t \n ",
    "non\u00a0breaking\u3000ideographic\u2003em\u200bzero",
    "~~~ ``` $$$ ^^^ ||| <<>> === +++ @@@ ### %%%",
    "Hello~world a~b ~/path $HOME 5+3=8 x^2 a|b `code`",
    "∑∫√π≈≠≤≥ ∞ → ← ©®™ €£¥",
    "HelloWORLD camelCase snake_case CONSTANT_CASE PascalCase iPhone",
    "https://example.com/path?query=1&b=2#frag user@example.com",
    "a" * 120,
    "ab " * 40,
    "",
    " ",
    "\x07bell\x00nul\x1bescape",
    "'s 't 're 've 'm 'll 'd",
    "Mixed: 中文English123日本語!",
    "a zebra~мир x~é ~~м",
]
SPECIAL_TEXTS = [
    "<|im_start|>user\nhi<|im_end|>\n",
    "<|endoftext|>",
    "x<|im_end|>y",
    "<|im_start|><|im_start|>  spaced <|im_end|>  ",
    "partial <|im_start and <|im_end| and im_end|>",
    "<s>hello</s> <unk> <tool> x<tool>y",
]
TEXTS = PLAIN_TEXTS + SPECIAL_TEXTS

CONVERSATIONS: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "Hello!"}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3.5 * 2?"},
    ],
    [
        {"role": "user", "content": "Write code:\n```python\ndef f(x):\n\treturn x**2\n```"},
        {"role": "assistant", "content": "  Sure — here it is.\n\n"},
        {"role": "user", "content": "Traduis en français : « bonjour » 你好 👋"},
    ],
    [{"role": "user", "content": "<|im_start|>tricky<|im_end|> text"}],
]

# --- synthetic GGUFs ---------------------------------------------------------------------

CORPUS = " ".join(PLAIN_TEXTS[:14]) + " hello world the of and to in is it you that he was for on"
GPT2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool>"]


def _write_gguf(path: Path, tokenizer: dict[str, Any]) -> Path:
    """A llama-architecture GGUF with hyper-parameters and a tokenizer, and no tensors."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(512)
    writer.add_embedding_length(64)
    writer.add_block_count(1)
    writer.add_feed_forward_length(128)
    writer.add_head_count(4)
    writer.add_head_count_kv(4)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(16)
    writer.add_vocab_size(len(tokenizer["tokens"]))
    writer.add_tokenizer_model(tokenizer["model"])
    if tokenizer.get("pre") is not None:
        writer.add_tokenizer_pre(tokenizer["pre"])
    writer.add_token_list(tokenizer["tokens"])
    writer.add_token_types(tokenizer["types"])
    if "scores" in tokenizer:
        writer.add_token_scores(tokenizer["scores"])
    if "merges" in tokenizer:
        writer.add_token_merges(tokenizer["merges"])
    for key, name in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding")):
        if f"{key}_id" in tokenizer:
            writer.add_uint32(f"tokenizer.ggml.{name}_token_id", tokenizer[f"{key}_id"])
    for key in ("add_bos_token", "add_eos_token", "add_space_prefix"):
        if key in tokenizer:
            writer.add_bool(f"tokenizer.ggml.{key}", tokenizer[key])
    if "chat_template" in tokenizer:
        writer.add_chat_template(tokenizer["chat_template"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _gpt2_vocab() -> dict[str, Any]:
    """A small byte-level BPE, trained here: 256 byte symbols, merges, specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        special_tokens=GPT2_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS] * 3, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    tokens = [text for text, _ in sorted(model["vocab"].items(), key=lambda item: item[1])]
    merges = [" ".join(pair) if isinstance(pair, list) else pair for pair in model["merges"]]
    # Probes the trainer cannot learn: "~м" crosses a split some regexes allow (deepseek-v3
    # isolates '~' as a symbol); " zebra" has no merges, so only ignore_merges (llama3)
    # can produce it.
    for merge in ("Ð ¼", "~ Ð¼"):
        if merge.replace(" ", "") not in tokens:
            tokens.append(merge.replace(" ", ""))
            merges.append(merge)
    tokens.append("Ġzebra")
    types = [3 if t in GPT2_SPECIALS[:3] else 4 if t == "<tool>" else 1 for t in tokens]
    return {"model": "gpt2", "tokens": tokens, "types": types, "merges": merges}


def _spm_vocab() -> dict[str, Any]:
    """A small sentencepiece-style vocab: <unk> <s> </s>, 256 byte tokens, scored pieces."""
    words = sorted({w for w in CORPUS.split() if w.isascii()})
    pieces: dict[str, None] = {}
    for char in sorted({c for w in words for c in w}):
        pieces[char] = None
    pieces["\u2581"] = None
    for word in ["\u2581" + w for w in words]:
        for end in range(2, len(word) + 1):
            pieces[word[:end]] = None  # every prefix: each piece is reachable by one merge
        for start in range(1, len(word) - 1):
            pieces[word[start : start + 2]] = None
    for run in ("\u2581\u2581", "\u2581\u2581\u2581\u2581"):
        pieces[run] = None
    # Scores fall with length, shuffled within a length (deterministically) so that
    # merge order is not just alphabetical.
    ordered = sorted(pieces, key=lambda p: (len(p), zlib.crc32(p.encode()), p))
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *ordered, "<tool>"]
    types = [2, 3, 3, *[6] * 256, *[1] * len(ordered), 4]
    scores = [0.0, 0.0, 0.0, *[0.0] * 256, *(-float(i) for i in range(len(ordered))), 0.0]
    return {
        "model": "llama",
        "tokens": tokens,
        "types": types,
        "scores": scores,
        "bos_id": 1,
        "eos_id": 2,
        "unk_id": 0,
    }


# Pre-tokenizers exercised on the synthetic byte-level vocab: one per llama.cpp family.
GPT2_PRES = [
    "default",
    "gpt-2",
    "llama-bpe",
    "dbrx",
    "qwen2",
    "qwen35",
    "smollm",
    "starcoder",
    "deepseek-llm",
    "deepseek-coder",
    "deepseek-v3",
    "falcon",
    "gpt-4o",
    "tekken",
    "poro-chat",
    "viking",
    "bailingmoe",
    "seed-coder",
    "exaone-moe",
    "jais-2",
    "minicpm5",
    "laguna",
    "ufakzeka",
]
REQUIRED_PRES = {"default", "gpt-2", "llama-bpe", "qwen2", "smollm", "deepseek-llm", "starcoder"}
REQUIRED_PRES |= {"falcon", "gpt-4o"}


@dataclass
class Case:
    """One GGUF, its rebuilt HF folder, the texts to compare and llama.cpp's answers."""

    name: str
    gguf: Path
    folder: Path
    texts: list[str]
    spm: bool = False
    reference: dict[str, Any] = field(default_factory=dict)


def _make_cases(root: Path, smollm2: Path) -> dict[str, Case]:
    cases: dict[str, Case] = {}

    def add(name: str, gguf_path: Path, texts: list[str], *, spm: bool = False) -> None:
        folder = root / name
        write_tokenizer_files(gguf_path, folder)
        cases[name] = Case(name, gguf_path, folder, texts, spm=spm)

    add("smollm2", smollm2, TEXTS + _rendered_prompts(smollm2))
    gpt2 = _gpt2_vocab()
    for pre in GPT2_PRES:
        path = _write_gguf(root / f"gpt2-{pre}.gguf", {**gpt2, "pre": pre})
        add(f"gpt2-{pre}", path, TEXTS)
    flags = {"bos_id": 1, "eos_id": 2, "add_bos_token": True, "add_eos_token": True}
    add(
        "gpt2-bos-eos", _write_gguf(root / "gpt2-be.gguf", {**gpt2, "pre": "qwen2", **flags}), TEXTS
    )
    # llama-bpe without an add_bos_token key: llama.cpp's default (BOS added) must carry over.
    no_key = {**gpt2, "pre": "llama-bpe", "bos_id": 1, "eos_id": 2}
    add("gpt2-llama3-default-bos", _write_gguf(root / "gpt2-l3.gguf", no_key), TEXTS)
    spm = _spm_vocab()
    for name, extra in {
        "spm-bos": {"add_bos_token": True},
        "spm-nobos": {"add_bos_token": False},
        "spm-default": {},
        "spm-noprefix": {"add_space_prefix": False, "add_bos_token": True},
        "spm-eos": {"add_bos_token": True, "add_eos_token": True},
    }.items():
        add(name, _write_gguf(root / f"{name}.gguf", {**spm, **extra}), TEXTS, spm=True)
    return cases


def _render(template: str, messages: list[dict[str, str]], generation: bool) -> str:
    """Render a chat template the way transformers does (sandbox, trim and lstrip blocks)."""
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    return env.from_string(template).render(messages=messages, add_generation_prompt=generation)


def _rendered_prompts(gguf_path: Path) -> list[str]:
    template = build_tokenizer_files(gguf_path).documents["tokenizer_config.json"]["chat_template"]
    return [_render(template, conv, gen) for conv in CONVERSATIONS for gen in (True, False)]


LLAMACPP_SCRIPT = r"""
import json, sys
import llama_cpp

jobs = json.load(open(sys.argv[1]))
results = {}
for name, job in jobs.items():
    try:
        llm = llama_cpp.Llama(model_path=job["path"], vocab_only=True, verbose=False)
    except Exception as exc:  # an older llama.cpp may not know a pre-tokenizer name
        results[name] = {"error": repr(exc)}
        continue
    entry = {"bos": llm.token_bos(), "eos": llm.token_eos(), "with": [], "without": [], "detok": []}
    for text in job["texts"]:
        data = text.encode("utf-8")
        without = llm.tokenize(data, add_bos=False, special=True)
        entry["with"].append(llm.tokenize(data, add_bos=True, special=True))
        entry["without"].append(without)
        entry["detok"].append(llm.detokenize(without, special=True).decode("utf-8", "replace"))
    results[name] = entry
    del llm
json.dump(results, open(sys.argv[2], "w"))
"""


@pytest.fixture(scope="session")
def cases(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> dict[str, Case]:
    return _make_cases(tmp_path_factory.mktemp("hf_tokenizer"), smollm2_gguf)


@pytest.fixture(scope="session")
def reference(
    cases: dict[str, Case], llamacpp_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Case]:
    """Every case, with llama.cpp's ids filled in by one subprocess."""
    work = tmp_path_factory.mktemp("llamacpp")
    jobs = {name: {"path": str(case.gguf), "texts": case.texts} for name, case in cases.items()}
    (work / "jobs.json").write_text(json.dumps(jobs), encoding="utf-8")
    script = work / "tokenize.py"
    script.write_text(LLAMACPP_SCRIPT, encoding="utf-8")
    subprocess.run(
        [str(llamacpp_python), str(script), str(work / "jobs.json"), str(work / "out.json")],
        check=True,
        capture_output=True,
        timeout=600,
    )
    results = json.loads((work / "out.json").read_text(encoding="utf-8"))
    for name, case in cases.items():
        case.reference = results[name]
    return cases


def _hf_fast(case: Case) -> Any:
    return tokenizers.Tokenizer.from_file(str(case.folder / "tokenizer.json"))


def _mismatches(case: Case, encode: Any) -> Iterator[str]:
    """Every (text, mode) where our ids differ from llama.cpp's."""
    for index, text in enumerate(case.texts):
        for mode, add_special in (("with", True), ("without", False)):
            ours = encode(text, add_special)
            theirs = case.reference[mode][index]
            if ours != theirs:
                yield f"{case.name} [{mode}] {text[:40]!r}: ours {ours[:12]} llama.cpp {theirs[:12]}"


def _check(case: Case, encode: Any) -> None:
    if "error" in case.reference:
        pytest.skip(f"this llama.cpp cannot load {case.name}: {case.reference['error']}")
    problems = list(_mismatches(case, encode))
    assert not problems, f"{len(problems)} mismatches:\n" + "\n".join(problems[:20])


def _case_names() -> list[str]:
    names = ["smollm2", *(f"gpt2-{pre}" for pre in GPT2_PRES)]
    names += ["gpt2-bos-eos", "gpt2-llama3-default-bos"]
    return [*names, "spm-bos", "spm-nobos", "spm-default", "spm-noprefix", "spm-eos"]


# --- agreement with llama.cpp -----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", _case_names())
def test_tokenizers_json_matches_llamacpp(reference: dict[str, Case], name: str) -> None:
    case = reference[name]
    if name.removeprefix("gpt2-") in REQUIRED_PRES and "error" in case.reference:
        pytest.fail(f"llama.cpp cannot load the {name} GGUF: {case.reference['error']}")
    fast = _hf_fast(case)
    _check(case, lambda text, special: fast.encode(text, add_special_tokens=special).ids)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["smollm2", "gpt2-qwen2", "gpt2-bos-eos", "gpt2-llama3-default-bos", "spm-bos", "spm-noprefix", "spm-eos"]
)  # fmt: skip
def test_auto_tokenizer_matches_llamacpp(reference: dict[str, Case], name: str) -> None:
    case = reference[name]
    tok = transformers.AutoTokenizer.from_pretrained(case.folder)
    _check(case, lambda text, special: tok(text, add_special_tokens=special)["input_ids"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smollm2", "gpt2-smollm", "gpt2-llama-bpe", "gpt2-gpt-4o"])
def test_byte_level_decode_round_trips_like_llamacpp(reference: dict[str, Case], name: str) -> None:
    case = reference[name]
    fast = _hf_fast(case)
    for index, text in enumerate(case.texts):
        ids = case.reference["without"][index]
        decoded = fast.decode(ids, skip_special_tokens=False)
        assert decoded == text
        assert decoded == case.reference["detok"][index]


def test_spm_decode_round_trips(cases: dict[str, Case]) -> None:
    for name in ("spm-bos", "spm-noprefix"):
        fast = _hf_fast(cases[name])
        for text in PLAIN_TEXTS:
            ids = fast.encode(text, add_special_tokens=True).ids
            assert fast.decode(ids, skip_special_tokens=True) == text, (name, text)


@pytest.mark.slow
def test_chat_template_through_transformers_matches_llamacpp(reference: dict[str, Case]) -> None:
    case = reference["smollm2"]
    tok = transformers.AutoTokenizer.from_pretrained(case.folder)
    template = tok.chat_template
    for conv in CONVERSATIONS:
        for generation in (True, False):
            rendered = _render(template, conv, generation)
            ours = tok.apply_chat_template(conv, tokenize=True, add_generation_prompt=generation)
            ours = ours["input_ids"] if not isinstance(ours, list) else ours
            text_ours = tok.apply_chat_template(
                conv, tokenize=False, add_generation_prompt=generation
            )
            theirs = case.reference["without"][case.texts.index(rendered)]
            assert text_ours == rendered
            assert ours == theirs


# --- BOS/EOS flags, without llama.cpp --------------------------------------------------


@pytest.mark.parametrize(
    ("name", "bos", "eos"),
    [
        ("spm-bos", 1, None),
        ("spm-nobos", None, None),
        ("spm-default", 1, None),  # no key: llama.cpp adds BOS to a sentencepiece vocab
        ("spm-eos", 1, 2),
        ("gpt2-qwen2", None, None),
        ("gpt2-bos-eos", 1, 2),
        ("gpt2-llama3-default-bos", 1, None),  # no key: llama-bpe defaults to BOS
    ],
)
def test_add_bos_and_eos_change_ids_exactly(
    cases: dict[str, Case], name: str, bos: int | None, eos: int | None
) -> None:
    fast = _hf_fast(cases[name])
    tok = transformers.AutoTokenizer.from_pretrained(cases[name].folder)
    for text in ["Hello world", "x<|im_end|>y", ""]:
        plain = fast.encode(text, add_special_tokens=False).ids
        expected = [bos] * (bos is not None) + plain + [eos] * (eos is not None)
        assert fast.encode(text, add_special_tokens=True).ids == expected
        assert tok(text)["input_ids"] == expected
    config = json.loads((cases[name].folder / "tokenizer_config.json").read_text())
    assert (config["add_bos_token"], config["add_eos_token"]) == (bos is not None, eos is not None)


def test_default_flags_are_reported(cases: dict[str, Case]) -> None:
    notes = tokenizer_notes(cases["spm-default"].gguf)
    assert any("add_bos_token is absent" in note for note in notes)
    assert tokenizer_notes(cases["spm-bos"].gguf) == []


# --- config files ------------------------------------------------------------------------


def test_smollm2_config_files(cases: dict[str, Case]) -> None:
    folder = cases["smollm2"].folder
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    template = read_header(cases["smollm2"].gguf).kv["tokenizer.chat_template"]
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert config["add_bos_token"] is False
    assert config["add_eos_token"] is False
    assert config["eos_token"] == "<|im_end|>"
    assert config["bos_token"] == "<|im_start|>"
    assert config["unk_token"] == "<|endoftext|>"
    assert config["pad_token"] == "<|im_end|>"
    assert config["model_max_length"] == 8192
    assert config["clean_up_tokenization_spaces"] is False
    assert config["chat_template"] == template
    special_map = json.loads((folder / "special_tokens_map.json").read_text(encoding="utf-8"))
    assert special_map == {
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|im_end|>",
    }
    document = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    added = {token["content"]: token for token in document["added_tokens"]}
    assert len(added) == 17 and added["<|im_end|>"]["id"] == 2 and added["<|im_end|>"]["special"]
    assert len(document["model"]["vocab"]) == 49152


def test_smollm2_auto_tokenizer_settings(cases: dict[str, Case]) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(cases["smollm2"].folder)
    assert len(tok) == 49152
    assert (tok.eos_token, tok.eos_token_id) == ("<|im_end|>", 2)
    assert tok.add_bos_token is False
    assert tok("hi")["input_ids"] == tok("hi", add_special_tokens=False)["input_ids"]
    assert tok.decode([1, 4093, 198, 6004, 2], skip_special_tokens=True) == "user\nhi"


def test_chat_template_argument_wins(tmp_path: Path, smollm2_gguf: Path) -> None:
    names = write_tokenizer_files(smollm2_gguf, tmp_path, chat_template="{{ messages }}")
    assert names == ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
    assert all((tmp_path / name).is_file() for name in names)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["chat_template"] == "{{ messages }}"


def test_user_defined_tokens_are_added_but_not_special(cases: dict[str, Case]) -> None:
    for name in ("gpt2-qwen2", "spm-bos"):
        fast = _hf_fast(cases[name])
        tool_id = fast.token_to_id("<tool>")
        assert fast.encode("a<tool>b", add_special_tokens=False).ids.count(tool_id) == 1
        assert "<tool>" in fast.decode(fast.encode("a<tool>b").ids, skip_special_tokens=True)


def test_every_known_pre_tokenizer_builds(tmp_path: Path) -> None:
    gpt2 = _gpt2_vocab()
    for pre in sorted(PRE_TOKENIZERS):
        path = _write_gguf(tmp_path / "v.gguf", {**gpt2, "pre": pre})
        write_tokenizer_files(path, tmp_path / "out")
        fast = tokenizers.Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json"))
        for text in TEXTS:
            ids = fast.encode(text, add_special_tokens=False).ids
            assert fast.decode(ids, skip_special_tokens=False) == text, pre


def test_unknown_pre_tokenizer_falls_back_to_llama3_and_says_so(tmp_path: Path) -> None:
    path = _write_gguf(tmp_path / "odd.gguf", {**_gpt2_vocab(), "pre": "brand-new-pre"})
    files = build_tokenizer_files(path)
    assert any("'brand-new-pre'" in note and "llama3" in note for note in files.notes)
    assert files.settings.pre_spec == PRE_TOKENIZERS["llama-bpe"]


def test_missing_pre_uses_llamacpp_default(tmp_path: Path) -> None:
    path = _write_gguf(tmp_path / "nopre.gguf", _gpt2_vocab())
    files = build_tokenizer_files(path)
    assert files.settings.pre_name == "default"
    assert any("no tokenizer.ggml.pre" in note for note in files.notes)


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["bert", "t5", "rwkv", "plamo2"])
def test_unsupported_tokenizer_model_is_a_clear_error(tmp_path: Path, model: str) -> None:
    vocab = {"model": model, "tokens": ["[PAD]", "a", "b"], "types": [3, 1, 1]}
    path = _write_gguf(tmp_path / f"{model}.gguf", vocab)
    with pytest.raises(UnsupportedTokenizerError) as caught:
        write_tokenizer_files(path, tmp_path / "out")
    error = caught.value
    assert isinstance(error, GGUFError)
    assert f"tokenizer model {model!r} is not supported" in error.message
    assert "\n" not in error.one_line() and error.hint
    assert not (tmp_path / "out").exists()


def test_gguf_without_tokenizer_is_an_error(tmp_path: Path) -> None:
    writer = gguf.GGUFWriter(str(tmp_path / "bare.gguf"), "llama")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(GGUFError, match="has no tokenizer"):
        write_tokenizer_files(tmp_path / "bare.gguf", tmp_path / "out")


def test_add_bos_without_bos_id_uses_llamacpp_default_or_fails(tmp_path: Path) -> None:
    # llama.cpp's BPE default BOS id is 11; glm4 has none, and llama.cpp refuses the file.
    vocab = {**_gpt2_vocab(), "pre": "gpt-2", "add_bos_token": True}
    files = build_tokenizer_files(_write_gguf(tmp_path / "nobos.gguf", vocab))
    assert files.settings.bos_id == 11
    assert any("BOS id 11 is llama.cpp's default" in note for note in files.notes)
    path = _write_gguf(tmp_path / "glm.gguf", {**vocab, "pre": "glm4"})
    with pytest.raises(GGUFError, match="no BOS token id"):
        write_tokenizer_files(path, tmp_path / "out")
