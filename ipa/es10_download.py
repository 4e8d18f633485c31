"""Typed ES10b download functions: AuthenticateServer, PrepareDownload, LoadBoundProfilePackage,
CancelSession (GSMA SGP.22 v2.5 §3.1.3, §5.7.5, §5.7.6, §5.7.13, §5.7.14).

Functions over an :class:`~ipa.es10.Es10Client`. The IPAd relays signed data between the
SM-DP+ and the eUICC, and the signatures cover exact bytes (SGP.22 §5.7.13, §5.7.5), so
the requests here are assembled from the **raw TLVs** received from the server, never from a
re-encoding, and every result keeps the card's response TLV as it came (``raw``) for ES9+.

AuthenticateServer, PrepareDownload and CancelSession return a result whose ``error`` is the
card's error code (None on success) instead of raising: the IPAd forwards an error response to
the SM-DP+ just like a success. Only a response that is not the expected TLV raises
:class:`~ipa.errors.ResponseFormatError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from euicc_protocol import bpp as rsp_bpp
from euicc_protocol import schema, tlv
from ipa.codes import Asn1Enum
from ipa.errors import IpaError, ResponseFormatError
from ipa.es10 import Es10Client
from ipa.types import iccid_digits

__all__ = [
    "DEFAULT_TAC",
    "AuthenticateErrorCode",
    "AuthenticateServerResult",
    "BppCommandId",
    "BppLoadError",
    "CancelSessionError",
    "CancelSessionReason",
    "CancelSessionResult",
    "DeviceInfo",
    "DownloadErrorCode",
    "InstallErrorReason",
    "PrepareDownloadResult",
    "ProfileInstallationResult",
    "authenticate_server",
    "bpp_store_metadata",
    "build_authenticate_server_request",
    "build_prepare_download_request",
    "cancel_session",
    "confirmation_code_hash",
    "ctx_params1",
    "load_bound_profile_package",
    "parse_profile_installation_result",
    "prepare_download",
    "split_bpp",
]

F_AUTHENTICATE_SERVER = "ES10b.AuthenticateServer"
F_PREPARE_DOWNLOAD = "ES10b.PrepareDownload"
F_LOAD_BPP = "ES10b.LoadBoundProfilePackage"
F_CANCEL_SESSION = "ES10b.CancelSession"

#: TAC sent when the device has none configured (the default some open-source LPAs send in
#: ctxParams1 deviceInfo, SGP.22 ES10b.AuthenticateServer).
DEFAULT_TAC = bytes.fromhex("35290611")

_TAG_AUTHENTICATE = b"\xbf\x38"
_TAG_PREPARE = b"\xbf\x21"
_TAG_CANCEL = b"\xbf\x41"
_TAG_PIR = b"\xbf\x37"
_TAG_SIGNATURE = b"\x5f\x37"
_MAC_LENGTH = 8


# -- codes --------------------------------------------------------------------------------------


class AuthenticateErrorCode(Asn1Enum):
    """AuthenticateServerResponse ``authenticateErrorCode``."""

    INVALID_CERTIFICATE = 1, "invalidCertificate"
    INVALID_SIGNATURE = 2, "invalidSignature"
    UNSUPPORTED_CURVE = 3, "unsupportedCurve"
    NO_SESSION_CONTEXT = 4, "noSessionContext"
    INVALID_OID = 5, "invalidOid"
    EUICC_CHALLENGE_MISMATCH = 6, "euiccChallengeMismatch"
    CI_PK_UNKNOWN = 7, "ciPKUnknown"
    UNDEFINED_ERROR = 127, "undefinedError"


class DownloadErrorCode(Asn1Enum):
    """PrepareDownloadResponse ``downloadErrorCode``."""

    INVALID_CERTIFICATE = 1, "invalidCertificate"
    INVALID_SIGNATURE = 2, "invalidSignature"
    UNSUPPORTED_CURVE = 3, "unsupportedCurve"
    NO_SESSION_CONTEXT = 4, "noSessionContext"
    INVALID_TRANSACTION_ID = 5, "invalidTransactionId"
    UNDEFINED_ERROR = 127, "undefinedError"


class CancelSessionReason(Asn1Enum):
    """CancelSessionReason: why the IPAd ends a download session."""

    END_USER_REJECTION = 0, "endUserRejection"
    POSTPONED = 1, "postponed"
    TIMEOUT = 2, "timeout"
    PPR_NOT_ALLOWED = 3, "pprNotAllowed"
    METADATA_MISMATCH = 4, "metadataMismatch"
    LOAD_BPP_EXECUTION_ERROR = 5, "loadBppExecutionError"
    UNDEFINED_REASON = 127, "undefinedReason"


class CancelSessionError(Asn1Enum):
    """CancelSessionResponse ``cancelSessionResponseError``."""

    INVALID_TRANSACTION_ID = 5, "invalidTransactionId"
    UNDEFINED_ERROR = 127, "undefinedError"


class BppCommandId(Asn1Enum):
    """ErrorResult ``bppCommandId``: the BPP step that failed."""

    INITIALISE_SECURE_CHANNEL = 0, "initialiseSecureChannel"
    CONFIGURE_ISDP = 1, "configureISDP"
    STORE_METADATA = 2, "storeMetadata"
    STORE_METADATA2 = 3, "storeMetadata2"
    REPLACE_SESSION_KEYS = 4, "replaceSessionKeys"
    LOAD_PROFILE_ELEMENTS = 5, "loadProfileElements"


class InstallErrorReason(Asn1Enum):
    """ErrorResult ``errorReason`` (the ASN.1 type ErrorReason)."""

    INCORRECT_INPUT_VALUES = 1, "incorrectInputValues"
    INVALID_SIGNATURE = 2, "invalidSignature"
    INVALID_TRANSACTION_ID = 3, "invalidTransactionId"
    UNSUPPORTED_CRT_VALUES = 4, "unsupportedCrtValues"
    UNSUPPORTED_REMOTE_OPERATION_TYPE = 5, "unsupportedRemoteOperationType"
    UNSUPPORTED_PROFILE_CLASS = 6, "unsupportedProfileClass"
    SCP03T_STRUCTURE_ERROR = 7, "scp03tStructureError"
    SCP03T_SECURITY_ERROR = 8, "scp03tSecurityError"
    ICCID_ALREADY_EXISTS = 9, "installFailedDueToIccidAlreadyExistsOnEuicc"
    INSUFFICIENT_MEMORY = 10, "installFailedDueToInsufficientMemoryForProfile"
    INTERRUPTION = 11, "installFailedDueToInterruption"
    PE_PROCESSING_ERROR = 12, "installFailedDueToPEProcessingError"
    DATA_MISMATCH = 13, "installFailedDueToDataMismatch"
    INVALID_NAA_KEY = 14, "testProfileInstallFailedDueToInvalidNaaKey"
    PPR_NOT_ALLOWED = 15, "pprNotAllowed"
    UNKNOWN_ERROR = 127, "installFailedDueToUnknownError"


class BppLoadError(IpaError):
    """The card stopped a LoadBoundProfilePackage without a ProfileInstallationResult.

    Attributes:
        segment: index of the payload being sent when it happened (0 = BF36/BF23).
        segments: how many payloads the BPP has.
    """

    def __init__(self, message: str, *, segment: int, segments: int) -> None:
        super().__init__(f"{F_LOAD_BPP}: {message} (payload {segment + 1} of {segments})")
        self.segment = segment
        self.segments = segments


# -- helpers ------------------------------------------------------------------------------------


def _require(value: bytes, tag: bytes, name: str) -> bytes:
    """``value`` if it is exactly one complete TLV with tag ``tag``."""
    if not isinstance(value, bytes) or not value.startswith(tag):
        raise ValueError(f"{name} must be a {tag.hex().upper()} TLV")
    try:
        item = tlv.read_tlv(value)
    except tlv.TlvError as exc:
        raise ValueError(f"{name}: {exc}") from None
    if item.end != len(value):
        raise ValueError(f"{name}: {len(value) - item.end} bytes after the TLV")
    return value


def _decode(function: str, type_name: str, response: bytes, tag: bytes) -> Any:
    if not response.startswith(tag):
        shown = response[:8].hex().upper() or "an empty response"
        expected = tag.hex().upper()
        raise ResponseFormatError(f"{function}: expected a {expected} response, got {shown}")
    try:
        return schema.decode(type_name, response)
    except schema.DecodeError as exc:
        raise ResponseFormatError(f"{function}: {exc}") from None


# -- AuthenticateServer -------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    """DeviceInfo of ctxParams1: TAC, device capabilities (asn1tools form, e.g.
    ``{"eutranEpcSupportedRelease": b"\\x0f\\x00\\x00"}``) and an optional 8-byte IMEI."""

    tac: bytes = DEFAULT_TAC
    device_capabilities: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    imei: bytes | None = None

    def __post_init__(self) -> None:
        if len(self.tac) != 4:
            raise ValueError(f"TAC must be 4 bytes, got {len(self.tac)}")
        if self.imei is not None and len(self.imei) != 8:
            raise ValueError(f"IMEI must be 8 bytes, got {len(self.imei)}")

    def to_asn1(self) -> dict[str, Any]:
        """The asn1tools value of this DeviceInfo."""
        value: dict[str, Any] = {
            "tac": self.tac,
            "deviceCapabilities": dict(self.device_capabilities),
        }
        if self.imei is not None:
            value["imei"] = self.imei
        return value


def ctx_params1(matching_id: str | None, device_info: DeviceInfo | None = None) -> bytes:
    """CtxParams1 for a download: ``A0 { [80 matchingId], A1 deviceInfo }``.

    ``matching_id`` None leaves the field out (default SM-DP+ / SM-DS flows); an empty
    string sends it empty, as an activation code with an empty token asks.
    """
    value: dict[str, Any] = {"deviceInfo": (device_info or DeviceInfo()).to_asn1()}
    if matching_id is not None:
        value["matchingId"] = matching_id
    return schema.encode("CtxParams1", ("ctxParamsForCommonAuthentication", value))


def build_authenticate_server_request(
    *,
    server_signed1: bytes,
    server_signature1: bytes,
    euicc_ci_pkid_to_be_used: bytes,
    server_certificate: bytes,
    ctx_params1: bytes,
) -> bytes:
    """``BF38`` AuthenticateServerRequest from the server's TLVs as received (SGP.22 §5.7.13)."""
    body = (
        _require(server_signed1, b"\x30", "serverSigned1")
        + _require(server_signature1, _TAG_SIGNATURE, "serverSignature1")
        + _require(euicc_ci_pkid_to_be_used, b"\x04", "euiccCiPKIdToBeUsed")
        + _require(server_certificate, b"\x30", "serverCertificate")
        + _require(ctx_params1, b"\xa0", "ctxParams1")
    )
    return tlv.encode_tlv(_TAG_AUTHENTICATE, body)


