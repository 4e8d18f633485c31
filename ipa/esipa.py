"""ESipa client (IPAd ↔ eIM), SGP.32 v1.2, both bindings (PROTOCOL.md §5.9, §4.1, §4.2).

**ASN.1 binding** (the default): one URL for every function, ``POST <eIM>/gsma/rsp2/asn1`` with
``Content-Type: application/x-gsma-rsp-asn1`` and ``X-Admin-Protocol: gsma/rsp/v2.1.0``. The
body is the DER of ``EsipaMessageFromIpaToEim``, an untagged CHOICE, so it starts directly with
the message's own tag (``BF4F`` GetEimPackageRequest ...). The answer is HTTP 200 with the DER
of ``EsipaMessageFromEimToIpa`` (``BF4F 03 02 01 01`` = "no package"); HandleNotification has
no answer message (HTTP 200 or 204, empty body).

**JSON binding**: ``POST <eIM>/gsma/rsp2/esipa/<function>`` with the ES9+ JSON conventions:
ASN.1 values as base64 of the complete TLV, ``transactionId``/``eimTransactionId`` and
``eidValue`` as upper-case hex, ``euiccChallenge`` as base64 of the raw 16 bytes, function
errors as HTTP 200 with ``functionExecutionStatus.status`` ``Failed`` and ``statusCodeData``.

Every value the eUICC or the SM-DP+ signed is carried as the exact bytes received: requests
are assembled from the raw TLVs (never decoded and re-encoded), and answers are split with a
TLV walk after a schema check. Two implicit-tag rules of the schema matter here:
CancelSessionRequestEsipa carries the card's CancelSessionResponse with its ``BF41`` replaced
by ``A1``; HandleNotificationEsipa wraps a PendingNotification in an explicit ``A0``.

TLS is verified by default: against the configured trust anchors (a PEM bundle or DER
certificates), else the system store. ``pinned_public_key`` pins the eIM's TLS key instead (the
``trustedEimPkTls`` of the eIM configuration); ``insecure`` turns checking off and must be asked
for. Plain HTTP only when the URL says ``http://`` or the config's scheme is ``"http"``.

Errors: :class:`EsipaFunctionError` (the eIM answered the function with an error code or
``Failed``), :class:`EsipaProtocolError` (the answer breaks the binding),
:class:`EsipaConnectionError` / :class:`EsipaTimeout` (unreachable, TLS, time-out).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import logging
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ipa.codes import Asn1Enum
from ipa.errors import IpaError
from rsp import schema, tlv

__all__ = [
    "ADMIN_PROTOCOL",
    "ASN1_PATH",
    "CONTENT_TYPE_ASN1",
    "JSON_PATH_PREFIX",
    "AuthenticateClientErrorEsipa",
    "AuthenticateClientOkDp",
    "AuthenticateClientOkDs",
    "Binding",
    "CancelSessionErrorEsipa",
    "EimPackage",
    "EimPackageErrorCode",
    "EimPackageKind",
    "EimPackageResultErrorCode",
    "EsipaClient",
    "EsipaConfig",
    "EsipaConnectionError",
    "EsipaError",
    "EsipaFunctionError",
    "EsipaProtocolError",
    "EsipaTimeout",
    "GetBoundProfilePackageErrorEsipa",
    "GetBoundProfilePackageOk",
    "InitiateAuthenticationErrorEsipa",
    "InitiateAuthenticationOk",
    "ProfileDownloadErrorReason",
    "ProvideEimPackageResultError",
    "StateChangeCause",
    "TlsPinMismatch",
    "authenticate_client_request",
    "cancel_session_request",
    "epr_and_notifications",
    "get_bound_profile_package_request",
    "get_eim_package_request",
    "handle_notification_request",
    "initiate_authentication_request",
    "package_result_error",
    "profile_download_trigger_result",
    "provide_eim_package_result",
]

log = logging.getLogger(__name__)

#: X-Admin-Protocol of ESipa requests (what onomondo-ipa/-eim send, PROTOCOL.md §5.9).
ADMIN_PROTOCOL = "gsma/rsp/v2.1.0"
ASN1_PATH = "/gsma/rsp2/asn1"
JSON_PATH_PREFIX = "/gsma/rsp2/esipa/"
CONTENT_TYPE_ASN1 = "application/x-gsma-rsp-asn1"
USER_AGENT = "euicc-sim-ipad"

# Function names as the standard writes them (JSON paths, error labels).
GET_EIM_PACKAGE = "getEimPackage"
PROVIDE_EIM_PACKAGE_RESULT = "provideEimPackageResult"
HANDLE_NOTIFICATION = "handleNotification"
INITIATE_AUTHENTICATION = "initiateAuthentication"
AUTHENTICATE_CLIENT = "authenticateClient"
GET_BOUND_PROFILE_PACKAGE = "getBoundProfilePackage"
CANCEL_SESSION = "cancelSession"

# The answer alternative of EsipaMessageFromEimToIpa each function expects.
_ANSWER_OF = {
    GET_EIM_PACKAGE: "getEimPackageResponse",
    PROVIDE_EIM_PACKAGE_RESULT: "provideEimPackageResultResponse",
    INITIATE_AUTHENTICATION: "initiateAuthenticationResponseEsipa",
    AUTHENTICATE_CLIENT: "authenticateClientResponseEsipa",
    GET_BOUND_PROFILE_PACKAGE: "getBoundProfilePackageResponseEsipa",
    CANCEL_SESSION: "cancelSessionResponseEsipa",
}
_SUCCESS = ("Executed-Success", "Executed-WithWarning")
_FAILURE = ("Failed", "Expired")


class Binding(enum.StrEnum):
    """Which ESipa binding a client speaks."""

    ASN1 = "asn1"
    JSON = "json"


# -- codes ----------------------------------------------------------------------------------------


class EimPackageErrorCode(Asn1Enum):
    """GetEimPackageResponse ``eimPackageError``."""

    NO_EIM_PACKAGE_AVAILABLE = 1, "noEimPackageAvailable"
    EID_NOT_FOUND = 2, "eidNotFound"
    INVALID_EID = 3, "invalidEid"
    MISSING_EID = 4, "missingEid"
    UNDEFINED_ERROR = 127, "undefinedError"


class StateChangeCause(Asn1Enum):
    """GetEimPackageRequest ``stateChangeCause``."""

    OTHER_EIM = 0, "otherEim"
    FALLBACK = 1, "fallback"
    EMERGENCY_PROFILE = 2, "emergencyProfile"
    LOCAL = 3, "local"
    RESET = 4, "reset"
    IMMEDIATE_ENABLE_PROFILE = 5, "immediateEnableProfile"
    DEVICE_CHANGE = 6, "deviceChange"
    UNDEFINED = 127, "undefined"


class ProvideEimPackageResultError(Asn1Enum):
    """ProvideEimPackageResultResponse ``provideEimPackageResultError``."""

    EID_NOT_FOUND = 2, "eidNotFound"
    INVALID_EID = 3, "invalidEid"
    MISSING_EID = 4, "missingEid"
    UNDEFINED_ERROR = 127, "undefinedError"


class EimPackageResultErrorCode(Asn1Enum):
    """EimPackageResultResponseError code: the IPAd could not process an eIM package."""

    INVALID_PACKAGE_FORMAT = 1, "invalidPackageFormat"
    UNKNOWN_PACKAGE = 2, "unknownPackage"
    UNDEFINED_ERROR = 127, "undefinedError"


class ProfileDownloadErrorReason(Asn1Enum):
    """ProfileDownloadTriggerResult ``profileDownloadErrorReason``."""

    ECALL_ACTIVE = 104, "ecallActive"
    UNDEFINED_ERROR = 127, "undefinedError"


class InitiateAuthenticationErrorEsipa(Asn1Enum):
    """InitiateAuthenticationResponseEsipa error."""

    INVALID_DP_ADDRESS = 1, "invalidDpAddress"
    EUICC_VERSION_NOT_SUPPORTED_BY_DP = 2, "euiccVersionNotSupportedByDp"
    CI_PKID_NOT_SUPPORTED = 3, "ciPKIdNotSupported"
    SMDP_ADDRESS_MISMATCH = 50, "smdpAddressMismatch"
    SMDP_OID_MISMATCH = 51, "smdpOidMismatch"
    INVALID_EIM_TRANSACTION_ID = 52, "invalidEimTransactionId"
    UNDEFINED_ERROR = 127, "undefinedError"


class AuthenticateClientErrorEsipa(Asn1Enum):
    """AuthenticateClientResponseEsipa error."""

    EUM_CERTIFICATE_INVALID = 1, "eumCertificateInvalid"
    EUM_CERTIFICATE_EXPIRED = 2, "eumCertificateExpired"
    EUICC_CERTIFICATE_INVALID = 3, "euiccCertificateInvalid"
    EUICC_CERTIFICATE_EXPIRED = 4, "euiccCertificateExpired"
    EUICC_SIGNATURE_INVALID = 5, "euiccSignatureInvalid"
    MATCHING_ID_REFUSED = 6, "matchingIdRefused"
    EID_MISMATCH = 7, "eidMismatch"
    NO_ELIGIBLE_PROFILE = 8, "noEligibleProfile"
    CI_PK_UNKNOWN = 9, "ciPKUnknown"
    INVALID_TRANSACTION_ID = 10, "invalidTransactionId"
    INSUFFICIENT_MEMORY = 11, "insufficientMemory"
    PPR_NOT_ALLOWED = 50, "pprNotAllowed"
    EVENT_ID_UNKNOWN = 56, "eventIdUnknown"
    UNDEFINED_ERROR = 127, "undefinedError"


class GetBoundProfilePackageErrorEsipa(Asn1Enum):
    """GetBoundProfilePackageResponseEsipa error."""

    EUICC_SIGNATURE_INVALID = 1, "euiccSignatureInvalid"
    CONFIRMATION_CODE_MISSING = 2, "confirmationCodeMissing"
    CONFIRMATION_CODE_REFUSED = 3, "confirmationCodeRefused"
    CONFIRMATION_CODE_RETRIES_EXCEEDED = 4, "confirmationCodeRetriesExceeded"
    BPP_REBINDING_REFUSED = 5, "bppRebindingRefused"
    DOWNLOAD_ORDER_EXPIRED = 6, "downloadOrderExpired"
    METADATA_MISMATCH = 50, "metadataMismatch"
    INVALID_TRANSACTION_ID = 95, "invalidTransactionId"
    UNDEFINED_ERROR = 127, "undefinedError"


class CancelSessionErrorEsipa(Asn1Enum):
    """CancelSessionResponseEsipa error."""

    INVALID_TRANSACTION_ID = 1, "invalidTransactionId"
    EUICC_SIGNATURE_INVALID = 2, "euiccSignatureInvalid"
    UNDEFINED_ERROR = 127, "undefinedError"


_ERROR_ENUMS: dict[str, type[Asn1Enum]] = {
    GET_EIM_PACKAGE: EimPackageErrorCode,
    PROVIDE_EIM_PACKAGE_RESULT: ProvideEimPackageResultError,
    INITIATE_AUTHENTICATION: InitiateAuthenticationErrorEsipa,
    AUTHENTICATE_CLIENT: AuthenticateClientErrorEsipa,
    GET_BOUND_PROFILE_PACKAGE: GetBoundProfilePackageErrorEsipa,
    CANCEL_SESSION: CancelSessionErrorEsipa,
}


# -- errors ---------------------------------------------------------------------------------------


class EsipaError(IpaError):
    """Base class of the ESipa client's errors; ``function`` names the ESipa function."""

    def __init__(self, message: str, *, function: str = "") -> None:
        super().__init__(message)
        self.function = function


