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
file is in WAL mode with synchronous NORMAL, as fits a reference server: commits are not
fsynced one by one (that cost about 0.3 ms each), so a crash of the process loses nothing, but
a power cut or an OS crash may lose the last transactions (never the file's consistency). The
store is thread-safe (one connection behind a lock).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..common import pem

__all__ = [
    "DB_FILE",
    "EimStore",
    "Event",
    "EuiccRecord",
    "Order",
    "OrderState",
    "Session",
    "StoreError",
    "Conflict",
    "NotFound",
]

DB_FILE = "eim.sqlite3"
_SCHEMA_VERSION = 2
#: Columns added since version 1 (table, column, type), added to an older file at open.
_ADDED_COLUMNS = (
    ("euiccs", "token_source", "TEXT"),
    ("orders", "report", "TEXT"),
    ("euiccs", "sgp32", "TEXT"),
    ("euiccs", "sgp32_source", "TEXT"),
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
    updated TEXT NOT NULL
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
    completed TEXT
);
CREATE INDEX IF NOT EXISTS orders_by_eid ON orders (eid, state, id);
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
"""


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


def now() -> str:
    """The current UTC time as ISO 8601 text (second resolution)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


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

    def to_json(self) -> dict[str, Any]:
        """The API form (binary values in hex)."""
        return {
            "id": self.id,
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


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _json_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


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
        self._depth = 0
        if directory is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # see the module notes
        self._db.executescript(_SCHEMA)  # CREATE ... IF NOT EXISTS: a no-op on a known file
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, 1, _SCHEMA_VERSION):
            raise StoreError(f"{target}: unknown schema version {version}")
        for table, column, kind in _ADDED_COLUMNS:
            present = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the block in one transaction (nested blocks join the outer one)."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                self._depth = 0

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
        values = dict(row)
        values["state_change"] = _json_or_none(values["state_change"])
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
        if values.get("state_change") is not None:
            values["state_change"] = json.dumps(values["state_change"])
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
        return record

    def euicc(self, eid: str) -> EuiccRecord | None:
        """The registered eUICC ``eid``, if any."""
        row = self._one("SELECT * FROM euiccs WHERE eid = ?", (eid,))
        return self._euicc(row) if row is not None else None

    def euiccs(self) -> list[EuiccRecord]:
        """All registered eUICCs, oldest first."""
        return [self._euicc(r) for r in self._all("SELECT * FROM euiccs ORDER BY created, eid")]

    def update_euicc(self, eid: str, **values: Any) -> EuiccRecord:
        """Change columns of a registered eUICC.

        Raises:
            NotFound: no such EID.
        """
        allowed = {f.name for f in fields(EuiccRecord)} - {"eid", "created", "updated"}
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"unknown eUICC fields {sorted(unknown)}")
        if "state_change" in values and values["state_change"] is not None:
            values["state_change"] = json.dumps(values["state_change"])
        values["updated"] = now()
        assignments = ", ".join(f"{k} = ?" for k in values)
        with self.transaction():
            cursor = self._db.execute(
                f"UPDATE euiccs SET {assignments} WHERE eid = ?", [*values.values(), eid]
            )
            if cursor.rowcount != 1:
                raise NotFound(f"EID {eid} is not registered")
        record = self.euicc(eid)
        assert record is not None
        return record

    def delete_euicc(self, eid: str) -> None:
        """Forget an eUICC with its orders, acknowledgements and events.

        Raises:
            NotFound: no such EID.
        """
        with self.transaction():
            if self._db.execute("DELETE FROM euiccs WHERE eid = ?", (eid,)).rowcount != 1:
                raise NotFound(f"EID {eid} is not registered")
            for table in ("orders", "acks", "events"):
                self._db.execute(f"DELETE FROM {table} WHERE eid = ?", (eid,))

    # -- orders ---------------------------------------------------------------------------

    @staticmethod
    def _order(row: sqlite3.Row) -> Order:
        values = dict(row)
        values["request"] = json.loads(values["request"])
        values["result_json"] = _json_or_none(values["result_json"])
        values["verified"] = _bool(values["verified"])
        return Order(**values)

    def add_order(
        self, eid: str, kind: str, request: dict[str, Any], *, origin: str = "operator"
    ) -> Order:
        """Queue an order for ``eid`` (which must be registered)."""
        stamp = now()
        with self.transaction():
            if self.euicc(eid) is None:
                raise NotFound(f"EID {eid} is not registered")
            cursor = self._db.execute(
                "INSERT INTO orders (eid, kind, request, origin, state, created, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (eid, kind, json.dumps(request), origin, OrderState.QUEUED, stamp, stamp),
            )
            order_id = cursor.lastrowid
        assert order_id is not None
        return self.require_order(order_id)

    def order(self, order_id: int) -> Order | None:
        """The order ``order_id``, if any."""
        row = self._one("SELECT * FROM orders WHERE id = ?", (order_id,))
        return self._order(row) if row is not None else None

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
        return self._order(row) if row is not None else None

    def update_order(self, order_id: int, **values: Any) -> Order:
        """Change columns of an order (``result_json`` is stored as JSON).

        Raises:
            NotFound: no such order.
        """
        if "result_json" in values:
            values["result_json"] = json.dumps(values["result_json"])
        if "request" in values:
            values["request"] = json.dumps(values["request"])
        values["updated"] = now()
        assignments = ", ".join(f"{k} = ?" for k in values)
        with self.transaction():
            cursor = self._db.execute(
                f"UPDATE orders SET {assignments} WHERE id = ?", [*values.values(), order_id]
            )
            if cursor.rowcount != 1:
                raise NotFound(f"no order {order_id}")
        return self.require_order(order_id)

    # -- events and acknowledgements -----------------------------------------------------

    def add_event(
        self,
        kind: str,
        raw: bytes,
        *,
        eid: str | None = None,
        order_id: int | None = None,
        seq_number: int | None = None,
        decoded: Any = None,
        verified: bool | None = None,
        accepted: bool = True,
        note: str | None = None,
        forwarded: str | None = None,
    ) -> Event:
        """Record something the IPAd delivered."""
        cursor = self._exec(
            "INSERT INTO events (eid, order_id, kind, seq_number, raw, decoded, verified, "
            "accepted, note, forwarded, received) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                eid,
                order_id,
                kind,
                seq_number,
                raw,
                json.dumps(decoded),
                verified,
                accepted,
                note,
                forwarded,
                now(),
            ),
        )
        row = self._one("SELECT * FROM events WHERE id = ?", (cursor.lastrowid,))
        assert row is not None
        return self._event(row)

    def find_event(self, kind: str, raw: bytes) -> Event | None:
        """The first recorded event of ``kind`` with exactly these bytes (a repeat delivery)."""
        row = self._one("SELECT * FROM events WHERE kind = ? AND raw = ? ORDER BY id", (kind, raw))
        return self._event(row) if row is not None else None

    def set_forwarded(self, event_id: int, outcome: str) -> None:
        """Record how forwarding an event (a PIR) to its SM-DP+ went."""
        self._exec("UPDATE events SET forwarded = ? WHERE id = ?", (outcome, event_id))

    @staticmethod
    def _event(row: sqlite3.Row) -> Event:
        values = dict(row)
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
        with self.transaction():
            for seq in seq_numbers:
                self._db.execute(
                    "INSERT OR IGNORE INTO acks (eid, seq_number) VALUES (?, ?)", (eid, seq)
                )

    def take_acks(self, eid: str) -> list[int]:
        """The pending seqNumbers of ``eid`` (ascending), removed from the store: they go out
        in this response. A lost response makes the IPAd send the results again, and they are
        acknowledged again then."""
        with self.transaction():
            rows = self._db.execute(
                "SELECT seq_number FROM acks WHERE eid = ? ORDER BY seq_number", (eid,)
            ).fetchall()
            self._db.execute("DELETE FROM acks WHERE eid = ?", (eid,))
        return [r[0] for r in rows]

    def pending_acks(self, eid: str) -> list[int]:
        """The seqNumbers waiting to be acknowledged to ``eid`` (not removed)."""
        rows = self._all("SELECT seq_number FROM acks WHERE eid = ? ORDER BY seq_number", (eid,))
        return [r[0] for r in rows]

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
        return Session(**dict(row)) if row is not None else None

    def sessions(self) -> list[Session]:
        """All sessions, oldest first."""
        return [Session(**dict(r)) for r in self._all("SELECT * FROM sessions ORDER BY created")]

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
