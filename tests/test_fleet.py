"""ipa.fleet: many (card, IPAd) pairs in one event loop against the reference eIM.

The eIM (SGP.26 test PKI) serves HTTPS on 127.0.0.1 in a thread; each card is an in-memory
emulated card with the TS.48 profile preloaded, registered at the eIM with its certificates
and given the eIM by AddInitialEim. TLS is anchored only by the eIM configuration on the
cards (trustedCertificateTls), as each IPAd would anchor it. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from benchmark_support import run_benchmark as _benchmark
from cryptography.hazmat.primitives import serialization

from euicc_protocol import saip
from euicc_protocol.crypto import Curve
from euicc_servers.eim import EimServer, OrderState, build_eim, create_app, run_in_thread
from euicc_sim.card import Euicc
from ipa import es10_iot
from ipa.es10 import Es10Client
from ipa.esipa import Binding, EsipaClient, EsipaConfig
from ipa.fleet import (
    YOUNG_GC_THRESHOLD,
    Device,
    Fleet,
    FleetConfig,
    FleetError,
    FleetRunner,
    HttpMode,
    percentile,
)
from ipa.fleet import run as run_fleet
from ipa.http_pool import FleetHttpClient, HttpAnswer, PooledTransport
from ipa.pull import PollOutcome, PullConfig, State
from ipa.transport import InProcessTransport

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = (ROOT / "profiles" / "ts48" / "TS48V1-A-UNIQUE.der").read_bytes()
ICCID = saip.read_package(PACKAGE).iccid
ENABLE = {"type": "psmo", "operations": [{"enable": {"iccid": ICCID}}]}
DISABLE = {"type": "psmo", "operations": [{"disable": {"iccid": ICCID}}]}


@pytest.fixture(scope="module")
def eim() -> Iterator[tuple[EimServer, str]]:
    server = build_eim("sgp26")
    with run_in_thread(server.core, tls=server.tls) as running:
        yield server, running.base_url


def provisioned_card(eim: EimServer) -> Euicc:
    """A card registered at ``eim`` (certificates known) that holds its configuration."""
    card = Euicc.create(None, curves=(Curve.NIST_P256,))
    card.preload(PACKAGE)
    chain = card.credentials.chains[0]
    eim.core.register(
        card.eid, euicc_certificate=chain.euicc_certificate, eum_certificate=chain.eum_certificate
    )
    request = bytes(eim.core.configuration(card.eid).add_initial_eim_request())
    with Es10Client.open(InProcessTransport(card)) as client:
        es10_iot.add_initial_eim(client, request)
    return card


def config(url: str, **options: Any) -> FleetConfig:
    return FleetConfig(url, pull=options.pop("pull", PullConfig(max_packages=1)), **options)


def enabled(card: Euicc) -> bool:
    return card.state.enabled_profile is not None


def test_every_device_completes_its_psmo_and_the_eim_holds_verified_results(
    eim: tuple[EimServer, str],
) -> None:
    server, url = eim
    cards = [provisioned_card(server) for _ in range(5)]
    orders = [server.core.queue(card.eid, ENABLE).id for card in cards]

    async def go() -> tuple[list[PollOutcome | None], Fleet]:
        async with Fleet(cards, config(url, concurrency=3, max_connections=2)) as fleet:
            return await fleet.poll_all(), fleet

    outcomes, fleet = asyncio.run(go())
    for outcome in outcomes:
        assert outcome is not None and outcome.ok, outcome
        assert [p.delivered for p in outcome.packages] == [True]
    assert all(enabled(card) for card in cards)
    for order_id in orders:
        order = server.core.store.require_order(order_id)
        assert (order.state, order.verified, order.error) == (OrderState.DONE, True, None)
    stats = fleet.stats()
    assert (stats.cycles, stats.failed, stats.packages) == (5, 0, 5)
    assert 0 < stats.p50_ms <= stats.p99_ms <= stats.max_ms
    assert [d.cycles for d in fleet.devices] == [1] * 5
    # One pool for the fleet: never more connections than allowed.
    assert fleet.esipa is not None
    http = fleet.http
    assert isinstance(http, FleetHttpClient)
    assert 1 <= http.pool.connections_opened <= 2
    assert http.is_closed


def test_running_fleet_cycles_until_stopped_and_stops_cleanly(
    eim: tuple[EimServer, str],
) -> None:
    server, url = eim
    cards = [provisioned_card(server) for _ in range(4)]
    steps = {card.eid: 0 for card in cards}
    for card in cards:
        server.core.queue(card.eid, ENABLE)

    def next_order(device: Device, outcome: PollOutcome | None) -> None:
        assert outcome is not None and outcome.ok and device.eid is not None
        if any(p.delivered for p in outcome.packages):
            steps[device.eid] += 1
            server.core.queue(device.eid, DISABLE if steps[device.eid] % 2 else ENABLE)

    async def go() -> Fleet:
        fleet = Fleet(cards, config(url, pace=0.0, concurrency=2), on_cycle=next_order)
        await fleet.start()
        assert fleet.running
        for _ in range(2000):  # until every device did three PSMO cycles (bounded)
            if min(steps.values()) >= 3:
                break
            await asyncio.sleep(0.01)
        await fleet.stop()
        assert not fleet.running
        # Nothing of the fleet is left running in the loop.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert others == []
        return fleet

    fleet = asyncio.run(go())
    assert min(steps.values()) >= 3
    stats = fleet.stats()
    assert stats.failed == 0 and stats.packages == sum(steps.values())
    for card in cards:
        done = server.core.store.orders(card.eid, states=[OrderState.DONE])
        assert len(done) == steps[card.eid] and all(o.verified for o in done)
    with pytest.raises(FleetError):
        asyncio.run(fleet.start())  # a stopped fleet stays stopped


def test_paced_devices_wait_between_cycles(eim: tuple[EimServer, str]) -> None:
    server, url = eim
    cards = [provisioned_card(server) for _ in range(2)]

    async def go() -> Fleet:
        fleet = Fleet(cards, config(url, pace=3600.0))
        await fleet.start()
        for _ in range(2000):
            if all(d.cycles for d in fleet.devices):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        await fleet.stop()  # the hour-long waits are cancelled
        return fleet

    fleet = asyncio.run(go())
    assert [d.cycles for d in fleet.devices] == [1, 1]
    assert all(d.last is not None and d.last.ok and not d.last.packages for d in fleet.devices)


def test_httpx_pool_and_json_binding(eim: tuple[EimServer, str]) -> None:
    server, url = eim
    cards = [provisioned_card(server) for _ in range(3)]
    for card in cards:
        server.core.queue(card.eid, ENABLE)
    pull = PullConfig(max_packages=1, esipa=EsipaConfig(binding=Binding.JSON))

    async def go() -> list[PollOutcome | None]:
        async with Fleet(cards, config(url, pull=pull, http=HttpMode.HTTPX)) as fleet:
            return await fleet.poll_all()

    outcomes = asyncio.run(go())
    assert all(o is not None and o.ok and o.packages[0].delivered for o in outcomes)
    assert all(enabled(card) for card in cards)


def _asgi_cards() -> tuple[list[Euicc], PullConfig]:
    """Two provisioned cards with an enable queued each, and a pull configuration that
    reaches the eIM app in-process (httpx.ASGITransport) at http://eim.fleet.test."""
    server = build_eim("sgp26", tls=False)
    server.core.eim_fqdn = "eim.fleet.test"
    cards = [provisioned_card(server) for _ in range(2)]
    for card in cards:
        server.core.queue(card.eid, ENABLE)
    transport = httpx.ASGITransport(app=create_app(server.core))
    pull = PullConfig(max_packages=1, esipa=EsipaConfig(transport=transport))
    return cards, pull


