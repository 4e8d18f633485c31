"""Typed SGP.32 v1.2 ES10b functions over an :class:`~ipa.es10.Es10Client` (GSMA SGP.32 v1.2
§5.9; eIM configuration data and eUICC packages in §2.11).

GetEimConfigurationData, AddInitialEim, LoadEuiccPackage, ProfileRollback, ImmediateEnable,
ConfigureImmediateProfileEnabling, ExecuteFallbackMechanism, ReturnFromFallback and the stored
EuiccPackageResults. GetCerts and RetrieveNotificationsList are methods of the client itself.

The IPAd relays what the eUICC signed, so every EuiccPackageResult keeps the card's ``BF51`` TLV
as it came (``raw``) next to the decoded summary, and eIM key material is cut out of the
card's answer byte for byte (only the implicit ``A0``/``A1`` tag is turned back into ``30``).
Result codes other than ok raise :class:`~ipa.errors.Es10Error`; a LoadEuiccPackage answer is
never an exception, whatever it says: it goes to the eIM as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from euicc_protocol import schema, tlv
from ipa.codes import Asn1Enum
from ipa.errors import Es10Error, ResponseFormatError
from ipa.es10 import Es10Client

__all__ = [
    "AddInitialEimError",
    "ConfigureImmediateEnableResult",
    "EimConfiguration",
    "EimIdType",
    "EuiccPackageErrorCode",
    "EuiccPackageResult",
    "FallbackResult",
    "ImmediateEnableResult",
    "ProfileRollbackResult",
    "add_initial_eim",
    "configure_immediate_profile_enabling",
    "eim_configuration_value",
    "enable_using_dd",
    "execute_fallback_mechanism",
    "get_eim_configuration_data",
    "immediate_enable",
    "load_euicc_package",
    "parse_euicc_package_result",
    "profile_rollback",
    "retrieve_euicc_package_results",
    "return_from_fallback",
]

F_GET_EIM_CONFIGURATION = "ES10b.GetEimConfigurationData"
F_ADD_INITIAL_EIM = "ES10b.AddInitialEim"
F_LOAD_EUICC_PACKAGE = "ES10b.LoadEuiccPackage"
F_PROFILE_ROLLBACK = "ES10b.ProfileRollback"
F_IMMEDIATE_ENABLE = "ES10b.ImmediateEnable"
F_ENABLE_USING_DD = "ES10b.EnableUsingDD"
F_CONFIGURE_IMMEDIATE = "ES10b.ConfigureImmediateProfileEnabling"
F_EXECUTE_FALLBACK = "ES10b.ExecuteFallbackMechanism"
F_RETURN_FROM_FALLBACK = "ES10b.ReturnFromFallback"

_TAG_EPR = b"\xbf\x51"


# -- codes ----------------------------------------------------------------------------------------


class EimIdType(Asn1Enum):
    """EimIdType (``82`` of EimConfigurationData)."""

    OID = 1, "eimIdTypeOid"
    FQDN = 2, "eimIdTypeFqdn"
    PROPRIETARY = 3, "eimIdTypeProprietary"


class AddInitialEimError(Asn1Enum):
    """AddInitialEimResponse ``addInitialEimError`` (v1.2)."""

    INSUFFICIENT_MEMORY = 1, "insufficientMemory"
    ASSOCIATED_EIM_ALREADY_EXISTS = 2, "associatedEimAlreadyExists"
    CI_PK_UNKNOWN = 3, "ciPKUnknown"
    INVALID_ASSOCIATION_TOKEN = 5, "invalidAssociationToken"
    COUNTER_VALUE_OUT_OF_RANGE = 6, "counterValueOutOfRange"
    COMMAND_ERROR = 7, "commandError"
    UNDEFINED_ERROR = 127, "undefinedError"


class EuiccPackageErrorCode(Asn1Enum):
    """EuiccPackageErrorCode of a signed error (``A1``)."""

    INVALID_EID = 3, "invalidEid"
    REPLAY_ERROR = 4, "replayError"
    COUNTER_VALUE_OUT_OF_RANGE = 6, "counterValueOutOfRange"
    SIZE_OVERFLOW = 15, "sizeOverflow"
    ECALL_ACTIVE = 104, "ecallActive"
    UNDEFINED_ERROR = 127, "undefinedError"


class ImmediateEnableResult(Asn1Enum):
    """ImmediateEnableResponse ``immediateEnableResult``."""

    OK = 0, "ok"
    IMMEDIATE_ENABLE_NOT_AVAILABLE = 1, "immediateEnableNotAvailable"
    NO_SESSION_CONTEXT = 4, "noSessionContext"
    CAT_BUSY = 5, "catBusy"
    UNDEFINED_ERROR = 127, "undefinedError"


class ProfileRollbackResult(Asn1Enum):
    """ProfileRollbackResponse ``cmdResult``."""

    OK = 0, "ok"
    ROLLBACK_NOT_ALLOWED = 1, "rollbackNotAllowed"
    CAT_BUSY = 5, "catBusy"
    COMMAND_ERROR = 7, "commandError"
    UNDEFINED_ERROR = 127, "undefinedError"


class ConfigureImmediateEnableResult(Asn1Enum):
    """ConfigureImmediateProfileEnablingResponse ``configImmediateEnableResult``."""

    OK = 0, "ok"
    INSUFFICIENT_MEMORY = 1, "insufficientMemory"
    ASSOCIATED_EIM_ALREADY_EXISTS = 2, "associatedEimAlreadyExists"
    UNDEFINED_ERROR = 127, "undefinedError"


class FallbackResult(Asn1Enum):
    """ExecuteFallbackMechanism / ReturnFromFallback results (one code space)."""

    OK = 0, "ok"
    PROFILE_NOT_IN_DISABLED_STATE = 2, "profileNotInDisabledState"
    CAT_BUSY = 5, "catBusy"
    FALLBACK_NOT_AVAILABLE = 6, "fallbackNotAvailable"
    COMMAND_ERROR = 7, "commandError"
    ECALL_ACTIVE = 104, "ecallActive"
    UNDEFINED_ERROR = 127, "undefinedError"


# -- helpers --------------------------------------------------------------------------------------


def _decode(function: str, type_name: str, response: bytes) -> Any:
    try:
        return schema.decode(type_name, response)
    except schema.DecodeError as exc:
        shown = response[:16].hex().upper() or "an empty response"
        raise ResponseFormatError(f"{function}: {exc} in {shown}") from None


def _check(function: str, field: str, code: int, enum: type[Asn1Enum]) -> None:
    if code != 0:
        result = enum(code)
        raise Es10Error(function, int(code), result.asn1_name, field=field, result=result)


def _tlvs(data: bytes, start: int, end: int) -> list[tuple[bytes, bytes, bytes]]:
    """``(tag, complete TLV, value)`` of each TLV in ``data[start:end]``."""
    out = []
    pos = start
    while pos < end:
        item = tlv.read_tlv(data, pos)
        out.append((item.tag, data[pos : item.end], item.value(data)))
        pos = item.end
    return out


def _retag(value: bytes) -> bytes:
    """A certificate or SubjectPublicKeyInfo under an implicit tag, as plain DER (``30``)."""
    return b"\x30" + value[1:]


# -- eIM configuration ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EimConfiguration:
    """One EimConfigurationData entry (SGP.32 v1.2 §2.11.1.1.1); keys and certificates as DER.

    ``raw`` is the ``30`` entry exactly as the card returned it.
    """

    eim_id: str
    eim_fqdn: str | None = None
    eim_id_type: EimIdType | None = None
    counter_value: int | None = None
    association_token: int | None = None
    eim_public_key: bytes | None = None
    eim_certificate: bytes | None = None
    trusted_eim_pk_tls: bytes | None = None
    trusted_certificate_tls: bytes | None = None
    eim_supported_protocol: frozenset[int] | None = None
    euicc_ci_pkid: bytes | None = None
    indirect_profile_download: bool = False
    raw: bytes = b""


def _eim_configuration(raw: bytes) -> EimConfiguration:
    decoded = schema.decode("EimConfigurationData", raw)
    keys: dict[bytes, bytes] = {}
    outer = tlv.read_tlv(raw)
    for tag, _, value in _tlvs(raw, outer.value_start, outer.value_end):
        if tag in (b"\xa5", b"\xa6"):
            ((inner_tag, inner, _),) = _tlvs(value, 0, len(value))
            keys[tag + inner_tag] = _retag(inner)
    id_type = decoded.get("eimIdType")
    protocols = decoded.get("eimSupportedProtocol")
    return EimConfiguration(
        eim_id=decoded["eimId"],
        eim_fqdn=decoded.get("eimFqdn"),
        eim_id_type=None if id_type is None else EimIdType(id_type),
        counter_value=decoded.get("counterValue"),
        association_token=decoded.get("associationToken"),
        eim_public_key=keys.get(b"\xa5\xa0"),
        eim_certificate=keys.get(b"\xa5\xa1"),
        trusted_eim_pk_tls=keys.get(b"\xa6\xa0"),
        trusted_certificate_tls=keys.get(b"\xa6\xa1"),
        eim_supported_protocol=None if protocols is None else schema.bit_positions(protocols),
        euicc_ci_pkid=decoded.get("euiccCiPKId"),
        indirect_profile_download="indirectProfileDownload" in decoded,
        raw=raw,
    )


def get_eim_configuration_data(
    client: Es10Client, eim_id: str | None = None
) -> list[EimConfiguration]:
    """ES10b.GetEimConfigurationData: every configured eIM, or the one with ``eim_id``."""
    value: dict[str, Any] = {} if eim_id is None else {"searchCriteria": ("eimId", eim_id)}
    response = client.exchange(schema.encode("GetEimConfigurationDataRequest", value))
    _decode(F_GET_EIM_CONFIGURATION, "GetEimConfigurationDataResponse", response)
    try:
        outer = tlv.read_tlv(response)
        ((tag, _, value_bytes),) = _tlvs(response, outer.value_start, outer.value_end)
        if tag != b"\xa0":
            raise ValueError(f"unexpected tag {tag.hex()}")
        return [
            _eim_configuration(entry) for _, entry, _ in _tlvs(value_bytes, 0, len(value_bytes))
        ]
    except (ValueError, schema.DecodeError) as exc:
        raise ResponseFormatError(f"{F_GET_EIM_CONFIGURATION}: {exc}") from None


def eim_configuration_value(
    eim_id: str,
    *,
    eim_fqdn: str | None = None,
    eim_public_key: bytes | None = None,
    eim_certificate: bytes | None = None,
    counter_value: int | None = 0,
    association_token: int | None = -1,
    eim_id_type: EimIdType | int | None = None,
    trusted_eim_pk_tls: bytes | None = None,
    trusted_certificate_tls: bytes | None = None,
    euicc_ci_pkid: bytes | None = None,
    indirect_profile_download: bool = False,
) -> dict[str, Any]:
    """An EimConfigurationData value (asn1tools form) for :func:`add_initial_eim`.

    Keys and certificates are DER (SubjectPublicKeyInfo / Certificate). ``association_token``
    -1 asks the eUICC to allocate one (a convention of open-source IPAs and eIMs, not a rule
    of SGP.32 ES10b.AddInitialEim).
    """
    if (eim_public_key is None) == (eim_certificate is None):
        raise ValueError("give exactly one of eim_public_key and eim_certificate")
    value: dict[str, Any] = {"eimId": eim_id}
    if eim_fqdn is not None:
        value["eimFqdn"] = eim_fqdn
    if eim_id_type is not None:
        value["eimIdType"] = int(eim_id_type)
    if counter_value is not None:
        value["counterValue"] = counter_value
    if association_token is not None:
        value["associationToken"] = association_token
    if eim_public_key is not None:
        spki = schema.decode("SubjectPublicKeyInfo", eim_public_key)
        value["eimPublicKeyData"] = ("eimPublicKey", spki)
    else:
        assert eim_certificate is not None
        value["eimPublicKeyData"] = (
            "eimCertificate",
            schema.decode("Certificate", eim_certificate),
        )
    if trusted_eim_pk_tls is not None:
        tls_key = schema.decode("SubjectPublicKeyInfo", trusted_eim_pk_tls)
        value["trustedPublicKeyDataTls"] = ("trustedEimPkTls", tls_key)
    elif trusted_certificate_tls is not None:
        tls_cert = schema.decode("Certificate", trusted_certificate_tls)
        value["trustedPublicKeyDataTls"] = ("trustedCertificateTls", tls_cert)
    if euicc_ci_pkid is not None:
        value["euiccCiPKId"] = euicc_ci_pkid
    if indirect_profile_download:
        value["indirectProfileDownload"] = None
    return value


def add_initial_eim(
    client: Es10Client, request: bytes | str | Path | Iterable[Mapping[str, Any]]
) -> list[int | None]:
    """ES10b.AddInitialEim.

    ``request`` is an AddInitialEimRequest (``BF57``) as bytes or a path to a DER file (what a
    factory tool writes), or EimConfigurationData values (see :func:`eim_configuration_value`).
    Returns one entry per configured eIM: the association token the eUICC allocated, or None
    for ``addOk``.

    Raises:
        Es10Error: addInitialEimError (``result`` is an :class:`AddInitialEimError`).
    """
    if isinstance(request, str | Path):
        request = Path(request).read_bytes()
    if isinstance(request, bytes | bytearray):
        raw = bytes(request)
        try:
            item = tlv.read_tlv(raw)
        except tlv.TlvError as exc:
            raise ValueError(f"not an AddInitialEimRequest: {exc}") from None
        if item.tag != b"\xbf\x57" or item.end != len(raw):
            raise ValueError("an AddInitialEimRequest is one BF57 TLV")
    else:
        raw = schema.encode("AddInitialEimRequest", {"eimConfigurationDataList": list(request)})
    kind, value = _decode(F_ADD_INITIAL_EIM, "AddInitialEimResponse", client.exchange(raw))
    if kind != "addInitialEimOk":
        code = AddInitialEimError(value)
        raise Es10Error(F_ADD_INITIAL_EIM, int(value), code.asn1_name, field=kind, result=code)
    return [token if alt == "associationToken" else None for alt, token in value]


# -- eUICC packages -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EuiccPackageResult:
    """An EuiccPackageResult (``BF51``), decoded; ``raw`` is the TLV as the eUICC signed it.

    Attributes:
        kind: ``euiccPackageResultSigned``, ``euiccPackageErrorSigned`` or
            ``euiccPackageErrorUnsigned``.
        eim_id, counter_value, eim_transaction_id: as in the result.
        seq_number: of a signed result (stored on the card until RemoveNotificationFromList);
            None for errors, which the card does not keep.
        results: each EuiccResultData as ``(alternative name, decoded value)``.
        error_code: of a signed error.
        association_token: of an unsigned error.
    """

    raw: bytes
    kind: str
    eim_id: str
    counter_value: int | None = None
    eim_transaction_id: bytes | None = None
    seq_number: int | None = None
    results: tuple[tuple[str, Any], ...] = ()
    error_code: EuiccPackageErrorCode | None = None
    association_token: int | None = None

    @property
    def ok(self) -> bool:
        """Whether the package was executed (a signed result, whatever its operations said)."""
        return self.kind == "euiccPackageResultSigned"

    @property
    def profile_switched(self) -> bool:
        """Whether an enable or disable operation succeeded (the device must re-attach)."""
        return any(name in ("enableResult", "disableResult") and value == 0
                   for name, value in self.results)  # fmt: skip


def parse_euicc_package_result(raw: bytes) -> EuiccPackageResult:
    """Decode a ``BF51`` EuiccPackageResult.

    Raises:
        ResponseFormatError: ``raw`` is not one.
    """
    if raw[:2] != _TAG_EPR:
        shown = raw[:8].hex().upper() or "an empty response"
        raise ResponseFormatError(f"{F_LOAD_EUICC_PACKAGE}: expected a BF51 response, got {shown}")
    kind, value = _decode(F_LOAD_EUICC_PACKAGE, "EuiccPackageResult", raw)
    if kind == "euiccPackageResultSigned":
        data = value["euiccPackageResultDataSigned"]
        return EuiccPackageResult(
            raw,
            kind,
            data["eimId"],
            data["counterValue"],
            data.get("eimTransactionId"),
            data["seqNumber"],
            tuple(data["euiccResult"]),
        )
    if kind == "euiccPackageErrorSigned":
        data = value["euiccPackageErrorDataSigned"]
        return EuiccPackageResult(
            raw,
            kind,
            data["eimId"],
            data["counterValue"],
            data.get("eimTransactionId"),
            error_code=EuiccPackageErrorCode(data["euiccPackageErrorCode"]),
        )
    return EuiccPackageResult(
        raw,
        kind,
        value["eimId"],
        eim_transaction_id=value.get("eimTransactionId"),
        association_token=value.get("associationToken"),
    )


def load_euicc_package(client: Es10Client, package: bytes) -> EuiccPackageResult:
    """ES10b.LoadEuiccPackage with the eIM's ``BF51`` EuiccPackageRequest as received."""
    try:
        item = tlv.read_tlv(package)
    except tlv.TlvError as exc:
        raise ValueError(f"not an EuiccPackageRequest: {exc}") from None
    if item.tag != _TAG_EPR or item.end != len(package):
        raise ValueError("an EuiccPackageRequest is one BF51 TLV")
    return parse_euicc_package_result(client.exchange(package))


