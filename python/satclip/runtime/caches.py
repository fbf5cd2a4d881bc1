"""The in-process caches of loaded models and embeddings, and :func:`clear_caches`, which empties
them all.

``functools.lru_cache`` keys on a function's arguments; satclip's caches key on something
derived from them (a model source with its file's mtime, a weights fingerprint) and compute the
value outside the lock, so that a slow load does not block other threads' hits.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """Holds the ``size`` most recently used entries; every method is safe across threads.
    Every cache is emptied by :func:`clear_caches`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        _ALL.add(self)

    def get(self, key: K) -> V | None:
        """The value for ``key`` (now the most recently used), or None."""
        with self._lock:
            if key not in self._entries:
                return None
            self._entries.move_to_end(key)
            return self._entries[key]

    def put(self, key: K, value: V) -> None:
        """Stores ``value``, dropping the least recently used entries beyond ``size``."""
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:  # never seen mid-put, one entry over the size
            return len(self._entries)


_ALL: weakref.WeakSet[LRUCache[Any, Any]] = weakref.WeakSet()


def clear_caches() -> None:
    """Forgets every model and embedding satclip keeps in memory: the location models
    :func:`satclip.encode` loaded, the image encoders of :func:`satclip.encode_images`, and the
    candidate embeddings of :func:`satclip.locate` (files in a ``cache_dir`` stay)."""
    for cache in list(_ALL):
        cache.clear()


__all__ = ["LRUCache", "clear_caches"]
