"""A streaming, sharded safetensors writer: tensors are written as they are produced.

A safetensors file is an 8-byte little-endian header length, a JSON header
(`{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`, offsets
relative to the end of the header) and the raw little-endian data. Every tensor's size
is known before any value is computed, so the whole layout (which shard, which byte) is
planned up front, each file is allocated at its final size, and any piece of any tensor
can then be written at its place with `os.pwrite`, in any order and from any thread.
Peak memory is whatever the caller holds while it writes: never the model.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from converters.errors import DiskSpaceError, MigrateError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
FILE_MODE = 0o644  # readable by the server's user, like a downloaded checkpoint
_HEADER_ALIGN = 8  # data starts 8-byte aligned, as the safetensors library writes it


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """What the plan needs to know of one tensor before its values exist."""

    name: str
    dtype: str  # safetensors dtype: "BF16", "F16", "F32"
    shape: tuple[int, ...]
    n_bytes: int


@dataclass(slots=True)
class Shard:
    """One output file: its tensors, in order, and where their data lies in it."""

    filename: str
    entries: list[TensorEntry] = field(default_factory=list)
    data_start: int = 0  # file offset of the first data byte (after the header)
    offsets: dict[str, int] = field(default_factory=dict)  # tensor -> offset in the data

    @property
    def data_bytes(self) -> int:
        return sum(entry.n_bytes for entry in self.entries)

    def header(self) -> bytes:
        table: dict[str, object] = {"__metadata__": {"format": "pt"}}
        position = 0
        for entry in self.entries:
            table[entry.name] = {
                "dtype": entry.dtype,
                "shape": list(entry.shape),
                "data_offsets": [position, position + entry.n_bytes],
            }
            position += entry.n_bytes
        text = json.dumps(table, separators=(",", ":")).encode()
        padded = -(-(8 + len(text)) // _HEADER_ALIGN) * _HEADER_ALIGN - 8
        return text + b" " * (padded - len(text))


def plan_shards(entries: Sequence[TensorEntry], max_shard_bytes: int) -> list[Shard]:
    """Split tensors, in order, into files of at most `max_shard_bytes` of data.

    A tensor larger than the limit gets a file of its own (it cannot be split).
    """
    if max_shard_bytes <= 0:
        raise ValueError("max_shard_bytes must be positive")
    groups: list[list[TensorEntry]] = [[]]
    size = 0
    for entry in entries:
        if groups[-1] and size + entry.n_bytes > max_shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(entry)
        size += entry.n_bytes
    count = len(groups)
    shards = []
    for number, group in enumerate(groups, start=1):
        name = SINGLE_FILE if count == 1 else f"model-{number:05d}-of-{count:05d}.safetensors"
        shard = Shard(filename=name, entries=group)
        position = 0
        for entry in group:
            shard.offsets[entry.name] = position
            position += entry.n_bytes
        shard.data_start = 8 + len(shard.header())
        shards.append(shard)
    return shards


class ShardedWriter:
    """Writes planned shards: headers at open, tensor bytes by `write`, the index at close.

    Use as a context manager; `write` may be called from several threads at once.
    Closing checks that every planned byte was written.
    """

    def __init__(self, out_dir: Path, shards: list[Shard]) -> None:
        self.out_dir = out_dir
        self.shards = shards
        # tensor name -> (shard index, file offset of its data, its size)
        self._where: dict[str, tuple[int, int, int]] = {}
        self._fds: list[int] = []
        self._written = [0] * len(shards)
        self._lock = threading.Lock()

    def __enter__(self) -> ShardedWriter:
        _check_free_space(self.out_dir, sum(s.data_start + s.data_bytes for s in self.shards))
        try:
            for index, shard in enumerate(self.shards):
                self._fds.append(self._create(shard))
                for entry in shard.entries:
                    start = shard.data_start + shard.offsets[entry.name]
                    self._where[entry.name] = (index, start, entry.n_bytes)
        except BaseException:
            self._close_fds()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close_fds()
        if exc_type is None:
            self._check_complete()
            self._write_index()

    @property
    def files(self) -> list[Path]:
        names = [shard.filename for shard in self.shards]
        if len(self.shards) > 1:
            names.append(INDEX_FILE)
        return [self.out_dir / name for name in names]

    @property
    def total_bytes(self) -> int:
        return sum(shard.data_bytes for shard in self.shards)

    def write(self, name: str, offset: int, data: memoryview | bytes) -> None:
        """Write `data` at byte `offset` of tensor `name`'s data."""
        index, start, size = self._where[name]
        view = memoryview(data).cast("B")
        if offset < 0 or offset + len(view) > size:
            raise ValueError(f"{name}: bytes {offset}..{offset + len(view)} outside its {size}")
        fd = self._fds[index]
        position = start + offset
        while view:
            try:
                done = os.pwrite(fd, view, position)
            except OSError as exc:
                raise _write_error(self.out_dir / self.shards[index].filename, exc) from None
            view = view[done:]
            position += done
            with self._lock:
                self._written[index] += done

    # --- internals ---------------------------------------------------------------------

    def _create(self, shard: Shard) -> int:
        path = self.out_dir / shard.filename
        header = shard.header()
        size = 8 + len(header) + shard.data_bytes
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except OSError as exc:
            raise _write_error(path, exc) from None
        try:
            os.fchmod(fd, FILE_MODE)  # the umask may have taken bits off
            os.ftruncate(fd, size)
            os.pwrite(fd, len(header).to_bytes(8, "little") + header, 0)
        except OSError as exc:
            os.close(fd)
            raise _write_error(path, exc) from None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _close_fds(self) -> None:
        while self._fds:
            os.close(self._fds.pop())

    def _check_complete(self) -> None:
        for shard, written in zip(self.shards, self._written, strict=True):
            if written != shard.data_bytes:
                raise MigrateError(
                    f"{self.out_dir / shard.filename}: wrote {written} of {shard.data_bytes} "
                    "tensor bytes",
                    hint="this is a bug in the rebuild: report it",
                )

    def _write_index(self) -> None:
        if len(self.shards) == 1:
            return
        weight_map = {
            entry.name: shard.filename for shard in self.shards for entry in shard.entries
        }
        index = {
            "metadata": {"total_size": self.total_bytes},
            "weight_map": dict(sorted(weight_map.items())),
        }
        path = self.out_dir / INDEX_FILE
        path.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
        path.chmod(FILE_MODE)


def _check_free_space(out_dir: Path, needed: int) -> None:
    """Fail before writing anything when the shards cannot fit.

    (posix_fallocate would reserve the blocks, but its unwritten extents made the writes
    3-10x slower on ext4 here; a sparse file filled in place is as fast as plain writes.)
    """
    try:
        stats = os.statvfs(out_dir)
    except OSError:
        return  # cannot tell: the writes will say
    free = stats.f_bavail * stats.f_frsize
    if needed > free:
        raise DiskSpaceError(
            f"{out_dir}: {needed / 1e9:.2f} GB of safetensors to write, {free / 1e9:.2f} GB free",
            hint="free some disk space or choose another output directory",
        )


def _write_error(path: Path, exc: OSError) -> MigrateError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskSpaceError(
            f"{path}: no space left on the device while writing the safetensors",
            hint="free some disk space or choose another output directory",
        )
    return MigrateError(
        f"{path}: cannot write: {exc.strerror}", hint="check the output directory's permissions"
    )