class EsipaFunctionError(EsipaError):
    """The eIM answered the function with an error.

    Attributes:
        code: the ASN.1 error code as the function's enum (ASN.1 binding, and the JSON
            ``eimPackageError``), else None.
        subject_code, reason_code, message: ``statusCodeData`` of a JSON ``Failed`` answer.
    """

    def __init__(
        self,
        function: str,
        *,
        code: Asn1Enum | None = None,
        subject_code: str = "",
        reason_code: str = "",
        message: str = "",
    ) -> None:
        self.code = code
        self.subject_code = subject_code
        self.reason_code = reason_code
        self.message = message
        if code is not None:
            text = f"ESipa.{function}: {code.asn1_name} ({int(code)})"
        else:
            text = f"ESipa.{function} Failed: subject {subject_code or '?'}"
            text += f" reason {reason_code or '?'}"
            text += f" ({message})" if message else ""
        super().__init__(text, function=function)


class EsipaProtocolError(EsipaError):
    """The eIM's answer breaks the binding; ``status_code`` is its HTTP status (or None)."""

    def __init__(self, message: str, *, function: str = "", status_code: int | None = None):
        super().__init__(message, function=function)
        self.status_code = status_code


class EsipaConnectionError(EsipaError):
    """The eIM could not be reached: DNS, TCP, TLS, or the connection broke."""


