"""ESipa requests of the IPAd (SGP.32 v1.2 and v1.0.1, ESipa §6.3): the DER of each
EsipaMessageFromIpaToEim alternative and of the EimPackageResult alternatives inside them.

Builders whose bytes differ between the versions take ``sgp32`` ("1.2", the default, or "1.0"):
GetEimPackageRequest (v1.0.1: rPLMN is ``81``, no stateChangeCause), ProvideEimPackageResult
(v1.0.1: ``BF50`` is the CHOICE itself, no eidValue, the error is a bare ``02``),
ePRAndNotifications (v1.0.1: the list is ``BF2B { A0 ... }``), HandleNotificationEsipa of a
result (v1.0.1: ``A1`` replaces ``BF50``), ProfileDownloadTriggerResult's error (v1.0.1: no
reason code) and InitiateAuthenticationRequestEsipa (v1.0.1: no eimTransactionId).

Builders are byte-exact: every value the eUICC or the SM-DP+ signed is carried as the exact
bytes received, checked to be one complete TLV of the right tag and never decoded and
re-encoded. Two implicit-tag rules of the schema matter here: CancelSessionRequestEsipa carries
the card's CancelSessionResponse with its ``BF41`` replaced by ``A1``; HandleNotificationEsipa
wraps a PendingNotification in an explicit ``A0``.
"""

from __future__ import annotations

from collections.abc import Iterable

from euicc_protocol import tlv
from ipa.esipa_codes import EimPackageResultErrorCode, ProfileDownloadErrorReason, StateChangeCause

__all__ = [
    "authenticate_client_request",
    "cancel_session_request",
    "eid_bytes",
    "epr_and_notifications",
    "get_bound_profile_package_request",
    "get_eim_package_request",
    "handle_notification_request",
    "initiate_authentication_request",
    "one_tlv",
    "package_result_error",
    "profile_download_trigger_result",
    "provide_eim_package_result",
    "tid_bytes",
]


def one_tlv(value: bytes, tags: bytes | tuple[bytes, ...], name: str) -> bytes:
    """``value`` if it is exactly one complete TLV whose tag is one of ``tags``."""
    wanted = (tags,) if isinstance(tags, bytes) else tags
    if not isinstance(value, bytes | bytearray):
        raise ValueError(f"{name} must be bytes")
    try:
        item = tlv.read_tlv(value)
    except tlv.TlvError as exc:
        raise ValueError(f"{name}: {exc}") from None
    if item.tag not in wanted or item.end != len(value):
        shown = " or ".join(t.hex().upper() for t in wanted)
        raise ValueError(f"{name} must be one complete {shown} TLV")
    return bytes(value)


def eid_bytes(eid: bytes | str) -> bytes:
    """The 16 bytes of an EID given as bytes or as 32 hex digits."""
    raw = bytes.fromhex(eid) if isinstance(eid, str) else bytes(eid)
    if len(raw) != 16:
        raise ValueError(f"an EID is 16 bytes (32 digits), got {len(raw)} bytes")
    return raw


def _integer(value: int) -> bytes:
    """The DER content octets of an INTEGER (two's complement, minimal)."""
    return value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)


def tid_bytes(value: bytes, name: str = "transactionId") -> bytes:
    """``value`` if it is a transactionId (1..16 bytes), else ValueError naming ``name``."""
    if not isinstance(value, bytes | bytearray) or not 1 <= len(value) <= 16:
        raise ValueError(f"{name} must be 1..16 bytes, got {value!r}")
    return bytes(value)


def get_eim_package_request(
    eid: bytes | str,
    *,
    notify_state_change: bool = False,
    state_change_cause: StateChangeCause | int | None = None,
    rplmn: bytes | None = None,
    sgp32: str = "1.2",
) -> bytes:
    """``BF4F { 5A eid, [80 00], [81 cause], [82 rPLMN] }`` (v1.2); v1.0.1:
    ``BF4F { 5A eid, [80 00], [81 rPLMN] }`` (a cause can only be announced by
    notifyStateChange)."""
    body = tlv.encode_tlv(b"\x5a", eid_bytes(eid))
    v1_0 = sgp32 == "1.0"
    if notify_state_change or (v1_0 and state_change_cause is not None):
        body += b"\x80\x00"
    if state_change_cause is not None and not v1_0:
        body += tlv.encode_tlv(b"\x81", _integer(int(state_change_cause)))
    if rplmn is not None:
        if len(rplmn) != 3:
            raise ValueError("rPLMN is 3 bytes (MCC/MNC, TS 24.008 coding)")
        body += tlv.encode_tlv(b"\x81" if v1_0 else b"\x82", rplmn)
    return tlv.encode_tlv(b"\xbf\x4f", body)


