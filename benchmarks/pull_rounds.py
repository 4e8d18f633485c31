"""A fixed amount of PSMO cycles, for counting instructions rather than timing.

    python benchmarks/pull_rounds.py [--json] [--devices N] [--rounds R]
        [--eim-state memory|disk] [--backlog K]

``benchmarks/pull.py`` measures over a time window, so the work it does depends on the
machine's speed and load. This runs a fixed workload: N in-memory devices (made as for
``pull.py --transport direct``: the eIM core called in this process, no HTTP), one warm-up
round, then R rounds in which every device runs one PSMO cycle (GetEimPackage,
LoadEuiccPackage on its card, ProvideEimPackageResult, the result removed), each checked.
Under an instruction counter the difference between two runs with different R, divided by
N times the difference of R, is the instructions of one cycle, set-up cancelled out:

    valgrind --tool=cachegrind --cache-sim=no python benchmarks/pull_rounds.py --rounds 0
    valgrind --tool=cachegrind --cache-sim=no python benchmarks/pull_rounds.py --rounds 10
    # (I refs of the second - I refs of the first) / (20 * 10)

That figure covers the devices and the eIM core together. ``--eim-state disk`` keeps the
eIM's state in a temporary directory (a real SQLite file in WAL mode, its acknowledging
commits fsynced) instead of in memory; ``--backlog K`` queues K more orders per device than
the rounds use, so the database holds as many orders as a long ``pull.py`` run leaves
(system calls are not instructions: count them with ``strace -c -f`` over two runs alike).
Printed (``--json``: one object): ``devices``, ``rounds``, ``cycles``, and
``cpu_ms_per_cycle`` (this process's CPU per cycle in the rounds, the eIM core's left out, as
``pull.py --transport direct`` counts it; ``eim_cpu_ms_per_cycle`` apart).
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pull  # noqa: E402 - the benchmark next to this one
import report  # noqa: E402

from euicc_protocol import saip  # noqa: E402
from euicc_servers.eim import build_eim  # noqa: E402
from ipa.esipa import Binding, EsipaConfig  # noqa: E402
from ipa.fleet import FleetConfig, HttpMode  # noqa: E402
from ipa.fleet import run as run_fleet  # noqa: E402
from ipa.pull import PullConfig  # noqa: E402


async def _rounds(
    fleet: pull.DirectFleet, direct: pull.DirectEim, rounds: int
) -> tuple[float, float]:
    """Open the fleet, one warm-up round, then ``rounds`` checked rounds: the CPU seconds of
    this process and of the eIM core in them."""
    await fleet.open()
    try:
        await fleet.poll_all()
        cpu, eim = time.process_time(), direct.cpu
        for _ in range(rounds):
            outcomes = await fleet.poll_all()
            for outcome in outcomes:
                if outcome is None or outcome.error is not None or len(outcome.packages) != 1:
                    raise SystemExit(f"a cycle did not run its PSMO: {outcome!r}")
        return time.process_time() - cpu, direct.cpu - eim
    finally:
        await fleet.stop()


def run(devices: int, rounds: int, *, disk: bool = False, backlog: int = 0) -> dict[str, object]:
    """Make the devices, queue a PSMO per device and round (and ``backlog`` more), and run
    the rounds; ``disk``: the eIM's state in a temporary directory."""
    with ExitStack() as stack:
        state_dir = None
        if disk:
            state_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="eim-rounds-"))
        return _run(devices, rounds, state_dir, backlog)


def _run(devices: int, rounds: int, state_dir: str | None, backlog: int) -> dict[str, object]:
    package = pull.PACKAGE.read_bytes()
    iccid = saip.read_package(package).iccid
    eim = build_eim("sgp26", state_dir=state_dir)
    eim.core.eim_fqdn = "eim.bench.test"
    direct = pull.DirectEim(eim)
    cards = [pull.make_card(eim, package) for _ in range(devices)]
    operator = pull.Operator(eim, iccid, depth=rounds + 1 + backlog, low=0)
    for card in cards:
        operator.fill(card.eid)
    config = FleetConfig(
        "https://eim.bench.test",
        pull=PullConfig(esipa=EsipaConfig(binding=Binding.ASN1, timeout=60.0), max_packages=1),
        concurrency=4,
        max_connections=4,
        pace=0.0,
        http=HttpMode.POOL,
    )
    fleet = pull.DirectFleet(cards, config, on_cycle=operator.on_cycle, direct=direct)
    try:
        cpu, eim_cpu = run_fleet(_rounds(fleet, direct, rounds))
    finally:
        eim.core.store.close()
    cycles = devices * rounds
    per = 1000 / max(cycles, 1)
    return {
        "devices": devices,
        "rounds": rounds,
        "cycles": cycles,
        "cpu_ms_per_cycle": round((cpu - eim_cpu) * per, 3),
        "eim_cpu_ms_per_cycle": round(eim_cpu * per, 3),
    }


def main() -> int:
    parser = report.parser(__doc__)
    parser.add_argument("--devices", type=int, default=20, help="emulated devices (N)")
    parser.add_argument("--rounds", type=int, default=10, help="cycles per device (R)")
    parser.add_argument(
        "--eim-state",
        choices=("memory", "disk"),
        default="memory",
        help="the eIM's state in memory, or in a temporary directory (SQLite file, WAL)",
    )
    parser.add_argument(
        "--backlog", type=int, default=0, help="orders queued per device beyond the rounds (K)"
    )
    args = parser.parse_args()
    if args.devices < 1 or args.rounds < 0 or args.backlog < 0:
        parser.error("--devices must be at least 1, --rounds and --backlog at least 0")
    logging.basicConfig(level=logging.ERROR)
    results = run(args.devices, args.rounds, disk=args.eim_state == "disk", backlog=args.backlog)
    report.print_figures(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
