"""Results reaching the reference eIM: ESipa.ProvideEimPackageResult, and HandleNotification
(which may carry one), rules 3 to 5 of :mod:`.esipa`.

Each EimPackageResult alternative is matched to its order by (EID, eimTransactionId) and
recorded: EPRs (checked against this eIM's eimId, the order's counterValue and the key of the
order's eUICC; only a verified one completes the order), IpaEuiccData (the eUICC's key from a
verified chain; the association token only when it answers the eIM's own request),
ProfileDownloadTriggerResults (completed by a verified PIR) and the IPAd's
eimPackageResultResponseError. Unsigned errors are unverified reports that end nothing. The
seqNumbers of verified results are collected in the store for acknowledgement.
Notifications inside results are handled by :class:`~.notifications.EimNotifications`.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from euicc_protocol import pki, schema, tlv
from euicc_protocol.eid import InvalidEid, eid_from_bytes

from ..common import spki, value_to_json
from . import packages
from .notifications import EimNotifications
from .packages import MessageError, PackageError, decode_message, message_parts
from .profile_state import learn_from_psmo
from .store import JsonText, Order, OrderState, now

__all__ = [
    "EID_NOT_FOUND",
    "INVALID_EID",
    "MISSING_EID",
    "NO_PACKAGE",
    "PACKAGE_KINDS",
    "UNDEFINED",
    "EimResults",
    "eid_or_none",
]

log = logging.getLogger(__name__)

# GetEimPackageResponse.eimPackageError / ProvideEimPackageResultResponse error codes
NO_PACKAGE, EID_NOT_FOUND, INVALID_EID, MISSING_EID, UNDEFINED = 1, 2, 3, 4, 127
#: Order kinds delivered as signed eUICC packages.
PACKAGE_KINDS = ("psmo", "eco")
_PACKAGE_ERRORS = {1: "invalidPackageFormat", 2: "unknownPackage", 127: "undefinedError"}
_EPR_ERRORS = {3: "invalidEid", 4: "replayError", 6: "counterValueOutOfRange", 15: "sizeOverflow"}


class _ResultError(Exception):
    """A ProvideEimPackageResult answered with provideEimPackageResultError ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@functools.lru_cache(maxsize=4096)
def _public_key(spki_der: bytes) -> ec.EllipticCurvePublicKey:
    """The eUICC key of a stored SubjectPublicKeyInfo, parsed once per distinct key (keyed by
    its exact bytes, so a key the operator or a certificate changes is parsed anew)."""
    return pki.load_public_key(spki_der)


def eid_or_none(data: bytes) -> str | None:
    """The EID (32 digits) of an ``eidValue``, or None when it is not a valid EID."""
    try:
        return eid_from_bytes(bytes(data))
    except InvalidEid:
        return None


