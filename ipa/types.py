"""What the ES10 client returns: immutable dataclasses and IntEnums named after the ASN.1.

Rules that hold for every type here:

* Field names are the ASN.1 component names in snake_case (``profileNickname`` ->
  ``profile_nickname``); ``to_json()`` returns a dict keyed by the exact ASN.1 names, leaves
  out absent OPTIONAL components, writes bytes as upper-case hex, enum values as their ASN.1
  named number (``"enabled"``), named BIT STRINGs as lists of bit names and VersionType as
  ``"major.minor.revision"``. The only deliberate departure: ``iccid`` is the ICCID's digits
  (the raw EF-coded ``5A`` value is kept in ``iccid_raw`` and left out of the JSON).
* Enum members are the ASN.1 named numbers in UPPER_SNAKE_CASE and carry the exact ASN.1
  spelling in ``asn1_name``. A value the schema does not name (a newer card) still converts:
  it becomes a pseudo-member whose ``asn1_name`` is ``"unknown(<value>)"``.
* Structures the IPAd must forward unchanged (notifications, eUICC info) keep their raw TLV.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from euicc_protocol.iccid import InvalidIccid, iccid_from_ef
from euicc_protocol.schema import bit_positions, bits

# The enums live in ipa.codes; they are re-exported here so callers need one import.
from .codes import (
    Asn1Enum as Asn1Enum,
)
from .codes import (
    DeleteNotificationStatus as DeleteNotificationStatus,
)
from .codes import (
    DeleteResult as DeleteResult,
)
from .codes import (
    DisableResult as DisableResult,
)
from .codes import (
    EnableResult as EnableResult,
)
from .codes import (
    EuiccCategory as EuiccCategory,
)
from .codes import (
    GetCertsError as GetCertsError,
)
from .codes import (
    IconType as IconType,
)
from .codes import (
    IpaMode as IpaMode,
)
from .codes import (
    ListNotificationsResultError as ListNotificationsResultError,
)
from .codes import (
    LoadCrlError as LoadCrlError,
)
from .codes import (
    NotificationEvent as NotificationEvent,
)
from .codes import (
    NotificationsListResultError as NotificationsListResultError,
)
from .codes import (
    ProfileClass as ProfileClass,
)
from .codes import (
    ProfileInfoListError as ProfileInfoListError,
)
from .codes import (
    ProfileState as ProfileState,
)
from .codes import (
    ResetEimResult as ResetEimResult,
)
from .codes import (
    ResetImmediateEnableConfigResult as ResetImmediateEnableConfigResult,
)
from .codes import (
    ResetOption as ResetOption,
)
from .codes import (
    ResetResult as ResetResult,
)
from .codes import (
    SetDefaultDpAddressResult as SetDefaultDpAddressResult,
)
from .codes import (
    SetNicknameResult as SetNicknameResult,
)

# Names of the bits of the named BIT STRINGs the client reports, in bit order.
PPR_IDS_BITS = ("pprUpdateControl", "ppr1", "ppr2")
PPR_FLAGS_BITS = ("consentRequired",)
RSP_CAPABILITY_BITS = (
    "additionalProfile",
    "crlSupport",
    "rpmSupport",
    "testProfileSupport",
    "deviceInfoExtensibilitySupport",
    "serviceSpecificDataSupport",
)
TRE_PROPERTIES_BITS = ("isDiscrete", "isIntegrated", "usesRemoteMemory")
UICC_CAPABILITY_BITS = (
    "contactlessSupport", "usimSupport", "isimSupport", "csimSupport",
    "akaMilenage", "akaCave", "akaTuak128", "akaTuak256", "usimTestAlgorithm", "rfu2",
    "gbaAuthenUsim", "gbaAuthenISim", "mbmsAuthenUsim", "eapClient", "javacard", "multos",
    "multipleUsimSupport", "multipleIsimSupport", "multipleCsimSupport", "berTlvFileSupport",
    "dfLinkSupport", "catTp", "getIdentity", "profile-a-x25519", "profile-b-p256",
    "suciCalculatorApi", "dns-resolution", "scp11ac", "scp11c-authorization-mechanism",
    "s16mode", "eaka", "iotminimal",
)  # fmt: skip


# ---------------------------------------------------------------------------------------
# Conversions shared by the dataclasses
# ---------------------------------------------------------------------------------------


def iccid_digits(raw: bytes) -> str:
    """Digits of an EF-coded (nibble-swapped, ``F``-padded) ICCID.

    A value that is not valid BCD (seen on test cards) is shown nibble-swapped in hex
    rather than rejected, so one odd profile never hides the others.
    """
    try:
        return iccid_from_ef(raw)
    except InvalidIccid:
        swapped = "".join(f"{b & 0x0F:X}{b >> 4:X}" for b in raw)
        return swapped.rstrip("F")


def version_str(value: bytes) -> str:
    """VersionType (3 bytes major/minor/revision) as ``"2.3.0"``; other lengths as hex."""
    if len(value) == 3:
        return f"{value[0]}.{value[1]}.{value[2]}"
    return value.hex().upper()


def bit_names(value: tuple[bytes, int], names: tuple[str, ...]) -> tuple[str, ...]:
    """Set bits of a decoded named BIT STRING as names; unnamed bits become ``"bit<n>"``."""
    return tuple(names[p] if p < len(names) else f"bit{p}" for p in sorted(bit_positions(value)))


def notification_events(value: tuple[bytes, int]) -> tuple[NotificationEvent, ...]:
    """Set bits of a decoded NotificationEvent BIT STRING."""
    return tuple(NotificationEvent(p) for p in sorted(bit_positions(value)))


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex().upper()
    if isinstance(value, Asn1Enum):
        return value.asn1_name if value.is_known else int(value)
    if isinstance(value, JsonMixin):
        return value.to_json()
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    return value


class JsonMixin:
    """``to_json()`` for the dataclasses: ``_JSON`` maps attribute -> ASN.1 name."""

    __slots__ = ()
    _JSON: ClassVar[tuple[tuple[str, str], ...]] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict keyed by the ASN.1 component names (absent OPTIONALs left out)."""
        out: dict[str, Any] = {}
        for attr, key in self._JSON:
            value = getattr(self, attr)
            if value is not None:
                out[key] = _json_value(value)
        return out


