"""Device groups and campaigns in the reference eIM (euicc_servers.eim.campaigns and the
operator API): labels, selectors, waves over emulated cards, stops on failures, pause /
resume / abort, follow, restarts, and the per-device verified results."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_client import AsgiClient

from euicc_protocol import saip
from euicc_protocol.crypto import Curve
from euicc_protocol.eid import make_eid
from euicc_servers.common.serve import RunningServer
from euicc_servers.eim import EimServer, OrderState, build_eim, create_app, run_in_thread
from euicc_sim.card import Euicc
from ipa import es10_iot
from ipa.es10 import Es10Client
from ipa.fleet import Fleet, FleetConfig
from ipa.pull import PullConfig
from ipa.transport import InProcessTransport

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = (ROOT / "profiles" / "ts48" / "TS48V1-A-UNIQUE.der").read_bytes()
ICCID = saip.read_package(PACKAGE).iccid
ENABLE = {"type": "psmo", "operations": [{"enable": {"iccid": ICCID}}]}


def card_for(
    server: EimServer, labels: dict[str, str] | None = None, *, profile: bool = True
) -> Euicc:
    """An emulated card registered at ``server`` (with ``labels``) holding its eIM; without
    ``profile`` it lacks the TS.48 profile, so enabling it fails on the card."""
    card = Euicc.create(None, curves=(Curve.NIST_P256,))
    if profile:
        card.preload(PACKAGE)
    chain = card.credentials.chains[0]
    server.core.register(
        card.eid,
        euicc_certificate=chain.euicc_certificate,
        eum_certificate=chain.eum_certificate,
        labels=labels,
    )
    request = bytes(server.core.configuration(card.eid).add_initial_eim_request())
    with Es10Client.open(InProcessTransport(card)) as client:
        es10_iot.add_initial_eim(client, request)
    return card


def wait_for(check: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Api:
    """The operator API of a running eIM over HTTPS (the TLS certificate is the test CI's)."""

    def __init__(self, server: EimServer, running: RunningServer) -> None:
        self.client = httpx.Client(
            base_url=running.base_url + "/api", verify=False, headers=server.core.auth.header
        )

    def __call__(self, method: str, url: str, status: int = 200, **kw: Any) -> Any:
        response = self.client.request(method, url, **kw)
        assert response.status_code == status, response.text
        return response.json() if response.content else None


@pytest.fixture
def eim() -> Iterator[tuple[EimServer, RunningServer]]:
    server = build_eim("sgp26", scheduler_interval=0.02)
    with run_in_thread(server.core, tls=server.tls) as running:
        yield server, running


def run_cycles(cards: list[Euicc], url: str, until: Callable[[], bool], limit: int = 60) -> None:
    """Poll every card once per round until ``until()`` (at most ``limit`` rounds)."""

    async def go() -> None:
        config = FleetConfig(url, pull=PullConfig(max_packages=1), concurrency=4)
        async with Fleet(cards, config) as fleet:
            for _ in range(limit):
                await fleet.poll_all()
                if until():
                    return
                await asyncio.sleep(0.05)  # let the scheduler open the next wave
        raise AssertionError("the campaign did not get there")

    asyncio.run(go())


# -- labels and selectors (in-process app) ------------------------------------------------------


def test_labels_at_registration_and_patch_drive_label_selectors() -> None:
    server = build_eim("sgp26", tls=False)
    client = AsgiClient(create_app(server.core), "http://eim.test")
    auth = server.core.auth.header

    def api(method: str, url: str, status: int, **kw: Any) -> Any:
        response = client.request(method, "/api" + url, headers=auth, **kw)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    eids = [make_eid("89049032") for _ in range(3)]
    api("POST", "/euiccs", 201, json={"eid": eids[0], "labels": {"site": "berlin"}})
    api("POST", "/euiccs", 201, json={"eid": eids[1], "labels": {"site": "paris"}})
    api("POST", "/euiccs", 201, json={"eid": eids[2]})
    patched = api("PATCH", f"/euiccs/{eids[2]}", 200, json={"labels": {"site": "berlin", "x": "1"}})
    assert patched["euicc"]["labels"] == {"site": "berlin", "x": "1"}
    body = {"name": "berlin", "select": {"labels": {"site": "berlin"}}, "order": ENABLE}
    campaign = api("POST", "/campaigns", 201, json=body)
    assert sorted(d["eid"] for d in campaign["devices"]) == sorted([eids[0], eids[2]])
    assert campaign["counts"]["pending"] == 2 and campaign["state"] == "running"
    by_list = api("POST", "/campaigns", 201, json={**body, "select": {"eids": [eids[1]]}})
    assert [d["eid"] for d in by_list["devices"]] == [eids[1]]
    everyone = api("POST", "/campaigns", 201, json={**body, "select": "all"})
    assert everyone["total"] == 3
    # Each campaign queued one order per device, tagged with the campaign.
    orders = server.core.store.orders(eids[0])
    assert [o.campaign for o in orders] == [campaign["id"], everyone["id"]]
    assert len(api("GET", "/campaigns", 200)["campaigns"]) == 3


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"select": "some"}, "select must be"),
        ({"select": {"eids": ["8904903200000000000000000000000"]}}, "not registered"),
        ({"select": {"labels": {}}}, "at least one label"),
        ({"rollout": {"batchSize": 0}}, "batchSize"),
        ({"rollout": {"speed": 1}}, "unknown field"),
        ({"order": {"type": "psmo", "operations": []}}, ""),
        ({"extra": 1}, "unknown field"),
        ({"name": ""}, "name must be"),
    ],
)
def test_invalid_campaigns_are_400_with_the_reason(body: dict[str, Any], needle: str) -> None:
    server = build_eim("sgp26", tls=False)
    client = AsgiClient(create_app(server.core), "http://eim.test")
    base = {"name": "c", "select": "all", "order": ENABLE}
    response = client.post("/api/campaigns", json={**base, **body}, headers=server.core.auth.header)
    assert response.status_code == 400, response.text
    assert needle in response.json()["error"]


