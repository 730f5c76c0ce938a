"""Fetch a model's original Hugging Face files (safetensors + config + tokenizer).

Downloads go through `huggingface_hub.snapshot_download` into the hub cache, so an
interrupted fetch resumes from there and offline runs reuse it. The chosen files are
then placed in `dest`: weights hard-linked to the cached blobs (no second copy on
disk), small JSON/tokenizer files copied so that editing them cannot corrupt the cache.

The file list is decided here, from the repo listing (online) or the cached listing
(offline): HF-format safetensors when the repo has any, else `pytorch_model*.bin` with a
note; never `.gguf`, `.pth` or `.pt`, never sub-folders (`original/`, `onnx/`, ...).
Every failure becomes one `HubError` line that names the repo and what to do; the token
never appears in a message, a log line or the result.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx2
from huggingface_hub import HfApi, constants, get_cached_repo_tree, get_token, snapshot_download
from huggingface_hub import errors as hf_errors
from huggingface_hub.file_download import repo_folder_name
from pydantic import BaseModel
from tqdm.auto import tqdm

from converters.errors import (
    GatedRepoError,
    HubError,
    HubUnreachableError,
    MigrateError,
    UsageError,
)

logger = logging.getLogger(__name__)

WEIGHT_PATTERNS = ("model.safetensors", "model-*.safetensors", "model.safetensors.index.json")
# Repos with non-standard shard names (no `model*`): every root safetensors file.
ANY_SAFETENSORS_PATTERNS = ("*.safetensors", "*.safetensors.index.json")
BIN_PATTERNS = ("pytorch_model.bin", "pytorch_model-*.bin", "pytorch_model.bin.index.json")
SIDE_PATTERNS = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "added_tokens.json",
    "preprocessor_config.json",
    "processor_config.json",
)
# Never fetched, whatever a pattern above would match.
NEVER_PATTERNS = ("*.gguf", "*.pth", "*.pt")
# Weights are hard-linked; everything else is copied (callers may rewrite configs).
_LINKED_SUFFIXES = (".safetensors", ".bin")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_COMPARE_MAX = 1 << 20
# What the hub sends (X-Error-Message) for a wrong token, as opposed to a gated or private repo.
_BAD_TOKEN_MESSAGE = "Invalid credentials in Authorization header"

WeightsFormat = Literal["safetensors", "bin"]


class FetchResult(BaseModel):
    """What `fetch_hf_original` placed in `local_dir`. Holds no token."""

    repo: str
    revision: str  # the resolved commit sha
    requested_revision: str | None = None  # branch, tag or sha the caller asked for
    files: list[str]  # repo-relative names, all present in local_dir
    local_dir: Path
    snapshot_dir: Path  # the hub-cache snapshot the files came from
    weights_format: WeightsFormat
    offline: bool = False
    notes: list[str] = []


def fetch_hf_original(
    repo: str,
    dest: Path,
    *,
    revision: str | None = None,
    token: str | None = None,
    offline: bool = False,
    cache_dir: Path | None = None,
    progress: bool = False,
    endpoint: str | None = None,
) -> FetchResult:
    """Download the HF-format files of `repo` at `revision` and place them in `dest`.

    `dest` is created if needed; the chosen files replace same-named ones there and
    nothing else in it is touched.
    `token` None means huggingface_hub's own (HF_TOKEN or the saved login). `offline`
    (or HF_HUB_OFFLINE=1) uses only the hub cache. `endpoint` defaults to $HF_ENDPOINT
    read now, not at import time as huggingface_hub does.
    Raises `HubError` (gated, missing, not cached), `HubUnreachableError` (network).
    """
    endpoint = resolve_endpoint(endpoint)
    cache = _resolve_cache_dir(cache_dir)
    offline = offline or _offline_from_env()
    ctx = _Context(repo=repo, revision=revision, endpoint=endpoint, token=token, offline=offline)
    try:
        if offline:
            listing = _cached_listing(repo, revision, cache)
        else:
            listing = _remote_listing(repo, revision, token, endpoint)
        files, weights_format, notes = select_files(listing, repo=repo)
        snapshot = snapshot_download(
            repo,
            revision=revision,
            cache_dir=str(cache),
            token=token,
            endpoint=endpoint,
            local_files_only=offline,
            allow_patterns=[glob.escape(name) for name in files],
            tqdm_class=None if progress else _SilentTqdm,
            library_name="ollama-vllm-migrate",
        )
    except MigrateError:
        raise
    except Exception as exc:
        raise _translate(exc, ctx) from _scrubbed_cause(exc, token)
    snapshot_dir = Path(snapshot)
    _check_snapshot(snapshot_dir, files, ctx)
    try:
        _place_files(snapshot_dir, dest, files)
    except OSError as exc:
        raise MigrateError(
            f"cannot place the files of {repo} in {dest}: {exc.strerror or exc}",
            hint="check free space and permissions there",
        ) from exc
    logger.info("fetched %s@%s: %d files into %s", repo, snapshot_dir.name, len(files), dest)
    return FetchResult(
        repo=repo,
        revision=snapshot_dir.name,
        requested_revision=revision,
        files=files,
        local_dir=dest,
        snapshot_dir=snapshot_dir,
        weights_format=weights_format,
        offline=offline,
        notes=notes,
    )


def resolve_endpoint(endpoint: str | None = None) -> str:
    """The hub URL: the argument, else $HF_ENDPOINT now, else huggingface_hub's default."""
    value = endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    return value.rstrip("/")


