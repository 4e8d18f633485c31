"""PSMO cycles of a fleet of emulated devices against the reference eIM, in one process.

    python benchmarks/pull.py [--json] [--devices N] [--seconds S] [--warmup S]
                              [--concurrency C] [--transport loopback|asgi|direct]
                              [--http pool|httpx]
                              [--binding asn1|json] [--eim-state disk|memory] [--live-queue]
                              [--eim-process] [--idle]

A PSMO cycle: the eIM has a queued package for the device (enable, then disable, of the TS.48
profile preloaded on its card, alternating); the device polls (GetEimPackage), runs
LoadEuiccPackage on its card (the eIM's signature verified, the result signed), reports the
result (ProvideEimPackageResult), and the eIM verifies the EPR, stores it and acknowledges
it; the IPAd removes the result from the card. Each device runs the IPAd's pull flow
(``ipa.pull``) with ``max_packages=1``, so one cycle is exactly those two ESipa requests.
The devices are a fleet (``ipa.fleet``): one event loop (``ipa.fleet.run``: uvloop's where
installed, as ``ipa fleet`` runs it), cycles back to back, ``--concurrency``
in flight, one pool of kept-alive HTTPS connections.

The packages are queued before the measured window (enough for 500 cycles/s; a device whose
backlog runs low is topped up after its cycle); ``--live-queue`` queues each device's next
package only once its result is in, so the operator's work falls inside the window.

Set-up (not timed): the reference eIM (SGP.26 test PKI) serving HTTPS on 127.0.0.1 in a
background thread of this process, its SQLite state in a temporary directory (``--eim-state
memory``: in memory; ``--transport asgi``: the eIM app called in-process, no socket;
``--transport direct``: no HTTP at all, see below); N
in-memory cards (``Euicc.create(None)``: a NIST P-256 key and certificate each, issued under
the SGP.26 EUM), the TS.48 profile preloaded, each registered with the eIM with its
certificates (so the eIM knows its key) and given the eIM by AddInitialEim.

``--eim-process``: the eIM runs in a process of its own (HTTPS on 127.0.0.1, the same SQLite
state directory): the devices are registered and every PSMO of the run is queued before it
starts, in this process, through the eIM's core, and the results are checked on its state
afterwards. The fleet's and the eIM's CPU then no longer share one interpreter.

``--transport direct``: the devices' ESipa client hands each message straight to the eIM's
core (no HTTP, TLS or ASGI) and ``cpu_ms_per_cycle`` leaves out the CPU the core spent (its
thread time around each call, printed as ``eim_cpu_ms_per_cycle``): the devices' own CPU
per cycle (cards, IPAds, pull rules, the ESipa client) with nothing of the network, a figure
that moves less with the machine's other load than the loopback ones.

``--idle``: no cycles; make and open N devices and report only the memory they take
(``rss_kb_per_device``; floor 64 KiB at N=10,000).

Printed (``--json``: one object):
  devices              N
  psmo_cycles_per_s    completed cycles per second over the measured window (after warm-up)
  p50_ms, p99_ms       latency of those cycles, from the poll to the acknowledgement
  rss_mb_per_device    (RSS after creating and registering the N devices and opening their
                       IPAds - RSS before) / N, from /proc/self/status VmRSS
  rss_kb_per_device    the same in KiB
  cpu_ms_per_cycle     CPU milliseconds this process spent per cycle in the window (the
                       devices, and with the eIM in a thread the eIM too; ``--transport
                       direct``: the devices only)
  eim_cpu_ms_per_cycle with ``--eim-process``: the eIM process's CPU milliseconds per cycle;
                       with ``--transport direct``: the eIM core's
  eim                  "thread" (in this process) or "process"
Floors: 600 cycles/s at N=1000 with ``--eim-process`` (issue #15; 200 in-thread, issue #4);
64 KiB per idle device at N=10,000.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import report

from euicc_protocol import saip
from euicc_protocol.crypto import Curve
from euicc_servers.eim import EimServer, OrderState, build_eim, create_app, run_in_thread
from euicc_sim.card import Euicc
from ipa import es10_iot
from ipa.es10 import Es10Client
from ipa.esipa import Binding, EsipaConfig
from ipa.fleet import Device, Fleet, FleetConfig, FleetStats, HttpMode
from ipa.fleet import run as run_fleet
from ipa.http_pool import FleetHttpClient
from ipa.pull import PollOutcome, PullConfig
from ipa.transport import InProcessTransport

PACKAGE = Path(__file__).resolve().parent.parent / "profiles" / "ts48" / "TS48V1-A-UNIQUE.der"
FLOOR = 200.0
PROCESS_FLOOR = 600.0
IDLE_FLOOR_KB = 64.0


def rss_mb() -> float:
    """This process's resident set size in MiB (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def make_card(eim: EimServer, package: bytes) -> Euicc:
    """A card with the profile preloaded, registered at the eIM and holding its eIM config."""
    card = Euicc.create(None, curves=(Curve.NIST_P256,))
    card.preload(package)
    chain = card.credentials.chains[0]
    eim.core.register(
        card.eid,
        euicc_certificate=chain.euicc_certificate,
        eum_certificate=chain.eum_certificate,
    )
    request = bytes(eim.core.configuration(card.eid).add_initial_eim_request())
    with Es10Client.open(InProcessTransport(card)) as client:
        es10_iot.add_initial_eim(client, request)
    return card


