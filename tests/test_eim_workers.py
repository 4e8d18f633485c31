"""Several eIM worker processes on one socket and one state directory
(euicc_servers.eim.workers, ``euicc-sim eim --workers N``): emulated devices cycling
concurrently against two workers over real HTTP on 127.0.0.1; every result is stored once,
verified, and acknowledged; every package is signed once."""

from __future__ import annotations

import argparse
import asyncio
import pickle
import time
from pathlib import Path

import httpx
import pytest
from test_fleet import ICCID, provisioned_card

from euicc_servers.eim import OrderState, build_eim
from euicc_servers.eim import serve as eim_serve
from euicc_servers.eim.workers import WorkerPool
from ipa.esipa import Binding, EsipaConfig
from ipa.fleet import Fleet, FleetConfig
from ipa.pull import PullConfig

DEVICES, ROUNDS = 12, 3


def _arguments(state: Path, workers: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    eim_serve.add_eim_command(parser.add_subparsers())
    words = ["eim", "--pki", "sgp26", "--state", str(state), "--http", "--port", "0"]
    return parser.parse_args([*words, "--no-auth", "--workers", str(workers)])


def _wait_until_served(url: str, deadline: float) -> None:
    while True:
        try:
            if httpx.get(url + "/api/eim", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the workers did not start")
        time.sleep(0.2)


async def _rounds(fleet: Fleet) -> int:
    async with fleet:
        for _ in range(ROUNDS):
            outcomes = await fleet.poll_all()
            assert all(o is not None for o in outcomes)
    return fleet.stats().packages


def test_two_workers_under_concurrent_devices_lose_and_duplicate_no_results(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    eim = build_eim("sgp26", state_dir=state, tls=False)
    cards = [provisioned_card(eim) for _ in range(DEVICES)]
    operations = ({"enable": {"iccid": ICCID}}, {"disable": {"iccid": ICCID}})
    for card in cards:
        for step in range(ROUNDS):
            eim.core.queue(card.eid, {"type": "psmo", "operations": [operations[step % 2]]})
    eim.core.store.close()

    with WorkerPool(_arguments(state, 2), 2) as pool:
        url = f"http://127.0.0.1:{pool.port}"
        _wait_until_served(url, time.monotonic() + 60)
        config = FleetConfig(
            url,
            pull=PullConfig(esipa=EsipaConfig(binding=Binding.ASN1, timeout=30), max_packages=1),
            concurrency=8,
            max_connections=8,
            pace=0.0,
        )
        delivered = asyncio.run(_rounds(Fleet(cards, config)))
        assert all(p.is_alive() for p in pool.processes)  # both served to the end

    after = build_eim("sgp26", state_dir=state, tls=False).core.store
    orders = after.orders()
    assert len(orders) == DEVICES * ROUNDS
    assert all(o.state == OrderState.DONE and o.verified for o in orders)
    assert delivered == len(orders)  # every result the devices saw taken is one done order
    for order in orders:  # stored once (a repeat is acknowledged again, not stored again)
        assert len(after.events(order_id=order.id)) == 1
    for card in cards:  # each package signed once: counters 1..ROUNDS, in delivery order
        counters = [o.counter_value for o in after.orders(card.eid)]
        assert counters == list(range(1, ROUNDS + 1))
        assert after.pending_acks(card.eid) == []


def test_workers_need_a_state_directory(tmp_path: Path) -> None:
    args = _arguments(tmp_path, 2)
    args.state = None
    with pytest.raises(SystemExit, match="--workers needs --state"):
        args.run(args)


def test_a_command_wrapping_run_in_a_closure_still_starts_workers(tmp_path: Path) -> None:
    # euicc-sim wraps args.run in a local function: only the options go to the workers.
    args = _arguments(tmp_path, 2)
    args.run = lambda parsed: 0
    pool = WorkerPool(args, 2)
    try:
        assert pickle.loads(pickle.dumps(pool.args)).workers == 2
        assert not hasattr(pool.args, "run") and pool.args.port == pool.port > 0
    finally:
        pool.stop()
