"""Ollama chat templates (Go text/template) as HF-style Jinja2 chat templates.

Ollama renders a model's TEMPLATE with Go's text/template; vLLM renders a Jinja2 chat
template the way HF transformers does. This module translates the first into the second,
reproduces Ollama's SYSTEM and MESSAGES layers as Jinja wrappers, and renders and compares
templates so the migration plan can prove two templates equivalent before choosing one.

What Ollama does with a template (template/template.go, server/routes.go), and so what the
translation reproduces:
- Messages are collated first: consecutive messages of one role (except "tool") are merged
  with "\\n\\n"; `.System` is every system message's content joined with "\\n\\n", while
  `.Messages` still holds the system messages.
- A template that names `.Messages` is rendered once with `.System`, `.Messages`, `.Tools`.
- Any other ("legacy") template is rendered once per user/assistant exchange with
  `.System`, `.Prompt` and `.Response`; the last, open exchange is rendered only up to
  `.Response`, which is appended to templates that lack it.

"exact" below means: for `add_generation_prompt=True` (every Ollama chat request generates)
the Jinja renders byte-for-byte what Ollama renders, tools aside unless stated.
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from jinja2 import Template

TemplateMode = Literal["messages", "legacy"]


class TemplateTranslation(BaseModel):
    """A Go template translated to Jinja, and how faithful the translation is."""

    jinja: str | None  # None when some construct could not be translated at all
    exact: bool  # renders what Ollama renders, for every construct used
    mode: TemplateMode  # uses .Messages, or the legacy .System/.Prompt/.Response
    unsupported: list[str] = Field(default_factory=list)  # why jinja is None
    approximate: list[str] = Field(default_factory=list)  # translated, but not identically


class ComparedCase(BaseModel):
    name: str  # roles of the conversation, e.g. "system-user-assistant-user"
    add_generation_prompt: bool
    identical: bool
    difference: str | None = None


class TemplateComparison(BaseModel):
    """Two chat templates rendered on the same conversations."""

    identical: bool  # every case, with and without the generation prompt
    # Only the cases Ollama itself can produce: it always renders a generation prompt.
    identical_with_generation_prompt: bool
    first_difference: str | None = None
    cases: list[ComparedCase] = Field(default_factory=list)


# --------------------------------------------------------------------------------------
# Jinja literals


def jinja_string_literal(text: str) -> str:
    """`text` as a Jinja string literal that evaluates back to exactly `text`.

    Jinja normalises raw newlines inside literals and decodes escapes with
    `unicode-escape`, so line breaks, quotes, backslashes and control characters are
    escaped; anything else (template syntax included) is inert inside a literal.
    """
    escapes = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    out = []
    for ch in text:
        if ch in escapes:
            out.append(escapes[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


def jinja_literal(value: Any) -> str:
    """A JSON-like Python value (dict, list, str, number, bool, None) as a Jinja literal."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"no Jinja literal for {value!r}")
        return repr(value)
    if isinstance(value, str):
        return jinja_string_literal(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(jinja_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{jinja_string_literal(str(k))}: {jinja_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise ValueError(f"no Jinja literal for {type(value).__name__}")


# --------------------------------------------------------------------------------------
# Go template lexing: text and {{ actions }}, with trim markers applied to the text


class _GoSyntaxError(ValueError):
    """The Go template is malformed or uses syntax this parser does not know."""


_GO_SPACE = " \t\r\n"


@dataclass
class _Action:
    body: str
    pos: int  # offset of "{{" in the source, for messages


def _lex(src: str) -> list[str | _Action]:
    """Split a Go template into text and actions; trim markers already applied to text."""
    items: list[str | _Action] = []
    pos, trim_next = 0, False
    while True:
        start = src.find("{{", pos)
        text = src[pos:] if start < 0 else src[pos:start]
        if trim_next:
            text = text.lstrip(_GO_SPACE)
        if start < 0:
            items.append(text)
            return items
        inner = start + 2
        if src.startswith("-", inner) and src[inner + 1 : inner + 2] in tuple(_GO_SPACE):
            text = text.rstrip(_GO_SPACE)
            inner += 2
        items.append(text)
        if src.startswith("/*", inner):
            pos, trim_next = _comment_end(src, inner, start)
            continue
        end, pos, trim_next = _action_end(src, inner, start)
        items.append(_Action(src[inner:end], start))


def _comment_end(src: str, inner: int, start: int) -> tuple[int, bool]:
    close = src.find("*/", inner + 2)
    if close < 0:
        raise _GoSyntaxError(f"unclosed comment at offset {start}")
    after = close + 2
    if src[after : after + 1] in tuple(_GO_SPACE) and src.startswith("-}}", after + 1):
        return after + 4, True
    if src.startswith("}}", after):
        return after + 2, False
    raise _GoSyntaxError(f"comment ends before closing delimiter at offset {start}")


def _action_end(src: str, i: int, start: int) -> tuple[int, int, bool]:
    """(end of the action body, offset after "}}", trims following text)."""
    n = len(src)
    while i < n:
        ch = src[i]
        if ch in "\"'`":
            i = _skip_quoted(src, i, start)
            continue
        if ch in _GO_SPACE and src.startswith("-}}", i + 1):
            return i, i + 4, True
        if src.startswith("}}", i):
            return i, i + 2, False
        i += 1
    raise _GoSyntaxError(f"unclosed action at offset {start}")


def _skip_quoted(src: str, i: int, start: int) -> int:
    quote = src[i]
    j = i + 1
    while j < len(src):
        if src[j] == "\\" and quote != "`":
            j += 2
            continue
        if src[j] == quote:
            return j + 1
        if src[j] == "\n" and quote != "`":
            break
        j += 1
    raise _GoSyntaxError(f"unterminated quoted string in action at offset {start}")


# --------------------------------------------------------------------------------------
# Go template AST


@dataclass(frozen=True)
class _Lit:
    value: Any


@dataclass(frozen=True)
class _FieldE:  # .A.B on the current dot; () is the dot itself
    idents: tuple[str, ...]


@dataclass(frozen=True)
class _VarE:  # $x.A.B; name "$" is the root data
    name: str
    idents: tuple[str, ...] = ()


@dataclass(frozen=True)
class _ChainE:  # (pipeline).A.B
    base: _Expr
    idents: tuple[str, ...]


@dataclass(frozen=True)
class _FuncE:  # a bare function name, only valid at the head of a command
    name: str


@dataclass(frozen=True)
class _CallE:
    name: str
    args: tuple[_Expr, ...]


_Expr = _Lit | _FieldE | _VarE | _ChainE | _FuncE | _CallE


@dataclass
class _Text:
    text: str


@dataclass
class _Output:
    expr: _Expr


@dataclass
class _Assign:
    names: list[str]
    declare: bool  # := rather than =
    expr: _Expr


_BranchKind = Literal["if", "with", "range"]


@dataclass
class _Branch:  # if / with / range share the shape
    kind: _BranchKind
    expr: _Expr
    decl: list[str]
    body: list[_Node]
    orelse: list[_Node]
    chained: bool = False  # came from "else if" / "else with"


@dataclass
class _Loop:  # break / continue
    keyword: str


@dataclass
class _GenPrompt:  # the generation prompt after the last messages loop
    body: list[_Node]


_Node = _Text | _Output | _Assign | _Branch | _Loop | _GenPrompt


# --------------------------------------------------------------------------------------
# Action tokens and pipelines

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<declare>:=)
  | (?P<punct>[()|=,])
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\\n]|\\.)*')
  | (?P<number>[+-]?(?:0[xX][0-9a-fA-F_]+|\d[\d_]*(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+))
  | (?P<field>(?:\.[^\W\d]\w*)+)
  | (?P<dot>\.)
  | (?P<var>\$\w*(?:\.[^\W\d]\w*)*)
  | (?P<ident>[^\W\d]\w*)
    """,
    re.VERBOSE,
)


@dataclass
class _Tok:
    kind: str
    text: str
    spaced: bool  # whitespace before it: tells "(x).F" from "(x) .F"


def _tokenize(body: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos, spaced = 0, True
    while pos < len(body):
        m = _TOKEN_RE.match(body, pos)
        if not m or m.lastgroup is None:
            raise _GoSyntaxError(f"unexpected {body[pos : pos + 10]!r} in action {body!r}")
        kind = m.lastgroup
        if kind == "ws":
            spaced = True
        else:
            toks.append(_Tok(kind, m.group(), spaced))
            spaced = False
        pos = m.end()
    return toks


_GO_ESCAPE = re.compile(
    r"\\(?:[abfnrtv\\\"]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3})|\\(.)"
)


def _go_string(tok: _Tok) -> str:
    if tok.kind == "raw":
        return tok.text[1:-1]
    bad = [m.group(1) for m in _GO_ESCAPE.finditer(tok.text) if m.group(1) is not None]
    if bad:
        raise _GoSyntaxError(f"unknown escape \\{bad[0]} in {tok.text}")
    # Go's escapes are Python's (\n, \t, \", \\, \xNN, \uNNNN, octal), bar \xNN as a byte.
    value = ast.literal_eval(tok.text)
    if not isinstance(value, str):
        raise _GoSyntaxError(f"bad string {tok.text}")
    return value


class _PipeParser:
    """Parses one action's tokens: optional declaration, then commands joined by |."""

    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise _GoSyntaxError("unexpected end of action")
        self.i += 1
        return tok

    def declaration(self) -> tuple[list[str], bool | None]:
        """`$x :=`, `$x =` or `$i, $v :=` at the start; ([], None) when absent."""
        toks = self.toks[self.i :]
        names: list[str] = []
        j = 0
        while j < len(toks) and toks[j].kind == "var" and "." not in toks[j].text:
            names.append(toks[j].text)
            if j + 1 < len(toks) and toks[j + 1].text == ",":
                j += 2
                continue
            if j + 1 < len(toks) and toks[j + 1].text in (":=", "="):
                self.i += j + 2
                return names, toks[j + 1].text == ":="
            break
        return [], None

    def pipeline(self, closing: str | None = None) -> _Expr:
        expr: _Expr | None = None
        while True:
            expr = self.command(expr)
            tok = self.peek()
            if tok is None or tok.text == closing:
                return expr
            if tok.text != "|":
                raise _GoSyntaxError(f"unexpected {tok.text!r}")
            self.take()

    def command(self, piped: _Expr | None) -> _Expr:
        operands: list[_Expr] = []
        while (tok := self.peek()) is not None and tok.text not in ("|", ")"):
            operands.append(self.operand())
        if not operands:
            raise _GoSyntaxError("empty command")
        head, args = operands[0], operands[1:]
        if piped is not None:
            args.append(piped)
        if isinstance(head, _FuncE):
            return _CallE(head.name, tuple(args))
        if args:
            raise _GoSyntaxError("arguments given to a value (method calls are not supported)")
        return head

    def operand(self) -> _Expr:
        tok = self.take()
        kind, text = tok.kind, tok.text
        if kind == "punct" and text == "(":
            inner = self.pipeline(closing=")")
            if self.take().text != ")":
                raise _GoSyntaxError("unclosed parenthesis")
            nxt = self.peek()
            if nxt is not None and nxt.kind == "field" and not nxt.spaced:
                self.take()
                return _ChainE(inner, tuple(nxt.text[1:].split(".")))
            return inner
        if kind in ("string", "raw"):
            return _Lit(_go_string(tok))
        if kind == "number":
            return _Lit(
                float(text)
                if any(c in text for c in ".eE") and "x" not in text.lower()
                else int(text.replace("_", ""), 0)
            )
        if kind == "field":
            return _FieldE(tuple(text[1:].split(".")))
        if kind == "dot":
            return _FieldE(())
        if kind == "var":
            name, *idents = text.split(".")
            return _VarE(name, tuple(idents))
        if kind == "ident":
            return {"true": _Lit(True), "false": _Lit(False), "nil": _Lit(None)}.get(
                text, _FuncE(text)
            )
        if kind == "char":
            raise _GoSyntaxError(f"character constant {text}")
        raise _GoSyntaxError(f"unexpected {text!r}")


def _parse_pipe(toks: list[_Tok]) -> tuple[list[str], bool | None, _Expr]:
    parser = _PipeParser(toks)
    names, declare = parser.declaration()
    expr = parser.pipeline()
    if parser.peek() is not None:
        raise _GoSyntaxError(f"unexpected {parser.peek()!r}")
    return names, declare, expr


# --------------------------------------------------------------------------------------
# Go template structure: if / else if / range / with / end


_UNSUPPORTED_KEYWORDS = {"define", "template", "block"}
_BRANCH_KINDS: dict[str, _BranchKind] = {"if": "if", "with": "with", "range": "range"}


class _TreeParser:
    def __init__(self, items: list[str | _Action]) -> None:
        self.items = items
        self.i = 0

    def parse(self) -> list[_Node]:
        nodes, stop = self.parse_list(loop_depth=0)
        if stop is not None:
            raise _GoSyntaxError(f"unexpected {{{{ {stop[0]} }}}}")
        return nodes

    def parse_list(self, loop_depth: int) -> tuple[list[_Node], tuple[str, list[_Tok]] | None]:
        """Nodes until {{ end }} / {{ else ... }} (returned as the stop) or the end of input."""
        nodes: list[_Node] = []
        while self.i < len(self.items):
            item = self.items[self.i]
            self.i += 1
            if isinstance(item, str):
                if item:
                    nodes.append(_Text(item))
                continue
            toks = _tokenize(item.body)
            if not toks:
                raise _GoSyntaxError(f"empty action at offset {item.pos}")
            word = toks[0].text if toks[0].kind == "ident" else ""
            if word in ("end", "else"):
                return nodes, (word, toks[1:])
            nodes.append(self.action(word, toks, loop_depth, item.pos))
        return nodes, None

    def action(self, word: str, toks: list[_Tok], loop_depth: int, pos: int) -> _Node:
        if word in _BRANCH_KINDS:
            return self.branch(_BRANCH_KINDS[word], toks[1:], loop_depth)
        if word in ("break", "continue"):
            if loop_depth == 0 or len(toks) > 1:
                raise _GoSyntaxError(f"{{{{ {word} }}}} outside range at offset {pos}")
            return _Loop(word)
        if word in _UNSUPPORTED_KEYWORDS:
            raise _GoSyntaxError(f"{{{{ {word} }}}} (named templates)")
        names, declare, expr = _parse_pipe(toks)
        if declare is None:
            return _Output(expr)
        return _Assign(names, declare, expr)

    def branch(
        self, kind: _BranchKind, toks: list[_Tok], loop_depth: int, chained: bool = False
    ) -> _Branch:
        decl, _, expr = _parse_pipe(toks)
        inner_depth = loop_depth + (kind == "range")
        body, stop = self.parse_list(inner_depth)
        orelse: list[_Node] = []
        if stop is None:
            raise _GoSyntaxError(f"unclosed {{{{ {kind} }}}}")
        if stop[0] == "else":
            rest = stop[1]
            if rest and rest[0].text in ("if", "with"):
                # "else if" shares the chain's single {{ end }}.
                chain = _BRANCH_KINDS[rest[0].text]
                orelse = [self.branch(chain, rest[1:], loop_depth, chained=True)]
            else:
                orelse, stop = self.parse_list(loop_depth)
                if stop is None or stop[0] != "end":
                    raise _GoSyntaxError(f"unclosed {{{{ {kind} }}}} after else")
        return _Branch(kind, expr, decl, body, orelse, chained)


# --------------------------------------------------------------------------------------
# Template-wide analysis (mirrors template.go's Vars and its Response cut)


def _expr_idents(e: _Expr) -> list[str]:
    if isinstance(e, _FieldE):
        return list(e.idents)
    if isinstance(e, _VarE):
        return [e.name, *e.idents]
    if isinstance(e, _ChainE):
        return _expr_idents(e.base)  # Ollama's Identifiers does not look into chains
    if isinstance(e, _CallE):
        return [i for a in e.args for i in _expr_idents(a)]
    return []


def _identifiers(nodes: list[_Node]) -> set[str]:
    found: set[str] = set()
    for n in nodes:
        if isinstance(n, _Output | _Assign):
            found.update(i.lower() for i in _expr_idents(n.expr))
        elif isinstance(n, _Branch):
            found.update(i.lower() for i in _expr_idents(n.expr))
            found |= _identifiers(n.body) | _identifiers(n.orelse)
    return found


def _has_response_field(e: _Expr) -> bool:
    """Ollama cuts the final turn at the first {{ .Response }}-like field node."""
    if isinstance(e, _FieldE):
        return "Response" in e.idents
    if isinstance(e, _CallE):
        return any(_has_response_field(a) for a in e.args)
    return False


def _cut_after_response(nodes: list[_Node], state: list[bool]) -> list[_Node]:
    """Drop everything after the first .Response, in document order (template.go deleteNode)."""
    out: list[_Node] = []
    for n in nodes:
        if state[0]:
            break
        if isinstance(n, _Output | _Assign):
            out.append(n)
            state[0] = _has_response_field(n.expr)
        elif isinstance(n, _Branch):
            body = _cut_after_response(n.body, state)
            orelse = [] if state[0] else _cut_after_response(n.orelse, state)
            out.append(replace(n, body=body, orelse=orelse))
        else:
            out.append(n)
    return out


def _is_messages_range(n: _Node) -> bool:
    if not (isinstance(n, _Branch) and n.kind == "range"):
        return False
    e = n.expr
    return (isinstance(e, _FieldE) and e.idents == ("Messages",)) or (
        isinstance(e, _VarE) and e.name == "$" and e.idents == ("Messages",)
    )


def _gate_generation_prompt(nodes: list[_Node]) -> list[_Node]:
    """Put what follows the last messages loop under add_generation_prompt.

    Ollama always generates, so its templates end with the open assistant turn
    unconditionally; HF templates gate it. Gating changes nothing when the prompt is
    requested and makes add_generation_prompt=False / continue_final_message behave.
    """
    last = max((i for i, n in enumerate(nodes) if _is_messages_range(n)), default=None)
    if last is None:
        return [
            replace(
                n, body=_gate_generation_prompt(n.body), orelse=_gate_generation_prompt(n.orelse)
            )
            if isinstance(n, _Branch) and n.kind == "if"
            else n
            for n in nodes
        ]
    tail = nodes[last + 1 :]
    visible = any(not isinstance(n, _Text) or n.text.strip() for n in tail)
    if not visible or any(isinstance(n, _Assign | _Loop) for n in tail):
        return nodes
    return [*nodes[: last + 1], _GenPrompt(tail)]


# --------------------------------------------------------------------------------------
# Jinja output pieces, assembled so trim_blocks / lstrip_blocks cannot alter the text


@dataclass
class _Piece:
    kind: Literal["text", "tag", "expr", "layout"]
    body: str
    strip_left: bool = False  # {%- / {{- : only for pieces preceded by layout


def _t(text: str) -> _Piece:
    return _Piece("text", text)


def _tag(body: str, strip_left: bool = False) -> _Piece:
    return _Piece("tag", body, strip_left)


def _ex(body: str, strip_left: bool = False) -> _Piece:
    return _Piece("expr", body, strip_left)


_LAYOUT = _Piece("layout", "\n")


def _text_needs_literal(text: str, last: bool) -> bool:
    # Template syntax in text, "{" touching the next tag, or "\r" (Jinja normalises
    # newlines in template data) cannot stay raw; nor a final newline, which Jinja drops.
    return (
        any(s in text for s in ("{{", "{%", "{#", "\r"))
        or text.endswith("{")
        or text.startswith("}")
        or (last and text.endswith("\n"))
    )


def _merge_text(pieces: list[_Piece]) -> list[_Piece]:
    merged: list[_Piece] = []
    for p in pieces:
        if p.kind == "text" and merged and merged[-1].kind == "text":
            merged[-1] = _t(merged[-1].body + p.body)
        elif p.kind != "text" or p.body:
            merged.append(p)
    return merged


def _assemble(pieces: list[_Piece]) -> str:
    pieces = _merge_text(pieces)
    out: list[str] = []
    for i, p in enumerate(pieces):
        prev = pieces[i - 1] if i else None
        nxt = pieces[i + 1] if i + 1 < len(pieces) else None
        if p.kind == "text":
            last = nxt is None
            out.append(
                "{{ " + jinja_string_literal(p.body) + " }}"
                if _text_needs_literal(p.body, last)
                else p.body
            )
        elif p.kind == "layout":
            out.append(p.body)
        elif p.kind == "expr":
            out.append(("{{- " if p.strip_left else "{{ ") + p.body + " }}")
        else:
            out.append(_tag_text(p, prev, nxt))
    return "".join(out)


def _tag_text(p: _Piece, prev: _Piece | None, nxt: _Piece | None) -> str:
    left = "{%-" if p.strip_left else "{%"
    # lstrip_blocks would eat spaces between a line start and the tag: "{%+" keeps them.
    if not p.strip_left and prev is not None and prev.kind == "text":
        tail = prev.body.rsplit("\n", 1)[-1]
        if tail and not tail.strip() and not _text_needs_literal(prev.body, False):
            left = "{%+"
    # trim_blocks would eat the newline right after the tag: "+%}" keeps it.
    right = "%}"
    if nxt is not None and nxt.kind == "text" and nxt.body.startswith("\n"):
        right = "+%}"
    return f"{left} {p.body} {right}"


# --------------------------------------------------------------------------------------
# Translation of the AST


# Ollama's API structs, Go field name -> the JSON key vLLM/HF messages and tools carry.
_FIELD_KEYS = {
    "Role": "role",
    "Content": "content",
    "ToolCalls": "tool_calls",
    "ToolCallID": "tool_call_id",
    "Function": "function",
    "Name": "name",
    "Description": "description",
    "Parameters": "parameters",
    "Properties": "properties",
    "Required": "required",
    "Type": "type",
    "Enum": "enum",
    "Items": "items",
    "Arguments": "arguments",
    "Index": "index",
    "ID": "id",
}
# Fields whose OpenAI-side name differs from Ollama's: translated, but flagged.
_APPROX_FIELD_KEYS = {
    "Thinking": ("reasoning_content", "field .Thinking (read from reasoning_content)"),
    "ToolName": ("name", "field .ToolName (read from the tool message's name)"),
}
_MAP_FIELDS = {"Properties", "Arguments"}  # Go ranges over maps in sorted key order
_JSON_STRINGERS = {"Tools", "tool", "Arguments", "Parameters", "Function"}  # print as JSON in Go
_ELEMENT_KINDS = {"Messages": "message", "Tools": "tool", "ToolCalls": "tool_call"}
_BOOL_FUNCS = {"eq", "ne", "lt", "le", "gt", "ge", "not"}
_COMPARE_OPS = {"ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_RESERVED = {
    "and", "or", "not", "in", "is", "if", "else", "elif", "for", "true", "false", "none",
    "True", "False", "None", "loop", "self", "caller", "varargs", "kwargs", "super",
    "messages", "system", "tools", "go", "ollama", "turn", "prompt", "response", "dict",
    "namespace", "range", "add_generation_prompt", "bos_token", "eos_token",
    "raise_exception", "strftime_now", "enable_thinking",
}  # fmt: skip


@dataclass(frozen=True)
class _Ref:
    expr: str  # Jinja expression
    root: bool = False  # Ollama's top-level data (the template's initial dot, or $)
    kind: str = ""  # the Go field it came from, or the element kind of a range


@dataclass
class _Scope:
    dot: _Ref
    vars: dict[str, _Ref] = field(default_factory=dict)

    def child(self, dot: _Ref | None = None) -> _Scope:
        return _Scope(dot or self.dot, dict(self.vars))


class _Untranslatable(Exception):
    """A construct with no Jinja equivalent: the whole translation is abandoned."""


class _Translator:
    def __init__(self, root_fields: dict[str, str]) -> None:
        self.root_fields = root_fields  # Go root field -> Jinja expression
        self.unsupported: list[str] = []
        self.approximate: list[str] = []
        self.names: set[str] = set()
        self.uses_go_vars = False
        self.used_root: set[str] = set()

    # -- bookkeeping

    def fail(self, what: str) -> _Untranslatable:
        _note(self.unsupported, what)
        return _Untranslatable(what)

    def approx(self, what: str) -> None:
        _note(self.approximate, what)

    def fresh(self, base: str) -> str:
        base = re.sub(r"\W", "_", base).strip("_") or "item"
        if base in _RESERVED or base[0].isdigit():
            base += "_"
        name, n = base, 2
        while name in self.names:
            name, n = f"{base}{n}", n + 1
        self.names.add(name)
        return name

    # -- statements

    def nodes(self, nodes: list[_Node], scope: _Scope) -> list[_Piece]:
        pieces: list[_Piece] = []
        for n in nodes:
            pieces += self.node(n, scope)
        return pieces

    def node(self, n: _Node, scope: _Scope) -> list[_Piece]:
        if isinstance(n, _Text):
            return [_t(n.text)]
        if isinstance(n, _Output):
            return [_ex(self.output(n.expr, scope))]
        if isinstance(n, _Assign):
            return self.assign(n, scope)
        if isinstance(n, _Loop):
            return [_tag(n.keyword)]
        if isinstance(n, _GenPrompt):
            return [_tag("if add_generation_prompt"), *self.nodes(n.body, scope), _tag("endif")]
        if n.kind == "range":
            return self.range_(n, scope)
        return self.conditional(n, scope)

    def assign(self, n: _Assign, scope: _Scope) -> list[_Piece]:
        if len(n.names) != 1:
            raise self.fail("multiple assignment")
        value = self.expr(n.expr, scope)
        name = n.names[0]
        if n.declare:
            target = _Ref("go." + self.fresh(name.lstrip("$")), kind=value.kind)
            scope.vars[name] = target
        else:
            target = scope.vars.get(name) or _Ref("")
            if not target.expr.startswith("go."):
                raise self.fail(f"assignment to {name}")
        self.uses_go_vars = True
        return [_tag(f"set {target.expr} = {_bare(value.expr)}")]

    def conditional(self, n: _Branch, scope: _Scope) -> list[_Piece]:
        """if / with (and their else-if chains) as one Jinja if/elif/else/endif."""
        pieces: list[_Piece] = []
        opener = "if"
        while True:
            inner = scope.child()
            head = self.expr(n.expr, inner)
            if n.decl:
                pieces += self.declare_with(n.decl, head, inner)
            if n.kind == "with":
                inner = inner.child(dot=_Ref(_paren(head.expr), kind=head.kind))
            pieces += [_tag(f"{opener} {_bare(head.expr)}"), *self.nodes(n.body, inner)]
            if len(n.orelse) == 1 and isinstance(n.orelse[0], _Branch) and n.orelse[0].chained:
                nxt = n.orelse[0]
                if nxt.kind == "range" or nxt.decl:
                    raise self.fail("else with a declaration")
                n, opener = nxt, "elif"
                continue
            if n.orelse:
                pieces += [_tag("else"), *self.nodes(n.orelse, scope.child())]
            return [*pieces, _tag("endif")]

    def declare_with(self, decl: list[str], head: _Ref, scope: _Scope) -> list[_Piece]:
        if len(decl) != 1:
            raise self.fail("multiple declaration in if/with")
        return [_tag(f"set {self.bind(decl[0], head, scope)} = {_bare(head.expr)}")]

    def bind(self, name: str, value: _Ref, scope: _Scope) -> str:
        target = "go." + self.fresh(name.lstrip("$"))
        scope.vars[name] = _Ref(target, kind=value.kind)
        self.uses_go_vars = True
        return target

    def range_(self, n: _Branch, scope: _Scope) -> list[_Piece]:
        it = self.expr(n.expr, scope)
        if len(n.decl) > 2:
            raise self.fail("range with more than two variables")
        inner = scope.child()
        element = _ELEMENT_KINDS.get(it.kind, "item")
        prefix: list[_Piece] = []
        if it.kind in _MAP_FIELDS:
            self.approx(
                f"range over .{it.kind} (sorted keys, as Go ranges over maps;"
                " newer Ollama may keep insertion order)"
            )
            key = self.fresh(n.decl[0].lstrip("$") if len(n.decl) == 2 else "key")
            val = self.fresh(n.decl[-1].lstrip("$") if n.decl else "value")
            head = f"for {key}, {val} in ({it.expr} or {{}}) | dictsort(true)"
            if len(n.decl) == 2:
                inner.vars[n.decl[0]] = _Ref(key)
        else:
            val = self.fresh(n.decl[-1].lstrip("$") if n.decl else element)
            iterable = it.expr if it.kind == "Messages" else f"({it.expr} or [])"
            head = f"for {val} in {iterable}"
            if len(n.decl) == 2:
                # Nested loops rebind `loop`, so the index is captured by name.
                index = self.fresh(n.decl[0].lstrip("$"))
                inner.vars[n.decl[0]] = _Ref(index)
                prefix = [_tag(f"set {index} = loop.index0")]
        inner.dot = _Ref(val, kind=element)
        if n.decl:
            inner.vars[n.decl[-1]] = inner.dot
        pieces = [_tag(head), *prefix, *self.nodes(n.body, inner)]
        if n.orelse:
            pieces += [_tag("else"), *self.nodes(n.orelse, scope.child())]
        return [*pieces, _tag("endfor")]

    # -- expressions

    def output(self, e: _Expr, scope: _Scope) -> str:
        ref = self.expr(e, scope)
        if (isinstance(e, _CallE) and e.name in _BOOL_FUNCS) or ref.kind in ("Think", "IsThinkSet"):
            # Go prints booleans as true/false, Python as True/False.
            return f"'true' if {_bare(ref.expr)} else 'false'"
        if ref.kind in _JSON_STRINGERS:
            self.approx(f"printing .{ref.kind} (Go prints it as JSON; rendered with tojson)")
            return f"{_paren(ref.expr)} | tojson(separators=(',', ':'))"
        if ref.kind in (
            "Messages",
            "message",
            "ToolCalls",
            "tool_call",
            "Required",
            "Properties",
            "Enum",
            "Items",
        ):
            self.approx(f"printing .{ref.kind} (Go's %v formatting differs from Python's)")
        return _bare(ref.expr)

    def expr(self, e: _Expr, scope: _Scope) -> _Ref:
        if isinstance(e, _Lit):
            return _Ref(jinja_literal(e.value))
        if isinstance(e, _FieldE):
            return self.fields(scope.dot, e.idents)
        if isinstance(e, _VarE):
            if e.name == "$":
                base = _Ref("", root=True)
            elif e.name in scope.vars:
                base = scope.vars[e.name]
            else:
                raise self.fail(f"undefined variable {e.name}")
            return self.fields(base, e.idents)
        if isinstance(e, _ChainE):
            return self.fields(_Ref(_paren(self.expr(e.base, scope).expr)), e.idents)
        if isinstance(e, _FuncE):
            return self.call(_CallE(e.name, ()), scope)
        return self.call(e, scope)

    def fields(self, base: _Ref, idents: tuple[str, ...]) -> _Ref:
        if base.root and not idents:
            raise self.fail("the root data . printed or passed whole")
        ref = base
        for ident in idents:
            ref = self.root_field(ident) if ref.root else self.member(ref, ident)
        return ref

    def root_field(self, ident: str) -> _Ref:
        if ident not in self.root_fields:
            raise self.fail(f"field .{ident}")
        self.used_root.add(ident)
        if ident in ("Think", "IsThinkSet"):
            self.approx(f"field .{ident} (from chat_template_kwargs enable_thinking)")
        return _Ref(self.root_fields[ident], kind=ident)

    def member(self, ref: _Ref, ident: str) -> _Ref:
        if ident in _FIELD_KEYS:
            key = _FIELD_KEYS[ident]
        elif ident in _APPROX_FIELD_KEYS:
            key, why = _APPROX_FIELD_KEYS[ident]
            self.approx(why)
        else:
            raise self.fail(f"field .{ident}")
        # Subscripts, not attributes: .items / .keys would hit dict methods.
        return _Ref(f"{ref.expr}[{jinja_string_literal(key)}]", kind=ident)

    def call(self, e: _CallE, scope: _Scope) -> _Ref:
        args = [self.expr(a, scope) for a in e.args]
        xs = [_paren(a.expr) for a in args]
        name = e.name
        if name in ("and", "or") and len(xs) >= 2:
            return _Ref("(" + f" {name} ".join(xs) + ")")
        if name == "not" and len(xs) == 1:
            return _Ref(f"(not {xs[0]})")
        if name == "eq" and len(xs) >= 2:
            return _Ref("(" + " or ".join(f"{xs[0]} == {x}" for x in xs[1:]) + ")")
        if name in _COMPARE_OPS and len(xs) == 2:
            return _Ref(f"({xs[0]} {_COMPARE_OPS[name]} {xs[1]})")
        if name == "len" and len(xs) == 1:
            return _Ref(f"({xs[0]} | length)")
        if name == "index" and xs:
            kind = _ELEMENT_KINDS.get(args[0].kind, "") if len(xs) > 1 else args[0].kind
            return _Ref(xs[0] + "".join(f"[{x}]" for x in xs[1:]), kind=kind)
        if name == "slice" and 1 <= len(xs) <= 3:
            return self.slice_(args, xs)
        if (
            name == "printf"
            and e.args
            and isinstance(e.args[0], _Lit)
            and isinstance(e.args[0].value, str)
        ):
            return self.printf(e.args[0].value, xs[1:])
        if name in ("print", "println") and xs:
            return self.print_(name, xs)
        if name == "json" and len(xs) == 1:
            self.approx("json (Go's encoding/json: HTML escaping and struct key order differ)")
            return _Ref(f"({xs[0]} | tojson(separators=(',', ':')))")
        raise self.fail(
            f"function {name}" + ("" if name in _KNOWN_FUNCS else " (not a Go/Ollama builtin)")
        )

    def slice_(self, args: list[_Ref], xs: list[str]) -> _Ref:
        bounds = f"{xs[1]}:{xs[2]}" if len(xs) == 3 else (f"{xs[1]}:" if len(xs) == 2 else ":")
        return _Ref(f"{xs[0]}[{bounds}]", kind=args[0].kind)

    def printf(self, fmt: str, xs: list[str]) -> _Ref:
        verbs = re.findall(r"%[^a-zA-Z%]*[a-zA-Z%]", fmt)
        if any(v not in ("%s", "%d", "%v", "%%") for v in verbs):
            raise self.fail("printf with verbs other than %s %d %v")
        if len([v for v in verbs if v != "%%"]) != len(xs):
            raise self.fail("printf argument count")
        fmt = fmt.replace("%v", "%s")
        if not xs:
            return _Ref(jinja_string_literal(fmt.replace("%%", "%")))
        return _Ref(f"({jinja_string_literal(fmt)} | format({', '.join(xs)}))")

    def print_(self, name: str, xs: list[str]) -> _Ref:
        if name == "println":
            return _Ref("(" + " ~ ' ' ~ ".join(xs) + " ~ '\\n')")
        if len(xs) > 1:
            self.approx("print with several operands (Go adds spaces between non-strings)")
        return _Ref("(" + " ~ ".join(xs) + ")")


_KNOWN_FUNCS = {
    "html",
    "js",
    "urlquery",
    "call",
    "printf",
    "print",
    "println",
    "index",
    "slice",
    "len",
}


def _note(bucket: list[str], what: str) -> None:
    if what not in bucket:
        bucket.append(what)


_SIMPLE_EXPR = re.compile(r"[\w.]+(?:\[(?:\w+|'\w*')\])*|'(?:[^'\\]|\\.)*'|-?\d+(?:\.\d+)?")


def _paren(expr: str) -> str:
    """`expr` safe to use as an operand."""
    return expr if _SIMPLE_EXPR.fullmatch(expr) or _wrapped(expr) else f"({expr})"


def _bare(expr: str) -> str:
    """`expr` without redundant outer parentheses, for tag heads and output."""
    return expr[1:-1] if _wrapped(expr) else expr


_STRING_AT = re.compile(r"'(?:[^'\\]|\\.)*'")


def _wrapped(expr: str) -> bool:
    """Whether the "(" opening `expr` is closed by its last character."""
    if not expr.startswith("("):
        return False
    depth, i = 0, 0
    while i < len(expr):
        if expr[i] == "'":
            m = _STRING_AT.match(expr, i)
            i = m.end() if m else len(expr)
            continue
        depth += expr[i] in "([{"
        depth -= expr[i] in ")]}"
        if depth == 0:
            return i == len(expr) - 1
        i += 1
    return False


# --------------------------------------------------------------------------------------
# Whole templates

# Ollama's collate(): consecutive same-role messages (not tool) merge with a blank line,
# system messages staying in the list. Content that is not a string reads as "" as in Go.
_COLLATE = [
    "set ollama = namespace(messages=[])",
    "for message in messages",
    "set content = message['content'] if message['content'] is string else ''",
    "if ollama.messages and ollama.messages[-1]['role'] == message['role'] and message['role'] != 'tool'",
    "set ollama.messages = ollama.messages[:-1] + [dict(ollama.messages[-1], content=ollama.messages[-1]['content'] ~ '\\n\\n' ~ content)]",
    "else",
    "set ollama.messages = ollama.messages + [dict(message, content=content)]",
    "endif",
    "endfor",
    "set messages = ollama.messages",
]

# Ollama's legacy loop: one template execution per exchange, flushed when a new system
# or user message arrives after content; the open exchange is rendered last.
_LEGACY_DRIVER = [
    "set turn = namespace(system='', prompt='', response='')",
    "for message in messages",
    "if message['role'] == 'system'",
    "if turn.prompt or turn.response",
    "@ollama_turn(turn.system, turn.prompt, turn.response)",
    "set turn.prompt = ''",
    "set turn.response = ''",
    "endif",
    "set turn.system = message['content']",
    "elif message['role'] == 'user'",
    "if turn.response",
    "@ollama_turn(turn.system, turn.prompt, turn.response)",
    "set turn.system = ''",
    "set turn.prompt = ''",
    "set turn.response = ''",
    "endif",
    "set turn.prompt = message['content']",
    "elif message['role'] == 'assistant'",
    "set turn.response = message['content']",
    "endif",
    "endfor",
    # Without a generation prompt a finished exchange is closed; an unanswered prompt
    # can only be rendered the way Ollama would, with the assistant turn opened.
    "if add_generation_prompt or not turn.response",
    "@ollama_open_turn(turn.system, turn.prompt, turn.response)",
    "else",
    "@ollama_turn(turn.system, turn.prompt, turn.response)",
    "endif",
]


def _statements(lines: list[str]) -> list[_Piece]:
    """Fixed scaffolding, one statement a line; "@x" lines print the expression x."""
    pieces: list[_Piece] = []
    for i, line in enumerate(lines):
        if i:
            pieces.append(_LAYOUT)
        pieces.append(_ex(line[1:], True) if line.startswith("@") else _tag(line, True))
    return pieces


_MESSAGES_ROOT = {
    "System": "system",
    "Messages": "messages",
    "Tools": "tools",
    "Think": "(enable_thinking | default(false))",
    "IsThinkSet": "(enable_thinking is defined)",
    # Not set for chat requests, so empty: Response/Prompt belong to the legacy form,
    # Suffix to /api/generate fill-in-the-middle, Query/Document/Instruction to reranking.
    "Response": "''",
    "Prompt": "''",
    "Suffix": "''",
    "Query": "''",
    "Document": "''",
    "Instruction": "''",
}
_LEGACY_ROOT = {
    "System": "system",
    "Prompt": "prompt",
    "Response": "response",
    "Think": "(enable_thinking | default(false))",
    "IsThinkSet": "(enable_thinking is defined)",
    # Absent from the legacy data map: Go reads them as nil.
    "Tools": "''",
    "Suffix": "''",
}


def _messages_jinja(tree: list[_Node], tr: _Translator) -> str:
    body = tr.nodes(_gate_generation_prompt(tree), _Scope(_Ref("", root=True)))
    setup = list(_COLLATE)
    if "System" in tr.used_root:  # every system message, joined (collate() again)
        setup.append(
            "set system = messages | selectattr('role', 'eq', 'system') | map(attribute='content') | join('\\n\\n')"
        )
    if tr.uses_go_vars:
        setup.append("set go = namespace()")
    return _assemble([*_statements(setup), *body])


def _legacy_jinja(tree: list[_Node], tr: _Translator) -> str:
    if "response" not in _identifiers(tree):
        tree = [*tree, _Output(_FieldE(("Response",)))]  # template.go Parse() does this
    pieces: list[_Piece] = []
    for name, nodes in (
        ("ollama_turn", tree),
        ("ollama_open_turn", _cut_after_response(tree, [False])),
    ):
        tr.uses_go_vars = False
        body = tr.nodes(nodes, _Scope(_Ref("", root=True)))
        ns = [_tag("set go = namespace()")] if tr.uses_go_vars else []
        pieces += [
            _tag(f"macro {name}(system, prompt, response)", True),
            *ns,
            *body,
            _tag("endmacro"),
            _LAYOUT,
        ]
    return _assemble([*pieces, *_statements([*_COLLATE, *_LEGACY_DRIVER])])


def _guess_mode(src: str) -> TemplateMode:
    return "messages" if re.search(r"(?i)\.(messages|document)\b", src) else "legacy"


def translate_go_template(go_template: str) -> TemplateTranslation:
    """Translate an Ollama TEMPLATE into an HF-style Jinja chat template.

    Never raises for template content: syntax this parser or Jinja cannot express gives
    `jinja=None` with the reasons in `unsupported`; constructs translated with a known
    difference (JSON printing, renamed fields, thinking flags) are listed in `approximate`.
    """
    try:
        # Line endings stay as they are: Ollama normalises only its built-in templates.
        tree = _TreeParser(_lex(go_template)).parse()
    except _GoSyntaxError as exc:
        return TemplateTranslation(
            jinja=None, exact=False, mode=_guess_mode(go_template), unsupported=[f"syntax: {exc}"]
        )
    idents = _identifiers(tree)
    mode: TemplateMode = "messages" if {"messages", "document"} & idents else "legacy"
    tr = _Translator(_MESSAGES_ROOT if mode == "messages" else _LEGACY_ROOT)
    try:
        jinja = _messages_jinja(tree, tr) if mode == "messages" else _legacy_jinja(tree, tr)
    except _Untranslatable:
        return TemplateTranslation(
            jinja=None,
            exact=False,
            mode=mode,
            unsupported=tr.unsupported,
            approximate=tr.approximate,
        )
    return TemplateTranslation(
        jinja=jinja, exact=not tr.approximate, mode=mode, approximate=tr.approximate
    )


# --------------------------------------------------------------------------------------
# Ollama's SYSTEM and MESSAGES layers as wrappers around any chat template


def with_default_system(jinja: str, system: str) -> str:
    """Use `system` when the request has no system message first (Ollama's SYSTEM layer).

    Ollama inserts the SYSTEM layer when the request's first message is not a system
    message and the layer is not empty (server/routes.go). A top-level `set` rebinds
    `messages` for the rest of the template.
    """
    if not system:
        return jinja
    lit = "[{'role': 'system', 'content': " + jinja_string_literal(system) + "}]"
    return _wrap(
        [
            "if not messages or messages[0]['role'] != 'system'",
            f"set messages = {lit} + messages",
            "endif",
        ],
        jinja,
    )


def with_fixed_messages(jinja: str, messages: list[dict[str, Any]]) -> str:
    """Prepend the MESSAGES layer's turns, after the request's system message if any.

    Ollama itself puts them before every request message, a system message included;
    keeping the system message first is what HF templates need to recognise it, and
    templates reading `.System` render the same either way. Apply this inside
    `with_default_system` (`with_default_system(with_fixed_messages(j, m), s)`) so the
    SYSTEM check sees the request's own first message, as Ollama's does.
    """
    if not messages:
        return jinja
    lit = jinja_literal([dict(m) for m in messages])
    return _wrap(
        [
            "if messages and messages[0]['role'] == 'system'",
            f"set messages = messages[:1] + {lit} + messages[1:]",
            "else",
            f"set messages = {lit} + messages",
            "endif",
        ],
        jinja,
    )


def _wrap(statements: list[str], jinja: str) -> str:
    """Top-level statements before a template, leaving its text untouched.

    A top-level `set` rebinds `messages` for the rest of the template. Each statement's
    "{%-" eats the newline before it; the last one keeps a leading newline of the wrapped
    template from trim_blocks with "+%}".
    """
    close = "+%}" if jinja.startswith("\n") else "%}"
    head = "\n".join(f"{{%- {st} %}}" for st in statements)
    return head[: -len("%}")] + close + jinja


# --------------------------------------------------------------------------------------
# Rendering like HF transformers (and so vLLM)


def _tojson(
    x: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: Any = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _raise_exception(message: str) -> None:
    from jinja2.exceptions import TemplateError

    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=1)
def _environment() -> Any:
    from jinja2 import nodes
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(Extension):
        """HF's {% generation %} marks assistant tokens; for rendering it is a no-op."""

        tags = {"generation"}  # noqa: RUF012 - jinja2's own class attribute

        def parse(self, parser: Any) -> list[nodes.Node]:
            next(parser.stream)
            body: list[nodes.Node] = parser.parse_statements(
                ("name:endgeneration",), drop_needle=True
            )
            return body

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[GenerationBlock, "jinja2.ext.loopcontrols"],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


@lru_cache(maxsize=128)
def _compiled(jinja: str) -> Template:
    template: Template = _environment().from_string(jinja)
    return template


def render_chat(
    jinja: str,
    messages: list[dict[str, Any]],
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    **extra: Any,
) -> str:
    """Render a chat template as transformers' apply_chat_template does (tokenize=False)."""
    extra.setdefault("tools", None)
    extra.setdefault("documents", None)
    return _compiled(jinja).render(
        messages=messages,
        add_generation_prompt=add_generation_prompt,
        bos_token=bos_token,
        eos_token=eos_token,
        **extra,
    )


# --------------------------------------------------------------------------------------
# Comparing two templates

_SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
_USER1 = {"role": "user", "content": "Hello, how are you?"}
_ASSISTANT1 = {"role": "assistant", "content": "I'm doing great. How can I help you today?"}
_USER2 = {"role": "user", "content": "I'd like to show off how chat templating works!"}
COMPARE_CONVERSATIONS: dict[str, list[dict[str, str]]] = {
    "user": [_USER1],
    "system-user": [_SYSTEM, _USER1],
    "user-assistant-user": [_USER1, _ASSISTANT1, _USER2],
    "system-user-assistant-user": [_SYSTEM, _USER1, _ASSISTANT1, _USER2],
}


def compare_templates(
    go_translation_jinja: str,
    gguf_jinja: str,
    system: str | None,
    *,
    bos_token: str = "",
    eos_token: str = "",
) -> TemplateComparison:
    """Render Ollama's side (the translation, plus SYSTEM when given) against the GGUF's.

    Identical renders mean the GGUF's original template already gives clients what Ollama
    gave them. A template that raises counts as a difference, with the error shown.
    """
    ollama_side = (
        with_default_system(go_translation_jinja, system) if system else go_translation_jinja
    )
    cases: list[ComparedCase] = []
    for name, conversation in COMPARE_CONVERSATIONS.items():
        for agp in (True, False):
            ours = _try_render(ollama_side, conversation, agp, bos_token, eos_token)
            theirs = _try_render(gguf_jinja, conversation, agp, bos_token, eos_token)
            diff = None if ours == theirs else _first_difference(ours, theirs)
            cases.append(
                ComparedCase(
                    name=name, add_generation_prompt=agp, identical=diff is None, difference=diff
                )
            )
    differing = [c for c in cases if not c.identical]
    return TemplateComparison(
        identical=not differing,
        identical_with_generation_prompt=all(c.identical for c in cases if c.add_generation_prompt),
        first_difference=(
            f"{differing[0].name} (add_generation_prompt={differing[0].add_generation_prompt}): {differing[0].difference}"
            if differing
            else None
        ),
        cases=cases,
    )


_ERROR = "<error: "


def _try_render(jinja: str, messages: list[dict[str, str]], agp: bool, bos: str, eos: str) -> str:
    from jinja2.exceptions import TemplateError

    try:
        return render_chat(jinja, [dict(m) for m in messages], agp, bos, eos)
    except (TemplateError, TypeError, ValueError) as exc:
        return f"{_ERROR}{type(exc).__name__}: {exc}>"


def _first_difference(a: str, b: str, context: int = 24) -> str:
    for side, text in (("ollama", a), ("gguf", b)):
        if text.startswith(_ERROR):
            return f"{side} template failed: {text[len(_ERROR) : -1]}"
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    lo = max(0, i - context)
    return f"at char {i}: ollama {a[lo : i + context]!r} vs gguf {b[lo : i + context]!r}"
