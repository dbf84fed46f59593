"""A local Hugging Face Hub stand-in for tests: serves repositories from a folder over the resolve endpoint, so the real
`huggingface_hub.hf_hub_download` (metadata HEAD, GET, cache, offline mode) runs against it.

Endpoints (huggingface_hub 2.4, `file_download.get_hf_file_metadata` / `http_get`, `HfApi.list_repo_tree`):
    HEAD|GET /{owner}/{repo}/resolve/{revision}/{path}              model repos
    HEAD|GET /datasets/{owner}/{repo}/resolve/{revision}/{path}     dataset repos
    GET /api/{models|datasets}/{owner}/{repo}/tree/{revision}[/{path}]?recursive=true   (what `list_repo_files` calls)
Headers: X-Repo-Commit (required), ETag (blob id, required), Content-Length. A missing file answers 404 with
X-Error-Code EntryNotFound (RepoNotFound / RevisionNotFound for the other cases), as the Hub does.

The tree answers a JSON list of {"type": "file"|"directory", "path", "oid", "size"}, `page_size` entries per page,
with the next page in a `Link: <url>; rel="next"` header (cursor-based, as the Hub paginates).

Files live in `root/{owner}/{repo}/{path}` (datasets: `root/datasets/{owner}/{repo}/{path}`); each repo has one commit,
`commit_of(repo_id)`, reachable as "main" or by its hash. `faults[path] = "truncate" | <status>` makes GET (truncate) or every
request (status) for that path misbehave.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlencode, urlsplit


def commit_of(repo_id: str) -> str:
    """The (single, fake) commit hash of a served repository: 40 hex digits."""
    return hashlib.sha1(repo_id.encode()).hexdigest()


@dataclass
class HubState:
    root: Path
    faults: dict[str, str | int] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    page_size: int = 1000


class _Handler(BaseHTTPRequestHandler):
    state: HubState  # set on the subclass built by `serve`

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    def _error(self, status: int, code: str | None, commit: str | None = None) -> None:
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _repo(self, parts: list[str], verb: str) -> tuple[str, Path, list[str]] | None:
        """(repo id, repo folder, parts after `verb`/revision...) for `[datasets/]owner/repo/{verb}/...`, else None."""
        prefix = parts[:1] if parts[:1] == ["datasets"] else []
        parts = parts[len(prefix):]
        if len(parts) < 4 or parts[2] != verb:
            return None
        repo_id = "/".join(parts[:2])
        return repo_id, self.state.root.joinpath(*prefix, repo_id), parts[3:]

    def _check_repo(self, repo: tuple[str, Path, list[str]] | None) -> str | None:
        """The commit of the addressed repo and revision, or None after answering an error."""
        if repo is None or not repo[1].is_dir():
            self._error(404, "RepoNotFound")
            return None
        commit = commit_of(repo[0])
        if repo[2][0] not in ("main", commit):
            self._error(404, "RevisionNotFound")
            return None
        return commit

    def _resolve(self) -> tuple[Path, str, str] | None:
        """(file, commit, path in repo), or None after answering an error."""
        repo = self._repo(unquote(self.path.split("?")[0]).strip("/").split("/"), "resolve")
        if repo is not None and len(repo[2]) < 2:
            repo = None
        commit = self._check_repo(repo)
        if commit is None:
            return None
        repo_dir, rel = repo[1], "/".join(repo[2][1:])
        fault = self.state.faults.get(rel)
        if isinstance(fault, int):
            self._error(fault, None)
            return None
        if not (repo_dir / rel).is_file():
            self._error(404, "EntryNotFound", commit)
            return None
        return repo_dir / rel, commit, rel

    def _tree(self) -> None:
        """GET /api/{models|datasets}/{owner}/{repo}/tree/{revision}[/{path}]: one page of the listing."""
        url = urlsplit(self.path)
        parts = unquote(url.path).strip("/").split("/")[1:]  # drop "api"
        kind = parts[0] if parts else ""
        prefix = ["datasets"] if kind == "datasets" else []
        repo = self._repo(prefix + parts[1:], "tree") if kind in ("models", "datasets") else None
        commit = self._check_repo(repo)
        if commit is None:
            return
        query = parse_qs(url.query)
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        entries = _listing(repo[1], "/".join(repo[2][1:]), recursive)
        start = int(query.get("cursor", ["0"])[0])
        page = entries[start:start + self.state.page_size]
        body = json.dumps(page).encode()
        self.send_response(200)
        self.send_header("X-Repo-Commit", commit)
        if start + self.state.page_size < len(entries):
            nxt = urlencode({"recursive": str(recursive).lower(), "cursor": start + self.state.page_size})
            self.send_header("Link", f'<http://{self.headers["Host"]}{url.path}?{nxt}>; rel="next"')
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send(self, with_body: bool) -> None:
        self.state.requests.append((self.command, self.path))
        found = self._resolve()
        if found is None:
            return
        file, commit, rel = found
        data = file.read_bytes()
        body = data[: len(data) // 2] if with_body and self.state.faults.get(rel) == "truncate" else data
        self.send_response(200)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(body) if with_body else len(data)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_HEAD(self):
        self._send(with_body=False)

    def do_GET(self):
        if self.path.startswith("/api/"):
            self.state.requests.append((self.command, self.path))
            self._tree()
            return
        self._send(with_body=True)


def _listing(repo_dir: Path, sub: str, recursive: bool) -> list[dict]:
    """Tree entries under `sub` (sorted paths), as the Hub's tree API describes them."""
    base = repo_dir / sub if sub else repo_dir
    found = base.rglob("*") if recursive else base.glob("*")
    entries = []
    for p in sorted(found):
        rel = p.relative_to(repo_dir).as_posix()
        if p.is_dir():
            entries.append({"type": "directory", "path": rel, "oid": hashlib.sha1(rel.encode()).hexdigest(), "size": 0})
        else:
            data = p.read_bytes()
            entries.append({"type": "file", "path": rel, "oid": hashlib.sha1(data).hexdigest(), "size": len(data)})
    return entries