def test_campaigns_events_and_webhooks_need_the_operator_token() -> None:
    server = build_eim("sgp26", tls=False)
    client = AsgiClient(create_app(server.core), "http://eim.test")
    for method, url in [
        ("GET", "/api/campaigns"),
        ("POST", "/api/campaigns"),
        ("GET", "/api/campaigns/1"),
        ("POST", "/api/campaigns/1/abort"),
        ("GET", "/api/events"),
        ("GET", "/api/feed"),
        ("POST", "/api/webhooks"),
        ("GET", "/api/webhooks"),
    ]:
        response = client.request(method, url, headers={"Authorization": "Bearer wrong"})
        assert response.status_code == 401, (method, url)
    missing = client.get("/api/campaigns/99", headers=server.core.auth.header)
    assert missing.status_code == 404


# -- campaigns over emulated cards --------------------------------------------------------------


def test_staged_enable_runs_in_waves_and_ends_with_verified_results(
    eim: tuple[EimServer, RunningServer],
) -> None:
    server, running = eim
    cards = [card_for(server, {"fleet": "a"}) for _ in range(5)]
    api = Api(server, running)
    body = {
        "name": "enable",
        "select": {"labels": {"fleet": "a"}},
        "order": ENABLE,
        "rollout": {"batchSize": 2, "pauseSeconds": 0},
    }
    campaign = api("POST", "/campaigns", 201, json=body)
    cid = campaign["id"]
    assert [d["status"] for d in campaign["devices"]] == ["queued"] * 2 + ["waiting"] * 3
    run_cycles(cards, running.base_url, lambda: api("GET", f"/campaigns/{cid}")["state"] == "done")
    final = api("GET", f"/campaigns/{cid}")
    assert final["counts"] == {
        "pending": 0,
        "sent": 0,
        "unverified": 0,
        "done": 5,
        "failed": 0,
        "cancelled": 0,
    }
    assert sorted(d["wave"] for d in final["devices"]) == [1, 1, 2, 2, 3]
    devices = {d["eid"]: d for d in final["devices"]}
    for card in cards:
        device = devices[card.eid]
        assert device["signatureVerified"] is True
        results = device["result"]["euiccPackageResultSigned"]["euiccPackageResultDataSigned"]
        assert results["euiccResult"] == [{"enableResult": 0}]
        assert card.state.enabled_profile is not None  # the card agrees with the result
        # The eIM learnt the profile state from the verified result.
        assert api("GET", f"/euiccs/{card.eid}")["euicc"]["profiles"] == {ICCID: "enabled"}


