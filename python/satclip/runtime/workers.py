"""satclip's CPU schedule: a job's chunks shared out to worker threads, each on one torch thread.

``encode``, ``encode_grid`` and the GeoCLIP encoder all run this way. Each worker takes whole
chunks from one shared iterator (so workers stay busy to the end) and does all of a chunk's work
itself, its GEMMs on one torch thread: a GEMM of a fixed shape on one thread sums in the same
order whichever worker runs it, so results do not depend on the thread count or on how the
input was split. The calling thread waits, reports progress and, on an error or Ctrl-C, stops
the workers (each finishes the chunk it is on) before it re-raises.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext

import torch

#: ``work(starts, progress, worker)``: the chunks beginning at ``starts`` done by worker number
#: ``worker`` (for its own buffers), calling ``progress(units)`` as each finishes.
Work = Callable[[Iterator[int], Callable[[int], object], int], None]


def share_out(
    work: Work,
    starts: Iterable[int],
    workers: int,
    progress: Callable[[int], object] | None = None,
    *,
    cpu: bool = True,
) -> None:
    """Runs ``work`` on ``workers`` threads over the chunk offsets ``starts`` (one worker: on the
    calling thread). On the CPU every worker, the single one included, runs on one torch thread;
    ``cpu=False`` (a CUDA job, one worker) leaves torch's threads alone. ``work`` runs on pool
    threads, so it must enter ``torch.inference_mode`` itself (the mode is per thread)."""
    report = progress or (lambda units: None)
    if workers <= 1:
        with one_torch_thread() if cpu else nullcontext():
            work(iter(starts), report, 0)
        return
    shared, lock, stop = iter(starts), threading.Lock(), threading.Event()
    done = [0]

    def next_start() -> Iterator[int]:
        while not stop.is_set():
            with lock:
                start = next(shared, None)
            if start is None:
                return
            yield start

    def count(units: int) -> None:
        with lock:
            done[0] += units

    with one_torch_thread():
        pool = worker_pool(workers)
        jobs: list[Future[None]] = []
        reported = 0
        try:
            for i in range(workers):
                jobs.append(pool.submit(work, next_start(), count, i))
            while jobs:
                finished, pending = wait(jobs, timeout=0.1, return_when=FIRST_EXCEPTION)
                for job in finished:
                    job.result()  # raises a worker's error here
                jobs = list(pending)
                if done[0] > reported:
                    report(done[0] - reported)
                    reported = done[0]
        except BaseException:
            stop.set()
            wait(jobs)
            raise


_POOL_LOCK = threading.Lock()
_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid that made it, threads, pool)
_RUN_LOCK = threading.Lock()  # one run at a time (see one_torch_thread)


def worker_pool(count: int) -> ThreadPoolExecutor:
    """A thread pool of at least ``count`` threads, made again in a forked child (whose copy of
    the parent's pool has no threads behind it)."""
    global _POOL
    with _POOL_LOCK:
        pid = os.getpid()
        if _POOL is None or _POOL[0] != pid or _POOL[1] < count:
            if _POOL is not None and _POOL[0] == pid:
                _POOL[2].shutdown(wait=False)  # its threads end once jobs already given to it finish
            _POOL = (pid, count, ThreadPoolExecutor(count, thread_name_prefix="satclip-worker"))
        return _POOL[2]


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch's intra-op threads set to 1 while workers run (each worker is a core's worth of work
    already), and put back afterwards by the same thread. Runs take turns (each would use every
    core anyway), so set/restore pairs never overlap. Known limit: torch's setting is partly per
    thread and partly process-wide (measured: lowering it on one thread lowers it for threads that
    have run torch ops, raising it does not), so another thread's torch calls run on one thread
    meanwhile and may stay there (docs/explanations/determinism.md, "Thread pinning")."""
    with _RUN_LOCK:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)


__all__ = ["Work", "one_torch_thread", "share_out", "worker_pool"]
