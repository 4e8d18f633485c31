"""Profile download orders of the SM-DP+ and their life cycle, persisted across restarts.

An order says "this matchingId downloads this profile package" (SGP.22 ES2+.DownloadOrder +
ConfirmOrder in one step), optionally only to one EID and only with a confirmation code.

Rules (everything that changes an order's state goes through :data:`TRANSITIONS`):

===============  ============================  ===========================================
event            from                          to
===============  ============================  ===========================================
start            released, in-progress,        in-progress (downloaded stays downloaded:
                 downloaded                    a retry of a delivered BPP)
bpp              in-progress, downloaded       downloaded
installed        downloaded                    installed (ProfileInstallationResult ok)
install-failed   downloaded                    failed (ProfileInstallationResult error)
expire           in-progress                   released (session timed out / restart)
cancel-retry     in-progress, downloaded       released (cancelSession: postponed, timeout,
                                               loadBppExecutionError, undefinedReason)
cancel-final     in-progress, downloaded       cancelled (cancelSession: endUserRejection,
                                               pprNotAllowed, metadataMismatch)
cc-exhausted     in-progress, downloaded       failed (too many wrong confirmation codes)
release          any                           released (operator; counters reset)
===============  ============================  ===========================================

Going back to *released* forgets the EID an unpinned order was bound to, so another device
may take it. A confirmation code is stored only as SHA-256(CC), which is all that checking
hashCc = SHA-256(SHA-256(CC) ‖ transactionId) needs (SGP.22 v2.5 §5.7.5, ES10b.PrepareDownload).

Persistence: one JSON file (``orders.json``) in the state directory, replaced atomically
(write to a temporary file, fsync, rename) on every change, so a crash leaves the previous
or the new version. Orders found *in-progress* at load time go back to *released*: sessions
live in memory and did not survive the restart.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from euicc_protocol import saip, schema

__all__ = [
    "CANCEL_FINAL_REASONS",
    "TRANSITIONS",
    "Order",
    "OrderError",
    "OrderEvent",
    "OrderState",
    "OrderStore",
    "ProfileSource",
    "build_store_metadata",
    "cc_digest",
]

log = logging.getLogger(__name__)

ORDERS_FILE = "orders.json"
_FORMAT = 1


class OrderError(ValueError):
    """An order operation is not possible (unknown or duplicate matchingId, bad package)."""


class OrderState(enum.Enum):
    """Where an order stands."""

    RELEASED = "released"
    IN_PROGRESS = "in-progress"
    DOWNLOADED = "downloaded"
    INSTALLED = "installed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class OrderEvent(enum.Enum):
    """What happens to an order (the rows of the table in the module docstring)."""

    START = "start"
    BPP = "bpp"
    INSTALLED = "installed"
    INSTALL_FAILED = "install-failed"
    EXPIRE = "expire"
    CANCEL_RETRY = "cancel-retry"
    CANCEL_FINAL = "cancel-final"
    CC_EXHAUSTED = "cc-exhausted"
    RELEASE = "release"


_S = OrderState
_E = OrderEvent
TRANSITIONS: dict[tuple[OrderEvent, OrderState], OrderState] = {
    (_E.START, _S.RELEASED): _S.IN_PROGRESS,
    (_E.START, _S.IN_PROGRESS): _S.IN_PROGRESS,
    (_E.START, _S.DOWNLOADED): _S.DOWNLOADED,
    (_E.BPP, _S.IN_PROGRESS): _S.DOWNLOADED,
    (_E.BPP, _S.DOWNLOADED): _S.DOWNLOADED,
    (_E.INSTALLED, _S.DOWNLOADED): _S.INSTALLED,
    (_E.INSTALL_FAILED, _S.DOWNLOADED): _S.FAILED,
    (_E.EXPIRE, _S.IN_PROGRESS): _S.RELEASED,
    (_E.CANCEL_RETRY, _S.IN_PROGRESS): _S.RELEASED,
    (_E.CANCEL_RETRY, _S.DOWNLOADED): _S.RELEASED,
    (_E.CANCEL_FINAL, _S.IN_PROGRESS): _S.CANCELLED,
    (_E.CANCEL_FINAL, _S.DOWNLOADED): _S.CANCELLED,
    (_E.CC_EXHAUSTED, _S.IN_PROGRESS): _S.FAILED,
    (_E.CC_EXHAUSTED, _S.DOWNLOADED): _S.FAILED,
    **{(_E.RELEASE, s): _S.RELEASED for s in OrderState},
}

#: CancelSessionReason values after which the order is not offered again (SGP.22 §5.6.5
#: leaves the SM-DP+ reaction open; a user who refused the profile should not get it pushed
#: again without the operator releasing it).
CANCEL_FINAL_REASONS = frozenset({0, 3, 4})  # endUserRejection, pprNotAllowed, metadataMismatch

_PROFILE_CLASSES = {"test": 0, "provisioning": 1, "operational": 2}
_ALL_EVENTS = schema.bits([0, 1, 2, 3])  # install, enable, disable, delete


def cc_digest(confirmation_code: str) -> bytes:
    """SHA-256 of the confirmation code as ASCII bytes: the inner hash of hashCc."""
    return hashlib.sha256(confirmation_code.encode("utf-8")).digest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Order:
    """One download order. Fields in camelCase in JSON (:meth:`to_json`)."""

    matching_id: str
    profile_path: str
    iccid: str  # digits, from the package header when the order was added
    eid: str | None = None  # the only EID allowed to download (None: the first one to ask)
    cc_hash: bytes | None = field(default=None, repr=False)  # SHA-256(CC)
    replace_session_keys: bool = True
    profile_name: str | None = None
    service_provider_name: str | None = None
    profile_class: str | None = None  # test / provisioning / operational; None: from package
    ppr1: bool = False
    ppr2: bool = False
    notifications: bool = True  # ask the eUICC for install/enable/disable/delete notifications
    state: OrderState = OrderState.RELEASED
    bound_eid: str | None = None
    transaction_id: str | None = None  # hex, the session that last worked on the order
    euicc_certificate: bytes | None = field(default=None, repr=False)  # DER, for late PIRs
    cc_failures: int = 0
    downloads: int = 0  # BPPs delivered
    result: dict[str, Any] | None = None  # the last ProfileInstallationResult, summarised
    events: tuple[dict[str, Any], ...] = ()  # other notifications received
    created: str = field(default_factory=_now)
    updated: str = field(default_factory=_now)

    @property
    def cc_required(self) -> bool:
        """Whether a confirmation code is needed (ccRequiredFlag)."""
        return self.cc_hash is not None

    def to_json(self, *, public: bool = False) -> dict[str, Any]:
        """The order as a JSON object; ``public`` leaves out the confirmation-code hash and
        the certificate (what the operator API shows)."""
        out: dict[str, Any] = {
            "matchingId": self.matching_id,
            "profilePath": self.profile_path,
            "iccid": self.iccid,
            "eid": self.eid,
            "ccRequired": self.cc_required,
            "replaceSessionKeys": self.replace_session_keys,
            "profileName": self.profile_name,
            "serviceProviderName": self.service_provider_name,
            "profileClass": self.profile_class,
            "ppr1": self.ppr1,
            "ppr2": self.ppr2,
            "notifications": self.notifications,
            "state": self.state.value,
            "boundEid": self.bound_eid,
            "transactionId": self.transaction_id,
            "ccFailures": self.cc_failures,
            "downloads": self.downloads,
            "result": self.result,
            "events": list(self.events),
            "created": self.created,
            "updated": self.updated,
        }
        if not public:
            out["ccHash"] = self.cc_hash.hex() if self.cc_hash else None
            out["euiccCertificate"] = (
                self.euicc_certificate.hex() if self.euicc_certificate else None
            )
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Order:
        """Inverse of :meth:`to_json` (non-public form)."""

        def hex_or_none(key: str) -> bytes | None:
            value = data.get(key)
            return bytes.fromhex(value) if value else None

        return cls(
            matching_id=data["matchingId"],
            profile_path=data["profilePath"],
            iccid=data["iccid"],
            eid=data.get("eid"),
            cc_hash=hex_or_none("ccHash"),
            replace_session_keys=bool(data.get("replaceSessionKeys", True)),
            profile_name=data.get("profileName"),
            service_provider_name=data.get("serviceProviderName"),
            profile_class=data.get("profileClass"),
            ppr1=bool(data.get("ppr1", False)),
            ppr2=bool(data.get("ppr2", False)),
            notifications=bool(data.get("notifications", True)),
            state=OrderState(data.get("state", "released")),
            bound_eid=data.get("boundEid"),
            transaction_id=data.get("transactionId"),
            euicc_certificate=hex_or_none("euiccCertificate"),
            cc_failures=int(data.get("ccFailures", 0)),
            downloads=int(data.get("downloads", 0)),
            result=data.get("result"),
            events=tuple(data.get("events", ())),
            created=data.get("created", _now()),
            updated=data.get("updated", _now()),
        )


@dataclass(frozen=True)
class ProfileSource:
    """A profile package read from disk: its bytes and what
    :func:`euicc_protocol.saip.read_package` found."""

    upp: bytes
    package: saip.SaipPackage

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> ProfileSource:
        """Read and check an Unprotected Profile Package.

        The file is read on every call; its check is done once per distinct content (a
        bounded cache keyed by the file's bytes).

        Raises:
            OrderError: the file cannot be read or is not a valid package.
        """
        try:
            upp = Path(path).read_bytes()
            return cls(upp, _checked_package(upp))
        except OSError as exc:
            raise OrderError(f"cannot read profile package {path}: {exc}") from exc
        except saip.SaipError as exc:
            raise OrderError(f"{path} is not a valid profile package: {exc}") from exc


#: Packages already read, keyed by their exact bytes: every download reads its order's file
#: (so a replaced file is seen at once) but decodes each distinct package only once.
_PACKAGES: collections.OrderedDict[bytes, saip.SaipPackage] = collections.OrderedDict()
_PACKAGES_MAX = 16
_PACKAGES_LOCK = threading.Lock()


def _checked_package(upp: bytes) -> saip.SaipPackage:
    """:func:`saip.read_package` of ``upp``, from the cache when these bytes were read before
    (the result is immutable; a refused package is not kept and is refused again)."""
    with _PACKAGES_LOCK:
        package = _PACKAGES.get(upp)
        if package is not None:
            _PACKAGES.move_to_end(upp)
            return package
    package = saip.read_package(upp)
    with _PACKAGES_LOCK:
        _PACKAGES[upp] = package
        while len(_PACKAGES) > _PACKAGES_MAX:
            _PACKAGES.popitem(last=False)
    return package


def build_store_metadata(
    order: Order,
    package: saip.SaipPackage,
    notification_address: str,
    default_service_provider: str,
) -> bytes:
    """The ``BF25`` StoreMetadataRequest for ``order`` (profileMetadata and the BPP's ``88``s).

    ICCID from the package header (EF coding); profile name from the order, else the header's
    profileType, else the matchingId; service provider from the order, else EF.SPN, else
    ``default_service_provider``; class from the order, else *test* when the profileType says
    so (as TS.48 packages do), else *operational*.
    """
    profile_type = package.profile_type or ""
    profile_class = order.profile_class or (
        "test" if "test" in profile_type.lower() else "operational"
    )
    value: dict[str, Any] = {
        "iccid": package.iccid_ef,
        "serviceProviderName": (
            order.service_provider_name or package.service_provider_name or default_service_provider
        )[:32],
        "profileName": (order.profile_name or profile_type or order.matching_id)[:64],
        "profileClass": _PROFILE_CLASSES[profile_class],
    }
    if order.notifications:
        value["notificationConfigurationInfo"] = [
            {"profileManagementOperation": _ALL_EVENTS, "notificationAddress": notification_address}
        ]
    pprs = [bit for bit, on in ((1, order.ppr1), (2, order.ppr2)) if on]
    if pprs:
        value["profilePolicyRules"] = schema.bits(pprs)
    return schema.encode("StoreMetadataRequest", value)


class OrderStore:
    """The orders, in memory and (with a ``directory``) in ``orders.json`` there.

    Thread-safe; every method that changes an order writes the file before returning.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self._lock = threading.RLock()
        self._orders: dict[str, Order] = {}
        self._path = Path(directory) / ORDERS_FILE if directory is not None else None
        #: The state directory (``None``: in memory).
        self.directory = Path(directory) if directory is not None else None
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._load()

    # -- persistence -------------------------------------------------------------------

    def _load(self) -> None:
        assert self._path is not None
        if not self._path.exists():
            return
        data = json.loads(self._path.read_text("utf-8"))
        if data.get("format") != _FORMAT:
            raise OrderError(f"{self._path}: unknown format {data.get('format')!r}")
        restarted = []
        for item in data["orders"]:
            order = Order.from_json(item)
            if order.state is OrderState.IN_PROGRESS:
                order = self._moved(order, OrderEvent.EXPIRE)
                restarted.append(order.matching_id)
            self._orders[order.matching_id] = order
        if restarted:
            log.info("released %d order(s) whose session ended with the restart", len(restarted))
            self._save()

    def _save(self) -> None:
        if self._path is None:
            return
        body = json.dumps(
            {"format": _FORMAT, "orders": [o.to_json() for o in self._orders.values()]},
            indent=1,
        )
        fd, tmp = tempfile.mkstemp(prefix=".orders-", dir=self._path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # -- queries ---------------------------------------------------------------------

    def get(self, matching_id: str) -> Order | None:
        """The order with this matchingId, if any."""
        with self._lock:
            return self._orders.get(matching_id)

    def __iter__(self) -> Iterator[Order]:
        with self._lock:
            return iter(list(self._orders.values()))

    def __len__(self) -> int:
        return len(self._orders)

    def by_transaction(self, transaction_id: str) -> Order | None:
        """The order a session (hex transactionId) worked on last."""
        with self._lock:
            for order in self._orders.values():
                if order.transaction_id == transaction_id:
                    return order
        return None

    def default_for_eid(self, eid: str) -> Order | None:
        """The oldest released order pinned to ``eid`` (default SM-DP+ flow, no matchingId)."""
        with self._lock:
            for order in self._orders.values():
                if order.eid == eid and order.state is OrderState.RELEASED:
                    return order
        return None

    def by_iccid(self, iccid: str, eid: str | None = None) -> Order | None:
        """The order of a profile (ICCID digits), preferring the one bound to ``eid``."""
        with self._lock:
            found = [o for o in self._orders.values() if o.iccid == iccid]
            for order in found:
                if eid is not None and eid in (order.bound_eid, order.eid):
                    return order
            return found[0] if found else None

    # -- changes ---------------------------------------------------------------------

    def add_order(
        self,
        matching_id: str,
        profile_package_path: str | os.PathLike[str],
        *,
        eid: str | None = None,
        confirmation_code: str | None = None,
        replace_session_keys: bool = True,
        profile_name: str | None = None,
        service_provider_name: str | None = None,
        profile_class: str | None = None,
        ppr1: bool = False,
        ppr2: bool = False,
        notifications: bool = True,
    ) -> Order:
        """Add a released order for the package at ``profile_package_path``.

        The package is read and checked now, so a bad file is refused here rather than in
        the middle of a download.

        Raises:
            OrderError: duplicate or invalid matchingId, bad package, bad EID, class or code.
        """
        if not matching_id or len(matching_id) > 255 or any(c.isspace() for c in matching_id):
            raise OrderError(f"invalid matchingId {matching_id!r}")
        if profile_class is not None and profile_class not in _PROFILE_CLASSES:
            raise OrderError(f"profile class must be one of {sorted(_PROFILE_CLASSES)}")
        if eid is not None and not (len(eid) == 32 and eid.isdigit()):
            raise OrderError(f"EID must be 32 digits, got {eid!r}")
        if confirmation_code is not None and not confirmation_code:
            raise OrderError("an empty confirmation code is not a confirmation code")
        source = ProfileSource.read(profile_package_path)
        order = Order(
            matching_id=matching_id,
            profile_path=str(Path(profile_package_path).resolve()),
            iccid=source.package.iccid,
            eid=eid,
            cc_hash=cc_digest(confirmation_code) if confirmation_code is not None else None,
            replace_session_keys=replace_session_keys,
            profile_name=profile_name,
            service_provider_name=service_provider_name,
            profile_class=profile_class,
            ppr1=ppr1,
            ppr2=ppr2,
            notifications=notifications,
        )
        with self._lock:
            if matching_id in self._orders:
                raise OrderError(f"an order with matchingId {matching_id!r} exists")
            self._orders[matching_id] = order
            self._save()
        log.info("order %s: %s (ICCID %s)", matching_id, order.profile_path, order.iccid)
        return order

    def remove(self, matching_id: str) -> Order:
        """Delete an order.

        Raises:
            OrderError: no such order.
        """
        with self._lock:
            order = self._orders.pop(matching_id, None)
            if order is None:
                raise OrderError(f"no order with matchingId {matching_id!r}")
            self._save()
            return order

    def update(self, matching_id: str, **changes: Any) -> Order:
        """Change fields of an order other than its state (counters, session data)."""
        if "state" in changes:
            raise ValueError("states change through transition()")
        with self._lock:
            order = self._require(matching_id)
            order = dataclasses.replace(order, updated=_now(), **changes)
            self._orders[matching_id] = order
            self._save()
            return order

    def transition(self, matching_id: str, event: OrderEvent, **changes: Any) -> Order:
        """Apply ``event`` (and field ``changes``) to an order, following :data:`TRANSITIONS`.

        Raises:
            OrderError: no such order, or the event is not allowed in its state.
        """
        with self._lock:
            order = self._require(matching_id)
            moved = self._moved(dataclasses.replace(order, **changes), event)
            self._orders[matching_id] = moved
            self._save()
        if moved.state is not order.state:
            log.info(
                "order %s: %s -> %s (%s)",
                matching_id,
                order.state.value,
                moved.state.value,
                event.value,
            )
        return moved

    def can(self, matching_id: str, event: OrderEvent) -> bool:
        """Whether ``event`` is allowed for the order now."""
        order = self.get(matching_id)
        return order is not None and (event, order.state) in TRANSITIONS

    def _require(self, matching_id: str) -> Order:
        order = self._orders.get(matching_id)
        if order is None:
            raise OrderError(f"no order with matchingId {matching_id!r}")
        return order

    @staticmethod
    def _moved(order: Order, event: OrderEvent) -> Order:
        target = TRANSITIONS.get((event, order.state))
        if target is None:
            raise OrderError(
                f"order {order.matching_id}: {event.value} is not allowed in state "
                f"{order.state.value}"
            )
        changes: dict[str, Any] = {"state": target, "updated": _now()}
        if target is OrderState.RELEASED and order.state is not OrderState.RELEASED:
            # Back on the shelf: an unpinned order may go to another device next time.
            changes["bound_eid"] = None
        if event is OrderEvent.RELEASE:
            changes.update(cc_failures=0, transaction_id=None, bound_eid=None)
        return dataclasses.replace(order, **changes)
