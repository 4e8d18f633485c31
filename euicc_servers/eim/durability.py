"""Waiting on the event loop for acknowledging commits to be durable, with one fsync and one
thread hop per batch of answers rather than per answer (group commit).

An ESipa answer that carries ``eimAcknowledgements`` (SGP.32 §5.9.2) tells the IPAd to delete
results from the card, so the commits it reports must survive a power cut before it leaves
(:meth:`.store.EimStore.sync_through`). The fsync blocks for a disk's latency, so it runs in a
thread of its own while the loop serves other requests. Handing every answer to that thread
costs a wake-up of the thread and one of the loop per answer, more CPU than the fsync itself;
here the answers that arrive while an fsync runs wait for the next one together, and its end
wakes the loop once for all of them.

An fsync is not started the moment the first answer asks for one, but ``gather`` seconds
later (2 ms by default), so that the answers of the next few requests share it too. Each
fsync costs the loop's thread several hand-offs of the interpreter lock to and from the
fsync thread, which on a virtual machine are dearer than the fsync itself; gathered, a
loaded eIM (hundreds of acknowledging answers a second) makes about a third of the fsyncs
for a few milliseconds more on those answers. Answers that arrive while an fsync runs still
start the next one as soon as it ends: they have waited already.
"""

from __future__ import annotations

import asyncio
import queue
import threading

from .store import EimStore

__all__ = ["GATHER_SECONDS", "DurableAcks"]

# How long the fsync thread waits for work before it ends (a new one starts when needed):
# an idle app keeps no thread.
_IDLE_SECONDS = 10.0

#: How long the first answer that needs an fsync waits for others to share it.
GATHER_SECONDS = 0.002


class DurableAcks:
    """``await acks.wait(count)`` returns once the first ``count`` acknowledging commits of
    ``store`` are durable (raises what the fsync raised, e.g. :class:`OSError`). ``gather``:
    seconds an fsync waits, once asked for, for more answers to cover (0: none)."""

    def __init__(self, store: EimStore, *, gather: float = GATHER_SECONDS) -> None:
        self.store = store
        self.gather = gather
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._running = False  # an fsync is asked for or running, for this loop
        self._jobs: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, int, int]]
        self._jobs = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._generation = 0  # which loop's batch a finished fsync belongs to

    async def wait(self, count: int) -> None:
        """Return once commits ``1..count`` are durable."""
        if self.store.durable >= count:
            return
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests run one per request): start afresh
            self._loop, self._waiters, self._running = loop, [], False
            self._generation += 1
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.append((count, future))
        if not self._running:
            self._running = True  # asked for: the answers until it starts join this batch
            if self.gather > 0:
                loop.call_later(self.gather, self._start, loop, self._generation)
            else:
                self._start(loop, self._generation)
        await future

    def _start(self, loop: asyncio.AbstractEventLoop, generation: int) -> None:
        if generation != self._generation:
            return  # asked for on a loop no longer served
        # Every commit counted so far is in the WAL: the fsync covers them all.
        job = (loop, generation, self.store.acknowledged)
        with self._thread_lock:
            self._jobs.put(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="eim-fsync", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        """The fsync thread: one job at a time, then one wake-up of the loop."""
        while True:
            try:
                loop, generation, target = self._jobs.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                with self._thread_lock:
                    if self._jobs.empty():  # else a job came in meanwhile: serve it
                        self._thread = None
                        return
                continue
            error: BaseException | None = None
            try:
                self.store.sync_through(target)
            except BaseException as exc:  # handed to the waiters; the thread goes on
                error = exc
            try:
                loop.call_soon_threadsafe(self._synced, generation, target, error)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass

    def _synced(self, generation: int, target: int, error: BaseException | None) -> None:
        """On the loop: wake the waiters the fsync covered; start the next for the others."""
        if generation != self._generation:
            return
        self._running = False
        durable = self.store.durable
        left: list[tuple[int, asyncio.Future[None]]] = []
        for count, future in self._waiters:
            if future.done():  # cancelled (the client went away)
                continue
            if error is not None and count <= target:
                future.set_exception(error)
            elif count <= durable:
                future.set_result(None)
            else:
                left.append((count, future))
        self._waiters = left
        if left and self._loop is not None:
            self._running = True
            self._start(self._loop, generation)
