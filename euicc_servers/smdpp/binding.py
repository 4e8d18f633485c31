"""Bound profile packages on the SM-DP+ (ES9+ getBoundProfilePackage, see :mod:`.es9p`): the
confirmation code check, binding the order's profile to the eUICC's one-time key, and the
delivered BPP kept in memory (:class:`BppBinding`) for a retry.

A wrong confirmation code counts; the attempt that reaches ``max_cc_attempts`` answers
8.2.7/6.4, fails the order and forgets its BPP; a missing hashCc (8.2.7/2.2) does not count.
A retry with the same otPK.EUICC (same EID and CI) gets the earlier BPP with a new ``BF23``
(new transactionId, same otPK.DP, re-signed), its segments unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from euicc_protocol import bpp, tlv
from euicc_protocol.eid import eid_to_bytes

from .config import SmdpConfig
from .orders import Order, OrderEvent, OrderStore
from .received import FunctionFailed
from .sessions import Session, SessionStore

__all__ = ["BppBinding", "SmdpBinding"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, repr=False)
class BppBinding:
    """A delivered BPP kept for a retry: everything after its ``BF23`` stays valid as long as
    the eUICC still holds otSK.EUICC for ``euicc_otpk``."""

    eid: str
    ci_ski: bytes
    euicc_otpk: bytes
    smdp_otpk: bytes
    tail: bytes  # the BF36 value after the BF23 TLV


class SmdpBinding:
    """Part of :class:`~.es9p.SmdpCore`: confirmation codes and BPP binding."""

    config: SmdpConfig
    orders: OrderStore
    sessions: SessionStore
    _bindings: dict[str, BppBinding]
    _random: Callable[[int], bytes]

    @staticmethod
    def _reusable(
        binding: BppBinding | None, session: Session, euicc_otpk: bytes | None = None
    ) -> bool:
        """Whether ``binding`` may serve ``session`` (same EID and CI, and when given, the
        same otPK.EUICC)."""
        return (
            binding is not None
            and binding.eid == session.eid
            and binding.ci_ski == session.credentials.ci_ski
            and (euicc_otpk is None or binding.euicc_otpk == euicc_otpk)
        )

    def _check_confirmation_code(self, session: Session, order: Order, hash_cc: Any) -> None:
        """Rule of the module docstring: a wrong code counts, the last allowed one fails the
        order; a missing one does not count."""
        if hash_cc is None:
            raise FunctionFailed("8.2.7", "2.2", "confirmation code missing")
        assert order.cc_hash is not None
        expected = hashlib.sha256(order.cc_hash + session.transaction_id).digest()
        if hmac.compare_digest(bytes(hash_cc), expected):
            return
        failures = order.cc_failures + 1
        if failures >= self.config.max_cc_attempts:
            self.orders.transition(order.matching_id, OrderEvent.CC_EXHAUSTED, cc_failures=failures)
            self.sessions.drop(session.transaction_id)
            self._bindings.pop(order.matching_id, None)
            raise FunctionFailed("8.2.7", "6.4", "confirmation code: too many wrong attempts")
        self.orders.update(order.matching_id, cc_failures=failures)
        raise FunctionFailed("8.2.7", "3.8", "confirmation code refused")

    def _bind(self, session: Session, order: Order, euicc_otpk: bytes) -> bytes:
        """The BPP for this session: a re-signed earlier binding to the same otPK.EUICC, or
        a fresh one."""
        assert session.eid is not None and session.source is not None
        dp_pb = session.credentials.dp_pb
        binding = self._bindings.get(order.matching_id)
        if binding is not None and self._reusable(binding, session, euicc_otpk):
            isc = bpp.build_initialise_secure_channel(
                transaction_id=session.transaction_id,
                host_id=self.config.host_id,
                smdp_otpk=binding.smdp_otpk,
                euicc_otpk=euicc_otpk,
                smdp_pb_key=dp_pb.key,
            )
            log.info("order %s: re-sending the BPP bound to the same otPK", order.matching_id)
            return tlv.encode_tlv(b"\xbf\x36", isc + binding.tail)
        built = bpp.build_bound_profile_package(
            session.source.upp,
            transaction_id=session.transaction_id,
            eid=eid_to_bytes(session.eid),
            euicc_otpk_point=euicc_otpk,
            smdp_pb_key=dp_pb.key,
            store_metadata=session.store_metadata,
            host_id=self.config.host_id,
            replace_session_keys=order.replace_session_keys,
            random_bytes=self._random,
        )
        outer = tlv.read_tlv(built.encoded)
        isc_end = tlv.read_tlv(built.encoded, outer.value_start).end
        self._bindings[order.matching_id] = BppBinding(
            eid=session.eid,
            ci_ski=session.credentials.ci_ski,
            euicc_otpk=euicc_otpk,
            smdp_otpk=built.smdp_otpk,
            tail=built.encoded[isc_end:],
        )
        return built.encoded