def retrieve_euicc_package_results(client: Es10Client) -> list[EuiccPackageResult]:
    """The EuiccPackageResults the card keeps until RemoveNotificationFromList."""
    return [parse_euicc_package_result(raw) for raw in client.retrieve_euicc_package_results()]


def profile_rollback(client: Es10Client, refresh: bool = False) -> EuiccPackageResult | None:
    """ES10b.ProfileRollback: re-enable the profile a rollback-flagged enable replaced.

    Returns the new signed EuiccPackageResult the eUICC made for the rolled-back package (it
    replaces the original in the eIM report), or None when the card gave none.

    Raises:
        Es10Error: cmdResult other than ok (``result`` is a :class:`ProfileRollbackResult`).
    """
    request = schema.encode("ProfileRollbackRequest", {"refreshFlag": bool(refresh)})
    response = client.exchange(request)
    decoded = _decode(F_PROFILE_ROLLBACK, "ProfileRollbackResponse", response)
    _check(F_PROFILE_ROLLBACK, "cmdResult", decoded["cmdResult"], ProfileRollbackResult)
    outer = tlv.read_tlv(response)
    for tag, raw, _ in _tlvs(response, outer.value_start, outer.value_end):
        if tag == _TAG_EPR:
            return parse_euicc_package_result(raw)
    return None