def _json_map(cls: type, **renames: str) -> tuple[tuple[str, str], ...]:
    # camelCase of each field, except where the ASN.1 spelling is not mechanical.
    pairs = []
    for f in fields(cls):
        if f.name in renames:
            if renames[f.name]:
                pairs.append((f.name, renames[f.name]))
            continue
        head, *rest = f.name.split("_")
        pairs.append((f.name, head + "".join(w.capitalize() for w in rest)))
    return tuple(pairs)


def _opt(d: Mapping[str, Any], key: str, conv: Any) -> Any:
    value = d.get(key)
    return None if value is None else conv(value)


# ---------------------------------------------------------------------------------------
# Dataclasses
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OperatorId(JsonMixin):
    """OperatorId: ``mccMnc`` (3 bytes, TS 24.008 coding), optional GID1/GID2 contents."""

    mcc_mnc: bytes
    gid1: bytes | None = None
    gid2: bytes | None = None

    @classmethod
    def from_asn1(cls, d: Mapping[str, Any]) -> OperatorId:
        """Build from the schema's decoded value."""
        return cls(d["mccMnc"], d.get("gid1"), d.get("gid2"))


@dataclass(frozen=True, slots=True)
class NotificationConfigurationInformation(JsonMixin):
    """Which operations of a profile produce a notification, and where it goes."""

    profile_management_operation: tuple[NotificationEvent, ...]
    notification_address: str

    @classmethod
    def from_asn1(cls, d: Mapping[str, Any]) -> NotificationConfigurationInformation:
        """Build from the schema's decoded value."""
        return cls(notification_events(d["profileManagementOperation"]), d["notificationAddress"])


@dataclass(frozen=True, slots=True)
class DpProprietaryData(JsonMixin):
    """DpProprietaryData: the OID of the SM-DP+ that created the profile."""

    dp_oid: str


@dataclass(frozen=True, slots=True)
class VendorSpecificData(JsonMixin):
    """One entry of a VendorSpecificExtension (``vendorSpecificData`` kept as raw bytes)."""

    vendor_oid: str
    vendor_specific_data: bytes