def test_failures_stop_the_campaign_and_cancel_what_was_not_delivered(
    eim: tuple[EimServer, RunningServer],
) -> None:
    server, running = eim
    broken = card_for(server, profile=False)  # enable fails on this card: iccidOrAidNotFound
    cards = [broken] + [card_for(server) for _ in range(5)]
    api = Api(server, running)
    body = {
        "name": "stop",
        "select": {"eids": [c.eid for c in cards]},
        "order": ENABLE,
        "rollout": {"batchSize": 2, "maxFailures": 0},
    }
    cid = api("POST", "/campaigns", 201, json=body)["id"]
    # The first wave's good member takes its order first: polled together, the broken one
    # may report (and stop the campaign, cancelling the undelivered order) before it asks.
    run_cycles([cards[1]], running.base_url, lambda: True)
    run_cycles(
        cards, running.base_url, lambda: api("GET", f"/campaigns/{cid}")["state"] == "stopped"
    )
    final = api("GET", f"/campaigns/{cid}")
    assert "maxFailures 0" in final["reason"]
    statuses = {d["eid"]: d["status"] for d in final["devices"]}
    assert statuses[broken.eid] == "failed"
    result = next(d for d in final["devices"] if d["eid"] == broken.eid)["result"]
    data = result["euiccPackageResultSigned"]["euiccPackageResultDataSigned"]
    assert data["euiccResult"] == [{"enableResult": 1}]  # iccidOrAidNotFound, signed
    # No wave after the stop: the last four never got the order.
    assert statuses[cards[1].eid] == "done"
    assert [statuses[c.eid] for c in cards[2:]] == ["waiting"] * 4
    assert final["counts"]["failed"] == 1
    for card in cards[2:]:
        assert card.state.enabled_profile is None
        assert all(o.state != OrderState.QUEUED for o in server.core.store.orders(card.eid))


def test_pause_resume_and_abort_over_the_api(eim: tuple[EimServer, RunningServer]) -> None:
    server, running = eim
    cards = [card_for(server, {"g": "1"}) for _ in range(3)]
    api = Api(server, running)
    body = {"name": "p", "select": "all", "order": ENABLE, "rollout": {"batchSize": 1}}
    cid = api("POST", "/campaigns", 201, json=body)["id"]
    assert api("POST", f"/campaigns/{cid}/pause")["state"] == "paused"
    api("POST", f"/campaigns/{cid}/pause", 409)
    run_cycles(cards, running.base_url, lambda: True)  # the first wave's order still goes out
    time.sleep(0.1)
    paused = api("GET", f"/campaigns/{cid}")
    assert paused["state"] == "paused" and paused["counts"]["done"] == 1
    assert paused["counts"]["pending"] == 2 and paused["wave"] == 1
    resumed = api("POST", f"/campaigns/{cid}/resume")
    assert resumed["state"] == "running"
    wait_for(lambda: api("GET", f"/campaigns/{cid}")["wave"] == 2, "the second wave")
    aborted = api("POST", f"/campaigns/{cid}/abort")
    assert aborted["state"] == "stopped" and aborted["reason"] == "aborted by the operator"
    assert aborted["counts"]["cancelled"] == 1 and aborted["counts"]["pending"] == 1
    api("POST", f"/campaigns/{cid}/resume", 409)
    api("POST", f"/campaigns/{cid}/abort", 409)


def test_following_campaign_takes_devices_registered_later(
    eim: tuple[EimServer, RunningServer],
) -> None:
    server, running = eim
    first = card_for(server, {"model": "m1"})
    card_for(server, {"model": "m2"})
    api = Api(server, running)
    body = {"name": "f", "select": {"labels": {"model": "m1"}}, "order": ENABLE, "follow": True}
    cid = api("POST", "/campaigns", 201, json=body)["id"]
    run_cycles(
        [first], running.base_url, lambda: api("GET", f"/campaigns/{cid}")["state"] == "done"
    )
    late = card_for(server, {"model": "m1"})
    wait_for(lambda: api("GET", f"/campaigns/{cid}")["total"] == 2, "the late device to join")
    run_cycles([late], running.base_url, lambda: api("GET", f"/campaigns/{cid}")["state"] == "done")
    final = api("GET", f"/campaigns/{cid}")
    assert final["counts"]["done"] == 2 and late.state.enabled_profile is not None
    # A stopped campaign takes nobody more.
    api("POST", f"/campaigns/{cid}/abort")
    card_for(server, {"model": "m1"})
    time.sleep(0.2)
    assert api("GET", f"/campaigns/{cid}")["total"] == 2