def immediate_enable(client: Es10Client, refresh: bool = False) -> None:
    """ES10b.ImmediateEnable: enable the profile just downloaded, if the eUICC's immediate
    enable configuration allows it.

    Raises:
        Es10Error: ``result`` is an :class:`ImmediateEnableResult` (immediateEnableNotAvailable
            when not configured, noSessionContext without a matching download).
    """
    request = schema.encode("ImmediateEnableRequest", {"refreshFlag": bool(refresh)})
    decoded = _decode(F_IMMEDIATE_ENABLE, "ImmediateEnableResponse", client.exchange(request))
    code = decoded["immediateEnableResult"]
    _check(F_IMMEDIATE_ENABLE, "immediateEnableResult", code, ImmediateEnableResult)


def enable_using_dd(client: Es10Client) -> None:
    """ES10b.EnableUsingDD (SGP.32 v1.0.1, ``BF5A`` without a refreshFlag; v1.2 replaced it
    with ImmediateEnable): enable the profile just downloaded, if auto enable is configured.

    Raises:
        Es10Error: ``result`` is an :class:`ImmediateEnableResult` (the codes are the same:
            autoEnableNotAvailable 1, noSessionContext 4, undefinedError 127).
    """
    request = schema.encode("EnableUsingDDRequest", {}, sgp32="1.0")
    response = client.exchange(request)
    try:
        decoded = schema.decode("EnableUsingDDResponse", response, sgp32="1.0")
    except schema.DecodeError as exc:
        raise ResponseFormatError(f"{F_ENABLE_USING_DD}: {exc}") from None
    code = decoded["enableUsingDDResult"]
    _check(F_ENABLE_USING_DD, "enableUsingDDResult", code, ImmediateEnableResult)


