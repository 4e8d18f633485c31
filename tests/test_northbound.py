"""euicc_servers.eim.northbound: the eIM's event feed as Server-Sent Events (resumable with
Last-Event-ID) and as signed webhooks (retried, at-least-once, kept across restarts), over
real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from euicc_protocol.eid import make_eid
from euicc_servers.eim import EimServer, build_eim, run_in_thread
from euicc_servers.eim.northbound import SIGNATURE_HEADER, sign, verify_signature

ENABLE = {"type": "psmo", "operations": [{"enable": {"iccid": "89000000000000000001"}}]}


def wait_for(check: Callable[[], bool], what: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Receiver:
    """A webhook target on 127.0.0.1: answers ``statuses`` in turn (then 200), records what
    it got."""

    def __init__(self, statuses: list[int] | None = None, port: int = 0) -> None:
        self.statuses = list(statuses or [])
        self.received: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((dict(self.headers.items()), body))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_port}/hook"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for _, body in self.received:
            out.extend(json.loads(body)["events"])
        return out


@pytest.fixture
def eim() -> Iterator[tuple[EimServer, str]]:
    server = build_eim("sgp26", tls=False, scheduler_interval=0.02)
    server.core.webhooks.backoff = 0.05
    with run_in_thread(server.core) as running:
        yield server, running.base_url


def read_sse(
    url: str, headers: dict[str, str], count: int
) -> list[tuple[int, str, dict[str, Any]]]:
    """The first ``count`` events of an SSE stream: (id, type, JSON)."""
    events: list[tuple[int, str, dict[str, Any]]] = []
    current: dict[str, str] = {}
    with httpx.Client(timeout=10.0) as client, client.stream("GET", url, headers=headers) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line == "":
                if "id" in current:
                    events.append(
                        (int(current["id"]), current["event"], json.loads(current["data"]))
                    )
                    if len(events) == count:
                        return events
                current = {}
            elif not line.startswith(":") and ":" in line:
                name, _, value = line.partition(":")
                current[name] = value.strip()
    return events


def test_sse_streams_every_change_and_resumes_after_last_event_id(
    eim: tuple[EimServer, str],
) -> None:
    server, url = eim
    eids = [make_eid("89049032") for _ in range(3)]
    for eid in eids:
        server.core.register(eid, labels={"g": "1"})
    server.core.campaigns.create("c", "all", ENABLE, {"batchSize": 2})
    auth = server.core.auth.header
    events = read_sse(url + "/api/events?after=0", auth, 7)
    types = [t for _, t, _ in events]
    assert types[:3] == ["euicc.registered"] * 3
    assert types[3] == "campaign.created"
    assert types[4:] == ["order.queued", "order.queued", "campaign.wave"]
    ids = [i for i, _, _ in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert events[0][2]["data"]["eid"] == eids[0]
    # Reconnecting with Last-Event-ID gives exactly what came after it.
    again = read_sse(url + "/api/events", {**auth, "Last-Event-ID": str(ids[3])}, 3)
    assert [i for i, _, _ in again] == ids[4:7]
    # A new change reaches a live stream; the type filter keeps only what was asked for.
    got: list[Any] = []
    now = server.core.store.last_feed_id()
    live = f"{url}/api/events?types=euicc.&after={now}"
    reader = threading.Thread(target=lambda: got.extend(read_sse(live, auth, 1)))
    reader.start()
    time.sleep(0.3)
    server.core.update_registration(eids[2], labels={"g": "2"})
    reader.join(10)
    assert got and got[0][1] == "euicc.updated" and got[0][2]["data"]["changed"] == ["labels"]
    bad = httpx.get(url + "/api/events", headers={**auth, "Last-Event-ID": "x"})
    assert bad.status_code == 400


def test_webhooks_are_signed_retried_and_delivered_in_order(eim: tuple[EimServer, str]) -> None:
    server, url = eim
    receiver = Receiver([500, 503])
    try:
        auth = server.core.auth.header
        created = httpx.post(url + "/api/webhooks", json={"url": receiver.url}, headers=auth)
        assert created.status_code == 201
        secret = created.json()["secret"]
        assert "secret" not in httpx.get(url + "/api/webhooks", headers=auth).json()["webhooks"][0]
        eid = make_eid("89049032")
        server.core.register(eid)
        order = server.core.queue(eid, ENABLE)
        server.core.cancel(order.id)
        wait_for(lambda: len(receiver.received) >= 3, "the webhook deliveries")
        time.sleep(0.2)  # nothing more is sent once accepted
        assert len(receiver.received) == 3  # refused twice, then accepted: the same events
        bodies = [json.loads(body)["events"] for _, body in receiver.received]
        assert bodies[0] == bodies[1] == bodies[2]
        for headers, body in receiver.received:
            assert verify_signature(secret, body, headers[SIGNATURE_HEADER])
            assert not verify_signature("x" * 32, body, headers[SIGNATURE_HEADER])
        delivered = bodies[2]
        types = [e["type"] for e in delivered]
        assert types == ["euicc.registered", "order.queued", "order.cancelled"]
        assert delivered[2]["data"]["id"] == order.id
        hook = httpx.get(url + "/api/webhooks", headers=auth).json()["webhooks"][0]
        assert hook["failures"] == 0 and hook["deliveredUpTo"] == delivered[2]["id"]
    finally:
        receiver.close()


def test_webhook_outbox_survives_a_restart(tmp_path: Path) -> None:
    receiver = Receiver()
    port = receiver.http.server_port
    receiver.close()  # the target is down while the events happen
    server = build_eim("sgp26", tls=False, state_dir=tmp_path, scheduler_interval=0.02)
    server.core.webhooks.backoff = 0.05
    with run_in_thread(server.core):
        server.core.webhooks.add(f"http://127.0.0.1:{port}/hook", "s" * 20)
        eids = [make_eid("89049032") for _ in range(3)]
        for eid in eids:
            server.core.register(eid)
        wait_for(lambda: server.core.webhooks.list()[0].failures >= 2, "failed attempts")
    server.core.store.close()
    receiver = Receiver(port=port)
    try:
        again = build_eim("sgp26", tls=False, state_dir=tmp_path, scheduler_interval=0.02)
        with run_in_thread(again.core):
            wait_for(lambda: len(receiver.events()) >= 3, "delivery after the restart")
        got = receiver.events()
        assert [e["data"]["eid"] for e in got] == eids
        assert [e["id"] for e in got] == [1, 2, 3]
    finally:
        receiver.close()


def test_signature_format_and_expiry() -> None:
    body = b'{"events": []}'
    header = sign("k" * 16, body, int(time.time()))
    assert header.startswith("t=") and ",v1=" in header
    assert verify_signature("k" * 16, body, header)
    assert not verify_signature("k" * 16, body + b" ", header)
    old = sign("k" * 16, body, int(time.time()) - 3600)
    assert not verify_signature("k" * 16, body, old)
    assert not verify_signature("k" * 16, body, None)
    assert not verify_signature("k" * 16, body, "garbage")


def test_webhook_registration_is_validated(eim: tuple[EimServer, str]) -> None:
    server, url = eim
    auth = server.core.auth.header
    for body in ({"url": "ftp://x"}, {"url": "http://127.0.0.1/h", "secret": "short"}, {"u": 1}):
        assert httpx.post(url + "/api/webhooks", json=body, headers=auth).status_code == 400
    assert httpx.delete(url + "/api/webhooks/9", headers=auth).status_code == 404
