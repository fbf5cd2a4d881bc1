"""Getting checkpoint files from the Hugging Face Hub: fast failure offline, verified files.

One place for everything that touches the Hub (``satclip.load``, the CLI, training's
``hf://`` pretrained weights):

* ``HF_HUB_OFFLINE`` is read at call time (huggingface_hub reads it once, at import);
* without it, a single short TCP connection to the Hub (or the HTTPS proxy) is tried first.
  When it fails, a cached file is used as is, and otherwise the error comes at once - not
  after huggingface_hub's ~25 s of retries - saying to pass a path or set ``HF_HUB_OFFLINE=1``;
* every file is checked on every load against the Hub cache's own content addressing: a cached
  file is a link to a blob named by its sha256 (LFS files) or git blob id (small files), so a
  file whose bytes changed (damaged disk, partial copy, tampering) is refused. satclip writes
  nothing into the cache besides what huggingface_hub downloads.
  ``microsoft/SatCLIP-ViT16-L40`` is pinned to the commit torchgeo pins.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

from satclip.errors import CheckpointError, first_line

#: Seconds the connection probe waits: long enough for a slow link, short enough to fail fast.
PROBE_TIMEOUT_S = 2.5

#: The files of a model folder or repository written by ``save_pretrained``: the weights (a
#: :func:`satclip.save` file, self-contained) and the config the model is rebuilt from.
PRETRAINED_WEIGHTS = "model.safetensors"
PRETRAINED_CONFIG = "config.json"

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
    verify: bool = True,
) -> Path:
    """The local path of ``filename`` in ``repo_id`` (see the module doc), checked against the
    digest the Hub cache names it by unless ``verify`` is false. Raises :class:`CheckpointError`."""
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
        verify_cached_file(path, repo_id, filename)
    return path


# ----------------------------------------------------------------------------------------
# Verifying cached files against the cache's content addressing


#: How huggingface_hub's cache names a blob: the sha256 of an LFS file (64 hex digits) or the
#: git blob id of a file stored in git itself (40 hex digits, sha1 of ``blob <size>\0<bytes>``).
_SHA256_NAME = re.compile(r"[0-9a-f]{64}")
_GIT_SHA1_NAME = re.compile(r"[0-9a-f]{40}")

_LOCK = threading.Lock()
#: (algorithm, path, size, mtime_ns, inode) -> digest, so a process hashes a file version once.
_HASHED: dict[tuple[str, str, int, int, int], str] = {}


def _digest(path: Path, algorithm: str) -> str:
    stat = path.stat()
    key = (algorithm, str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    with _LOCK:
        if key in _HASHED:
            return _HASHED[key]
    if algorithm == "sha256":
        digest = hashlib.sha256()
    else:  # git's blob id: sha1 over a header and the bytes
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(b"blob %d\0" % stat.st_size)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    value = digest.hexdigest()
    with _LOCK:
        _HASHED[key] = value
    return value


def sha256_of(path: Path) -> str:
    """The sha256 of a file's bytes (hashed once per file version and process)."""
    return _digest(path, "sha256")


def resolved_commit(path: Path) -> str | None:
    """The commit of a file in huggingface_hub's cache (``.../snapshots/<commit>/<file>``)."""
    parts = path.parts
    if "snapshots" in parts:
        i = len(parts) - 1 - parts[::-1].index("snapshots")
        if i + 1 < len(parts):
            return parts[i + 1]
    return None


def content_address(path: Path) -> tuple[str, str, Path] | None:
    """``(algorithm, expected digest, blob)`` of a file in huggingface_hub's cache, read off the
    cache's own layout: ``snapshots/<commit>/<file>`` links to ``blobs/<digest>``, named by the
    sha256 of the bytes for LFS files and by the git blob id for small files kept in git.

    ``None`` when ``path`` is not such a link (a local file, or a cache written where symbolic
    links are unavailable, which stores plain copies); such files get only the checks of their
    own format (zip CRCs, tensor shapes and values)."""
    if not path.is_symlink():
        return None
    blob = path.resolve()
    if blob.parent.name != "blobs":
        return None
    if _SHA256_NAME.fullmatch(blob.name):
        return "sha256", blob.name, blob
    if _GIT_SHA1_NAME.fullmatch(blob.name):
        return "git-sha1", blob.name, blob
    return None


def verify_cached_file(path: Path, repo_id: str, filename: str) -> None:
    """Refuses a cached Hub file whose bytes no longer match the digest the cache names it by
    (a damaged disk, an interrupted copy, an edited file). Raises :class:`CheckpointError`."""
    address = content_address(path)
    if address is None:
        return
    algorithm, expected, blob = address
    try:
        actual = _digest(blob, algorithm)
    except OSError as err:
        raise CheckpointError(f"cannot read {filename} of {repo_id} in the Hub cache ({blob}): {err}") from None
    if actual != expected:
        raise CheckpointError(
            f"{filename} of the Hub repository {repo_id} is damaged in the local cache: its bytes have "
            f"{algorithm} {actual}, but the cache stores it as {expected} ({blob}); delete that file "
            "to download it again"
        )


__all__ = [
    "HUB_FILE",
    "PRETRAINED_CONFIG",
    "PRETRAINED_WEIGHTS",
    "PROBE_TIMEOUT_S",
    "content_address",
    "download",
    "hub_reachable",
    "offline_requested",
    "parse_hub_file",
    "resolved_commit",
    "sha256_of",
    "verify_cached_file",
]