def select_files(paths: list[str], *, repo: str) -> tuple[list[str], WeightsFormat, list[str]]:
    """Pick the files to fetch from a repo listing: (files, weights format, notes)."""
    root = [p for p in paths if "/" not in p and not _matches(p, NEVER_PATTERNS)]
    notes: list[str] = []
    weights = [p for p in root if _matches(p, WEIGHT_PATTERNS)]
    weights_format: WeightsFormat = "safetensors"
    if not weights:
        weights = [p for p in root if _matches(p, ANY_SAFETENSORS_PATTERNS)]
        if weights:
            notes.append(f"{repo}: no model*.safetensors, fetching {', '.join(weights)}")
    if not weights:
        weights = [p for p in root if _matches(p, BIN_PATTERNS)]
        weights_format = "bin"
        if weights:
            notes.append(f"{repo} has no safetensors: fetched PyTorch .bin weights instead")
    if not weights:
        raise HubError(
            f"HF repo {repo} has no safetensors or pytorch_model*.bin weights",
            hint="check --map, or rebuild from the GGUF with --from-gguf",
        )
    side = [p for p in root if _matches(p, SIDE_PATTERNS)]
    return sorted(weights) + sorted(side), weights_format, notes


# -- listing -------------------------------------------------------------------------


def _remote_listing(repo: str, revision: str | None, token: str | None, endpoint: str) -> list[str]:
    api = HfApi(endpoint=endpoint, token=token, library_name="ollama-vllm-migrate")
    info = api.model_info(repo, revision=revision)
    if info.siblings is not None:
        return [s.rfilename for s in info.siblings]
    return api.list_repo_files(repo, revision=revision)


def _cached_listing(repo: str, revision: str | None, cache: Path) -> list[str]:
    """Files of the cached snapshot: the hub's saved tree listing, else the folder itself."""
    try:
        return [f.path for f in get_cached_repo_tree(repo, revision=revision, cache_dir=cache)]
    except hf_errors.CachedRepoTreeNotFoundError:
        pass
    # Snapshots made by other tools may lack the tree listing: list the folder.
    snapshot = _cached_snapshot_dir(repo, revision, cache)
    if snapshot is None:
        raise hf_errors.LocalEntryNotFoundError(f"{repo} is not cached")
    return [p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()]


def _cached_snapshot_dir(repo: str, revision: str | None, cache: Path) -> Path | None:
    storage = cache / repo_folder_name(repo_id=repo, repo_type="model")
    rev = revision or constants.DEFAULT_REVISION
    commit = rev if _COMMIT_RE.match(rev) else None
    ref = storage / "refs" / rev
    if commit is None and ref.is_file():
        commit = ref.read_text().strip()
    if commit is None or not (storage / "snapshots" / commit).is_dir():
        return None
    return storage / "snapshots" / commit


# -- placing files ---------------------------------------------------------------------


def _check_snapshot(snapshot: Path, files: list[str], ctx: _Context) -> None:
    missing = [name for name in files if not (snapshot / name).is_file()]
    if missing:
        raise HubError(
            f"the cached copy of HF repo {ctx.repo} lacks {', '.join(missing[:3])}",
            hint=_cache_hint(ctx),
        )


