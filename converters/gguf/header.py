"""Fast GGUF header reader: metadata and tensor table, without the gguf package.

`gguf.GGUFReader` builds numpy views for every tokenizer string (seconds on a 49k
vocabulary). Here the big tokenizer arrays are skipped by walking their length
prefixes once and kept as `ArrayRef`s, so a header reads in milliseconds.
Layout (little-endian, versions 2 and 3): magic "GGUF", u32 version, u64 tensor
count, u64 kv count, the kv pairs, the tensor-info table, padding, tensor data.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from converters.errors import GGUFError
from converters.gguf.info import GGUFInfo, TensorInfo
from converters.gguf.types import (
    GGML_TYPES,
    LLAMA_FILE_TYPE_NAMES,
)

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS: llama.cpp rejects tensors with more
MAX_ARRAY_NESTING = 8  # real files nest at most 2 deep
BIG_ARRAY_KEYS = frozenset(
    {
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.scores",
    }
)
BIG_ARRAY_MIN_COUNT = 1025  # arrays this long stay undecoded (an ArrayRef)
SHORT_LIST_MAX = 64  # identity keeps lists up to this length

# GGUF value types used by name; token types from llama.cpp's llama_token_type.
UINT32, INT32, STRING, ARRAY = 4, 5, 8, 9
TOKEN_CONTROL, TOKEN_USER_DEFINED = 3, 4
_SCALAR_CODES = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_SCALARS = {vtype: struct.Struct("<" + code) for vtype, code in _SCALAR_CODES.items()}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_MIN_KV_SIZE = 8 + 4 + 1  # key length, value type, smallest value
_MIN_TENSOR_INFO_SIZE = 8 + 4 + 4 + 8  # name length, dimension count, type, offset
_MIN_ITEM_SIZE = {**{t: s.size for t, s in _SCALARS.items()}, STRING: 8, ARRAY: 12}

_REDOWNLOAD = "the file is incomplete or damaged: pull or download the model again"


@dataclass(frozen=True, slots=True)
class ArrayRef:
    """An array left undecoded: where its elements lie in the file."""

    type: int  # GGUF value type of the elements (8 = string)
    count: int
    offset: int  # file offset of the first element
    n_bytes: int  # size of the element region


@dataclass(slots=True)
class GGUFHeader:
    """Everything before the tensor data: metadata, tensor table, where data starts."""

    path: Path
    version: int
    kv: dict[str, Any]
    tensors: list[TensorInfo]
    data_offset: int
    alignment: int = DEFAULT_ALIGNMENT
    file_size: int = 0
    # File offset of each tokenizer.ggml.tokens entry (its u64 length prefix), for lookups.
    token_offsets: list[int] = field(default_factory=list, repr=False)


def read_header(path: str | os.PathLike[str]) -> GGUFHeader:
    """Parse a GGUF file's header; raises GGUFError for anything unreadable."""
    with _open_mapped(Path(path)) as (buf, file_path):
        return _Parser(buf, file_path).parse()


def read_gguf_info(path: str | os.PathLike[str]) -> GGUFInfo:
    """Summarise a GGUF file's metadata for the plan, without decoding tokenizer arrays."""
    with _open_mapped(Path(path)) as (buf, file_path):
        header = _Parser(buf, file_path).parse()
        return _build_info(header, buf)


# --- opening -------------------------------------------------------------------


@contextmanager
def _open_mapped(path: Path) -> Iterator[tuple[mmap.mmap, Path]]:
    """Memory-map a file read-only, turning OS errors into GGUFError."""
    try:
        file = open(path, "rb")  # noqa: SIM115 (closed below, after the map)
    except FileNotFoundError:
        raise GGUFError(
            f"{path}: GGUF file not found", hint="check the path or the Ollama store"
        ) from None
    except IsADirectoryError:
        raise GGUFError(
            f"{path}: is a directory, not a GGUF file", hint="pass the model file itself"
        ) from None
    except OSError as exc:
        raise GGUFError(
            f"{path}: cannot open GGUF file: {exc.strerror}", hint="check the file's permissions"
        ) from None
    with file:
        if os.fstat(file.fileno()).st_size == 0:
            raise GGUFError(f"{path}: not a GGUF file: it is empty (0 bytes)", hint=_REDOWNLOAD)
        try:
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise GGUFError(
                f"{path}: cannot map GGUF file: {exc}", hint="pass a regular file"
            ) from None
        with mapped:
            yield mapped, path