@dataclass(frozen=True, slots=True)
class ProfileInfo(JsonMixin):
    """ProfileInfo (``E3``), SGP.22 fields plus the SGP.32 v1.2 ones; absent fields are None.

    ``fallback_attribute`` is ``BOOLEAN DEFAULT FALSE`` in the schema, so it is never None.
    """

    iccid: str | None = None
    iccid_raw: bytes | None = None
    isdp_aid: bytes | None = None
    profile_state: ProfileState | None = None
    profile_nickname: str | None = None
    service_provider_name: str | None = None
    profile_name: str | None = None
    icon_type: IconType | None = None
    icon: bytes | None = None
    profile_class: ProfileClass | None = None
    notification_configuration_info: tuple[NotificationConfigurationInformation, ...] | None = None
    profile_owner: OperatorId | None = None
    dp_proprietary_data: DpProprietaryData | None = None
    profile_policy_rules: tuple[str, ...] | None = None
    service_specific_data_stored_in_euicc: tuple[VendorSpecificData, ...] | None = None
    ecall_indication: bool | None = None
    fallback_attribute: bool = False
    fallback_allowed: bool | None = None

    @classmethod
    def from_asn1(cls, d: Mapping[str, Any]) -> ProfileInfo:
        """Build from the schema's decoded ``SGP32-ProfileInfo``."""
        raw = d.get("iccid")
        dp = d.get("dpProprietaryData")
        vendor = d.get("serviceSpecificDataStoredInEuicc")
        nci = d.get("notificationConfigurationInfo")
        return cls(
            iccid=None if raw is None else iccid_digits(raw),
            iccid_raw=raw,
            isdp_aid=d.get("isdpAid"),
            profile_state=_opt(d, "profileState", ProfileState),
            profile_nickname=d.get("profileNickname"),
            service_provider_name=d.get("serviceProviderName"),
            profile_name=d.get("profileName"),
            icon_type=_opt(d, "iconType", IconType),
            icon=d.get("icon"),
            profile_class=_opt(d, "profileClass", ProfileClass),
            notification_configuration_info=None
            if nci is None
            else tuple(NotificationConfigurationInformation.from_asn1(x) for x in nci),
            profile_owner=_opt(d, "profileOwner", OperatorId.from_asn1),
            dp_proprietary_data=None if dp is None else DpProprietaryData(dp["dpOid"]),
            profile_policy_rules=_opt(
                d, "profilePolicyRules", lambda v: bit_names(v, PPR_IDS_BITS)
            ),
            service_specific_data_stored_in_euicc=None
            if vendor is None
            else tuple(
                VendorSpecificData(v["vendorOid"], bytes(v["vendorSpecificData"])) for v in vendor
            ),
            ecall_indication=d.get("ecallIndication"),
            fallback_attribute=bool(d.get("fallbackAttribute", False)),
            fallback_allowed=d.get("fallbackAllowed"),
        )

    def to_json(self) -> dict[str, Any]:
        """JSON dict; ``fallbackAttribute`` appears only when TRUE (its DEFAULT is FALSE)."""
        out = JsonMixin.to_json(self)
        if not self.fallback_attribute:
            del out["fallbackAttribute"]
        return out


@dataclass(frozen=True, slots=True)
class EuiccInfo1(JsonMixin):
    """EUICCInfo1 (``BF20``); ``raw`` is the TLV as the card sent it (for ES9+/ESipa)."""

    svn: str
    euicc_ci_pkid_list_for_verification: tuple[bytes, ...]
    euicc_ci_pkid_list_for_signing: tuple[bytes, ...]
    raw: bytes = b""

    @classmethod
    def from_asn1(cls, d: Mapping[str, Any], raw: bytes = b"") -> EuiccInfo1:
        """Build from the schema's decoded ``EUICCInfo1``."""
        return cls(
            version_str(d["svn"]),
            tuple(d["euiccCiPKIdListForVerification"]),
            tuple(d["euiccCiPKIdListForSigning"]),
            raw,
        )


@dataclass(frozen=True, slots=True)
class CertificationDataObject(JsonMixin):
    """CertificationDataObject (GlobalPlatform DLOA)."""

    platform_label: str
    discovery_base_url: str


@dataclass(frozen=True, slots=True)
class IotSpecificInfo(JsonMixin):
    """IoTSpecificInfo (``B4``): SGP.32 versions, eCall and fallback support."""

    iot_version: tuple[str, ...]
    ecall_supported: bool = False
    fallback_supported: bool = False

    def to_json(self) -> dict[str, Any]:
        """JSON dict; the NULL flags appear (as ``null``) only when present."""
        out: dict[str, Any] = {"iotVersion": list(self.iot_version)}
        if self.ecall_supported:
            out["ecallSupported"] = None
        if self.fallback_supported:
            out["fallbackSupported"] = None
        return out


