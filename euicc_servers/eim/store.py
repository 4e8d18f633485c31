"""The eIM's state in SQLite: registered eUICCs, orders, received results, acknowledgements
still to send, and indirect-download sessions. One file survives restarts (``:memory:``
without a state directory).

Tables (one row each):

* ``euiccs`` — an eUICC the eIM manages: EID, its certificate and public key (for EPR
  signatures) and where the key came from, the association token (NULL: not known yet) and
  the last counterValue used in a package;
* ``orders`` — what the operator queued for an EID: its kind (``psmo``, ``eco``,
  ``download``, ``euiccData``), the request as given, its state (``queued`` → ``sent`` →
  ``done``/``failed``, or ``cancelled``), the package as delivered (and delivered again, the
  same bytes, until its result arrives), the accepted result and the last unverified report;
* ``events`` — everything the IPAd delivered (EPRs, notifications, eUICC data, download
  results), accepted or not, with the order it belongs to when known;
* ``acks`` — seqNumbers to acknowledge in the next ProvideEimPackageResultResponse;
* ``sessions`` — indirect downloads relayed to an SM-DP+, by transactionId.

Every change runs in one SQLite transaction: a crash leaves the state before or after it. The
file is in WAL mode with synchronous NORMAL: a commit is not fsynced by itself, so a crash of
the process loses nothing, and a power cut or an OS crash may lose the last transactions (never
the file's consistency) except those that acknowledged results. A transaction that takes
acknowledgements (:meth:`EimStore.take_acks`: its response lets the card delete the results)
has the WAL fsynced after its commit, as synchronous FULL would, before it returns: a result
the card was told to forget is on disk. Inside :meth:`EimStore.deferred_sync` that fsync is
left to the caller (:meth:`EimStore.sync_through`, e.g. in a thread while the event loop
serves others; one fsync covers every commit before it, so concurrent answers share one).
The store is thread-safe (one connection behind a lock); several processes may share the
file (every write transaction is ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypedDict, Unpack

from euicc_protocol.records import evolve

from ..common import pem

__all__ = [
    "DB_FILE",
    "EimStore",
    "Event",
    "EventFields",
    "EuiccRecord",
    "FeedEvent",
    "JsonText",
    "Order",
    "OrderState",
    "Session",
    "StoreError",
    "Conflict",
    "NotFound",
]

DB_FILE = "eim.sqlite3"
_SCHEMA_VERSION = 2
#: The connection's page cache, in KiB (an upper bound: pages are allocated as they are read).
#: Not larger: SQLite's page cache walks its whole hash table (about one slot per cached page)
#: at every commit after a b-tree balance that renumbered pages, which many commits do;
#: with 64 MiB that walk cost more than the few extra page reads 8 MiB brings.
_CACHE_KIB = 8192
#: Rows of each kind (eUICCs, orders) kept in memory from one transaction to the next.
_CACHED_ROWS = 16384
#: Columns added since version 1 (table, column, type), added to an older file at open.
_ADDED_COLUMNS = (
    ("euiccs", "token_source", "TEXT"),
    ("orders", "report", "TEXT"),
    ("euiccs", "sgp32", "TEXT"),
    ("euiccs", "sgp32_source", "TEXT"),
    ("euiccs", "labels", "TEXT"),
    ("euiccs", "delivery", "TEXT"),
    ("orders", "campaign", "INTEGER"),
    ("euiccs", "profiles", "TEXT"),
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS euiccs (
    eid TEXT PRIMARY KEY,
    euicc_certificate BLOB,
    eum_certificate BLOB,
    public_key BLOB,
    key_source TEXT,
    association_token INTEGER,
    token_source TEXT,
    counter INTEGER NOT NULL,
    euicc_ci_pkid BLOB,
    last_seen TEXT,
    state_change TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    labels TEXT,
    delivery TEXT,
    profiles TEXT
);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    eid TEXT NOT NULL,
    kind TEXT NOT NULL,
    request TEXT NOT NULL,
    origin TEXT NOT NULL,
    state TEXT NOT NULL,
    eim_transaction_id BLOB,
    counter_value INTEGER,
    package BLOB,
    result BLOB,
    result_json TEXT,
    verified INTEGER,
    error TEXT,
    report TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    sent TEXT,
    completed TEXT,
    campaign INTEGER
);
CREATE INDEX IF NOT EXISTS orders_by_eid ON orders (eid, state, id);
CREATE INDEX IF NOT EXISTS orders_by_transaction ON orders (eim_transaction_id)
    WHERE eim_transaction_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    eid TEXT,
    order_id INTEGER,
    kind TEXT NOT NULL,
    seq_number INTEGER,
    raw BLOB NOT NULL,
    decoded TEXT,
    verified INTEGER,
    accepted INTEGER NOT NULL,
    note TEXT,
    forwarded TEXT,
    received TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_eid ON events (eid, id);
CREATE TABLE IF NOT EXISTS acks (
    eid TEXT NOT NULL,
    seq_number INTEGER NOT NULL,
    PRIMARY KEY (eid, seq_number)
);
CREATE TABLE IF NOT EXISTS sessions (
    transaction_id TEXT PRIMARY KEY,
    smdp_address TEXT NOT NULL,
    eid TEXT,
    order_id INTEGER,
    state TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS campaigns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    selector TEXT NOT NULL,
    kind TEXT NOT NULL,
    request TEXT NOT NULL,
    rollout TEXT NOT NULL,
    follow INTEGER NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    wave INTEGER NOT NULL,
    wave_started REAL,
    wave_closed REAL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS campaign_members (
    campaign INTEGER NOT NULL,
    eid TEXT NOT NULL,
    seq INTEGER NOT NULL,
    wave INTEGER NOT NULL,
    order_id INTEGER,
    joined TEXT NOT NULL,
    PRIMARY KEY (campaign, eid)
);
CREATE TABLE IF NOT EXISTS webhooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    cursor INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    next_attempt REAL NOT NULL,
    last_error TEXT,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feed (
    id INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    created TEXT NOT NULL
);
"""