@dataclass(frozen=True, slots=True)
class AuthenticateServerResult:
    """An AuthenticateServerResponse: ``raw`` is the ``BF38`` TLV for ES9+ authenticateClient.

    ``error`` is None for authenticateResponseOk; ``transaction_id`` is that of euiccSigned1 or
    of the error.
    """

    raw: bytes
    transaction_id: bytes
    error: AuthenticateErrorCode | None = None

    @property
    def ok(self) -> bool:
        """Whether the eUICC authenticated the server."""
        return self.error is None


def authenticate_server(
    client: Es10Client,
    *,
    server_signed1: bytes,
    server_signature1: bytes,
    euicc_ci_pkid_to_be_used: bytes,
    server_certificate: bytes,
    ctx_params1: bytes,
) -> AuthenticateServerResult:
    """ES10b.AuthenticateServer with the SM-DP+'s initiateAuthentication values."""
    request = build_authenticate_server_request(
        server_signed1=server_signed1,
        server_signature1=server_signature1,
        euicc_ci_pkid_to_be_used=euicc_ci_pkid_to_be_used,
        server_certificate=server_certificate,
        ctx_params1=ctx_params1,
    )
    response = client.exchange(request)
    kind, value = _decode(
        F_AUTHENTICATE_SERVER, "SGP32-AuthenticateServerResponse", response, _TAG_AUTHENTICATE
    )
    if kind == "authenticateResponseOk":
        return AuthenticateServerResult(response, value["euiccSigned1"]["transactionId"])
    if kind == "authenticateResponseError":
        code = AuthenticateErrorCode(value["authenticateErrorCode"])
        return AuthenticateServerResult(response, value["transactionId"], code)
    # We never ask for the SGP.32 compact form; a card sending it cannot be relayed over ES9+.
    raise ResponseFormatError(f"{F_AUTHENTICATE_SERVER}: unexpected alternative {kind}")


