"""satclip.runtime.caches.LRUCache: the one bounded cache behind the model and embedding caches."""

from __future__ import annotations

import threading

from satclip.runtime.caches import LRUCache


def test_keeps_the_most_recently_used_entries() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent, so "b" goes first
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    cache.put("a", 10)  # replacing refreshes, never grows past the size
    cache.put("d", 4)
    assert len(cache) == 2 and cache.get("a") == 10 and cache.get("c") is None
    cache.clear()
    assert not cache and cache.get("a") is None


def test_concurrent_use_never_exceeds_the_size() -> None:
    cache: LRUCache[int, int] = LRUCache(5)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(2000):
                cache.put((i + offset) % 17, i)
                value = cache.get((i * 7 + offset) % 17)
                assert value is None or 0 <= value < 2000
                assert len(cache) <= 5
        except BaseException as err:  # reported below, from the main thread
            errors.append(err)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(cache) == 5