class EsipaTimeout(EsipaConnectionError):
    """The eIM did not answer in time."""


class TlsPinMismatch(EsipaConnectionError):
    """The eIM's TLS certificate does not carry the pinned public key."""


# -- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EsipaConfig:
    """How the IPAd reaches its eIM.

    Attributes:
        binding: ASN.1 (default) or JSON.
        ca_certificates: TLS trust anchors, each a PEM bundle or one DER certificate (a
            ``trustedCertificateTls`` may be the eIM's own certificate: anchors may be leaves).
            Empty: the system's store.
        pinned_public_key: SubjectPublicKeyInfo DER the eIM's TLS certificate must carry (the
            ``trustedEimPkTls`` of the eIM configuration); replaces chain checking.
        insecure: no TLS verification at all (only when asked for).
        timeout: seconds for connecting and for each read/write.
        scheme: URL scheme for a bare ``host[:port]`` eIM address.
        user_agent, admin_protocol: the ``User-Agent`` and ``X-Admin-Protocol`` headers.
        transport: an httpx transport to use instead of the network (tests).
    """

    binding: Binding = Binding.ASN1
    ca_certificates: tuple[bytes, ...] = ()
    pinned_public_key: bytes | None = None
    insecure: bool = False
    timeout: float = 30.0
    scheme: str = "https"
    user_agent: str = USER_AGENT
    admin_protocol: str = ADMIN_PROTOCOL
    transport: httpx.AsyncBaseTransport | None = field(default=None, compare=False)

    def ssl_context(self) -> ssl.SSLContext | bool:
        """The ``verify`` argument for httpx."""
        if self.insecure:
            return False
        if self.pinned_public_key is not None:
            # The pin is checked on every new connection (see EsipaClient._check_pin); the
            # chain is not, since a pinned eIM key needs no certificate authority.
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        if not self.ca_certificates:
            return ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
            # Only these anchors (no system roots), and an anchor may be the eIM's leaf.
            context.load_verify_locations(cadata=_cadata(self.ca_certificates[0]))
            for data in self.ca_certificates[1:]:
                context.load_verify_locations(cadata=_cadata(data))
        except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"not a PEM or DER certificate: {exc}") from None
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        return context

    def base_url(self, eim: str) -> str:
        """``eim`` when it already is an ``http(s)://`` URL, else ``<scheme>://<eim>``."""
        if eim.lower().startswith(("https://", "http://")):
            return eim.rstrip("/")
        if self.scheme not in ("https", "http"):
            raise ValueError(f"scheme must be https or http, got {self.scheme!r}")
        return f"{self.scheme}://{eim}"

    def http_client(self) -> httpx.AsyncClient:
        """A new httpx client with these settings (the caller closes it)."""
        timeout = httpx.Timeout(self.timeout)
        if self.transport is not None:
            return httpx.AsyncClient(transport=self.transport, timeout=timeout)
        return httpx.AsyncClient(verify=self.ssl_context(), timeout=timeout)


def _cadata(data: bytes) -> str | bytes:
    return data.decode("ascii") if b"-----BEGIN" in data else data


# -- answers --------------------------------------------------------------------------------------


class EimPackageKind(enum.StrEnum):
    """What GetEimPackage delivered (the GetEimPackageResponse alternative)."""

    EUICC_PACKAGE_REQUEST = "euiccPackageRequest"
    IPA_EUICC_DATA_REQUEST = "ipaEuiccDataRequest"
    PROFILE_DOWNLOAD_TRIGGER_REQUEST = "profileDownloadTriggerRequest"


_PACKAGE_TAGS = {
    EimPackageKind.EUICC_PACKAGE_REQUEST: b"\xbf\x51",
    EimPackageKind.IPA_EUICC_DATA_REQUEST: b"\xbf\x52",
    EimPackageKind.PROFILE_DOWNLOAD_TRIGGER_REQUEST: b"\xbf\x54",
}


@dataclass(frozen=True, slots=True)
class EimPackage:
    """One eIM package: its kind and its TLV (``BF51``/``BF52``/``BF54``) as received."""

    kind: EimPackageKind
    raw: bytes


@dataclass(frozen=True, slots=True)
class InitiateAuthenticationOk:
    """InitiateAuthenticationOkEsipa; ASN.1 values are the complete TLVs as received.

    ``euicc_ci_pkid_to_be_used`` is the ``04`` TLV, possibly holding a truncated SKI (the IPAd
    expands it before AuthenticateServer). ``ctx_params1`` is the CtxParams1 TLV (``A0``...).
    """

    transaction_id: bytes | None
    server_signed1: bytes
    server_signature1: bytes
    euicc_ci_pkid_to_be_used: bytes
    server_certificate: bytes
    matching_id: str | None = None
    ctx_params1: bytes | None = None


@dataclass(frozen=True, slots=True)
class AuthenticateClientOkDp:
    """AuthenticateClientOkDPEsipa; ASN.1 values as received (``hash_cc`` the raw 32 bytes)."""

    transaction_id: bytes | None
    profile_metadata: bytes | None
    smdp_signed2: bytes
    smdp_signature2: bytes
    smdp_certificate: bytes
    hash_cc: bytes | None = None


@dataclass(frozen=True, slots=True)
class AuthenticateClientOkDs:
    """AuthenticateClientOkDSEsipa: an SM-DS event, maybe with a download trigger (``BF54``)."""

    transaction_id: bytes
    profile_download_trigger: bytes | None = None


@dataclass(frozen=True, slots=True)
class GetBoundProfilePackageOk:
    """GetBoundProfilePackageOkEsipa."""

    transaction_id: bytes | None
    bound_profile_package: bytes


# -- message builders (byte-exact; signed parts are never re-encoded) ------------------------------


def _one_tlv(value: bytes, tags: bytes | tuple[bytes, ...], name: str) -> bytes:
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