def test_in_process_asgi_transport() -> None:
    cards, pull = _asgi_cards()

    async def go() -> list[PollOutcome | None]:
        async with Fleet(cards, FleetConfig("http://eim.fleet.test", pull=pull)) as fleet:
            outcomes = await fleet.poll_all()
            # Cycles that never wait for I/O must still let the loop run other tasks.
            await fleet.start()
            await asyncio.sleep(0.05)
            return outcomes

    outcomes = asyncio.run(go())
    assert all(o is not None and o.ok and o.packages[0].delivered for o in outcomes)


def test_freeze_gc_keeps_the_open_fleet_out_of_collections_until_it_stops() -> None:
    cards, pull = _asgi_cards()
    frozen: list[tuple[int, int]] = []

    async def go(freeze: bool) -> list[PollOutcome | None]:
        fleet = Fleet(cards, FleetConfig("http://eim.fleet.test", pull=pull, freeze_gc=freeze))
        async with fleet:
            frozen.append((gc.get_freeze_count(), gc.get_threshold()[0]))
            return await fleet.poll_all()

    assert gc.get_freeze_count() == 0
    before = gc.get_threshold()
    outcomes = asyncio.run(go(True))
    assert all(o is not None and o.ok and o.packages[0].delivered for o in outcomes)
    # The fleet (and all else alive) was frozen while it ran, young collections rarer...
    assert frozen[0][0] > 0 and frozen[0][1] == YOUNG_GC_THRESHOLD
    # ... and both undone when it stopped.
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before
    asyncio.run(go(False))
    assert frozen[1] == (0, before[0])  # the default leaves the collector alone


