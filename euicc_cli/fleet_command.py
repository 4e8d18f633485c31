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
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from euicc_cli.exits import CommandError, UsageError
from euicc_cli.options import url
from euicc_cli.output import Output
from euicc_cli.pull_options import add_pull_options, pull_config
from ipa import es10_iot
from ipa.es10 import Es10Client
from ipa.fleet import Device, Fleet, FleetConfig, FleetStats, run
from ipa.pull import PollOutcome
from ipa.transport import InProcessTransport

__all__ = ["add_fleet_arguments", "cmd_fleet"]

log = logging.getLogger(__name__)


def add_fleet_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of ``ipa fleet`` to its (sub-command) parser ``p``."""
    p.add_argument(
        "cards", nargs="*", metavar="DIR", help="emulated card directories (not with --locust)"
    )
    p.add_argument(
        "--eim-url", required=True, metavar="URL", type=url, help="the eIM all devices poll"
    )
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
        "--max-connections", type=int, default=8, help="HTTP connections to the eIM at most"
    )
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument(
        "--report", type=float, default=10.0, metavar="S", help="seconds between stats lines"
    )
    p.add_argument(
        "--locust",
        action="store_true",
        help="run Locust with in-memory devices instead (euicc_cli.locust_users); Locust's own "
        "arguments follow '--' (ipa fleet --eim-url URL --locust -- --headless -u 100 ...)",
    )


def cmd_fleet(args: argparse.Namespace, out: Output) -> None:
    """Run the fleet the command line describes (see the module doc).

    With ``--json``: ``--once`` prints one envelope with every device; a run until stopped
    prints JSON Lines (a ``stats`` event per report, the envelope with the totals last).

    Raises:
        CommandError: with ``--once``, when any device's cycle failed.
        UsageError: an unusable option value.
    """
    if args.locust:
        _run_locust(args, out)
        return
    if not args.cards:
        raise UsageError("give the card directories (or --locust)")
    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration must be positive")
    if args.report <= 0:
        raise UsageError("--report must be positive")
    from euicc_sim.card import Euicc  # loaded only when a fleet runs

    directories = [Path(d).resolve() for d in args.cards]
    if len(set(directories)) != len(directories):
        raise UsageError("a card directory is named twice (one card, one device)")
    cards: list[Any] = []
    try:
        for directory in directories:
            cards.append(Euicc.open(directory, wait=args.wait))
        _run_fleet(args, cards, out)
    finally:
        for card in cards:
            card.close()


def _run_fleet(args: argparse.Namespace, cards: list[Any], out: Output) -> None:
    initial_eim = args.initial_eim
    if initial_eim is not None and Path(initial_eim).is_dir():
        _provision_from_directory(cards, Path(initial_eim), out)
        initial_eim = None
    config = FleetConfig(
        args.eim_url,
        pull=pull_config(args, initial_eim=initial_eim),
        concurrency=args.concurrency,
        max_connections=args.max_connections,
        pace=args.pace,
        state_root=args.state,
    )
    if args.once:
        rows = run(_once(cards, config))
        data = {"devices": [r.to_json() for r in rows]}
        failed = sum(1 for r in rows if r.failures)
        if failed:
            for row in rows:
                out.text(row.line())
            raise CommandError(f"{failed} of {len(rows)} devices failed their cycle", data=data)
        out.success(data, text=[r.line() for r in rows])
        return
    total, rows = run(_run(cards, config, args.duration, args.report, out))
    devices = [r.to_json() for r in rows]
    out.success(
        {"stats": _stats_json(total), "devices": devices},
        message=_stats_line(total),
        text="total: " + _stats_line(total),
    )


def _run_locust(args: argparse.Namespace, out: Output) -> None:
    """Run Locust on :mod:`euicc_cli.locust_users` in a child process (Locust monkey-patches
    the standard library with gevent on import; this process stays as it is)."""
    import importlib.util
    import os
    import subprocess
    import sys

    rest = [a for a in args.cards if a != "--"]  # after '--': Locust's arguments
    if rest and rest[0][:1] != "-":
        raise UsageError("--locust makes its own in-memory devices: give no card directories")
    if importlib.util.find_spec("locust") is None:
        raise UsageError("--locust needs Locust: pip install 'euicc-sim[load]'")
    spec = importlib.util.find_spec("euicc_cli.locust_users")
    assert spec is not None and spec.origin is not None
    command = [sys.executable, "-m", "locust", "-f", spec.origin, "--host", args.eim_url]
    command += ["--esipa-binding", args.binding]
    if args.insecure:
        command.append("--eim-insecure")
    elif args.ca_cert:
        command += ["--eim-ca", ",".join(args.ca_cert)]
    command += rest
    env = dict(os.environ)
    # The child must import this very package (a checkout as well as an installed one).
    root = str(Path(spec.origin).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    log.info("running %s", " ".join(command))
    code = subprocess.call(command, env=env)
    if code != 0:
        raise CommandError(f"locust exited with status {code}", data={"locustExit": code})
    out.success({"locustExit": 0}, text="locust finished")


def _provision_from_directory(cards: list[Any], directory: Path, out: Output) -> None:
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
                out.note(f"no {request.name} in {directory}: {eid} stays unprovisioned")


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
    cards: list[Any], config: FleetConfig, duration: float | None, report: float, out: Output
) -> tuple[FleetStats, list[_DeviceRow]]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop cleanly: cycles in flight finish
        loop.add_signal_handler(sig, stop.set)
    deadline = None if duration is None else loop.time() + duration
    try:
        async with Fleet(cards, config) as fleet:
            await fleet.start()
            started = f"{len(fleet.devices)} devices polling {config.eim_url}"
            _progress(out, "started", {"devices": len(fleet.devices)}, started)
            since = fleet.clock()
            while not stop.is_set():
                wait = report if deadline is None else min(report, deadline - loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, wait))
                now = fleet.clock()
                stats = fleet.stats(since, now)
                _progress(out, "stats", _stats_json(stats), _stats_line(stats))
                since = now
                if deadline is not None and loop.time() >= deadline:
                    break
            await fleet.stop()
            return fleet.stats(), [_DeviceRow.of(device) for device in fleet.devices]
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _progress(out: Output, event: str, data: dict[str, Any], line: str) -> None:
    """A progress report: a JSON Lines event on stdout, or a line for people on stderr."""
    if out.json_mode:
        out.event(event, data)
    else:
        out.note(line)


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