class EventFields(TypedDict, total=False):
    """The fields of an event besides its kind and raw bytes (:meth:`EimStore.add_event`);
    all optional, ``accepted`` True unless given."""

    eid: str | None
    order_id: int | None
    seq_number: int | None
    decoded: Any  # a JSON value, or its JsonText
    verified: bool | None
    accepted: bool
    note: str | None
    forwarded: str | None


class JsonText(str):
    """A value's JSON text, dumped once by the caller: a JSON column or an event's decoded
    value given one stores it as it is instead of dumping the value again (for a value
    stored twice, as a result is in its event and in its order)."""


def _json_object(data: dict[str, Any], texts: dict[str, JsonText] | None) -> str:
    """``json.dumps(data)``, with the members named in ``texts`` written as the JSON text
    given for them (the feed's rows are only ever parsed, so member order is free)."""
    if not texts:
        return json.dumps(data)
    head = json.dumps({name: value for name, value in data.items() if name not in texts})
    tail = ", ".join(f"{json.dumps(name)}: {text}" for name, text in texts.items())
    return f"{head[:-1]}, {tail}}}" if len(head) > 2 else f"{{{tail}}}"


class StoreError(ValueError):
    """A store operation is not possible."""


class NotFound(StoreError):
    """No such EID, order or session."""


class Conflict(StoreError):
    """The EID is registered already, or the order is not in a state that allows it."""


class OrderState:
    """The states of an order (strings in the database and the API)."""

    QUEUED = "queued"  # waiting for the IPAd to ask
    SENT = "sent"  # delivered, delivered again at every poll until its result completes it
    DONE = "done"  # its result arrived (signed results: the eUICC signature verified)
    FAILED = "failed"  # a verified error result, or refused when built
    CANCELLED = "cancelled"  # removed by the operator


_stamp: tuple[int, str] = (-1, "")


def now() -> str:
    """The current UTC time as ISO 8601 text (second resolution)."""
    global _stamp
    second = int(time.time())
    if second != _stamp[0]:  # formatted once a second: several rows are stamped per request
        text = dt.datetime.fromtimestamp(second, dt.UTC).isoformat(timespec="seconds")
        _stamp = (second, text)
    return _stamp[1]


def _hex(data: bytes | None) -> str | None:
    return data.hex().upper() if data is not None else None


@dataclass(frozen=True)
class EuiccRecord:
    """One registered eUICC."""

    eid: str
    euicc_certificate: bytes | None
    eum_certificate: bytes | None
    public_key: bytes | None  # SubjectPublicKeyInfo DER, verifies EPR signatures
    key_source: str | None  # operator / ipaEuiccData / authenticateServer
    association_token: int | None  # None: not known yet (the eUICC allocates one)
    token_source: str | None  # operator / ipaEuiccData (unconfirmed) / epr (confirmed)
    counter: int  # last counterValue used; the next package gets counter + 1
    euicc_ci_pkid: bytes | None
    last_seen: str | None
    state_change: dict[str, Any] | None
    created: str
    updated: str
    sgp32: str | None = None  # "1.0" / "1.2" (None: the eIM's default, v1.2)
    sgp32_source: str | None = None  # operator / euiccInfo2
    labels: dict[str, str] | None = None  # operator labels (device groups)
    delivery: dict[str, Any] | None = None  # how packages reach it (:mod:`.delivery`)
    profiles: dict[str, Any] | None = None  # profile states learnt from verified results

    def summary(self) -> dict[str, Any]:
        """The short form published in events."""
        return {
            "eid": self.eid,
            "labels": self.labels or {},
            "delivery": self.delivery or {"mode": "poll"},
            "profiles": self.profiles or {},
            "associationTokenSource": self.token_source,
            "publicKeyKnown": self.public_key is not None,
        }

    def to_json(self) -> dict[str, Any]:
        """The API form (binary values in hex)."""
        return {
            "eid": self.eid,
            "sgp32": self.sgp32,
            "sgp32Source": self.sgp32_source,
            "associationToken": self.association_token,
            "associationTokenSource": self.token_source,
            "counterValue": self.counter,
            "euiccCiPKId": _hex(self.euicc_ci_pkid),
            "publicKeyKnown": self.public_key is not None,
            "keySource": self.key_source,
            "euiccCertificate": pem(self.euicc_certificate) if self.euicc_certificate else None,
            "eumCertificate": pem(self.eum_certificate) if self.eum_certificate else None,
            "lastSeen": self.last_seen,
            "profiles": self.profiles,
            "labels": self.labels or {},
            "delivery": self.delivery or {"mode": "poll"},
            "created": self.created,
            "updated": self.updated,
        }


@dataclass(frozen=True)
class Order:
    """One queued operation for an eUICC and what came of it."""

    id: int
    eid: str
    kind: str  # psmo / eco / download / euiccData
    request: dict[str, Any]  # as the operator gave it (validated)
    origin: str  # operator / auto (queued by the eIM itself)
    state: str
    eim_transaction_id: bytes | None
    counter_value: int | None
    package: bytes | None  # the BF51/BF52/BF54 TLV as delivered
    result: bytes | None  # the accepted result TLV
    result_json: Any
    verified: bool | None  # EPR signature: True, False, or None (no key to check)
    error: str | None
    report: str | None  # the last unverified report (an unsigned error), not acted on
    created: str
    updated: str
    sent: str | None
    completed: str | None
    campaign: int | None = None  # the campaign that queued it

    def summary(self) -> dict[str, Any]:
        """The short form published in events (no package bytes)."""
        return {
            "id": self.id,
            "eid": self.eid,
            "type": self.kind,
            "origin": self.origin,
            "campaign": self.campaign,
            "state": self.state,
            "signatureVerified": self.verified,
            "error": self.error,
            "unverifiedReport": self.report,
            "result": self.result_json,
        }

    def to_json(self) -> dict[str, Any]:
        """The API form (binary values in hex)."""
        return {
            "id": self.id,
            "campaign": self.campaign,
            "eid": self.eid,
            "type": self.kind,
            "request": self.request,
            "origin": self.origin,
            "state": self.state,
            "eimTransactionId": _hex(self.eim_transaction_id),
            "counterValue": self.counter_value,
            "package": _hex(self.package),
            "result": self.result_json,
            "resultRaw": _hex(self.result),
            "signatureVerified": self.verified,
            "error": self.error,
            "unverifiedReport": self.report,
            "created": self.created,
            "updated": self.updated,
            "sent": self.sent,
            "completed": self.completed,
        }


