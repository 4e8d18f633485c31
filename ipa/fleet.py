"""The fleet runner: many (card, IPAd) pairs in one asyncio event loop, for load and scale work.

Each device is a card (any object with ``transmit``; the fleet never imports the emulator), an
:class:`~ipa.es10.Es10Client` on it and a :class:`~ipa.pull.PullFlow` polling one eIM. What
the devices share, and why:

- **One ESipa client and one HTTP connection pool.** Every device talks to the same eIM, so
  one :class:`~ipa.esipa.EsipaClient` serves them all (it keeps no per-device state) over one
  ``httpx.AsyncClient`` holding at most ``max_connections`` kept-alive connections: a thousand
  devices do not open a thousand TLS connections per cycle.
- **The connection pool is the fleet's own by default** (:mod:`ipa.http_pool`): lean
  HTTP/1.1 over asyncio streams. httpx's own client and pool cost about four times as much
  CPU per request, and a fleet in one process is CPU bound (``docs/fleet.md`` has the
  measurements). ``http=HttpMode.HTTPX`` uses httpx's pool, and an ``EsipaConfig.transport``
  (an ASGI transport in tests) replaces both.
- **TLS is verified** against ``pull.esipa.ca_certificates`` plus, with
  ``pull.use_eim_tls_pin``, the eIM's ``trustedPublicKeyDataTls`` read from the cards when the
  fleet opens (as each IPAd would use it): certificates become trust anchors, a
  ``trustedEimPkTls`` pins the key (all cards must then pin the same key).

Scheduling: ready devices wait in one FIFO queue; ``concurrency`` workers take the next one,
run one cycle (:meth:`PullFlow.poll_once`), record its latency, call ``on_cycle`` and put the
device back after ``pace`` seconds (``None``: the cycle's own ``next_delay``, i.e. the pull
flow's interval and back-off, as real devices do; ``0``: at once, for load). Card I/O is
synchronous and inline, as in the pull flow.

A synchronous facade, :class:`FleetRunner`, runs the fleet in a background thread.
"""

from __future__ import annotations

import array
import asyncio
import bisect
import contextlib
import enum
import gc
import inspect
import logging
import math
import os
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from ipa.errors import IpaError
from ipa.es10 import Es10Client
from ipa.es10_iot import EimConfiguration
from ipa.esipa import EsipaClient, EsipaConfig
from ipa.http_pool import FleetHttpClient, PooledTransport
from ipa.pull import PollOutcome, PullConfig, PullFlow, startup
from ipa.tls import unverified_context
from ipa.transport import CardLike, InProcessTransport

__all__ = [
    "CycleHook",
    "Device",
    "Fleet",
    "FleetConfig",
    "FleetError",
    "FleetRunner",
    "FleetStats",
    "HttpMode",
    "new_event_loop",
    "run",
]

log = logging.getLogger(__name__)

try:  # imported with the fleet, not when the first loop is made (a fleet's memory is measured)
    import uvloop as _uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
    _uvloop = None  # type: ignore[assignment]

T = TypeVar("T")

#: The youngest generation's collection threshold while a ``freeze_gc`` fleet is open
#: (CPython's default is 700): at 1,000 devices the young collections cost about 1 % of the
#: devices' CPU and freed nothing.
YOUNG_GC_THRESHOLD = 20_000


class FleetError(IpaError):
    """The fleet cannot be opened or run as configured."""


class HttpMode(enum.StrEnum):
    """Which HTTP connection pool the shared ``httpx.AsyncClient`` uses."""

    POOL = "pool"  # :class:`PooledTransport`
    HTTPX = "httpx"  # httpx's own (httpcore)