class HubServer:
    """Context manager: a threaded HTTP server on 127.0.0.1 (random free port) serving `root`."""

    def __init__(self, root: Path):
        self.state = HubState(root=root)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def add_file(self, repo_id: str, path: str, data: bytes, *, repo_type: str = "model") -> None:
        """Serve `data` as `path` in repo `repo_id` (repo_type "model" or "dataset")."""
        target = self.state.root.joinpath(*(["datasets"] if repo_type == "dataset" else []), repo_id, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


@contextlib.contextmanager
def serve_hub(tmp_path: Path, monkeypatch) -> Iterator[HubServer]:
    """A HubServer over `tmp_path/repos`, HF_ENDPOINT pointed at it, online mode, and a private empty cache."""
    import huggingface_hub.constants as hf_constants

    with HubServer(tmp_path / "repos") as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)  # frozen at import (conftest sets HF_HUB_OFFLINE=1)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
        monkeypatch.delenv("HF_HUB_CACHE", raising=False)
        yield server


DOWN_ENDPOINT = "http://127.0.0.1:9"
"""The discard port: nothing listens there, so every connection is refused."""


def network_down(monkeypatch, cache_home: Path) -> None:
    """Online mode (HF_HUB_OFFLINE unset in effect) with an endpoint that refuses connections and an empty cache."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_ENDPOINT", DOWN_ENDPOINT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)  # frozen at import (conftest sets HF_HUB_OFFLINE=1)
    monkeypatch.setenv("HF_HOME", str(cache_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)


def go_offline(monkeypatch) -> None:
    """Switch huggingface_hub (and this project's Hub layer, which reads the environment) to offline mode."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