def test_a_restart_neither_loses_nor_repeats_an_operation(tmp_path: Path) -> None:
    server = build_eim("sgp26", tls=False, state_dir=tmp_path)
    eids = [make_eid("89049032") for _ in range(5)]  # members join in registration order
    for eid in eids:
        server.core.register(eid, labels={"k": "v"})
    view = server.core.campaigns.create("r", {"labels": {"k": "v"}}, ENABLE, {"batchSize": 2})
    for _ in range(5):
        server.core.campaigns.tick()
    server.core.store.close()
    again = build_eim("sgp26", tls=False, state_dir=tmp_path)
    for _ in range(5):
        again.core.campaigns.tick()
    after = again.core.campaigns.get(view["id"])
    assert after["wave"] == 1 and after["counts"]["pending"] == 5
    assert [len(again.core.store.orders(eid)) for eid in eids] == [1, 1, 0, 0, 0]
    # The first wave's orders are settled by hand: the second wave follows, once.
    for eid in eids[:2]:
        order = again.core.store.orders(eid)[0]
        again.core.store.update_order(order.id, state=OrderState.FAILED, error="test")
    for _ in range(3):
        again.core.campaigns.tick()
    assert [len(again.core.store.orders(eid)) for eid in eids] == [1, 1, 1, 1, 0]


# -- the command line and the Python client -----------------------------------------------------


def test_cli_creates_watches_and_aborts_a_campaign_on_a_running_eim(
    eim: tuple[EimServer, RunningServer], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from euicc_cli.sim_command import main

    server, running = eim
    cards = [card_for(server, {"site": "x"}) for _ in range(2)]
    card_for(server, {"site": "y"})
    order = tmp_path / "order.json"
    order.write_text(json.dumps(ENABLE))
    token = str(server.core.admin_token)
    connection = ["--url", running.base_url, "--token", token, "--pki", "sgp26"]
    create = ["eim", "campaign", "create", *connection, "--name", "cli", "--label", "site=x"]
    code = main([*create, "--order", f"@{order}", "--batch-size", "1", "--json"])
    created = json.loads(capsys.readouterr().out)
    assert code == 0 and created["ok"], created
    cid = created["data"]["id"]
    assert created["data"]["total"] == 2 and created["data"]["rollout"]["batchSize"] == 1
    run_cycles(cards, running.base_url, lambda: server.core.campaigns.get(cid)["state"] == "done")
    assert main(["eim", "campaign", "watch", str(cid), *connection]) == 0
    text = capsys.readouterr().out
    assert f"campaign {cid} 'cli': done" in text and "done 2" in text
    assert main(["eim", "campaign", "abort", str(cid), *connection]) == 1  # done: 409
    assert "the eIM refused" in capsys.readouterr().err
    bad = main(
        ["eim", "campaign", "show", "1", "--url", running.base_url, "--token", "x", "--insecure"]
    )
    assert bad == 1 and "unauthorised" in capsys.readouterr().err
    assert main(["eim", "campaign", "list", *connection, "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)["data"]
    assert [c["id"] for c in listing] == [cid]


def test_python_client_labels_and_runs_campaigns(eim: tuple[EimServer, RunningServer]) -> None:
    from euicc_servers.eim.client import EimApi, EimApiError

    server, running = eim
    card = card_for(server)
    with EimApi(running.base_url, server.core.admin_token, verify=False) as api:
        assert api.label(card.eid, {"ring": "canary"})["labels"] == {"ring": "canary"}
        view = api.create_campaign("py", {"labels": {"ring": "canary"}}, ENABLE, {"batchSize": 5})
        assert view["total"] == 1 and api.campaigns()[0]["id"] == view["id"]
        assert api.pause(view["id"])["state"] == "paused"
        assert api.resume(view["id"])["state"] == "running"
        assert api.abort(view["id"])["state"] == "stopped"
        types = [e["type"] for e in api.feed()]
        assert types[-2:] == ["campaign.stopped", "order.cancelled"]
        with pytest.raises(EimApiError) as refused:
            api.create_campaign("bad", "nobody", ENABLE)
        assert refused.value.status == 400
