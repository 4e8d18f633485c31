"""Which SGP.32 version the eIM speaks with each eUICC, and speaking it (part of
:class:`~.esipa.EimCore`).

Rules
=====

1. Each registered eUICC has a version: ``sgp32`` "1.0" (v1.0.1) or "1.2". The operator sets
   it (registration or update, source ``operator``); otherwise it is learnt from the eUICC's
   EUICCInfo2 iotVersion in an IpaEuiccData that answers this eIM's own request (source
   ``euiccInfo2``; never over the operator's choice); until then the eIM speaks v1.2.
2. The core speaks v1.2 only. Messages of a v1.0.1 IPAd are rewritten into their v1.2 form
   before it sees them and its answers back after (:mod:`.sgp32_v1_0`); signed TLVs are
   never touched.
3. Which version a message is in: GetEimPackage names its EID, so the eUICC's version. A
   result (ProvideEimPackageResult, HandleNotification with a result) is v1.0.1 when its shape
   exists only in v1.0.1 (``02`` error, ``BF2B`` list, ``80`` field, ``A1`` in
   HandleNotification), v1.2 when it carries eidValue or a v1.2-only shape; a shape both
   share is in the version of the eUICC its eimTransactionId (or eUICC certificate) points to.
4. A v1.0.1 result carries no EID: the eIM finds it by the eimTransactionId of the EPR or
   download result, or the serialNumber of the eUICC certificate in an IpaEuiccData, and
   hands the core the result with that eidValue. So that an IpaEuiccData (which has no
   eimTransactionId in v1.0.1) can always be matched, a request for it sent to a v1.0.1
   eUICC always asks for the eUICC certificate too, and so does a request for EUICCInfo2
   sent to an eUICC whose version is not known yet.
5. A package the version cannot express (a v1.2-only PSMO for a v1.0.1 eUICC) fails its
   order at delivery ("not in SGP.32 v1.0.1"); the IPAd gets noEimPackageAvailable. A
   ProvideEimPackageResult error has no v1.0.1 form: the request is refused as malformed
   (HTTP 400 in the ASN.1 binding), so the IPAd keeps its result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from euicc_protocol import pki, schema, tlv

from . import packages, sgp32_v1_0
from .packages import MessageError, PackageError
from .relay import Answer
from .store import EimStore, OrderState

__all__ = ["EimVersions", "version_of_iot"]

log = logging.getLogger(__name__)

_NO_PACKAGE = bytes.fromhex("BF4F03020101")


def version_of_iot(iot_versions: list[bytes]) -> str:
    """ "1.0" when an eUICC's iotVersion list names nothing newer than 1.0.x, else "1.2"."""
    majors = [tuple(v[:2]) for v in iot_versions if len(v) >= 2]
    return "1.0" if majors and all(v <= (1, 0) for v in majors) else "1.2"


def _children(data: bytes) -> list[tuple[bytes, bytes]]:
    outer = tlv.read_tlv(data)
    out, pos = [], outer.value_start
    for item in tlv.iter_tlvs(data, outer.value_start, outer.value_end):
        out.append((item.tag, bytes(data[pos : item.end])))
        pos = item.end
    return out


