"""Hugging Face Hub access: download a checkpoint's files with `huggingface_hub`, then hand the folder to the disk loaders.

The Hub layer only downloads (its cache, `HF_HUB_OFFLINE`, `revision` pinning), as in sparsify and SAELens. Settings
are read from the environment at call time (`HF_ENDPOINT`, `HF_HUB_OFFLINE`, `HF_HUB_CACHE` / `HF_HOME`), not from
`huggingface_hub.constants`, which freezes them at import. Offline, nothing touches the network
(`local_files_only=True`), so a missing file fails at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from sae_analysis.io.disk import DL_CONFIG, DL_WEIGHTS, LOADERS, NEEL_ALIASES, SPARSIFY_WEIGHTS
from sae_analysis.io.errors import CorruptFileError, HubError, MissingFileError, SAELoadError, UnknownFormatError
from sae_analysis.io.native import CFG_FILE, SPARSITY_FILE, WEIGHTS_FILE
from sae_analysis.io.readers import read_json
from sae_analysis.sae import SAE

logger = logging.getLogger(__name__)

NEEL_REPO = "NeelNanda/sparse_autoencoder"
"""Neel Nanda's gelu-1l SAEs: `{v}.pt` + `{v}_cfg.json`, aliases run1 -> 25, run2 -> 47 (REPLICATION.md §4.1)."""
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class HubSettings:
    """Where and whether to download, read from the environment at call time."""

    endpoint: str
    """Hub URL (HF_ENDPOINT)."""
    offline: bool
    """HF_HUB_OFFLINE set: only the local cache is used."""
    cache_dir: str
    """huggingface_hub cache folder (HF_HUB_CACHE, else HF_HOME/hub)."""


