"""The machinery that keeps STREAM fast: persistent worker threads and a ring of output slots.

Design note. A stream is cut into batches; each batch is one job, run by one of a few
persistent worker threads, that fills one slot of a ring of output buffers allocated
once (``threads + 2`` slots). :func:`run_ring` queues the jobs of later slots while
earlier ones run, so a worker that finishes takes the next job at once (no batch waits
for its slowest part), and hands the slots' contents out in order, as views of the
buffers; while the caller consumes one, the next ones are being filled. A job releases
the GIL for its long calls (``preadv``, ``encrypt_into``, ``decrypt_into``), which is what
lets the workers run in parallel. Nothing here knows what a job computes.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable
from typing import NamedTuple

Job = Callable[[], int | None]


def default_threads() -> int:
    """Worker threads: one per CPU this process may run on, at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


class Pool:
    """Worker threads that run queued jobs, each filling one of a ring of output slots.

    A slot's lock is held from ``submit`` until its job is done; ``wait`` takes it back,
    in slot order. ``threads=0``, or ``inline``, runs the job in the calling thread.
    The threads start with the first job that needs them.
    """

    def __init__(self, threads: int | None) -> None:
        self.threads = default_threads() if threads is None else max(0, threads)
        self.slots = self.threads + 2
        self._jobs: queue.SimpleQueue[tuple[int, Job] | None] = queue.SimpleQueue()
        self._done = [threading.Lock() for _ in range(self.slots)]
        for lock in self._done:
            lock.acquire()
        self._results: list[int | None | BaseException] = [None] * self.slots
        self._workers: list[threading.Thread] = []

    def submit(self, slot: int, job: Job, inline: bool = False) -> None:
        if self.threads == 0 or inline:
            self._finish(slot, job)
            return
        if not self._workers:
            self._workers = [
                threading.Thread(target=self._work, name="age-stream", daemon=True)
                for _ in range(self.threads)
            ]
            for worker in self._workers:
                worker.start()
        self._jobs.put((slot, job))

    def wait(self, slot: int) -> int | None:
        """The result of the job submitted to ``slot`` (it raises what the job raised)."""
        self._done[slot].acquire()
        result = self._results[slot]
        if isinstance(result, BaseException):
            self._results[slot] = None
            raise result
        return result

    def _finish(self, slot: int, job: Job) -> None:
        try:
            self._results[slot] = job()
        except BaseException as e:  # handed to the thread that waits for the slot
            self._results[slot] = e
        self._done[slot].release()

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            self._finish(*item)

    def close(self) -> None:
        for _ in self._workers:
            self._jobs.put(None)
        for worker in self._workers:
            worker.join()
        self._workers = []


class Batch(NamedTuple):
    """One batch of a stream, as planned for a slot of the ring."""

    job: Job  #: fills the slot's output buffer; its result goes to ``deliver``
    chunks: int  #: how many STREAM chunks the batch covers
    final: bool  #: whether the batch ends the stream (nothing is planned after it)
    deliver: Callable[[int | None], Iterable[memoryview]]  #: what to yield once it is done


#: ``plan(slot, output buffer of the slot, index of the batch's first chunk) -> Batch``;
#: it may read input (on the calling thread) and raise to end the stream.
Plan = Callable[[int, memoryview, int], Batch]


def run_ring(
    pool: Pool, plan: Plan, out_size: int, first_chunk: int = 0
) -> Generator[memoryview, None, None]:
    """Run ``plan``'s batches on ``pool`` and yield what each delivers, in stream order.

    Each slot has an output buffer of ``out_size`` bytes; a view yielded from it is valid
    until the next one is asked for. A stream of one batch runs on the calling thread
    (starting threads would cost more than it saves). The pool is closed at the end,
    on error, or when the generator is closed.
    """
    outs = [memoryview(bytearray(out_size)) for _ in range(pool.slots)]
    try:
        pending: deque[Batch] = deque()
        index, final, slot = first_chunk, False, 0
        while True:
            while not final and len(pending) < pool.slots:
                s = (slot + len(pending)) % pool.slots
                batch = plan(s, outs[s], index)
                pool.submit(s, batch.job, inline=batch.final and index == first_chunk)
                index += batch.chunks
                final = batch.final
                pending.append(batch)
            batch = pending.popleft()
            yield from batch.deliver(pool.wait(slot))
            if not pending:
                return
            slot = (slot + 1) % pool.slots
    finally:
        pool.close()
