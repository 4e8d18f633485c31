"""Load on the reference eIM: many emulated devices at once over loopback HTTPS, every order
done and its result verified.

    python benchmarks/eim_load.py [--devices 200] [--seconds 30] [--binding asn1|json]

Set-up (not timed): the reference eIM (SGP.26 test PKI, state in SQLite in a temporary
directory, operator API authenticated) serving HTTPS on 127.0.0.1 in a background thread;
N in-memory cards, each with a TS.48 profile preloaded, registered with the eIM with its
certificates and given the eIM by AddInitialEim.

Run: every device has one PSMO queued (enable, then disable, of its profile, alternating)
and runs the IPAd's pull flow (``ipa.fleet``, one event loop, N cycles in flight, so N
devices talk to the eIM concurrently). When a device's result is in, the operator queues its
next PSMO. After ``--seconds`` the fleet stops (cycles in flight end first).

Checks (exit status 1 when one fails): no cycle failed or was refused; every order the eIM
holds is done with its eUICC signature verified, or still queued (the next one of a device
when the run stopped); none is sent, failed or cancelled.

Printed (one JSON object): devices, seconds, orders_done, orders_per_s, p50_ms and p99_ms
(a cycle: poll to acknowledgement), failed_cycles, unverified (orders done without a
verified signature), stranded (orders left sent or failed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from pull import make_card  # the same provisioned device as the pull benchmark

from euicc_protocol import saip
from euicc_servers.eim import EimServer, OrderState, build_eim, run_in_thread
from ipa.esipa import Binding, EsipaConfig
from ipa.fleet import Device, Fleet, FleetConfig
from ipa.fleet import run as run_fleet
from ipa.pull import PollOutcome, PullConfig

PACKAGE = Path(__file__).resolve().parent.parent / "profiles" / "ts48" / "TS48V1-A-UNIQUE.der"


class Operator:
    """Queues each device's next PSMO once its result is in (enable/disable, alternating)."""

    def __init__(self, eim: EimServer, iccid: str) -> None:
        self.eim = eim
        self.operations = ({"enable": {"iccid": iccid}}, {"disable": {"iccid": iccid}})
        self.steps: dict[str, int] = {}
        self.refused = 0

    def queue(self, eid: str) -> None:
        step = self.steps.get(eid, 0)
        self.steps[eid] = step + 1
        self.eim.core.queue(eid, {"type": "psmo", "operations": [self.operations[step % 2]]})

    def on_cycle(self, device: Device, outcome: PollOutcome | None) -> None:
        if outcome is None or device.eid is None:
            return
        self.refused += sum(p.refused for p in outcome.packages)
        if any(p.kind is not None and p.delivered for p in outcome.packages):
            self.queue(device.eid)


async def _drive(fleet: Fleet, operator: Operator, seconds: float) -> tuple[Any, float]:
    await fleet.open()
    for device in fleet.devices:
        assert device.eid is not None
        operator.queue(device.eid)
    await fleet.start()
    since = fleet.clock()
    await asyncio.sleep(seconds)
    until = fleet.clock()
    await fleet.stop()
    return fleet.stats(since, until), until - since


def run(devices: int, seconds: float, binding: str) -> dict[str, Any]:
    """Run the load and return the results (see the module docstring)."""
    package = PACKAGE.read_bytes()
    iccid = saip.read_package(package).iccid
    with tempfile.TemporaryDirectory(prefix="eim-load-") as state:
        eim = build_eim("sgp26", state_dir=state)
        with run_in_thread(eim.core, tls=eim.tls) as server:
            cards = [make_card(eim, package) for _ in range(devices)]
            operator = Operator(eim, iccid)
            config = FleetConfig(
                server.base_url,
                pull=PullConfig(
                    esipa=EsipaConfig(binding=Binding(binding), timeout=120.0), max_packages=1
                ),
                concurrency=devices,
                max_connections=min(devices, 64),
                pace=0.0,
            )
            fleet = Fleet(cards, config, on_cycle=operator.on_cycle)
            stats, window = run_fleet(_drive(fleet, operator, seconds))
        orders = eim.core.store.orders()
        done = [o for o in orders if o.state == OrderState.DONE]
        unverified = sum(1 for o in done if o.verified is not True)
        stranded = sum(1 for o in orders if o.state not in (OrderState.DONE, OrderState.QUEUED))
        eim.core.store.close()
    return {
        "devices": devices,
        "seconds": round(window, 2),
        "orders_done": len(done),
        "orders_per_s": round(len(done) / window, 1) if window else 0.0,
        "p50_ms": round(stats.p50_ms, 2),
        "p99_ms": round(stats.p99_ms, 2),
        "failed_cycles": stats.failed + operator.refused,
        "unverified": unverified,
        "stranded": stranded,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200, help="concurrent emulated devices")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the load runs")
    parser.add_argument("--binding", choices=[b.value for b in Binding], default="asn1")
    args = parser.parse_args()
    if args.devices < 1 or args.seconds <= 0:
        parser.error("--devices must be at least 1 and --seconds positive")
    logging.basicConfig(level=logging.ERROR)
    results = run(args.devices, args.seconds, args.binding)
    print(json.dumps(results))
    ok = results["orders_done"] > 0 and not (
        results["failed_cycles"] or results["unverified"] or results["stranded"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
