"""Tests for converters.hf_fetch against a local stand-in for the Hugging Face hub.

No hub is reachable from the test machines, so `FakeHub` (an HTTP server on 127.0.0.1,
one per session) stands in for it. It serves the endpoints huggingface_hub 2.4.0's
`snapshot_download` calls, with the headers the client reads:

- GET  /api/models/{repo}[/revision/{rev}]  model info: `sha` and `siblings`
- GET  /api/models/{repo}/tree/{rev}?recursive=True  the tree listing (one page, no `Link`)
- HEAD /{repo}/resolve/{rev}/{file}  `X-Repo-Commit`, `ETag` (or `X-Linked-Etag` and
  `X-Linked-Size` for LFS files), `Content-Length`
- GET  the same URL for the bytes, honouring `Range` (resume)

Errors carry `X-Error-Code` as the hub does: `GatedRepo` (401 on resolve, the listing
stays public), `RepoNotFound` (404, or 401 for a private repo), `RevisionNotFound`.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import constants

from converters.errors import GatedRepoError, HubError, HubUnreachableError
from converters.hf_fetch import FetchResult, fetch_hf_original, select_files
from tests.fake_hub import FakeHub, FakeRepo, serve_fake_hub

TOKEN = "hf_FAKEsecretTOKEN0123456789abcdef"


def _fake_repos() -> dict[str, FakeRepo]:
    weights = bytes(range(256)) * 1200  # 300 KiB, several download chunks
    config = json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 8}).encode()
    tokenizer = json.dumps({"version": "1.0", "model": {"type": "BPE"}}).encode()
    common = {
        "config.json": config,
        "tokenizer.json": tokenizer,
        "tokenizer_config.json": b'{"eos_token": "<|im_end|>"}',
        "generation_config.json": b'{"eos_token_id": 2}',
        "README.md": b"# tiny\n",
        ".gitattributes": b"*.safetensors filter=lfs\n",
    }
    return {
        "org/tiny": FakeRepo(
            {
                **common,
                "model.safetensors": weights,
                "consolidated.safetensors": weights[:1000],  # Mistral-native copy: not wanted
                "pytorch_model.bin": b"pickle" * 100,
                "tiny.Q4_0.gguf": b"GGUF" + b"\0" * 100,
                "original/consolidated.00.pth": b"pth" * 100,
                "onnx/model.safetensors": b"onnx" * 10,
            }
        ),
        "org/binonly": FakeRepo(
            {**common, "pytorch_model.bin": b"pickle" * 100, "tiny.gguf": b"GGUF" + b"\0" * 10}
        ),
        "org/gated": FakeRepo({**common, "model.safetensors": weights}, gated=True),
        "org/private": FakeRepo({**common, "model.safetensors": weights}, private=True),
    }


@pytest.fixture(scope="session")
def fake_hub() -> Iterator[FakeHub]:
    with serve_fake_hub(_fake_repos()) as hub:
        yield hub


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL nothing listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def _online_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose offline mode themselves; the caller's environment must not."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def _fetch(hub_url: str, repo: str, tmp_path: Path, **kwargs: object) -> FetchResult:
    return fetch_hf_original(
        repo,
        tmp_path / "dest",
        endpoint=hub_url,
        cache_dir=tmp_path / "hf-cache",
        **kwargs,  # type: ignore[arg-type]
    )


def _assert_no_token(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text


def test_fetch_takes_safetensors_and_side_files_only(fake_hub: FakeHub, tmp_path: Path) -> None:
    result = _fetch(fake_hub.url, "org/tiny", tmp_path, token=TOKEN)
    expected = [
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert result.files == expected
    assert result.weights_format == "safetensors"
    assert result.revision == fake_hub.repos["org/tiny"].sha
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == sorted(expected)
    repo = fake_hub.repos["org/tiny"]
    for name in expected:
        assert (tmp_path / "dest" / name).read_bytes() == repo.files[name]
    # The .bin, .gguf, .pth and sub-folder files were never downloaded.
    assert fake_hub.downloads("org/tiny") == set(expected)
    # Weights share the cached blob (no second copy); configs are private copies.
    assert (tmp_path / "dest/model.safetensors").samefile(result.snapshot_dir / "model.safetensors")
    assert not (tmp_path / "dest/config.json").samefile(result.snapshot_dir / "config.json")
    assert any(auth == f"Bearer {TOKEN}" for _, _, auth in fake_hub.requests)


def test_refetch_reuses_the_cache(fake_hub: FakeHub, tmp_path: Path) -> None:
    """Resume is per file: what the hub cache holds is not downloaded again.

    huggingface_hub 2.4 does not resume a half-downloaded file across runs (its partial
    files are unique per process and deleted on failure), only complete ones are reused.
    """
    first = _fetch(fake_hub.url, "org/tiny", tmp_path)
    gets_before = _resolve_gets(fake_hub)
    second = _fetch(fake_hub.url, "org/tiny", tmp_path)  # same dest: files stay in place
    third = fetch_hf_original(
        "org/tiny", tmp_path / "other", endpoint=fake_hub.url, cache_dir=tmp_path / "hf-cache"
    )
    assert first.files == second.files == third.files
    assert first.revision == second.revision == third.revision
    assert _resolve_gets(fake_hub) == gets_before


def _resolve_gets(hub: FakeHub) -> int:
    return sum(1 for method, path, _ in hub.requests if method == "GET" and "/resolve/" in path)


def test_fetch_by_commit_sha(fake_hub: FakeHub, tmp_path: Path) -> None:
    sha = fake_hub.repos["org/tiny"].sha
    result = _fetch(fake_hub.url, "org/tiny", tmp_path, revision=sha)
    assert result.revision == sha and result.requested_revision == sha


def test_bin_fallback_without_safetensors_never_gguf(fake_hub: FakeHub, tmp_path: Path) -> None:
    result = _fetch(fake_hub.url, "org/binonly", tmp_path)
    assert result.weights_format == "bin"
    assert "pytorch_model.bin" in result.files
    assert not any(name.endswith(".gguf") for name in result.files)
    assert "tiny.gguf" not in fake_hub.downloads("org/binonly")
    assert any("no safetensors" in note for note in result.notes)


def test_gated_repo_message(fake_hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(GatedRepoError) as info:
        _fetch(fake_hub.url, "org/gated", tmp_path, token=TOKEN)
    line = info.value.one_line()
    assert line.startswith(
        f"HF repo org/gated is gated: accept its licence at {fake_hub.url}/org/gated "
        "and set HF_TOKEN (or --token)"
    )
    _assert_no_token(line, repr(info.value), str(info.value.__cause__))


def test_missing_repo_message(fake_hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(HubError) as info:
        _fetch(fake_hub.url, "org/nope", tmp_path, token=TOKEN)
    assert info.value.one_line() == (
        "HF repo org/nope not found (check --map, or rebuild from the GGUF with --from-gguf)"
    )


def test_private_repo_without_token(
    fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("converters.hf_fetch.get_token", lambda: None)
    with pytest.raises(HubError) as info:
        _fetch(fake_hub.url, "org/private", tmp_path)
    assert info.value.one_line().startswith(
        "HF repo org/private not found, or private and no token was sent"
    )
    result = _fetch(fake_hub.url, "org/private", tmp_path, token=TOKEN)
    assert "model.safetensors" in result.files


def test_missing_revision_message(fake_hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(HubError) as info:
        _fetch(fake_hub.url, "org/tiny", tmp_path, revision="v9")
    assert "HF repo org/tiny has no revision 'v9'" in info.value.one_line()


def test_unreachable_endpoint_message(closed_port_url: str, tmp_path: Path) -> None:
    with pytest.raises(HubUnreachableError) as info:
        _fetch(closed_port_url, "org/tiny", tmp_path, token=TOKEN)
    assert info.value.exit_code == 4
    line = info.value.one_line()
    assert line.startswith(f"cannot reach the Hugging Face hub at {closed_port_url}")
    assert "HF_HUB_OFFLINE=1" in line and "--from-gguf" in line


def test_hf_endpoint_env_is_read_per_call(
    fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """huggingface_hub reads HF_ENDPOINT at import; the fetch honours a later change."""
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    result = fetch_hf_original("org/tiny", tmp_path / "dest", cache_dir=tmp_path / "cache")
    assert result.revision == fake_hub.repos["org/tiny"].sha


def test_offline_uses_cache_after_first_fetch(
    fake_hub: FakeHub, closed_port_url: str, tmp_path: Path
) -> None:
    online = _fetch(fake_hub.url, "org/tiny", tmp_path)
    requests_before = len(fake_hub.requests)
    offline = fetch_hf_original(
        "org/tiny",
        tmp_path / "offline-dest",
        endpoint=closed_port_url,  # proves nothing is asked of the network
        cache_dir=tmp_path / "hf-cache",
        offline=True,
    )
    assert offline.revision == online.revision and offline.files == online.files
    assert offline.offline
    assert len(fake_hub.requests) == requests_before
    assert (tmp_path / "offline-dest/model.safetensors").is_file()


def test_offline_env_var_uses_cache(
    fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fetch(fake_hub.url, "org/tiny", tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _fetch(fake_hub.url, "org/tiny", tmp_path).offline


def test_offline_with_empty_cache_message(tmp_path: Path) -> None:
    with pytest.raises(HubError) as info:
        _fetch("http://127.0.0.1:9", "org/tiny", tmp_path, offline=True, token=TOKEN)
    line = info.value.one_line()
    assert line.startswith("org/tiny is not in the local HF cache and offline mode is on")
    _assert_no_token(line)


def test_offline_with_incomplete_cache(fake_hub: FakeHub, tmp_path: Path) -> None:
    result = _fetch(fake_hub.url, "org/tiny", tmp_path)
    (result.snapshot_dir / "tokenizer.json").unlink()
    with pytest.raises(HubError) as info:
        _fetch(fake_hub.url, "org/tiny", tmp_path, offline=True)
    assert "offline mode is on" in info.value.one_line()


def test_token_never_leaks(
    fake_hub: FakeHub, closed_port_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    result = _fetch(fake_hub.url, "org/tiny", tmp_path / "ok", token=TOKEN, progress=True)
    texts += [repr(result), result.model_dump_json(), str(result)]
    failing: list[tuple[str, str, dict[str, Any]]] = [
        (fake_hub.url, "org/gated", {}),
        (fake_hub.url, "org/nope", {}),
        (fake_hub.url, "org/tiny", {"revision": "v9"}),
        (closed_port_url, "org/tiny", {}),
        (closed_port_url, "org/other", {"offline": True}),
    ]
    for url, repo, extra in failing:
        with pytest.raises(HubError) as info:
            _fetch(url, repo, tmp_path / repo.replace("/", "_"), token=TOKEN, **extra)
        error: BaseException | None = info.value
        while error is not None:  # the whole cause chain, as a traceback would print it
            texts += [str(error), repr(error)]
            error = error.__cause__ or error.__context__
    texts.append(caplog.text)
    _assert_no_token(*texts)
    for path in tmp_path.rglob("*"):  # nothing on disk either
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes()


def test_select_files_rules() -> None:
    listing = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "consolidated.safetensors",
        "pytorch_model.bin",
        "training_args.bin",
        "x.gguf",
        "merges.txt",
        "vocab.json",
        "chat_template.jinja",
        "original/tokenizer.model",
    ]
    files, fmt, notes = select_files(listing, repo="o/r")
    assert fmt == "safetensors" and not notes
    assert files == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "chat_template.jinja",
        "merges.txt",
        "vocab.json",
    ]
    odd, _, odd_notes = select_files(["weights.safetensors", "config.json"], repo="o/r")
    assert odd == ["weights.safetensors", "config.json"] and odd_notes
    with pytest.raises(HubError, match="no safetensors or pytorch_model"):
        select_files(["x.gguf", "training_args.bin", "config.json"], repo="o/r")