def _eid(eid: bytes | str) -> bytes:
    raw = bytes.fromhex(eid) if isinstance(eid, str) else bytes(eid)
    if len(raw) != 16:
        raise ValueError(f"an EID is 16 bytes (32 digits), got {len(raw)} bytes")
    return raw


def _integer(value: int) -> bytes:
    """The DER content octets of an INTEGER (two's complement, minimal)."""
    return value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)


def _tid(value: bytes, name: str = "transactionId") -> bytes:
    if not isinstance(value, bytes | bytearray) or not 1 <= len(value) <= 16:
        raise ValueError(f"{name} must be 1..16 bytes, got {value!r}")
    return bytes(value)


def get_eim_package_request(
    eid: bytes | str,
    *,
    notify_state_change: bool = False,
    state_change_cause: StateChangeCause | int | None = None,
    rplmn: bytes | None = None,
) -> bytes:
    """``BF4F { 5A eid, [80 00], [81 cause], [82 rPLMN] }`` (v1.2 tags)."""
    body = tlv.encode_tlv(b"\x5a", _eid(eid))
    if notify_state_change:
        body += b"\x80\x00"
    if state_change_cause is not None:
        body += tlv.encode_tlv(b"\x81", _integer(int(state_change_cause)))
    if rplmn is not None:
        if len(rplmn) != 3:
            raise ValueError("rPLMN is 3 bytes (MCC/MNC, TS 24.008 coding)")
        body += tlv.encode_tlv(b"\x82", rplmn)
    return tlv.encode_tlv(b"\xbf\x4f", body)


def epr_and_notifications(epr: bytes, notifications: Iterable[bytes]) -> bytes:
    """EimPackageResult ePRAndNotifications: ``30 { BF51 EPR, A0 { PendingNotification... } }``."""
    items = b"".join(
        _one_tlv(n, (b"\xbf\x37", b"\x30", b"\xa0", b"\xa1"), "notification") for n in notifications
    )
    body = _one_tlv(epr, b"\xbf\x51", "euiccPackageResult") + tlv.encode_tlv(b"\xa0", items)
    return tlv.encode_tlv(b"\x30", body)


def profile_download_trigger_result(
    *,
    profile_installation_result: bytes | None = None,
    error_reason: ProfileDownloadErrorReason | int | None = None,
    error_response: bytes | None = None,
    eim_transaction_id: bytes | None = None,
) -> bytes:
    """``BF54 { [82 eimTransactionId], BF37 PIR | 30 { 80 reason, [04 errorResponse] } }``."""
    if (profile_installation_result is None) == (error_reason is None):
        raise ValueError("give either profile_installation_result or error_reason")
    body = b""
    if eim_transaction_id is not None:
        body += tlv.encode_tlv(b"\x82", _tid(eim_transaction_id, "eimTransactionId"))
    if profile_installation_result is not None:
        body += _one_tlv(profile_installation_result, b"\xbf\x37", "profileInstallationResult")
    else:
        assert error_reason is not None
        error = tlv.encode_tlv(b"\x80", _integer(int(error_reason)))
        if error_response is not None:
            error += tlv.encode_tlv(b"\x04", bytes(error_response))
        body += tlv.encode_tlv(b"\x30", error)
    return tlv.encode_tlv(b"\xbf\x54", body)


def package_result_error(
    code: EimPackageResultErrorCode | int, eim_transaction_id: bytes | None = None
) -> bytes:
    """EimPackageResult eimPackageResultResponseError: ``A0 { [80 eimTransactionId], 02 code }``."""
    body = b""
    if eim_transaction_id is not None:
        body += tlv.encode_tlv(b"\x80", _tid(eim_transaction_id, "eimTransactionId"))
    return tlv.encode_tlv(b"\xa0", body + tlv.encode_tlv(b"\x02", _integer(int(code))))


_RESULT_TAGS = (b"\xbf\x51", b"\x30", b"\xbf\x52", b"\xbf\x54", b"\xa0")


def provide_eim_package_result(result: bytes, eid: bytes | str | None = None) -> bytes:
    """``BF50 { [5A eid], <EimPackageResult> }``; ``result`` is one EimPackageResult
    alternative: ``BF51`` EPR, ``30`` ePRAndNotifications, ``BF52`` IpaEuiccDataResponse,
    ``BF54`` ProfileDownloadTriggerResult or ``A0`` eimPackageResultResponseError."""
    body = b"" if eid is None else tlv.encode_tlv(b"\x5a", _eid(eid))
    return tlv.encode_tlv(b"\xbf\x50", body + _one_tlv(result, _RESULT_TAGS, "eimPackageResult"))


def handle_notification_request(pending_notification: bytes) -> bytes:
    """``BF3D { A0 { PendingNotification } }``, or ``BF3D { BF50 ... }`` for a
    ProvideEimPackageResult delivered as a notification."""
    if pending_notification[:2] == b"\xbf\x50":
        result = _one_tlv(pending_notification, b"\xbf\x50", "provideEimPackageResult")
        return tlv.encode_tlv(b"\xbf\x3d", result)
    item = _one_tlv(pending_notification, (b"\xbf\x37", b"\x30", b"\xa0", b"\xa1"), "notification")
    return tlv.encode_tlv(b"\xbf\x3d", tlv.encode_tlv(b"\xa0", item))


def initiate_authentication_request(
    euicc_challenge: bytes,
    *,
    smdp_address: str | None = None,
    euicc_info1: bytes | None = None,
    eim_transaction_id: bytes | None = None,
) -> bytes:
    """``BF39 { 81 euiccChallenge, [83 smdpAddress], [BF20 euiccInfo1],
    [82 eimTransactionId] }``."""
    if len(euicc_challenge) != 16:
        raise ValueError(f"euiccChallenge must be 16 bytes, got {len(euicc_challenge)}")
    body = tlv.encode_tlv(b"\x81", euicc_challenge)
    if smdp_address is not None:
        body += tlv.encode_tlv(b"\x83", smdp_address.encode("utf-8"))
    if euicc_info1 is not None:
        body += _one_tlv(euicc_info1, b"\xbf\x20", "euiccInfo1")
    if eim_transaction_id is not None:
        body += tlv.encode_tlv(b"\x82", _tid(eim_transaction_id, "eimTransactionId"))
    return tlv.encode_tlv(b"\xbf\x39", body)


