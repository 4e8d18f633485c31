"""The eIM's ESipa protocol core: EsipaMessageFromIpaToEim in, EsipaMessageFromEimToIpa out.

No HTTP here: :meth:`EimCore.handle` takes the DER of one ESipa message and returns the
answer; both bindings in :mod:`.app` call it (the JSON binding builds the same TLVs first).
State lives in :class:`~.store.EimStore`; downloads are relayed by :class:`~.relay.SmdpRelay`.

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
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from rsp import pki, schema, tlv
from rsp.eid import InvalidEid, eid_from_bytes, is_valid_eid
from servers.smdpp import FunctionFailed

from ..common import value_to_json
from . import packages
from .packages import (
    EimConfigurationData,
    MessageError,
    PackageError,
    decode_message,
    message_parts,
)
from .relay import Answer, IndirectDownload, SmdpRelay
from .store import Conflict, EimStore, EuiccRecord, NotFound, Order, OrderState, now

__all__ = ["EimCore", "EimSettings", "MessageError", "RegistrationError"]

log = logging.getLogger(__name__)

# GetEimPackageResponse.eimPackageError / ProvideEimPackageResultResponse error codes
NO_PACKAGE, EID_NOT_FOUND, INVALID_EID, MISSING_EID, UNDEFINED = 1, 2, 3, 4, 127
_PACKAGE_KINDS = ("psmo", "eco")
_PACKAGE_ERRORS = {1: "invalidPackageFormat", 2: "unknownPackage", 127: "undefinedError"}
_EPR_ERRORS = {3: "invalidEid", 4: "replayError", 6: "counterValueOutOfRange", 15: "sizeOverflow"}


class RegistrationError(ValueError):
    """Operator input for an eUICC registration is invalid."""


class _ResultError(Exception):
    """A ProvideEimPackageResult answered with provideEimPackageResultError ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class EimSettings:
    """What the core needs besides its state: identity, key, trust anchors, defaults.

    ``eim_fqdn`` is where IPAds reach the eIM (``host:port``; set by the server when it binds
    a port). ``tls_trust_certificate`` (DER) is given to eUICCs as trustedCertificateTls (the
    CA of the eIM's TLS certificate); ``None`` when serving plain HTTP. ``trusted_ci_keys``
    verify eUICC certificate chains; ``euicc_ci_pkid`` is the default euiccCiPKId.
    """

    eim_id: str
    signing_key: ec.EllipticCurvePrivateKey = field(repr=False)
    eim_fqdn: str | None = None
    eim_id_type: int | None = None
    tls_trust_certificate: bytes | None = None
    trusted_ci_keys: Mapping[bytes, ec.EllipticCurvePublicKey] = field(default_factory=dict)
    euicc_ci_pkid: bytes | None = None
    default_smdp_address: str | None = None
    session_timeout: float = 3600.0
    admin_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.eim_id or len(self.eim_id.encode()) > 128:
            raise ValueError("eimId must be 1..128 bytes")
        if self.eim_id_type is None:
            object.__setattr__(self, "eim_id_type", _guess_id_type(self.eim_id))

    @property
    def public_key_info(self) -> bytes:
        """The eIM's SubjectPublicKeyInfo (DER): eimPublicKeyData for eUICCs."""
        return self.signing_key.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )


def _guess_id_type(eim_id: str) -> int:
    parts = eim_id.split(".")
    if len(parts) > 1 and all(p.isdigit() for p in parts):
        return 1  # eimIdTypeOid
    if len(parts) > 1 and all(p and p.replace("-", "").isalnum() for p in parts):
        return 2  # eimIdTypeFqdn
    return 3  # eimIdTypeProprietary


def _host(address: str) -> str:
    return address.rpartition(":")[0].lower() if ":" in address else address.lower()


def _eid(data: bytes) -> str | None:
    try:
        return eid_from_bytes(bytes(data))
    except InvalidEid:
        return None


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


