"""A campaign over 200 emulated devices: waves, a stop on failures and a restart of the eIM in
the middle; every device ends in the state its verified result says.

The eIM serves HTTPS on 127.0.0.1 with its state in a directory; the devices are in-memory
emulated cards driven by the in-process fleet runner (ipa.fleet), one poll per device per
round. Four devices lack the profile the campaign enables, so their cards answer a signed
iccidOrAidNotFound; with ``maxFailures`` 3 the campaign stops when the fourth comes in.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from test_campaigns import ENABLE, ICCID, card_for

from euicc_protocol.iccid import iccid_to_ef
from euicc_servers.common.serve import RunningServer
from euicc_servers.eim import EimServer, build_eim, run_in_thread
from ipa.fleet import Fleet, FleetConfig
from ipa.pull import PullConfig

DEVICES = 200
BATCH = 40
FAILING = (150, 155, 160, 165)  # join positions of the cards without the profile


def start(state: Path, port: int = 0) -> tuple[EimServer, RunningServer]:
    server = build_eim("sgp26", state_dir=state, scheduler_interval=0.05)
    return server, run_in_thread(server.core, tls=server.tls, port=port)


def test_two_hundred_devices_in_waves_stop_on_failures_across_an_eim_restart(
    tmp_path: Path,
) -> None:
    server, running = start(tmp_path)
    cards = [card_for(server, {"fleet": "big"}, profile=i not in FAILING) for i in range(DEVICES)]
    token = server.core.auth.header
    body = {
        "name": "staged enable",
        "select": {"labels": {"fleet": "big"}},
        "order": ENABLE,
        "rollout": {"batchSize": BATCH, "maxFailures": 3},
    }
    campaign_id = server.core.campaigns.create(
        body["name"], body["select"], body["order"], body["rollout"]
    )["id"]
    url = running.base_url
    restarted = False

    def view() -> dict[str, Any]:
        with httpx.Client(verify=False, headers=token) as api:
            response = api.get(f"{url}/api/campaigns/{campaign_id}")
            assert response.status_code == 200, response.text
            return dict(response.json())

    async def drive() -> dict[str, Any]:
        nonlocal server, running, restarted
        config = FleetConfig(url, pull=PullConfig(max_packages=1), concurrency=8)
        async with Fleet(cards, config) as fleet:
            for _ in range(80):
                await fleet.poll_all()
                state = await asyncio.to_thread(view)
                if not restarted and state["wave"] >= 3:
                    # The eIM goes down in the middle of the roll-out and comes back on the
                    # same port from its state directory.
                    running.stop()
                    server.core.store.close()
                    server, running = start(tmp_path, running.port)
                    restarted = True
                    continue
                counts = state["counts"]
                if state["state"] in ("stopped", "done") and counts["sent"] == 0:
                    if counts["unverified"] == 0:
                        return state
                await asyncio.sleep(0.06)  # a scheduler step
        raise AssertionError("the campaign did not end")

    try:
        final = asyncio.run(drive())
    finally:
        running.stop()
    assert restarted
    assert final["state"] == "stopped" and "maxFailures 3" in final["reason"]
    counts = final["counts"]
    assert counts["failed"] == 4
    assert counts["done"] >= 150 - 2  # every device before the failures was enabled
    assert sum(counts.values()) == DEVICES
    waves: dict[int, int] = {}
    for device in final["devices"]:
        waves[device["wave"]] = waves.get(device["wave"], 0) + 1
    assert max(waves) == 5 and all(waves[w] == BATCH for w in range(1, 5))
    # Every device ends in the state its verified result says.
    by_eid = {d["eid"]: d for d in final["devices"]}
    again = build_eim("sgp26", tls=False, state_dir=tmp_path)
    for index, card in enumerate(cards):
        device = by_eid[card.eid]
        enabled = card.state.enabled_profile
        if device["status"] == "done":
            assert device["signatureVerified"] is True
            data = device["result"]["euiccPackageResultSigned"]["euiccPackageResultDataSigned"]
            assert data["euiccResult"] == [{"enableResult": 0}]
            assert enabled is not None and enabled.iccid == iccid_to_ef(ICCID)
            record = again.core.store.euicc(card.eid)
            assert record is not None and record.profiles == {ICCID: "enabled"}
        elif device["status"] == "failed":
            assert index in FAILING
            data = device["result"]["euiccPackageResultSigned"]["euiccPackageResultDataSigned"]
            assert data["euiccResult"] == [{"enableResult": 1}]  # iccidOrAidNotFound
            assert enabled is None
        else:  # never delivered: cancelled by the stop, or waiting for a wave that never came
            assert device["status"] in ("waiting", "cancelled"), device
            assert enabled is None
    # One order per device at most, whatever the restart did.
    for card in cards:
        assert len(again.core.store.orders(card.eid)) <= 1
