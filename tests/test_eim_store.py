"""The eIM store's transactions (euicc_servers.eim.store): a result acknowledged to a device is
fsynced before the answer leaves, acknowledgements taken in their own transaction never touch
the table, rows kept between transactions are forgotten when another connection commits or a
transaction rolls back, and one ESipa request is one transaction. Real SQLite files, the
emulated card and real signatures."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from euicc_protocol import tlv
from euicc_protocol.crypto import Curve
from euicc_servers.eim import EimServer, OrderState, build_eim
from euicc_servers.eim import store as store_module
from euicc_servers.eim.packages import PackageError, operations_from_json, stored_operations
from euicc_servers.eim.store import DB_FILE, EimStore, JsonText, Order
from euicc_sim.card import Euicc
from ipa import es10_iot, esipa_messages
from ipa.es10 import Es10Client
from ipa.transport import InProcessTransport

PACKAGE = Path(__file__).resolve().parent.parent / "profiles" / "ts48" / "TS48V1-A-UNIQUE.der"
ICCID = "8949449999999990023"  # of PACKAGE


def _device(eim: EimServer) -> tuple[Euicc, Es10Client]:
    card = Euicc.create(None, curves=(Curve.NIST_P256,))
    card.preload(PACKAGE.read_bytes())
    chain = card.credentials.chains[0]
    eim.core.register(
        card.eid, euicc_certificate=chain.euicc_certificate, eum_certificate=chain.eum_certificate
    )
    client = Es10Client.open(InProcessTransport(card))
    es10_iot.add_initial_eim(
        client, bytes(eim.core.configuration(card.eid).add_initial_eim_request())
    )
    return card, client


def _enable(eim: EimServer, eid: str) -> int:
    order = eim.core.queue(eid, {"type": "psmo", "operations": [{"enable": {"iccid": ICCID}}]})
    return int(order.id)


def _package(eim: EimServer, card: Euicc) -> bytes:
    answer = eim.core.handle(esipa_messages.get_eim_package_request(card.eid))
    assert answer is not None
    outer = tlv.read_tlv(answer.message)
    return answer.message[outer.value_start : outer.value_end]


class _FsyncSpy:
    """Records fsyncs and what another connection sees in the file at each one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, database: Path) -> None:
        self.database = database
        self.seen: list[tuple[str, list[str]]] = []
        real = os.fdatasync

        def spy(fd: int) -> None:
            real(fd)
            with sqlite3.connect(database) as other:
                states = [r[0] for r in other.execute("SELECT state FROM orders ORDER BY id")]
            self.seen.append((os.readlink(f"/proc/self/fd/{fd}"), states))

        monkeypatch.setattr(os, "fdatasync", spy)


def test_an_acknowledged_result_is_committed_and_fsynced_before_the_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eim = build_eim("sgp26", state_dir=tmp_path)
    card, client = _device(eim)
    _enable(eim, card.eid)
    spy = _FsyncSpy(monkeypatch, tmp_path / DB_FILE)

    epr = es10_iot.load_euicc_package(client, _package(eim, card))
    assert spy.seen == []  # delivering a package acknowledges nothing: no fsync of its own
    answer = eim.core.handle(esipa_messages.provide_eim_package_result(epr.raw, card.eid))

    assert answer is not None and answer.message[:5] == bytes.fromhex("BF5006BF53")  # acks
    # One fsync, of the WAL, after the commit: the done order is in the file by then.
    assert spy.seen == [(str(tmp_path / f"{DB_FILE}-wal"), ["done"])]


def test_a_result_that_acknowledges_nothing_costs_no_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eim = build_eim("sgp26", state_dir=tmp_path)
    card, client = _device(eim)
    _enable(eim, card.eid)
    spy = _FsyncSpy(monkeypatch, tmp_path / DB_FILE)
    epr = es10_iot.load_euicc_package(client, _package(eim, card))
    message = esipa_messages.provide_eim_package_result(epr.raw, card.eid)
    eim.core.handle(message)
    spy.seen.clear()

    # The same result from an unregistered EID: refused, nothing to acknowledge.
    eim.core.store.delete_euicc(card.eid)
    answer = eim.core.handle(message)

    assert answer is not None and answer.message == bytes.fromhex("BF5003020102")  # eidNotFound
    assert spy.seen == []


