"""Notifications reaching the reference eIM (rule 6 of :mod:`.esipa`): stored as events, the
``seqNumber`` acknowledged when they came inside a ProvideEimPackageResult, and a Profile
Installation Result (``BF37``) forwarded once with ES9+ handleNotification to its
notificationAddress (or to the address the relayed session used when that names the same
host: it carries the port); it also completes the download order of its session. An
OtherSignedNotification is verified with the eUICC certificates it carries.
"""

from __future__ import annotations

import logging
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from euicc_protocol import pki, tlv

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