# -- PrepareDownload ----------------------------------------------------------------------------


def confirmation_code_hash(confirmation_code: str, transaction_id: bytes) -> bytes:
    """hashCc = SHA256(SHA256(CC) ‖ transactionId) (SGP.22 §5.7.5, ES10b.PrepareDownload).

    The confirmation code is hashed as its UTF-8 (in practice ASCII) bytes.
    """
    inner = hashlib.sha256(confirmation_code.encode("utf-8")).digest()
    return hashlib.sha256(inner + transaction_id).digest()


def build_prepare_download_request(
    *,
    smdp_signed2: bytes,
    smdp_signature2: bytes,
    smdp_certificate: bytes,
    hash_cc: bytes | None = None,
) -> bytes:
    """``BF21`` PrepareDownloadRequest: smdpSigned2, smdpSignature2, [hashCc], smdpCertificate."""
    body = _require(smdp_signed2, b"\x30", "smdpSigned2") + _require(
        smdp_signature2, _TAG_SIGNATURE, "smdpSignature2"
    )
    if hash_cc is not None:
        if len(hash_cc) != 32:
            raise ValueError(f"hashCc must be 32 bytes, got {len(hash_cc)}")
        body += tlv.encode_tlv(b"\x04", hash_cc)
    body += _require(smdp_certificate, b"\x30", "smdpCertificate")
    return tlv.encode_tlv(_TAG_PREPARE, body)


