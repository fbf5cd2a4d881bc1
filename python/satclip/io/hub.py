"""Getting checkpoint files from the Hugging Face Hub: fast failure offline, verified files.

One place for everything that touches the Hub (``satclip.load``, the CLI, training's
``hf://`` pretrained weights):

* ``HF_HUB_OFFLINE`` is read at call time (huggingface_hub reads it once, at import);
* without it, a single short TCP connection to the Hub (or the HTTPS proxy) is tried first.
  When it fails, a cached file is used as is, and otherwise the error comes at once - not
  after huggingface_hub's ~25 s of retries - saying to pass a path or set ``HF_HUB_OFFLINE=1``;
* released files are checked on every load: on first download satclip records the resolved
  commit and the file's sha256 in ``satclip-integrity.json`` in the Hub cache directory, and
  afterwards refuses a cached file whose bytes changed (damaged disk, partial copy, tampering).
  ``microsoft/SatCLIP-ViT16-L40`` is pinned to the commit torchgeo pins.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from satclip.errors import CheckpointError, first_line

#: Seconds the connection probe waits: long enough for a slow link, short enough to fail fast.
PROBE_TIMEOUT_S = 2.5

INTEGRITY_FILE = "satclip-integrity.json"

#: ``hf://owner/repo/path/in/repo``: one file of any Hub repository.
HUB_FILE = re.compile(r"hf://(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)/(?P<file>\S+)")


def parse_hub_file(text: str) -> tuple[str, str] | None:
    """``(repo_id, filename)`` of an ``hf://owner/repo/path/in/repo`` address; None for text that is
    not one (a path). Raises :class:`CheckpointError` for text that starts ``hf://`` but is malformed."""
    if not text.startswith("hf://"):
        return None
    match = HUB_FILE.fullmatch(text)
    if match is None:
        raise CheckpointError(f"Hub files are written hf://owner/repo/path/to/file, got {text!r}")
    return match["repo"], match["file"]


def offline_requested() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """(whether one TCP connection to the Hub endpoint - or the HTTPS proxy - opens, where to)."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    endpoint = proxy or os.environ.get("HF_ENDPOINT") or _default_endpoint()
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    host = parts.hostname or "huggingface.co"
    port = parts.port or (80 if parts.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, f"{host}:{port}"
    except OSError:
        return False, f"{host}:{port}"


def _default_endpoint() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.ENDPOINT)
    except Exception:  # an old huggingface_hub without constants.ENDPOINT
        return "https://huggingface.co"


def download(
    repo_id: str,
    filename: str,
    *,
    revision: str = "main",
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool | None = None,
    verify: bool = False,
) -> Path:
    """The local path of ``filename`` in ``repo_id`` (see the module doc). ``verify`` records and
    checks the file's sha256 (for released models). Raises :class:`CheckpointError`."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    if local_files_only is None:
        local_files_only = offline_requested()
    cache = os.fspath(cache_dir) if cache_dir is not None else None
    note = " (offline: only the local cache was searched)" if local_files_only else ""
    if not local_files_only:
        reachable, where = hub_reachable()
        if not reachable:
            cached = try_to_load_from_cache(repo_id, filename, cache_dir=cache, revision=revision)
            if not isinstance(cached, str):
                raise CheckpointError(
                    f"no Hub access (could not connect to {where} within {PROBE_TIMEOUT_S} s) and "
                    f"{repo_id}/{filename} is not in the local cache: pass a checkpoint path, or set "
                    "HF_HUB_OFFLINE=1 to use only the cache"
                )
            local_files_only, note = True, " (no Hub access: used the cached file)"
    try:
        path = Path(
            hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache, local_files_only=local_files_only)
        )
    except Exception as err:  # huggingface_hub raises many types (HTTP, offline, not found)
        raise CheckpointError(
            f"could not get {filename} from the Hugging Face Hub repository {repo_id} "
            f"at revision {revision!r}{note}: {type(err).__name__}: {first_line(err)}"
        ) from err
    if verify:
        verify_recorded_hash(path, repo_id, filename, cache)
    return path


# ----------------------------------------------------------------------------------------
# Recorded hashes


_LOCK = threading.Lock()
#: (path, size, mtime_ns, inode) -> sha256, so a process hashes a file once.
_HASHED: dict[tuple[str, int, int, int], str] = {}


def sha256_of(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key in _HASHED:
        return _HASHED[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    _HASHED[key] = digest.hexdigest()
    return _HASHED[key]


def resolved_commit(path: Path) -> str:
    """The commit of a file in huggingface_hub's cache (``.../snapshots/<commit>/<file>``)."""
    parts = path.parts
    if "snapshots" in parts:
        i = len(parts) - 1 - parts[::-1].index("snapshots")
        if i + 1 < len(parts):
            return parts[i + 1]
    return "unknown"


def _integrity_file(cache_dir: str | None) -> Path:
    if cache_dir is None:
        from huggingface_hub import constants

        cache_dir = constants.HF_HUB_CACHE
    return Path(cache_dir) / INTEGRITY_FILE


def verify_recorded_hash(path: Path, repo_id: str, filename: str, cache_dir: str | None) -> None:
    """Records (repo, file, commit) -> sha256 the first time, and refuses a changed file after."""
    commit = resolved_commit(path)
    key = f"{repo_id}/{filename}@{commit}"
    actual = sha256_of(path)
    record_path = _integrity_file(cache_dir)
    with _LOCK:
        records = _read_records(record_path)
        expected = records.get(key)
        if expected is None:
            records[key] = actual
            _write_records(record_path, records)
            return
    if expected != actual:
        raise CheckpointError(
            f"{path} is damaged: its sha256 is {actual}, but {repo_id}/{filename} at commit {commit} had "
            f"sha256 {expected} when it was downloaded (recorded in {record_path}); delete the cached file "
            "to download it again"
        )


def _read_records(path: Path) -> dict[str, str]:
    try:
        data: Any = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} (satclip's record of downloaded checkpoints) is unreadable: {err}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} (satclip's record of downloaded checkpoints) is not a JSON object")
    return {str(k): str(v) for k, v in data.items()}


def _write_records(path: Path, records: dict[str, str]) -> None:
    from satclip.io.publish import publish

    try:
        publish(path, lambda tmp: tmp.write_text(json.dumps(records, indent=1, sort_keys=True)), overwrite=True)
    except OSError:
        pass  # a read-only cache: the file still loads, it just cannot be checked next time


__all__ = [
    "HUB_FILE",
    "PROBE_TIMEOUT_S",
    "download",
    "hub_reachable",
    "offline_requested",
    "parse_hub_file",
    "sha256_of",
    "verify_recorded_hash",
]