@dataclass(frozen=True, slots=True)
class EuiccInfo2(JsonMixin):
    """SGP32-EUICCInfo2 (``BF22``); an SGP.22 card's EUICCInfo2 fits with the IoT fields None.

    VersionType fields are ``"major.minor.revision"`` strings; named BIT STRINGs are tuples of
    bit names. ``raw`` is the TLV as the card sent it.
    """

    profile_version: str
    svn: str
    euicc_firmware_ver: str
    ext_card_resource: bytes
    uicc_capability: tuple[str, ...]
    ts102241_version: str | None
    globalplatform_version: str | None
    rsp_capability: tuple[str, ...]
    euicc_ci_pkid_list_for_verification: tuple[bytes, ...]
    euicc_ci_pkid_list_for_signing: tuple[bytes, ...]
    euicc_category: EuiccCategory | None
    forbidden_profile_policy_rules: tuple[str, ...] | None
    pp_version: str
    sas_acreditation_number: str
    certification_data_object: CertificationDataObject | None
    tre_properties: tuple[str, ...] | None
    tre_product_reference: str | None
    additional_euicc_profile_package_versions: tuple[str, ...] | None
    ipa_mode: IpaMode | None = None
    euicc_ci_pkid_list_for_signing_v3: tuple[bytes, ...] | None = None
    additional_euicc_info: bytes | None = None
    highest_svn: str | None = None
    iot_specific_info: IotSpecificInfo | None = None
    raw: bytes = b""

    @classmethod
    def from_asn1(cls, d: Mapping[str, Any], raw: bytes = b"") -> EuiccInfo2:
        """Build from the schema's decoded ``SGP32-EUICCInfo2`` (or SGP.22 ``EUICCInfo2``)."""
        cdo = d.get("certificationDataObject")
        iot = d.get("iotSpecificInfo")
        return cls(
            profile_version=version_str(d["profileVersion"]),
            svn=version_str(d["svn"]),
            euicc_firmware_ver=version_str(d["euiccFirmwareVer"]),
            ext_card_resource=d["extCardResource"],
            uicc_capability=bit_names(d["uiccCapability"], UICC_CAPABILITY_BITS),
            ts102241_version=_opt(d, "ts102241Version", version_str),
            globalplatform_version=_opt(d, "globalplatformVersion", version_str),
            rsp_capability=bit_names(d["rspCapability"], RSP_CAPABILITY_BITS),
            euicc_ci_pkid_list_for_verification=tuple(d["euiccCiPKIdListForVerification"]),
            euicc_ci_pkid_list_for_signing=tuple(d["euiccCiPKIdListForSigning"]),
            euicc_category=_opt(d, "euiccCategory", EuiccCategory),
            forbidden_profile_policy_rules=_opt(
                d, "forbiddenProfilePolicyRules", lambda v: bit_names(v, PPR_IDS_BITS)
            ),
            pp_version=version_str(d["ppVersion"]),
            sas_acreditation_number=d["sasAcreditationNumber"],
            certification_data_object=None
            if cdo is None
            else CertificationDataObject(cdo["platformLabel"], cdo["discoveryBaseURL"]),
            tre_properties=_opt(d, "treProperties", lambda v: bit_names(v, TRE_PROPERTIES_BITS)),
            tre_product_reference=d.get("treProductReference"),
            additional_euicc_profile_package_versions=_opt(
                d, "additionalEuiccProfilePackageVersions", lambda v: tuple(map(version_str, v))
            ),
            ipa_mode=_opt(d, "ipaMode", IpaMode),
            euicc_ci_pkid_list_for_signing_v3=_opt(d, "euiccCiPKIdListForSigningV3", tuple),
            additional_euicc_info=d.get("additionalEuiccInfo"),
            highest_svn=_opt(d, "highestSvn", version_str),
            iot_specific_info=None
            if iot is None
            else IotSpecificInfo(
                tuple(version_str(v) for v in iot["iotVersion"]),
                "ecallSupported" in iot,
                "fallbackSupported" in iot,
            ),
            raw=raw,
        )


@dataclass(frozen=True, slots=True)
class EuiccConfiguredAddresses(JsonMixin):
    """EuiccConfiguredAddressesResponse (``BF3C``)."""

    default_dp_address: str | None
    root_ds_address: str


@dataclass(frozen=True, slots=True)
class NotificationMetadata(JsonMixin):
    """NotificationMetadata (``BF2F``). ``profile_management_operation`` has one bit set."""

    seq_number: int
    profile_management_operation: tuple[NotificationEvent, ...]
    notification_address: str
    iccid: str | None = None
    iccid_raw: bytes | None = None

    @property
    def event(self) -> NotificationEvent | None:
        """The single event the notification reports (None if the card set no bit)."""
        ops = self.profile_management_operation
        return ops[0] if ops else None

    @classmethod
    def from_asn1(cls, d: Mapping[str, Any]) -> NotificationMetadata:
        """Build from the schema's decoded ``NotificationMetadata``."""
        raw = d.get("iccid")
        return cls(
            d["seqNumber"],
            notification_events(d["profileManagementOperation"]),
            d["notificationAddress"],
            None if raw is None else iccid_digits(raw),
            raw,
        )