@dataclass(frozen=True)
class FleetConfig:
    """How the fleet runs.

    Attributes:
        eim_url: the eIM every device polls (``https://host:port``; overrides ``eimFqdn``).
        pull: each device's pull-flow settings; ``pull.esipa`` gives the binding, trust
            anchors, time-out and an optional test transport for the shared ESipa client.
        concurrency: cycles in flight at once (workers).
        max_connections: HTTP connections to the eIM kept open at most.
        pace: seconds a device waits between its cycles; ``None``: the cycle's
            ``next_delay`` (poll interval and back-off); ``0``: none (load).
        http: the connection pool (see :class:`HttpMode`).
        state_root: a directory for the IPAds' state files (``<state_root>/<EID>``); None:
            in memory.
        freeze_gc: once the fleet is open, collect garbage and move every object the
            process holds then (the cards, IPAds and their state) out of the cyclic garbage
            collector's reach (``gc.freeze``), and let the youngest generation grow to
            ``YOUNG_GC_THRESHOLD`` objects before it is collected, until :meth:`Fleet.stop`
            (which restores both): a full collection would otherwise walk the whole fleet
            again and again (about 0.2 s at 1,000 in-memory devices), and the young
            collections between cycles find nothing to free (a cycle makes no reference
            cycles). Process-wide: for a process that runs the fleet (a load run), not for a
            library caller that shares the process.
    """

    eim_url: str
    pull: PullConfig = field(default_factory=PullConfig)
    concurrency: int = 8
    max_connections: int = 8
    pace: float | None = None
    http: HttpMode = HttpMode.POOL
    state_root: str | os.PathLike[str] | None = None
    freeze_gc: bool = False

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_connections < 1:
            raise ValueError("concurrency and max_connections must be at least 1")
        if self.pace is not None and self.pace < 0:
            raise ValueError("pace must be None or >= 0")


@dataclass(eq=False)
class Device:
    """One (card, IPAd) pair of the fleet."""

    index: int
    client: Es10Client
    flow: PullFlow
    cycles: int = 0
    failures: int = 0
    last: PollOutcome | None = None

    @property
    def eid(self) -> str | None:
        """The card's EID (known once the flow booted)."""
        return self.flow.eid


#: Called after every cycle with the device and its outcome (None: the cycle raised); may be
#: a coroutine function. Runs in the fleet's event loop.
CycleHook = Callable[[Device, PollOutcome | None], "Awaitable[None] | None"]


