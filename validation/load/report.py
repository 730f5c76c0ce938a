"""Bench outputs: bench.json, bench.csv, bench.html (self-contained, inline SVG) and,
where matplotlib is installed (the `plot` extra), bench.png.

The HTML draws its own charts so that it needs nothing beyond the standard library;
the PNG is for READMEs and slides.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from pathlib import Path

from converters.files import write_text_atomic
from validation.load.schemas import EndpointResult, LevelMetrics, LoadComparison

COLORS = {"source": "#d1742f", "target": "#2f6fd1"}
CSV_FIELDS = [
    "role", "url", "model", "concurrency", "requests", "completed", "errors",
    "duration_s", "output_tokens_per_s", "requests_per_s", "goodput_per_s",
    "mean_output_tokens", "max_in_flight",
    *[f"{m}_{p}" for m in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms")
      for p in ("mean", "p50", "p90", "p95", "p99")],
]  # fmt: skip


def write_outputs(result: LoadComparison, out_dir: Path) -> dict[str, str]:
    """Write every output into `out_dir`; returns {kind: path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "bench.json",
        "csv": out_dir / "bench.csv",
        "html": out_dir / "bench.html",
    }
    write_text_atomic(paths["json"], json.dumps(result.model_dump(mode="json"), indent=2) + "\n")
    write_text_atomic(paths["csv"], to_csv(result))
    write_text_atomic(paths["html"], to_html(result))
    written = {kind: str(path) for kind, path in paths.items()}
    png = out_dir / "bench.png"
    if write_png(result, png):
        written["png"] = str(png)
    return written


def to_csv(result: LoadComparison) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for side in (result.source, result.target):
        for level in side.levels:
            writer.writerow(_flat(side, level))
    return buffer.getvalue()


def _flat(side: EndpointResult, level: LevelMetrics) -> dict[str, object]:
    row: dict[str, object] = {"role": side.role, "url": side.url, "model": side.model}
    data = level.model_dump()
    for name in CSV_FIELDS[3:]:
        metric, _, stat = name.rpartition("_")
        if metric in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
            row[name] = data[metric][stat]
        else:
            row[name] = data[name]
    return row


def series(side: EndpointResult) -> dict[str, list[tuple[int, float]]]:
    """Points for the two charts: output tokens/s and p95 TTFT against concurrency."""
    done = [lv for lv in side.levels if lv.completed]
    return {
        "throughput": [(lv.concurrency, lv.output_tokens_per_s) for lv in done],
        "ttft": [(lv.concurrency, lv.ttft_ms.p95 / 1000) for lv in done if lv.ttft_ms.p95],
    }


CHARTS = (("throughput", "output tokens/s"), ("ttft", "p95 time to first token (s)"))


def write_png(result: LoadComparison, path: Path) -> bool:
    """Both charts side by side; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for axis, (key, label) in zip(axes, CHARTS, strict=True):
        for side in (result.source, result.target):
            points = series(side)[key]
            if points:
                xs, ys = zip(*points, strict=True)
                axis.plot(xs, ys, marker="o", color=COLORS[side.role], label=_label(side))
        axis.set_xscale("log", base=2)
        axis.set_xticks(result.spec.concurrency, [str(c) for c in result.spec.concurrency])
        axis.set_xlabel("concurrent requests")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(_title(result), fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)
    return True


def _label(side: EndpointResult) -> str:
    return f"{side.role}: {side.server} ({side.model})"


def _title(result: LoadComparison) -> str:
    spec = result.spec
    return f"{spec.input_tokens} input tokens, {spec.output_tokens} output tokens per request"


# --- HTML -------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1f2328;padding:0 1rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:right}
th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}.muted{color:#59636e}
.charts{display:flex;gap:1rem;flex-wrap:wrap}
"""