@dataclass(frozen=True, slots=True)
class PendingNotification(JsonMixin):
    """One PendingNotification of RetrieveNotificationsList, with the exact bytes signed.

    Attributes:
        raw: the notification TLV exactly as the card returned it (``BF37...``, ``30...``,
            or ``A0``/``A1`` for the SGP.32 compact forms); forward these bytes, never a
            re-encoding, since the eUICC's signature covers them.
        kind: the PendingNotification alternative (``"profileInstallationResult"``,
            ``"otherSignedNotification"``, ``"compactProfileInstallationResult"``,
            ``"compactOtherSignedNotification"``).
        seq_number: the notification's sequence number (for RemoveNotificationFromList).
        notification_metadata: the metadata, None for a compact installation result, which
            carries only the sequence number.
    """

    raw: bytes
    kind: str
    seq_number: int
    notification_metadata: NotificationMetadata | None

    def to_json(self) -> dict[str, Any]:
        """``{kind: {...metadata...}, "raw": hex}`` — enough to show and forward it."""
        meta = self.notification_metadata
        body: dict[str, Any] = {"seqNumber": self.seq_number}
        if meta is not None:
            body = meta.to_json()
        return {self.kind: body, "raw": self.raw.hex().upper()}


@dataclass(frozen=True, slots=True)
class ProfilePolicyAuthorisationRule(JsonMixin):
    """One entry of the Rules Authorisation Table (GetRAT)."""

    ppr_ids: tuple[str, ...]
    allowed_operators: tuple[OperatorId, ...]
    ppr_flags: tuple[str, ...]

    @classmethod
    def from_asn1(cls, d: Mapping[str, Any]) -> ProfilePolicyAuthorisationRule:
        """Build from the schema's decoded ``ProfilePolicyAuthorisationRule``."""
        return cls(
            bit_names(d["pprIds"], PPR_IDS_BITS),
            tuple(OperatorId.from_asn1(o) for o in d["allowedOperators"]),
            bit_names(d["pprFlags"], PPR_FLAGS_BITS),
        )


#: Short name used by the CLI and docs for a RAT entry.
RatEntry = ProfilePolicyAuthorisationRule


@dataclass(frozen=True, slots=True)
class EuiccCertificates(JsonMixin):
    """GetCerts result: the EUM and eUICC certificates as DER (outer ``30`` restored)."""

    eum_certificate: bytes
    euicc_certificate: bytes


@dataclass(frozen=True, slots=True)
class MemoryResetResult(JsonMixin):
    """eUICCMemoryReset results; the SGP.22 form and SGP.32 v1.0 only fill ``reset_result``."""

    reset_result: ResetResult
    reset_eim_result: ResetEimResult | None = None
    reset_immediate_enable_config_result: ResetImmediateEnableConfigResult | None = None


def _install_json_maps() -> None:
    ci = {
        "euicc_ci_pkid_list_for_verification": "euiccCiPKIdListForVerification",
        "euicc_ci_pkid_list_for_signing": "euiccCiPKIdListForSigning",
        "raw": "",
    }
    maps: dict[type, dict[str, str]] = {
        ProfileInfo: {"iccid_raw": ""},
        NotificationMetadata: {"iccid_raw": ""},
        EuiccInfo1: ci,
        EuiccInfo2: {
            **ci,
            "euicc_ci_pkid_list_for_signing_v3": "euiccCiPKIdListForSigningV3",
        },
        CertificationDataObject: {"discovery_base_url": "discoveryBaseURL"},
    }
    for cls in (
        OperatorId,
        NotificationConfigurationInformation,
        DpProprietaryData,
        VendorSpecificData,
        ProfileInfo,
        EuiccInfo1,
        CertificationDataObject,
        EuiccInfo2,
        EuiccConfiguredAddresses,
        NotificationMetadata,
        ProfilePolicyAuthorisationRule,
        EuiccCertificates,
        MemoryResetResult,
    ):
        cls._JSON = _json_map(cls, **maps.get(cls, {}))


_install_json_maps()


def events_to_bits(events: Iterable[NotificationEvent | int]) -> tuple[bytes, int]:
    """A NotificationEvent BIT STRING value (minimal DER form) with ``events`` set."""
    return bits(int(e) for e in events)
