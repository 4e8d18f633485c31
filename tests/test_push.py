"""Push and wake-up delivery: the eIM sends ESipa TransferEimPackage (ASN.1 binding) to an
IPAd that listens (ipa.listen) over HTTPS on 127.0.0.1, or asks it to poll now."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_campaigns import ENABLE, ICCID, card_for

from euicc_protocol import schema, tlv
from euicc_servers.common.pkisets import load_pki_sets
from euicc_servers.common.serve import RunningServer
from euicc_servers.eim import EimServer, OrderState, build_eim, run_in_thread
from euicc_servers.eim.push import DeliveryError, parse_delivery
from euicc_servers.eim.serve import issue_tls_credential
from euicc_sim.card import Euicc
from ipa import es10_iot
from ipa.es10 import Es10Client
from ipa.listen import ASN1_CONTENT_TYPE, ListenServer, PushHandler
from ipa.transport import InProcessTransport

DISABLE = {"type": "psmo", "operations": [{"disable": {"iccid": ICCID}}]}


def wait_for(check: Callable[[], bool], what: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def device_tls() -> ssl.SSLContext:
    """A server context for a listening IPAd, its certificate under the SGP.26 CI (which the
    eIM built from that PKI trusts for pushes)."""
    credential = issue_tls_credential(load_pki_sets("sgp26")[0], "127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "c.pem", Path(tmp) / "k.pem"
        cert.write_bytes(credential.cert_pem)
        key.write_bytes(credential.key_pem())
        context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def eim() -> Iterator[tuple[EimServer, RunningServer]]:
    server = build_eim("sgp26", scheduler_interval=0.02)
    with run_in_thread(server.core, tls=server.tls) as running:
        yield server, running


def test_pushed_package_runs_on_the_card_and_the_verified_result_completes_the_order(
    eim: tuple[EimServer, RunningServer],
) -> None:
    server, _ = eim
    card = card_for(server)
    client = Es10Client.open(InProcessTransport(card))
    handler = PushHandler(client, eim_id=server.core.settings.eim_id)
    with ListenServer({card.eid: handler}, tls=device_tls()) as listener:
        delivery = {"mode": "push", "url": listener.url_for(card.eid)}
        server.core.update_registration(card.eid, delivery=delivery)
        order = server.core.queue(card.eid, ENABLE)
        wait_for(lambda: server.core.store.require_order(order.id).state == OrderState.DONE, "push")
        done = server.core.store.require_order(order.id)
        assert done.verified is True and card.state.enabled_profile is not None
        # The acknowledgement was pushed too: the card keeps no result for the eIM.
        wait_for(lambda: not es10_iot.retrieve_euicc_package_results(client), "the ack")
        second = server.core.queue(card.eid, DISABLE)
        wait_for(lambda: server.core.store.require_order(second.id).state == OrderState.DONE, "2nd")
        assert card.state.enabled_profile is None
        types = [e.type for e in server.core.store.feed()]
        assert "euicc.profiles" in types
    client.close()


def test_listener_answers_per_the_asn1_binding() -> None:
    card = Euicc.create(None)
    client = Es10Client.open(InProcessTransport(card))
    with ListenServer({card.eid: PushHandler(client)}) as listener:
        url = listener.url_for(card.eid) + "/gsma/rsp2/asn1"
        headers = {"Content-Type": ASN1_CONTENT_TYPE}
        wrong = httpx.post(url, content=b"\xbf\x4e\x00", headers={"Content-Type": "text/plain"})
        assert wrong.status_code == 415
        garbage = httpx.post(url, content=b"\x01\x02", headers=headers)
        assert garbage.content == bytes.fromhex("BF4E03020101")  # invalidPackageFormat
        ack = tlv.encode_tlv(b"\xbf\x4e", schema.encode("EimAcknowledgements", [5]))
        received = httpx.post(url, content=ack, headers=headers)
        assert received.content == bytes.fromhex("BF4E020500")  # eimPackageReceived
        trigger = tlv.encode_tlv(b"\xbf\x4e", bytes.fromhex("BF5400"))
        refused = httpx.post(url, content=trigger, headers=headers)
        assert refused.content == bytes.fromhex("BF4E03020102")  # unknownPackage: poll for it
        assert httpx.post(listener.base_url + "/eid/00/gsma/rsp2/asn1").status_code == 404
        assert httpx.post(listener.url_for(card.eid) + "/wake-up").status_code == 404
    client.close()


def test_wakeup_mode_asks_the_device_to_poll_once_per_waiting_order(
    eim: tuple[EimServer, RunningServer],
) -> None:
    server, _ = eim
    card = card_for(server)
    client = Es10Client.open(InProcessTransport(card))
    woken: list[float] = []
    handler = PushHandler(client, on_wakeup=lambda: woken.append(time.monotonic()))
    with ListenServer({card.eid: handler}) as listener:
        server.core.update_registration(
            card.eid, delivery={"mode": "wakeup", "url": listener.url_for(card.eid)}
        )
        order = server.core.queue(card.eid, ENABLE)
        wait_for(lambda: len(woken) == 1, "the wake-up")
        time.sleep(0.2)
        assert len(woken) == 1  # not again while the order waits (REWAKE)
        assert server.core.store.require_order(order.id).state == OrderState.QUEUED
        types = [e.type for e in server.core.store.feed()]
        assert "euicc.woken" in types
    client.close()


@pytest.mark.parametrize(
    "value",
    [
        {"mode": "push"},
        {"mode": "fax"},
        {"mode": "push", "url": "ftp://x"},
        {"mode": "poll", "x": 1},
    ],
)
def test_invalid_delivery_settings_are_refused(value: Any) -> None:
    with pytest.raises(DeliveryError):
        parse_delivery(value)
    assert parse_delivery({"mode": "poll"}) == {"mode": "poll"}


def test_ipa_listen_command_serves_pushes_for_a_card_directory(tmp_path: Path) -> None:
    import json
    import os
    import signal
    import subprocess
    import sys

    from euicc_cli.sim_command import main as sim_main

    card_dir = tmp_path / "card"
    assert sim_main(["init", str(card_dir), "--curve", "nist"]) == 0
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    command = [sys.executable, "-m", "ipa", "--card", str(card_dir), "listen", "--port", "0"]
    process = subprocess.Popen(
        [*command, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        assert first["event"] == "listening"
        url = first["deviceUrl"] + "/gsma/rsp2/asn1"
        ack = tlv.encode_tlv(b"\xbf\x4e", schema.encode("EimAcknowledgements", [1]))
        answer = httpx.post(url, content=ack, headers={"Content-Type": ASN1_CONTENT_TYPE})
        assert answer.content == bytes.fromhex("BF4E020500")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(20)
    assert process.returncode == 0


def test_fleet_runs_devices_in_each_delivery_mode(eim: tuple[EimServer, RunningServer]) -> None:
    from dataclasses import replace

    from ipa.fleet import FleetConfig, FleetRunner
    from ipa.fleet_listen import DeliveryMode, FleetListener
    from ipa.pull import PullConfig

    server, running = eim
    cards = [card_for(server, {"mode-test": "yes"}) for _ in range(6)]
    modes = {
        cards[0].eid: DeliveryMode.POLL,
        cards[1].eid: DeliveryMode.POLL,
        cards[2].eid: DeliveryMode.PUSH,
        cards[3].eid: DeliveryMode.PUSH,
        cards[4].eid: DeliveryMode.WAKEUP,
        cards[5].eid: DeliveryMode.WAKEUP,
    }
    pull = PullConfig(max_packages=1)
    polled = FleetConfig(running.base_url, pull=pull, pace=0.05)
    # Push and wake-up devices poll once at start, then only every hour: what reaches them
    # in this test is pushed, or follows a wake-up.
    quiet = FleetConfig(
        running.base_url, pull=replace(pull, backoff=replace(pull.backoff, interval=3600.0))
    )
    with FleetRunner(cards[:2], polled) as pollers, FleetRunner(cards[2:], quiet) as others:
        with FleetListener(others.fleet, others.loop, modes) as listener:
            for card in cards:
                server.core.update_registration(card.eid, delivery=listener.delivery_for(card.eid))
            others.start()
            wait_for(lambda: all(d.cycles >= 1 for d in others.devices), "the first cycles")
            pollers.start()
            campaign = server.core.campaigns.create(
                "modes", {"labels": {"mode-test": "yes"}}, ENABLE
            )
            wait_for(
                lambda: server.core.campaigns.get(campaign["id"])["state"] == "done", "the campaign"
            )
            cycles = {d.eid: d.cycles for d in others.devices}
    assert all(card.state.enabled_profile is not None for card in cards)
    view = server.core.campaigns.get(campaign["id"])
    assert view["counts"]["done"] == 6
    assert [cycles[c.eid] for c in cards[2:4]] == [1, 1]  # pushed: never polled for it
    assert all(cycles[c.eid] >= 2 for c in cards[4:])  # woken: polled once more
    woken = {e.data["eid"] for e in server.core.store.feed() if e.type == "euicc.woken"}
    assert woken == {cards[4].eid, cards[5].eid}
