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
   eidNotFound (2). An order already *sent* to that EID is delivered again, the same bytes
   (same eimTransactionId and counterValue), at every poll until its result completes it
   (rule 3): a package taken by another client, or a lost response, strands nothing. Otherwise
   the oldest *queued* order is delivered and becomes *sent*, or noEimPackageAvailable (1).
   notifyStateChange is recorded as an unverified ``stateChange`` event, not as a fact.
2. An eUICC package is signed when it is first delivered: counterValue = the eUICC's last
   one + 1 (so counters follow delivery order), stored in the same transaction. It cannot be
   signed without the association token; when the token (or the eUICC's key) is unknown, an
   IpaEuiccDataRequest for ``84`` (and ``A5 A6``) goes first (an *auto* order; a tag a
   completed auto order asked for already is not asked again).
3. Results are matched to orders by (EID, eimTransactionId); a JSON result without eidValue
   by eimTransactionId alone; an EPR without eimTransactionId by (EID, counterValue). Only a
   result that completes its order changes it: for a package an EPR (result or signed
   error) of this eimId whose euiccSignEPR/EPE verifies with the key of the order's eUICC;
   for a download a ProfileInstallationResult whose euiccSignPIR verifies likewise; for an
   eUICC data request the IpaEuiccData answering it (it is not signed: what it says is
   marked unverified). Unsigned errors (EuiccPackageErrorUnsigned, profileDownloadError,
   ipaEuiccDataResponseError, the IPAd's eimPackageResultError) and results that do not
   verify are recorded as events and as the order's ``unverifiedReport``; the order stays
   *sent*.
4. Acknowledgements: the seqNumbers of verified EPRs and of verified notifications delivered
   inside a ProvideEimPackageResult (ePRAndNotifications, IpaEuiccData lists) are
   acknowledged in the response, with any still pending from a HandleNotification that
   carried a ProvideEimPackageResult (which has no response). Otherwise the answer is
   emptyResponse. Nothing unverified is acknowledged (that would make the card delete
   results the eIM never got).
5. Facts come from signed data or the operator: the eUICC's key from a certificate whose
   chain verifies against a trusted CI (through the EUM), ends at the eUICC's euiccCiPKId
   (when set) and names the EID (the operator's registration, an IpaEuiccData ``A5``/``A6``,
   an AuthenticateServerResponse the SM-DP+ accepted); the association token from the
   operator, or from a verified EPR (the signature covers it). An IpaEuiccData ``84``
   answering this eIM's own request for it, while the token is unknown, is taken as an
   unconfirmed token (``associationTokenSource`` ipaEuiccData) that signs packages until a
   verified EPR confirms it; an unsolicited one is ignored.
6. Notifications are verified before anything is done with them: a ProfileInstallationResult
   with the key of its eUICC, an OtherSignedNotification with the chain it carries (which must
   name the EID). A verified PIR completes the download order of its session and is
   forwarded once, with ES9+ handleNotification, to the SM-DP+ that order used (never to an
   address named inside it). All are stored as events.
7. Downloads are relayed by :class:`~.relay.IndirectDownload` (InitiateAuthentication ...
   CancelSession), which tells the core the eUICC certificates the SM-DP+ accepted (rule 5).
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from typing import Any

from euicc_protocol import schema, tlv

from ..common.auth import OperatorAuth
from . import packages
from .campaigns import Campaigns
from .northbound import Webhooks
from .operator import EimOperator, RegistrationError
from .packages import MessageError, PackageError, decode_message
from .push import Pusher
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
from .versions import EimVersions

__all__ = ["EimCore", "EimSettings", "MessageError", "RegistrationError"]

log = logging.getLogger(__name__)


def _push_verify(ca_pem: bytes | None) -> ssl.SSLContext | bool:
    """How the devices' TLS certificates are checked for pushes: ``ca_pem``, else system CAs."""
    if ca_pem is None:
        return True
    return ssl.create_default_context(cadata=ca_pem.decode("ascii"))


class EimCore(EimResults, EimOperator, EimVersions):
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
            smdp_addresses=settings.smdp_addresses,
            session_timeout=settings.session_timeout,
            certificate_seen=lambda eid, euicc, eum: self._learn_certificate(
                eid, euicc, eum, "authenticateServer"
            ),
        )
        #: Campaigns and device groups (:mod:`.campaigns`).
        self.campaigns = Campaigns(self)
        #: Northbound webhooks (:mod:`.northbound`).
        self.webhooks = Webhooks(self.store)
        #: Push and wake-up delivery (:mod:`.push`).
        self.pusher = Pusher(self, verify=_push_verify(settings.push_ca))
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

    def handle(self, message: bytes, *, json: bool = False) -> Answer | None:
        """One EsipaMessageFromIpaToEim (DER) → the EsipaMessageFromEimToIpa answer, or
        ``None`` for HandleNotification (no response message); in the SGP.32 version of the
        eUICC (:mod:`.versions`; ``json``: the message came in the JSON binding).

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
        return self.speak(item.tag, message, handler, json)

    # ================================================================= GetEimPackage

    def get_eim_package(self, message: bytes) -> bytes:
        """ESipa.GetEimPackage (rules 1, 2): the ``BF4F`` response."""
        request = decode_message("GetEimPackageRequest", message)
        eid = eid_or_none(request["eidValue"])
        if eid is None:
            return self._package_error(INVALID_EID)
        with self.store.transaction():
            record = self.store.euicc(eid)
            if record is None:
                return self._package_error(EID_NOT_FOUND)
            # lastSeen is written with the counter of a package signed now (one UPDATE).
            seen = {"last_seen": now()}
            if "notifyStateChange" in request:
                change: dict[str, Any] = {"notifyStateChange": True}
                if "stateChangeCause" in request:
                    change["stateChangeCause"] = request["stateChangeCause"]
                if "rPLMN" in request:
                    change["rPLMN"] = bytes(request["rPLMN"]).hex().upper()
                # What the IPAd says, unsigned: an event to show, not a fact to act on.
                self.store.add_event(
                    "stateChange", message, eid=eid, decoded=change, note="unverified report"
                )
                log.info("%s reports a state change: %s", eid, change)
            package = self._next_package(record, seen)
            if seen:
                self.store.update_euicc(eid, **seen)
        if package is None:
            return self._package_error(NO_PACKAGE)
        return tlv.encode_tlv(b"\xbf\x4f", package)

    @staticmethod
    def _package_error(code: int) -> bytes:
        return schema.encode("GetEimPackageResponse", ("eimPackageError", code))

    def next_package(self, record: EuiccRecord) -> bytes | None:
        """The package to deliver to ``record`` now (rules 1, 2; the caller holds a store
        transaction): the one sent already, else the next queued order's, signed and marked
        sent; ``None`` when nothing waits."""
        return self._next_package(record)

    def _next_package(
        self, record: EuiccRecord, changes: dict[str, Any] | None = None
    ) -> bytes | None:
        """``next_package``; ``changes`` (eUICC columns) are written with the counter of a
        package signed now, and then emptied."""
        # One look-up: the package sent already, else the oldest queued order.
        order = self.store.next_order(record.eid)
        while True:
            if order is None:
                return None
            if order.state == OrderState.SENT:
                log.info("order %d (%s) delivered again to %s", order.id, order.kind, record.eid)
                assert order.package is not None
                return order.package
            if order.kind in PACKAGE_KINDS:
                order = self._discovery_first(record) or order
            try:
                return self._deliver(order, record, changes)
            except PackageError as exc:  # validated when queued; a changed schema could do it
                log.error("order %d cannot be built: %s", order.id, exc)
                self.store.update_order(order.id, state=OrderState.FAILED, error=str(exc))
            order = self.store.find_order(record.eid, states=[OrderState.QUEUED])

    def _discovery_first(self, record: EuiccRecord) -> Order | None:
        """An auto IpaEuiccDataRequest when the token or key of ``record`` is unknown (rule 2)."""
        if record.association_token is not None and record.public_key is not None:
            return None  # the usual case: no need to read every order of the eUICC
        auto = [o for o in self.store.orders(record.eid) if o.origin == "auto"]
        waiting = [o for o in auto if o.state == OrderState.QUEUED]
        if waiting:
            return waiting[0]
        asked = "".join(o.request.get("tagList", "") for o in auto if o.state == OrderState.DONE)
        tags = ""
        if record.association_token is None and "84" not in asked:
            tags += "84"
        if record.public_key is None and "A5A6" not in asked:
            tags += "A5A6"
        if not tags:
            return None
        request: dict[str, Any] = {"type": "euiccData", "tagList": tags}
        if record.euicc_ci_pkid is not None and "A6" in tags:
            request["euiccCiPKIdentifierToBeUsed"] = record.euicc_ci_pkid.hex().upper()
        log.info("%s: asking for %s before signing a package", record.eid, tags)
        return self.store.add_order(record.eid, "euiccData", request, origin="auto")

    def _deliver(
        self, order: Order, record: EuiccRecord, changes: dict[str, Any] | None = None
    ) -> bytes:
        tid = self._random(8)
        counter = None
        if order.kind in PACKAGE_KINDS:
            counter = record.counter + 1
            operations = packages.stored_operations(order.kind, order.request["operations"])
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
            self.store.update_euicc(record.eid, counter=counter, **(changes or {}))
            if changes:
                changes.clear()
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