# --- parsing -------------------------------------------------------------------


class _Parser:
    """A cursor over the mapped file; every read is bounds-checked."""

    def __init__(self, buf: mmap.mmap, path: Path) -> None:
        self.buf = buf
        self.path = path
        self.size = len(buf)
        self.pos = 0
        self.token_offsets: list[int] = []

    def parse(self) -> GGUFHeader:
        version = self._preamble()
        tensor_count = self._u64("tensor count")
        kv_count = self._count("metadata key count", _MIN_KV_SIZE)
        kv = self._read_kv(kv_count)
        self._check_count(tensor_count, "tensor count", 8, _MIN_TENSOR_INFO_SIZE)
        alignment = self._alignment(kv)
        tensors = self._read_tensor_table(tensor_count)
        data_offset = -(-self.pos // alignment) * alignment  # round up to the alignment
        self._check_data_fits(tensors, data_offset)
        return GGUFHeader(
            path=self.path,
            version=version,
            kv=kv,
            tensors=tensors,
            data_offset=data_offset,
            alignment=alignment,
            file_size=self.size,
            token_offsets=self.token_offsets,
        )

    # errors

    def _truncated(self, what: str, offset: int, n_bytes: int) -> GGUFError:
        if n_bytes > self.size:
            return GGUFError(
                f"{self.path}: corrupt GGUF header: {what} at byte {offset} claims {n_bytes} bytes, "
                f"more than the whole file ({self.size} bytes)",
                hint=_REDOWNLOAD,
            )
        return GGUFError(
            f"{self.path}: truncated GGUF file: {what} at byte {offset} runs past the end "
            f"of the file ({self.size} bytes)",
            hint=_REDOWNLOAD,
        )

    def _corrupt(self, problem: str) -> GGUFError:
        return GGUFError(f"{self.path}: corrupt GGUF header: {problem}", hint=_REDOWNLOAD)

    # primitives

    def _need(self, n_bytes: int, what: str) -> None:
        if self.pos + n_bytes > self.size:
            raise self._truncated(what, self.pos, n_bytes)

    def _u32(self, what: str) -> int:
        self._need(4, what)
        value: int = _U32.unpack_from(self.buf, self.pos)[0]
        self.pos += 4
        return value

    def _u64(self, what: str) -> int:
        self._need(8, what)
        value: int = _U64.unpack_from(self.buf, self.pos)[0]
        self.pos += 8
        return value

    def _string(self, what: str) -> str:
        length = self._u64(f"length of {what}")
        self._need(length, what)
        raw = self.buf[self.pos : self.pos + length]
        self.pos += length
        return raw.decode("utf-8", errors="replace")

    def _count(self, what: str, min_item_size: int) -> int:
        count = self._u64(what)
        self._check_count(count, what, self.pos - 8, min_item_size)
        return count

    def _check_count(self, count: int, what: str, at: int, min_item_size: int) -> None:
        # Refuse counts the rest of the file cannot hold, before looping over them.
        if count * min_item_size > self.size - self.pos:
            raise GGUFError(
                f"{self.path}: truncated or corrupt GGUF header: {what} {count} at byte {at} "
                f"cannot fit in the rest of the file ({self.size} bytes)",
                hint=_REDOWNLOAD,
            )

    # sections

    def _preamble(self) -> int:
        head = self.buf[:512]
        if head[:4] != GGUF_MAGIC:
            start, hint = _describe_non_gguf(head)
            raise GGUFError(f"{self.path}: not a GGUF file: {start}", hint=hint)
        self.pos = 4
        version = self._u32("version")
        if version & 0xFFFF == 0 and version:
            swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
            raise GGUFError(
                f"{self.path}: big-endian GGUF (version {swapped}) is not supported",
                hint="convert it to little-endian with gguf-py's gguf_convert_endian.py",
            )
        if version == 1:
            raise GGUFError(
                f"{self.path}: GGUF version 1 is not supported (only versions 2 and 3)",
                hint="re-convert with a current llama.cpp",
            )
        if version not in SUPPORTED_VERSIONS:
            raise GGUFError(
                f"{self.path}: unsupported GGUF version {version} (only versions 2 and 3)",
                hint="re-convert with a llama.cpp that writes GGUF v3, or update this tool",
            )
        return version

    def _read_kv(self, count: int) -> dict[str, Any]:
        kv: dict[str, Any] = {}
        for _ in range(count):
            key_offset = self.pos
            key = self._string("metadata key")
            vtype = self._u32(f"type of {key!r}")
            if key in kv:
                raise self._corrupt(f"duplicate metadata key {key!r} at byte {key_offset}")
            kv[key] = self._value(vtype, key)
        return kv

    def _value(self, vtype: int, key: str, depth: int = 0) -> Any:
        scalar = _SCALARS.get(vtype)
        if scalar is not None:
            self._need(scalar.size, repr(key))
            value = scalar.unpack_from(self.buf, self.pos)[0]
            self.pos += scalar.size
            return value
        if vtype == STRING:
            return self._string(repr(key))
        if vtype == ARRAY:
            if depth >= MAX_ARRAY_NESTING:  # a crafted file must not exhaust the stack
                raise self._corrupt(f"{key!r} nests arrays deeper than {MAX_ARRAY_NESTING}")
            return self._array(key, depth + 1)
        raise self._corrupt(f"{key!r} has unknown value type {vtype} at byte {self.pos - 4}")

    def _array(self, key: str, depth: int) -> list[Any] | ArrayRef:
        item_type = self._u32(f"element type of {key!r}")
        if item_type not in _MIN_ITEM_SIZE:
            raise self._corrupt(f"array {key!r} has unknown element type {item_type}")
        count = self._count(f"element count of {key!r}", _MIN_ITEM_SIZE[item_type])
        if key not in BIG_ARRAY_KEYS and count < BIG_ARRAY_MIN_COUNT:
            if item_type in _SCALARS:
                scalars = struct.Struct(f"<{count}{_SCALAR_CODES[item_type]}")
                values = list(scalars.unpack_from(self.buf, self.pos))  # size checked by _count
                self.pos += scalars.size
                return values
            return [self._value(item_type, f"{key}[{index}]", depth) for index in range(count)]
        start = self.pos
        if item_type in _SCALARS:
            self.pos += count * _SCALARS[item_type].size  # fits: checked by _count
        elif item_type == STRING:
            self._skip_strings(key, count, record=key == "tokenizer.ggml.tokens")
        else:
            for index in range(count):
                self._value(item_type, f"{key}[{index}]", depth)
        return ArrayRef(type=item_type, count=count, offset=start, n_bytes=self.pos - start)

    def _skip_strings(self, key: str, count: int, *, record: bool) -> None:
        """Walk `count` length-prefixed strings: the hot loop, unchecked until the end."""
        start = self.pos
        offsets: list[int] = []
        try:
            end = _walk_strings(self.buf, start, count, offsets if record else None)
        except (struct.error, OverflowError):
            end = self.size + 1
        if end > self.size:
            # Re-walk with checks to say exactly which element is bad.
            for index in range(count):
                self._string(f"{key}[{index}]")
            raise self._truncated(repr(key), start, end - start)
        self.pos = end
        if record:
            self.token_offsets = offsets

    def _alignment(self, kv: dict[str, Any]) -> int:
        alignment = kv.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise self._corrupt(f"general.alignment {alignment!r} is not a power of two")
        return alignment

    def _read_tensor_table(self, count: int) -> list[TensorInfo]:
        tensors: list[TensorInfo] = []
        names: set[str] = set()
        for index in range(count):
            name = self._string(f"name of tensor {index}")
            n_dims = self._u32(f"dimension count of {name!r}")
            if n_dims > MAX_DIMS:
                raise self._corrupt(f"tensor {name!r} has {n_dims} dimensions (at most {MAX_DIMS})")
            self._need(8 * n_dims, f"shape of {name!r}")
            shape = list(struct.unpack_from(f"<{n_dims}Q", self.buf, self.pos))
            self.pos += 8 * n_dims
            type_id = self._u32(f"type of {name!r}")
            offset = self._u64(f"data offset of {name!r}")
            if name in names:
                raise self._corrupt(f"duplicate tensor name {name!r}")
            names.add(name)
            tensors.append(self._tensor_info(name, shape, type_id, offset))
        return tensors

    def _tensor_info(self, name: str, shape: list[int], type_id: int, offset: int) -> TensorInfo:
        spec = GGML_TYPES.get(type_id)
        if spec is None:
            raise GGUFError(
                f"{self.path}: tensor {name!r} has unknown ggml type id {type_id}",
                hint="the file may be newer than this tool: update it or re-quantize to a known type",
            )
        type_name, block_size, type_size = spec
        if shape and shape[0] % block_size:
            raise self._corrupt(
                f"tensor {name!r} row length {shape[0]} is not a multiple of the "
                f"{type_name} block size {block_size}"
            )
        n_elements = 1
        for dim in shape:
            n_elements *= dim
        # Values are already typed: skip validation, which costs more than the parse itself.
        return TensorInfo.model_construct(
            name=name,
            shape=shape,
            ggml_type=type_name,
            offset=offset,
            n_bytes=n_elements // block_size * type_size,
        )

    def _check_data_fits(self, tensors: list[TensorInfo], data_offset: int) -> None:
        if not tensors:
            return
        last = max(tensors, key=lambda tensor: tensor.offset + tensor.n_bytes)
        data_end = data_offset + last.offset + last.n_bytes
        if data_end > self.size:
            raise GGUFError(
                f"{self.path}: truncated GGUF file: tensor data ends at byte {data_end} "
                f"(tensor {last.name!r}) but the file has only {self.size} bytes",
                hint=_REDOWNLOAD,
            )


def _walk_strings(buf: mmap.mmap, offset: int, count: int, offsets: list[int] | None) -> int:
    """End offset of `count` length-prefixed strings; records each start when asked."""
    unpack = _U64.unpack_from
    if offsets is None:
        for _ in range(count):
            offset += 8 + unpack(buf, offset)[0]
        return offset
    append = offsets.append
    for _ in range(count):
        append(offset)
        offset += 8 + unpack(buf, offset)[0]
    return offset


def _describe_non_gguf(head: bytes) -> tuple[str, str]:
    """What a file that is not GGUF seems to be, and what to do about it."""
    text = head.lstrip()
    redownload = "pass a .gguf model file (an Ollama model blob) or download it again"
    if text[:1] in (b"{", b"["):
        return (
            "it starts like JSON (an Ollama manifest or config blob?)",
            "pass the model layer's blob (mediaType application/vnd.ollama.image.model), "
            "not the manifest",
        )
    if text[:1] == b"<":
        return "it starts like HTML or XML (an error page saved instead of the model?)", redownload
    if head.startswith(b"version https://git-lfs"):
        return "it is a Git LFS pointer, not the file itself", "fetch it with `git lfs pull`"
    if head[:4] in (b"tjgg", b"lmgg", b"fmgg", b"algg"):
        return "it is an old GGML/GGJT file (before GGUF)", "re-convert with a current llama.cpp"
    if len(head) >= 10 and head[8:10] == b'{"':
        return "it looks like a safetensors file", "safetensors need no GGUF conversion"
    if head[:2] == b"\x1f\x8b":
        return "it is gzip-compressed", "decompress it first"
    if head[:4] == b"PK\x03\x04":
        return "it is a zip archive", "extract the .gguf file first"
    if head[257:262] == b"ustar":
        return "it is a tar archive", "extract the .gguf file first"
    return f"it starts with {head[:8]!r} instead of b'GGUF'", redownload


# --- summarising -----------------------------------------------------------------

# `<arch>.` key suffix -> GGUFInfo field, for the integer hyper-parameters.
_ARCH_INT_FIELDS = {
    "context_length": "context_length",
    "embedding_length": "embedding_length",
    "block_count": "block_count",
    "feed_forward_length": "feed_forward_length",
    "attention.head_count": "head_count",
    "attention.head_count_kv": "head_count_kv",
    "attention.key_length": "key_length",
    "attention.value_length": "value_length",
    "vocab_size": "vocab_size",
    "rope.dimension_count": "rope_dimension_count",
    "expert_count": "expert_count",
    "expert_used_count": "expert_used_count",
    "attention.sliding_window": "sliding_window",
}
_NORM_EPS_KEYS = ("attention.layer_norm_rms_epsilon", "attention.layer_norm_epsilon")
_TOKEN_ID_FIELDS = {
    "tokenizer.ggml.bos_token_id": "bos_token_id",
    "tokenizer.ggml.eos_token_id": "eos_token_id",
    "tokenizer.ggml.eot_token_id": "eot_token_id",
    "tokenizer.ggml.eom_token_id": "eom_token_id",
    "tokenizer.ggml.padding_token_id": "padding_token_id",
}
_TOKEN_TEXT_FIELDS = {
    "bos_token_id": "bos_token",
    "eos_token_id": "eos_token",
    "eot_token_id": "eot_token",
}


def _build_info(header: GGUFHeader, buf: mmap.mmap | bytes) -> GGUFInfo:
    kv = header.kv
    architecture = kv.get("general.architecture")
    if not isinstance(architecture, str) or not architecture:
        raise GGUFError(
            f"{header.path}: GGUF file has no general.architecture key",
            hint="re-convert the model with a current llama.cpp",
        )
    fields: dict[str, Any] = {
        "version": header.version,
        "architecture": architecture,
        "tensor_count": len(header.tensors),
        "data_offset": header.data_offset,
    }
    fields.update(_tensor_summary(header.tensors))
    names = {tensor.name for tensor in header.tensors}
    if "token_embd.weight" in names:
        # Without its own output.weight, the lm_head reuses the embedding.
        fields["tied_embeddings"] = "output.weight" not in names
    file_type = kv.get("general.file_type")
    if isinstance(file_type, int):
        fields["file_type"] = file_type
        fields["file_type_name"] = LLAMA_FILE_TYPE_NAMES.get(file_type)
    fields.update(_arch_fields(kv, architecture))
    fields.update(_tokenizer_fields(header, buf))
    if fields.get("vocab_size") is None:
        fields["vocab_size"] = fields.get("token_count")
    fields["identity"] = {
        key: value for key, value in kv.items() if key.startswith("general.") and _is_small(value)
    }
    fields["sampling"] = {
        key.removeprefix("general.sampling."): value
        for key, value in kv.items()
        if key.startswith("general.sampling.") and _is_small(value)
    }
    try:
        return GGUFInfo(**fields)
    except ValidationError as exc:  # a key of an unexpected type that slipped through
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise GGUFError(
            f"{header.path}: GGUF metadata has an unexpected value for {where}: {problem['msg']}",
            hint=_REDOWNLOAD,
        ) from None


def _is_small(value: Any) -> bool:
    return not isinstance(value, ArrayRef) and (
        not isinstance(value, list) or len(value) <= SHORT_LIST_MAX
    )


def _tensor_summary(tensors: list[TensorInfo]) -> dict[str, Any]:
    mix: dict[str, int] = {}
    parameter_count = 0
    for tensor in tensors:
        mix[tensor.ggml_type] = mix.get(tensor.ggml_type, 0) + 1
        parameter_count += tensor.n_elements
    ordered = dict(sorted(mix.items(), key=lambda item: (-item[1], item[0])))
    return {"parameter_count": parameter_count, "quantization_mix": ordered}


def _arch_fields(kv: dict[str, Any], architecture: str) -> dict[str, Any]:
    prefix = architecture + "."
    arch = {key.removeprefix(prefix): value for key, value in kv.items() if key.startswith(prefix)}
    fields: dict[str, Any] = {}
    arch_keys: dict[str, Any] = {}
    rope_scaling: dict[str, Any] = {}
    for suffix, value in arch.items():
        target = _ARCH_INT_FIELDS.get(suffix)
        if target is not None and isinstance(value, int) and not isinstance(value, bool):
            fields[target] = value
        elif target is not None and isinstance(value, list) and value:
            # Per-layer values (e.g. head_count_kv in OpenELM): the max sizes the model.
            fields[target] = max(value)
            arch_keys[suffix] = value
        elif suffix == "rope.freq_base" and isinstance(value, (int, float)):
            fields["rope_freq_base"] = float(value)
        elif suffix.startswith("rope.scaling."):
            rope_scaling[suffix.removeprefix("rope.scaling.")] = value
        elif suffix in _NORM_EPS_KEYS:
            continue  # chosen below, in order of preference
        elif not isinstance(value, ArrayRef):
            arch_keys[suffix] = value
    # Prefer the RMS epsilon; an arch that also has the other one keeps it in arch_keys.
    present = [suffix for suffix in _NORM_EPS_KEYS if isinstance(arch.get(suffix), (int, float))]
    if present:
        fields["norm_eps"] = float(arch[present[0]])
        arch_keys.update({suffix: arch[suffix] for suffix in present[1:]})
    fields["arch_keys"] = arch_keys
    fields["rope_scaling"] = rope_scaling
    return fields


def _tokenizer_fields(header: GGUFHeader, buf: mmap.mmap | bytes) -> dict[str, Any]:
    kv = header.kv
    fields: dict[str, Any] = {
        "tokenizer_model": _str_or_none(kv.get("tokenizer.ggml.model")),
        "tokenizer_pre": _str_or_none(kv.get("tokenizer.ggml.pre")),
        "add_bos_token": _bool_or_none(kv.get("tokenizer.ggml.add_bos_token")),
        "add_eos_token": _bool_or_none(kv.get("tokenizer.ggml.add_eos_token")),
        "chat_template": _str_or_none(kv.get("tokenizer.chat_template")),
        "chat_templates": {
            key.removeprefix("tokenizer.chat_template."): value
            for key, value in kv.items()
            if key.startswith("tokenizer.chat_template.") and isinstance(value, str)
        },
    }
    for key, target in _TOKEN_ID_FIELDS.items():
        value = kv.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            fields[target] = value
    tokens = kv.get("tokenizer.ggml.tokens")
    if isinstance(tokens, ArrayRef) and tokens.type == STRING:
        fields["token_count"] = tokens.count
        region = buf[tokens.offset : tokens.offset + tokens.n_bytes]
        fields["tokenizer_fingerprint"] = "sha256:" + hashlib.sha256(region).hexdigest()
        for id_field, text_field in _TOKEN_TEXT_FIELDS.items():
            token_id = fields.get(id_field)
            if token_id is not None:
                fields[text_field] = _token_text(header, buf, token_id)
        fields["special_token_ids"] = _special_token_ids(header, buf)
    return fields


def _special_token_ids(header: GGUFHeader, buf: mmap.mmap | bytes) -> dict[str, int]:
    """Control and user-defined tokens (token_type 3 and 4): text -> id."""
    types = header.kv.get("tokenizer.ggml.token_type")
    if not isinstance(types, ArrayRef) or types.type not in (INT32, UINT32):
        return {}
    # Copy the slice: a view would pin the mmap open (close() fails on exported buffers).
    kinds = np.frombuffer(buf[types.offset : types.offset + types.n_bytes], dtype="<i4")
    special: dict[str, int] = {}
    for token_id in np.flatnonzero((kinds == TOKEN_CONTROL) | (kinds == TOKEN_USER_DEFINED)):
        text = _token_text(header, buf, int(token_id))
        if text is not None:
            special.setdefault(text, int(token_id))
    return special


def _token_text(header: GGUFHeader, buf: mmap.mmap | bytes, token_id: int) -> str | None:
    """Text of one token, read through the offsets recorded while parsing; None if out of range."""
    if not 0 <= token_id < len(header.token_offsets):
        return None
    start = header.token_offsets[token_id]
    length = _U64.unpack_from(buf, start)[0]
    return bytes(buf[start + 8 : start + 8 + length]).decode("utf-8", errors="replace")


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _bool_or_none(value: Any) -> bool | None:
    return bool(value) if isinstance(value, (bool, int)) else None


def gguf_info_from_kv(kv: dict[str, Any], source: str = "Ollama's /api/show") -> GGUFInfo:
    """A GGUFInfo from GGUF keys someone else read (Ollama's `model_info`), with no file.

    There is no tensor table, so the parameter count comes from general.parameter_count
    and the tokenizer arrays (omitted by Ollama unless verbose) give no fingerprint.
    """
    header = GGUFHeader(path=Path(source), version=3, kv=dict(kv), tensors=[], data_offset=0)
    info = _build_info(header, b"")
    count = kv.get("general.parameter_count")
    if isinstance(count, int) and not isinstance(count, bool):
        info.parameter_count = count
    return info
