"""Ollama Go chat templates translated to Jinja render exactly what Ollama renders.

Template fixtures are copied from github.com/ollama/ollama (MIT licence), `template/*.gotmpl`,
at the commits named beside each. Expected renders for the system-user-assistant-user
conversation are Ollama's own `template/testdata/<name>.gotmpl/system-user-assistant-user`
files; the others are worked out by hand from Go text/template semantics and Ollama's
template.go (collate, legacy per-exchange rendering, the .Response cut).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from migrate.ollama.template import (
    COMPARE_CONVERSATIONS,
    compare_templates,
    jinja_literal,
    jinja_string_literal,
    render_chat,
    translate_go_template,
    with_default_system,
    with_fixed_messages,
)

# template/chatml.gotmpl @ 9fbfa742
CHATML = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)
# template/llama3-instruct.gotmpl @ 888b6fbb
LLAMA3 = (
    "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
    "{{ .Content }}<|eot_id|>\n{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
)
# template/mistral-instruct.gotmpl @ 75d1b796
MISTRAL = (
    "[INST] {{ range $index, $_ := .Messages }}\n"
    '{{- if eq .Role "system" }}{{ .Content }}\n\n'
    '{{ else if eq .Role "user" }}{{ .Content }}[/INST]\n'
    '{{- else if eq .Role "assistant" }} {{ .Content }}</s>[INST] {{ end }}\n'
    "{{- end }}"
)
# template/mistral-instruct.gotmpl @ 45743828 (the form ollama.com's mistral models carry):
# slice, len, $index, $.System and a legacy branch.
MISTRAL_SLICE = (
    "{{- if .Messages }}\n"
    "{{- range $index, $_ := .Messages }}\n"
    '{{- if eq .Role "user" }}[INST] {{ if and $.System (eq (len (slice $.Messages $index)) 1) }}'
    "{{ $.System }}\n{{ end }}{{ .Content }}\n"
    '{{- else if eq .Role "assistant" }}[/INST] {{ .Content }}</s>\n'
    "{{- end }}\n{{- end }}[/INST]\n"
    "{{- else -}}\n"
    "[INST] {{ if .System }}{{ .System }} {{ end }}{{ .Prompt }}[/INST] {{ .Response }}</s>\n"
    "{{- end -}}"
)
# template/gemma-instruct.gotmpl @ 41f885f2: a $system variable assigned inside the loop.
GEMMA = (
    '{{- $system := "" }}\n'
    "{{- range .Messages }}\n"
    '{{- if eq .Role "system" }}\n'
    "{{- if not $system }}{{ $system = .Content }}\n"
    '{{- else }}{{ $system = printf "%s\\n\\n%s" $system .Content }}\n'
    "{{- end }}\n"
    "{{- continue }}\n"
    '{{- else if eq .Role "user" }}<start_of_turn>user\n'
    "{{- if $system }}\n{{ $system }}\n"
    '{{- $system = "" }}\n'
    "{{- end }}\n"
    '{{- else if eq .Role "assistant" }}<start_of_turn>model\n'
    "{{- end }}\n"
    "{{ .Content }}<end_of_turn>\n"
    "{{ end }}<start_of_turn>model\n"
)
# template/phi-3.gotmpl @ c3b52859
PHI3 = "{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n"
# template/phi-3.gotmpl @ 4587734e: the legacy .System/.Prompt/.Response form.
PHI3_LEGACY = (
    "{{ if .System }}<|system|>\n{{ .System }}<|end|>\n{{ end }}"
    "{{ if .Prompt }}<|user|>\n{{ .Prompt }}<|end|>\n{{ end }}"
    "<|assistant|>\n{{ .Response }}<|end|>"
)
# A user Modelfile's legacy TEMPLATE without .Response: Ollama appends {{ .Response }}.
MODELFILE_LEGACY = "{{ .System }}\nUSER: {{ .Prompt }}\nASSISTANT: "

SYSTEM = "You are a helpful assistant."
USER1 = "Hello, how are you?"
ASSISTANT1 = "I'm doing great. How can I help you today?"
USER2 = "I'd like to show off how chat templating works!"


def conversation(name: str) -> list[dict[str, Any]]:
    return [dict(m) for m in COMPARE_CONVERSATIONS[name]]


EXPECTED: dict[str, tuple[str, str, dict[str, str]]] = {
    "chatml": (
        CHATML,
        "messages",
        {
            "user": f"<|im_start|>user\n{USER1}<|im_end|>\n<|im_start|>assistant\n",
            "user-assistant-user": (
                f"<|im_start|>user\n{USER1}<|im_end|>\n<|im_start|>assistant\n{ASSISTANT1}<|im_end|>\n"
                f"<|im_start|>user\n{USER2}<|im_end|>\n<|im_start|>assistant\n"
            ),
            "system-user-assistant-user": (
                f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
                f"<|im_start|>user\n{USER1}<|im_end|>\n<|im_start|>assistant\n{ASSISTANT1}<|im_end|>\n"
                f"<|im_start|>user\n{USER2}<|im_end|>\n<|im_start|>assistant\n"
            ),
        },
    ),
    "llama3-instruct": (
        LLAMA3,
        "messages",
        {
            "user": (
                f"<|start_header_id|>user<|end_header_id|>\n\n{USER1}<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n"
            ),
            "system-user-assistant-user": (
                f"<|start_header_id|>system<|end_header_id|>\n\n{SYSTEM}<|eot_id|>"
                f"<|start_header_id|>user<|end_header_id|>\n\n{USER1}<|eot_id|>"
                f"<|start_header_id|>assistant<|end_header_id|>\n\n{ASSISTANT1}<|eot_id|>"
                f"<|start_header_id|>user<|end_header_id|>\n\n{USER2}<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n"
            ),
        },
    ),
    "mistral-instruct": (
        MISTRAL,
        "messages",
        {
            "user": f"[INST] {USER1}[/INST]",
            "user-assistant-user": f"[INST] {USER1}[/INST] {ASSISTANT1}</s>[INST] {USER2}[/INST]",
            "system-user-assistant-user": (
                f"[INST] {SYSTEM}\n\n{USER1}[/INST] {ASSISTANT1}</s>[INST] {USER2}[/INST]"
            ),
        },
    ),
    "mistral-instruct-slice": (
        MISTRAL_SLICE,
        "messages",
        {
            "user": f"[INST] {USER1}[/INST]",
            "system-user": f"[INST] {SYSTEM}\n{USER1}[/INST]",
            # The system text goes to the last user turn; the system message itself has no branch.
            "system-user-assistant-user": (
                f"[INST] {USER1}[/INST] {ASSISTANT1}</s>[INST] {SYSTEM}\n{USER2}[/INST]"
            ),
        },
    ),
    "gemma-instruct": (
        GEMMA,
        "messages",
        {
            "user": f"<start_of_turn>user\n{USER1}<end_of_turn>\n<start_of_turn>model\n",
            "system-user-assistant-user": (
                f"<start_of_turn>user\n{SYSTEM}\n{USER1}<end_of_turn>\n"
                f"<start_of_turn>model\n{ASSISTANT1}<end_of_turn>\n"
                f"<start_of_turn>user\n{USER2}<end_of_turn>\n<start_of_turn>model\n"
            ),
        },
    ),
    "phi-3": (
        PHI3,
        "messages",
        {
            "user": f"<|user|>\n{USER1}<|end|>\n<|assistant|>\n",
            "system-user-assistant-user": (
                f"<|system|>\n{SYSTEM}<|end|>\n<|user|>\n{USER1}<|end|>\n"
                f"<|assistant|>\n{ASSISTANT1}<|end|>\n<|user|>\n{USER2}<|end|>\n<|assistant|>\n"
            ),
        },
    ),
    "phi-3-legacy": (
        PHI3_LEGACY,
        "legacy",
        {
            "user": f"<|user|>\n{USER1}<|end|>\n<|assistant|>\n",
            "system-user": f"<|system|>\n{SYSTEM}<|end|>\n<|user|>\n{USER1}<|end|>\n<|assistant|>\n",
            # One template execution per exchange: no newline after the first <|end|>.
            "system-user-assistant-user": (
                f"<|system|>\n{SYSTEM}<|end|>\n<|user|>\n{USER1}<|end|>\n"
                f"<|assistant|>\n{ASSISTANT1}<|end|><|user|>\n{USER2}<|end|>\n<|assistant|>\n"
            ),
        },
    ),
    "modelfile-legacy": (
        MODELFILE_LEGACY,
        "legacy",
        {
            "user": f"\nUSER: {USER1}\nASSISTANT: ",
            "system-user-assistant-user": (
                f"{SYSTEM}\nUSER: {USER1}\nASSISTANT: {ASSISTANT1}\nUSER: {USER2}\nASSISTANT: "
            ),
        },
    ),
}
CASES = [(name, conv) for name, (_, _, by_conv) in EXPECTED.items() for conv in by_conv]


@pytest.mark.parametrize(("name", "conv"), CASES, ids=[f"{n}:{c}" for n, c in CASES])
def test_translation_renders_what_ollama_renders(name: str, conv: str) -> None:
    source, mode, by_conv = EXPECTED[name]
    translation = translate_go_template(source)
    assert translation.jinja is not None, translation.unsupported
    assert (translation.mode, translation.exact) == (mode, True)
    assert translation.unsupported == translation.approximate == []
    assert render_chat(translation.jinja, conversation(conv)) == by_conv[conv]


def jinja_of(go_template: str) -> str:
    translation = translate_go_template(go_template)
    assert translation.jinja is not None, translation.unsupported
    return translation.jinja


# --- SmolLM2: Ollama's ChatML + SYSTEM is the GGUF's own template

SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
SMOLLM2_GGUF_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)


def test_smollm2_gguf_template_is_the_one_stored_here(smollm2_gguf: Path) -> None:
    gguf = pytest.importorskip("gguf")
    field = gguf.GGUFReader(smollm2_gguf).fields["tokenizer.chat_template"]
    assert field.contents() == SMOLLM2_GGUF_TEMPLATE


def test_smollm2_chatml_with_system_renders_like_the_gguf_template() -> None:
    result = compare_templates(jinja_of(CHATML), SMOLLM2_GGUF_TEMPLATE, SMOLLM2_SYSTEM)
    assert result.identical, result.first_difference
    assert result.identical_with_generation_prompt
    assert len(result.cases) == 2 * len(COMPARE_CONVERSATIONS)


def test_smollm2_chatml_without_system_differs_and_says_where() -> None:
    result = compare_templates(jinja_of(CHATML), SMOLLM2_GGUF_TEMPLATE, None)
    assert not result.identical and not result.identical_with_generation_prompt
    assert result.first_difference is not None
    assert result.first_difference.startswith("user (add_generation_prompt=True): at char 12")
    assert [c.identical for c in result.cases if c.name.startswith("system")] == [True] * 4


def test_comparison_counts_a_raising_template_as_different() -> None:
    raising = "{{ raise_exception('Only user and assistant roles are supported!') }}"
    result = compare_templates(jinja_of(CHATML), raising, None)
    assert not result.identical
    assert result.first_difference == (
        "user (add_generation_prompt=True): gguf template failed: "
        "TemplateError: Only user and assistant roles are supported!"
    )


def test_other_templates_do_not_match_chatml() -> None:
    result = compare_templates(jinja_of(LLAMA3), SMOLLM2_GGUF_TEMPLATE, SMOLLM2_SYSTEM)
    assert not result.identical


# --- Ollama's semantics beyond the three standard conversations


def test_generation_prompt_is_gated_like_hf_templates() -> None:
    # Ollama always generates; without a generation prompt the open turn is left out.
    rendered = render_chat(jinja_of(CHATML), conversation("user"), add_generation_prompt=False)
    assert rendered == f"<|im_start|>user\n{USER1}<|im_end|>\n"


def test_consecutive_messages_of_one_role_are_merged_like_ollama_collate() -> None:
    msgs = [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "tool", "content": "t1"},
        {"role": "tool", "content": "t2"},
    ]
    assert render_chat(jinja_of(CHATML), msgs) == (
        "<|im_start|>user\na\n\nb<|im_end|>\n<|im_start|>tool\nt1<|im_end|>\n"
        "<|im_start|>tool\nt2<|im_end|>\n<|im_start|>assistant\n"
    )


def test_system_joins_every_system_message() -> None:
    jinja = jinja_of("{{ .System }}|{{ range .Messages }}{{ .Role }}:{{ .Content }};{{ end }}")
    msgs = [
        {"role": "system", "content": "a"},
        {"role": "user", "content": "x"},
        {"role": "system", "content": "b"},
        {"role": "user", "content": "y"},
    ]
    assert render_chat(jinja, msgs) == "a\n\nb|system:a;user:x;system:b;user:y;"


def test_missing_or_null_content_reads_as_empty_like_go() -> None:
    msgs = [{"role": "user", "content": USER1}, {"role": "assistant", "content": None}]
    assert render_chat(jinja_of(PHI3), msgs) == (
        f"<|user|>\n{USER1}<|end|>\n<|assistant|>\n<|end|>\n<|assistant|>\n"
    )


def test_legacy_prefill_keeps_the_open_response() -> None:
    jinja = jinja_of(PHI3_LEGACY)
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Sure"}]
    assert render_chat(jinja, msgs) == "<|user|>\nHi<|end|>\n<|assistant|>\nSure"
    # Without a generation prompt a finished exchange is closed.
    closed = render_chat(jinja, msgs, add_generation_prompt=False)
    assert closed == "<|user|>\nHi<|end|>\n<|assistant|>\nSure<|end|>"


def test_legacy_cut_drops_everything_after_response() -> None:
    jinja = jinja_of("Q: {{ .Prompt }} A: {{ .Response }} <END>{{ if .System }}S{{ end }}|")
    msgs = conversation("user-assistant-user")
    assert render_chat(jinja, msgs) == f"Q: {USER1} A: {ASSISTANT1} <END>|Q: {USER2} A: "


def test_whitespace_survives_trim_blocks_and_lstrip_blocks() -> None:
    go = "{{ range .Messages }}\n  {{ .Role }}\n  {{ if .Content }}\n    {{ .Content }}\n  {{ end }}\n{{ end }}"
    rendered = render_chat(jinja_of(go), [{"role": "user", "content": "hi"}])
    assert rendered == "\n  user\n  \n    hi\n  \n"


def test_go_trim_markers_are_applied() -> None:
    go = "A  \n {{- range .Messages -}} \n [{{- .Content -}}] \n {{- end -}} \n B"
    assert render_chat(jinja_of(go), conversation("user")) == f"A[{USER1}]B"


def test_jinja_syntax_in_template_text_is_literal() -> None:
    go = "{{ range .Messages }}{# {{ .Content }} #}{% raw %}\r\n{{ end }}{"
    rendered = render_chat(jinja_of(go), conversation("user"))
    assert rendered == "{# " + USER1 + " #}{% raw %}\r\n{"


def test_comments_variables_and_with() -> None:
    go = (
        "{{/* a comment */}}{{- $n := len .Messages }}{{ with .System }}[{{ . }}]{{ else }}[none]{{ end }}"
        "{{ range $i, $m := .Messages }}{{ if $i }},{{ end }}{{ $i }}={{ $m.Role }}{{ end }}/{{ $n }}"
        '{{ if eq (index .Messages 0).Role "system" "developer" }}!{{ end }}'
    )
    jinja = jinja_of(go)
    assert render_chat(jinja, conversation("system-user")) == f"[{SYSTEM}]0=system,1=user/2!"
    assert render_chat(jinja, conversation("user")) == "[none]0=user/1"


def test_printing_booleans_follows_go() -> None:
    jinja = jinja_of('{{ range .Messages }}{{ eq .Role "user" }} {{ not .Content }}{{ end }}')
    assert render_chat(jinja, conversation("user")) == "true false"


# --- tools: translated, but flagged as approximate where Go prints JSON its own way


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather",
            "parameters": {
                "type": "object",
                "properties": {
                    "unit": {"type": "string", "description": "C or F"},
                    "city": {"type": "string", "description": "The city"},
                },
                "required": ["city"],
            },
        },
    }
]
TOOLS_TEMPLATE = (
    "{{- if .Tools }}Tools:{{ range .Tools }} {{ .Function.Name }}("
    "{{- range $name, $p := .Function.Parameters.Properties }}{{ $name }}: {{ $p.Type }}, {{ end }})"
    "{{ end }}\n{{ end }}"
    "{{- range .Messages }}{{ .Role }}: "
    "{{ if .Content }}{{ .Content }}"
    "{{ else }}{{ range .ToolCalls }}call {{ .Function.Name }} {{ .Function.Arguments }}{{ end }}"
    "{{ end }}\n{{ end }}assistant:"
)


def test_tool_templates_translate_with_json_printing_flagged() -> None:
    translation = translate_go_template(TOOLS_TEMPLATE)
    assert translation.jinja is not None and translation.mode == "messages"
    assert not translation.exact
    assert translation.unsupported == []
    assert translation.approximate == [
        "range over .Properties (sorted keys, as Go ranges over maps; newer Ollama may keep insertion order)",
        "printing .Arguments (Go prints it as JSON; rendered with tojson)",
    ]
    msgs = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                }
            ],
        },
    ]
    rendered = render_chat(translation.jinja, msgs, tools=TOOLS)
    # Go ranges over a map in sorted key order.
    assert rendered == (
        "Tools: get_weather(city: string, unit: string, )\n"
        'user: Weather?\nassistant: call get_weather {"city":"Paris"}\nassistant:'
    )
    assert render_chat(translation.jinja, msgs[:1]) == "user: Weather?\nassistant:"


# --- what cannot be translated


@pytest.mark.parametrize(
    ("go", "reason"),
    [
        ("{{ range .Messages }}{{ .Images }}{{ end }}", "field .Images"),
        (
            "{{ range .Messages }}{{ toJson .Content }}{{ end }}",
            "function toJson (not a Go/Ollama builtin)",
        ),
        ("{{ range .Messages }}{{ html .Content }}{{ end }}", "function html"),
        (
            '{{ range .Messages }}{{ printf "%q" .Content }}{{ end }}',
            "printf with verbs other than %s %d %v",
        ),
        ('{{ define "x" }}y{{ end }}{{ template "x" }}', "syntax: {{ define }} (named templates)"),
        ("{{ .Prompt", "syntax: unclosed action at offset 0"),
        ("{{ if .System }}x", "syntax: unclosed {{ if }}"),
        ("{{ $x }}", "undefined variable $x"),
        ("{{ . }}", "the root data . printed or passed whole"),
        ("{{ .Messages.Foo }}", "field .Foo"),
        ("{{ range .Messages }}{{ .Content.Len }}{{ end }}", "field .Len"),
        ("{{ .Document }}{{ .Suffix2 }}", "field .Suffix2"),
    ],
)
def test_unsupported_constructs_give_no_jinja_and_say_why(go: str, reason: str) -> None:
    translation = translate_go_template(go)
    assert translation.jinja is None
    assert not translation.exact
    assert reason in translation.unsupported


@pytest.mark.parametrize(
    "go",
    ["", "}}", "{{", "{{ }}", "{{ ( }}", "{{ .A | }}", "{{ range }}{{ end }}", "{{ else }}",
     "{{- -}}", "{{ end }}", "{{ 'c' }}", '{{ "\\q" }}', "{{ range $a, $b, $c := .Messages }}{{ end }}",
     "{{ break }}", "{{/* open", "{{ .X | .Y }}", "{{ len }}", "{{ 1 2 }}"],
)  # fmt: skip
def test_garbage_never_raises(go: str) -> None:
    translation = translate_go_template(go)
    assert translation.exact == (translation.jinja is not None and not translation.approximate)


# --- SYSTEM and MESSAGES layers

NASTY = 'It\'s "quoted" \\ back\\slash\nnew line\r\n\ttab {{ x }} {% raw %} {# c #} %} }} é 😀 \x01'


def test_default_system_applies_only_without_a_system_message() -> None:
    jinja = with_default_system(jinja_of(CHATML), NASTY)
    assert render_chat(jinja, conversation("user")) == (
        f"<|im_start|>system\n{NASTY}<|im_end|>\n<|im_start|>user\n{USER1}<|im_end|>\n<|im_start|>assistant\n"
    )
    expected = EXPECTED["chatml"][2]["system-user-assistant-user"]
    assert render_chat(jinja, conversation("system-user-assistant-user")) == expected


def test_default_system_with_empty_messages() -> None:
    jinja = with_default_system(jinja_of(CHATML), NASTY)
    assert (
        render_chat(jinja, []) == f"<|im_start|>system\n{NASTY}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_chat(jinja_of(CHATML), []) == "<|im_start|>assistant\n"


def test_empty_default_system_changes_nothing() -> None:
    assert with_default_system(CHATML, "") == CHATML


def test_fixed_messages_go_after_the_request_system_message() -> None:
    fixed = [{"role": "user", "content": NASTY}, {"role": "assistant", "content": "ok"}]
    jinja = with_fixed_messages(jinja_of(CHATML), fixed)
    turns = f"<|im_start|>user\n{NASTY}<|im_end|>\n<|im_start|>assistant\nok<|im_end|>\n"
    assert render_chat(
        jinja, [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]
    ) == (
        f"<|im_start|>system\nS<|im_end|>\n{turns}<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_chat(jinja, []) == f"{turns}<|im_start|>assistant\n"


def test_system_and_fixed_messages_compose() -> None:
    fixed = [{"role": "user", "content": "u0"}, {"role": "assistant", "content": "a0"}]
    jinja = with_default_system(with_fixed_messages(jinja_of(LLAMA3), fixed), "S")
    rendered = render_chat(jinja, [{"role": "user", "content": "u1"}])
    header = "<|start_header_id|>{}<|end_header_id|>\n\n"
    assert rendered == (
        f"{header.format('system')}S<|eot_id|>{header.format('user')}u0<|eot_id|>"
        f"{header.format('assistant')}a0<|eot_id|>{header.format('user')}u1<|eot_id|>"
        f"{header.format('assistant')}"
    )


def test_wrappers_keep_a_leading_newline_of_the_template() -> None:
    jinja = "\n{% for m in messages %}{{ m.content }}{% endfor %}"
    assert render_chat(with_default_system(jinja, "S"), []) == "\nS"
    assert render_chat(with_fixed_messages(jinja, [{"role": "user", "content": "u"}]), []) == "\nu"


@pytest.mark.parametrize("text", ["", NASTY, "'", "\\", "\\'", "{{", "%}", "\\n", "\u2028\x7f\x00"])
def test_string_literals_round_trip(text: str) -> None:
    assert render_chat("{{ " + jinja_string_literal(text) + " }}", []) == text


def test_value_literals_round_trip() -> None:
    value = {"a": [1, 2.5, True, False, None, NASTY], "b": {"c": "d"}}
    assert render_chat("{{ " + jinja_literal(value) + " | tojson }}", []) == (
        '{"a": [1, 2.5, true, false, null, '
        + render_chat("{{ x | tojson }}", [], x=NASTY)
        + '], "b": {"c": "d"}}'
    )


# --- rendering like transformers


def test_render_chat_provides_hf_globals_and_filters() -> None:
    jinja = (
        "{{ bos_token }}{{ 'é' | tojson }}{{ tools is none }}{% generation %}g{% endgeneration %}"
        "{{ strftime_now('%Y') | length }}{% for m in messages %}{% if loop.first %}{% break %}{% endif %}{% endfor %}{{ eos_token }}"
    )
    assert render_chat(jinja, [], bos_token="<s>", eos_token="</s>") == '<s>"é"Trueg4</s>'


def test_render_chat_raise_exception() -> None:
    from jinja2.exceptions import TemplateError

    with pytest.raises(TemplateError, match="nope"):
        render_chat("{{ raise_exception('nope') }}", [])