@dataclass(frozen=True)
class FleetStats:
    """Cycles that ended in a time window, and their latencies (milliseconds).

    ``cycles`` counts every cycle, ``failed`` those that raised or ended with an error,
    ``packages`` the eIM packages whose result the eIM took; the latencies are of all cycles.
    """

    seconds: float
    cycles: int
    failed: int
    packages: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def cycles_per_s(self) -> float:
        """Cycles per second over the window."""
        return self.cycles / self.seconds if self.seconds > 0 else 0.0

    @property
    def packages_per_s(self) -> float:
        """Delivered eIM packages per second over the window."""
        return self.packages / self.seconds if self.seconds > 0 else 0.0


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of ascending values (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class _CycleLog:
    """End time, duration, failure flag and delivered packages of every cycle, in the order
    they ended (about 20 bytes a cycle)."""

    def __init__(self) -> None:
        self.first_start: float | None = None
        self.ends = array.array("d")
        self.durations = array.array("d")
        self.failed = array.array("B")
        self.packages = array.array("I")

    def add(self, end: float, duration: float, failed: bool, packages: int) -> None:
        self.ends.append(end)
        self.durations.append(duration)
        self.failed.append(failed)
        self.packages.append(packages)

    def stats(self, since: float, until: float) -> FleetStats:
        lo, hi = bisect.bisect_left(self.ends, since), bisect.bisect_right(self.ends, until)
        ms = sorted(d * 1000.0 for d in self.durations[lo:hi])
        return FleetStats(
            seconds=max(0.0, until - since),
            cycles=hi - lo,
            failed=sum(self.failed[lo:hi]),
            packages=sum(self.packages[lo:hi]),
            p50_ms=percentile(ms, 50),
            p99_ms=percentile(ms, 99),
            max_ms=ms[-1] if ms else 0.0,
        )


# -- the fleet ------------------------------------------------------------------------------------


class Fleet:
    """Many devices polling one eIM from one event loop.

    Args:
        cards: the cards (anything with ``transmit``), one device each.
        config: see :class:`FleetConfig`.
        on_cycle: called after each cycle (see :data:`CycleHook`).
        clock: monotonic seconds for the latency records (default ``time.perf_counter``).

    Use ``async with Fleet(...) as fleet`` (:meth:`open` ... :meth:`stop`), then either
    :meth:`poll_all` (one cycle per device) or :meth:`start` (cycles until :meth:`stop`).
    """

    def __init__(
        self,
        cards: Iterable[CardLike],
        config: FleetConfig,
        *,
        on_cycle: CycleHook | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.config = config
        self._cards = list(cards)
        self._on_cycle = on_cycle
        self.clock = clock
        self.devices: list[Device] = []
        self.esipa: EsipaClient | None = None
        self._http: httpx.AsyncClient | None = None
        self._log = _CycleLog()
        self._ready: asyncio.Queue[Device | None] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._waits: dict[int, asyncio.TimerHandle] = {}  # device index -> its wait
        self._woken: set[int] = set()  # woken during a cycle: the next one follows at once
        self._running = False
        self._closed = False
        # set while this fleet has the collector frozen (freeze_gc): the thresholds before
        self._gc_threshold: tuple[int, ...] | None = None

    # -- life cycle ----------------------------------------------------------------------

    async def open(self) -> None:
        """Open an ES10 channel on every card, read the eIM trust they hold, build the shared
        ESipa client and boot every pull flow (S0: EID, eIM configuration, AddInitialEim from
        ``pull.initial_eim``). A card that is not provisioned still joins (its cycles end
        UNPROVISIONED)."""
        if self._closed:
            raise FleetError("the fleet is stopped; make a new one")
        if self.devices:
            return
        clients: list[Es10Client] = []
        try:
            for i, card in enumerate(self._cards):
                clients.append(Es10Client.open(InProcessTransport(card)))
                if i % 100 == 99:
                    await asyncio.sleep(0)  # let the loop breathe while a big fleet opens
            # Before reading the cards' eIM TLS trust: an unprovisioned card gets it here.
            eims = self._apply_initial_eim(clients)
            esipa_config = self._esipa_config(eims)
            self._http = self._http_client(esipa_config)
            self.esipa = EsipaClient(self.config.eim_url, esipa_config, http=self._http)
            pull = replace(self.config.pull, eim_url=self.config.eim_url)
            for i, client in enumerate(clients):
                state_dir = None
                if self.config.state_root is not None:
                    state_dir = Path(self.config.state_root) / client.get_eid()
                flow = PullFlow(client, pull, state_dir=state_dir, esipa=self.esipa)
                if not await flow.boot():
                    log.warning("device %d (EID %s) has no eIM configured", i, flow.eid)
                self.devices.append(Device(i, client, flow))
                if i % 100 == 99:
                    await asyncio.sleep(0)
        except BaseException:
            self.devices = []
            for client in clients:
                with contextlib.suppress(Exception):
                    client.close()
            if self._http is not None:
                await self._http.aclose()
            raise
        log.info("fleet of %d device(s) polls %s", len(self.devices), self.config.eim_url)
        if self.config.freeze_gc and self._gc_threshold is None:
            gc.collect()
            gc.freeze()
            self._gc_threshold = gc.get_threshold()
            gc.set_threshold(YOUNG_GC_THRESHOLD, *self._gc_threshold[1:])

    async def start(self) -> None:
        """Start the workers: every device cycles until :meth:`stop`."""
        await self.open()
        if self._running:
            return
        self._running = True
        self._ready = asyncio.Queue()
        for device in self.devices:
            self._ready.put_nowait(device)
        self._workers = [
            asyncio.create_task(self._worker(), name=f"fleet-worker-{n}")
            for n in range(self.config.concurrency)
        ]

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop scheduling, let cycles in flight finish (cancelled after ``timeout``), then
        close the HTTP connections and the ES10 channels."""
        if self._closed:
            return
        await self._stop_workers(timeout)
        self._closed = True
        if self._http is not None:
            await self._http.aclose()
        for device in self.devices:
            with contextlib.suppress(Exception):
                device.client.close()
        if self._gc_threshold is not None:
            gc.set_threshold(*self._gc_threshold)
            self._gc_threshold = None
            gc.unfreeze()

    async def __aenter__(self) -> Fleet:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        """Whether the workers are cycling."""
        return self._running

    @property
    def http(self) -> httpx.AsyncClient | None:
        """The HTTP client every device shares (a :class:`FleetHttpClient` by default)."""
        return self._http

    # -- work ----------------------------------------------------------------------------

    async def poll_all(self) -> list[PollOutcome | None]:
        """One cycle of every device (at most ``concurrency`` at once), in device order;
        None where a cycle raised. Not while the workers run."""
        if self._running:
            raise FleetError("the fleet is running; stop it before poll_all()")
        await self.open()
        slots = asyncio.Semaphore(self.config.concurrency)

        async def one(device: Device) -> PollOutcome | None:
            async with slots:
                return await self._cycle(device)

        return list(await asyncio.gather(*(one(d) for d in self.devices)))

    def stats(self, since: float | None = None, until: float | None = None) -> FleetStats:
        """Statistics of the cycles that ended between ``since`` and ``until`` (``clock``
        values; default: from the first cycle's start to now)."""
        if since is None:
            since = self._log.first_start if self._log.first_start is not None else self.clock()
        return self._log.stats(since, self.clock() if until is None else until)

    def wake(self, device: Device) -> None:
        """Run ``device``'s next cycle now (a wake-up from its eIM, see :mod:`ipa.listen`)
        instead of after its wait; a device in a cycle runs again right after it. Call it in
        the fleet's event loop."""
        handle = self._waits.pop(device.index, None)
        if handle is not None and self._running and self._ready is not None:
            handle.cancel()
            self._timers.discard(handle)
            self._ready.put_nowait(device)
        else:
            self._woken.add(device.index)

    # -- internals -----------------------------------------------------------------------

    async def _cycle(self, device: Device) -> PollOutcome | None:
        start = self.clock()
        if self._log.first_start is None:
            self._log.first_start = start
        outcome: PollOutcome | None
        try:
            outcome = await device.flow.poll_once()
        except Exception:  # a bug in one device must not stop the fleet
            log.exception("device %d: the cycle raised", device.index)
            outcome = None
        end = self.clock()
        failed = outcome is None or not outcome.ok
        delivered = 0 if outcome is None else sum(p.delivered for p in outcome.packages)
        self._log.add(end, end - start, failed, delivered)
        device.cycles += 1
        device.failures += failed
        device.last = outcome
        if self._on_cycle is not None:
            try:
                answer = self._on_cycle(device, outcome)
                if inspect.isawaitable(answer):
                    await answer
            except Exception:
                log.exception("device %d: on_cycle raised", device.index)
        return outcome

    async def _worker(self) -> None:
        assert self._ready is not None
        while True:
            device = await self._ready.get()
            if device is None or not self._running:
                return
            outcome = await self._cycle(device)
            if not self._running:
                return
            self._reschedule(device, outcome)
            # A cycle may finish without waiting for anything (in-process eIM, unprovisioned
            # card): yield, or the workers would keep the loop to themselves.
            await asyncio.sleep(0)

    def _reschedule(self, device: Device, outcome: PollOutcome | None) -> None:
        assert self._ready is not None
        delay = self.config.pace
        if delay is None:
            delay = outcome.next_delay if outcome is not None else self.config.pull.backoff.initial
        if device.index in self._woken:
            self._woken.discard(device.index)
            delay = 0.0
        if delay <= 0:
            self._ready.put_nowait(device)
            return
        loop = asyncio.get_running_loop()

        def ready() -> None:
            self._timers.discard(handle)
            self._waits.pop(device.index, None)
            if self._running and self._ready is not None:
                self._ready.put_nowait(device)

        handle = loop.call_later(delay, ready)
        self._timers.add(handle)
        self._waits[device.index] = handle

    async def _stop_workers(self, timeout: float) -> None:
        if not self._running:
            return
        self._running = False
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self._waits.clear()
        assert self._ready is not None
        for _ in self._workers:
            self._ready.put_nowait(None)  # wake idle workers
        done, pending = await asyncio.wait(self._workers, timeout=timeout)
        for task in pending:
            task.cancel()  # a cycle stuck past the timeout
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("fleet worker failed: %r", task.exception())
        self._workers = []

    def _apply_initial_eim(self, clients: Sequence[Es10Client]) -> list[EimConfiguration | None]:
        """S0's start-up on every card (:mod:`ipa.pull.startup`): AddInitialEim
        (``pull.initial_eim``) where no eIM is configured; the eIM each card's flow will poll."""
        chosen = []
        for client in clients:
            configs = startup.eim_configurations(client, self.config.pull)
            chosen.append(startup.choose_eim(configs, self.config.pull.eim_id))
        return chosen

    def _esipa_config(self, eims: Sequence[EimConfiguration | None]) -> EsipaConfig:
        """The shared ESipa settings: ``pull.esipa`` plus the eIM TLS trust on the cards."""
        base = self.config.pull.esipa
        if not self.config.pull.use_eim_tls_pin or base.insecure:
            return base
        anchors: dict[bytes, None] = {}
        pins: set[bytes] = set()
        for eim in eims:
            if eim is None:
                continue
            pin, anchor = startup.eim_tls_trust(eim)
            if pin is not None:
                pins.add(pin)
            elif anchor is not None:
                anchors[anchor] = None
        if len(pins) > 1:
            raise FleetError("the cards pin different eIM TLS keys; a fleet polls one eIM")
        config = replace(base, ca_certificates=base.ca_certificates + tuple(anchors))
        if pins and base.pinned_public_key is None:
            config = replace(config, pinned_public_key=pins.pop())
        return config

    def _http_client(self, esipa: EsipaConfig) -> httpx.AsyncClient:
        timeout = httpx.Timeout(esipa.timeout)
        if esipa.transport is not None:
            return httpx.AsyncClient(transport=esipa.transport, timeout=timeout)
        context = _ssl_context(esipa)
        if self.config.http is HttpMode.HTTPX:
            limits = httpx.Limits(
                max_connections=self.config.max_connections,
                max_keepalive_connections=self.config.max_connections,
            )
            return httpx.AsyncClient(verify=context, limits=limits, timeout=timeout)
        pin = None if esipa.insecure else esipa.pinned_public_key
        transport = PooledTransport(
            ssl_context=context,
            pinned_public_key=pin,
            max_connections=self.config.max_connections,
            timeout=esipa.timeout,
        )
        return FleetHttpClient(transport, timeout=esipa.timeout)


def _ssl_context(esipa: EsipaConfig) -> ssl.SSLContext:
    context = esipa.ssl_context()
    return context if isinstance(context, ssl.SSLContext) else unverified_context()


# -- the synchronous facade -----------------------------------------------------------------------


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop for a fleet: uvloop's where it is installed, asyncio's otherwise.

    A fleet in one process is CPU bound, and part of each cycle is the event loop's own work
    (scheduling, socket I/O and the TLS layer, which asyncio runs in Python): on uvloop the
    devices' process spends about 4 % fewer instructions per PSMO cycle (``docs/fleet.md``).
    Nothing of the flow depends on the loop.
    """
    if _uvloop is None:  # not installed (e.g. Windows, PyPy): asyncio's loop does the same
        return asyncio.new_event_loop()
    return _uvloop.new_event_loop()  # type: ignore[no-any-return]


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on a :func:`new_event_loop`: how the ``ipa fleet`` command and the
    pull benchmark run a fleet."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


class FleetRunner:
    """A :class:`Fleet` in a background thread with its own event loop, for scripts::

        with FleetRunner(cards, FleetConfig(eim_url, pace=0)) as fleet:   # opens it
            fleet.start()
            time.sleep(10)
            print(fleet.stats().cycles_per_s)
        # stopped and closed here

    Every method blocks until the loop has done it. ``on_cycle`` runs in the fleet's thread.
    """

    def __init__(
        self,
        cards: Iterable[CardLike],
        config: FleetConfig,
        *,
        on_cycle: CycleHook | None = None,
    ) -> None:
        self._loop = new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fleet", daemon=True)
        self._thread.start()
        self.fleet = Fleet(cards, config, on_cycle=on_cycle)

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed():
            coroutine.close()
            raise FleetError("the fleet runner is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The fleet's event loop (in the runner's thread)."""
        return self._loop

    @property
    def devices(self) -> list[Device]:
        """The devices (read them while the fleet is stopped, or accept a moving picture)."""
        return self.fleet.devices

    def open(self) -> None:
        """See :meth:`Fleet.open`."""
        self._call(self.fleet.open())

    def start(self) -> None:
        """See :meth:`Fleet.start`."""
        self._call(self.fleet.start())

    def poll_all(self) -> list[PollOutcome | None]:
        """See :meth:`Fleet.poll_all`."""
        return self._call(self.fleet.poll_all())

    def stats(self, since: float | None = None, until: float | None = None) -> FleetStats:
        """See :meth:`Fleet.stats` (computed in the fleet's thread)."""

        async def compute() -> FleetStats:
            return self.fleet.stats(since, until)

        return self._call(compute())

    def stop(self, timeout: float = 30.0) -> None:
        """Stop and close the fleet, then end the thread. Safe to call twice."""
        if self._loop.is_closed():
            return
        try:
            self._call(self.fleet.stop(timeout))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> FleetRunner:
        try:
            self.open()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