def test_acks_taken_in_their_own_transaction_never_reach_the_table(tmp_path: Path) -> None:
    store = EimStore(tmp_path)
    eid = "89049032123451234512345678901235"
    store.add_euicc(eid)
    with store.transaction():
        store.add_acks(eid, [7, 3])
        assert store.pending_acks(eid) == [3, 7]
        assert store.take_acks(eid) == [3, 7]
    assert store.pending_acks(eid) == []
    assert store.rows("SELECT * FROM acks") == []


def test_acks_left_for_later_are_stored_and_a_rollback_drops_them(tmp_path: Path) -> None:
    store = EimStore(tmp_path)
    eid = "89049032123451234512345678901235"
    store.add_euicc(eid)
    store.add_acks(eid, [5])  # e.g. from a HandleNotification, which has no response
    with pytest.raises(RuntimeError), store.transaction():
        store.add_acks(eid, [6])
        raise RuntimeError("the request failed")

    assert [tuple(r) for r in store.rows("SELECT eid, seq_number FROM acks")] == [(eid, 5)]
    reopened = EimStore(tmp_path)  # committed: in the file
    assert reopened.take_acks(eid) == [5]
    assert reopened.pending_acks(eid) == store.pending_acks(eid) == []


def test_a_record_kept_for_a_transaction_shows_its_writes_and_not_outlive_it(
    tmp_path: Path,
) -> None:
    store = EimStore(tmp_path)
    eid = "89049032123451234512345678901235"
    store.add_euicc(eid, counter=4)
    with store.transaction():
        assert store.euicc(eid).counter == 4  # type: ignore[union-attr]
        store.update_euicc(eid, counter=5)
        assert store.euicc(eid).counter == 5  # type: ignore[union-attr]
    # Another process (a second worker) changes the eUICC between two transactions.
    with sqlite3.connect(tmp_path / DB_FILE) as other:
        other.execute("UPDATE euiccs SET counter = 9 WHERE eid = ?", (eid,))
    assert store.euicc(eid).counter == 9  # type: ignore[union-attr]
    with store.transaction():
        assert store.euicc(eid).counter == 9  # type: ignore[union-attr]
        store.delete_euicc(eid)
        assert store.euicc(eid) is None


def test_rows_are_kept_between_transactions_until_another_connection_commits(
    tmp_path: Path,
) -> None:
    store = EimStore(tmp_path)
    eid = "89049032123451234512345678901235"
    store.add_euicc(eid, counter=4)
    order = store.add_order(eid, "psmo", {"operations": []})
    selects: list[str] = []
    store._db.set_trace_callback(lambda s: selects.append(s) if s.startswith("SELECT") else None)
    with store.transaction():
        assert store.euicc(eid).counter == 4  # type: ignore[union-attr]
        assert store.require_order(order.id).state == OrderState.QUEUED
    assert store.take_acks(eid) == []
    with store.transaction():  # nobody else committed: nothing read again
        assert store.euicc(eid).counter == 4  # type: ignore[union-attr]
    assert store.take_acks(eid) == []
    assert [s for s in selects if "euiccs" in s] == []

    with sqlite3.connect(tmp_path / DB_FILE) as other:  # e.g. a second worker process
        other.execute("UPDATE euiccs SET counter = 9 WHERE eid = ?", (eid,))
        other.execute("UPDATE orders SET state = 'cancelled' WHERE id = ?", (order.id,))
        other.execute("INSERT INTO acks (eid, seq_number) VALUES (?, 3)", (eid,))
    with store.transaction():
        assert store.euicc(eid).counter == 9  # type: ignore[union-attr]
        assert store.require_order(order.id).state == "cancelled"
    assert store.take_acks(eid) == [3]