def authenticate_client_request(
    transaction_id: bytes, authenticate_server_response: bytes
) -> bytes:
    """``BF3B { 80 transactionId, BF38 AuthenticateServerResponse }`` (the card's TLV as is)."""
    response = _one_tlv(authenticate_server_response, b"\xbf\x38", "authenticateServerResponse")
    return tlv.encode_tlv(b"\xbf\x3b", tlv.encode_tlv(b"\x80", _tid(transaction_id)) + response)


def get_bound_profile_package_request(
    transaction_id: bytes, prepare_download_response: bytes
) -> bytes:
    """``BF3A { 80 transactionId, BF21 PrepareDownloadResponse }``."""
    response = _one_tlv(prepare_download_response, b"\xbf\x21", "prepareDownloadResponse")
    return tlv.encode_tlv(b"\xbf\x3a", tlv.encode_tlv(b"\x80", _tid(transaction_id)) + response)


def cancel_session_request(transaction_id: bytes, cancel_session_response: bytes) -> bytes:
    """``BF41 { 80 transactionId, A1 <value of the card's BF41> }`` (implicit [1] replaces BF41)."""
    response = _one_tlv(cancel_session_response, b"\xbf\x41", "cancelSessionResponse")
    item = tlv.read_tlv(response)
    inner = tlv.encode_tlv(b"\xa1", item.value(response))
    return tlv.encode_tlv(b"\xbf\x41", tlv.encode_tlv(b"\x80", _tid(transaction_id)) + inner)


# -- answer parsing -------------------------------------------------------------------------------


def _tlvs(data: bytes, start: int, end: int) -> list[tuple[tlv.Tlv, bytes]]:
    """Every TLV in ``data[start:end]`` with its complete bytes (header as received)."""
    out = []
    pos = start
    while pos < end:
        item = tlv.read_tlv(data, pos)
        if item.end > end:
            raise ValueError(f"TLV at offset {pos} runs past its container")
        out.append((item, data[pos : item.end]))
        pos = item.end
    return out


def _alternative(
    function: str, body: bytes, *, split: bool = True
) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
    """The one alternative inside the answer message ``body``: its tag, its complete TLV, and
    (with ``split``) ``(tag, TLV)`` of its children when it is constructed."""
    try:
        outer = tlv.read_tlv(body)
        ((inner, raw),) = _tlvs(body, outer.value_start, outer.value_end)
        children = []
        if split and inner.constructed:
            children = [(c.tag, r) for c, r in _tlvs(body, inner.value_start, inner.value_end)]
    except ValueError as exc:  # TlvError is one; so is a wrong number of alternatives
        raise EsipaProtocolError(
            f"ESipa.{function}: malformed answer: {exc}", function=function
        ) from None
    return inner.tag, raw, children


