"""The fast GGUF header reader, cross-checked against gguf-py on synthetic and real files."""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Sequence
from pathlib import Path

import gguf
import numpy as np
import pytest

from converters.errors import GGUFError
from converters.gguf.header import ArrayRef, read_gguf_info, read_header
from converters.gguf.types import GGML_BLOCK_SIZES, GGML_TYPE_NAMES, LLAMA_FILE_TYPE_NAMES

TOKENS = ["<unk>", "<s>", "</s>", "<|eot_id|>", "<|tool|>", "a", "b", "é", "ab"]
TOKEN_TYPES = [2, 3, 3, 3, 4, 1, 1, 1, 1]
TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"
TOOL_TEMPLATE = "{{ tools }}"
SMOLLM2_FINGERPRINT = "sha256:e3f79317b457a91937391f6e0ee99d97ba2a3adae02bc26db8f59710ddb27ffe"


def write_tiny_llama(path: Path, *, alignment: int | None = None, vocab_size: bool = True) -> Path:
    """A two-block llama with F32/F16/Q8_0 tensors and a full tokenizer."""
    writer = gguf.GGUFWriter(str(path), "llama")
    if alignment:
        writer.add_custom_alignment(alignment)
    writer.add_name("Tiny Llama")
    writer.add_organization("acme")
    writer.add_basename("tiny-llama")
    writer.add_size_label("1M")
    writer.add_tags(["test", "tiny"])
    writer.add_array("general.long_list", list(range(100)))  # too long for identity
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_quantization_version(2)
    writer.add_sampling_temp(0.6)
    writer.add_sampling_top_k(40)
    writer.add_sampling_sequence("edkypmxt")
    writer.add_context_length(256)
    writer.add_embedding_length(64)
    writer.add_block_count(2)
    writer.add_feed_forward_length(128)
    writer.add_head_count(4)
    writer.add_head_count_kv([2, 1])  # per layer, as some archs write it
    writer.add_rope_freq_base(500000.0)
    writer.add_rope_dimension_count(16)
    writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
    writer.add_rope_scaling_factor(2.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_sliding_window(128)
    writer.add_expert_count(4)
    writer.add_expert_used_count(2)
    writer.add_bool("llama.use_parallel_residual", True)
    writer.add_array("llama.swa_layers", [True, False])
    writer.add_array("llama.big_table", list(range(2000)))  # > 1024: kept as an ArrayRef
    writer.add_array("llama.nested", [[1, 2], [3]])
    if vocab_size:
        writer.add_vocab_size(len(TOKENS))
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(TOKENS)
    writer.add_token_types(TOKEN_TYPES)
    writer.add_token_scores([float(-i) for i in range(len(TOKENS))])
    writer.add_token_merges(["a b"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_eot_token_id(3)
    writer.add_eom_token_id(4)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(
        [{"name": "default", "template": TEMPLATE}, {"name": "tool_use", "template": TOOL_TEMPLATE}]
    )
    rng = np.random.default_rng(0)
    embed = rng.standard_normal((len(TOKENS), 64)).astype(np.float16)
    writer.add_tensor("token_embd.weight", embed)
    for block in range(2):
        weight = rng.standard_normal((64, 64)).astype(np.float32)
        q8 = gguf.quants.quantize(weight, gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(
            f"blk.{block}.attn_q.weight", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0
        )
        writer.add_tensor(f"blk.{block}.attn_norm.weight", np.ones(64, dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


# --- synthetic files -------------------------------------------------------------


def test_tiny_llama_info_fields(tiny_llama: Path) -> None:
    info = read_gguf_info(tiny_llama)
    assert info.version == 3
    assert info.architecture == "llama"
    assert (info.file_type, info.file_type_name) == (7, "Q8_0")
    assert info.tensor_count == 6
    assert info.quantization_mix == {"F32": 3, "Q8_0": 2, "F16": 1}
    assert info.parameter_count == len(TOKENS) * 64 + 2 * 64 * 64 + 3 * 64
    assert info.tied_embeddings is True
    assert info.context_length == 256
    assert info.embedding_length == 64
    assert info.block_count == 2
    assert info.feed_forward_length == 128
    assert info.head_count == 4
    assert info.head_count_kv == 2  # max of the per-layer list
    assert info.arch_keys["attention.head_count_kv"] == [2, 1]
    assert info.head_dim == 16
    assert info.vocab_size == len(TOKENS)
    assert info.rope_freq_base == 500000.0
    assert info.rope_dimension_count == 16
    assert info.rope_scaling == {"type": "linear", "factor": 2.0}
    assert info.norm_eps == float(np.float32(1e-5))  # exactly the stored float32
    assert info.sliding_window == 128
    assert (info.expert_count, info.expert_used_count) == (4, 2)
    assert info.arch_keys["use_parallel_residual"] is True
    assert info.arch_keys["swa_layers"] == [True, False]
    assert info.arch_keys["nested"] == [[1, 2], [3]]
    assert "big_table" not in info.arch_keys


def test_tiny_llama_tokenizer_fields(tiny_llama: Path) -> None:
    info = read_gguf_info(tiny_llama)
    assert (info.tokenizer_model, info.tokenizer_pre) == ("llama", "default")
    assert info.token_count == len(TOKENS)
    assert (info.bos_token_id, info.eos_token_id, info.eot_token_id) == (1, 2, 3)
    assert (info.eom_token_id, info.padding_token_id) == (4, 0)
    assert (info.bos_token, info.eos_token, info.eot_token) == ("<s>", "</s>", "<|eot_id|>")
    assert info.special_token_ids == {"<s>": 1, "</s>": 2, "<|eot_id|>": 3, "<|tool|>": 4}
    assert (info.add_bos_token, info.add_eos_token) == (True, False)
    assert info.chat_template == TEMPLATE
    assert info.chat_templates == {"tool_use": TOOL_TEMPLATE}
    assert info.tokenizer_fingerprint is not None
    assert info.tokenizer_fingerprint.startswith("sha256:")


def test_tiny_llama_identity_and_sampling(tiny_llama: Path) -> None:
    info = read_gguf_info(tiny_llama)
    assert info.identity["general.architecture"] == "llama"
    assert info.identity["general.name"] == "Tiny Llama"
    assert info.identity["general.organization"] == "acme"
    assert info.identity["general.basename"] == "tiny-llama"
    assert info.identity["general.size_label"] == "1M"
    assert info.identity["general.tags"] == ["test", "tiny"]
    assert "general.long_list" not in info.identity
    assert info.sampling == {"temp": float(np.float32(0.6)), "top_k": 40, "sequence": "edkypmxt"}
    assert isinstance(info.sampling["temp"], float)


def test_vocab_size_falls_back_to_token_count(tmp_path: Path) -> None:
    info = read_gguf_info(write_tiny_llama(tmp_path / "novocab.gguf", vocab_size=False))
    assert info.vocab_size == len(TOKENS)


def test_fingerprint_is_the_hash_of_the_token_region(tiny_llama: Path) -> None:
    header = read_header(tiny_llama)
    ref = header.kv["tokenizer.ggml.tokens"]
    assert isinstance(ref, ArrayRef)
    expected = b"".join(struct.pack("<Q", len(t.encode())) + t.encode() for t in TOKENS)
    assert tiny_llama.read_bytes()[ref.offset : ref.offset + ref.n_bytes] == expected
    assert (
        read_gguf_info(tiny_llama).tokenizer_fingerprint
        == "sha256:" + hashlib.sha256(expected).hexdigest()
    )


def test_big_arrays_stay_undecoded(tiny_llama: Path) -> None:
    kv = read_header(tiny_llama).kv
    for key in (
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.scores",
    ):
        assert isinstance(kv[key], ArrayRef), key
    big_table = kv["llama.big_table"]
    assert isinstance(big_table, ArrayRef)
    assert (big_table.count, big_table.n_bytes) == (2000, 8000)
    assert kv["general.long_list"] == list(range(100))


def file_bytes(path: Path, offset: int, n_bytes: int) -> bytes:
    with path.open("rb") as file:
        file.seek(offset)
        return file.read(n_bytes)


def assert_matches_gguf_reader(path: Path, reader: gguf.GGUFReader) -> None:
    """Our header agrees with gguf-py on every key, tensor and the data offset."""
    header = read_header(path)
    fields = {k: f for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert list(header.kv) == list(fields)
    for key, field in fields.items():
        ours = header.kv[key]
        if isinstance(ours, ArrayRef):
            assert ours.count == len(field.data), key
            if ours.type != gguf.GGUFValueType.STRING:
                raw = b"".join(field.parts[i].tobytes() for i in field.data)
                assert file_bytes(path, ours.offset, ours.n_bytes) == raw, key
        elif len(field.types) > 2:  # nested arrays: gguf-py flattens them; compare the flat values
            flat = [v for sub in ours for v in sub]
            assert flat == [field.parts[i].tolist()[0] for i in field.data], key
        else:
            assert ours == field.contents(), key
    assert header.data_offset == reader.data_offset
    assert [t.name for t in header.tensors] == [t.name for t in reader.tensors]
    for ours_t, theirs in zip(header.tensors, reader.tensors, strict=True):
        assert ours_t.shape == theirs.shape.tolist()
        assert ours_t.ggml_type == theirs.tensor_type.name
        assert ours_t.offset == theirs.data_offset - reader.data_offset
        assert ours_t.n_bytes == theirs.n_bytes
        assert ours_t.n_elements == theirs.n_elements


def test_tiny_llama_matches_gguf_reader(tiny_llama: Path) -> None:
    reader = gguf.GGUFReader(tiny_llama)
    assert_matches_gguf_reader(tiny_llama, reader)
    tokens = reader.fields["tokenizer.ggml.tokens"]
    header = read_header(tiny_llama)
    assert len(header.token_offsets) == len(tokens.data)


def test_custom_alignment(tmp_path: Path) -> None:
    path = write_tiny_llama(tmp_path / "aligned.gguf", alignment=256)
    header = read_header(path)
    assert header.alignment == 256
    assert header.data_offset % 256 == 0
    assert_matches_gguf_reader(path, gguf.GGUFReader(path))


def test_version_2_is_read(tiny_llama: Path, tmp_path: Path) -> None:
    path = tmp_path / "v2.gguf"
    data = bytearray(tiny_llama.read_bytes())
    data[4:8] = struct.pack("<I", 2)
    path.write_bytes(bytes(data))
    assert read_gguf_info(path).version == 2


def test_type_tables_match_gguf_py() -> None:
    for qtype, (block, size) in gguf.GGML_QUANT_SIZES.items():
        assert GGML_TYPE_NAMES[int(qtype)] == qtype.name
        assert GGML_BLOCK_SIZES[qtype.name] == (block, size)
    for ftype in gguf.LlamaFileType:
        if ftype != gguf.LlamaFileType.GUESSED:
            expected = ftype.name.removeprefix("MOSTLY_").removeprefix("ALL_")
            assert LLAMA_FILE_TYPE_NAMES[int(ftype)] == expected


# --- the real SmolLM2 file -------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2_reader(smollm2_gguf: Path) -> gguf.GGUFReader:
    return gguf.GGUFReader(smollm2_gguf)  # ~2.3 s: built once for the module


def test_smollm2_info(smollm2_gguf: Path) -> None:
    info = read_gguf_info(smollm2_gguf)
    assert info.version == 3
    assert info.architecture == "llama"
    assert (info.file_type, info.file_type_name) == (3, "Q4_1")
    assert info.block_count == 30
    assert info.embedding_length == 576
    assert (info.head_count, info.head_count_kv) == (9, 3)
    assert info.head_dim == 64
    assert info.feed_forward_length == 1536
    assert info.vocab_size == info.token_count == 49152
    assert info.context_length == 8192
    assert info.rope_freq_base == 100000.0
    assert info.rope_dimension_count == 64
    assert info.norm_eps == float(np.float32(1e-5))
    assert info.quantization_mix == {"Q4_1": 210, "F32": 61, "Q8_0": 1}
    assert info.tensor_count == 272
    assert info.parameter_count == 134_515_008
    assert info.tied_embeddings is True
    assert info.data_offset == 1_785_664
    assert (info.tokenizer_model, info.tokenizer_pre) == ("gpt2", "smollm")
    assert info.add_bos_token is False
    assert info.add_eos_token is None
    assert (info.bos_token_id, info.eos_token_id, info.padding_token_id) == (1, 2, 2)
    assert (info.bos_token, info.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert info.special_token_ids["<|im_end|>"] == 2
    assert len(info.special_token_ids) == 17
    assert info.chat_template is not None and "<|im_start|>" in info.chat_template
    assert info.identity["general.organization"] == "HuggingFaceTB"
    assert info.identity["general.basename"] == "smollm2"
    assert info.identity["general.size_label"] == "135M"
    assert info.identity["general.finetune"] == "8k-lc100k-mix1-ep2"
    assert "general.name" in info.identity
    assert info.sampling == {}
    assert info.tokenizer_fingerprint == SMOLLM2_FINGERPRINT
    assert read_gguf_info(smollm2_gguf) == info  # stable across reads


def test_smollm2_matches_gguf_reader(smollm2_gguf: Path, smollm2_reader: gguf.GGUFReader) -> None:
    assert_matches_gguf_reader(smollm2_gguf, smollm2_reader)
    header = read_header(smollm2_gguf)
    tokens = smollm2_reader.fields["tokenizer.ggml.tokens"]
    # The fingerprint covers exactly the tokens' length prefixes and bytes, as gguf-py parses them.
    region = b"".join(part.tobytes() for part in tokens.parts[5:])
    assert "sha256:" + hashlib.sha256(region).hexdigest() == SMOLLM2_FINGERPRINT
    ref = header.kv["tokenizer.ggml.tokens"]
    assert isinstance(ref, ArrayRef)
    assert (ref.n_bytes, header.token_offsets[0]) == (len(region), ref.offset)
    assert len(header.token_offsets) == 49152


# --- errors ----------------------------------------------------------------------


def expect_gguf_error(path: Path, *words: str) -> GGUFError:
    with pytest.raises(GGUFError) as caught:
        read_gguf_info(path)
    error = caught.value
    assert str(path) in error.message
    assert "\n" not in error.message
    assert error.hint
    for word in words:
        assert word.lower() in error.one_line().lower(), (word, error.one_line())
    return error


def gguf_bytes(
    kv: list[tuple[str, int, bytes]],
    tensors: Sequence[tuple[str, list[int], int, int]] = (),
    *,
    version: int = 3,
    counts: tuple[int, int] | None = None,
) -> bytes:
    """A hand-made GGUF: kv payloads are pre-packed; tensors are (name, shape, type, offset)."""

    def string(text: str) -> bytes:
        return struct.pack("<Q", len(text.encode())) + text.encode()

    n_tensors, n_kv = counts or (len(tensors), len(kv))
    out = b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)
    for key, vtype, payload in kv:
        out += string(key) + struct.pack("<I", vtype) + payload
    for name, shape, type_id, offset in tensors:
        out += string(name) + struct.pack(f"<I{len(shape)}QIQ", len(shape), *shape, type_id, offset)
    return out + b"\0" * (-len(out) % 32)


def arch_kv(arch: str = "llama") -> tuple[str, int, bytes]:
    return ("general.architecture", 8, struct.pack("<Q", len(arch)) + arch.encode())


def test_missing_file(tmp_path: Path) -> None:
    expect_gguf_error(tmp_path / "nope.gguf", "not found")


def test_directory(tmp_path: Path) -> None:
    expect_gguf_error(tmp_path, "directory")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    expect_gguf_error(path, "empty")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (
            b'{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}',
            ("JSON", "manifest"),
        ),
        (b"<!DOCTYPE html><html><body>404</body></html>", ("HTML",)),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n", ("LFS",)),
        (b"tjgg" + b"\0" * 60, ("GGML",)),
        (b"GGU", ("b'GGU'",)),
        (b"\x00\x01\x02\x03\x04\x05\x06\x07\x08", ("instead of b'GGUF'",)),
    ],
)
def test_not_a_gguf(tmp_path: Path, content: bytes, words: tuple[str, ...]) -> None:
    path = tmp_path / "blob"
    path.write_bytes(content)
    expect_gguf_error(path, "not a GGUF", *words)


def test_version_1(tmp_path: Path) -> None:
    path = tmp_path / "v1.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<III", 1, 0, 0))
    expect_gguf_error(path, "version 1", "re-convert with a current llama.cpp")


def test_version_99(tmp_path: Path) -> None:
    path = tmp_path / "v99.gguf"
    path.write_bytes(gguf_bytes([arch_kv()], version=99))
    expect_gguf_error(path, "unsupported GGUF version 99")


def test_big_endian(tmp_path: Path) -> None:
    path = tmp_path / "be.gguf"
    writer = gguf.GGUFWriter(str(path), "llama", endianess=gguf.GGUFEndian.BIG)
    writer.add_block_count(1)
    writer.add_tensor(
        "w", np.ones(32, dtype=np.float32).byteswap(), tensor_endianess=gguf.GGUFEndian.BIG
    )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    expect_gguf_error(path, "big-endian", "version 3")


def test_missing_architecture(tmp_path: Path) -> None:
    path = tmp_path / "noarch.gguf"
    path.write_bytes(gguf_bytes([("general.name", 8, struct.pack("<Q", 1) + b"x")]))
    expect_gguf_error(path, "general.architecture")


@pytest.mark.parametrize(
    ("kv", "words"),
    [
        (
            [arch_kv(), ("general.name", 8, struct.pack("<Q", 1 << 62))],
            ("corrupt", "more than the whole file"),
        ),
        (
            [arch_kv(), ("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 1 << 40))],
            ("corrupt", "cannot fit"),
        ),
        ([arch_kv(), ("llama.x", 9, struct.pack("<IQ", 4, 1 << 60))], ("corrupt", "cannot fit")),
        ([arch_kv(), ("llama.x", 42, b"\0" * 8)], ("unknown value type 42",)),
        ([arch_kv(), ("llama.x", 9, struct.pack("<IQ", 77, 1))], ("unknown element type 77",)),
        ([arch_kv(), arch_kv()], ("duplicate metadata key",)),
        ([arch_kv(), ("llama.deep", 9, struct.pack("<IQ", 9, 1) * 5000)], ("nests arrays deeper",)),
        ([arch_kv(), ("general.alignment", 4, struct.pack("<I", 48))], ("power of two",)),
    ],
)
def test_corrupt_metadata(
    tmp_path: Path, kv: list[tuple[str, int, bytes]], words: tuple[str, ...]
) -> None:
    path = tmp_path / "corrupt.gguf"
    path.write_bytes(gguf_bytes(kv) + b"\0" * 64)
    expect_gguf_error(path, *words)


def test_huge_string_in_big_array(tmp_path: Path) -> None:
    # The unchecked fast walk over tokenizer strings must still report the bad element.
    strings = struct.pack("<Q", 1) + b"a" + struct.pack("<Q", 1 << 61) + b"b"
    path = tmp_path / "tokens.gguf"
    path.write_bytes(
        gguf_bytes([arch_kv(), ("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 2) + strings)])
    )
    expect_gguf_error(path, "corrupt", "tokenizer.ggml.tokens[1]")


@pytest.mark.parametrize(
    ("counts", "words"),
    [((1 << 50, 1), ("tensor count",)), ((0, 1 << 50), ("metadata key count",))],
)
def test_absurd_counts(tmp_path: Path, counts: tuple[int, int], words: tuple[str, ...]) -> None:
    path = tmp_path / "counts.gguf"
    path.write_bytes(gguf_bytes([arch_kv()], counts=counts))
    expect_gguf_error(path, "corrupt", *words)


@pytest.mark.parametrize(
    ("tensors", "words"),
    [
        ([("w", [32], 99, 0)], ("unknown ggml type id 99",)),
        ([("w", [1, 1, 1, 1, 1], 0, 0)], ("5 dimensions",)),
        ([("w", [33], 8, 0)], ("not a multiple", "Q8_0 block size 32")),
        ([("w", [32], 0, 0), ("w", [32], 0, 128)], ("duplicate tensor name",)),
        ([("w", [1 << 40], 0, 0)], ("truncated", "tensor data")),
    ],
)
def test_bad_tensor_table(
    tmp_path: Path, tensors: list[tuple[str, list[int], int, int]], words: tuple[str, ...]
) -> None:
    path = tmp_path / "tensors.gguf"
    path.write_bytes(gguf_bytes([arch_kv()], tensors) + b"\0" * 256)
    expect_gguf_error(path, *words)


@pytest.fixture(scope="module")
def smollm2_head(smollm2_gguf: Path) -> bytes:
    """The SmolLM2 header and the start of its data (enough for every truncation below)."""
    with smollm2_gguf.open("rb") as file:
        return file.read(2_000_000)


@pytest.mark.parametrize(
    ("cut", "words"),
    [
        (6, ("truncated", "version")),
        (20, ("truncated", "metadata key count")),
        (100, ("truncated",)),
        (400_000, ("truncated", "tokenizer.ggml.tokens")),  # inside the token strings
        (1_700_000, ("truncated",)),  # inside the tensor-info table
        (1_785_664 - 1, ("truncated", "output_norm.weight")),  # the last tensor's entry
        (
            1_785_664 + 1000,
            ("truncated", "tensor data", "ends at byte 98362432"),
        ),  # inside the data
    ],
)
def test_truncated_smollm2(
    tmp_path: Path, smollm2_head: bytes, cut: int, words: tuple[str, ...]
) -> None:
    path = tmp_path / "cut.gguf"
    path.write_bytes(smollm2_head[:cut])
    expect_gguf_error(path, *words)


def test_smollm2_missing_last_byte(tmp_path: Path, smollm2_gguf: Path, smollm2_head: bytes) -> None:
    # The real header followed by a sparse hole: the same size as the file less its last byte.
    path = tmp_path / "last.gguf"
    with path.open("wb") as file:
        file.write(smollm2_head)
        file.truncate(smollm2_gguf.stat().st_size - 1)
    expect_gguf_error(path, "truncated", "tensor data")
    with path.open("r+b") as file:
        file.truncate(smollm2_gguf.stat().st_size)
    assert read_gguf_info(path).tensor_count == 272  # and the full size reads fine


def test_every_truncation_of_the_header_is_a_gguf_error(tiny_llama: Path, tmp_path: Path) -> None:
    data = tiny_llama.read_bytes()
    data_offset = read_header(tiny_llama).data_offset
    path = tmp_path / "cut.gguf"
    # Every byte of the first kilobyte, then a spread of points to the end of the header.
    cuts = [*range(1024), *random.Random(7).sample(range(1024, data_offset + 1), 300)]
    for cut in cuts:
        path.write_bytes(data[:cut])
        with pytest.raises(GGUFError):
            read_gguf_info(path)


def test_random_header_corruption_is_a_gguf_error_or_a_result(
    tiny_llama: Path, tmp_path: Path
) -> None:
    data = tiny_llama.read_bytes()
    data_offset = read_header(tiny_llama).data_offset
    rng = random.Random(1234)
    path = tmp_path / "flipped.gguf"
    for _ in range(400):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            damaged[rng.randrange(4, data_offset)] = rng.randrange(256)
        path.write_bytes(bytes(damaged))
        try:
            read_gguf_info(path)
        except GGUFError as error:
            assert str(path) in error.message and "\n" not in error.message