def epr_and_notifications(epr: bytes, notifications: Iterable[bytes], sgp32: str = "1.2") -> bytes:
    """EimPackageResult ePRAndNotifications: ``30 { BF51 EPR, A0 { PendingNotification... } }``
    (v1.2); v1.0.1: ``30 { BF51 EPR, BF2B { A0 { PendingNotification... } } }``."""
    items = b"".join(
        one_tlv(n, (b"\xbf\x37", b"\x30", b"\xa0", b"\xa1"), "notification") for n in notifications
    )
    listed = tlv.encode_tlv(b"\xa0", items)
    if sgp32 == "1.0":
        listed = tlv.encode_tlv(b"\xbf\x2b", listed)
    body = one_tlv(epr, b"\xbf\x51", "euiccPackageResult") + listed
    return tlv.encode_tlv(b"\x30", body)


def profile_download_trigger_result(
    *,
    profile_installation_result: bytes | None = None,
    error_reason: ProfileDownloadErrorReason | int | None = None,
    error_response: bytes | None = None,
    eim_transaction_id: bytes | None = None,
    sgp32: str = "1.2",
) -> bytes:
    """``BF54 { [82 eimTransactionId], BF37 PIR | 30 { 80 reason, [04 errorResponse] } }``
    (v1.2); v1.0.1 has no reason code: ``30 { [80 errorResponse] }``."""
    if (profile_installation_result is None) == (error_reason is None):
        raise ValueError("give either profile_installation_result or error_reason")
    body = b""
    if eim_transaction_id is not None:
        body += tlv.encode_tlv(b"\x82", tid_bytes(eim_transaction_id, "eimTransactionId"))
    if profile_installation_result is not None:
        body += one_tlv(profile_installation_result, b"\xbf\x37", "profileInstallationResult")
    else:
        assert error_reason is not None
        if sgp32 == "1.0":
            error = b"" if error_response is None else tlv.encode_tlv(b"\x80", error_response)
        else:
            error = tlv.encode_tlv(b"\x80", _integer(int(error_reason)))
            if error_response is not None:
                error += tlv.encode_tlv(b"\x04", bytes(error_response))
        body += tlv.encode_tlv(b"\x30", error)
    return tlv.encode_tlv(b"\xbf\x54", body)


def package_result_error(
    code: EimPackageResultErrorCode | int,
    eim_transaction_id: bytes | None = None,
    sgp32: str = "1.2",
) -> bytes:
    """EimPackageResult eimPackageResultResponseError: ``A0 { [80 eimTransactionId], 02 code }``
    (v1.2); v1.0.1 eimPackageError: ``02 code`` (no transaction id)."""
    if sgp32 == "1.0":
        return tlv.encode_tlv(b"\x02", _integer(int(code)))
    body = b""
    if eim_transaction_id is not None:
        body += tlv.encode_tlv(b"\x80", tid_bytes(eim_transaction_id, "eimTransactionId"))
    return tlv.encode_tlv(b"\xa0", body + tlv.encode_tlv(b"\x02", _integer(int(code))))


_RESULT_TAGS = (b"\xbf\x51", b"\x30", b"\xbf\x52", b"\xbf\x54", b"\xa0")
_RESULT_TAGS_V1_0 = (b"\xbf\x51", b"\x30", b"\xbf\x52", b"\xbf\x54", b"\x02")