@dataclass(frozen=True)
class Event:
    """Something the IPAd delivered."""

    id: int
    eid: str | None
    order_id: int | None
    kind: str  # epr / notification / euiccData / downloadResult / packageError
    seq_number: int | None
    raw: bytes
    decoded: Any
    verified: bool | None
    accepted: bool
    note: str | None
    forwarded: str | None  # outcome of forwarding to an SM-DP+ (PIRs)
    received: str

    def to_json(self) -> dict[str, Any]:
        """The API form."""
        return {
            "id": self.id,
            "eid": self.eid,
            "orderId": self.order_id,
            "kind": self.kind,
            "seqNumber": self.seq_number,
            "decoded": self.decoded,
            "raw": self.raw.hex().upper(),
            "signatureVerified": self.verified,
            "accepted": self.accepted,
            "note": self.note,
            "forwarded": self.forwarded,
            "received": self.received,
        }


@dataclass(frozen=True)
class Session:
    """An indirect download relayed to an SM-DP+ (transactionId in hex)."""

    transaction_id: str
    smdp_address: str
    eid: str | None
    order_id: int | None
    state: str  # initiated / authenticated / bound / ended
    created: str
    updated: str

    def to_json(self) -> dict[str, Any]:
        """The API form."""
        return {
            "transactionId": self.transaction_id,
            "smdpAddress": self.smdp_address,
            "eid": self.eid,
            "orderId": self.order_id,
            "state": self.state,
            "created": self.created,
            "updated": self.updated,
        }


#: eUICC columns whose change is published as ``euicc.updated``.
_PUBLISHED_EUICC_CHANGES = frozenset(
    {"labels", "delivery", "association_token", "token_source", "public_key"}
)

#: eUICC columns a caller may change.
_EUICC_CHANGEABLE = frozenset(f.name for f in fields(EuiccRecord)) - {"eid", "created", "updated"}

#: eUICC columns kept as JSON text.
_JSON_COLUMNS = ("state_change", "labels", "delivery", "profiles")


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _columns(row: sqlite3.Row) -> dict[str, Any]:
    """The row as {column: value}. ``dict(row)`` looks every name up again among the columns
    (a scan of string comparisons each); pairing the names with the values in order does not."""
    return dict(zip(row.keys(), row, strict=True))


#: In ``EimStore._delivered``: the eimTransactionId was delivered with several orders.
_AMBIGUOUS = -1


def _bound(cache: dict[Any, Any]) -> None:
    """Drop the oldest entries of ``cache`` beyond :data:`_CACHED_ROWS`."""
    while len(cache) > _CACHED_ROWS:
        del cache[next(iter(cache))]


def _json_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


#: Python types a column's value must have to be held by SQLite as given (a value of another
#: type may be converted by the column's affinity: such an update reads its row back).
_TEXT, _INT, _BLOB = (str,), (int,), (bytes,)
_JSON = (object,)  # any value json.dumps takes (compared by identity below)
_EUICC_TYPES: dict[str, tuple[type, ...]] = {
    "euicc_certificate": _BLOB,
    "eum_certificate": _BLOB,
    "public_key": _BLOB,
    "key_source": _TEXT,
    "association_token": _INT,
    "token_source": _TEXT,
    "counter": _INT,
    "euicc_ci_pkid": _BLOB,
    "last_seen": _TEXT,
    "state_change": _JSON,
    "updated": _TEXT,
    "sgp32": _TEXT,
    "sgp32_source": _TEXT,
    "labels": _JSON,
    "delivery": _JSON,
    "profiles": _JSON,
}
_ORDER_TYPES: dict[str, tuple[type, ...]] = {
    "kind": _TEXT,
    "request": _JSON,
    "origin": _TEXT,
    "state": _TEXT,
    "eim_transaction_id": _BLOB,
    "counter_value": _INT,
    "package": _BLOB,
    "result": _BLOB,
    "result_json": _JSON,
    "verified": (bool, int),
    "error": _TEXT,
    "report": _TEXT,
    "updated": _TEXT,
    "sent": _TEXT,
    "completed": _TEXT,
    "campaign": _INT,
}


def _as_stored(types: dict[str, tuple[type, ...]], values: dict[str, Any]) -> bool:
    """Whether every value of an update is held by SQLite as given (JSON: as its text), so
    the row after it is known without reading it back."""
    for name, value in values.items():
        kinds = types.get(name)
        if kinds is None:
            return False  # a column not known here (e.g. the key): read back
        if value is None or kinds is _JSON:
            continue
        if type(value) not in kinds:  # exact types: bool is no INTEGER, bytearray no BLOB
            return False
    return True


