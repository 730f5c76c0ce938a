"""Map the token pieces a source server returns back to token ids.

llama.cpp's OpenAI-compatible servers report generated tokens as text pieces, not ids.
llama-cpp-python builds each piece with `detokenize([id]).decode("utf-8", errors="ignore")`
and sends `bytes: null`, so:

- a piece that is a whole UTF-8 text maps to exactly one id of a byte-level BPE vocabulary;
- a piece that holds part of a multi-byte character (CJK, emoji, accents split by BPE)
  loses its invalid bytes and maps to several ids, often to the empty string;
- special tokens come back as "" (llama-cpp-python detokenizes without `special`);
- with SentencePiece vocabularies llama.cpp strips the leading space of each single piece.

`PieceVocab.align` resolves every ambiguous piece with the answer's full text (whose
bytes are the concatenation of the generated tokens' bytes) by a small backtracking
search, and uses a token's `bytes` whenever the server sends them (llama.cpp's own
server and Ollama do). Pieces it cannot resolve come back as None: alignment failures.
Re-tokenising the answer text is never used: it can differ from what was generated.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from converters.errors import MigrateError


class VocabError(MigrateError):
    """A tokenizer.json is missing or of a kind the piece mapper does not know."""


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode: the printable stand-in character -> byte."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, codes, strict=True)}


def byte_level_piece_bytes(piece: str) -> bytes | None:
    """Raw bytes of a byte-level BPE vocabulary piece (None if it is not one)."""
    table = _byte_decoder()
    try:
        return bytes(table[ch] for ch in piece)
    except KeyError:
        return None


def spm_piece_bytes(piece: str) -> bytes:
    """Raw bytes of a SentencePiece-style piece: `<0xNN>` byte fallback, `▁` is a space."""
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        try:
            return bytes([int(piece[3:5], 16)])
        except ValueError:
            pass
    return piece.replace("\u2581", " ").encode("utf-8")


def _lossy(data: bytes) -> str:
    """How llama-cpp-python turns a piece's bytes into its `token` string."""
    return data.decode("utf-8", errors="ignore")


@dataclass(frozen=True)
class SourcePiece:
    """One generated token as a source server reported it."""

    text: str
    bytes: bytes | None = None  # present when the server sends `bytes`


