"""The validation report: JSON for machines, one self-contained HTML file for people.

The HTML has no external assets: inline CSS and SVG. Per model: the verdict and its
reasons, every contract/rendering check, the parity figures, a chart of per-prompt
agreement, and per prompt the two texts side by side with the first divergence marked
and a strip of per-token agreement (green agree, amber near-tie, red disagree).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from converters.files import write_text_atomic

COLORS = {
    "PASS": "#1a7f37",
    "WARN": "#9a6700",
    "FAIL": "#cf222e",
    "pass": "#1a7f37",
    "warn": "#9a6700",
    "fail": "#cf222e",
}
AGREE, NEAR_TIE, DISAGREE = "#2da44e", "#d4a72c", "#cf222e"

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1f2328;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.25rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
.badge{display:inline-block;padding:.1rem .6rem;border-radius:1rem;color:#fff;font-weight:600}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}.num{text-align:right;font-variant-numeric:tabular-nums}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:.75rem}.pair pre{white-space:pre-wrap;background:#f6f8fa;padding:.5rem;margin:0;border-radius:6px}
mark{background:#ffd8b5}details{margin:.4rem 0}summary{cursor:pointer}
.muted{color:#59636e}
"""


def write_report(data: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write report.json and report.html into `out_dir` (atomically); return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    write_text_atomic(json_path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    write_text_atomic(html_path, render_html(data))
    return json_path, html_path


def render_html(data: dict[str, Any]) -> str:
    models = data.get("models", [])
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<title>Ollama -> vLLM validation</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Ollama &rarr; vLLM validation</h1>",
        f"<p class=muted>{_e(data.get('tool', ''))}; suite {_e(data.get('suite', ''))}, "
        f"{data.get('prompts', 0)} prompts</p>",
        _summary_table(models),
    ]
    parts += [_model_section(model) for model in models]
    parts.append("</body></html>")
    return "\n".join(parts)


def _summary_table(models: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{_e(m['name'])}</td><td>{_e(m['scheme'])}</td><td>{_badge(m['verdict'])}</td>"
        f"<td>{_fmt(_get(m, 'parity', 'agreements'), _get(m, 'parity', 'positions'))}</td>"
        f"<td class=num>{_num(_get(m, 'parity', 'mean_kl'), 4)}</td>"
        f"<td class=num>{_pct(_get(m, 'parity', 'exact_match_rate'))}</td></tr>"
        for m in models
    )
    return (
        "<table><tr><th>model</th><th>scheme</th><th>verdict</th><th>top-1 agreement</th>"
        f"<th>mean KL (nats)</th><th>exact match</th></tr>{rows}</table>"
    )


def _model_section(model: dict[str, Any]) -> str:
    out = [
        f"<h2>{_e(model['name'])} {_badge(model['verdict'])}</h2>",
        f"<p class=muted>source {_e(model['source'])} &rarr; target {_e(model['target'])}, "
        f"scheme {_e(model['scheme'])}, {model.get('seconds', 0)} s</p>",
    ]
    if model.get("reasons"):
        out.append("<ul>" + "".join(f"<li>{_e(r)}</li>" for r in model["reasons"]) + "</ul>")
    rows = "".join(
        f"<tr><td>{_e(c['name'])}</td><td>{_badge(c['status'])}</td><td>{_e(c['detail'])}</td></tr>"
        for c in model.get("checks", [])
    )
    out.append(
        f"<h3>API contract and prompt rendering</h3><table><tr><th>check</th><th>status</th><th>detail</th></tr>{rows}</table>"
    )
    parity = model.get("parity")
    if parity:
        out.append(_parity_section(parity))
    return "\n".join(out)


def _parity_section(parity: dict[str, Any]) -> str:
    metrics = [
        ("scored tokens", parity.get("positions")),
        ("top-1 agreement", _fmt(parity.get("agreements"), parity.get("positions"))),
        ("near-ties (excused)", parity.get("near_ties")),
        ("hard disagreements", parity.get("hard_disagreements")),
        ("top-k overlap", _num(parity.get("topk_overlap"), 3)),
        ("mean KL, top-k (nats)", _num(parity.get("mean_kl"), 4)),
        ("exact-match rate, free-running", _pct(parity.get("exact_match_rate"))),
        ("median first divergence (token)", parity.get("first_divergence_median")),
        ("alignment failures", parity.get("alignment_failures")),
    ]
    rows = "".join(f"<tr><th>{_e(k)}</th><td class=num>{_e(str(v))}</td></tr>" for k, v in metrics)
    prompts = parity.get("prompts", [])
    return "\n".join(
        [
            "<h3>Output parity</h3>",
            "<p class=muted>Teacher-forced: the target scores the source's greedy tokens. A near-tie is "
            "a position where the source's own top two were closer than the measured noise.</p>",
            f"<table>{rows}</table>",
            "<h4>Agreement per prompt</h4>",
            _agreement_chart(prompts),
            "<h4>Prompts</h4>",
            *[_prompt_details(p) for p in prompts],
        ]
    )


def _agreement_chart(prompts: list[dict[str, Any]]) -> str:
    """A bar per prompt: the share of source tokens the target agreed with (near-ties amber)."""
    width, height, pad = max(300, 14 * len(prompts) + 40), 160, 30
    bar = (width - pad - 10) / max(1, len(prompts))
    shapes = [f'<line x1="{pad}" y1="10" x2="{pad}" y2="{height - 20}" stroke="#999"/>']
    for label, y in (("100%", 10), ("50%", 10 + (height - 30) / 2), ("0%", height - 20)):
        shapes.append(
            f'<text x="{pad - 4}" y="{y + 4:.0f}" font-size="10" text-anchor="end">{label}</text>'
        )
    for i, prompt in enumerate(prompts):
        total = max(1, prompt.get("positions") or 0)
        agree = (prompt.get("agreements") or 0) / total
        ties = (prompt.get("near_ties") or 0) / total
        x = pad + 4 + i * bar
        scale = height - 30
        shapes.append(
            _rect(
                x, 10 + scale * (1 - agree), bar * 0.8, scale * agree, AGREE, prompt.get("id", "")
            )
        )
        if ties:
            shapes.append(
                _rect(
                    x,
                    10 + scale * (1 - agree - ties),
                    bar * 0.8,
                    scale * ties,
                    NEAR_TIE,
                    "near-ties",
                )
            )
    return f'<svg width="{width:.0f}" height="{height}" role="img" aria-label="agreement per prompt">{"".join(shapes)}</svg>'


def _token_strip(prompt: dict[str, Any]) -> str:
    positions = prompt.get("positions") or 0
    marks = {d["position"]: d for d in prompt.get("disagreements", [])}
    cell = 6
    cells = []
    for i in range(positions):
        d = marks.get(i)
        color = AGREE if d is None else (NEAR_TIE if d.get("near_tie") else DISAGREE)
        tip = "agree" if d is None else f"{d.get('source_token')!r} vs {d.get('target_token')!r}"
        cells.append(_rect(i * cell, 0, cell - 1, 12, color, f"token {i}: {tip}"))
    return f'<svg width="{max(cell, positions * cell)}" height="12">{"".join(cells)}</svg>'


def _prompt_details(prompt: dict[str, Any]) -> str:
    divergence = prompt.get("first_divergence")
    source, target = prompt.get("source_text", ""), prompt.get("target_text", "")
    summary = (
        f"{_e(prompt.get('id', ''))} <span class=muted>({_e(prompt.get('category', ''))})</span> "
        f"{_fmt(prompt.get('agreements'), prompt.get('positions'))} agree"
        + (
            ", exact match"
            if prompt.get("exact_match")
            else f", diverges at token {divergence}"
            if divergence is not None
            else ""
        )
    )
    errors = [e for e in (prompt.get("source_error"), prompt.get("target_error")) if e]
    return (
        f"<details><summary>{summary}</summary>{_token_strip(prompt)}"
        + "".join(f"<p style='color:#cf222e'>{_e(e)}</p>" for e in errors)
        + "<div class=pair><div><b>source (Ollama)</b><pre>"
        + _marked(source, prompt.get("source_divergence_char"))
        + "</pre></div><div><b>target (vLLM)</b><pre>"
        + _marked(target, prompt.get("target_divergence_char"))
        + "</pre></div></div></details>"
    )


def _marked(text: str, at: int | None) -> str:
    if at is None or not 0 <= at <= len(text):
        return _e(text)
    return _e(text[:at]) + "<mark>" + _e(text[at:]) + "</mark>"


def _rect(x: float, y: float, w: float, h: float, color: str, title: str) -> str:
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" fill="{color}"><title>{_e(str(title))}</title></rect>'


def _badge(status: str) -> str:
    return f'<span class=badge style="background:{COLORS.get(status, "#59636e")}">{_e(status.upper())}</span>'


def _get(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)  # type: ignore[assignment]
    return data


def _fmt(part: Any, whole: Any) -> str:
    if not isinstance(part, int) or not isinstance(whole, int) or whole == 0:
        return "-"
    return f"{part}/{whole} ({part / whole:.1%})"


def _num(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def _pct(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, int | float) else "-"


def _e(text: Any) -> str:
    return html.escape(str(text))