def test_rows_kept_between_transactions_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "_CACHED_ROWS", 2)
    store = EimStore(tmp_path)
    eids = [f"8904903212345123451234567890{n:04d}" for n in range(5)]
    with store.transaction():
        for n, eid in enumerate(eids):
            store.add_euicc(eid, counter=n)
    assert list(store._records) == eids[-2:]  # the newest kept
    with store.transaction():
        assert [store.euicc(eid).counter for eid in eids] == [0, 1, 2, 3, 4]  # type: ignore[union-attr]
    assert len(store._records) == 2


def test_a_rolled_back_change_is_not_kept_for_the_next_transaction(tmp_path: Path) -> None:
    store = EimStore(tmp_path)
    eid = "89049032123451234512345678901235"
    store.add_euicc(eid, counter=4)
    order = store.add_order(eid, "psmo", {"operations": []})
    with pytest.raises(RuntimeError), store.transaction():
        store.update_euicc(eid, counter=5)
        store.update_order(order.id, state=OrderState.SENT)
        store.add_acks(eid, [8])
        assert store.take_acks(eid) == [8]
        raise RuntimeError("the request failed")
    with store.transaction():
        assert store.euicc(eid).counter == 4  # type: ignore[union-attr]
        assert store.require_order(order.id).state == OrderState.QUEUED


def test_one_esipa_request_is_one_transaction(tmp_path: Path) -> None:
    eim = build_eim("sgp26", state_dir=tmp_path)
    card, client = _device(eim)
    _enable(eim, card.eid)
    statements: list[str] = []
    eim.core.store._db.set_trace_callback(statements.append)

    package = _package(eim, card)
    epr = es10_iot.load_euicc_package(client, package)
    eim.core.handle(esipa_messages.provide_eim_package_result(epr.raw, card.eid))

    begins = [s for s in statements if s.startswith("BEGIN")]
    commits = [s for s in statements if s == "COMMIT"]
    assert len(begins) == len(commits) == 2
    assert eim.core.store.orders(card.eid, states=[OrderState.DONE])[0].verified is True


@pytest.mark.parametrize(
    "operations",
    [
        [{"enable": {"iccid": ICCID, "rollbackFlag": True}}],
        [{"disable": {"iccid": ICCID}}, {"listProfileInfo": {"tagList": "5A"}}],
        [{"getRAT": {}}],
    ],
)
def test_stored_operations_encode_like_the_operator_api(operations: list[Any]) -> None:
    expected = operations_from_json("psmo", operations)
    assert stored_operations("psmo", operations) == expected
    assert stored_operations("psmo", operations) == expected  # again, from the cache


def test_stored_operations_refuse_what_the_operator_api_refuses() -> None:
    cases: tuple[Any, ...] = (
        [{"enable": {"iccid": "12"}}],
        [],
        [{"enable": {}, "disable": {}}],
        ({},),
    )
    for bad in cases:
        with pytest.raises(PackageError):
            stored_operations("psmo", bad)


def test_deferred_fsyncs_are_shared_by_the_commits_before_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EimStore(tmp_path)
    eid = "89049032123451234512345678901235"
    store.add_euicc(eid)
    spy = _FsyncSpy(monkeypatch, tmp_path / DB_FILE)
    with store.deferred_sync():
        for seq in (1, 2):
            with store.transaction():
                store.add_acks(eid, [seq])
                assert store.take_acks(eid) == [seq]
    assert (store.acknowledged, store.durable, spy.seen) == (2, 0, [])  # left to the caller

    store.sync_through(1)  # one fsync, covering both commits
    store.sync_through(2)  # covered already: no second fsync
    assert len(spy.seen) == 1 and store.durable == 2


