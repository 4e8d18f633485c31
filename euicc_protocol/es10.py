"""The ES10 function catalogue: which request tag is which function, for each kind of card.

One table, :data:`FUNCTIONS`, lists every ES10a/b/c function of SGP.22 v2.5 and every ES10b
function of SGP.32 v1.2 with its ASN.1 request and response types. The card's dispatcher and
the IPAd's client both read it; tags are taken from the compiled schema, never typed here.

Rules the table follows:

* A function's request and response carry the same outer tag (the standard's rule), except
  LoadBoundProfilePackage, which arrives as BPP segments (``BF36`` header, then ``A0``..``A3``
  and ``86`` TLVs) and ends with a ``BF37`` ProfileInstallationResult; it is marked
  ``segmented``.
* Each function is answered by the card profiles in its ``profiles`` set. Within one profile
  no two functions share a request tag, so ``catalogue_for(profile)`` is a plain tag map.
* Where SGP.32 v1.2 defines its own form of an SGP.22 function (``SGP32-`` types in the
  module, e.g. ``SGP32-EUICCInfo2``, ``SGP32-RetrieveNotificationsListRequest``), the SGP.32
  entry replaces the SGP.22 one in the ``sgp32`` profile.

Decisions for the ``sgp32`` profile (an SGP.32 v1.2 IoT eUICC seen from the IPAd):

* eUICC memory reset is ``BF64`` (``SGP32-EuiccMemoryResetRequest``) only. The SGP.22 form
  ``BF34`` is not answered: v1.2 moved the function to ``BF64`` with more reset options, and
  v1.0.1's ``BF34`` had a different response layout, so answering ``BF34`` with the SGP.22
  layout would match neither SGP.32 version.
* ``BF42`` is IpaeActivation (SGP.32 reuses the tag of SGP.22's LpaeActivation).
* ES10c EnableProfile, DisableProfile, DeleteProfile and SetNickname are not answered: on an
  IoT eUICC profile state changes only through eIM-signed PSMOs in LoadEuiccPackage (and the
  local ES10b functions ImmediateEnable, ProfileRollback, fallback and emergency profile).
  ES10c GetEID and GetProfilesInfo (in its SGP.32 response form) stay: IPAds read them.
* Both SetDefaultDpAddress forms are answered: the ES10a one (``BF3F``) and the SGP.32 one
  (``BF65``, named ``SGP32-SetDefaultDpAddress`` here so names stay unique per profile).
  Whether an IoT eUICC offers ``BF65`` stand-alone is unconfirmed; answering it costs nothing.

Result-code names (the named numbers of ``enableResult`` etc.) are not offered: asn1tools
drops named numbers when it compiles an INTEGER, so they are not in the compiled schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from functools import cache
from types import MappingProxyType

from euicc_protocol import schema

__all__ = [
    "FUNCTIONS",
    "PROFILES",
    "Es10Function",
    "catalogue_for",
    "function",
    "lookup",
]

#: Card profiles: an SGP.22 v2.5 consumer eUICC and an SGP.32 v1.2 IoT eUICC.
PROFILES = ("sgp22", "sgp32")

_BOTH = frozenset(PROFILES)
_SGP22 = frozenset({"sgp22"})
_SGP32 = frozenset({"sgp32"})


@dataclass(frozen=True)
class Es10Function:
    """One ES10 function: its name in the standard and its ASN.1 request/response types."""

    name: str
    interface: str  # "ES10a", "ES10b" or "ES10c"
    request_type: str
    response_type: str
    since: str  # "SGP.22" or "SGP.32": which standard defines this form
    _: KW_ONLY
    profiles: frozenset[str] = _BOTH
    segmented: bool = False

    @property
    def request_tag(self) -> bytes:
        """The outer tag of the request (the key the card dispatches on)."""
        return schema.tag_of(self.request_type)

    @property
    def response_tag(self) -> bytes:
        """The outer tag of the response."""
        return schema.tag_of(self.response_type)


def _f(
    name: str,
    interface: str,
    request: str,
    response: str,
    since: str = "SGP.22",
    profiles: frozenset[str] = _BOTH,
    segmented: bool = False,
) -> Es10Function:
    return Es10Function(
        name, interface, request, response, since, profiles=profiles, segmented=segmented
    )


_22 = "SGP.22"
_32 = "SGP.32"

#: Every ES10 function of SGP.22 v2.5 and SGP.32 v1.2 (SGP.22 order of §5.7, then SGP.32).
FUNCTIONS: tuple[Es10Function, ...] = (
    # --- SGP.22 ES10a
    _f(
        "GetEuiccConfiguredAddresses",
        "ES10a",
        "EuiccConfiguredAddressesRequest",
        "EuiccConfiguredAddressesResponse",
    ),
    _f("SetDefaultDpAddress", "ES10a", "SetDefaultDpAddressRequest", "SetDefaultDpAddressResponse"),
    # --- SGP.22 ES10b
    _f(
        "PrepareDownload", "ES10b", "PrepareDownloadRequest", "PrepareDownloadResponse", _22, _SGP22
    ),
    _f(
        "LoadBoundProfilePackage",
        "ES10b",
        "BoundProfilePackage",
        "ProfileInstallationResult",
        segmented=True,
    ),
    _f("GetEUICCChallenge", "ES10b", "GetEuiccChallengeRequest", "GetEuiccChallengeResponse"),
    _f("GetEUICCInfo1", "ES10b", "GetEuiccInfo1Request", "EUICCInfo1"),
    _f("GetEUICCInfo2", "ES10b", "GetEuiccInfo2Request", "EUICCInfo2", _22, _SGP22),
    _f("ListNotification", "ES10b", "ListNotificationRequest", "ListNotificationResponse"),
    _f(
        "RetrieveNotificationsList",
        "ES10b",
        "RetrieveNotificationsListRequest",
        "RetrieveNotificationsListResponse",
        _22,
        _SGP22,
    ),
    _f(
        "RemoveNotificationFromList",
        "ES10b",
        "NotificationSentRequest",
        "NotificationSentResponse",
    ),
    _f("LoadCRL", "ES10b", "LoadCRLRequest", "LoadCRLResponse"),
    _f(
        "AuthenticateServer",
        "ES10b",
        "AuthenticateServerRequest",
        "AuthenticateServerResponse",
        _22,
        _SGP22,
    ),
    _f("CancelSession", "ES10b", "CancelSessionRequest", "CancelSessionResponse", _22, _SGP22),
    _f("GetRAT", "ES10b", "GetRatRequest", "GetRatResponse"),
    _f("LpaeActivation", "ES10b", "LpaeActivationRequest", "LpaeActivationResponse", _22, _SGP22),
    # --- SGP.22 ES10c
    _f(
        "GetProfilesInfo",
        "ES10c",
        "ProfileInfoListRequest",
        "ProfileInfoListResponse",
        _22,
        _SGP22,
    ),
    _f("EnableProfile", "ES10c", "EnableProfileRequest", "EnableProfileResponse", _22, _SGP22),
    _f("DisableProfile", "ES10c", "DisableProfileRequest", "DisableProfileResponse", _22, _SGP22),
    _f("DeleteProfile", "ES10c", "DeleteProfileRequest", "DeleteProfileResponse", _22, _SGP22),
    _f(
        "EuiccMemoryReset",
        "ES10c",
        "EuiccMemoryResetRequest",
        "EuiccMemoryResetResponse",
        _22,
        _SGP22,
    ),
    _f("GetEID", "ES10c", "GetEuiccDataRequest", "GetEuiccDataResponse"),
    _f("SetNickname", "ES10c", "SetNicknameRequest", "SetNicknameResponse", _22, _SGP22),
    # --- SGP.32 v1.2: SGP.32 forms of SGP.22 functions
    _f(
        "PrepareDownload",
        "ES10b",
        "PrepareDownloadRequest",
        "SGP32-PrepareDownloadResponse",
        _32,
        _SGP32,
    ),
    _f("GetEUICCInfo2", "ES10b", "GetEuiccInfo2Request", "SGP32-EUICCInfo2", _32, _SGP32),
    _f(
        "RetrieveNotificationsList",
        "ES10b",
        "SGP32-RetrieveNotificationsListRequest",
        "SGP32-RetrieveNotificationsListResponse",
        _32,
        _SGP32,
    ),
    _f(
        "AuthenticateServer",
        "ES10b",
        "AuthenticateServerRequest",
        "SGP32-AuthenticateServerResponse",
        _32,
        _SGP32,
    ),
    _f(
        "CancelSession",
        "ES10b",
        "CancelSessionRequest",
        "SGP32-CancelSessionResponse",
        _32,
        _SGP32,
    ),
    _f(
        "GetProfilesInfo",
        "ES10c",
        "ProfileInfoListRequest",
        "SGP32-ProfileInfoListResponse",
        _32,
        _SGP32,
    ),
    _f(
        "EuiccMemoryReset",
        "ES10b",
        "SGP32-EuiccMemoryResetRequest",
        "SGP32-EuiccMemoryResetResponse",
        _32,
        _SGP32,
    ),
    _f(
        "SGP32-SetDefaultDpAddress",
        "ES10b",
        "SGP32-SetDefaultDpAddressRequest",
        "SGP32-SetDefaultDpAddressResponse",
        _32,
        _SGP32,
    ),
    # --- SGP.32 v1.2: new ES10b functions
    _f("LoadEuiccPackage", "ES10b", "EuiccPackageRequest", "EuiccPackageResult", _32, _SGP32),
    _f(
        "GetEimConfigurationData",
        "ES10b",
        "GetEimConfigurationDataRequest",
        "GetEimConfigurationDataResponse",
        _32,
        _SGP32,
    ),
    _f("AddInitialEim", "ES10b", "AddInitialEimRequest", "AddInitialEimResponse", _32, _SGP32),
    _f("GetCerts", "ES10b", "GetCertsRequest", "GetCertsResponse", _32, _SGP32),
    _f(
        "ImmediateEnable", "ES10b", "ImmediateEnableRequest", "ImmediateEnableResponse", _32, _SGP32
    ),
    _f(
        "ProfileRollback", "ES10b", "ProfileRollbackRequest", "ProfileRollbackResponse", _32, _SGP32
    ),
    _f(
        "ConfigureImmediateProfileEnabling",
        "ES10b",
        "ConfigureImmediateProfileEnablingRequest",
        "ConfigureImmediateProfileEnablingResponse",
        _32,
        _SGP32,
    ),
    _f(
        "ExecuteFallbackMechanism",
        "ES10b",
        "ExecuteFallbackMechanismRequest",
        "ExecuteFallbackMechanismResponse",
        _32,
        _SGP32,
    ),
    _f(
        "ReturnFromFallback",
        "ES10b",
        "ReturnFromFallbackRequest",
        "ReturnFromFallbackResponse",
        _32,
        _SGP32,
    ),
    _f(
        "EnableEmergencyProfile",
        "ES10b",
        "EnableEmergencyProfileRequest",
        "EnableEmergencyProfileResponse",
        _32,
        _SGP32,
    ),
    _f(
        "DisableEmergencyProfile",
        "ES10b",
        "DisableEmergencyProfileRequest",
        "DisableEmergencyProfileResponse",
        _32,
        _SGP32,
    ),
    _f(
        "GetConnectivityParameters",
        "ES10b",
        "GetConnectivityParametersRequest",
        "GetConnectivityParametersResponse",
        _32,
        _SGP32,
    ),
    _f("IpaeActivation", "ES10b", "IpaeActivationRequest", "IpaeActivationResponse", _32, _SGP32),
)


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown card profile {profile!r}; expected one of {PROFILES}")


@cache
def catalogue_for(profile: str = "sgp32") -> Mapping[bytes, Es10Function]:
    """The functions a card of ``profile`` answers, keyed by request tag (read-only).

    Raises ``ValueError`` for an unknown profile, and ``RuntimeError`` if the table gives two
    functions of one profile the same request tag (a bug in :data:`FUNCTIONS`).
    """
    _check_profile(profile)
    table: dict[bytes, Es10Function] = {}
    for fn in FUNCTIONS:
        if profile not in fn.profiles:
            continue
        tag = fn.request_tag
        if tag in table:
            raise RuntimeError(
                f"{profile}: {fn.name} and {table[tag].name} share request tag {tag.hex()}"
            )
        table[tag] = fn
    return MappingProxyType(table)


def lookup(tag: bytes, profile: str = "sgp32") -> Es10Function | None:
    """The function a card of ``profile`` runs for request ``tag``, or ``None``."""
    return catalogue_for(profile).get(bytes(tag))


@cache
def _by_name(profile: str) -> Mapping[str, Es10Function]:
    _check_profile(profile)
    return MappingProxyType({fn.name: fn for fn in catalogue_for(profile).values()})


def function(name: str, profile: str = "sgp32") -> Es10Function:
    """The function called ``name`` (e.g. ``"GetEID"``) as a card of ``profile`` offers it.

    Raises ``KeyError`` when that card does not offer it.
    """
    try:
        return _by_name(profile)[name]
    except KeyError:
        raise KeyError(f"{profile} card has no ES10 function {name!r}") from None