def configure_immediate_profile_enabling(
    client: Es10Client,
    *,
    immediate_enable_flag: bool = True,
    default_smdp_oid: str | None = None,
    default_smdp_address: str | None = None,
) -> None:
    """ES10b.ConfigureImmediateProfileEnabling (refused once an eIM is configured)."""
    value: dict[str, Any] = {}
    if immediate_enable_flag:
        value["immediateEnableFlag"] = None
    if default_smdp_oid is not None:
        value["defaultSmdpOid"] = default_smdp_oid
    if default_smdp_address is not None:
        value["defaultSmdpAddress"] = default_smdp_address
    request = schema.encode("ConfigureImmediateProfileEnablingRequest", value)
    response = client.exchange(request)
    decoded = _decode(F_CONFIGURE_IMMEDIATE, "ConfigureImmediateProfileEnablingResponse", response)
    code = decoded["configImmediateEnableResult"]
    _check(
        F_CONFIGURE_IMMEDIATE, "configImmediateEnableResult", code, ConfigureImmediateEnableResult
    )


def execute_fallback_mechanism(client: Es10Client, refresh: bool = False) -> None:
    """ES10b.ExecuteFallbackMechanism: enable the Fallback Profile (connectivity lost)."""
    request = schema.encode("ExecuteFallbackMechanismRequest", {"refreshFlag": bool(refresh)})
    response = client.exchange(request)
    decoded = _decode(F_EXECUTE_FALLBACK, "ExecuteFallbackMechanismResponse", response)
    code = decoded["executeFallbackMechanismResult"]
    _check(F_EXECUTE_FALLBACK, "executeFallbackMechanismResult", code, FallbackResult)


def return_from_fallback(client: Es10Client, refresh: bool = False) -> None:
    """ES10b.ReturnFromFallback: back to the profile enabled before the fallback."""
    request = schema.encode("ReturnFromFallbackRequest", {"refreshFlag": bool(refresh)})
    response = client.exchange(request)
    decoded = _decode(F_RETURN_FROM_FALLBACK, "ReturnFromFallbackResponse", response)
    code = decoded["returnFromFallbackResult"]
    _check(F_RETURN_FROM_FALLBACK, "returnFromFallbackResult", code, FallbackResult)