def _place_files(snapshot: Path, dest: Path, files: list[str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in files:
        src = (snapshot / name).resolve()  # the blob, not the snapshot symlink
        target = dest / name
        if target.exists() and _same_file(src, target):
            continue
        tmp = dest / f".{name}.fetch-tmp"
        tmp.unlink(missing_ok=True)
        if name.endswith(_LINKED_SUFFIXES):
            _link_or_copy(src, tmp)
        else:
            shutil.copyfile(src, tmp)
        os.replace(tmp, target)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed: copy
        shutil.copyfile(src, dst)


def _same_file(src: Path, target: Path) -> bool:
    """Already placed: the same inode, or a small copy with the same bytes."""
    try:
        if src.samefile(target):
            return True
        size = src.stat().st_size
        # Large copies (cross-filesystem) are redone rather than compared byte by byte.
        return (
            size == target.stat().st_size < _COMPARE_MAX and src.read_bytes() == target.read_bytes()
        )
    except OSError:
        return False


# -- errors ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    repo: str
    revision: str | None
    endpoint: str
    token: str | None = field(repr=False)  # never shown, even in tracebacks with locals
    offline: bool = False


def _translate(exc: BaseException, ctx: _Context) -> MigrateError:
    """One `MigrateError` line for a huggingface_hub / network failure."""
    repo, endpoint = ctx.repo, _display_endpoint(ctx.endpoint)
    chain = list(_cause_chain(exc))
    if _first(chain, hf_errors.GatedRepoError) is not None:
        return _gated(ctx, endpoint)
    if _first(chain, hf_errors.RevisionNotFoundError) is not None:
        return HubError(
            f"HF repo {repo} has no revision {ctx.revision or constants.DEFAULT_REVISION!r}",
            hint="check the branch, tag or commit given with the mapping",
        )
    if _first(chain, hf_errors.RepositoryNotFoundError) is not None:
        return _not_found(ctx, chain)
    if _first(chain, hf_errors.HFValidationError) is not None:
        return UsageError(
            f"{repo!r} is not a valid HF repo id", hint="expected owner/name in --map"
        )
    http = _first(chain, hf_errors.HfHubHTTPError)
    if http is not None and _is_bad_token(http):
        return HubError(
            f"the HF token was rejected by {endpoint} while fetching {repo}",
            hint="check HF_TOKEN or --token",
        )
    if http is not None and _status(http) in (401, 403):
        return _gated(ctx, endpoint)
    if ctx.offline or _first(chain, hf_errors.OfflineModeIsEnabled) is not None:
        return _not_cached(ctx, chain)
    if http is not None and (_status(http) or 0) >= 500:
        return HubUnreachableError(
            f"the Hugging Face hub at {endpoint} answered HTTP {_status(http)} for {repo}",
            hint="try again later, set HF_HUB_OFFLINE=1 to use the cache, or --from-gguf",
        )
    if _is_network(chain):
        return HubUnreachableError(
            f"cannot reach the Hugging Face hub at {endpoint} to fetch {repo}",
            hint="check the network, set HF_HUB_OFFLINE=1 to use the cache, or --from-gguf",
        )
    detail = _scrub(f"{type(exc).__name__}: {exc}", ctx.token).splitlines()[0]
    return HubError(f"fetching HF repo {repo} failed: {detail}", hint="run again, or --from-gguf")


def _gated(ctx: _Context, endpoint: str) -> HubError:
    return GatedRepoError(
        f"HF repo {ctx.repo} is gated: accept its licence at {endpoint}/{ctx.repo} "
        "and set HF_TOKEN (or --token)",
        hint="the token needs read access" if _token_sent(ctx) else None,
    )


def _not_found(ctx: _Context, chain: list[BaseException]) -> HubError:
    http = _first(chain, hf_errors.HfHubHTTPError)
    if http is not None and _status(http) == 401 and not _token_sent(ctx):
        # The hub answers 401 for missing repos and for private ones alike when no token is sent.
        return HubError(
            f"HF repo {ctx.repo} not found, or private and no token was sent",
            hint="check --map, set HF_TOKEN (or --token), or rebuild from the GGUF with --from-gguf",
        )
    return HubError(
        f"HF repo {ctx.repo} not found",
        hint="check --map, or rebuild from the GGUF with --from-gguf",
    )


def _not_cached(ctx: _Context, chain: list[BaseException]) -> HubError:
    if _first(chain, hf_errors.IncompleteSnapshotError) is not None:
        return HubError(
            f"the cached copy of {ctx.repo} is incomplete and offline mode is on",
            hint=_cache_hint(ctx),
        )
    return HubError(
        f"{ctx.repo} is not in the local HF cache and offline mode is on",
        hint=_cache_hint(ctx),
    )


def _cache_hint(ctx: _Context) -> str:
    if ctx.offline:
        return (
            "run once online (unset HF_HUB_OFFLINE), point --cache-dir at the cache, or --from-gguf"
        )
    return "run again online to complete it, or --from-gguf"


def _is_network(chain: list[BaseException]) -> bool:
    kinds: tuple[type[BaseException], ...] = (
        httpx2.TransportError,  # ConnectError, timeouts, proxy and protocol errors
        ConnectionError,
        TimeoutError,
        hf_errors.LocalEntryNotFoundError,  # the hub wraps connection failures in this
    )
    return any(isinstance(e, kinds) for e in chain)


def _token_sent(ctx: _Context) -> bool:
    return ctx.token is not None or get_token() is not None


def _cause_chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _first(chain: list[BaseException], kind: type[BaseException]) -> Any:
    return next((e for e in chain if isinstance(e, kind)), None)


def _is_bad_token(error: BaseException) -> bool:
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or {}
    return _status(error) == 401 and headers.get("X-Error-Message") == _BAD_TOKEN_MESSAGE


def _status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _display_endpoint(endpoint: str) -> str:
    """The endpoint without user:password, should a mirror URL carry them."""
    parts = urlsplit(endpoint)
    if parts.username is None and parts.password is None:
        return endpoint
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def _scrubbed_cause(exc: BaseException, token: str | None) -> BaseException | None:
    """Keep the original error as the cause unless its text holds the token."""
    if token and any(token in f"{e!s}{e!r}" for e in _cause_chain(exc)):
        return None
    return exc


# -- environment -----------------------------------------------------------------------


def _offline_from_env() -> bool:
    """HF_HUB_OFFLINE as set now (huggingface_hub itself reads it once, at import)."""
    raw = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return constants.is_offline_mode() or raw.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _resolve_cache_dir(cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE).expanduser()


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


class _SilentTqdm(tqdm):
    """A progress bar that never draws: used when `progress` is False."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("name", None)
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)