def provide_eim_package_result(
    result: bytes, eid: bytes | str | None = None, sgp32: str = "1.2"
) -> bytes:
    """``BF50 { [5A eid], <EimPackageResult> }``; ``result`` is one EimPackageResult
    alternative: ``BF51`` EPR, ``30`` ePRAndNotifications, ``BF52`` IpaEuiccDataResponse,
    ``BF54`` ProfileDownloadTriggerResult or ``A0`` eimPackageResultResponseError.

    v1.0.1: ``BF50 { <alternative> }``, the error alternative is ``02`` and ``eid`` is not
    sent (the version has no eidValue here)."""
    if sgp32 == "1.0":
        alternative = one_tlv(result, _RESULT_TAGS_V1_0, "eimPackageResult")
        return tlv.encode_tlv(b"\xbf\x50", alternative)
    body = b"" if eid is None else tlv.encode_tlv(b"\x5a", eid_bytes(eid))
    return tlv.encode_tlv(b"\xbf\x50", body + one_tlv(result, _RESULT_TAGS, "eimPackageResult"))


def handle_notification_request(pending_notification: bytes, sgp32: str = "1.2") -> bytes:
    """``BF3D { A0 { PendingNotification } }``, or ``BF3D { BF50 ... }`` for a
    ProvideEimPackageResult delivered as a notification (v1.0.1: ``BF3D { A1 ... }``, the
    implicit ``[1]`` replacing ``BF50``)."""
    if pending_notification[:2] == b"\xbf\x50":
        result = one_tlv(pending_notification, b"\xbf\x50", "provideEimPackageResult")
        if sgp32 == "1.0":
            result = tlv.encode_tlv(b"\xa1", tlv.read_tlv(result).value(result))
        return tlv.encode_tlv(b"\xbf\x3d", result)
    item = one_tlv(pending_notification, (b"\xbf\x37", b"\x30", b"\xa0", b"\xa1"), "notification")
    return tlv.encode_tlv(b"\xbf\x3d", tlv.encode_tlv(b"\xa0", item))


def initiate_authentication_request(
    euicc_challenge: bytes,
    *,
    smdp_address: str | None = None,
    euicc_info1: bytes | None = None,
    eim_transaction_id: bytes | None = None,
    sgp32: str = "1.2",
) -> bytes:
    """``BF39 { 81 euiccChallenge, [83 smdpAddress], [BF20 euiccInfo1],
    [82 eimTransactionId] }`` (v1.0.1 has no eimTransactionId: it is left out)."""
    if len(euicc_challenge) != 16:
        raise ValueError(f"euiccChallenge must be 16 bytes, got {len(euicc_challenge)}")
    body = tlv.encode_tlv(b"\x81", euicc_challenge)
    if smdp_address is not None:
        body += tlv.encode_tlv(b"\x83", smdp_address.encode("utf-8"))
    if euicc_info1 is not None:
        body += one_tlv(euicc_info1, b"\xbf\x20", "euiccInfo1")
    if eim_transaction_id is not None and sgp32 != "1.0":
        body += tlv.encode_tlv(b"\x82", tid_bytes(eim_transaction_id, "eimTransactionId"))
    return tlv.encode_tlv(b"\xbf\x39", body)


def authenticate_client_request(
    transaction_id: bytes, authenticate_server_response: bytes
) -> bytes:
    """``BF3B { 80 transactionId, BF38 AuthenticateServerResponse }`` (the card's TLV as is)."""
    response = one_tlv(authenticate_server_response, b"\xbf\x38", "authenticateServerResponse")
    return _session_request(b"\xbf\x3b", transaction_id, response)


def get_bound_profile_package_request(
    transaction_id: bytes, prepare_download_response: bytes
) -> bytes:
    """``BF3A { 80 transactionId, BF21 PrepareDownloadResponse }``."""
    response = one_tlv(prepare_download_response, b"\xbf\x21", "prepareDownloadResponse")
    return _session_request(b"\xbf\x3a", transaction_id, response)


def cancel_session_request(transaction_id: bytes, cancel_session_response: bytes) -> bytes:
    """``BF41 { 80 transactionId, A1 <value of the card's BF41> }`` (implicit [1] replaces BF41)."""
    response = one_tlv(cancel_session_response, b"\xbf\x41", "cancelSessionResponse")
    item = tlv.read_tlv(response)
    inner = tlv.encode_tlv(b"\xa1", item.value(response))
    return _session_request(b"\xbf\x41", transaction_id, inner)


def _session_request(tag: bytes, transaction_id: bytes, body: bytes) -> bytes:
    """``<tag> { 80 transactionId, <body> }``: a request within an RSP session."""
    return tlv.encode_tlv(tag, tlv.encode_tlv(b"\x80", tid_bytes(transaction_id)) + body)