class _DirectAnswer:
    __slots__ = ("status_code", "content")

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code, self.content = status_code, content


class DirectEim:
    """``--transport direct``: stands in for the fleet's HTTP client; each ESipa message goes
    straight to the eIM core (synchronously, in this thread), whose CPU is added up in
    ``cpu`` (thread time around each call)."""

    def __init__(self, eim: EimServer) -> None:
        self.core = eim.core
        self.cpu = 0.0

    async def post_lean(self, url: str, *, content: bytes, **_: Any) -> _DirectAnswer:
        start = time.thread_time()
        answer = self.core.handle(content)
        self.cpu += time.thread_time() - start
        return _DirectAnswer(200, b"" if answer is None else answer.message)

    post = post_lean

    async def aclose(self) -> None:
        pass


class DirectFleet(Fleet):
    """A fleet whose devices post through a :class:`DirectEim`."""

    def __init__(self, *args: Any, direct: DirectEim, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.direct = direct

    def _http_client(self, esipa: EsipaConfig) -> Any:
        return self.direct


class Operator:
    """Keeps PSMOs queued for every device: enable and disable of the preloaded profile,
    alternating. ``fill`` queues up to ``depth`` packages for a device (before the measured
    window); when a device's backlog falls below ``low`` the next result tops it up again."""

    def __init__(self, eim: EimServer, iccid: str, *, depth: int = 1, low: int = 1) -> None:
        # low=0: never top up (the eIM runs elsewhere and everything was queued up front)
        self.eim = eim
        self.operations = ({"enable": {"iccid": iccid}}, {"disable": {"iccid": iccid}})
        self.depth, self.low = depth, low
        self.steps: dict[str, int] = {}
        self.backlog: dict[str, int] = {}
        self.refused = 0

    def fill(self, eid: str) -> None:
        while self.backlog.get(eid, 0) < self.depth:
            step = self.steps.get(eid, 0)
            self.steps[eid] = step + 1
            self.eim.core.queue(eid, {"type": "psmo", "operations": [self.operations[step % 2]]})
            self.backlog[eid] = self.backlog.get(eid, 0) + 1

    def on_cycle(self, device: Device, outcome: PollOutcome | None) -> None:
        if outcome is None or device.eid is None:
            return
        self.refused += sum(p.refused for p in outcome.packages)
        self.backlog[device.eid] -= sum(p.kind is not None for p in outcome.packages)
        if self.backlog[device.eid] < self.low:
            self.fill(device.eid)


def _serve_eim(state_dir: str, conn: Any) -> None:
    """The eIM in a process of its own (``--eim-process``): serve ``state_dir`` over HTTPS on
    127.0.0.1, send the base URL, serve until told to stop."""
    logging.basicConfig(level=logging.ERROR)
    eim = build_eim("sgp26", state_dir=state_dir)
    with run_in_thread(eim.core, tls=eim.tls) as server:
        conn.send(server.base_url)
        while conn.recv() == "cpu":  # else "stop"
            conn.send(time.process_time())
    eim.core.store.close()


async def measure_idle(fleet: Fleet) -> float:
    """Open the fleet (every device booted, no cycles); RSS after it."""
    await fleet.open()
    after = rss_mb()
    await fleet.stop()
    return after


async def measure(
    fleet: Fleet,
    operator: Operator,
    warmup: float,
    seconds: float,
    eim_cpu: Callable[[], float] = lambda: 0.0,
) -> tuple[FleetStats, float, float, float]:
    """Open the fleet (RSS after it), then the stats of the cycles that end in ``seconds``
    after ``warmup`` seconds of cycling, and the CPU seconds this process and the eIM process
    (``eim_cpu``: its CPU clock) spent in the window."""
    await fleet.open()
    after = rss_mb()
    if operator.low:  # else all was queued before the eIM process started
        for device in fleet.devices:
            assert device.eid is not None
            operator.fill(device.eid)
    await fleet.start()
    await asyncio.sleep(warmup)
    since, cpu, eim = fleet.clock(), time.process_time(), eim_cpu()
    await asyncio.sleep(seconds)
    until, cpu, eim = fleet.clock(), time.process_time() - cpu, eim_cpu() - eim
    await fleet.stop()
    return fleet.stats(since, until), after, cpu, eim


def run(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    package = PACKAGE.read_bytes()
    iccid = saip.read_package(package).iccid
    with ExitStack() as stack:
        state_dir = None
        if args.eim_state == "disk":
            state_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="eim-bench-"))
        eim = build_eim("sgp26", state_dir=state_dir)
        esipa = EsipaConfig(binding=Binding(args.binding), timeout=60.0)
        direct = None
        if args.transport == "direct":
            eim.core.eim_fqdn = "eim.bench.test"
            eim_url = "https://eim.bench.test"
            direct = DirectEim(eim)
        elif args.transport == "asgi":
            eim.core.eim_fqdn = "eim.bench.test"
            eim_url = "https://eim.bench.test"
            esipa = EsipaConfig(
                binding=esipa.binding,
                timeout=esipa.timeout,
                transport=httpx.ASGITransport(app=create_app(eim.core)),
            )
        elif not args.eim_process:
            server = stack.enter_context(run_in_thread(eim.core, tls=eim.tls))
            eim_url = server.base_url
        make_card(eim, package)  # warms the schema, the test PKI and the eIM's caches
        before = rss_mb()
        start = time.perf_counter()
        cards = [make_card(eim, package) for _ in range(args.devices)]
        say(f"{args.devices} cards made and registered in {time.perf_counter() - start:.1f} s")
        if args.live_queue:
            operator = Operator(eim, iccid)
        elif args.eim_process:  # all of it now, enough for the whole run at 1000 cycles/s
            depth = math.ceil(1000 * (args.warmup + args.seconds) / args.devices) + 2
            operator = Operator(eim, iccid, depth=depth, low=0)
            if not args.idle:
                for card in cards:
                    operator.fill(card.eid)
            eim.core.store.close()
            assert state_dir is not None
            eim_process = ExitStack()
            stack.callback(eim_process.close)
            child = _eim_process(state_dir)
            eim_url = eim_process.enter_context(child)
            say(f"eIM serving {eim_url} from process of its own")
        elif direct is not None:  # all of it now (outside the window), as for --eim-process
            depth = math.ceil(1500 * (args.warmup + args.seconds) / args.devices) + 2
            operator = Operator(eim, iccid, depth=depth, low=0)
            if not args.idle:
                for card in cards:
                    operator.fill(card.eid)
        else:  # enough for the whole run at 500 cycles/s
            depth = math.ceil(500 * (args.warmup + args.seconds) / args.devices) + 2
            operator = Operator(eim, iccid, depth=depth, low=2)
        config = FleetConfig(
            eim_url,
            pull=PullConfig(esipa=esipa, max_packages=1),
            concurrency=args.concurrency,
            max_connections=args.concurrency,
            pace=0.0,
            http=HttpMode(args.http),
            freeze_gc=True,  # a load run: the fleet kept out of full collections
        )
        if direct is not None:
            fleet: Fleet = DirectFleet(cards, config, on_cycle=operator.on_cycle, direct=direct)
        else:
            fleet = Fleet(cards, config, on_cycle=operator.on_cycle)
        per_device = {"eim": "process" if args.eim_process else "thread"}
        if args.idle:
            after = run_fleet(measure_idle(fleet))
            say(f"fleet opened: {after - before:.1f} MiB for {args.devices} idle devices")
            return {
                "devices": args.devices,
                "rss_mb_per_device": round((after - before) / args.devices, 4),
                "rss_kb_per_device": round((after - before) * 1024 / args.devices, 1),
                **per_device,
            }
        clock = child.cpu if args.eim_process else (lambda: 0.0)
        if direct is not None:
            clock = lambda: direct.cpu  # noqa: E731 - the eIM core's thread time so far
        stats, after, cpu, eim_cpu = run_fleet(
            measure(fleet, operator, args.warmup, args.seconds, clock)
        )
        cycles = max(stats.cycles, 1)
        if direct is not None:
            cpu -= eim_cpu  # the devices' own CPU
        say(f"fleet opened: {after - before:.1f} MiB for {args.devices} devices")
        if isinstance(fleet.http, FleetHttpClient):
            say(f"{fleet.http.pool.connections_opened} connection(s) to the eIM opened in all")
        if args.eim_process:
            eim_process.close()  # stop the eIM process: its results are in the state directory
            eim = build_eim("sgp26", state_dir=state_dir)
        done = eim.core.store.orders(states=[OrderState.DONE])
        verified = sum(1 for order in done if order.verified)
        say(
            f"{stats.cycles} cycles measured, {stats.failed} failed, {operator.refused} refused;"
            f" eIM: {verified} of {len(done)} done orders verified;"
            f" {cpu * 1000 / cycles:.2f} ms CPU per cycle"
        )
        if stats.failed or operator.refused or verified != len(done):
            raise SystemExit("some cycles failed or some results were not verified")
        # Every result the IPAds saw taken is one done order at the eIM: none lost, none
        # applied twice.
        delivered = fleet.stats(until=fleet.clock()).packages
        if delivered != len(done):
            raise SystemExit(f"{delivered} results delivered but {len(done)} orders done")
    return {
        "devices": args.devices,
        "psmo_cycles_per_s": round(stats.packages_per_s, 1),
        "p50_ms": round(stats.p50_ms, 2),
        "p99_ms": round(stats.p99_ms, 2),
        "rss_mb_per_device": round((after - before) / args.devices, 3),
        "rss_kb_per_device": round((after - before) * 1024 / args.devices, 1),
        "cpu_ms_per_cycle": round(cpu * 1000 / cycles, 3),
        **(
            {"eim_cpu_ms_per_cycle": round(eim_cpu * 1000 / cycles, 3)}
            if args.eim_process or direct is not None
            else {}
        ),
        **per_device,
    }