@dataclass(frozen=True, slots=True)
class PrepareDownloadResult:
    """A PrepareDownloadResponse: ``raw`` is the ``BF21`` TLV for ES9+ getBoundProfilePackage."""

    raw: bytes
    transaction_id: bytes
    error: DownloadErrorCode | None = None

    @property
    def ok(self) -> bool:
        """Whether the eUICC accepted the SM-DP+'s smdpSigned2 and made its one-time key."""
        return self.error is None


def prepare_download(
    client: Es10Client,
    *,
    smdp_signed2: bytes,
    smdp_signature2: bytes,
    smdp_certificate: bytes,
    hash_cc: bytes | None = None,
) -> PrepareDownloadResult:
    """ES10b.PrepareDownload with the SM-DP+'s authenticateClient values."""
    request = build_prepare_download_request(
        smdp_signed2=smdp_signed2,
        smdp_signature2=smdp_signature2,
        smdp_certificate=smdp_certificate,
        hash_cc=hash_cc,
    )
    response = client.exchange(request)
    kind, value = _decode(
        F_PREPARE_DOWNLOAD, "SGP32-PrepareDownloadResponse", response, _TAG_PREPARE
    )
    if kind == "downloadResponseOk":
        return PrepareDownloadResult(response, value["euiccSigned2"]["transactionId"])
    if kind == "downloadResponseError":
        code = DownloadErrorCode(value["downloadErrorCode"])
        return PrepareDownloadResult(response, value["transactionId"], code)
    raise ResponseFormatError(f"{F_PREPARE_DOWNLOAD}: unexpected alternative {kind}")


# -- CancelSession ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CancelSessionResult:
    """A CancelSessionResponse: ``raw`` is the ``BF41`` TLV for ES9+ cancelSession."""

    raw: bytes
    error: CancelSessionError | None = None

    @property
    def ok(self) -> bool:
        """Whether the eUICC cancelled the session (and signed that)."""
        return self.error is None


def cancel_session(
    client: Es10Client, transaction_id: bytes, reason: CancelSessionReason | int
) -> CancelSessionResult:
    """ES10b.CancelSession: ``BF41 { 80 transactionId, 81 reason }``."""
    if not 1 <= len(transaction_id) <= 16:
        raise ValueError(f"transactionId must be 1..16 bytes, got {len(transaction_id)}")
    request = schema.encode(
        "CancelSessionRequest", {"transactionId": transaction_id, "reason": int(reason)}
    )
    response = client.exchange(request)
    kind, value = _decode(F_CANCEL_SESSION, "SGP32-CancelSessionResponse", response, _TAG_CANCEL)
    if kind == "cancelSessionResponseOk":
        return CancelSessionResult(response)
    if kind == "cancelSessionResponseError":
        return CancelSessionResult(response, CancelSessionError(value))
    raise ResponseFormatError(f"{F_CANCEL_SESSION}: unexpected alternative {kind}")