def test_run_drives_a_fleet_on_uvloop_where_installed() -> None:
    cards, pull = _asgi_cards()

    async def go() -> tuple[str, list[PollOutcome | None]]:
        loop = type(asyncio.get_running_loop()).__module__
        async with Fleet(cards, FleetConfig("http://eim.fleet.test", pull=pull)) as fleet:
            return loop, await fleet.poll_all()

    loop, outcomes = run_fleet(go())
    assert all(o is not None and o.ok and o.packages[0].delivered for o in outcomes)
    uvloop = pytest.importorskip("uvloop")
    assert loop.startswith(uvloop.__name__)


def test_stop_cancels_a_cycle_stuck_past_the_timeout() -> None:
    server = build_eim("sgp26", tls=False)
    server.core.eim_fqdn = "eim.fleet.test"
    cards = [provisioned_card(server)]
    transport = httpx.ASGITransport(app=create_app(server.core))
    pull = PullConfig(esipa=EsipaConfig(transport=transport))

    async def hang(device: Device, outcome: PollOutcome | None) -> None:
        await asyncio.Event().wait()  # never returns

    async def go() -> Fleet:
        fleet = Fleet(cards, FleetConfig("http://eim.fleet.test", pull=pull), on_cycle=hang)
        await fleet.start()
        while not fleet.devices[0].cycles:
            await asyncio.sleep(0.01)
        await fleet.stop(timeout=0.1)
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert others == []
        return fleet

    fleet = asyncio.run(go())
    assert not fleet.running and fleet.devices[0].cycles == 1


def test_tls_is_verified_without_the_cards_anchor(eim: tuple[EimServer, str]) -> None:
    server, url = eim
    card = provisioned_card(server)
    pull = PullConfig(use_eim_tls_pin=False, report_attempts=1)

    async def go() -> list[PollOutcome | None]:
        async with Fleet([card], config(url, pull=pull)) as fleet:
            return await fleet.poll_all()

    (outcome,) = asyncio.run(go())
    assert outcome is not None and not outcome.ok
    assert outcome.error is not None and "getEimPackage" in outcome.error


@pytest.mark.parametrize("runner", [asyncio.run, run_fleet], ids=["asyncio", "fleet-loop"])
def test_pinned_eim_key_is_checked_on_every_connection(
    eim: tuple[EimServer, str], runner: Callable[[Any], Any]
) -> None:
    # Under both event loops: the pin is read from the TLS object the transport exposes.
    server, url = eim
    assert server.tls is not None
    cards = [provisioned_card(server) for _ in range(2)]
    for card in cards:
        server.core.queue(card.eid, ENABLE)
    right = server.tls.cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    wrong = server.core.settings.public_key_info  # the eIM's signing key, not its TLS key

    def poll(pin: bytes) -> list[PollOutcome | None]:
        pull = PullConfig(
            max_packages=1, report_attempts=1, esipa=EsipaConfig(pinned_public_key=pin)
        )

        async def go() -> list[PollOutcome | None]:
            async with Fleet(cards, config(url, pull=pull)) as fleet:
                return await fleet.poll_all()

        return runner(go())  # type: ignore[no-any-return]

    refused = poll(wrong)
    assert all(o is not None and not o.ok and "pinned" in (o.error or "") for o in refused)
    accepted = poll(right)
    assert all(o is not None and o.ok and o.packages[0].delivered for o in accepted)