def test_the_asn1_route_answers_an_acknowledgement_only_once_it_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asgi_client import AsgiClient

    from euicc_servers.eim import create_app

    eim = build_eim("sgp26", state_dir=tmp_path, tls=False)
    card, client = _device(eim)
    _enable(eim, card.eid)
    http = AsgiClient(create_app(eim.core), "http://eim.test")
    headers = {"Content-Type": "application/x-gsma-rsp-asn1"}
    poll = http.request(
        "POST",
        "/gsma/rsp2/asn1",
        content=esipa_messages.get_eim_package_request(card.eid),
        headers=headers,
    )
    outer = tlv.read_tlv(poll.content)
    epr = es10_iot.load_euicc_package(client, poll.content[outer.value_start : outer.value_end])
    spy = _FsyncSpy(monkeypatch, tmp_path / DB_FILE)

    answer = http.request(
        "POST",
        "/gsma/rsp2/asn1",
        content=esipa_messages.provide_eim_package_result(epr.raw, card.eid),
        headers=headers,
    )

    assert answer.content[:5] == bytes.fromhex("BF5006BF53")
    assert spy.seen == [(str(tmp_path / f"{DB_FILE}-wal"), ["done"])]
    assert eim.core.store.durable == eim.core.store.acknowledged == 1


def test_next_order_is_the_sent_package_else_the_oldest_queued_order() -> None:
    store = EimStore(None)
    eid = "89049032123451234512345678901235"
    store.add_euicc(eid)
    assert store.next_order(eid) is None
    first = store.add_order(eid, "psmo", {"operations": []})
    second = store.add_order(eid, "psmo", {"operations": []})
    assert store.next_order(eid).id == first.id  # type: ignore[union-attr]
    # A sent order without a package (none is built so) is not delivered again.
    store.update_order(first.id, state=OrderState.SENT)
    assert store.next_order(eid).id == second.id  # type: ignore[union-attr]
    store.update_order(second.id, state=OrderState.SENT, package=b"\xbf\x51\x00")
    third = store.add_order(eid, "psmo", {"operations": []})
    chosen = store.next_order(eid)
    assert chosen is not None and (chosen.id, chosen.package) == (second.id, b"\xbf\x51\x00")
    store.update_order(second.id, state=OrderState.DONE)
    store.update_order(first.id, state=OrderState.DONE)
    assert store.next_order(eid).id == third.id  # type: ignore[union-attr]
    store.update_order(third.id, state=OrderState.CANCELLED)
    assert store.next_order(eid) is None


def test_a_result_is_matched_to_its_order_by_an_index_on_the_transaction_id() -> None:
    store = EimStore(None)
    plan = store.rows(
        "EXPLAIN QUERY PLAN SELECT * FROM orders WHERE eid = ? AND eim_transaction_id = ?",
        ("89049032123451234512345678901235", b"\x01" * 8),
    )
    assert any("orders_by_transaction" in row[3] for row in plan)


def test_a_result_finds_the_order_delivered_with_its_transaction_id_without_a_query(
    tmp_path: Path,
) -> None:
    store = EimStore(tmp_path)
    eid, other_eid = "89049032123451234512345678901235", "89049032123451234512345678901236"
    for e in (eid, other_eid):
        store.add_euicc(e)
    first, second, third = (store.add_order(eid, "psmo", {"operations": []}) for _ in range(3))
    store.update_order(first.id, state=OrderState.SENT, eim_transaction_id=b"\x01" * 8)
    store.update_order(second.id, state=OrderState.SENT, eim_transaction_id=b"\x02" * 8)
    selects: list[str] = []
    store._db.set_trace_callback(lambda s: selects.append(s) if s.startswith("SELECT") else None)

    def find(e: str, tid: bytes, kinds: tuple[str, ...] = ("psmo", "eco")) -> int | None:
        with store.transaction():
            order = store.find_order(e, kinds=kinds, eim_transaction_id=tid)
        return None if order is None else order.id

    assert find(eid, b"\x02" * 8) == second.id
    assert find(eid, b"\x01" * 8) == first.id
    assert selects == []  # both from the orders this process delivered
    # Another EID, kind or an unknown id: asked of SQLite, with its answer.
    assert find(other_eid, b"\x02" * 8) is None
    assert find(eid, b"\x02" * 8, kinds=("download",)) is None
    assert find(eid, b"\x03" * 8) is None
    assert len(selects) == 3
    # An id delivered again with another order (a repeating random source): the query's
    # answer, the oldest of them.
    store.update_order(third.id, state=OrderState.SENT, eim_transaction_id=b"\x02" * 8)
    assert find(eid, b"\x02" * 8) == second.id
    assert len(selects) == 4
    # A rollback forgets what was delivered in the transaction it undid.
    with pytest.raises(RuntimeError), store.transaction():
        store.update_order(first.id, eim_transaction_id=b"\x04" * 8)
        raise RuntimeError
    assert find(eid, b"\x04" * 8) is None
    assert find(eid, b"\x01" * 8) == first.id