class EimCore:
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
        eid = _eid(request["eidValue"])
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
            if order.kind in _PACKAGE_KINDS:
                order = self._discovery_first(record) or order
            try:
                return self._deliver(order, record)
            except PackageError as exc:  # validated when queued; a changed schema could do it
                log.error("order %d cannot be built: %s", order.id, exc)
                self.store.update_order(order.id, state=OrderState.FAILED, error=str(exc))

    def _discovery_first(self, record: EuiccRecord) -> Order | None:
        """An auto IpaEuiccDataRequest when the token or key of ``record`` is unknown."""
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
        if order.kind in _PACKAGE_KINDS:
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

    # ================================================================= results

    def provide_eim_package_result(self, message: bytes) -> bytes:
        """ESipa.ProvideEimPackageResult (rules 3-5): the ``BF50`` response."""
        decode_message("ProvideEimPackageResult", message)
        try:
            eid = self._take_result(message)
        except _ResultError as exc:
            return schema.encode(
                "ProvideEimPackageResultResponse", ("provideEimPackageResultError", exc.code)
            )
        acks = self.store.take_acks(eid)
        if acks:
            return schema.encode("ProvideEimPackageResultResponse", ("eimAcknowledgements", acks))
        return schema.encode("ProvideEimPackageResultResponse", ("emptyResponse", {}))

    def _take_result(self, message: bytes) -> str:
        """Store a ProvideEimPackageResult; returns the EID it was for."""
        parts = message_parts(message)
        eid: str | None = None
        if parts and parts[0][0] == b"\x5a":
            eid = _eid(tlv.read_tlv(parts[0][1]).value(parts[0][1]))
            if eid is None:
                raise _ResultError(INVALID_EID)
            if self.store.euicc(eid) is None:
                raise _ResultError(EID_NOT_FOUND)
            parts = parts[1:]
        if len(parts) != 1:
            raise MessageError("ProvideEimPackageResult must hold one EimPackageResult")
        tag, raw = parts[0]
        with self.store.transaction():
            if tag == b"\xbf\x51":
                return self._epr(eid, raw)
            if tag == b"\x30":
                both = message_parts(raw)  # ePRAndNotifications { BF51, A0 {...} }
                if len(both) < 2:
                    raise MessageError("ePRAndNotifications needs the EPR and the list")
                eid = self._epr(eid, both[0][1])
                for _, item in message_parts(both[1][1]):
                    self._notification(eid, item, acknowledge=True)
                return eid
            if tag == b"\xbf\x52":
                return self._euicc_data(eid, raw)
            if tag == b"\xbf\x54":
                return self._download_result(eid, raw)
            if tag == b"\xa0":
                return self._package_error_result(eid, raw)
        raise MessageError(f"unknown EimPackageResult alternative {tag.hex().upper()}")

    def _require_eid(self, eid: str | None, order: Order | None) -> str:
        eid = eid or (order.eid if order is not None else None)
        if eid is None:
            raise _ResultError(MISSING_EID)
        if self.store.euicc(eid) is None:
            raise _ResultError(EID_NOT_FOUND)
        return eid

    def _order_for(
        self, eid: str | None, kinds: tuple[str, ...], tid: bytes | None, **extra: Any
    ) -> Order | None:
        if tid is not None:
            order = self.store.find_order(eid, kinds=kinds, eim_transaction_id=tid)
            if order is not None:
                return order
        if extra.get("counter_value") is not None and eid is not None:
            order = self.store.find_order(eid, kinds=kinds, counter_value=extra["counter_value"])
            if order is not None:
                return order
        if eid is None or tid is not None or extra.get("counter_value") is not None:
            return None  # it names an order, but not one of ours
        return self.store.find_order(eid, kinds=kinds, states=[OrderState.SENT])

    def _epr(self, eid: str | None, raw: bytes) -> str:
        """Rule 3 for one EuiccPackageResult; returns its EID."""
        try:
            info = packages.parse_epr(raw)
        except PackageError as exc:
            raise MessageError(str(exc)) from None
        order = self._order_for(
            eid, _PACKAGE_KINDS, info.eim_transaction_id, counter_value=info.counter_value
        )
        eid = self._require_eid(eid, order)
        record = self.store.euicc(eid)
        assert record is not None
        verified: bool | None = None
        if info.signed is not None and record.public_key is not None:
            key = pki.load_public_key(record.public_key)
            verified = packages.verify_epr(info, key, record.association_token)
        problem = None
        if info.eim_id != self.settings.eim_id:
            problem = f"eimId {info.eim_id!r} is not this eIM"
        elif verified is False:
            problem = "the eUICC signature does not verify"
        elif order is None:
            problem = "it matches no order"
        elif info.counter_value is not None and info.counter_value != order.counter_value:
            problem = f"counterValue {info.counter_value} is not the order's {order.counter_value}"
        if order is not None and order.result == raw:
            accepted = True  # the same result again: its acknowledgement was lost
        else:
            accepted = problem is None
            self.store.add_event(
                "epr",
                raw,
                eid=eid,
                order_id=order.id if order else None,
                seq_number=info.seq_number,
                decoded=info.decoded,
                verified=verified,
                accepted=accepted,
                note=problem,
            )
            if problem is not None:
                log.warning("EPR from %s rejected: %s", eid, problem)
            if accepted and order is not None and order.state == OrderState.SENT:
                self._complete_package(order, info, verified)
        # A verified EPR that matches no order still comes from the card: free it too.
        if info.seq_number is not None and (
            accepted or (problem == "it matches no order" and verified)
        ):
            self.store.add_acks(eid, [info.seq_number])
        return eid

    def _complete_package(
        self, order: Order, info: packages.EprInfo, verified: bool | None
    ) -> None:
        error = None
        if info.kind == "euiccPackageErrorUnsigned":
            error = "the eUICC refused the package: eIM unknown or eimSignature invalid"
        elif info.kind == "euiccPackageErrorSigned":
            code = info.error_code or UNDEFINED
            error = f"euiccPackageErrorCode {_EPR_ERRORS.get(code, 'undefinedError')} ({code})"
        self.store.update_order(
            order.id,
            state=OrderState.FAILED if error else OrderState.DONE,
            result=info.raw,
            result_json=info.decoded,
            verified=verified,
            error=error,
            completed=now(),
        )
        if error is None and order.kind == "eco":
            self._follow_own_eco(order, info)
        log.info("order %d: %s", order.id, error or "done")

    def _follow_own_eco(self, order: Order, info: packages.EprInfo) -> None:
        """An updateEim of this eIM that succeeded changes our counter or token too."""
        results = info.decoded["euiccPackageResultSigned"]["euiccPackageResultDataSigned"]
        for operation, result in zip(
            order.request["operations"], results["euiccResult"], strict=False
        ):
            update = operation.get("updateEim")
            if not update or update.get("eimId") != self.settings.eim_id:
                continue
            if result != {"updateEimResult": 0}:
                continue
            changes = {}
            if "counterValue" in update:
                changes["counter"] = update["counterValue"]
            if update.get("associationToken", -1) > 0:
                changes["association_token"] = update["associationToken"]
            if changes:
                self.store.update_euicc(order.eid, **changes)

    def _euicc_data(self, eid: str | None, raw: bytes) -> str:
        kind, value = decode_message("IpaEuiccDataResponse", raw)
        order_tid = value.get("eimTransactionId")
        order = self._order_for(eid, ("euiccData",), order_tid)
        eid = self._require_eid(eid, order)
        if kind == "ipaEuiccDataResponseError":
            code = value["ipaEuiccDataErrorCode"]
            self.store.add_event(
                "euiccData",
                raw,
                eid=eid,
                order_id=order.id if order else None,
                decoded=value_to_json(value),
                note=f"error {code}",
            )
            if order is not None and order.state == OrderState.SENT:
                self.store.update_order(
                    order.id,
                    state=OrderState.FAILED,
                    result=raw,
                    result_json={kind: value_to_json(value)},
                    error=f"ipaEuiccDataErrorCode {code}",
                    completed=now(),
                )
            return eid
        fields = dict(message_parts(message_parts(raw)[0][1]))
        decoded = value_to_json(value)
        for tag, name in ((b"\xa5", "eumCertificate"), (b"\xa6", "euiccCertificate")):
            if tag in fields:
                decoded[name] = (b"\x30" + fields[tag][1:]).hex().upper()
        self._learn(eid, value, fields)
        for _, item in message_parts(fields[b"\xa0"]) if b"\xa0" in fields else ():
            self._notification(eid, item, acknowledge=True)
        for _, item in message_parts(fields[b"\xa2"]) if b"\xa2" in fields else ():
            self._epr(eid, item)
        self.store.add_event(
            "euiccData", raw, eid=eid, order_id=order.id if order else None, decoded={kind: decoded}
        )
        if order is not None and order.state == OrderState.SENT:
            self.store.update_order(
                order.id,
                state=OrderState.DONE,
                result=raw,
                result_json={kind: decoded},
                completed=now(),
            )
        return eid

    def _learn(self, eid: str, value: Mapping[str, Any], fields: Mapping[bytes, bytes]) -> None:
        """Rule 5 for an IpaEuiccData: the token while unknown, the key from A5 + A6."""
        record = self.store.euicc(eid)
        assert record is not None
        if record.association_token is None and "associationToken" in value:
            self.store.update_euicc(eid, association_token=value["associationToken"])
            log.info("%s: association token %d learnt", eid, value["associationToken"])
        if b"\xa5" in fields and b"\xa6" in fields:
            euicc_der = b"\x30" + fields[b"\xa6"][1:]
            eum_der = b"\x30" + fields[b"\xa5"][1:]
            self._learn_certificate(eid, euicc_der, eum_der, "ipaEuiccData")

    def _learn_certificate(self, eid: str, euicc_der: bytes, eum_der: bytes, source: str) -> bool:
        record = self.store.euicc(eid)
        if record is None or record.euicc_certificate == euicc_der:
            return record is not None
        try:
            euicc_cert = pki.load_certificate(euicc_der)
            eum_cert = pki.load_certificate(eum_der)
            named = pki.check_euicc_chain(euicc_cert, eum_cert, self.settings.trusted_ci_keys)
            ci = pki.authority_key_id(eum_cert)
        except (pki.CertificateError, ValueError) as exc:
            log.warning("%s: eUICC certificate from %s not trusted: %s", eid, source, exc)
            return False
        if named != eid or (record.euicc_ci_pkid not in (None, ci)):
            log.warning("%s: certificate from %s is for %s under CI %s", eid, source, named, ci)
            return False
        key = euicc_cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        self.store.update_euicc(
            eid,
            euicc_certificate=euicc_der,
            eum_certificate=eum_der,
            public_key=_spki(key),
            key_source=source,
        )
        log.info("%s: eUICC key learnt from %s", eid, source)
        return True

    def _download_result(self, eid: str | None, raw: bytes) -> str:
        value = decode_message("ProfileDownloadTriggerResult", raw)
        parts = dict(message_parts(raw))
        pir = parts.get(b"\xbf\x37")
        session_order = None
        if pir is not None:
            tid = decode_message("ProfileInstallationResult", pir)["profileInstallationResultData"][
                "transactionId"
            ]
            session = self.store.session(bytes(tid).hex().upper())
            if session is not None:
                eid = eid or session.eid
                session_order = self.store.order(session.order_id) if session.order_id else None
        order = self._order_for(eid, ("download",), value.get("eimTransactionId")) or session_order
        eid = self._require_eid(eid, order)
        decoded = value_to_json(value)
        self.store.add_event(
            "downloadResult", raw, eid=eid, order_id=order.id if order else None, decoded=decoded
        )
        if pir is not None:
            self._notification(eid, pir, acknowledge=True, order=order)
        elif order is not None and order.state == OrderState.SENT:
            reason = value["profileDownloadTriggerResultData"][1]["profileDownloadErrorReason"]
            self.store.update_order(
                order.id,
                state=OrderState.FAILED,
                result=raw,
                result_json=decoded,
                completed=now(),
                error=f"profileDownloadErrorReason {reason}",
            )
        return eid

    def _package_error_result(self, eid: str | None, raw: bytes) -> str:
        value = decode_message("EimPackageResult", raw)[1]
        order = self._order_for(eid, packages.ORDER_KINDS, value.get("eimTransactionId"))
        eid = self._require_eid(eid, order)
        code = value["eimPackageResultErrorCode"]
        name = _PACKAGE_ERRORS.get(code, "undefinedError")
        self.store.add_event(
            "packageError",
            raw,
            eid=eid,
            order_id=order.id if order else None,
            decoded=value_to_json(value),
            note=name,
        )
        if order is not None and order.state == OrderState.SENT:
            self.store.update_order(
                order.id,
                state=OrderState.FAILED,
                result=raw,
                result_json=value_to_json(value),
                completed=now(),
                error=f"the IPAd refused the package: {name} ({code})",
            )
        return eid

    # ================================================================= notifications

    def handle_notification(self, message: bytes) -> None:
        """ESipa.HandleNotification: store (rule 6); ``BF50`` inside is a result (rule 4)."""
        decode_message("HandleNotificationEsipa", message)
        tag, inner = message_parts(message)[0]
        if tag not in (b"\xa0", b"\xbf\x50"):
            raise MessageError(f"unknown HandleNotification alternative {tag.hex().upper()}")
        if tag == b"\xbf\x50":
            try:
                self._take_result(inner)
            except _ResultError as exc:
                log.warning("result in HandleNotification dropped: error %d", exc.code)
            return None
        self._notification(None, message_parts(inner)[0][1], acknowledge=False)
        return None

    def _notification(
        self, eid: str | None, raw: bytes, *, acknowledge: bool, order: Order | None = None
    ) -> None:
        decoded = value_to_json(decode_message("SGP32-PendingNotification", raw))
        seq = None
        forward_to = None
        verified = None
        if raw[:2] == b"\xbf\x37":
            data = decode_message("ProfileInstallationResult", raw)["profileInstallationResultData"]
            seq = data["notificationMetadata"]["seqNumber"]
            forward_to = data["notificationMetadata"]["notificationAddress"]
            session = self.store.session(bytes(data["transactionId"]).hex().upper())
            if session is not None:
                eid = eid or session.eid
                if _host(session.smdp_address) == _host(forward_to):
                    forward_to = session.smdp_address  # the address that worked, with its port
                if order is None and session.order_id is not None:
                    order = self.store.order(session.order_id)
                self.store.update_session(session.transaction_id, state="ended")
            if order is not None and order.state == OrderState.SENT:
                success = data["finalResult"][0] == "successResult"
                self.store.update_order(
                    order.id,
                    state=OrderState.DONE if success else OrderState.FAILED,
                    result=raw,
                    result_json=decoded,
                    error=None if success else "profile installation failed",
                    completed=now(),
                )
        elif raw[:1] == b"\x30":
            seq, eid, verified = self._other_notification(raw, eid)
            certificates = [item for _, item in message_parts(raw)[2:]]
            other = decoded["otherSignedNotification"]
            for name, der in zip(
                ("euiccCertificate", "eumCertificate"), certificates, strict=False
            ):
                other[name] = der.hex().upper()  # the DER, not the decoded structure
        duplicate = self.store.find_event("notification", raw) is not None
        event = self.store.add_event(
            "notification",
            raw,
            eid=eid,
            order_id=order.id if order else None,
            seq_number=seq,
            decoded=decoded,
            verified=verified,
            note="again" if duplicate else None,
        )
        if acknowledge and eid is not None and seq is not None:
            self.store.add_acks(eid, [seq])
        if forward_to is not None and not duplicate:
            self.store.set_forwarded(event.id, self._forward(forward_to, raw))

    def _other_notification(self, raw: bytes, eid: str | None) -> tuple[Any, str | None, bool]:
        value = decode_message("OtherSignedNotification", raw)
        parts = message_parts(raw)
        if len(parts) != 4:
            return value["tbsOtherNotification"]["seqNumber"], eid, False
        (_, metadata), (_, signature), (_, euicc_der), (_, eum_der) = parts
        verified = False
        try:
            cert = pki.load_certificate(euicc_der)
            named = pki.check_euicc_chain(
                cert, pki.load_certificate(eum_der), self.settings.trusted_ci_keys
            )
            key = cert.public_key()
            assert isinstance(key, ec.EllipticCurvePublicKey)
            signature_value = tlv.read_tlv(signature).value(signature)
            verified = packages.verify_signature(key, signature_value, metadata, None)
            eid = eid or named
        except (pki.CertificateError, ValueError) as exc:
            log.warning("notification with an untrusted eUICC chain: %s", exc)
        return value["tbsOtherNotification"]["seqNumber"], eid, verified

    def _forward(self, address: str, pir: bytes) -> str:
        if self.relay is None:
            return "not forwarded: no SM-DP+ relay configured"
        try:
            self.relay.handle_notification(address, pir)
        except FunctionFailed as exc:
            log.warning("PIR not delivered to %s: %s", address, exc)
            return f"failed: {exc}"
        return f"delivered to {address}"

    # ================================================================= operator side

    def register(
        self,
        eid: str,
        *,
        euicc_certificate: bytes | None = None,
        eum_certificate: bytes | None = None,
        association_token: int | None = None,
        counter_value: int = 0,
        euicc_ci_pkid: bytes | None | str = "default",
    ) -> EuiccRecord:
        """Register an eUICC (certificates DER).

        ``association_token``: 1..127, ``-1`` (the eUICC allocates one; learnt later) or
        ``None`` (the eIM picks one). ``euicc_ci_pkid``: bytes, ``None`` to leave it out of
        the configuration, or ``"default"`` (the EUM's CI if an EUM certificate is given,
        else the configured one).

        Raises:
            RegistrationError: invalid EID, certificate, token or counter.
            Conflict: the EID is registered already.
        """
        if not is_valid_eid(eid):
            raise RegistrationError(f"{eid!r} is not a valid EID (32 digits, check digits)")
        if association_token is None:
            association_token = 1 + secrets.randbelow(127)
        if association_token != -1 and not 1 <= association_token <= 127:
            raise RegistrationError("associationToken must be 1..127, or -1 (eUICC allocates)")
        if not 0 <= counter_value < 2**31:
            raise RegistrationError("counterValue must be 0..2^31-1")
        key, ci = self._check_certificates(eid, euicc_certificate, eum_certificate)
        if euicc_ci_pkid == "default":
            euicc_ci_pkid = ci or self.settings.euicc_ci_pkid
        assert not isinstance(euicc_ci_pkid, str)
        return self.store.add_euicc(
            eid,
            counter=counter_value,
            euicc_certificate=euicc_certificate,
            eum_certificate=eum_certificate,
            public_key=key,
            key_source="operator" if key else None,
            association_token=None if association_token == -1 else association_token,
            euicc_ci_pkid=euicc_ci_pkid,
        )

    def _check_certificates(
        self, eid: str, euicc_der: bytes | None, eum_der: bytes | None
    ) -> tuple[bytes | None, bytes | None]:
        """(SPKI of the eUICC key, CI SKI of the chain) of operator-given certificates."""
        if euicc_der is None:
            if eum_der is not None:
                raise RegistrationError("eumCertificate needs euiccCertificate")
            return None, None
        named: str | None
        try:
            cert = pki.load_certificate(euicc_der)
            if eum_der is not None:
                eum = pki.load_certificate(eum_der)
                named = pki.check_euicc_chain(cert, eum, self.settings.trusted_ci_keys)
                ci = pki.authority_key_id(eum)
            else:
                named, ci = pki.subject_serial_number(cert), None
            key = cert.public_key()
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise RegistrationError("the eUICC certificate holds no EC key")
        except (pki.CertificateError, ValueError) as exc:
            raise RegistrationError(f"eUICC certificate refused: {exc}") from None
        if named != eid:
            raise RegistrationError(f"the eUICC certificate is for EID {named}, not {eid}")
        return _spki(key), ci

    def update_registration(
        self,
        eid: str,
        *,
        euicc_certificate: bytes | None = None,
        eum_certificate: bytes | None = None,
        association_token: int | None = None,
        counter_value: int | None = None,
    ) -> EuiccRecord:
        """Change what the eIM knows of an eUICC (the certificate replaces the key).

        Raises:
            RegistrationError: as :meth:`register`; a counter may only grow.
            NotFound: the EID is not registered.
        """
        record = self.store.euicc(eid)
        if record is None:
            raise NotFound(f"EID {eid} is not registered")
        changes: dict[str, Any] = {}
        if euicc_certificate is not None:
            key, _ = self._check_certificates(eid, euicc_certificate, eum_certificate)
            changes.update(
                euicc_certificate=euicc_certificate,
                eum_certificate=eum_certificate,
                public_key=key,
                key_source="operator",
            )
        if association_token is not None:
            if not 1 <= association_token <= 127:
                raise RegistrationError("associationToken must be 1..127")
            changes["association_token"] = association_token
        if counter_value is not None:
            if not record.counter <= counter_value < 2**31:
                raise RegistrationError(f"counterValue may only grow (now {record.counter})")
            changes["counter"] = counter_value
        return self.store.update_euicc(eid, **changes) if changes else record

    def configuration(self, eid: str) -> EimConfigurationData:
        """The EimConfigurationData an eUICC needs for this eIM (AddInitialEim-ready).

        Raises:
            NotFound: the EID is not registered.
        """
        record = self.store.euicc(eid)
        if record is None:
            raise NotFound(f"EID {eid} is not registered")
        token = record.association_token
        return EimConfigurationData(
            eim_id=self.settings.eim_id,
            eim_fqdn=self.eim_fqdn,
            eim_id_type=self.settings.eim_id_type,
            counter_value=record.counter,
            association_token=token if token is not None else -1,
            eim_public_key=self.settings.public_key_info,
            trusted_certificate_tls=self.settings.tls_trust_certificate,
            eim_supported_protocol=frozenset({0}),  # eimRetrieveHttps
            euicc_ci_pkid=record.euicc_ci_pkid,
            indirect_profile_download=self.relay is not None,
        )

    def queue(self, eid: str, order: Any) -> Order:
        """Validate and queue an operator order (:func:`.packages.validate_order`).

        Raises:
            PackageError: invalid order. NotFound: unknown EID.
        """
        if self.store.euicc(eid) is None:
            raise NotFound(f"EID {eid} is not registered")
        kind, request = packages.validate_order(order)
        return self.store.add_order(eid, kind, request)

    def cancel(self, order_id: int) -> Order:
        """Cancel a queued order.

        Raises:
            NotFound: no such order. Conflict: it is not queued any more.
        """
        order = self.store.require_order(order_id)
        if order.state != OrderState.QUEUED:
            raise Conflict(f"order {order_id} is {order.state}; only queued orders cancel")
        return self.store.update_order(order_id, state=OrderState.CANCELLED)

    def requeue(self, order_id: int) -> Order:
        """Queue a sent or failed order again; a package gets a new counter when delivered.

        Raises:
            NotFound: no such order. Conflict: it is queued, done or cancelled.
        """
        order = self.store.require_order(order_id)
        if order.state not in (OrderState.SENT, OrderState.FAILED):
            raise Conflict(f"order {order_id} is {order.state}; only sent/failed requeue")
        return self.store.update_order(
            order_id,
            state=OrderState.QUEUED,
            package=None,
            counter_value=None,
            eim_transaction_id=None,
            error=None,
        )
