"""The output-folder protocol: a converted model appears complete or not at all.

A converter writes into `<out_root>/.<slug>.partial-<token>`; on success the manifest
(`migration-manifest.json`: every file with its size and sha256) is written last and the
folder is renamed to `<out_root>/<slug>` in one step. A crash leaves only a `.partial-`
folder, which the next run removes once it knows its writer is dead: each staging folder
has a sibling `.lock` file that its writer holds an flock on, and the kernel drops that
lock when the process dies, however it dies.

`is_complete` is what a rerun checks to skip work: manifest present and every listed
file present with the listed size (`verify=True` re-hashes too).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from converters.errors import DiskSpaceError, MigrateError, UsageError

try:
    import fcntl
except ImportError:  # Windows: no flock; stale partials are then judged by age alone
    fcntl = None  # type: ignore[assignment]

MANIFEST_NAME = "migration-manifest.json"
MANIFEST_SCHEMA = 1
HASH_CHUNK = 1 << 20  # 1 MiB reads: large enough for sha256 to release the GIL
HASH_WORKERS = 4
STALE_AGE_S = 24 * 3600  # only used where flock is unavailable
_PARTIAL_RE = re.compile(
    r"^\.(?P<slug>.+)\.partial-(?P<token>[0-9a-f]{12})(?P<suffix>|\.lock|\.replaced)$"
)
_SLUG_MAX = 200


class ManifestFile(BaseModel):
    path: str  # POSIX path relative to the model folder
    size: int
    sha256: str


class Manifest(BaseModel):
    """Contents of `migration-manifest.json`."""

    schema_version: int = Field(default=MANIFEST_SCHEMA, alias="schema")
    slug: str
    created: str  # ISO 8601, UTC
    source_digest: str | None = None  # e.g. the Ollama blob's "sha256:..."
    tool_versions: dict[str, str] = Field(default_factory=dict)
    files: list[ManifestFile]
    extra: dict[str, Any] = Field(default_factory=dict)

    model_config = ConfigDict(populate_by_name=True)


# -- slugs and paths --------------------------------------------------------------------


def validate_slug(slug: str) -> str:
    """The slug as a single, visible folder name; `UsageError` otherwise."""
    bad = (
        not slug
        or slug in (".", "..")
        or slug.startswith(".")  # hidden names are reserved for staging folders
        or len(slug) > _SLUG_MAX
        or any(sep in slug for sep in ("/", "\\", os.sep, os.altsep or "/"))
        or any(ord(ch) < 32 or ch == "\x7f" for ch in slug)
        or slug != slug.strip()
    )
    if bad:
        raise UsageError(
            f"invalid output folder name {slug!r}",
            hint="a slug is one folder name: no path separators, no leading dot, no '..'",
        )
    return slug


def model_slug_dir(out_root: Path, slug: str) -> Path:
    """`<out_root>/<slug>`, after checking the slug cannot escape `out_root`."""
    validate_slug(slug)
    root = Path(out_root).absolute()
    path = root / slug
    if path.parent != root:  # belt and braces: the checks above should make this impossible
        raise UsageError(f"invalid output folder name {slug!r}")
    return path


# -- completeness -------------------------------------------------------------------------


def read_manifest(model_dir: Path) -> Manifest | None:
    """The folder's manifest, or None when absent or unreadable."""
    try:
        raw = json.loads((Path(model_dir) / MANIFEST_NAME).read_text(encoding="utf-8"))
        manifest = Manifest.model_validate(raw)
    except (OSError, ValueError, ValidationError):
        return None
    if manifest.schema_version != MANIFEST_SCHEMA:
        return None
    return manifest


def is_complete(model_dir: Path, *, verify: bool = False, workers: int = HASH_WORKERS) -> bool:
    """Manifest present and every listed file there with its size (and sha256 if `verify`)."""
    manifest = read_manifest(model_dir)
    if manifest is None:
        return False
    root = Path(model_dir)
    paths: list[Path] = []
    for entry in manifest.files:
        path = _safe_member(root, entry.path)
        if path is None or not path.is_file() or path.is_symlink():
            return False
        if path.stat().st_size != entry.size:
            return False
        paths.append(path)
    if not verify:
        return True
    digests = hash_files(paths, workers=workers)
    return all(digests[p][1] == e.sha256 for p, e in zip(paths, manifest.files, strict=True))