@dataclass
class PieceVocab:
    """A vocabulary indexed by token bytes and by the lossy text llama.cpp reports."""

    id_bytes: list[bytes]  # index: token id; b"" for special tokens
    special_ids: frozenset[int] = frozenset()
    special_text: dict[int, str] = field(default_factory=dict)
    spm: bool = False  # SentencePiece: single pieces lose their leading space
    by_bytes: dict[bytes, int] = field(init=False, repr=False)
    by_text: dict[str, tuple[int, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_bytes: dict[bytes, int] = {}
        by_text: dict[str, list[int]] = {}
        for token_id, data in enumerate(self.id_bytes):
            if token_id in self.special_ids:
                by_text.setdefault("", []).append(token_id)
                text = self.special_text.get(token_id)
                if text:
                    by_text.setdefault(text, []).append(token_id)
                continue
            by_bytes.setdefault(data, token_id)
            by_text.setdefault(_lossy(data), []).append(token_id)
            if self.spm and data.startswith(b" "):
                stripped = _lossy(data[1:])
                if stripped != _lossy(data):
                    by_text.setdefault(stripped, []).append(token_id)
        self.by_bytes = by_bytes
        # Ordinary tokens before specials: a special spells no bytes, so it is tried last.
        self.by_text = {
            k: tuple(sorted(dict.fromkeys(v), key=lambda t: t in self.special_ids))
            for k, v in by_text.items()
        }

    def __len__(self) -> int:
        return len(self.id_bytes)

    # --- construction ------------------------------------------------------------------

    @classmethod
    def from_tokenizer_json(cls, path: Path) -> PieceVocab:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise VocabError(f"cannot read tokenizer {path}: {exc}") from None
        model = data.get("model") or {}
        kind = model.get("type")
        vocab_field = model.get("vocab")
        pieces: dict[int, str] = {}
        if kind == "BPE" or kind == "WordPiece" or kind == "WordLevel":
            if not isinstance(vocab_field, dict):
                raise VocabError(f"{path}: model.vocab is not a mapping")
            pieces = {int(i): str(p) for p, i in vocab_field.items()}
        elif kind == "Unigram":
            if not isinstance(vocab_field, list):
                raise VocabError(f"{path}: model.vocab is not a list")
            pieces = {i: str(entry[0]) for i, entry in enumerate(vocab_field)}
        else:
            raise VocabError(f"{path}: tokenizer model type {kind!r} is not supported")
        specials: dict[int, str] = {}
        for added in data.get("added_tokens") or []:
            token_id, content = int(added["id"]), str(added["content"])
            pieces[token_id] = content
            if added.get("special", False):
                specials[token_id] = content
        byte_level = _mentions(data.get("pre_tokenizer"), "ByteLevel") or _mentions(
            data.get("decoder"), "ByteLevel"
        )
        size = max(pieces) + 1 if pieces else 0
        id_bytes = [b""] * size
        added_plain = {
            int(a["id"]) for a in data.get("added_tokens") or [] if not a.get("special", False)
        }
        for token_id, piece in pieces.items():
            if token_id in specials:
                continue
            if token_id in added_plain:
                id_bytes[token_id] = piece.encode("utf-8")
            elif byte_level:
                decoded = byte_level_piece_bytes(piece)
                id_bytes[token_id] = decoded if decoded is not None else piece.encode("utf-8")
            else:
                id_bytes[token_id] = spm_piece_bytes(piece)
        return cls(
            id_bytes=id_bytes,
            special_ids=frozenset(specials),
            special_text=specials,
            spm=not byte_level,
        )

    @classmethod
    def from_folder(cls, folder: Path) -> PieceVocab:
        """The vocabulary of a converted HF folder (its tokenizer.json)."""
        path = Path(folder) / "tokenizer.json"
        if not path.is_file():
            raise VocabError(
                f"no tokenizer.json in {folder}", hint="validate a folder `migrate convert` wrote"
            )
        return cls.from_tokenizer_json(path)

    # --- lookups -------------------------------------------------------------------------

    def text_of(self, token_id: int) -> str:
        """The text llama-cpp-python would report for this id (lossy for partial UTF-8)."""
        if token_id in self.special_ids or not 0 <= token_id < len(self.id_bytes):
            return ""
        return _lossy(self.id_bytes[token_id])

    def candidates(self, piece: SourcePiece) -> tuple[int, ...]:
        if piece.bytes is not None:
            found = self.by_bytes.get(piece.bytes)
            if found is not None:
                return (found,)
            if piece.bytes == b"" or piece.bytes == piece.text.encode("utf-8"):
                return self.by_text.get(piece.text, ())  # specials: bytes of their text
            return ()
        return self.by_text.get(piece.text, ())

    def id_for_text(self, text: str) -> int | None:
        """The id of an alternative's text when it is unambiguous, else None."""
        found = self.by_text.get(text, ())
        return found[0] if len(found) == 1 else None

    # --- alignment -----------------------------------------------------------------------

    def align(self, pieces: Sequence[SourcePiece], text: str | None = None) -> list[int | None]:
        """Token ids of the generated pieces, None where a piece cannot be resolved.

        Unambiguous pieces map directly. Ambiguous ones are resolved by requiring that the
        chosen ids' bytes spell `text` (the answer the server returned) from its start;
        where the text stops matching (a stop string cut it, or invalid bytes were dropped
        from it), the rest is mapped piece by piece only.
        """
        cands = [self.candidates(p) for p in pieces]
        ids: list[int | None] = [c[0] if len(c) == 1 else None for c in cands]
        if all(len(c) == 1 for c in cands) or text is None:
            return ids
        target = text.encode("utf-8")
        path = self._spell(cands, target)
        for i, token_id in enumerate(path):
            ids[i] = token_id
        return ids

    def _spell(self, cands: list[tuple[int, ...]], target: bytes) -> list[int]:
        """The longest prefix of pieces whose ids spell a prefix of `target` (DFS with
        memoised dead ends); ambiguous pieces get the ids that make the spelling work."""
        n = len(cands)
        dead: set[tuple[int, int]] = set()
        best: list[int] = []
        stack: list[int] = []
        budget = [200_000]  # steps: pathological inputs give up rather than hang

        def forms(token_id: int, pos: int) -> list[bytes]:
            data = self.id_bytes[token_id]
            out = [data]
            if self.spm and pos == 0 and data.startswith(b" "):
                out.append(data[1:])  # llama.cpp strips the first token's space
            return out

        def visit(i: int, pos: int, exact: bool) -> bool:
            nonlocal best
            budget[0] -= 1
            if len(stack) > len(best):
                best = stack[:]
            if i == n:
                return pos == len(target) or not exact
            if pos == len(target) or budget[0] <= 0 or (i, pos) in dead:
                return False
            for token_id in cands[i]:
                for form in forms(token_id, pos):
                    if target.startswith(form, pos):
                        stack.append(token_id)
                        if visit(i + 1, pos + len(form), exact):
                            return True
                        stack.pop()
            dead.add((i, pos))
            return False

        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, n + 200))
        try:
            # First: ids that spell exactly the text (two partial pieces can spell a prefix
            # of the same bytes that one piece and a byte token spell in full).
            # Then: ids that spell a prefix of it (the text ran on past the pieces).
            for exact in (True, False):
                dead.clear()
                stack.clear()
                budget[0] = 200_000
                if visit(0, 0, exact):
                    return stack
        finally:
            sys.setrecursionlimit(limit)
        return best


def _mentions(node: Any, kind: str) -> bool:
    """Whether a tokenizer.json component (possibly a Sequence) has a part of `kind`."""
    if isinstance(node, dict):
        if node.get("type") == kind:
            return True
        return any(_mentions(v, kind) for v in node.values() if isinstance(v, dict | list))
    if isinstance(node, list):
        return any(_mentions(v, kind) for v in node)
    return False


def bytes_from_logprob_entry(entry: dict[str, Any]) -> bytes | None:
    """The `bytes` field of an OpenAI logprob entry (a list of ints), when usable."""
    raw = entry.get("bytes")
    if isinstance(raw, list) and all(isinstance(b, int) and 0 <= b < 256 for b in raw):
        return bytes(raw)
    return None