def to_html(result: LoadComparison) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<title>Ollama vs vLLM under load</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Ollama vs vLLM under load</h1>",
        f"<p class=muted>{e(_title(result))}; prompts sized by "
        f"{e(result.prompt_tokens_measured_by)}; ratios &gt; 1 mean the target is better</p>",
        "<ul>",
    ]
    for side in (result.source, result.target):
        note = f" &mdash; stopped early: {e(side.aborted)}" if side.aborted else ""
        parts.append(f"<li>{e(side.role)}: {e(side.url)} &mdash; {e(_label(side))}{note}</li>")
    parts += ["</ul>", "<div class=charts>"]
    parts += [_svg_chart(result, key, label) for key, label in CHARTS]
    parts += ["</div>", _comparison_table(result)]
    for side in (result.source, result.target):
        parts.append(f"<h2>{e(side.role)}: {e(side.url)}</h2>{_levels_table(side)}")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _fmt(value: float | int | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _comparison_table(result: LoadComparison) -> str:
    head = (
        "<tr><th>concurrency</th><th>source tok/s</th><th>target tok/s</th><th>ratio</th>"
        "<th>source p95 TTFT ms</th><th>target p95 TTFT ms</th><th>ratio</th>"
        "<th>source p95 TPOT ms</th><th>target p95 TPOT ms</th><th>ratio</th>"
        "<th>errors (source / target)</th></tr>"
    )
    rows = [
        f"<tr><td>{r.concurrency}</td><td>{_fmt(r.source_output_tps)}</td>"
        f"<td>{_fmt(r.target_output_tps)}</td><td>{_fmt(r.throughput_ratio, 2)}</td>"
        f"<td>{_fmt(r.source_p95_ttft_ms, 0)}</td><td>{_fmt(r.target_p95_ttft_ms, 0)}</td>"
        f"<td>{_fmt(r.ttft_ratio, 2)}</td><td>{_fmt(r.source_p95_tpot_ms)}</td>"
        f"<td>{_fmt(r.target_p95_tpot_ms)}</td><td>{_fmt(r.tpot_ratio, 2)}</td>"
        f"<td>{_fmt(r.source_errors, 0)} / {_fmt(r.target_errors, 0)}</td></tr>"
        for r in result.rows
    ]
    spec, src, tgt = result.spec, result.source, result.target
    extra = (
        f"<tr><td>users at {spec.users_at_tps:g} tok/s</td><td>{_fmt(src.users_at_tps, 0)}</td>"
        f"<td>{_fmt(tgt.users_at_tps, 0)}</td><td>{_fmt(result.users_ratio, 2)}</td></tr>"
        f"<tr><td>{spec.agent_steps}-step agent loop (s)</td><td>{_fmt(src.agent_loop_s, 2)}</td>"
        f"<td>{_fmt(tgt.agent_loop_s, 2)}</td><td>{_fmt(result.agent_loop_ratio, 2)}</td></tr>"
    )
    return f"<h2>Side by side</h2><table>{head}{''.join(rows)}</table><table>{extra}</table>"


def _levels_table(side: EndpointResult) -> str:
    head = (
        "<tr><th>concurrency</th><th>done / sent</th><th>errors</th><th>tok/s</th><th>req/s</th>"
        "<th>goodput req/s</th><th>TTFT p50 / p95 / p99 ms</th><th>TPOT p50 / p95 ms</th>"
        "<th>ITL p50 / p95 ms</th><th>E2E p50 / p95 ms</th><th>mean output tokens</th></tr>"
    )
    rows = []
    for lv in side.levels:
        errors = html.escape("; ".join(lv.error_samples)) or "0"
        rows.append(
            f"<tr><td>{lv.concurrency}</td><td>{lv.completed} / {lv.requests}</td>"
            f"<td>{errors}</td><td>{_fmt(lv.output_tokens_per_s)}</td>"
            f"<td>{_fmt(lv.requests_per_s, 2)}</td><td>{_fmt(lv.goodput_per_s, 2)}</td>"
            f"<td>{_fmt(lv.ttft_ms.p50, 0)} / {_fmt(lv.ttft_ms.p95, 0)} / {_fmt(lv.ttft_ms.p99, 0)}</td>"
            f"<td>{_fmt(lv.tpot_ms.p50)} / {_fmt(lv.tpot_ms.p95)}</td>"
            f"<td>{_fmt(lv.itl_ms.p50)} / {_fmt(lv.itl_ms.p95)}</td>"
            f"<td>{_fmt(lv.e2e_ms.p50, 0)} / {_fmt(lv.e2e_ms.p95, 0)}</td>"
            f"<td>{_fmt(lv.mean_output_tokens)}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _svg_chart(result: LoadComparison, key: str, label: str) -> str:
    """A log2-x line chart of one metric for both endpoints, as inline SVG."""
    width, height, left, bottom, top, right = 520, 300, 60, 40, 30, 20
    levels = result.spec.concurrency
    lines = {side.role: series(side)[key] for side in (result.source, result.target)}
    top_value = max((y for pts in lines.values() for _, y in pts), default=1.0) or 1.0
    lo, hi = math.log2(levels[0]), math.log2(levels[-1]) or 1.0
    span = (hi - lo) or 1.0

    def x(c: int) -> float:
        return left + (math.log2(c) - lo) / span * (width - left - right)

    def y(v: float) -> float:
        return height - bottom - v / (top_value * 1.1) * (height - bottom - top)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{html.escape(label)}">',
        f'<text x="{left}" y="18" font-size="13">{html.escape(label)}</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#888"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#888"/>',
    ]
    for c in levels:
        out.append(
            f'<text x="{x(c):.1f}" y="{height - bottom + 16}" font-size="11" text-anchor="middle">{c}</text>'
        )
    for i in range(5):
        value = top_value * 1.1 * i / 4
        out.append(
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" font-size="11" text-anchor="end">{value:,.3g}</text>'
        )
    for role, points in lines.items():
        if not points:
            continue
        path = " ".join(f"{x(c):.1f},{y(v):.1f}" for c, v in points)
        out.append(
            f'<polyline fill="none" stroke="{COLORS[role]}" stroke-width="2" points="{path}"/>'
        )
        out += [
            f'<circle cx="{x(c):.1f}" cy="{y(v):.1f}" r="3" fill="{COLORS[role]}"/>'
            for c, v in points
        ]
    for i, role in enumerate(lines):
        out.append(
            f'<text x="{width - right - 150}" y="{top + 14 + 16 * i}" font-size="12" '
            f'fill="{COLORS[role]}">&#9632; {role}</text>'
        )
    out.append(f'<text x="{(width + left) / 2}" y="{height - 6}" font-size="11" '
               'text-anchor="middle">concurrent requests</text></svg>')  # fmt: skip
    return "\n".join(out)
