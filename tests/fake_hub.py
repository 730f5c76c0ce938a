"""A local stand-in for the Hugging Face hub, for tests.

No hub is reachable from the test machines, so `FakeHub` (an HTTP server on 127.0.0.1)
stands in for it. It serves the endpoints huggingface_hub 2.4.0's `snapshot_download`
calls, with the headers the client reads:

- GET  /api/models/{repo}[/revision/{rev}]  model info: `sha` and `siblings`
- GET  /api/models/{repo}/tree/{rev}?recursive=True  the tree listing (one page, no `Link`)
- HEAD /{repo}/resolve/{rev}/{file}  `X-Repo-Commit`, `ETag` (or `X-Linked-Etag` and
  `X-Linked-Size` for LFS files), `Content-Length`
- GET  the same URL for the bytes, honouring `Range` (resume)

Errors carry `X-Error-Code` as the hub does: `GatedRepo` (401 on resolve, the listing
stays public), `RepoNotFound` (404, or 401 for a private repo), `RevisionNotFound`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pth")


@dataclass
class FakeRepo:
    files: dict[str, bytes]
    sha: str = ""
    gated: bool = False
    private: bool = False

    def __post_init__(self) -> None:
        digest = hashlib.sha1()
        for name in sorted(self.files):
            digest.update(name.encode() + self.files[name])
        self.sha = digest.hexdigest()


@dataclass
class FakeHub:
    repos: dict[str, FakeRepo]
    url: str = ""
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, auth

    def downloads(self, repo: str) -> set[str]:
        """Files whose bytes were sent (GET on resolve) for `repo`."""
        prefix = f"/{repo}/resolve/"
        return {
            path[len(prefix) :].split("/", 1)[1]
            for method, path, _ in self.requests
            if method == "GET" and path.startswith(prefix)
        }


def _blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _make_handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            self._handle(head=False)

        def do_HEAD(self) -> None:
            self._handle(head=True)

        def _handle(self, head: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append((self.command, path, self.headers.get("Authorization", "")))
            api = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
            tree = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path)
            resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if tree:
                self._tree(tree[1], tree[2])
            elif api:
                self._info(api[1], api[2] or "main")
            elif resolve:
                self._resolve(resolve[1], resolve[2], resolve[3], head)
            else:
                self._error(404, "EntryNotFound", "no such route")

        def _repo(self, repo_id: str, rev: str, *, is_file: bool) -> FakeRepo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(404, "RepoNotFound", "Repository not found")
            elif repo.private and not self.headers.get("Authorization"):
                self._error(401, "RepoNotFound", "Invalid username or password.")
            elif rev not in ("main", repo.sha):
                self._error(404, "RevisionNotFound", "Invalid rev id: " + rev)
            elif repo.gated and is_file:
                self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted.")
            else:
                return repo
            return None

        def _info(self, repo_id: str, rev: str) -> None:
            repo = self._repo(repo_id, rev, is_file=False)
            if repo is not None:
                siblings = [{"rfilename": name} for name in sorted(repo.files)]
                body = {
                    "id": repo_id,
                    "sha": repo.sha,
                    "private": repo.private,
                    "siblings": siblings,
                }
                self._json(body, repo.sha)

        def _tree(self, repo_id: str, rev: str) -> None:
            repo = self._repo(repo_id, rev, is_file=False)
            if repo is None:
                return
            entries = []
            for name, data in sorted(repo.files.items()):
                entry: dict[str, object] = {
                    "type": "file",
                    "path": name,
                    "size": len(data),
                    "oid": _blob_sha1(data),
                }
                if name.endswith(LFS_SUFFIXES):
                    sha256 = hashlib.sha256(data).hexdigest()
                    entry["lfs"] = {"oid": sha256, "size": len(data), "pointerSize": 134}
                entries.append(entry)
            self._json(entries, repo.sha)

        def _resolve(self, repo_id: str, rev: str, name: str, head: bool) -> None:
            repo = self._repo(repo_id, rev, is_file=True)
            if repo is None:
                return
            data = repo.files.get(name)
            if data is None:
                self._error(404, "EntryNotFound", "Entry not found", commit=repo.sha)
                return
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if match and not head:
                start = int(match[1])
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", repo.sha)
            if name.endswith(LFS_SUFFIXES):
                sha256 = hashlib.sha256(data).hexdigest()
                self.send_header("ETag", f'"{sha256}"')
                self.send_header("X-Linked-Etag", f'"{sha256}"')
                self.send_header("X-Linked-Size", str(len(data)))
            else:
                self.send_header("ETag", f'"{_blob_sha1(data)}"')
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if not head:
                self.wfile.write(data[start:])

        def _json(self, body: object, commit: str) -> None:
            raw = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Repo-Commit", commit)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(raw)

        def _error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
            raw = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            if commit:
                self.send_header("X-Repo-Commit", commit)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(raw)

    return Handler


@contextmanager
def serve_fake_hub(repos: dict[str, FakeRepo]) -> Iterator[FakeHub]:
    """Serve `repos` on a free loopback port; `hub.url` is the endpoint."""
    hub = FakeHub(repos=repos)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(hub))
    server.daemon_threads = True
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
