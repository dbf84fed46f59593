"""A local Hugging Face Hub stand-in for tests: serves repositories from a folder over the resolve endpoint, so the real
`huggingface_hub.hf_hub_download` (metadata HEAD, GET, cache, offline mode) runs against it.

Endpoints (huggingface_hub 2.4, `file_download.get_hf_file_metadata` / `http_get`):
    HEAD|GET /{owner}/{repo}/resolve/{revision}/{path}
Headers: X-Repo-Commit (required), ETag (blob id, required), Content-Length. A missing file answers 404 with
X-Error-Code EntryNotFound (RepoNotFound / RevisionNotFound for the other cases), as the Hub does.

Files live in `root/{owner}/{repo}/{path}`; each repo has one commit, `commit_of(repo_id)`, reachable as "main" or by
its hash. `faults[path] = "truncate" | <status>` makes GET (truncate) or every request (status) for that path misbehave.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


def commit_of(repo_id: str) -> str:
    """The (single, fake) commit hash of a served repository: 40 hex digits."""
    return hashlib.sha1(repo_id.encode()).hexdigest()


@dataclass
class HubState:
    root: Path
    faults: dict[str, str | int] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)


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

    def _resolve(self) -> tuple[Path, str, str] | None:
        """(file, commit, path in repo), or None after answering an error."""
        parts = unquote(self.path.split("?")[0]).strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            self._error(404, "RepoNotFound")
            return None
        repo_id, revision, rel = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        repo_dir, commit = self.state.root / repo_id, commit_of(repo_id)
        if not repo_dir.is_dir():
            self._error(404, "RepoNotFound")
            return None
        if revision not in ("main", commit):
            self._error(404, "RevisionNotFound")
            return None
        fault = self.state.faults.get(rel)
        if isinstance(fault, int):
            self._error(fault, None)
            return None
        if not (repo_dir / rel).is_file():
            self._error(404, "EntryNotFound", commit)
            return None
        return repo_dir / rel, commit, rel

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
        self._send(with_body=True)


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

    def add_file(self, repo_id: str, path: str, data: bytes) -> None:
        target = self.state.root / repo_id / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