def hub_settings() -> HubSettings:
    env = os.environ
    endpoint = env.get("HF_ENDPOINT", "").rstrip("/") or constants.ENDPOINT
    offline = (env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE") or "").strip().lower() in _TRUE
    hf_home = env.get("HF_HOME")
    cache = env.get("HF_HUB_CACHE") or (os.path.join(hf_home, "hub") if hf_home else constants.HF_HUB_CACHE)
    return HubSettings(endpoint=endpoint, offline=offline, cache_dir=os.path.expanduser(cache))


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """None when the Hub endpoint (HF_ENDPOINT) answers an HTTP request within `timeout` seconds (any status); otherwise
    why not, in a few words. For optional Hub use (e.g. `paper_figures.py --source auto`): without it, a download with
    the network down waits out huggingface_hub's back-off (5 retries, about 23 s) before failing."""
    s = hub_settings()
    if s.offline:
        return "HF_HUB_OFFLINE=1"
    try:
        urllib.request.urlopen(urllib.request.Request(s.endpoint, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None  # it answered
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        return f"cannot reach {s.endpoint} ({type(reason).__name__ if isinstance(reason, BaseException) else reason})"
    return None


@contextlib.contextmanager
def cache_only() -> Iterator[None]:
    """Within the block, Hub loads use only the local huggingface_hub cache (as with HF_HUB_OFFLINE=1)."""
    before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before


def _unreachable(repo: str, filename: str, s: HubSettings, err: BaseException) -> HubError:
    """The error for 'not cached, and the Hub cannot be asked': offline mode, no network, or a server error."""
    where = f"{repo}/{filename}"
    if s.offline:
        return HubError(
            f"{where} is not in the local cache and HF_HUB_OFFLINE=1 forbids downloading it: run once with network "
            f"access (unset HF_HUB_OFFLINE) or pass a local path; files are cached in {s.cache_dir}"
        )
    cause = err.__cause__ or err
    status = getattr(getattr(cause, "response", None), "status_code", None)
    why = f"the Hub answered HTTP {status}" if status else f"cannot reach {s.endpoint} ({type(cause).__name__})"
    return HubError(f"cannot download {where}: {why}, and it is not in the local cache {s.cache_dir}; retry or pass a local path")


def download(repo: str, filename: str, *, revision: str | None = None, repo_type: str | None = None) -> Path:
    """Local path of `filename` from Hub repo `repo` (downloaded into, or found in, the huggingface_hub cache).

    `repo_type`: None for a model repo (SAE checkpoints), "dataset" for a dataset repo (token shards)."""
    s = hub_settings()
    kw: dict[str, Any] = {"revision": revision, "cache_dir": s.cache_dir, "endpoint": s.endpoint, "local_files_only": s.offline}
    what = repo if repo_type is None else f"{repo_type} {repo}"
    try:
        return Path(hf_hub_download(repo, filename, repo_type=repo_type, **kw))
    except RemoteEntryNotFoundError:
        raise MissingFileError(f"{what}@{revision or 'main'} has no file {filename} (HTTP 404 from {s.endpoint})") from None
    except RevisionNotFoundError:
        raise HubError(f"{what} has no revision {revision!r} on {s.endpoint}") from None
    except RepositoryNotFoundError:
        raise HubError(f"repository {what} not found on {s.endpoint} (private or gated repos need `hf auth login`)") from None
    except LocalEntryNotFoundError as e:
        raise _unreachable(repo if repo_type is None else f"{repo_type}s/{repo}", filename, s, e) from None
    except HfHubHTTPError as e:
        raise HubError(f"cannot download {what}/{filename}: HTTP {e.response.status_code} from {s.endpoint}") from None
    except OSError as e:  # huggingface_hub's size consistency check: the body ended early
        raise CorruptFileError(f"download of {what}/{filename} is truncated or corrupt ({e}); run again") from None


def cached_snapshot(repo: str, revision: str | None = None, repo_type: str | None = None) -> Path | None:
    """The huggingface_hub cache snapshot folder of `repo` at `revision` (a ref or a commit), if cached:
    `{cache}/{models|datasets}--{owner}--{name}/snapshots/{commit}`, the commit read from `refs/{revision}`."""
    kind = "datasets" if repo_type == "dataset" else "models"
    repo_dir = Path(hub_settings().cache_dir) / f"{kind}--{repo.replace('/', '--')}"
    ref = repo_dir / "refs" / (revision or "main")
    commit = ref.read_text().strip() if ref.is_file() else revision
    snapshot = repo_dir / "snapshots" / commit if commit else None
    return snapshot if snapshot is not None and snapshot.is_dir() else None


def list_files(repo: str, *, revision: str | None = None, repo_type: str | None = None) -> list[str]:
    """Every file path of Hub repo `repo`: the tree API online (`HfApi.list_repo_files`); offline, the files of the
    cached snapshot (only what an earlier run downloaded). Raises HubError when the Hub cannot answer."""
    from huggingface_hub import HfApi

    s, what = hub_settings(), repo if repo_type is None else f"{repo_type} {repo}"
    if s.offline:
        snapshot = cached_snapshot(repo, revision, repo_type)
        return sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()) if snapshot else []
    try:
        return HfApi(endpoint=s.endpoint).list_repo_files(repo, repo_type=repo_type, revision=revision)
    except RevisionNotFoundError:
        raise HubError(f"{what} has no revision {revision!r} on {s.endpoint}") from None
    except RepositoryNotFoundError:
        raise HubError(f"{what} not found on {s.endpoint} (private or gated repos need `hf auth login`)") from None
    except HfHubHTTPError as e:
        raise HubError(f"cannot list {what}: HTTP {e.response.status_code} from {s.endpoint}") from None
    except Exception as e:  # connection errors after huggingface_hub's retries: not an HTTP answer
        raise HubError(f"cannot list {what}: cannot reach {s.endpoint} ({type(e).__name__})") from None


def _is_original(repo: str, name: str) -> bool:
    """Neel's repo holds only `{v}.pt` files; elsewhere a bare version number or a `.pt` name means the same format."""
    return repo == NEEL_REPO or name.isdigit() or (name.endswith(".pt") and Path(name).name != DL_WEIGHTS)


def _fetch_original(repo: str, name: str, revision: str | None) -> tuple[str, Path, str]:
    stem = (NEEL_ALIASES.get(name, name) if repo == NEEL_REPO else name).removesuffix(".pt")
    download(repo, f"{stem}_cfg.json", revision=revision)
    return "original", download(repo, f"{stem}.pt", revision=revision), f"{stem}.pt"


def _fetch_folder(repo: str, prefix: str, revision: str | None, fmt: str | None) -> tuple[str, Path, str]:
    """Download a folder-format checkpoint: cfg.json decides SAELens (has d_sae) vs sparsify; else ae.pt."""
    if fmt == "dictionary_learning" or (fmt is None and not _exists(repo, prefix + CFG_FILE, revision)):
        weights = download(repo, prefix + DL_WEIGHTS, revision=revision)
        _optional(repo, prefix + DL_CONFIG, revision)
        return "dictionary_learning", weights.parent, prefix + DL_WEIGHTS
    raw = read_json(download(repo, prefix + CFG_FILE, revision=revision))
    fmt = fmt or ("saelens" if "d_sae" in raw else "sparsify")
    if fmt == "saelens":
        _optional(repo, prefix + SPARSITY_FILE, revision)
    weights_file = prefix + (WEIGHTS_FILE if fmt == "saelens" else SPARSIFY_WEIGHTS)
    return fmt, download(repo, weights_file, revision=revision).parent, weights_file


def _exists(repo: str, filename: str, revision: str | None) -> bool:
    try:
        download(repo, filename, revision=revision)
    except MissingFileError:
        return False
    return True


def _optional(repo: str, filename: str, revision: str | None) -> None:
    try:
        download(repo, filename, revision=revision)
    except SAELoadError as e:  # absent, or offline and never cached: the checkpoint is usable without it
        logger.info("optional file %s/%s not available: %s", repo, filename, e)


def commit_of(path: Path) -> str | None:
    """The commit hash in a huggingface_hub cache path `.../snapshots/<commit>/<file>`."""
    parts = path.parts
    i = parts.index("snapshots") + 1 if "snapshots" in parts else len(parts)
    return parts[i] if i < len(parts) else None


def load_from_hub(
    repo: str,
    name: str | None = None,
    *,
    revision: str | None = None,
    format: str | None = None,
    device: Any = "cpu",
    dtype: torch.dtype | None = None,
) -> SAE:
    """Download one SAE from Hub repo `repo` and load it. `name`: an original-format stem or alias ("25", "run1"), or the
    sub-folder of a folder format (None: the repo root)."""
    if format is not None and format not in LOADERS:
        raise UnknownFormatError(f"unknown format {format!r}; known formats: {list(LOADERS)}")
    if format == "original" or (format is None and (repo == NEEL_REPO or name is not None and _is_original(repo, name))):
        if name is None:
            raise MissingFileError(f"{repo} holds original-format checkpoints: pass a name, e.g. '25' or 'run1'")
        fmt, target, filename = _fetch_original(repo, name, revision)
    else:
        fmt, target, filename = _fetch_folder(repo, f"{name.strip('/')}/" if name else "", revision, format)
    sae = LOADERS[fmt](target, device=device, dtype=dtype)
    sae.meta.update(repo=repo, revision=revision or "main", commit=commit_of(target), filename=filename)
    return sae


__all__ = ["NEEL_REPO", "HubSettings", "hub_settings", "download", "list_files", "cached_snapshot", "commit_of", "load_from_hub"]
