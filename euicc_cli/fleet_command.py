"""``ipa fleet``: many emulated cards polling one eIM from one process (:mod:`ipa.fleet`).

For eIM developers who need a crowd of realistic devices: every card directory becomes a
device running the SGP.32 pull flow against the eIM at ``--eim-url``. ``--once`` runs one
cycle per device and prints each outcome; otherwise the devices cycle (each at its own poll
interval, or back to back with ``--pace 0``) until Ctrl-C, SIGTERM or ``--duration``, with a
statistics line every ``--report`` seconds.

Cards are emulated ones kept in directories (``euicc-sim init``); the emulator is loaded on
demand, as for ``ipa --card``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from euicc_cli.pull_options import add_pull_options, pull_config
from ipa import es10_iot
from ipa.errors import IpaError
from ipa.es10 import Es10Client
from ipa.fleet import Device, Fleet, FleetConfig, FleetStats
from ipa.pull import PollOutcome
from ipa.transport import InProcessTransport

__all__ = ["add_fleet_command", "cmd_fleet"]


def add_fleet_command(sub: Any) -> None:
    """Add ``fleet`` to the ``ipa`` sub-commands (``sub``: argparse's sub-parsers)."""
    p = sub.add_parser(
        "fleet", help="run many emulated cards against one eIM (takes card directories)"
    )
    p.add_argument("cards", nargs="+", metavar="DIR", help="emulated card directories")
    p.add_argument("--eim-url", required=True, metavar="URL", help="the eIM all devices poll")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    p.add_argument("--once", action="store_true", help="one cycle per device, then exit")
    p.add_argument("--state", metavar="DIR", help="keep each IPAd's pending results in DIR/<EID>")
    add_pull_options(
        p,
        initial_eim_help="AddInitialEimRequest for unprovisioned cards: one file for all, or a "
        "directory of <EID>.der files (an eIM that gives each eUICC its own association token)",
        initial_eim_metavar="FILE.der|DIR",
    )
    p.add_argument(
        "--pace",
        type=float,
        metavar="S",
        help="seconds between a device's cycles instead of its interval and back-off "
        "(0: back to back, for load)",
    )
    p.add_argument("--concurrency", type=int, default=8, help="cycles in flight at once")
    p.add_argument(
        "--wait",
        dest="card_wait",  # not the global --wait of --card, which is refused here
        type=float,
        metavar="SECONDS",
        help="if another process has a card open, wait up to SECONDS for it (default: fail)",
    )
    p.add_argument(
        "--max-connections", type=int, default=8, help="HTTP connections to the eIM at most"
    )
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument(
        "--report", type=float, default=10.0, metavar="S", help="seconds between stats lines"
    )
    p.set_defaults(run=None, fleet=True)


def cmd_fleet(args: argparse.Namespace) -> None:
    """Run the fleet the command line describes (see the module doc).

    Raises:
        IpaError: with ``--once``, when any device's cycle failed.
        ValueError: an unusable option value.
    """
    if args.duration is not None and args.duration <= 0:
        raise ValueError("--duration must be positive")
    if args.report <= 0:
        raise ValueError("--report must be positive")
    from euicc_sim.card import Euicc  # loaded only when a fleet runs

    directories = [Path(d).resolve() for d in args.cards]
    if len(set(directories)) != len(directories):
        raise ValueError("a card directory is named twice (one card, one device)")
    cards: list[Any] = []
    try:
        for directory in directories:
            cards.append(Euicc.open(directory, wait=args.card_wait))
        _run_fleet(args, cards)
    finally:
        for card in cards:
            card.close()


def _run_fleet(args: argparse.Namespace, cards: list[Any]) -> None:
    initial_eim = args.initial_eim
    if initial_eim is not None and Path(initial_eim).is_dir():
        _provision_from_directory(cards, Path(initial_eim))
        initial_eim = None
    config = FleetConfig(
        args.eim_url,
        pull=pull_config(args, initial_eim=initial_eim),
        concurrency=args.concurrency,
        max_connections=args.max_connections,
        pace=args.pace,
        state_root=args.state,
    )
    as_json = getattr(args, "json", False)
    if args.once:
        rows = asyncio.run(_once(cards, config))
        if as_json:
            print(json.dumps({"devices": [r.to_json() for r in rows]}, indent=2))
        else:
            print("\n".join(r.line() for r in rows))
        failed = sum(1 for r in rows if r.failures)
        if failed:
            raise IpaError(f"{failed} of {len(rows)} devices failed their cycle")
        return
    total, rows = asyncio.run(_run(cards, config, args.duration, args.report))
    if as_json:
        devices = [r.to_json() for r in rows]
        print(json.dumps({"stats": _stats_json(total), "devices": devices}, indent=2))
    else:
        print("total: " + _stats_line(total))


def _provision_from_directory(cards: list[Any], directory: Path) -> None:
    """AddInitialEim from ``<directory>/<EID>.der`` on each card without an eIM (a card with
    no file stays unprovisioned: its cycles say so)."""
    for card in cards:
        with Es10Client.open(InProcessTransport(card)) as client:
            if es10_iot.get_eim_configuration_data(client):
                continue
            eid = client.get_eid()
            request = directory / f"{eid}.der"
            if request.is_file():
                es10_iot.add_initial_eim(client, request.read_bytes())
            else:
                print(
                    f"ipa: no {request.name} in {directory}: {eid} stays unprovisioned",
                    file=sys.stderr,
                )


@dataclass(frozen=True)
class _DeviceRow:
    """One device at the end of the run."""

    eid: str | None
    eim_id: str | None
    cycles: int
    failures: int
    last: PollOutcome | None

    @classmethod
    def of(cls, device: Device) -> _DeviceRow:
        eim = device.flow.eim
        return cls(
            device.eid, eim.eim_id if eim else None, device.cycles, device.failures, device.last
        )

    def to_json(self) -> dict[str, Any]:
        last = self.last.to_json() if self.last is not None else None
        return {
            "eidValue": self.eid,
            "eimId": self.eim_id,
            "cycles": self.cycles,
            "failures": self.failures,
            "last": last,
        }

    def line(self) -> str:
        if self.last is None:
            return f"{self.eid or '-'} no outcome (the cycle raised; see the log)"
        last = self.last
        delivered = sum(1 for p in last.packages if p.delivered)
        text = (
            f"{self.eid or '-'} {last.state.name.lower()} eIM {self.eim_id or '-'}: "
            f"{len(last.packages)} package(s) ({delivered} delivered), "
            f"{last.notifications} notification(s)"
        )
        return text + (f"; error: {last.error}" if last.error else "")


async def _once(cards: list[Any], config: FleetConfig) -> list[_DeviceRow]:
    async with Fleet(cards, config) as fleet:
        await fleet.poll_all()
        return [_DeviceRow.of(device) for device in fleet.devices]


async def _run(
    cards: list[Any], config: FleetConfig, duration: float | None, report: float
) -> tuple[FleetStats, list[_DeviceRow]]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop cleanly: cycles in flight finish
        loop.add_signal_handler(sig, stop.set)
    deadline = None if duration is None else loop.time() + duration
    try:
        async with Fleet(cards, config) as fleet:
            await fleet.start()
            print(f"{len(fleet.devices)} devices polling {config.eim_url}", file=sys.stderr)
            since = fleet.clock()
            while not stop.is_set():
                wait = report if deadline is None else min(report, deadline - loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, wait))
                now = fleet.clock()
                print(_stats_line(fleet.stats(since, now)), file=sys.stderr)
                since = now
                if deadline is not None and loop.time() >= deadline:
                    break
            await fleet.stop()
            return fleet.stats(), [_DeviceRow.of(device) for device in fleet.devices]
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _stats_json(stats: FleetStats) -> dict[str, Any]:
    return {
        "seconds": round(stats.seconds, 3),
        "cycles": stats.cycles,
        "failed": stats.failed,
        "packages": stats.packages,
        "cyclesPerS": round(stats.cycles_per_s, 1),
        "p50Ms": round(stats.p50_ms, 2),
        "p99Ms": round(stats.p99_ms, 2),
        "maxMs": round(stats.max_ms, 2),
    }


def _stats_line(stats: FleetStats) -> str:
    return (
        f"{stats.seconds:.1f} s: {stats.cycles} cycles ({stats.failed} failed), "
        f"{stats.packages} packages, {stats.cycles_per_s:.1f} cycles/s, "
        f"p50 {stats.p50_ms:.1f} ms, p99 {stats.p99_ms:.1f} ms"
    )