class EimResults(EimNotifications):
    """Part of :class:`~.esipa.EimCore`: ProvideEimPackageResult and HandleNotification."""

    learn_version: Callable[[str, dict[bytes, bytes]], None]  # from .versions.EimVersions

    def provide_eim_package_result(self, message: bytes) -> bytes:
        """ESipa.ProvideEimPackageResult (rules 3-5): the ``BF50`` response."""
        value = decode_message("ProvideEimPackageResult", message)
        self._outbox().clear()  # what a failed message left is not to be sent
        try:
            # One transaction: the result stored and its acknowledgement taken together.
            with self.store.transaction():
                eid = self._take_result(message, value["eimPackageResult"])
                acks = self.store.take_acks(eid)
            self.send_forwards()
        except _ResultError as exc:
            return schema.encode(
                "ProvideEimPackageResultResponse", ("provideEimPackageResultError", exc.code)
            )
        if acks:
            return schema.encode("ProvideEimPackageResultResponse", ("eimAcknowledgements", acks))
        return schema.encode("ProvideEimPackageResultResponse", ("emptyResponse", {}))

    def handle_notification(self, message: bytes) -> None:
        """ESipa.HandleNotification: store (rule 6); ``BF50`` inside is a result (rule 4)."""
        decode_message("HandleNotificationEsipa", message)
        self._outbox().clear()
        tag, inner = message_parts(message)[0]
        if tag not in (b"\xa0", b"\xbf\x50"):
            raise MessageError(f"unknown HandleNotification alternative {tag.hex().upper()}")
        if tag == b"\xbf\x50":
            try:
                self._take_result(inner)
            except _ResultError as exc:
                log.warning("result in HandleNotification dropped: error %d", exc.code)
            self.send_forwards()
            return None
        self._notification(None, message_parts(inner)[0][1], acknowledge=False)
        self.send_forwards()
        return None

    def _take_result(self, message: bytes, decoded: tuple[str, Any] | None = None) -> str:
        """Store a ProvideEimPackageResult; returns the EID it was for. ``decoded``: its
        eimPackageResult as decoded with the whole message (not decoded again)."""
        parts = message_parts(message)
        eid: str | None = None
        if parts and parts[0][0] == b"\x5a":
            eid = eid_or_none(tlv.read_tlv(parts[0][1]).value(parts[0][1]))
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
                epr = decoded[1] if decoded and decoded[0] == "euiccPackageResult" else None
                return self._epr(eid, raw, epr)
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
        """The order a result names (rule 3): by (EID, eimTransactionId), by
        eimTransactionId alone when the EID is not given, by (EID, counterValue); a result
        naming neither goes to the oldest *sent* order of its kind for the EID."""
        if tid is not None:
            return self.store.find_order(eid, kinds=kinds, eim_transaction_id=bytes(tid))
        counter = extra.get("counter_value")
        if counter is not None:
            if eid is None or not 0 <= counter < 2**31:
                return None
            return self.store.find_order(eid, kinds=kinds, counter_value=counter)
        if eid is None:
            return None
        return self.store.find_order(eid, kinds=kinds, states=[OrderState.SENT])

    def _report(self, order: Order | None, note: str) -> None:
        """Record an unverified report on ``order`` (rule 3): visible, not acted on."""
        if order is not None and order.state == OrderState.SENT:
            self.store.update_order(order.id, report=note)

    def _epr(self, eid: str | None, raw: bytes, decoded: tuple[str, Any] | None = None) -> str:
        """Rule 3 for one EuiccPackageResult; returns its EID."""
        try:
            info = packages.parse_epr(raw, decoded)
        except PackageError as exc:
            raise MessageError(str(exc)) from None
        order = self._order_for(
            eid, PACKAGE_KINDS, info.eim_transaction_id, counter_value=info.counter_value
        )
        if eid is not None and order is not None and order.eid != eid:
            order = None
        eid = self._require_eid(eid, order)
        record = self.store.euicc(eid)
        assert record is not None
        verified: bool | None = None
        if info.signed is not None and record.public_key is not None:
            key = _public_key(bytes(record.public_key))
            verified = packages.verify_epr(info, key, record.association_token)
        problem = None
        if info.eim_id != self.settings.eim_id:
            problem = f"eimId {info.eim_id!r} is not this eIM"
        elif info.signed is None:
            problem = "unverified report: an unsigned error (euiccPackageErrorUnsigned)"
        elif verified is None:
            problem = "unverified report: no eUICC key to verify the signature with"
        elif verified is False:
            problem = "unverified report: the eUICC signature does not verify"
        elif order is None:
            problem = "it matches no order"
        elif info.counter_value is not None and info.counter_value != order.counter_value:
            problem = f"counterValue {info.counter_value} is not the order's {order.counter_value}"
        if order is not None and order.result == raw:
            accepted = True  # the same result again: its acknowledgement was lost
        else:
            accepted = problem is None
            text = JsonText(json.dumps(info.decoded))  # stored twice, dumped once
            self.store.record_event(
                "epr",
                raw,
                eid=eid,
                order_id=order.id if order else None,
                seq_number=info.seq_number,
                decoded=text,
                verified=verified,
                accepted=accepted,
                note=problem,
            )
            if problem is not None:
                log.warning("EPR from %s not accepted: %s", eid, problem)
                self._report(order, problem)
            if accepted and order is not None and order.state == OrderState.SENT:
                self._complete_package(order, info, verified, text)
        if verified and info.eim_id == self.settings.eim_id:
            if record.token_source != "epr":  # the signature covers the token: confirmed
                self.store.update_euicc(eid, token_source="epr")
            # A verified EPR that matches no order still comes from the card: free it too.
            if info.seq_number is not None and (accepted or problem == "it matches no order"):
                self.store.add_acks(eid, [info.seq_number])
        return eid

    def _complete_package(
        self, order: Order, info: packages.EprInfo, verified: bool | None, text: JsonText
    ) -> None:
        error = None
        if info.kind == "euiccPackageErrorSigned":
            code = info.error_code or UNDEFINED
            error = f"euiccPackageErrorCode {_EPR_ERRORS.get(code, 'undefinedError')} ({code})"
        self.store.update_order(
            order.id,
            state=OrderState.FAILED if error else OrderState.DONE,
            result=info.raw,
            result_json=text,
            verified=verified,
            error=error,
            completed=now(),
        )
        if error is None and order.kind == "eco":
            self._follow_own_eco(order, info)
        if order.kind == "psmo":
            self._learn_profiles(order, info)
        log.info("order %d: %s", order.id, error or "done")

    def _learn_profiles(self, order: Order, info: packages.EprInfo) -> None:
        """Profile states learnt from a verified PSMO result, published as ``euicc.profiles``."""
        signed = info.decoded.get("euiccPackageResultSigned") if info.decoded else None
        if not isinstance(signed, dict):
            return
        results = signed.get("euiccPackageResultDataSigned", {}).get("euiccResult", [])
        record = self.store.euicc(order.eid)
        if record is None:
            return
        before = record.profiles or {}
        after = learn_from_psmo(before, order.request.get("operations", []), results)
        if after != before:
            self.store.update_euicc(order.eid, profiles=after)
            self.store.publish(
                "euicc.profiles", {"eid": order.eid, "profiles": after, "orderId": order.id}
            )

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
            changes: dict[str, Any] = {}
            if "counterValue" in update:
                changes["counter"] = update["counterValue"]
            if update.get("associationToken", -1) > 0:
                changes["association_token"] = update["associationToken"]
                changes["token_source"] = "operator"
            if changes:
                self.store.update_euicc(order.eid, **changes)

    def _euicc_data(self, eid: str | None, raw: bytes) -> str:
        kind, value = decode_message("IpaEuiccDataResponse", raw)
        order_tid = value.get("eimTransactionId")
        order = self._order_for(eid, ("euiccData",), order_tid)
        if eid is not None and order is not None and order.eid != eid:
            order = None
        eid = self._require_eid(eid, order)
        answering = order if order is not None and order.state == OrderState.SENT else None
        if kind == "ipaEuiccDataResponseError":
            code = value["ipaEuiccDataErrorCode"]
            note = f"unverified report: ipaEuiccDataErrorCode {code}"
            self.store.add_event(
                "euiccData",
                raw,
                eid=eid,
                order_id=order.id if order else None,
                decoded=value_to_json(value),
                accepted=False,
                note=note,
            )
            self._report(order, note)
            return eid
        fields = dict(message_parts(message_parts(raw)[0][1]))
        decoded = value_to_json(value)
        for tag, name in ((b"\xa5", "eumCertificate"), (b"\xa6", "euiccCertificate")):
            if tag in fields:
                decoded[name] = (b"\x30" + fields[tag][1:]).hex().upper()
        self._learn(eid, value, fields, solicited=answering is not None)
        for _, item in message_parts(fields[b"\xa0"]) if b"\xa0" in fields else ():
            self._notification(eid, item, acknowledge=True)
        for _, item in message_parts(fields[b"\xa2"]) if b"\xa2" in fields else ():
            self._epr(eid, item)
        self.store.add_event(
            "euiccData",
            raw,
            eid=eid,
            order_id=order.id if order else None,
            decoded={kind: decoded},
            note=None if answering else "unsolicited",
        )
        if answering is not None:
            self.learn_version(eid, fields)  # rule 1 of .versions: only from our own request
            self.store.update_order(
                answering.id,
                state=OrderState.DONE,
                result=raw,
                result_json={kind: decoded},
                completed=now(),
            )
        return eid

    def _learn(
        self,
        eid: str,
        value: Mapping[str, Any],
        fields: Mapping[bytes, bytes],
        *,
        solicited: bool,
    ) -> None:
        """Rule 5 for an IpaEuiccData: the key from A5 + A6 (chain verified); the token,
        unconfirmed, only from an answer to our own request and only while unknown."""
        record = self.store.euicc(eid)
        assert record is not None
        if solicited and record.association_token is None and "associationToken" in value:
            token = value["associationToken"]
            if 1 <= token < 2**31:
                self.store.update_euicc(eid, association_token=token, token_source="ipaEuiccData")
                log.info("%s: association token %d (unconfirmed) from IpaEuiccData", eid, token)
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
            public_key=spki(key),
            key_source=source,
        )
        log.info("%s: eUICC key learnt from %s", eid, source)
        return True

    def _download_result(self, eid: str | None, raw: bytes) -> str:
        value = decode_message("ProfileDownloadTriggerResult", raw)
        parts = dict(message_parts(raw))
        pir = parts.get(b"\xbf\x37")
        order = self._order_for(eid, ("download",), value.get("eimTransactionId"))
        if eid is not None and order is not None and order.eid != eid:
            order = None
        if order is None and pir is not None:
            order = self._session_order(pir, eid)
        eid = self._require_eid(eid, order)
        decoded = value_to_json(value)
        note = None
        if pir is None:
            reason = value["profileDownloadTriggerResultData"][1]["profileDownloadErrorReason"]
            note = f"unverified report: profileDownloadErrorReason {reason}"
            self._report(order, note)
        self.store.add_event(
            "downloadResult",
            raw,
            eid=eid,
            order_id=order.id if order else None,
            decoded=decoded,
            accepted=pir is not None,
            note=note,
        )
        if pir is not None:
            self._notification(eid, pir, acknowledge=True, order=order)
        return eid

    def _session_order(self, pir: bytes, eid: str | None) -> Order | None:
        """The download order of the relayed session a PIR names (by its transactionId)."""
        data = decode_message("ProfileInstallationResult", pir)["profileInstallationResultData"]
        session = self.store.session(bytes(data["transactionId"]).hex().upper())
        if session is None or session.order_id is None:
            return None
        order = self.store.order(session.order_id)
        if order is None or (eid is not None and order.eid != eid):
            return None
        return order

    def _package_error_result(self, eid: str | None, raw: bytes) -> str:
        value = decode_message("EimPackageResult", raw)[1]
        order = self._order_for(eid, packages.ORDER_KINDS, value.get("eimTransactionId"))
        if eid is not None and order is not None and order.eid != eid:
            order = None
        eid = self._require_eid(eid, order)
        code = value["eimPackageResultErrorCode"]
        name = _PACKAGE_ERRORS.get(code, "undefinedError")
        note = f"unverified report: the IPAd refused the package: {name} ({code})"
        self.store.add_event(
            "packageError",
            raw,
            eid=eid,
            order_id=order.id if order else None,
            decoded=value_to_json(value),
            accepted=False,
            note=note,
        )
        self._report(order, note)
        return eid