class EimVersions:
    """Part of :class:`~.esipa.EimCore`: the rules of this module."""

    store: EimStore

    def speak(
        self, tag: bytes, message: bytes, handler: Callable[[bytes], Answer | None], json: bool
    ) -> Answer | None:
        """Run ``handler`` on ``message`` in the eUICC's version (rules 2-5)."""
        if tag == b"\xbf\x4f":
            # One store transaction for the whole poll: the eUICC is read once (the store
            # keeps it for the transaction) and nothing can change it in between.
            with self.store.transaction():
                return self._speak_get(message, handler)
        if tag not in (b"\xbf\x50", b"\xbf\x3d"):
            return handler(message)
        try:
            eid, v1_0 = self._result_version(message)
            translated = sgp32_v1_0.request_to_v1_2(message) if v1_0 else message
            if eid is not None:  # rule 4 (v1.2 results may leave eidValue out too)
                translated = _with_eid(translated, eid)
        except (ValueError, IndexError, PackageError):  # TlvError too: malformed input is
            return handler(message)  # the core's to refuse, with the answer it defines
        answer = handler(translated)
        if not v1_0:
            return answer
        if answer is None or json:  # JSON: acknowledgements are a field in both versions
            return answer
        try:
            return replace(answer, message=sgp32_v1_0.answer_to_v1_0(answer.message))
        except sgp32_v1_0.NotInV1_0 as exc:
            raise MessageError(f"SGP.32 v1.0.1 has no answer for this: {exc}") from None

    def _speak_get(
        self, message: bytes, handler: Callable[[bytes], Answer | None]
    ) -> Answer | None:
        eid = self._eid_named(message)
        record = self.store.euicc(eid) if eid is not None else None
        if record is None or record.sgp32 != "1.0":
            answer = handler(message)
            if answer is not None and record is not None and record.sgp32 is None:
                message = sgp32_v1_0.ask_certificate_with_euicc_info2(answer.message)
                answer = replace(answer, message=message)
            return answer
        answer = handler(sgp32_v1_0.request_to_v1_2(message))
        assert answer is not None
        return self._package_v1_0(answer, eid)

    def learn_version(self, eid: str, fields: dict[bytes, bytes]) -> None:
        """Rule 1: the version of ``eid`` from the EUICCInfo2 in a solicited IpaEuiccData."""
        info = fields.get(b"\xbf\x22")
        record = self.store.euicc(eid)
        if info is None or record is None or record.sgp32_source == "operator":
            return
        try:
            decoded = schema.decode("SGP32-EUICCInfo2", info)
        except schema.DecodeError:
            return
        versions = (decoded.get("iotSpecificInfo") or {}).get("iotVersion") or []
        version = version_of_iot(versions)
        if version != record.sgp32:
            log.info("%s speaks SGP.32 %s (its EUICCInfo2)", eid, version)
            self.store.update_euicc(eid, sgp32=version, sgp32_source="euiccInfo2")

    # -- internals -----------------------------------------------------------------------

    @staticmethod
    def _eid_named(message: bytes) -> str | None:
        from .results import eid_or_none

        try:
            first = _children(message)[0][1]
        except (IndexError, ValueError):
            return None
        if first[:1] != b"\x5a":
            return None
        return eid_or_none(tlv.read_tlv(first).value(first))

    def _package_v1_0(self, answer: Answer, eid: str | None) -> Answer:
        """Rules 4 and 5 for a GetEimPackage answer to a v1.0.1 eUICC."""
        try:
            return replace(
                answer,
                message=sgp32_v1_0.answer_to_v1_0(answer.message, with_euicc_certificate=True),
            )
        except sgp32_v1_0.NotInV1_0 as exc:
            order = self.store.find_order(eid, states=[OrderState.SENT])
            if order is not None:
                self.store.update_order(
                    order.id, state=OrderState.FAILED, error=f"not in SGP.32 v1.0.1: {exc}"
                )
            log.warning("%s: package not sent: %s", eid, exc)
            return Answer(_NO_PACKAGE)

    def _result_version(self, message: bytes) -> tuple[str | None, bool]:
        """(EID, whether v1.0.1) of a result message (rule 3)."""
        parts = _children(message)
        if message[:2] == b"\xbf\x3d":
            tag, inner = parts[0]
            if tag == b"\xa0":
                return None, False  # a notification: the same in both versions
            parts = _children(inner)
        if parts and parts[0][0] == b"\x5a":
            return None, False  # eidValue: v1.2
        shape = sgp32_v1_0.looks_v1_0(message)
        eid = self._eid_of_result(parts[0][1]) if parts else None
        if shape is False:
            return eid, False
        if shape is True:
            return eid, True
        record = self.store.euicc(eid) if eid is not None else None
        return eid, record is not None and record.sgp32 == "1.0"

    def _eid_of_result(self, raw: bytes) -> str | None:
        """Rule 4: the EID a result without eidValue is for."""
        tag = raw[:1] if raw[:1] in (b"\x30", b"\x02", b"\xa0") else raw[:2]
        tid: bytes | None = None
        if tag == b"\x30":  # ePRAndNotifications: the EPR first
            raw, tag = _children(raw)[0][1], b"\xbf\x51"
        if tag == b"\xbf\x51":
            try:
                tid = packages.parse_epr(raw).eim_transaction_id
            except PackageError:
                return None
        elif tag == b"\xbf\x54":
            found = dict(_children(raw)).get(b"\x82")
            tid = None if found is None else tlv.read_tlv(found).value(found)
        elif tag == b"\xbf\x52":
            return self._eid_of_certificate(raw)
        if tid is None:
            return None
        order = self.store.find_order(None, eim_transaction_id=bytes(tid))
        return None if order is None else order.eid

    @staticmethod
    def _eid_of_certificate(raw: bytes) -> str | None:
        arm = _children(raw)[0][1]
        if arm[:1] != b"\xa0":
            return None
        certificate = dict(_children(arm)).get(b"\xa6")
        if certificate is None:
            return None
        try:
            return pki.subject_serial_number(pki.load_certificate(b"\x30" + certificate[1:]))
        except (pki.CertificateError, ValueError):
            return None


def _with_eid(message: bytes, eid: str) -> bytes:
    """A v1.2 ProvideEimPackageResult (alone or in HandleNotification) with eidValue."""
    eid_tlv = tlv.encode_tlv(b"\x5a", bytes.fromhex(eid))
    if message[:2] == b"\xbf\x3d":
        ((_, inner),) = _children(message)
        return tlv.encode_tlv(b"\xbf\x3d", _with_eid(inner, eid))
    body = b"".join(raw for _, raw in _children(message))
    return tlv.encode_tlv(b"\xbf\x50", eid_tlv + body)