def _read_back(values: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """The values of an update as a read of the row gives them: JSON columns from their text
    (a JSON value read back is not always the value dumped: tuples become lists; a
    :class:`JsonText` is stored as it is and read back as the value it holds)."""
    return {
        name: value
        if stored[name] is value and type(value) is not JsonText
        else json.loads(stored[name])
        for name, value in values.items()
    }


class EimStore:
    """The eIM database: ``directory/eim.sqlite3``, or in memory without a directory."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        #: The state directory (``None``: in memory).
        self.directory = Path(directory) if directory is not None else None
        if directory is None:
            target = ":memory:"
        else:
            Path(directory).mkdir(parents=True, exist_ok=True)
            target = str(Path(directory) / DB_FILE)
        # Autocommit mode: transactions are opened explicitly by transaction().
        self._db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._depth = 0  # nesting of transaction() blocks in the thread holding the lock
        self._transaction = _Transaction(self)
        # eUICC records read or written in transactions, by EID; used only inside a
        # transaction (it holds the database's write lock: no other connection, e.g. another
        # worker process, can change a row meanwhile). They are kept from one transaction to
        # the next while no other connection commits in between (SQLite's data_version says
        # so at each BEGIN); a rollback or any other connection's commit empties them.
        self._records: dict[str, EuiccRecord] = {}
        # Orders read or written in transactions, by id (the same rule as _records).
        self._orders: dict[int, Order] = {}
        # The order each eimTransactionId was delivered with, by id (the same rule): a result
        # finds its order without a query (see find_order).
        self._delivered: dict[bytes, int] = {}
        # EIDs known to have no row in acks (the same rule): take_acks skips its DELETE.
        self._no_acks: set[str] = set()
        self._data_version: int | None = None  # data_version when the caches were valid
        # Feed rows (type, JSON, created) published in the open transaction: inserted at its
        # commit, in order, in one statement (see publish).
        self._feed: list[tuple[str, str, str]] = []
        # seqNumbers to acknowledge that the open transaction added, by EID: written to the
        # acks table at its commit unless a take_acks in the same transaction took them (a
        # result acknowledged in its own response never touches the table).
        self._new_acks: dict[str, set[int]] = {}
        # Whether the open transaction took acknowledgements (it is made durable at commit).
        self._acknowledges = False
        self._wal = Path(directory) / f"{DB_FILE}-wal" if directory is not None else None
        #: Commits that took acknowledgements so far, and how many of them are durable.
        self.acknowledged = 0
        self.durable = 0
        self._sync_lock = threading.Lock()  # not the store's lock: an fsync blocks no query
        self._wal_fd: int | None = None  # the WAL, kept open for its fsyncs (see _sync)
        self._deferred = threading.local()
        if directory is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # see the module notes
        # A page cache that holds the pages a fleet's cycles keep coming back to (see
        # _CACHE_KIB for why not more). SQLite checks the cache against the WAL index at
        # every transaction's start, so another process's commits never leave it stale.
        self._db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        self._db.executescript(_SCHEMA)  # CREATE ... IF NOT EXISTS: a no-op on a known file
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, 1, _SCHEMA_VERSION):
            raise StoreError(f"{target}: unknown schema version {version}")
        for table, column, kind in _ADDED_COLUMNS:
            present = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        self._migrate()

    def _migrate(self) -> None:
        """Bring a file made by an earlier version to the current layout (in one transaction:
        the workers sharing a file may open it together; the first one does it):

        * ``orders_by_transaction`` indexes only orders that have a transaction id (a queued
          order's NULL is no entry to write and delete again);
        * ``feed`` without AUTOINCREMENT: its inserts no longer write ``sqlite_sequence``.
          Its ids are still never reused (SQLite gives the highest id + 1, and no feed row is
          ever deleted), unless the sequence ran ahead of the highest id: then it is kept.
        """
        with self.transaction():
            schema = dict(
                self._db.execute(
                    "SELECT name, sql FROM sqlite_master WHERE name IN "
                    "('orders_by_transaction', 'feed')"
                ).fetchall()
            )
            if "WHERE" not in schema["orders_by_transaction"].upper():
                self._db.execute("DROP INDEX orders_by_transaction")
                self._db.execute(
                    "CREATE INDEX orders_by_transaction ON orders (eim_transaction_id)"
                    " WHERE eim_transaction_id IS NOT NULL"
                )
            if "AUTOINCREMENT" in schema["feed"].upper():
                seq = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'feed'")
                ran = seq.fetchone()
                top = self._db.execute("SELECT MAX(id) FROM feed").fetchone()[0]
                if ran is None or ran[0] <= (top or 0):
                    self._db.execute(
                        "CREATE TABLE feed_rebuilt (id INTEGER PRIMARY KEY, type TEXT NOT NULL,"
                        " data TEXT NOT NULL, created TEXT NOT NULL)"
                    )
                    self._db.execute(
                        "INSERT INTO feed_rebuilt (id, type, data, created)"
                        " SELECT id, type, data, created FROM feed ORDER BY id"
                    )
                    self._db.execute("DROP TABLE feed")
                    self._db.execute("ALTER TABLE feed_rebuilt RENAME TO feed")
                    self._db.execute("DELETE FROM sqlite_sequence WHERE name = 'feed'")

    def close(self) -> None:
        """Close the database."""
        with self._lock, self._sync_lock:
            self._db.close()
            self._forget()
            if self._wal_fd is not None:
                os.close(self._wal_fd)
                self._wal_fd = None

    def transaction(self) -> _Transaction:
        """Run the block in one transaction (nested blocks join the outer one):
        ``with store.transaction(): ...``."""
        return self._transaction

    def _begin(self) -> None:
        """Enter a transaction block (the store's lock held until its exit)."""
        self._lock.acquire()
        if self._depth:  # nested: joins the open transaction
            self._depth += 1
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._lock.release()
            raise
        if version != self._data_version:  # another connection committed: forget it all
            self._forget()
            self._data_version = version
        self._depth = 1

    def _forget(self) -> None:
        """Empty the caches of rows kept across transactions (see ``_records``)."""
        self._records.clear()
        self._orders.clear()
        self._delivered.clear()
        self._no_acks.clear()

    def _end(self, ok: bool) -> None:
        """Leave a transaction block: the outermost commits (``ok``) or rolls back."""
        try:
            if self._depth > 1:
                self._depth -= 1
                return
            committed = False
            try:
                if ok:
                    self._commit()
                    committed = True
                else:
                    self._db.execute("ROLLBACK")
            finally:
                self._depth = 0
                if committed:
                    self._bound_caches()
                else:  # what the transaction cached may be what it undid
                    self._forget()
                self._feed.clear()
                self._new_acks.clear()
                self._acknowledges = False
        finally:
            self._lock.release()

    def _bound_caches(self) -> None:
        """Keep the caches within :data:`_CACHED_ROWS` rows each (the oldest go first)."""
        _bound(self._records)
        _bound(self._orders)
        _bound(self._delivered)
        if len(self._no_acks) > _CACHED_ROWS:
            self._no_acks.clear()

    def _commit(self) -> None:
        try:
            self._write_new_acks()
            self._write_feed()
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # nothing half-written: the whole block undone
                self._db.execute("ROLLBACK")
            raise
        if self._acknowledges:
            self.acknowledged += 1
            if not getattr(self._deferred, "on", False):
                self.sync_through(self.acknowledged)

    @contextmanager
    def deferred_sync(self) -> Iterator[None]:
        """In this block (this thread), a commit that takes acknowledgements is not fsynced:
        before the acknowledgements leave, the caller calls :meth:`sync_through` with
        :attr:`acknowledged` as it is after the block."""
        self._deferred.on = True
        try:
            yield
        finally:
            self._deferred.on = False

    def sync_through(self, count: int) -> None:
        """Make the first ``count`` acknowledging commits durable: one fsync covers every
        commit before it, so nothing is done when an earlier call's fsync covered them."""
        with self._sync_lock:
            if self.durable >= count:
                return
            reached = self.acknowledged  # every commit counted here is in the WAL already
            self._sync()
            self.durable = max(self.durable, reached)

    def _sync(self) -> None:
        """fdatasync the WAL (the main file when there is no WAL: the checkpoint that emptied it
        synced the main file itself)."""
        if self._wal is None:
            return  # in memory
        fd = self._wal_fd
        # The WAL is kept open between syncs: SQLite resets it in place and deletes it only
        # when the last connection closes (ours is open). Should it have been unlinked all the
        # same (no links left), the name is opened again.
        if fd is not None and os.fstat(fd).st_nlink == 0:
            os.close(fd)
            fd = self._wal_fd = None
        if fd is None:
            try:
                fd = self._wal_fd = os.open(self._wal, os.O_RDONLY)
            except FileNotFoundError:
                fd = os.open(self._wal.with_name(DB_FILE), os.O_RDONLY)
                try:
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
                return
        os.fdatasync(fd)  # as SQLite syncs its WAL: the data and the size

    def _write_new_acks(self) -> None:
        rows = [(eid, seq) for eid, seqs in self._new_acks.items() for seq in seqs]
        if rows:
            self._no_acks.difference_update(self._new_acks)
            self._db.executemany("INSERT OR IGNORE INTO acks (eid, seq_number) VALUES (?, ?)", rows)

    def _write_feed(self) -> None:
        if self._feed:
            self._db.executemany(
                "INSERT INTO feed (type, data, created) VALUES (?, ?, ?)", self._feed
            )
            self._feed.clear()

    def _one(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._db.execute(sql, args).fetchone()
            return row

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    def _exec(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self.transaction():
            return self._db.execute(sql, args)

    # -- eUICCs ---------------------------------------------------------------------------

    @staticmethod
    def _euicc(row: sqlite3.Row) -> EuiccRecord:
        values = _columns(row)
        for name in _JSON_COLUMNS:
            values[name] = _json_or_none(values[name])
        return EuiccRecord(**values)

    def add_euicc(self, eid: str, *, counter: int = 0, **values: Any) -> EuiccRecord:
        """Register an eUICC.

        Raises:
            Conflict: the EID is registered already.
        """
        stamp = now()
        allowed = {f.name for f in fields(EuiccRecord)} - {"eid", "counter", "created", "updated"}
        if set(values) - allowed:
            raise ValueError(f"unknown eUICC fields {sorted(set(values) - allowed)}")
        for name in _JSON_COLUMNS:
            if values.get(name) is not None:
                values[name] = json.dumps(values[name])
        columns = {"eid": eid, "counter": counter, "created": stamp, "updated": stamp, **values}
        names = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        with self.transaction():
            if self.euicc(eid) is not None:
                raise Conflict(f"EID {eid} is registered already")
            self._db.execute(
                f"INSERT INTO euiccs ({names}) VALUES ({marks})", list(columns.values())
            )
            record = self.euicc(eid)
            assert record is not None
            self.publish("euicc.registered", record.summary())
        return record

    def euicc(self, eid: str) -> EuiccRecord | None:
        """The registered eUICC ``eid``, if any."""
        with self._lock:
            record = self._records.get(eid) if self._depth else None
            if record is None:
                row = self._db.execute("SELECT * FROM euiccs WHERE eid = ?", (eid,)).fetchone()
                if row is None:
                    return None
                record = self._euicc(row)
                if self._depth:
                    self._records[eid] = record
            return record

    def euiccs(self) -> list[EuiccRecord]:
        """All registered eUICCs, oldest first."""
        return [self._euicc(r) for r in self._all("SELECT * FROM euiccs ORDER BY created, eid")]

    def update_euicc(self, eid: str, **values: Any) -> EuiccRecord:
        """Change columns of a registered eUICC.

        Raises:
            NotFound: no such EID.
        """
        unknown = values.keys() - _EUICC_CHANGEABLE
        if unknown:
            raise ValueError(f"unknown eUICC fields {sorted(unknown)}")
        values["updated"] = now()
        stored = dict(values)
        for name in _JSON_COLUMNS:
            if name in values and values[name] is not None:
                stored[name] = json.dumps(values[name])
        assignments = ", ".join(f"{k} = ?" for k in stored)
        with self.transaction():
            known = self._records.get(eid)
            if known is not None and _as_stored(_EUICC_TYPES, values):
                # The record as it was read in this transaction, with the values written (as
                # SQLite holds them: JSON read back from its text), instead of RETURNING *.
                if (
                    self._db.execute(
                        f"UPDATE euiccs SET {assignments} WHERE eid = ?", [*stored.values(), eid]
                    ).rowcount
                    != 1
                ):
                    raise NotFound(f"EID {eid} is not registered")
                record = evolve(known, **_read_back(values, stored))
            else:
                rows = self._db.execute(
                    f"UPDATE euiccs SET {assignments} WHERE eid = ? RETURNING *",
                    [*stored.values(), eid],
                ).fetchall()  # all: the statement runs to its end
                if not rows:
                    raise NotFound(f"EID {eid} is not registered")
                record = self._euicc(rows[0])
            self._records[eid] = record
            # Every poll changes lastSeen and every package the counter: not worth an event.
            changed = sorted(set(values) & _PUBLISHED_EUICC_CHANGES)
            if changed:
                self.publish("euicc.updated", {**record.summary(), "changed": changed})
        return record

    def delete_euicc(self, eid: str) -> None:
        """Forget an eUICC with its orders, acknowledgements and events.

        Raises:
            NotFound: no such EID.
        """
        with self.transaction():
            self._records.pop(eid, None)
            self._orders.clear()
            self._delivered.clear()
            self._new_acks.pop(eid, None)
            self._no_acks.discard(eid)
            if self._db.execute("DELETE FROM euiccs WHERE eid = ?", (eid,)).rowcount != 1:
                raise NotFound(f"EID {eid} is not registered")
            self.publish("euicc.deleted", {"eid": eid})
            for table in ("orders", "acks", "events"):
                self._db.execute(f"DELETE FROM {table} WHERE eid = ?", (eid,))

    # -- orders ---------------------------------------------------------------------------

    @staticmethod
    def _order(row: sqlite3.Row) -> Order:
        values = _columns(row)
        values["request"] = json.loads(values["request"])
        values["result_json"] = _json_or_none(values["result_json"])
        values["verified"] = _bool(values["verified"])
        return Order(**values)

    def add_order(
        self,
        eid: str,
        kind: str,
        request: dict[str, Any],
        *,
        origin: str = "operator",
        campaign: int | None = None,
    ) -> Order:
        """Queue an order for ``eid`` (which must be registered); publishes ``order.queued``."""
        stamp = now()
        with self.transaction():
            if self.euicc(eid) is None:
                raise NotFound(f"EID {eid} is not registered")
            rows = self._db.execute(
                "INSERT INTO orders (eid, kind, request, origin, state, created, updated, "
                "campaign) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (eid, kind, json.dumps(request), origin, OrderState.QUEUED, stamp, stamp, campaign),
            ).fetchall()
            order = self._order(rows[0])
            self._orders[order.id] = order
            self.publish("order.queued", order.summary())
        return order

    def order(self, order_id: int) -> Order | None:
        """The order ``order_id``, if any."""
        row = self._one("SELECT * FROM orders WHERE id = ?", (order_id,))
        return self._read_order(row) if row is not None else None

    def require_order(self, order_id: int) -> Order:
        """The order ``order_id``.

        Raises:
            NotFound: no such order.
        """
        order = self.order(order_id)
        if order is None:
            raise NotFound(f"no order {order_id}")
        return order

    def orders(
        self, eid: str | None = None, *, states: Sequence[str] = (), kinds: Sequence[str] = ()
    ) -> list[Order]:
        """Orders (of ``eid``; in ``states``; of ``kinds``), oldest first."""
        sql, args = "SELECT * FROM orders WHERE 1", list[Any]()
        if eid is not None:
            sql += " AND eid = ?"
            args.append(eid)
        if kinds:
            sql += f" AND kind IN ({', '.join('?' for _ in kinds)})"
            args.extend(kinds)
        if states:
            sql += f" AND state IN ({', '.join('?' for _ in states)})"
            args.extend(states)
        return [self._order(r) for r in self._all(sql + " ORDER BY id", args)]

    def find_order(
        self,
        eid: str | None,
        *,
        kinds: Sequence[str] = (),
        states: Sequence[str] = (),
        counter_value: int | None = None,
        eim_transaction_id: bytes | None = None,
    ) -> Order | None:
        """The oldest order matching every criterion given."""
        if eim_transaction_id is not None and counter_value is None and not states:
            known = self._delivered_order(eid, kinds, eim_transaction_id)
            if known is not None:
                return known
        sql, args = "SELECT * FROM orders WHERE 1", list[Any]()
        for column, value in (
            ("eid", eid),
            ("counter_value", counter_value),
            ("eim_transaction_id", eim_transaction_id),
        ):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        for column, values in (("kind", kinds), ("state", states)):
            if values:
                sql += f" AND {column} IN ({', '.join('?' for _ in values)})"
                args.extend(values)
        row = self._one(sql + " ORDER BY id LIMIT 1", args)
        return self._read_order(row) if row is not None else None

    def _delivered_order(
        self, eid: str | None, kinds: Sequence[str], eim_transaction_id: bytes
    ) -> Order | None:
        """The order this process delivered with ``eim_transaction_id`` (kept as orders are,
        see ``_delivered``) when it matches ``eid`` and ``kinds``; else None (ask SQLite).
        It is the oldest order with that id, as the query would answer, because the eIM
        draws a fresh random id (64 bits) for each order it delivers
        (``esipa.EimCore._deliver``); an id delivered with two orders is left to the query."""
        with self._lock:
            if not self._depth:
                return None
            order_id = self._delivered.get(eim_transaction_id)
            order = self._orders.get(order_id) if order_id is not None else None
            if (
                order is None
                or order.eim_transaction_id != eim_transaction_id
                or (eid is not None and order.eid != eid)
                or (kinds and order.kind not in kinds)
            ):
                return None
            return order

    def next_order(self, eid: str) -> Order | None:
        """The order to deliver to ``eid`` next: its oldest *sent* order that holds a package
        (to be delivered again), else its oldest *queued* one; ``None`` when neither exists.
        One query (what two :meth:`find_order` calls would answer)."""
        row = self._one(
            # Each half walks the index (eid, state, id) in order and stops at its first row.
            "SELECT * FROM (SELECT * FROM orders WHERE eid = ? AND state = ?"
            " AND package IS NOT NULL ORDER BY id LIMIT 1) UNION ALL"
            " SELECT * FROM (SELECT * FROM orders WHERE eid = ? AND state = ? ORDER BY id LIMIT 1)",
            (eid, OrderState.SENT, eid, OrderState.QUEUED),
        )
        return self._read_order(row) if row is not None else None

    def _read_order(self, row: sqlite3.Row) -> Order:
        """The order of ``row``. Inside a transaction, a cached order is the row as it is
        (not decoded again), and a decoded one is cached (an update builds on it instead of
        reading the row again)."""
        with self._lock:  # _depth is this thread's only while it holds the lock
            if not self._depth:
                return self._order(row)
            order = self._orders.get(row["id"])
            if order is None:
                order = self._orders[row["id"]] = self._order(row)
            return order

    def update_order(self, order_id: int, **values: Any) -> Order:
        """Change columns of an order (``result_json`` is stored as JSON). An order read or
        written in the open transaction is not read again.

        Raises:
            NotFound: no such order.
        """
        values["updated"] = now()
        stored = dict(values)
        for name in ("request", "result_json"):
            if name in values:
                value = values[name]
                stored[name] = value if type(value) is JsonText else json.dumps(value)
        assignments = ", ".join(f"{k} = ?" for k in stored)
        with self.transaction():
            base = self._orders.get(order_id)
            if base is not None and _as_stored(_ORDER_TYPES, values):
                # The order as read (or written) in this transaction, with the values written
                # (as SQLite holds them), instead of RETURNING *.
                if (
                    self._db.execute(
                        f"UPDATE orders SET {assignments} WHERE id = ?",
                        [*stored.values(), order_id],
                    ).rowcount
                    != 1
                ):
                    raise NotFound(f"no order {order_id}")
                before: tuple[str, str | None] = (base.state, base.report)
                changed = _read_back(values, stored)
                if "verified" in changed:
                    changed["verified"] = _bool(changed["verified"])
                order = evolve(base, **changed)
            else:
                if base is not None:
                    before = (base.state, base.report)
                else:
                    row = self._db.execute(
                        "SELECT state, report FROM orders WHERE id = ?", (order_id,)
                    ).fetchone()
                    if row is None:
                        raise NotFound(f"no order {order_id}")
                    before = (row[0], row[1])
                rows = self._db.execute(
                    f"UPDATE orders SET {assignments} WHERE id = ? RETURNING *",
                    [*stored.values(), order_id],
                ).fetchall()
                if not rows:
                    raise NotFound(f"no order {order_id}")
                order = self._order(rows[0])
            self._orders[order_id] = order
            tid = order.eim_transaction_id
            if tid is not None:
                # An id seen with another order too (only a non-random source repeats one):
                # left to the query, which answers with the oldest.
                seen = self._delivered.get(tid, order_id)
                self._delivered[tid] = order_id if seen == order_id else _AMBIGUOUS
            if order.state != before[0]:
                result = values.get("result_json")
                texts = {"result": result} if type(result) is JsonText else None
                self.publish(f"order.{order.state}", order.summary(), texts=texts)
            elif order.report != before[1] and order.report is not None:
                self.publish("order.unverified", order.summary())
        return order

    # -- events and acknowledgements -----------------------------------------------------

    def add_event(self, kind: str, raw: bytes, **fields: Unpack[EventFields]) -> Event:
        """Record something the IPAd delivered; the event as stored."""
        event_id, received, text = self._insert_event(kind, raw, fields)
        verified = fields.get("verified")
        # The row as SQLite holds it (the decoded value as read back from its JSON text), not
        # read back: it is exactly what was just written.
        return Event(
            event_id,
            fields.get("eid"),
            fields.get("order_id"),
            kind,
            fields.get("seq_number"),
            bytes(raw),
            json.loads(text),
            None if verified is None else bool(verified),
            bool(fields.get("accepted", True)),
            fields.get("note"),
            fields.get("forwarded"),
            received,
        )

    def record_event(self, kind: str, raw: bytes, **fields: Unpack[EventFields]) -> int:
        """:meth:`add_event` for a caller that needs only the new event's id (its decoded
        value is not read back from the JSON text)."""
        return self._insert_event(kind, raw, fields)[0]

    def _insert_event(self, kind: str, raw: bytes, fields: EventFields) -> tuple[int, str, str]:
        """Insert an events row; its id, received time and decoded JSON text."""
        decoded = fields.get("decoded")
        text = decoded if type(decoded) is JsonText else json.dumps(decoded)
        received = now()
        cursor = self._exec(
            "INSERT INTO events (kind, raw, eid, order_id, seq_number, decoded, verified, "
            "accepted, note, forwarded, received) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                kind,
                raw,
                fields.get("eid"),
                fields.get("order_id"),
                fields.get("seq_number"),
                text,
                fields.get("verified"),
                fields.get("accepted", True),
                fields.get("note"),
                fields.get("forwarded"),
                received,
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid, received, text

    def find_event(self, kind: str, raw: bytes) -> Event | None:
        """The first recorded event of ``kind`` with exactly these bytes (a repeat delivery)."""
        row = self._one("SELECT * FROM events WHERE kind = ? AND raw = ? ORDER BY id", (kind, raw))
        return self._event(row) if row is not None else None

    def set_forwarded(self, event_id: int, outcome: str) -> None:
        """Record how forwarding an event (a PIR) to its SM-DP+ went."""
        self._exec("UPDATE events SET forwarded = ? WHERE id = ?", (outcome, event_id))

    @staticmethod
    def _event(row: sqlite3.Row) -> Event:
        values = _columns(row)
        values["decoded"] = _json_or_none(values["decoded"])
        values["verified"] = _bool(values["verified"])
        values["accepted"] = bool(values["accepted"])
        return Event(**values)

    def events(self, eid: str | None = None, *, order_id: int | None = None) -> list[Event]:
        """Recorded events (of ``eid`` / of an order), oldest first."""
        sql, args = "SELECT * FROM events WHERE 1", list[Any]()
        if eid is not None:
            sql += " AND eid = ?"
            args.append(eid)
        if order_id is not None:
            sql += " AND order_id = ?"
            args.append(order_id)
        return [self._event(r) for r in self._all(sql + " ORDER BY id", args)]

    def add_acks(self, eid: str, seq_numbers: Sequence[int]) -> None:
        """Remember seqNumbers to acknowledge to the IPAd of ``eid``."""
        with self.transaction():  # written when it commits (see _new_acks)
            self._new_acks.setdefault(eid, set()).update(seq_numbers)

    def take_acks(self, eid: str) -> list[int]:
        """The pending seqNumbers of ``eid`` (ascending), removed from the store: they go out
        in this response. A lost response makes the IPAd send the results again, and they are
        acknowledged again then."""
        with self.transaction():
            taken = self._new_acks.pop(eid, set())
            if eid not in self._no_acks:
                rows = self._db.execute(
                    "DELETE FROM acks WHERE eid = ? RETURNING seq_number", (eid,)
                ).fetchall()
                taken.update(r[0] for r in rows)
                self._no_acks.add(eid)
            if taken:
                self._acknowledges = True  # durable before the acknowledgement goes out
        return sorted(taken)

    def pending_acks(self, eid: str) -> list[int]:
        """The seqNumbers waiting to be acknowledged to ``eid`` (not removed)."""
        with self._lock:
            rows = self._all("SELECT seq_number FROM acks WHERE eid = ?", (eid,))
            return sorted(self._new_acks.get(eid, set()).union(r[0] for r in rows))

    # -- sessions -------------------------------------------------------------------------

    def add_session(self, transaction_id: str, smdp_address: str, order_id: int | None) -> Session:
        """Start tracking an indirect download (a repeated transactionId starts over)."""
        stamp = now()
        self._exec(
            "INSERT OR REPLACE INTO sessions (transaction_id, smdp_address, eid, order_id, state, "
            "created, updated) VALUES (?, ?, NULL, ?, 'initiated', ?, ?)",
            (transaction_id, smdp_address, order_id, stamp, stamp),
        )
        session = self.session(transaction_id)
        assert session is not None
        return session

    def session(self, transaction_id: str) -> Session | None:
        """The session ``transaction_id`` (hex), if any."""
        row = self._one("SELECT * FROM sessions WHERE transaction_id = ?", (transaction_id,))
        return Session(**_columns(row)) if row is not None else None

    def sessions(self) -> list[Session]:
        """All sessions, oldest first."""
        return [
            Session(**_columns(r)) for r in self._all("SELECT * FROM sessions ORDER BY created")
        ]

    def update_session(self, transaction_id: str, **values: Any) -> Session:
        """Change columns of a session.

        Raises:
            NotFound: no such session.
        """
        values["updated"] = now()
        assignments = ", ".join(f"{k} = ?" for k in values)
        cursor = self._exec(
            f"UPDATE sessions SET {assignments} WHERE transaction_id = ?",
            [*values.values(), transaction_id],
        )
        if cursor.rowcount != 1:
            raise NotFound(f"no session {transaction_id}")
        session = self.session(transaction_id)
        assert session is not None
        return session

    def drop_sessions_before(self, stamp: str) -> int:
        """Forget sessions not updated since ``stamp`` (ISO text); returns how many."""
        return self._exec("DELETE FROM sessions WHERE updated < ?", (stamp,)).rowcount

    # -- plain SQL for the modules that keep their own tables here (campaigns, webhooks) --

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Rows of a query."""
        return self._all(sql, args)

    def execute(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run one statement (in the caller's transaction, or its own)."""
        with self._lock:
            self._forget()  # it may change rows behind the caches' back
            return self._exec(sql, args)

    # -- the northbound feed --------------------------------------------------------------

    def publish(
        self, kind: str, data: dict[str, Any], *, texts: dict[str, JsonText] | None = None
    ) -> None:
        """Record an event of ``kind`` for the northbound feed (in the caller's transaction,
        so an event exists exactly when its change was committed). The rows of a transaction
        are inserted when it commits, in the order published (one statement for all).
        ``texts``: members of ``data`` whose JSON text the caller has already (taken as it
        is instead of dumping their values again)."""
        with self.transaction():
            self._feed.append((kind, _json_object(data, texts), now()))

    def _flush_feed(self) -> None:
        """Insert the open transaction's feed rows now (a read of the feed inside it sees
        them)."""
        if self._depth:
            self._write_feed()

    def feed(self, after: int = 0, limit: int = 500) -> list[FeedEvent]:
        """Published events with an id above ``after``, oldest first (at most ``limit``)."""
        with self._lock:
            self._flush_feed()
            rows = self._all(
                "SELECT * FROM feed WHERE id > ? ORDER BY id LIMIT ?", (after, max(1, limit))
            )
        return [FeedEvent(r["id"], r["type"], json.loads(r["data"]), r["created"]) for r in rows]

    def last_feed_id(self) -> int:
        """The id of the newest published event (0: none yet)."""
        with self._lock:
            self._flush_feed()
            row = self._one("SELECT MAX(id) FROM feed")
        return int(row[0]) if row is not None and row[0] is not None else 0


class _Transaction:
    """The context manager :meth:`EimStore.transaction` returns (one per store, reused: its
    state is the store's, under the store's lock)."""

    __slots__ = ("_store",)

    def __init__(self, store: EimStore) -> None:
        self._store = store

    def __enter__(self) -> None:
        self._store._begin()

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self._store._end(kind is None)


@dataclass(frozen=True)
class FeedEvent:
    """One northbound event: ``id`` grows with every event, ``type`` is ``order.done``,
    ``campaign.stopped``, ... and ``data`` its JSON body."""

    id: int
    type: str
    data: dict[str, Any]
    created: str

    def to_json(self) -> dict[str, Any]:
        """The form sent to SSE clients and webhooks."""
        return {"id": self.id, "type": self.type, "created": self.created, "data": self.data}