class _eim_process:  # noqa: N801 - used as a context manager, like a function
    """``with _eim_process(state_dir) as url``: the eIM in a child process (spawned: a clean
    interpreter, no inherited threads), stopped on exit."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir

    def __enter__(self) -> str:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve_eim, args=(self.state_dir, child))
        self.process.start()
        if not self.conn.poll(120):
            self.process.kill()
            raise SystemExit("the eIM process did not start")
        return str(self.conn.recv())

    def cpu(self) -> float:
        """The eIM process's CPU seconds so far."""
        self.conn.send("cpu")
        return float(self.conn.recv())

    def __exit__(self, *exc: object) -> None:
        self.conn.send("stop")
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()


def main() -> int:
    parser = report.parser(__doc__)
    parser.add_argument("--devices", type=int, default=1000, help="emulated devices (N)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=3.0, help="cycling before the window")
    # 16 of the 1,000 devices mid-cycle: with the eIM in a process of its own, 8 in flight left
    # it waiting part of the time (each answer that acknowledges waits for an fsync), so both
    # processes idled; 16 keep it busy and batch more answers per fsync (cycles/s about 15 %
    # higher, CPU per cycle lower, p99 ~35 ms instead of ~27). In one process the two differ
    # by less than the host's noise.
    parser.add_argument("--concurrency", type=int, default=16, help="cycles in flight")
    parser.add_argument(
        "--transport",
        choices=("loopback", "asgi", "direct"),
        default="loopback",
        help="real HTTPS on 127.0.0.1 (default), the eIM app in-process, or the eIM core direct",
    )
    parser.add_argument("--http", choices=[m.value for m in HttpMode], default="pool")
    parser.add_argument("--binding", choices=[b.value for b in Binding], default="asn1")
    parser.add_argument("--eim-state", choices=("disk", "memory"), default="disk")
    parser.add_argument(
        "--eim-process", action="store_true", help="run the eIM in a process of its own"
    )
    parser.add_argument(
        "--idle", action="store_true", help="only make and open the devices: memory per device"
    )
    parser.add_argument(
        "--live-queue",
        action="store_true",
        help="queue each device's next PSMO only when its result is in (inside the window)",
    )
    args = parser.parse_args()
    if args.devices < 1:
        parser.error("--devices must be at least 1")
    if args.eim_process and (
        args.transport != "loopback" or args.eim_state != "disk" or args.live_queue
    ):
        parser.error("--eim-process needs --transport loopback, --eim-state disk, no --live-queue")
    if args.transport == "direct" and (args.binding != "asn1" or args.live_queue):
        parser.error("--transport direct needs the ASN.1 binding and no --live-queue")
    logging.basicConfig(level=logging.ERROR)

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr)

    results = run(args, say)
    if args.idle:
        mark = report.mark(results["rss_kb_per_device"] <= IDLE_FLOOR_KB, "ABOVE FLOOR")
        floor = f"floor: {IDLE_FLOOR_KB:.0f} KiB per idle device at N=10000: {mark}"
    else:
        cycles = PROCESS_FLOOR if args.eim_process else FLOOR
        mark = report.mark(results["psmo_cycles_per_s"] >= cycles)
        floor = f"floor: {cycles:.0f} cycles/s at N=1000: {mark}"
    report.print_figures(results, args.json, [floor])
    return 0


if __name__ == "__main__":
    sys.exit(main())