def _error_code(function: str, raw: bytes) -> Asn1Enum:
    value = int.from_bytes(tlv.read_tlv(raw).value(raw), "big", signed=True)
    return _ERROR_ENUMS[function](value)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _json_str(body: Mapping[str, Any], function: str, name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        got = "missing" if value is None else f"a {type(value).__name__}"
        raise EsipaProtocolError(
            f"ESipa.{function}: {name} is {got}, expected a string", function=function
        )
    return value


def _json_b64(
    body: Mapping[str, Any], function: str, name: str, tags: bytes | tuple[bytes, ...] | None
) -> bytes:
    text = "".join(_json_str(body, function, name).split())
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise EsipaProtocolError(
            f"ESipa.{function}: {name} is not base64", function=function
        ) from None
    if tags is not None:
        try:
            _one_tlv(data, tags, name)
        except ValueError as exc:
            raise EsipaProtocolError(f"ESipa.{function}: {exc}", function=function) from None
    return data


def _json_opt_b64(
    body: Mapping[str, Any], function: str, name: str, tags: bytes | tuple[bytes, ...] | None
) -> bytes | None:
    return None if body.get(name) is None else _json_b64(body, function, name, tags)


def _json_hex(body: Mapping[str, Any], function: str, name: str) -> bytes:
    text = _json_str(body, function, name)
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise EsipaProtocolError(
            f"ESipa.{function}: {name} is not hex", function=function
        ) from None


def _json_opt_hex(body: Mapping[str, Any], function: str, name: str) -> bytes | None:
    return None if body.get(name) is None else _json_hex(body, function, name)


def _octet_string_value(raw: bytes) -> bytes:
    """The value of a ``04`` TLV, or ``raw`` itself when it is not one (raw 32-byte hashCc)."""
    if raw[:1] == b"\x04":
        try:
            item = tlv.read_tlv(raw)
            if item.end == len(raw):
                return item.value(raw)
        except tlv.TlvError:
            pass
    return raw


# -- the client -----------------------------------------------------------------------------------


class EsipaClient:
    """ESipa functions against one eIM, as coroutines.

    ``eim`` is the eIM's ``eimFqdn`` (``host[:port]``, reached over HTTPS) or a base URL
    (``https://...``; ``http://...`` for a lab eIM)::

        async with EsipaClient("eim.example.com", EsipaConfig(ca_certificates=anchors)) as eim:
            package = await eim.get_eim_package(eid)
    """

    def __init__(
        self, eim: str, config: EsipaConfig | None = None, *, http: httpx.AsyncClient | None = None
    ) -> None:
        self.config = config if config is not None else EsipaConfig()
        self.base_url = self.config.base_url(eim)
        self._http = http if http is not None else self.config.http_client()
        self._owns_http = http is None

    @property
    def binding(self) -> Binding:
        """The binding this client speaks."""
        return self.config.binding

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> EsipaClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- eIM packages ----------------------------------------------------------------------

    async def get_eim_package(
        self,
        eid: bytes | str,
        *,
        notify_state_change: bool = False,
        state_change_cause: StateChangeCause | int | None = None,
        rplmn: bytes | None = None,
    ) -> EimPackage | None:
        """ESipa.GetEimPackage: the next package for ``eid``, or None (noEimPackageAvailable).

        Raises:
            EsipaFunctionError: any other eimPackageError (``code`` is an
                :class:`EimPackageErrorCode`) or a JSON ``Failed``.
        """
        fn = GET_EIM_PACKAGE
        message = get_eim_package_request(
            eid,
            notify_state_change=notify_state_change,
            state_change_cause=state_change_cause,
            rplmn=rplmn,
        )
        if self.binding is Binding.ASN1:
            tag, raw, _ = _alternative(fn, await self._asn1(fn, message), split=False)
            if tag == b"\x02":
                return self._no_package(_error_code(fn, raw))
            for kind, package_tag in _PACKAGE_TAGS.items():
                if tag == package_tag:
                    return EimPackage(kind, raw)
            raise EsipaProtocolError(f"ESipa.{fn}: unexpected alternative {tag.hex()}", function=fn)
        request: dict[str, Any] = {"eidValue": _eid(eid).hex().upper()}
        if notify_state_change:
            request["notifyStateChange"] = True
        if state_change_cause is not None:
            request["stateChangeCause"] = int(state_change_cause)
        if rplmn is not None:
            request["rPlmn"] = rplmn.hex().upper()
        body = await self._json(fn, request)
        present = [k for k in EimPackageKind if body.get(k.value) is not None]
        error = body.get("eimPackageError")
        if len(present) + (error is not None) != 1:
            raise EsipaProtocolError(
                f"ESipa.{fn}: expected exactly one package or eimPackageError", function=fn
            )
        if error is not None:
            if isinstance(error, bool) or not isinstance(error, int):
                raise EsipaProtocolError(f"ESipa.{fn}: eimPackageError is not an integer")
            return self._no_package(EimPackageErrorCode(error))
        kind = present[0]
        return EimPackage(kind, _json_b64(body, fn, kind.value, _PACKAGE_TAGS[kind]))

    @staticmethod
    def _no_package(code: Asn1Enum) -> None:
        if code == EimPackageErrorCode.NO_EIM_PACKAGE_AVAILABLE:
            return None
        raise EsipaFunctionError(GET_EIM_PACKAGE, code=code)

    async def provide_eim_package_result(
        self, result: bytes, *, eid: bytes | str | None = None
    ) -> tuple[int, ...]:
        """ESipa.ProvideEimPackageResult with one EimPackageResult alternative (see
        :func:`provide_eim_package_result`); returns the eimAcknowledgements (seqNumbers the
        eIM acknowledges; empty for emptyResponse).

        Raises:
            EsipaFunctionError: provideEimPackageResultError (or JSON ``Failed``).
        """
        fn = PROVIDE_EIM_PACKAGE_RESULT
        message = provide_eim_package_result(result, eid)
        if self.binding is Binding.ASN1:
            tag, raw, _ = _alternative(fn, await self._asn1(fn, message))
            if tag == b"\x02":
                raise EsipaFunctionError(fn, code=_error_code(fn, raw))
            return _acknowledgements(fn, raw) if tag == b"\xbf\x53" else ()
        request: dict[str, Any] = {"eimPackageResult": _b64(result)}
        if eid is not None:
            request["eidValue"] = _eid(eid).hex().upper()
        body = await self._json(fn, request)
        error = body.get("provideEimPackageResultError")
        if isinstance(error, int) and not isinstance(error, bool):
            raise EsipaFunctionError(fn, code=ProvideEimPackageResultError(error))
        acks = body.get("eimAcknowledgements")
        if acks is None:
            return ()
        if isinstance(acks, list) and all(isinstance(a, int) for a in acks):
            return tuple(acks)  # tolerated: a plain JSON list of seqNumbers
        return _acknowledgements(fn, _json_b64(body, fn, "eimAcknowledgements", b"\xbf\x53"))

    async def handle_notification(self, notification: bytes) -> None:
        """ESipa.HandleNotification with a PendingNotification exactly as the card returned it
        (``BF37``, ``30``, or a compact ``A0``/``A1``), or with a ProvideEimPackageResult
        (``BF50``, e.g. from :func:`provide_eim_package_result`)."""
        fn = HANDLE_NOTIFICATION
        message = handle_notification_request(notification)
        if self.binding is Binding.ASN1:
            await self._asn1(fn, message, empty_ok=True)
            return
        key = (
            "provideEimPackageResult" if notification[:2] == b"\xbf\x50" else "pendingNotification"
        )
        await self._json(fn, {key: _b64(notification)}, empty_ok=True)

    # -- indirect profile download ---------------------------------------------------------

    async def initiate_authentication(
        self,
        euicc_challenge: bytes,
        *,
        smdp_address: str | None = None,
        euicc_info1: bytes | None = None,
        eim_transaction_id: bytes | None = None,
    ) -> InitiateAuthenticationOk:
        """ESipa.InitiateAuthentication: the eIM relays ES9+ initiateAuthentication."""
        fn = INITIATE_AUTHENTICATION
        message = initiate_authentication_request(
            euicc_challenge,
            smdp_address=smdp_address,
            euicc_info1=euicc_info1,
            eim_transaction_id=eim_transaction_id,
        )
        if self.binding is Binding.ASN1:
            tag, raw, parts = _alternative(fn, await self._asn1(fn, message))
            if tag != b"\xa0":
                raise EsipaFunctionError(fn, code=_error_code(fn, raw))
            return _initiate_ok(fn, parts)
        request: dict[str, Any] = {"euiccChallenge": _b64(euicc_challenge)}
        if euicc_info1 is not None:
            request["euiccInfo1"] = _b64(euicc_info1)
        if smdp_address is not None:
            request["smdpAddress"] = smdp_address
        if eim_transaction_id is not None:
            request["eimTransactionId"] = eim_transaction_id.hex().upper()
        body = await self._json(fn, request)
        matching_id = body.get("matchingId")
        return InitiateAuthenticationOk(
            transaction_id=_json_opt_hex(body, fn, "transactionId"),
            server_signed1=_json_b64(body, fn, "serverSigned1", b"\x30"),
            server_signature1=_json_b64(body, fn, "serverSignature1", b"\x5f\x37"),
            euicc_ci_pkid_to_be_used=_json_b64(body, fn, "euiccCiPKIdentifierToBeUsed", b"\x04"),
            server_certificate=_json_b64(body, fn, "serverCertificate", b"\x30"),
            matching_id=matching_id if isinstance(matching_id, str) else None,
            ctx_params1=_json_opt_b64(body, fn, "ctxParams1", b"\xa0"),
        )

    async def authenticate_client(
        self, transaction_id: bytes, authenticate_server_response: bytes
    ) -> AuthenticateClientOkDp | AuthenticateClientOkDs:
        """ESipa.AuthenticateClient with the card's ``BF38`` AuthenticateServerResponse."""
        fn = AUTHENTICATE_CLIENT
        message = authenticate_client_request(transaction_id, authenticate_server_response)
        if self.binding is Binding.ASN1:
            tag, raw, parts = _alternative(fn, await self._asn1(fn, message))
            if tag == b"\xa0":
                return _authenticate_ok_dp(fn, parts)
            if tag == b"\xa1":
                by_tag = dict(parts)
                if b"\x80" not in by_tag:
                    raise EsipaProtocolError(f"ESipa.{fn}: no transactionId", function=fn)
                return AuthenticateClientOkDs(_value(by_tag[b"\x80"]), by_tag.get(b"\xbf\x54"))
            raise EsipaFunctionError(fn, code=_error_code(fn, raw))
        body = await self._json(
            fn,
            {
                "transactionId": _tid(transaction_id).hex().upper(),
                "authenticateServerResponse": _b64(authenticate_server_response),
            },
        )
        hash_cc = _json_opt_b64(body, fn, "hashCc", None)
        return AuthenticateClientOkDp(
            transaction_id=_json_opt_hex(body, fn, "transactionId"),
            profile_metadata=_json_opt_b64(body, fn, "profileMetadata", b"\xbf\x25"),
            smdp_signed2=_json_b64(body, fn, "smdpSigned2", b"\x30"),
            smdp_signature2=_json_b64(body, fn, "smdpSignature2", b"\x5f\x37"),
            smdp_certificate=_json_b64(body, fn, "smdpCertificate", b"\x30"),
            hash_cc=None if hash_cc is None else _octet_string_value(hash_cc),
        )

    async def get_bound_profile_package(
        self, transaction_id: bytes, prepare_download_response: bytes
    ) -> GetBoundProfilePackageOk:
        """ESipa.GetBoundProfilePackage with the card's ``BF21`` PrepareDownloadResponse."""
        fn = GET_BOUND_PROFILE_PACKAGE
        message = get_bound_profile_package_request(transaction_id, prepare_download_response)
        if self.binding is Binding.ASN1:
            tag, raw, parts = _alternative(fn, await self._asn1(fn, message))
            if tag != b"\xa0":
                raise EsipaFunctionError(fn, code=_error_code(fn, raw))
            by_tag = dict(parts)
            if b"\xbf\x36" not in by_tag:
                raise EsipaProtocolError(f"ESipa.{fn}: no boundProfilePackage", function=fn)
            tid = by_tag.get(b"\x80")
            return GetBoundProfilePackageOk(
                None if tid is None else _value(tid), by_tag[b"\xbf\x36"]
            )
        body = await self._json(
            fn,
            {
                "transactionId": _tid(transaction_id).hex().upper(),
                "prepareDownloadResponse": _b64(prepare_download_response),
            },
        )
        return GetBoundProfilePackageOk(
            _json_opt_hex(body, fn, "transactionId"),
            _json_b64(body, fn, "boundProfilePackage", b"\xbf\x36"),
        )

    async def cancel_session(self, transaction_id: bytes, cancel_session_response: bytes) -> None:
        """ESipa.CancelSession with the card's ``BF41`` CancelSessionResponse."""
        fn = CANCEL_SESSION
        message = cancel_session_request(transaction_id, cancel_session_response)
        if self.binding is Binding.ASN1:
            tag, raw, _ = _alternative(fn, await self._asn1(fn, message))
            if tag != b"\xa0":
                raise EsipaFunctionError(fn, code=_error_code(fn, raw))
            return
        await self._json(
            fn,
            {
                "transactionId": _tid(transaction_id).hex().upper(),
                "cancelSessionResponse": _b64(cancel_session_response),
            },
            empty_ok=True,
        )

    # -- transport -------------------------------------------------------------------------

    async def _asn1(self, function: str, message: bytes, *, empty_ok: bool = False) -> bytes:
        """POST one ASN.1-binding message; return the answer message (b"" if allowed empty)."""
        headers = {
            "Content-Type": CONTENT_TYPE_ASN1,
            "X-Admin-Protocol": self.config.admin_protocol,
            "User-Agent": self.config.user_agent,
        }
        answer = await self._post(function, self.base_url + ASN1_PATH, message, headers)
        status, body = answer.status_code, answer.content
        if not body:
            if empty_ok and status in (200, 204):
                return b""
            raise EsipaProtocolError(
                f"ESipa.{function}: HTTP {status} without a body",
                function=function,
                status_code=status,
            )
        if status != 200:
            raise EsipaProtocolError(
                f"ESipa.{function}: HTTP {status}", function=function, status_code=status
            )
        if function == GET_EIM_PACKAGE:
            # Only the envelope here: a package the IPAd cannot decode is answered with
            # invalidPackageFormat (PROTOCOL.md §5.9), which needs the package in hand.
            try:
                outer = tlv.read_tlv(body)
            except tlv.TlvError as exc:
                raise EsipaProtocolError(
                    f"ESipa.{function}: malformed answer: {exc}", function=function
                ) from None
            if outer.tag != b"\xbf\x4f" or outer.end != len(body):
                raise EsipaProtocolError(
                    f"ESipa.{function}: expected one getEimPackageResponse (BF4F), got "
                    f"{body[:2].hex().upper()}",
                    function=function,
                    status_code=status,
                )
            return body
        expected = _ANSWER_OF.get(function)
        try:
            alternative, _ = schema.decode("EsipaMessageFromEimToIpa", body)
        except schema.DecodeError as exc:
            raise EsipaProtocolError(
                f"ESipa.{function}: not an EsipaMessageFromEimToIpa: {exc}",
                function=function,
                status_code=status,
            ) from None
        if alternative is None:  # an unknown tag in the extensible CHOICE
            raise EsipaProtocolError(
                f"ESipa.{function}: not an EsipaMessageFromEimToIpa (tag {body[:2].hex()})",
                function=function,
                status_code=status,
            )
        if alternative != expected:
            raise EsipaProtocolError(
                f"ESipa.{function}: answer is a {alternative}, expected {expected}",
                function=function,
                status_code=status,
            )
        return body

    async def _json(
        self, function: str, request: Mapping[str, Any], *, empty_ok: bool = False
    ) -> dict[str, Any]:
        """POST one JSON-binding request; return the JSON answer of a success."""
        headers = {
            "Content-Type": "application/json",
            "X-Admin-Protocol": self.config.admin_protocol,
            "User-Agent": self.config.user_agent,
        }
        content = json.dumps(request, separators=(",", ":")).encode("utf-8")
        url = self.base_url + JSON_PATH_PREFIX + function
        answer = await self._post(function, url, content, headers)
        return _parse_json_answer(function, answer, empty_ok)

    async def _post(
        self, function: str, url: str, content: bytes, headers: dict[str, str]
    ) -> httpx.Response:
        extensions = {}
        if self.config.pinned_public_key is not None and not self.config.insecure:
            extensions["trace"] = self._check_pin
        if log.isEnabledFor(logging.DEBUG):
            log.debug("ESipa %s -> %s %s", function, url, content.hex().upper())
        try:
            answer = await self._http.post(
                url, content=content, headers=headers, extensions=extensions
            )
        except EsipaError:
            raise
        except httpx.TimeoutException as exc:
            raise EsipaTimeout(
                f"ESipa.{function}: no answer from {self.base_url} ({exc!r})", function=function
            ) from exc
        except httpx.HTTPError as exc:
            raise EsipaConnectionError(
                f"ESipa.{function}: cannot reach {self.base_url}: {exc!r}", function=function
            ) from exc
        if log.isEnabledFor(logging.DEBUG):
            log.debug("ESipa %s <- HTTP %d %s", function, answer.status_code, answer.content.hex())
        return answer

    async def _check_pin(self, event: str, info: Mapping[str, Any]) -> None:
        """httpcore trace hook: refuse a new TLS connection before anything is sent on it
        unless the server's certificate carries the pinned public key."""
        if event != "connection.start_tls.complete" or "return_value" not in info:
            return
        stream = info["return_value"]
        ssl_object = stream.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        pinned = self.config.pinned_public_key
        if der is not None and pinned is not None:
            spki = (
                x509.load_der_x509_certificate(der)
                .public_key()
                .public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
            if spki == pinned:
                return
        await stream.aclose()  # nothing was sent; do not leave the connection half-open
        raise TlsPinMismatch(f"{self.base_url}: the TLS certificate does not carry the pinned key")


def _value(raw: bytes) -> bytes:
    return tlv.read_tlv(raw).value(raw)


def _acknowledgements(function: str, raw: bytes) -> tuple[int, ...]:
    try:
        return tuple(schema.decode("EimAcknowledgements", raw))
    except schema.DecodeError as exc:
        raise EsipaProtocolError(f"ESipa.{function}: eimAcknowledgements: {exc}") from None


def _initiate_ok(function: str, parts: list[tuple[bytes, bytes]]) -> InitiateAuthenticationOk:
    found: dict[str, bytes] = {}
    sequences = iter(("serverSigned1", "serverCertificate"))
    names = {b"\x80": "transactionId", b"\x5f\x37": "serverSignature1", b"\x04": "ciPKId",
             b"\x0c": "matchingId", b"\xa2": "ctxParams1"}  # fmt: skip
    for tag, raw in parts:
        name = next(sequences, "extra") if tag == b"\x30" else names.get(tag, "extra")
        found.setdefault(name, raw)
    missing = {"serverSigned1", "serverCertificate", "serverSignature1", "ciPKId"} - set(found)
    if missing:
        raise EsipaProtocolError(f"ESipa.{function}: missing {', '.join(sorted(missing))}")
    tid, mid, ctx = found.get("transactionId"), found.get("matchingId"), found.get("ctxParams1")
    return InitiateAuthenticationOk(
        transaction_id=None if tid is None else _value(tid),
        server_signed1=found["serverSigned1"],
        server_signature1=found["serverSignature1"],
        euicc_ci_pkid_to_be_used=found["ciPKId"],
        server_certificate=found["serverCertificate"],
        matching_id=None if mid is None else _value(mid).decode("utf-8"),
        ctx_params1=None if ctx is None else _value(ctx),  # [2] is explicit around the CHOICE
    )


def _authenticate_ok_dp(function: str, parts: list[tuple[bytes, bytes]]) -> AuthenticateClientOkDp:
    found: dict[str, bytes] = {}
    sequences = iter(("smdpSigned2", "smdpCertificate"))
    names = {b"\x80": "transactionId", b"\xbf\x25": "profileMetadata",
             b"\x5f\x37": "smdpSignature2", b"\x04": "hashCc"}  # fmt: skip
    for tag, raw in parts:
        name = next(sequences, "extra") if tag == b"\x30" else names.get(tag, "extra")
        found.setdefault(name, raw)
    missing = {"smdpSigned2", "smdpSignature2", "smdpCertificate"} - set(found)
    if missing:
        raise EsipaProtocolError(f"ESipa.{function}: missing {', '.join(sorted(missing))}")
    tid, hash_cc = found.get("transactionId"), found.get("hashCc")
    return AuthenticateClientOkDp(
        transaction_id=None if tid is None else _value(tid),
        profile_metadata=found.get("profileMetadata"),
        smdp_signed2=found["smdpSigned2"],
        smdp_signature2=found["smdpSignature2"],
        smdp_certificate=found["smdpCertificate"],
        hash_cc=None if hash_cc is None else _value(hash_cc),
    )


def _parse_json_answer(function: str, answer: httpx.Response, empty_ok: bool) -> dict[str, Any]:
    status, raw = answer.status_code, answer.content
    if not raw.strip():
        if empty_ok and status in (200, 204):
            return {}
        raise EsipaProtocolError(
            f"ESipa.{function}: HTTP {status} without a body", function=function, status_code=status
        )
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise EsipaProtocolError(
            f"ESipa.{function}: HTTP {status}, body is not a JSON object",
            function=function,
            status_code=status,
        )
    header = body.get("header")
    execution = header.get("functionExecutionStatus") if isinstance(header, dict) else None
    execution = execution if isinstance(execution, dict) else {}
    outcome = execution.get("status")
    if outcome in _FAILURE:
        data = execution.get("statusCodeData")
        data = data if isinstance(data, dict) else {}
        raise EsipaFunctionError(
            function,
            subject_code=str(data.get("subjectCode") or ""),
            reason_code=str(data.get("reasonCode") or ""),
            message=str(data.get("message") or ""),
        )
    if status != 200:
        raise EsipaProtocolError(
            f"ESipa.{function}: HTTP {status}", function=function, status_code=status
        )
    if outcome not in _SUCCESS:
        raise EsipaProtocolError(
            f"ESipa.{function}: functionExecutionStatus.status is {outcome!r}",
            function=function,
            status_code=status,
        )
    return body