def test_unprovisioned_card_joins_and_waits(eim: tuple[EimServer, str]) -> None:
    _, url = eim
    card = Euicc.create(None, curves=(Curve.NIST_P256,))

    async def go() -> list[PollOutcome | None]:
        async with Fleet([card], config(url)) as fleet:
            return await fleet.poll_all()

    (outcome,) = asyncio.run(go())
    assert outcome is not None and outcome.state is State.UNPROVISIONED


def test_sync_facade(eim: tuple[EimServer, str]) -> None:
    server, url = eim
    cards = [provisioned_card(server) for _ in range(2)]
    for card in cards:
        server.core.queue(card.eid, ENABLE)
    with FleetRunner(cards, config(url)) as runner:
        outcomes = runner.poll_all()
        assert all(o is not None and o.ok for o in outcomes)
        assert runner.stats().packages == 2
        assert [d.cycles for d in runner.devices] == [1, 1]
    runner.stop()  # twice is fine
    with pytest.raises(FleetError):
        runner.poll_all()


# -- the connection pool against a scripted server ------------------------------------------------


async def scripted_server(answers: list[bytes]) -> tuple[asyncio.Server, list[int]]:
    """Answers each request (read up to the blank line + Content-Length) with the next item
    of ``answers``; ``b""`` closes the connection instead. Counts connections."""
    connections = [0]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        while answers:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            lines = head.lower().split(b"\r\n")
            length = [int(h[15:]) for h in lines if h.startswith(b"content-length:")]
            await reader.readexactly(length[0] if length else 0)
            answer = answers.pop(0)
            if not answer:
                break
            writer.write(answer)
            await writer.drain()
            if b"Connection: close" in answer:
                break
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, connections


def test_pool_reuses_connections_and_reads_chunked_and_closing_answers() -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n2\r\n!!\r\n0\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ]

    async def go() -> list[tuple[int, bytes]]:
        server, connections = await scripted_server(answers)
        port = server.sockets[0].getsockname()[1]
        pool = PooledTransport(max_connections=1)
        results = []
        async with FleetHttpClient(pool, timeout=5) as client:
            for _ in range(4):
                answer = await client.post(
                    f"http://127.0.0.1:{port}/x?y=1", content=b"body", headers={"A": "b"}
                )
                results.append((answer.status_code, answer.content))
            # httpx's own path through the same pool
            answer = await client.get(f"http://127.0.0.1:{port}/")
            results.append((answer.status_code, answer.content))
        server.close()
        await server.wait_closed()
        results.append((connections[0], b""))
        return results

    assert asyncio.run(go()) == [
        (200, b"one"),
        (200, b"two!!"),
        (204, b""),
        (404, b"nope"),
        (200, b"ok"),
        (2, b""),  # a new connection after "Connection: close" only
    ]


def test_pool_reports_a_connection_closed_without_answer() -> None:
    async def go() -> None:
        server, _ = await scripted_server([b""])
        port = server.sockets[0].getsockname()[1]
        async with FleetHttpClient(PooledTransport(), timeout=5) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post(f"http://127.0.0.1:{port}/", content=b"", headers={})
            with pytest.raises(httpx.ConnectError):
                await client.post("http://127.0.0.1:1/", content=b"", headers={})
        server.close()
        await server.wait_closed()

    asyncio.run(go())


