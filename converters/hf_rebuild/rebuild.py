"""Rebuild a Hugging Face checkpoint (safetensors + config) from a GGUF file, streaming.

The GGUF is memory-mapped; each tensor is converted a chunk of rows at a time and each
chunk is written straight to its planned place in the output shard, so memory stays at
a few chunks per worker whatever the model's size. Chunks run on a thread pool: the
numpy kernels release the GIL, so both cores of a small machine do useful work
(measured: see bench/convert_speed.py). Pages of the map are dropped once read, so the
file does not pile up in the process's resident memory either.
"""

from __future__ import annotations

import json
import mmap
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from converters.errors import GGUFError, MigrateError
from converters.gguf.header import GGUFHeader, read_gguf_info, read_header
from converters.gguf.info import GGUFInfo
from converters.hf_rebuild.config import build_config, build_generation_config
from converters.hf_rebuild.names import (
    ArchSpec,
    arch_spec,
    has_norm_offset,
    hf_tensor_name,
    is_permuted_qk,
)
from converters.hf_rebuild.safetensors_writer import (
    FILE_MODE,
    ShardedWriter,
    TensorEntry,
    plan_shards,
)
from converters.hf_rebuild.tensors import (
    OUTPUT_DTYPES,
    Scratch,
    TensorJob,
    convert_rows,
    read_tensor,
    tensor_bytes,
)
from converters.hf_rebuild.tokenizer import write_tokenizer_files

Progress = Callable[[int, int], None]
_PAGE = mmap.PAGESIZE


class RebuildResult(BaseModel):
    """What a rebuild wrote."""

    out_dir: Path
    architecture: str
    dtype: str
    files: list[Path]  # every file written into out_dir, sorted
    tensor_count: int
    bytes_written: int  # tensor data bytes in the safetensors shards
    seconds: float


def rebuild_from_gguf(
    gguf_path: Path,
    out_dir: Path,
    *,
    dtype: str = "bfloat16",
    max_shard_bytes: int = 2 * 1024**3,
    workers: int | None = None,
    generation_config: dict[str, Any] | None = None,
    chat_template: str | None = None,
    progress: Progress | None = None,
) -> RebuildResult:
    """Write a complete HF model directory (weights, configs, tokenizer) from a GGUF.

    `out_dir` must exist and be empty; on an error it is left half-written, for the
    caller (which renames a finished temporary directory into place) to delete.
    `progress(done, total)` is called from this thread with tensor bytes written so far
    and in all. `workers` defaults to the usable CPUs; `generation_config` holds sampling
    defaults for generation_config.json; `chat_template` overrides the GGUF's.
    """
    started = time.perf_counter()
    result = write_weights_and_config(
        gguf_path,
        out_dir,
        dtype=dtype,
        max_shard_bytes=max_shard_bytes,
        workers=workers,
        generation_config=generation_config,
        progress=progress,
    )
    write_tokenizer_files(gguf_path, out_dir, chat_template=chat_template)
    result.files = _listing(out_dir)
    result.seconds = time.perf_counter() - started
    return result


