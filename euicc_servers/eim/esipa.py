"""The eIM's ESipa protocol core: EsipaMessageFromIpaToEim in, EsipaMessageFromEimToIpa out.

No HTTP here: :meth:`EimCore.handle` takes the DER of one ESipa message and returns the
answer; both bindings in :mod:`.app` call it (the JSON binding builds the same TLVs first).
State lives in :class:`~.store.EimStore`; downloads are relayed by :class:`~.relay.SmdpRelay`.

This module delivers packages (rules 1, 2); :class:`EimCore` takes the rest from its parts:
:mod:`.results` (rules 3-5: ProvideEimPackageResult, HandleNotification),
:mod:`.notifications` (rule 6), :mod:`.operator` (registrations and orders for the operator
API), :mod:`.relay` (rule 7). :class:`EimSettings` lives in :mod:`.settings`.

Rules
=====

1. GetEimPackage: an EID that is not 16 BCD bytes is invalidEid (3), an unregistered one
   eidNotFound (2); otherwise the oldest *queued* order is delivered and becomes *sent*, or
   noEimPackageAvailable (1). Each delivery carries a fresh random eimTransactionId. A *sent*
   order is never delivered again on its own (the operator may requeue it).
2. An eUICC package is signed when it is delivered: counterValue = the eUICC's last one + 1
   (so counters follow delivery order), stored in the same transaction. It cannot be signed
   without the association token; when the token (or the eUICC's key) is unknown, an
   IpaEuiccDataRequest for ``84`` (and ``A5 A6``) goes first (an *auto* order).
3. Results are matched to orders by eimTransactionId, then (EPRs) by counterValue; a result
   that names neither goes to the oldest *sent* order of its kind. An EPR whose eimId is not
   ours, whose counterValue is not the order's, or whose signature does not verify with the
   eUICC's key is recorded as a *rejected* event: the order stays *sent* and the seqNumber is
   not acknowledged (the genuine result stays on the card). Without a known key the EPR is
   accepted with ``signatureVerified: null``. An EuiccPackageErrorUnsigned (the card refused
   the package) or a signed error fails the order.
4. Acknowledgements: the seqNumbers of accepted EPRs and of notifications delivered inside a
   ProvideEimPackageResult (ePRAndNotifications, IpaEuiccData lists) are acknowledged in the
   response, with any still pending from a HandleNotification that carried a
   ProvideEimPackageResult (which has no response). Otherwise the answer is emptyResponse.
   Notifications sent alone with HandleNotification are not acknowledged (the IPAd removes
   them after the 200/204).
5. The eUICC's key is learnt from its certificate: the operator's registration; an
   IpaEuiccData with ``A5`` and ``A6``; an AuthenticateServerResponse being relayed. From the
   device side the chain must verify against a trusted CI and end at the eUICC's
   euiccCiPKId (when set), and the certificate must name the EID. The token is learnt from an
   IpaEuiccData ``84`` only while unknown.
6. Profile installation results (``BF37``) are forwarded with ES9+ handleNotification (once
   per distinct PIR) to their notificationAddress, or to the address the relayed session used
   when that names the same host (it carries the port), and complete the download order of
   their session. Other notifications are stored only.
7. Downloads are relayed by :class:`~.relay.IndirectDownload` (InitiateAuthentication ...
   CancelSession), which tells the core the eUICC certificates it sees (rule 5).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from euicc_protocol import schema, tlv

from ..common.auth import OperatorAuth
from . import packages
from .operator import EimOperator, RegistrationError
from .packages import MessageError, PackageError, decode_message
from .relay import Answer, IndirectDownload, SmdpRelay
from .results import (
    EID_NOT_FOUND,
    INVALID_EID,
    NO_PACKAGE,
    PACKAGE_KINDS,
    EimResults,
    eid_or_none,
)
from .results import MISSING_EID as MISSING_EID
from .results import UNDEFINED as UNDEFINED
from .settings import EimSettings
from .store import EimStore, EuiccRecord, Order, OrderState, now

__all__ = ["EimCore", "EimSettings", "MessageError", "RegistrationError"]

log = logging.getLogger(__name__)


class EimCore(EimResults, EimOperator):
    """The eIM: ESipa functions for IPAds and the operations behind the operator API."""

    def __init__(
        self,
        settings: EimSettings,
        store: EimStore | None = None,
        relay: SmdpRelay | None = None,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.settings = settings
        self.store = store or EimStore()
        self.eim_fqdn = settings.eim_fqdn
        self._random = random_bytes
        self.auth = OperatorAuth.resolve(
            settings.admin_token,
            open_api=settings.open_operator_api,
            state_dir=self.store.directory,
        )
        self.downloads = IndirectDownload(
            self.store,
            relay,
            default_smdp_address=settings.default_smdp_address,
            session_timeout=settings.session_timeout,
            certificate_seen=lambda eid, euicc, eum: self._learn_certificate(
                eid, euicc, eum, "authenticateServer"
            ),
        )
        self._handlers: dict[bytes, Callable[[bytes], Answer | None]] = {
            b"\xbf\x4f": lambda m: Answer(self.get_eim_package(m)),
            b"\xbf\x50": lambda m: Answer(self.provide_eim_package_result(m)),
            b"\xbf\x3d": self.handle_notification,
            b"\xbf\x39": self.downloads.initiate_authentication,
            b"\xbf\x3b": self.downloads.authenticate_client,
            b"\xbf\x3a": self.downloads.get_bound_profile_package,
            b"\xbf\x41": self.downloads.cancel_session,
        }

    @property
    def admin_token(self) -> str | None:
        """The operator API token (``None`` only when the API was opened on purpose)."""
        return self.auth.token

    @property
    def relay(self) -> SmdpRelay | None:
        """The ES9+ relay to SM-DP+s (``None``: indirect download not offered)."""
        return self.downloads.relay

    @relay.setter
    def relay(self, relay: SmdpRelay | None) -> None:
        self.downloads.relay = relay

    def close_connections(self) -> None:
        """Close the relay's connections to SM-DP+s (they reopen when needed)."""
        close = getattr(self.relay.transport, "close", None) if self.relay else None
        if callable(close):
            close()

    # ================================================================= ESipa entry point

    def handle(self, message: bytes) -> Answer | None:
        """One EsipaMessageFromIpaToEim (DER) → the EsipaMessageFromEimToIpa answer, or
        ``None`` for HandleNotification (no response message).

        Raises:
            MessageError: not a message this eIM takes (malformed, trailing bytes, or
                TransferEimPackageResponse, which belongs to the push direction).
        """
        try:
            item = tlv.read_tlv(message)
        except tlv.TlvError as exc:
            raise MessageError(f"not a TLV: {exc}") from None
        if item.end != len(message):
            raise MessageError("trailing bytes after the message")
        handler = self._handlers.get(item.tag)
        if handler is None:
            raise MessageError(f"unsupported ESipa message {item.tag.hex().upper()}")
        return handler(message)

    # ================================================================= GetEimPackage

    def get_eim_package(self, message: bytes) -> bytes:
        """ESipa.GetEimPackage (rules 1, 2): the ``BF4F`` response."""
        request = decode_message("GetEimPackageRequest", message)
        eid = eid_or_none(request["eidValue"])
        if eid is None:
            return self._package_error(INVALID_EID)
        record = self.store.euicc(eid)
        if record is None:
            return self._package_error(EID_NOT_FOUND)
        changes: dict[str, Any] = {"last_seen": now()}
        if "notifyStateChange" in request:
            change: dict[str, Any] = {"at": now()}
            if "stateChangeCause" in request:
                change["stateChangeCause"] = request["stateChangeCause"]
            if "rPLMN" in request:
                change["rPLMN"] = bytes(request["rPLMN"]).hex().upper()
            changes["state_change"] = change
            log.info("%s reports a state change: %s", eid, change)
        with self.store.transaction():
            record = self.store.update_euicc(eid, **changes)
            package = self._next_package(record)
        if package is None:
            return self._package_error(NO_PACKAGE)
        return tlv.encode_tlv(b"\xbf\x4f", package)

    @staticmethod
    def _package_error(code: int) -> bytes:
        return schema.encode("GetEimPackageResponse", ("eimPackageError", code))

    def _next_package(self, record: EuiccRecord) -> bytes | None:
        while True:
            order = self.store.find_order(record.eid, states=[OrderState.QUEUED])
            if order is None:
                return None
            if order.kind in PACKAGE_KINDS:
                order = self._discovery_first(record) or order
            try:
                return self._deliver(order, record)
            except PackageError as exc:  # validated when queued; a changed schema could do it
                log.error("order %d cannot be built: %s", order.id, exc)
                self.store.update_order(order.id, state=OrderState.FAILED, error=str(exc))

    def _discovery_first(self, record: EuiccRecord) -> Order | None:
        """An auto IpaEuiccDataRequest when the token or key of ``record`` is unknown."""
        if record.association_token is not None and record.public_key is not None:
            return None  # the usual case: no need to read every order of the eUICC
        tags = ""
        if record.association_token is None:
            tags += "84"
        auto = [o for o in self.store.orders(record.eid) if o.origin == "auto"]
        if record.public_key is None and not auto:
            tags += "A5A6"
        if not tags:
            return None
        for stale in auto:
            if stale.state == OrderState.SENT:
                self.store.update_order(
                    stale.id, state=OrderState.FAILED, error="no answer; asked again"
                )
        request: dict[str, Any] = {"type": "euiccData", "tagList": tags}
        if record.euicc_ci_pkid is not None and "A6" in tags:
            request["euiccCiPKIdentifierToBeUsed"] = record.euicc_ci_pkid.hex().upper()
        log.info("%s: asking for %s before signing a package", record.eid, tags)
        return self.store.add_order(record.eid, "euiccData", request, origin="auto")

    def _deliver(self, order: Order, record: EuiccRecord) -> bytes:
        tid = self._random(8)
        counter = None
        if order.kind in PACKAGE_KINDS:
            counter = record.counter + 1
            operations = packages.operations_from_json(order.kind, order.request["operations"])
            signed = packages.euicc_package_signed(
                self.settings.eim_id,
                bytes.fromhex(record.eid),
                counter,
                tid,
                order.kind,
                operations,
            )
            package = packages.euicc_package_request(
                signed, self.settings.signing_key, record.association_token
            )
            self.store.update_euicc(record.eid, counter=counter)
        else:
            package = packages.order_payload(order.kind, order.request, tid)
        self.store.update_order(
            order.id,
            state=OrderState.SENT,
            eim_transaction_id=tid,
            counter_value=counter,
            package=package,
            sent=now(),
        )
        log.info("order %d (%s) sent to %s", order.id, order.kind, record.eid)
        return package