def _safe_member(root: Path, rel: str) -> Path | None:
    """`root/rel` if `rel` is a plain relative path inside root (a manifest is input too)."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or not pure.parts or ".." in pure.parts or "\\" in rel:
        return None
    return root.joinpath(*pure.parts)


# -- hashing ------------------------------------------------------------------------------


def hash_files(
    paths: list[Path], *, workers: int = HASH_WORKERS, fsync: bool = False
) -> dict[Path, tuple[int, str]]:
    """(size, sha256 hex) of each file, hashed in a thread pool in 1 MiB chunks."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(lambda p: _hash_one(p, fsync), paths)
        return dict(zip(paths, results, strict=True))


def _hash_one(path: Path, fsync: bool) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(HASH_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while n := handle.readinto(buffer):
            digest.update(view[:n])
            size += n
        if fsync:
            # Data must be on disk before the rename publishes the folder as complete.
            os.fsync(handle.fileno())
    return size, digest.hexdigest()


# -- disk space ---------------------------------------------------------------------------


def check_disk_space(path: Path, needed_bytes: int) -> int:
    """Free bytes at `path` (or its nearest existing parent); `DiskSpaceError` if too few."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed_bytes:
        raise DiskSpaceError(
            f"not enough disk at {path}: need {format_bytes(needed_bytes)}, {format_bytes(free)} free",
            hint="free space or use --out DIR elsewhere",
        )
    return free


def format_bytes(n: int) -> str:
    """GiB with one decimal from 0.1 GiB up (as in "0.3 GiB free"), smaller units below."""
    if n >= (1 << 30) // 10:
        return f"{n / (1 << 30):.1f} GiB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{n} B"


# -- stale partials -----------------------------------------------------------------------


def clean_stale_partials(out_root: Path) -> list[Path]:
    """Remove staging leftovers of dead runs in `out_root`; returns what was removed.

    A `.replaced` folder (the old model moved aside by --force) whose slug has no folder
    any more is put back instead: the run died between the two renames.
    """
    root = Path(out_root)
    if not root.is_dir():
        return []
    groups: dict[tuple[str, str], list[Path]] = {}
    for entry in root.iterdir():
        match = _PARTIAL_RE.match(entry.name)
        if match:
            groups.setdefault((match["slug"], match["token"]), []).append(entry)
    removed: list[Path] = []
    for (slug, token), entries in groups.items():
        lock = root / f".{slug}.partial-{token}.lock"
        with _try_lock(lock) as owner_dead:
            if not owner_dead:
                continue
            replaced = root / f".{slug}.partial-{token}.replaced"
            if replaced.is_dir() and not (root / slug).exists():
                os.rename(replaced, root / slug)
            for entry in entries:
                if entry != lock and entry.exists():
                    _remove(entry)
                    removed.append(entry)
        lock.unlink(missing_ok=True)
    return removed


@contextlib.contextmanager
def _try_lock(lock: Path) -> Iterator[bool]:
    """Yield True when no live process holds `lock` (keeping it locked meanwhile)."""
    if fcntl is None:
        yield _older_than(lock, STALE_AGE_S)
        return
    try:
        handle = open(lock, "a+b")  # noqa: SIM115 - closed below, after the caller's cleanup
    except FileNotFoundError:
        yield True
        return
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        handle.close()


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return datetime.now(UTC).timestamp() - path.stat().st_mtime > seconds
    except OSError:
        return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# -- staging ------------------------------------------------------------------------------


class StagingDir:
    """Write a model folder under a hidden name; publish it whole, or leave nothing.

    with StagingDir(out_root, slug, source_digest=d, tool_versions=v) as stage:
        write files into stage.path (final location: stage.final)
    # success: manifest written, folder renamed to stage.final
    # exception: staging folder removed, exception propagates

    `force=True` replaces an existing folder: it is moved aside, the new one renamed in,
    then the old one deleted. Without `force` an existing folder is an error.
    """

    def __init__(
        self,
        out_root: Path,
        slug: str,
        *,
        force: bool = False,
        source_digest: str | None = None,
        tool_versions: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        hash_workers: int = HASH_WORKERS,
        fsync: bool = True,
    ) -> None:
        self.out_root = Path(out_root).absolute()
        self.slug = validate_slug(slug)
        self.final = model_slug_dir(self.out_root, slug)
        self.force = force
        self.source_digest = source_digest
        self.tool_versions = dict(tool_versions or {})
        self.extra = dict(extra or {})
        self.hash_workers = hash_workers
        self.fsync = fsync
        self.token = secrets.token_hex(6)
        base = f".{slug}.partial-{self.token}"
        self.path = self.out_root / base
        self._lock_path = self.out_root / f"{base}.lock"
        self._aside = self.out_root / f"{base}.replaced"
        self._lock_handle: IO[bytes] | None = None
        self.manifest: Manifest | None = None

    def __enter__(self) -> StagingDir:
        self.out_root.mkdir(parents=True, exist_ok=True)
        clean_stale_partials(self.out_root)
        self._refuse_existing()
        self._lock_handle = _create_locked(self._lock_path)
        self.path.mkdir()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self._commit()
        finally:
            _remove(self.path)  # no-op after a successful rename
            self._release()

    def set_extra(self, **values: Any) -> None:
        """Add manifest `extra` entries known only once the files are written."""
        self.extra.update(values)

    def _refuse_existing(self) -> None:
        if (self.final.exists() or self.final.is_symlink()) and not self.force:
            raise UsageError(
                f"{self.final} already exists",
                hint="use --force to replace it, or skip it when it is complete",
            )

    def _commit(self) -> None:
        self.manifest = self._write_manifest()
        self._refuse_existing()  # another run may have published meanwhile
        replaced = False
        if self.final.exists() or self.final.is_symlink():
            os.rename(self.final, self._aside)
            replaced = True
        try:
            os.rename(self.path, self.final)
        except OSError:
            if replaced:
                os.rename(self._aside, self.final)  # put the old folder back
            raise
        _fsync_dir(self.out_root)
        if replaced:
            _remove(self._aside)

    def _write_manifest(self) -> Manifest:
        files = _list_files(self.path)
        digests = hash_files(files, workers=self.hash_workers, fsync=self.fsync)
        manifest = Manifest(
            slug=self.slug,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            source_digest=self.source_digest,
            tool_versions=self.tool_versions,
            files=[
                ManifestFile(path=p.relative_to(self.path).as_posix(), size=s, sha256=h)
                for p, (s, h) in digests.items()
            ],
            extra=self.extra,
        )
        text = json.dumps(manifest.model_dump(by_alias=True), indent=2, sort_keys=False) + "\n"
        target = self.path / MANIFEST_NAME
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            if self.fsync:
                os.fsync(handle.fileno())
        if self.fsync:
            _fsync_dir(self.path)
        return manifest

    def _release(self) -> None:
        if self._lock_handle is not None:
            self._lock_path.unlink(missing_ok=True)
            self._lock_handle.close()
            self._lock_handle = None


def _create_locked(lock: Path) -> IO[bytes]:
    """Create `lock` already flocked: made under a name cleaners ignore, locked, then renamed,
    so no cleaner can ever see it unlocked and take this live run for a dead one."""
    tmp = lock.with_name(lock.name + ".new")
    handle = open(tmp, "w+b")  # noqa: SIM115 - held until the staging ends
    try:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(tmp, lock)
    except BaseException:
        handle.close()
        tmp.unlink(missing_ok=True)
        raise
    return handle


def _list_files(root: Path) -> list[Path]:
    """Every file under root (sorted), refusing symlinks: a folder must stand on its own."""
    files: list[Path] = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            raise MigrateError(
                f"output folder holds a symlink: {path.relative_to(root)}",
                hint="converters must write plain files (copy or hard-link instead)",
            )
        if path.name == MANIFEST_NAME and path.parent == root:
            continue
        if path.is_file():
            files.append(path)
    return files


def _fsync_dir(path: Path) -> None:
    """Make a rename durable; not possible (nor needed) on every platform."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