def write_weights_and_config(
    gguf_path: Path,
    out_dir: Path,
    *,
    dtype: str = "bfloat16",
    max_shard_bytes: int = 2 * 1024**3,
    workers: int | None = None,
    generation_config: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> RebuildResult:
    """The safetensors shards (+ index), config.json and generation_config.json; no tokenizer."""
    if dtype not in OUTPUT_DTYPES:
        raise MigrateError(
            f"unknown output dtype {dtype!r}", hint=f"choose one of {', '.join(OUTPUT_DTYPES)}"
        )
    started = time.perf_counter()
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    header = read_header(gguf_path)
    info = read_gguf_info(gguf_path)
    with _mapped(gguf_path) as buf:
        spec = arch_spec(info.architecture)
        jobs, non_weights = plan_jobs(header, info, spec)
        rope_tensors = {
            name: np.asarray(
                read_tensor(tensor_bytes(buf, header.data_offset, job.info), job, "float32")
            )
            for name, job in non_weights.items()
        }
        shapes = {job.info.name: job.hf_shape for job in jobs}
        config = build_config(info, spec, shapes, dtype=dtype, rope_tensors=rope_tensors)
        entries = [
            TensorEntry(job.hf_name, OUTPUT_DTYPES[dtype][0], job.hf_shape, job.out_bytes(dtype))
            for job in jobs
        ]
        shards = plan_shards(entries, max_shard_bytes)
        with ShardedWriter(out_dir, shards) as writer:
            _convert_all(buf, header, jobs, writer, dtype, workers, progress)
        files = list(writer.files)
    _write_json(out_dir / "config.json", config)
    _write_json(
        out_dir / "generation_config.json", build_generation_config(info, generation_config)
    )
    return RebuildResult(
        out_dir=out_dir,
        architecture=info.architecture,
        dtype=dtype,
        files=sorted([*files, out_dir / "config.json", out_dir / "generation_config.json"]),
        tensor_count=len(jobs),
        bytes_written=writer.total_bytes,
        seconds=time.perf_counter() - started,
    )


def plan_jobs(
    header: GGUFHeader, info: GGUFInfo, spec: ArchSpec
) -> tuple[list[TensorJob], dict[str, TensorJob]]:
    """One job per weight tensor, in file order; and the config-only tensors by GGUF name."""
    jobs: list[TensorJob] = []
    non_weights: dict[str, TensorJob] = {}
    seen: dict[str, str] = {}
    for tensor in sorted(header.tensors, key=lambda item: item.offset):
        hf_name = hf_tensor_name(spec, tensor.name)
        if hf_name is None:
            if tensor.name in spec.non_weights:
                non_weights[tensor.name] = TensorJob(tensor, tensor.name)
            continue
        if hf_name in seen:
            raise GGUFError(
                f"tensors {seen[hf_name]} and {tensor.name} both map to {hf_name}",
                hint="the GGUF is malformed: pull or download the model again",
            )
        seen[hf_name] = tensor.name
        head_dim = _permuted_head_dim(spec, info, tensor.name, tuple(reversed(tensor.shape)))
        minus = spec.norm_offset if has_norm_offset(spec, tensor.name) else 0.0
        jobs.append(TensorJob(tensor, hf_name, unpermute_head_dim=head_dim, minus=minus))
    if not any(job.info.name == "token_embd.weight" for job in jobs):
        raise GGUFError(
            f"{header.path}: GGUF has no token_embd.weight tensor",
            hint="the file is incomplete: pull or download the model again",
        )
    return jobs, non_weights


def _permuted_head_dim(spec: ArchSpec, info: GGUFInfo, name: str, hf_shape: tuple[int, ...]) -> int:
    if not is_permuted_qk(spec, name):
        return 0
    heads = info.head_count if ".attn_q." in name else (info.head_count_kv or info.head_count)
    size = hf_shape[0]
    if not heads or size % heads or (size // heads) % 2:
        raise GGUFError(
            f"tensor {name}: {size} rows do not split into {heads} heads of even size",
            hint="the GGUF's head counts do not match its tensors: re-convert the model",
        )
    return size // heads


# --- the conversion loop -------------------------------------------------------------------


def _convert_all(
    buf: mmap.mmap,
    header: GGUFHeader,
    jobs: list[TensorJob],
    writer: ShardedWriter,
    dtype: str,
    workers: int | None,
    progress: Progress | None,
) -> None:
    total = writer.total_bytes
    done = 0
    if progress:
        progress(0, total)
    tasks = [(job, start, stop) for job in jobs for start, stop in job.row_chunks()]
    count = workers or _usable_cpus()

    local = threading.local()

    def run(job: TensorJob, start: int, stop: int) -> int:
        if not hasattr(local, "scratch"):
            local.scratch = Scratch()
        data = tensor_bytes(buf, header.data_offset, job.info)
        out = convert_rows(data, job, start, stop, dtype, local.scratch)
        per_row = job.out_bytes(dtype) // max(job.rows, 1)
        writer.write(job.hf_name, start * per_row, out.data)
        _drop_pages(buf, header, job, start, stop)
        return int(out.nbytes)

    if count == 1:
        for task in tasks:
            done += run(*task)
            if progress:
                progress(done, total)
        return
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="gguf-rebuild") as pool:
        # A bounded window of tasks in flight keeps the writes close to file order.
        # (and memory bounded: a task holds its result only until it has written it).
        pending: set[Future[int]] = set()
        for task in tasks:
            if len(pending) >= 4 * count:
                done += _collect(pending)
                if progress:
                    progress(done, total)
            pending.add(pool.submit(run, *task))
        while pending:
            done += _collect(pending)
            if progress:
                progress(done, total)


def _usable_cpus() -> int:
    # One thread per core measured best (2 cores: 1 thread 5.2 s, 2 threads 2.3 s, 3 or 4 2.6 s).
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _collect(pending: set[Future[int]]) -> int:
    """Wait for at least one task; remove the finished ones; re-raise the first failure."""
    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
    total = 0
    for future in finished:
        pending.discard(future)
        error = future.exception()
        if error is not None:
            for other in pending:
                other.cancel()
            raise error
        total += future.result()
    return total


def _drop_pages(buf: mmap.mmap, header: GGUFHeader, job: TensorJob, start: int, stop: int) -> None:
    """Let the kernel take back the map's pages this chunk read (they count as our RSS).

    Only pages wholly inside the chunk go, so a neighbour still being read keeps its own.
    """
    per_row = job.info.n_bytes // max(job.rows, 1)
    first = header.data_offset + job.info.offset + start * per_row
    last = header.data_offset + job.info.offset + stop * per_row
    first = -(-first // _PAGE) * _PAGE
    last = last // _PAGE * _PAGE
    if last > first and hasattr(mmap, "MADV_DONTNEED"):
        buf.madvise(mmap.MADV_DONTNEED, first, last - first)


# --- files ------------------------------------------------------------------------------------


@contextmanager
def _mapped(path: Path) -> Iterator[mmap.mmap]:
    """The GGUF mapped read-only (read_header has already vouched for the file)."""
    with open(path, "rb") as file:
        buf = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        yield buf
    finally:
        # A numpy view may survive in an exception's traceback: the GC closes the map then.
        with suppress(BufferError):
            buf.close()


def _write_json(path: Path, content: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    path.chmod(FILE_MODE)


def _listing(out_dir: Path) -> list[Path]:
    return sorted(path for path in out_dir.rglob("*") if path.is_file())