def _store_with_order(directory: Path) -> tuple[EimStore, str, Order]:
    """A store with one eUICC and one queued PSMO order for it."""
    store = EimStore(directory)
    eid = "89049032123451234512345678901235"
    store.add_euicc(eid)
    return store, eid, store.add_order(eid, "psmo", {"operations": []})


@pytest.mark.parametrize("cached", [True, False])
def test_json_text_dumped_once_is_stored_and_read_back_as_its_value(
    tmp_path: Path, cached: bool
) -> None:
    store, eid, order = _store_with_order(tmp_path)
    value = {"euiccPackageResultSigned": {"seq": 7, "results": [("a", 1)]}}
    text = JsonText(json.dumps(value))
    read_back = json.loads(text)  # the tuple a list, as SQLite gives it
    with store.transaction():
        if cached:
            store.require_order(order.id)  # the update builds on the kept order
        event_id = store.record_event("epr", b"\xbf\x51\x00", eid=eid, decoded=text)
        event = store.add_event("epr", b"\xbf\x51\x00", eid=eid, decoded=text)
        updated = store.update_order(order.id, result_json=text)
    assert updated.result_json == read_back
    assert event.decoded == read_back and event.id == event_id + 1
    assert [e.decoded for e in store.events(eid)] == [read_back, read_back]
    assert store.require_order(order.id).result_json == read_back
    assert store.rows("SELECT result_json FROM orders WHERE id = ?", (order.id,))[0][0] == text


@pytest.mark.parametrize(
    ("value", "unknown"),
    [
        ({"a": [1, b"x", ("alt", {"b": "c"})]}, False),
        ({"a": [1, b"x", ("alt", {"b": (None, None)})]}, True),
        ((None, None), True),
        ([{"x": ("y", [("z", 1), (None, None)])}], True),
        ((), False),
    ],
)
def test_has_unknown_alternative_finds_an_unknown_choice_at_any_depth(
    value: Any, unknown: bool
) -> None:
    from euicc_servers.common import has_unknown_alternative

    assert has_unknown_alternative(value) is unknown


@pytest.mark.parametrize("cached", [True, False])
def test_an_order_event_takes_the_result_text_as_given_and_reads_as_the_summary(
    tmp_path: Path, cached: bool
) -> None:
    store, _, order = _store_with_order(tmp_path)
    text = JsonText('{"euiccPackageResultSigned": {"seq": 7, "results": [["a", 1]]}}')
    with store.transaction():
        if cached:
            store.require_order(order.id)
        done = store.update_order(order.id, state="done", result_json=text)
    event = store.feed(after=store.last_feed_id() - 1)[0]
    assert event.type == "order.done"
    assert event.data == done.summary()
    assert event.data["result"] == json.loads(text)


@pytest.mark.parametrize(
    ("data", "texts"),
    [
        ({"a": 1, "r": None}, {"r": JsonText('{"x": [1, "y"]}')}),
        ({"r": None}, {"r": JsonText("[]")}),
        ({}, {"r": JsonText('"s"'), "q": JsonText("null")}),
        ({"a": {"b": "\u00e9"}}, None),
    ],
)
def test_json_object_splices_given_texts(data: dict[str, Any], texts: Any) -> None:
    from euicc_servers.eim.store import _json_object

    expected = {**data, **{k: json.loads(t) for k, t in (texts or {}).items()}}
    assert json.loads(_json_object(data, texts)) == expected
