"""The eIM store's layout and its shortcuts (euicc_servers.eim.store): a file made by the
previous version opens, is brought to the current layout and keeps working (feed ids never
reused); a row updated without being read back is the row a read gives; feed rows published in
a transaction exist exactly when it commits; a failed block leaves nothing behind. Real SQLite
files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from euicc_servers.eim import OrderState
from euicc_servers.eim import store as store_module
from euicc_servers.eim.store import DB_FILE, EimStore

EID = "89049032123451234512345678901235"


def _previous_version_file(path: Path, *, feed_rows: int, sequence: int | None = None) -> None:
    """A state file as the previous version made it: a full index on eim_transaction_id and
    the feed with AUTOINCREMENT (``sequence``: sqlite_sequence's value for it, if set)."""
    schema = store_module._SCHEMA.replace(
        "ON orders (eim_transaction_id)\n    WHERE eim_transaction_id IS NOT NULL;",
        "ON orders (eim_transaction_id);",
    ).replace(
        "CREATE TABLE IF NOT EXISTS feed (\n    id INTEGER PRIMARY KEY,",
        "CREATE TABLE IF NOT EXISTS feed (\n    id INTEGER PRIMARY KEY AUTOINCREMENT,",
    )
    assert "AUTOINCREMENT,\n    type" in schema and "(eim_transaction_id);" in schema
    old = sqlite3.connect(path / DB_FILE)
    old.executescript(schema)
    for n in range(feed_rows):
        old.execute(
            "INSERT INTO feed (type, data, created) VALUES ('old', ?, 'x')", (f'{{"n": {n}}}',)
        )
    if sequence is not None:
        old.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'feed'", (sequence,))
    old.execute("PRAGMA user_version=2")
    old.commit()
    old.close()


def _sql(path: Path, name: str) -> str:
    with sqlite3.connect(path / DB_FILE) as db:
        return str(
            db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()[0]
        )


def test_a_previous_version_file_is_migrated_and_keeps_its_feed(tmp_path: Path) -> None:
    _previous_version_file(tmp_path, feed_rows=3)

    store = EimStore(tmp_path)
    store.add_euicc(EID)
    order = store.add_order(EID, "psmo", {"operations": []})
    store.update_order(order.id, state=OrderState.SENT, eim_transaction_id=b"\x07" * 8)
    found = store.find_order(EID, eim_transaction_id=b"\x07" * 8)
    feed = store.feed()
    store.close()

    assert found is not None and found.id == order.id
    assert "WHERE eim_transaction_id IS NOT NULL" in _sql(tmp_path, "orders_by_transaction")
    assert "AUTOINCREMENT" not in _sql(tmp_path, "feed")
    # The old rows kept their ids; the new ones follow them.
    assert [(e.id, e.type) for e in feed] == [
        (1, "old"),
        (2, "old"),
        (3, "old"),
        (4, "euicc.registered"),
        (5, "order.queued"),
        (6, "order.sent"),
    ]
    assert feed[0].data == {"n": 0}
    again = EimStore(tmp_path)  # a second open changes nothing
    assert [e.id for e in again.feed()] == [1, 2, 3, 4, 5, 6]
    again.close()


def test_a_feed_whose_sequence_ran_ahead_keeps_autoincrement(tmp_path: Path) -> None:
    _previous_version_file(tmp_path, feed_rows=2, sequence=9)

    store = EimStore(tmp_path)
    store.publish("test.event", {"a": 1})
    feed = store.feed()
    store.close()

    assert "AUTOINCREMENT" in _sql(tmp_path, "feed")
    assert [e.id for e in feed] == [1, 2, 10]  # ids 3..9 were handed out once: not again


def test_updates_not_read_back_return_the_row_a_read_gives(tmp_path: Path) -> None:
    store = EimStore(tmp_path)
    store.add_euicc(EID, labels={"site": "a"})
    queued = store.add_order(EID, "psmo", {"operations": []})
    with store.transaction():
        assert store.euicc(EID) is not None  # kept for the transaction: updated from it
        record = store.update_euicc(
            EID, counter=7, profiles={"8949": ("enabled", 1)}, last_seen="2026-01-01T00:00:00"
        )
        assert store.order(queued.id) == queued  # read in the transaction: kept for it
        sent = store.update_order(
            queued.id, state=OrderState.SENT, package=b"\xbf\x51\x00", counter_value=7
        )
        done = store.update_order(
            queued.id, state=OrderState.DONE, result_json={"k": (1, 2)}, verified=1
        )
    assert record == store.euicc(EID)
    assert record.profiles == {"8949": ["enabled", 1]}  # as JSON reads it back
    assert sent.state == OrderState.SENT and sent.package == b"\xbf\x51\x00"
    # The second update built on the first (not on the order as first read).
    assert done == store.order(queued.id)
    assert (done.package, done.counter_value, done.verified) == (b"\xbf\x51\x00", 7, True)
    assert done.result_json == {"k": [1, 2]}
    # A value SQLite may convert (a bytearray) is read back, not assumed.
    with store.transaction():
        store.euicc(EID)
        converted = store.update_euicc(EID, public_key=bytearray(b"\x01\x02"))
    assert converted == store.euicc(EID) and type(converted.public_key) is bytes
    store.close()


def test_feed_rows_exist_exactly_when_their_transaction_commits(tmp_path: Path) -> None:
    store = EimStore(tmp_path)
    store.publish("first", {})
    with pytest.raises(RuntimeError), store.transaction():
        store.publish("lost", {"n": 1})
        assert [e.type for e in store.feed()] == ["first", "lost"]  # seen inside it
        raise RuntimeError("abandoned")
    with store.transaction():
        store.publish("second", {"n": 2})
        store.publish("third", {"n": 3})
        assert store.last_feed_id() == 3  # the ids follow the rolled-back one's
    assert [(e.id, e.type) for e in store.feed()] == [(1, "first"), (2, "second"), (3, "third")]
    store.close()


def test_a_failed_block_leaves_nothing_and_the_store_stays_usable(tmp_path: Path) -> None:
    store = EimStore(tmp_path)
    store.add_euicc(EID)
    with pytest.raises(ValueError), store.transaction():
        store.update_euicc(EID, counter=5)
        with store.transaction():  # nested: joins, and its failure undoes the whole block
            store.add_order(EID, "psmo", {"operations": []})
            raise ValueError("failed inside")
    record = store.euicc(EID)
    assert record is not None and record.counter == 0
    assert store.orders(EID) == []
    assert not store._db.in_transaction
    with store.transaction():
        store.update_euicc(EID, counter=6)
    assert store.euicc(EID).counter == 6  # type: ignore[union-attr]
    store.close()
