"""ES9+ handleNotification on the SM-DP+ (SGP.22 §5.6.4): notifications are verified and
recorded on their order, never answered with an error (:meth:`.es9p.SmdpCore.handle_notification`
logs and drops what does not verify or matches nothing).

A ProfileInstallationResult (``BF37``) is verified with the eUICC certificate of its order;
a verified one ends its session, frees the BPP kept for a retry and moves the order to
*installed* (a success from any session) or *failed* (a failure from the session that owns the
order). An OtherSignedNotification is verified with the certificate chain it carries and kept,
the last ``50`` per order, in the events of the order with that ICCID.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from euicc_protocol import pki, schema
from euicc_protocol.iccid import InvalidIccid, iccid_from_ef

from .binding import BppBinding
from .config import SmdpConfig
from .orders import OrderEvent, OrderStore
from .received import (
    SIG,
    children,
    decode_as,
    ec_public_key,
    expect_tags,
    hex_upper,
    outer_tlv,
    verifies,
)
from .sessions import SessionStore

__all__ = ["SmdpNotifications"]

log = logging.getLogger(__name__)

_MAX_EVENTS = 50  # other notifications remembered per order


class SmdpNotifications:
    """Part of :class:`~.es9p.SmdpCore`: the two kinds of notification it takes."""

    config: SmdpConfig
    orders: OrderStore
    sessions: SessionStore
    _bindings: dict[str, BppBinding]
    _wall_clock: Callable[[], dt.datetime]

    def _installation_result(self, raw: bytes) -> None:
        name = "ProfileInstallationResult"
        value = decode_as(("ProfileInstallationResult",), raw, name)
        data_raw = children(raw, name, outer_tlv(raw, b"\xbf\x37", name))[0][1]
        data = value["profileInstallationResultData"]
        transaction_id = bytes(data["transactionId"])
        session = self.sessions.peek(transaction_id)
        order = (
            self.orders.get(session.matching_id)
            if session is not None and session.matching_id
            else self.orders.by_transaction(hex_upper(transaction_id))
        )
        if order is None or order.euicc_certificate is None:
            log.warning("installation result for unknown transaction %s", hex_upper(transaction_id))
            return
        key = ec_public_key(pki.load_certificate(order.euicc_certificate))
        if not verifies(key, value["euiccSignPIR"], data_raw):
            log.warning("installation result %s: bad euiccSignPIR", hex_upper(transaction_id))
            return
        self.sessions.drop(transaction_id)  # only a verified result ends the session
        kind, final = data["finalResult"]
        result: dict[str, Any] = {
            "transactionId": hex_upper(transaction_id),
            "seqNumber": data["notificationMetadata"]["seqNumber"],
            "success": kind == "successResult",
            "smdpOid": data["smdpOid"],
        }
        if kind == "successResult":
            result["aid"] = hex_upper(final["aid"])
        else:
            result.update(bppCommandId=final["bppCommandId"], errorReason=final["errorReason"])
        # The eUICC has used (or dropped) its one-time key: the BPP cannot be reused.
        self._bindings.pop(order.matching_id, None)
        event = OrderEvent.INSTALLED if result["success"] else OrderEvent.INSTALL_FAILED
        # A success installs the profile whichever session delivered it; a failure only
        # fails the order if it comes from the session that owns the order.
        owner = order.transaction_id == hex_upper(transaction_id)
        if (owner or result["success"]) and self.orders.can(order.matching_id, event):
            self.orders.transition(order.matching_id, event, result=result)
        else:
            self.orders.update(order.matching_id, result=result)
        log.info("order %s: installation result %s", order.matching_id, result)

    def _other_notification(self, raw: bytes) -> None:
        name = "OtherSignedNotification"
        value = decode_as(("OtherSignedNotification",), raw, name)
        metadata_raw, _, euicc_der, eum_der = expect_tags(
            children(raw, name, outer_tlv(raw, b"\x30", name)),
            [b"\xbf\x2f", SIG, b"\x30", b"\x30"],
            name,
        )
        try:
            euicc_cert = pki.load_certificate(euicc_der)
            eum_cert = pki.load_certificate(eum_der)
            eid = pki.check_euicc_chain(euicc_cert, eum_cert, self.config.trusted_ci_keys)
        except (pki.CertificateError, ValueError) as exc:
            log.warning("notification with an untrusted eUICC chain: %s", exc)
            return
        signature = value["euiccNotificationSignature"]
        if not verifies(ec_public_key(euicc_cert), signature, metadata_raw):
            log.warning("notification from %s: signature does not verify", eid)
            return
        meta = value["tbsOtherNotification"]
        operations = ("install", "enable", "disable", "delete")
        bits = schema.bit_positions(meta["profileManagementOperation"])
        try:
            iccid = iccid_from_ef(bytes(meta["iccid"])) if "iccid" in meta else None
        except InvalidIccid:
            iccid = None
        event = {
            "eid": eid,
            "seqNumber": meta["seqNumber"],
            "operation": ",".join(operations[b] for b in sorted(bits) if b < len(operations)),
            "iccid": iccid,
            "received": self._wall_clock().isoformat(timespec="seconds"),
        }
        order = self.orders.by_iccid(iccid, eid) if iccid else None
        if order is None:
            log.info("%s notification from %s for no known order", event["operation"], eid)
            return
        events = (*order.events, event)[-_MAX_EVENTS:]
        self.orders.update(order.matching_id, events=events)
        log.info("order %s: %s notification from %s", order.matching_id, event["operation"], eid)