# -- LoadBoundProfilePackage --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProfileInstallationResult:
    """A ``BF37`` ProfileInstallationResult (SGP.22 §2.5.6), decoded; ``raw`` is what the
    card signed and what handleNotification carries.

    On success ``isdp_aid`` and ``sima_response`` are set; on failure ``bpp_command_id`` and
    ``error_reason`` (and ``sima_response`` when the card gave one).
    """

    raw: bytes
    transaction_id: bytes
    seq_number: int
    notification_address: str
    smdp_oid: str
    iccid: str | None = None
    isdp_aid: bytes | None = None
    sima_response: bytes | None = None
    bpp_command_id: BppCommandId | None = None
    error_reason: InstallErrorReason | None = None

    @property
    def success(self) -> bool:
        """Whether the profile was installed."""
        return self.isdp_aid is not None


def parse_profile_installation_result(raw: bytes) -> ProfileInstallationResult:
    """Decode a ``BF37`` ProfileInstallationResult.

    Raises:
        ResponseFormatError: ``raw`` is not one.
    """
    d = _decode(F_LOAD_BPP, "ProfileInstallationResult", raw, _TAG_PIR)
    data = d["profileInstallationResultData"]
    meta = data["notificationMetadata"]
    iccid = meta.get("iccid")
    common: dict[str, Any] = {
        "raw": raw,
        "transaction_id": data["transactionId"],
        "seq_number": meta["seqNumber"],
        "notification_address": meta["notificationAddress"],
        "smdp_oid": data["smdpOid"],
        "iccid": None if iccid is None else iccid_digits(iccid),
    }
    kind, result = data["finalResult"]
    if kind == "successResult":
        return ProfileInstallationResult(
            **common, isdp_aid=result["aid"], sima_response=result["simaResponse"]
        )
    return ProfileInstallationResult(
        **common,
        sima_response=result.get("simaResponse"),
        bpp_command_id=BppCommandId(result["bppCommandId"]),
        error_reason=InstallErrorReason(result["errorReason"]),
    )


def split_bpp(bpp: bytes) -> list[bytes]:
    """The LoadBoundProfilePackage payloads of ``bpp`` in sending order (SGP.22 §5.7.6).

    Raises:
        ValueError (:class:`euicc_protocol.bpp.BppFormatError`): ``bpp`` is not a BF36 of that
        layout.
    """
    return rsp_bpp.split_bpp_for_loading(bpp)


def bpp_store_metadata(payloads: list[bytes]) -> bytes:
    """The StoreMetadataRequest (``BF25``) a split BPP carries in its ``88`` segments.

    ``88`` segments are MAC-only (SCP03t, SGP.22 §2.5), so the IPAd can read the metadata the
    eUICC will store and compare it with the profileMetadata shown to the user.
    """
    parts = []
    for payload in payloads:
        if payload[:1] == b"\x88":
            item = tlv.read_tlv(payload)
            parts.append(payload[item.value_start : item.value_end - _MAC_LENGTH])
    return b"".join(parts)


def load_bound_profile_package(
    client: Es10Client, bpp: bytes | list[bytes]
) -> ProfileInstallationResult:
    """ES10b.LoadBoundProfilePackage: send each payload of the BPP as its own STORE DATA
    sequence and return the card's ProfileInstallationResult.

    Intermediate payloads get an empty answer; the first answer with data must be the
    ``BF37`` (after the last ``86``, or earlier when the card fails a step), and no further
    payload is sent after it. ``bpp`` is the ``BF36`` TLV or its payloads (:func:`split_bpp`).

    Raises:
        BppLoadError: the card (or the link to it) broke off without a ``BF37``; its
            ``__cause__`` is the transport or status-word error.
        ResponseFormatError: the card answered something other than a ``BF37``.
        ValueError: ``bpp`` is not a well-formed BPP.
    """
    payloads = split_bpp(bpp) if isinstance(bpp, bytes) else list(bpp)
    total = len(payloads)
    for index, payload in enumerate(payloads):
        try:
            response = client.exchange(payload)
        except IpaError as exc:
            raise BppLoadError(str(exc), segment=index, segments=total) from exc
        if response:
            return parse_profile_installation_result(response)
    raise BppLoadError(
        "no ProfileInstallationResult after the last segment", segment=total - 1, segments=total
    )
