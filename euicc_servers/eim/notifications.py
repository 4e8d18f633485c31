"""Notifications reaching the reference eIM (rule 6 of :mod:`.esipa`): verified, stored as
events, the ``seqNumber`` of a verified one acknowledged when it came inside a
ProvideEimPackageResult.

A Profile Installation Result (``BF37``) is verified with the key the eIM holds for its eUICC
(the EID given, else the one of its download order or relayed session). A verified PIR
completes the download order and is forwarded once, with ES9+ handleNotification, to the
SM-DP+ of that order (the address its relayed session used, else the one of its activation
code), never to the notificationAddress inside it, which anyone can write. An
OtherSignedNotification is verified with the eUICC certificate chain it carries (through the
EUM to a trusted CI), which must name the EID it is reported for.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from euicc_protocol import crypto, pki, tlv

from ..common import value_to_json
from ..common.functions import FunctionFailed
from . import packages
from .packages import decode_message, message_parts
from .relay import SmdpRelay
from .settings import EimSettings
from .store import EimStore, Order, OrderState, now

__all__ = ["EimNotifications"]

log = logging.getLogger(__name__)


def _host(address: str) -> str:
    return address.rpartition(":")[0].lower() if ":" in address else address.lower()


class EimNotifications:
    """Part of :class:`~.esipa.EimCore`: storing notifications and forwarding PIRs."""

    settings: EimSettings
    store: EimStore
    relay: SmdpRelay | None

    def _notification(
        self, eid: str | None, raw: bytes, *, acknowledge: bool, order: Order | None = None
    ) -> None:
        decoded = value_to_json(decode_message("SGP32-PendingNotification", raw))
        seq = None
        forward_to = None
        verified: bool | None = None
        note = None
        if raw[:2] == b"\xbf\x37":
            seq, eid, verified, order, forward_to, note = self._installation_result(raw, eid, order)
        elif raw[:1] == b"\x30":
            seq, named, verified = self._other_notification(raw)
            if eid is not None and named is not None and named != eid:
                verified, note = False, f"the certificate is for EID {named}"
            eid = eid or (named if verified else None)
            certificates = [item for _, item in message_parts(raw)[2:]]
            other = decoded["otherSignedNotification"]
            for name, der in zip(
                ("euiccCertificate", "eumCertificate"), certificates, strict=False
            ):
                other[name] = der.hex().upper()  # the DER, not the decoded structure
        if not verified and note is None:
            note = "unverified: the eUICC signature does not verify"
        duplicate = self.store.find_event("notification", raw) is not None
        event = self.store.add_event(
            "notification",
            raw,
            eid=eid,
            order_id=order.id if order else None,
            seq_number=seq,
            decoded=decoded,
            verified=verified,
            accepted=bool(verified),
            note="again" if duplicate and verified else note,
        )
        if acknowledge and verified and eid is not None and seq is not None:
            self.store.add_acks(eid, [seq])
        if forward_to is not None and not duplicate:
            # Sent after the store's transaction ends: a slow SM-DP+ must not hold the store.
            self._outbox().append((event.id, forward_to, raw))

    def _installation_result(
        self, raw: bytes, eid: str | None, order: Order | None
    ) -> tuple[int, str | None, bool, Order | None, str | None, str | None]:
        """(seqNumber, EID, verified, order, SM-DP+ to forward to, note) of a PIR."""
        value = decode_message("ProfileInstallationResult", raw)
        data = value["profileInstallationResultData"]
        seq = data["notificationMetadata"]["seqNumber"]
        session = self.store.session(bytes(data["transactionId"]).hex().upper())
        if order is None and session is not None and session.order_id is not None:
            order = self.store.order(session.order_id)
        if order is not None and (order.kind != "download" or (eid and order.eid != eid)):
            order = None
        if eid is None:
            eid = order.eid if order is not None else session.eid if session is not None else None
        record = self.store.euicc(eid) if eid else None
        if record is None or record.public_key is None:
            return seq, eid, False, order, None, "unverified: no eUICC key for this result"
        signed = message_parts(raw)[0][1]  # profileInstallationResultData as received
        key = pki.load_public_key(record.public_key)
        try:
            crypto.verify_raw(key, bytes(value["euiccSignPIR"]), signed)
        except crypto.CryptoError:
            return seq, eid, False, order, None, None
        forward_to = None
        if order is not None:
            if session is not None and session.order_id == order.id:
                forward_to = session.smdp_address
            elif "activationCode" in order.request:
                forward_to = packages.activation_code_address(order.request["activationCode"])
            if session is not None:
                self.store.update_session(session.transaction_id, state="ended")
            if order.state == OrderState.SENT:
                success = data["finalResult"][0] == "successResult"
                self.store.update_order(
                    order.id,
                    state=OrderState.DONE if success else OrderState.FAILED,
                    result=raw,
                    result_json={"profileInstallationResult": value_to_json(value)},
                    verified=True,
                    error=None if success else "profile installation failed",
                    completed=now(),
                )
        return seq, eid, True, order, forward_to, None

    def _other_notification(self, raw: bytes) -> tuple[Any, str | None, bool]:
        """(seqNumber, EID its chain names, verified) of an OtherSignedNotification."""
        value = decode_message("OtherSignedNotification", raw)
        seq = value["tbsOtherNotification"]["seqNumber"]
        parts = message_parts(raw)
        if len(parts) != 4:
            return seq, None, False
        (_, metadata), (_, signature), (_, euicc_der), (_, eum_der) = parts
        try:
            cert = pki.load_certificate(euicc_der)
            named = pki.check_euicc_chain(
                cert, pki.load_certificate(eum_der), self.settings.trusted_ci_keys
            )
            key = cert.public_key()
            if not isinstance(key, ec.EllipticCurvePublicKey):
                return seq, None, False
            signature_value = tlv.read_tlv(signature).value(signature)
            return seq, named, packages.verify_signature(key, signature_value, metadata, None)
        except (pki.CertificateError, ValueError, tlv.TlvError) as exc:
            log.warning("notification with an untrusted eUICC chain: %s", exc)
            return seq, None, False

    def _outbox(self) -> list[tuple[int, str, bytes]]:
        """PIRs to forward once the current message is stored (per thread)."""
        local = self.__dict__.get("_outbox_local")
        if local is None:  # not setdefault(): a threading.local() is costly to make each time
            local = self.__dict__.setdefault("_outbox_local", threading.local())
        items: list[tuple[int, str, bytes]] = local.__dict__.setdefault("items", [])
        return items

    def send_forwards(self) -> None:
        """Forward the PIRs the last message brought (outside any store transaction)."""
        outbox = self._outbox()
        while outbox:
            event_id, address, raw = outbox.pop(0)
            self.store.set_forwarded(event_id, self._forward(address, raw))

    def _forward(self, address: str, pir: bytes) -> str:
        if self.relay is None:
            return "not forwarded: no SM-DP+ relay configured"
        try:
            self.relay.handle_notification(address, pir)
        except FunctionFailed as exc:
            log.warning("PIR not delivered to %s: %s", address, exc)
            return f"failed: {exc}"
        return f"delivered to {address}"
