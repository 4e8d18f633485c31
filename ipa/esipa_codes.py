"""ESipa function names, their error codes and the exceptions the ESipa client raises
(GSMA SGP.32 v1.2 §5.14, ESipa functions; ASN.1 in §6.3).

Codes are :class:`~ipa.codes.Asn1Enum` members named after the ASN.1 (``asn1_name``), one enum
per function answer (and the two request enums, :class:`StateChangeCause` and the IPAd's own
:class:`EimPackageResultErrorCode` / :class:`ProfileDownloadErrorReason`).

Errors: :class:`EsipaFunctionError` (the eIM answered the function with an error code or
``Failed``), :class:`EsipaProtocolError` (the answer breaks the binding),
:class:`EsipaConnectionError` / :class:`EsipaTimeout` / :class:`TlsPinMismatch` (unreachable,
TLS, time-out).
"""

from __future__ import annotations

from ipa.codes import Asn1Enum
from ipa.errors import IpaError

__all__ = [
    "AUTHENTICATE_CLIENT",
    "CANCEL_SESSION",
    "ERROR_ENUMS",
    "GET_BOUND_PROFILE_PACKAGE",
    "GET_EIM_PACKAGE",
    "HANDLE_NOTIFICATION",
    "INITIATE_AUTHENTICATION",
    "PROVIDE_EIM_PACKAGE_RESULT",
    "AuthenticateClientErrorEsipa",
    "CancelSessionErrorEsipa",
    "EimPackageErrorCode",
    "EimPackageResultErrorCode",
    "EsipaConnectionError",
    "EsipaError",
    "EsipaFunctionError",
    "EsipaProtocolError",
    "EsipaTimeout",
    "GetBoundProfilePackageErrorEsipa",
    "InitiateAuthenticationErrorEsipa",
    "ProfileDownloadErrorReason",
    "ProvideEimPackageResultError",
    "StateChangeCause",
    "TlsPinMismatch",
]

# Function names as the standard writes them (JSON paths, error labels).
GET_EIM_PACKAGE = "getEimPackage"
PROVIDE_EIM_PACKAGE_RESULT = "provideEimPackageResult"
HANDLE_NOTIFICATION = "handleNotification"
INITIATE_AUTHENTICATION = "initiateAuthentication"
AUTHENTICATE_CLIENT = "authenticateClient"
GET_BOUND_PROFILE_PACKAGE = "getBoundProfilePackage"
CANCEL_SESSION = "cancelSession"


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


#: The error enum of each function's answer.
ERROR_ENUMS: dict[str, type[Asn1Enum]] = {
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