def test_post_lean_answers_a_plain_post_without_an_httpx_response() -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nContent-Length: 3\r\n\r\none",
        b"HTTP/1.1 500 Oops\r\nContent-Length: 3\r\n\r\ntwo",
    ]

    async def go() -> list[object]:
        server, _ = await scripted_server(answers)
        port = server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/x"
        async with FleetHttpClient(PooledTransport(max_connections=1), timeout=5) as client:
            lean = await client.post_lean(url, content=b"body", headers={"A": "b"})
            # not a plain POST (a header the pool writes itself): httpx's way, same pool
            other = await client.post_lean(url, content=b"b", headers={"Host": "elsewhere"})
        server.close()
        await server.wait_closed()
        return [lean, other]

    lean, other = asyncio.run(go())
    assert isinstance(lean, HttpAnswer)
    assert (lean.status_code, lean.content, lean.keep_alive) == (200, b"one", True)
    assert (b"content-type", b"a/b") in lean.headers
    assert isinstance(other, httpx.Response)
    assert (other.status_code, other.content) == (500, b"two")


def test_esipa_client_posts_through_post_lean_when_the_client_has_it() -> None:
    # The eIM answers GetEimPackage with "no package" (BF4F 03 02 01 01).
    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n\xbf\x4f\x03\x02\x01\x01"]

    class Counting(FleetHttpClient):
        lean = 0

        async def post_lean(self, *args: Any, **kwargs: Any) -> HttpAnswer | httpx.Response:
            Counting.lean += 1
            return await super().post_lean(*args, **kwargs)

    async def go() -> object:
        server, _ = await scripted_server(answers)
        port = server.sockets[0].getsockname()[1]
        async with Counting(PooledTransport(), timeout=5) as http:
            esipa = EsipaClient(f"http://127.0.0.1:{port}", EsipaConfig(), http=http)
            package = await esipa.get_eim_package("89" + "0" * 30)
        server.close()
        await server.wait_closed()
        return package

    assert asyncio.run(go()) is None
    assert Counting.lean == 1


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
        50.0,
        99.0,
        100.0,
    )
    assert percentile([], 50) == 0.0 and percentile([7.0], 99) == 7.0


#: A tiny, short pull benchmark run.
_TINY = ("--devices", "3", "--seconds", "1", "--warmup", "0.5")


def test_benchmark_runs_with_a_tiny_fleet() -> None:
    result = _benchmark("pull.py", *_TINY)
    assert set(result) == {
        "devices",
        "psmo_cycles_per_s",
        "p50_ms",
        "p99_ms",
        "rss_mb_per_device",
        "rss_kb_per_device",
        "cpu_ms_per_cycle",
        "eim",
    }
    assert result["devices"] == 3 and result["psmo_cycles_per_s"] > 0
    assert result["eim"] == "thread" and result["cpu_ms_per_cycle"] > 0


def test_benchmark_with_the_eim_in_its_own_process_checks_every_result() -> None:
    # The run exits non-zero when a result the devices saw taken is not exactly one done,
    # verified order in the eIM process's state.
    result = _benchmark(
        "pull.py",
        "--eim-process",
        *_TINY,
        timeout=180,
    )
    assert result["eim"] == "process" and result["psmo_cycles_per_s"] > 0
    assert result["eim_cpu_ms_per_cycle"] > 0


def test_benchmark_direct_transport_reports_the_devices_cpu_apart_from_the_eims() -> None:
    # No HTTP: the devices hand each ESipa message to the eIM core; every result is checked
    # on the eIM's state (the run exits non-zero otherwise).
    result = _benchmark(
        "pull.py",
        "--transport",
        "direct",
        "--eim-state",
        "memory",
        *_TINY,
    )
    assert result["psmo_cycles_per_s"] > 0
    assert result["cpu_ms_per_cycle"] > 0 and result["eim_cpu_ms_per_cycle"] > 0


def test_benchmark_idle_reports_memory_per_device() -> None:
    result = _benchmark("pull.py", "--idle", "--devices", "5")
    assert set(result) == {"devices", "rss_mb_per_device", "rss_kb_per_device", "eim"}
    assert result["devices"] == 5


def test_fixed_rounds_benchmark_runs_every_cycle() -> None:
    result = _benchmark("pull_rounds.py", "--devices", "2", "--rounds", "2")
    assert result["devices"] == 2 and result["rounds"] == 2 and result["cycles"] == 4
    assert result["cpu_ms_per_cycle"] > 0 and result["eim_cpu_ms_per_cycle"] > 0
