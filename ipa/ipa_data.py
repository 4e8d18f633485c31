"""IpaEuiccData: the IPAd's answer to an eIM's IpaEuiccDataRequest (GSMA SGP.32 v1.2
§2.11.1.2; the answer IpaEuiccDataResponse, §2.11.2.2).

No single ES10 command answers the request: the IPAd collects each field the ``tagList`` asks
for from the ES10 function that holds it, and adds what it knows about itself:

======  =========================  ===============================================================
tag     field                      source
======  =========================  ===============================================================
``A0``  notificationsList          RetrieveNotificationsList (searchCriteriaNotification applied)
``81``  defaultSmdpAddress         GetEuiccConfiguredAddresses (left out when none is set)
``A2``  euiccPackageResultList     RetrieveNotificationsList(euiccPackageResults)
                                   (searchCriteriaEuiccPackageResult applied)
``BF20`` euiccInfo1                GetEUICCInfo1
``BF22`` euiccInfo2                GetEUICCInfo2
``83``  rootSmdsAddress            GetEuiccConfiguredAddresses
``84``  associationToken           GetEimConfigurationData, the requesting eIM's entry
``A5``  eumCertificate             GetCerts (implicit tag replaces the certificate's ``30``)
``A6``  euiccCertificate           GetCerts
``87``  eimTransactionId           echo of the request's eimTransactionId
``A8``  ipaCapabilities            the IPAd's own IpaCapabilities
``A9``  deviceInfo                 the IPAd's own DeviceInfo (TAC, capabilities, IMEI)
======  =========================  ===============================================================

Rules:

* The fields appear in the order of the IpaEuiccData SEQUENCE, whatever the tagList order; a
  field asked for but absent from the eUICC (no default SM-DP+ address, no token, no echo to
  give) is left out. Notifications and results are the card's TLVs, byte for byte.
* incorrectTagList (1): the tagList is empty, is not a sequence of BER tags, or names a tag
  that is not one of the twelve above (the v1.0 tags ``BF2B``/``80``/``88`` included).
* euiccCiPKIdNotFound (5): ``euiccCiPKIdentifierToBeUsed`` (possibly a truncated SKI, SGP.32
  v1.2 §2.11.1.2) is not a prefix of exactly one key id in EUICCInfo1's
  euiccCiPKIdListForSigning, or GetCerts refuses it. Without it, GetCerts uses the eIM's
  configured euiccCiPKId, else the card's default.
* undefinedError (127): an ES10 function refused to answer (its Es10Error).
* Every error answer echoes eimTransactionId. A request that does not decode at all is not
  answered here: :class:`InvalidIpaEuiccDataRequest` lets the caller report
  invalidPackageFormat.

SGP.32 v1.0.1 (``sgp32="1.0"``) numbers the fields differently and has fewer: ``80``
defaultSmdpAddress, ``BF20``, ``BF22``, ``83``, ``84``, ``A5``, ``A6``, ``A8`` ipaCapabilities,
``A9`` deviceInfo and ``BF2B`` notificationsList (last in the SEQUENCE; the card's
RetrieveNotificationsList answer shape ``BF2B { A0 ... }``, or ``BF2B { A2 ... }`` with the
stored results when the request's searchCriteria is euiccPackageResults). The request has one
``A1`` searchCriteria and no eimTransactionId; the error answer is ``BF52 { 81 code }``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from euicc_protocol import schema, tlv
from ipa.codes import Asn1Enum
from ipa.errors import Es10Error, ResponseFormatError
from ipa.es10 import Es10Client
from ipa.es10_download import DeviceInfo
from ipa.es10_iot import get_eim_configuration_data, parse_euicc_package_result

__all__ = [
    "IPA_EUICC_DATA_TAGS",
    "InvalidIpaEuiccDataRequest",
    "IpaEuiccDataErrorCode",
    "IpaEuiccDataResult",
    "IpaFeature",
    "IpaSupportedProtocol",
    "build_ipa_euicc_data",
    "ipa_capabilities",
]

log = logging.getLogger(__name__)

#: The v1.2 IpaEuiccData tags in SEQUENCE order (the order of the answer).
IPA_EUICC_DATA_TAGS = tuple(
    bytes.fromhex(t) for t in ("A0", "81", "A2", "BF20", "BF22", "83", "84", "A5", "A6", "87",
                               "A8", "A9")
)  # fmt: skip

#: The v1.0.1 IpaEuiccData tags in SEQUENCE order.
IPA_EUICC_DATA_TAGS_V1_0 = tuple(
    bytes.fromhex(t) for t in ("80", "BF20", "BF22", "83", "84", "A5", "A6", "A8", "A9", "BF2B")
)


class IpaEuiccDataErrorCode(Asn1Enum):
    """IpaEuiccDataErrorCode."""

    INCORRECT_TAG_LIST = 1, "incorrectTagList"
    EUICC_CI_PKID_NOT_FOUND = 5, "euiccCiPKIdNotFound"
    ECALL_ACTIVE = 104, "ecallActive"
    UNDEFINED_ERROR = 127, "undefinedError"


class IpaFeature(Asn1Enum):
    """Bits of IpaCapabilities ``ipaFeatures``."""

    DIRECT_RSP_SERVER_COMMUNICATION = 0, "directRspServerCommunication"
    INDIRECT_RSP_SERVER_COMMUNICATION = 1, "indirectRspServerCommunication"
    EIM_DOWNLOAD_DATA_HANDLING = 2, "eimDownloadDataHandling"
    EIM_CTX_PARAMS1_GENERATION = 3, "eimCtxParams1Generation"
    EIM_PROFILE_METADATA_VERIFICATION = 4, "eimProfileMetadataVerification"
    MINIMIZE_ESIPA_BYTES = 5, "minimizeEsipaBytes"


class IpaSupportedProtocol(Asn1Enum):
    """Bits of IpaCapabilities ``ipaSupportedProtocols``."""

    IPA_RETRIEVE_HTTPS = 0, "ipaRetrieveHttps"
    IPA_RETRIEVE_COAPS = 1, "ipaRetrieveCoaps"
    IPA_INJECT_HTTPS = 2, "ipaInjectHttps"
    IPA_INJECT_COAPS = 3, "ipaInjectCoaps"
    IPA_PROPRIETARY = 4, "ipaProprietary"


class InvalidIpaEuiccDataRequest(ValueError):
    """The IpaEuiccDataRequest does not decode (answer invalidPackageFormat)."""


def ipa_capabilities(
    features: Iterable[IpaFeature | int] = (
        IpaFeature.DIRECT_RSP_SERVER_COMMUNICATION,
        IpaFeature.INDIRECT_RSP_SERVER_COMMUNICATION,
    ),
    protocols: Iterable[IpaSupportedProtocol | int] | None = (
        IpaSupportedProtocol.IPA_RETRIEVE_HTTPS,
    ),
) -> bytes:
    """The DER of an IpaCapabilities SEQUENCE (``30 { 80 features, [81 protocols] }``).

    The defaults are what this IPAd does: direct and indirect download, HTTPS retrieve; it
    needs no eIM help with download data, ctxParams1 or metadata, and sends full-size messages.
    """
    value: dict[str, Any] = {"ipaFeatures": schema.bits(int(f) for f in features)}
    if protocols is not None:
        value["ipaSupportedProtocols"] = schema.bits(int(p) for p in protocols)
    return schema.encode("IpaCapabilities", value)


@dataclass(frozen=True, slots=True)
class IpaEuiccDataResult:
    """The answer: ``raw`` is the ``BF52`` IpaEuiccDataResponse; ``seq_numbers`` are the
    notifications and EuiccPackageResults it carries (removed once the eIM acknowledges them);
    ``error`` is set for an error answer."""

    raw: bytes
    seq_numbers: tuple[int, ...] = ()
    error: IpaEuiccDataErrorCode | None = None


class _Refused(Exception):
    """Internal: answer with this error code."""

    def __init__(self, code: IpaEuiccDataErrorCode) -> None:
        super().__init__(code.asn1_name)
        self.code = code


def _split_tags(tag_list: bytes) -> list[bytes]:
    tags = []
    pos = 0
    while pos < len(tag_list):
        tag, pos = tlv.read_tag(tag_list, pos)
        tags.append(tag)
    return tags


def _retag(der: bytes, tag: bytes) -> bytes:
    """``der`` (one TLV) under the implicit one-byte ``tag``."""
    return tag + der[1:]


def _list_items(response: bytes, list_tag: bytes) -> list[bytes]:
    """Items of a RetrieveNotificationsList answer's ``list_tag`` alternative (none if the
    card answered another one, e.g. an EPR for a seqNumber search)."""
    try:
        outer = tlv.read_tlv(response)
        if outer.tag != b"\xbf\x2b" or outer.end != len(response):
            raise ValueError("not one BF2B response")
        inner = tlv.read_tlv(response, outer.value_start)
        if inner.tag == b"\x81":
            raise _Refused(IpaEuiccDataErrorCode.UNDEFINED_ERROR)
        if inner.tag != list_tag:
            return []
        items, pos = [], inner.value_start
        while pos < inner.value_end:
            item = tlv.read_tlv(response, pos)
            items.append(response[pos : item.end])
            pos = item.end
        return items
    except ValueError as exc:  # TlvError too
        raise ResponseFormatError(f"ES10b.RetrieveNotificationsList: {exc}") from None


def _full_ci_pkid(client: Es10Client, prefix: bytes) -> bytes:
    candidates = [k for k in client.get_euicc_info1().euicc_ci_pkid_list_for_signing
                  if k.startswith(prefix)]  # fmt: skip
    if not prefix or len(candidates) != 1:
        raise _Refused(IpaEuiccDataErrorCode.EUICC_CI_PKID_NOT_FOUND)
    return candidates[0]


def _notifications(client: Es10Client, criteria: Any) -> tuple[bytes, list[int]]:
    value: dict[str, Any] = {} if criteria is None else {"searchCriteria": criteria}
    request = schema.encode("SGP32-RetrieveNotificationsListRequest", value)
    items = _list_items(client.exchange(request), b"\xa0")
    seqs = []
    for item in items:
        try:
            kind, decoded = schema.decode("SGP32-PendingNotification", item)
        except schema.DecodeError as exc:
            raise ResponseFormatError(f"ES10b.RetrieveNotificationsList: {exc}") from None
        if kind == "profileInstallationResult":
            seqs.append(
                decoded["profileInstallationResultData"]["notificationMetadata"]["seqNumber"]
            )
        elif kind == "compactProfileInstallationResult":
            seqs.append(decoded["compactProfileInstallationResultData"]["seqNumber"])
        else:
            seqs.append(decoded["tbsOtherNotification"]["seqNumber"])
    return tlv.encode_tlv(b"\xa0", b"".join(items)), seqs


def _package_results(client: Es10Client, seq_number: int | None) -> tuple[bytes, list[int]]:
    chosen, seqs = [], []
    for raw in client.retrieve_euicc_package_results():
        seq = parse_euicc_package_result(raw).seq_number
        if seq_number is None or seq == seq_number:
            chosen.append(raw)
            if seq is not None:
                seqs.append(seq)
    return tlv.encode_tlv(b"\xa2", b"".join(chosen)), seqs


def _error(
    code: IpaEuiccDataErrorCode, tid: bytes | None, sgp32: str = "1.2"
) -> IpaEuiccDataResult:
    if sgp32 == "1.0":  # ipaEuiccDataError [1] INTEGER
        error = tlv.encode_tlv(b"\x81", int(code).to_bytes(1, "big"))
        return IpaEuiccDataResult(tlv.encode_tlv(b"\xbf\x52", error), (), code)
    body = b"" if tid is None else tlv.encode_tlv(b"\x80", tid)
    body += tlv.encode_tlv(b"\x02", int(code).to_bytes(1, "big"))
    return IpaEuiccDataResult(tlv.encode_tlv(b"\xbf\x52", tlv.encode_tlv(b"\xa1", body)), (), code)


def build_ipa_euicc_data(
    client: Es10Client,
    request: bytes,
    *,
    eim_id: str | None = None,
    capabilities: bytes | None = None,
    device_info: DeviceInfo | None = None,
    sgp32: str = "1.2",
) -> IpaEuiccDataResult:
    """Answer the ``BF52`` IpaEuiccDataRequest ``request`` (see the module doc) in SGP.32
    version ``sgp32``.

    Args:
        client: an open ES10 client.
        request: the IpaEuiccDataRequest TLV from the eIM.
        eim_id: the requesting eIM (for associationToken and its euiccCiPKId).
        capabilities: IpaCapabilities DER (default :func:`ipa_capabilities`).
        device_info: the device's DeviceInfo (default: TAC only).

    Raises:
        InvalidIpaEuiccDataRequest: ``request`` is not an IpaEuiccDataRequest.
        IpaError: the card could not be reached (transport, status word, malformed answer).
    """
    try:
        decoded = schema.decode("IpaEuiccDataRequest", request, sgp32=sgp32)
    except schema.DecodeError as exc:
        raise InvalidIpaEuiccDataRequest(f"IpaEuiccDataRequest: {exc}") from None
    v1_0 = sgp32 == "1.0"
    known = IPA_EUICC_DATA_TAGS_V1_0 if v1_0 else IPA_EUICC_DATA_TAGS
    tid = decoded.get("eimTransactionId")
    try:
        tags = set(_split_tags(decoded["tagList"]))
        if not tags or not tags <= set(known):
            raise _Refused(IpaEuiccDataErrorCode.INCORRECT_TAG_LIST)
    except (tlv.TlvError, _Refused):
        return _error(IpaEuiccDataErrorCode.INCORRECT_TAG_LIST, tid, sgp32)
    if v1_0:  # the same fields under the v1.2 tags, then renamed (the module doc)
        decoded = _as_v1_2_request(decoded)
        tags = {_V1_0_TO_V1_2.get(t, t) for t in tags}
    try:
        fields, seqs = _collect(client, decoded, tags, eim_id, capabilities, device_info)
    except _Refused as refused:
        return _error(refused.code, tid, sgp32)
    except Es10Error as exc:
        log.warning("IpaEuiccData: %s", exc)
        return _error(IpaEuiccDataErrorCode.UNDEFINED_ERROR, tid, sgp32)
    if v1_0:
        fields = _as_v1_0_fields(fields)
    body = b"".join(fields[t] for t in known if t in fields)
    raw = tlv.encode_tlv(b"\xbf\x52", tlv.encode_tlv(b"\xa0", body))
    return IpaEuiccDataResult(raw, tuple(sorted(set(seqs))))


_V1_0_TO_V1_2 = {b"\x80": b"\x81"}  # BF2B is handled apart: it may mean A0 or A2


def _as_v1_2_request(decoded: dict[str, Any]) -> dict[str, Any]:
    """A v1.0.1 request's search criteria in the v1.2 fields :func:`_collect` reads; its
    ``BF2B`` becomes ``A0`` (notifications) or ``A2`` (stored results)."""
    out = {k: v for k, v in decoded.items() if k != "searchCriteria"}
    if "euiccCiPKId" in decoded:
        out["euiccCiPKIdentifierToBeUsed"] = decoded["euiccCiPKId"]
    criteria = decoded.get("searchCriteria")
    if criteria is not None and criteria[0] == "euiccPackageResults":
        out["_v1_0_list"] = b"\xa2"
    else:
        out["_v1_0_list"] = b"\xa0"
        if criteria is not None:
            out["searchCriteriaNotification"] = criteria
    return out


def _as_v1_0_fields(fields: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """The v1.2 fields :func:`_collect` built, under their v1.0.1 tags."""
    out = dict(fields)
    if b"\x81" in out:
        out[b"\x80"] = b"\x80" + out.pop(b"\x81")[1:]
    for tag in (b"\xa0", b"\xa2"):  # the v1.0.1 list is the card's BF2B answer shape
        if tag in out:
            out[b"\xbf\x2b"] = tlv.encode_tlv(b"\xbf\x2b", out.pop(tag))
    return out


def _collect(
    client: Es10Client,
    request: dict[str, Any],
    tags: set[bytes],
    eim_id: str | None,
    capabilities: bytes | None,
    device_info: DeviceInfo | None,
) -> tuple[dict[bytes, bytes], list[int]]:
    fields: dict[bytes, bytes] = {}
    seqs: list[int] = []
    if b"\xbf\x2b" in tags:  # v1.0.1 notificationsList: A0 or A2 (see _as_v1_2_request)
        tags = (tags - {b"\xbf\x2b"}) | {request["_v1_0_list"]}
    prefix = request.get("euiccCiPKIdentifierToBeUsed")
    ci_pkid = None if prefix is None else _full_ci_pkid(client, prefix)
    eim = None
    if eim_id is not None and (b"\x84" in tags or (ci_pkid is None and tags & {b"\xa5", b"\xa6"})):
        # A v1.0.1 card has no search criteria and answers every eIM: pick ours.
        found = [c for c in get_eim_configuration_data(client, eim_id) if c.eim_id == eim_id]
        eim = found[0] if found else None

    if b"\xa0" in tags:
        fields[b"\xa0"], found_seqs = _notifications(
            client, request.get("searchCriteriaNotification")
        )
        seqs += found_seqs
    if tags & {b"\x81", b"\x83"}:
        addresses = client.get_euicc_configured_addresses()
        if b"\x81" in tags and addresses.default_dp_address:
            fields[b"\x81"] = tlv.encode_tlv(b"\x81", addresses.default_dp_address.encode())
        if b"\x83" in tags:
            fields[b"\x83"] = tlv.encode_tlv(b"\x83", addresses.root_ds_address.encode())
    if b"\xa2" in tags:
        criteria = request.get("searchCriteriaEuiccPackageResult")
        wanted = None if criteria is None else criteria[1]
        fields[b"\xa2"], found_seqs = _package_results(client, wanted)
        seqs += found_seqs
    if b"\xbf\x20" in tags:
        fields[b"\xbf\x20"] = client.get_euicc_info1().raw
    if b"\xbf\x22" in tags:
        fields[b"\xbf\x22"] = client.get_euicc_info2().raw
    if b"\x84" in tags and eim is not None and eim.association_token is not None:
        token = eim.association_token
        fields[b"\x84"] = tlv.encode_tlv(b"\x84", token.to_bytes(token.bit_length() // 8 + 1,
                                                                 "big", signed=True))  # fmt: skip
    if tags & {b"\xa5", b"\xa6"}:
        if ci_pkid is None and eim is not None:
            ci_pkid = eim.euicc_ci_pkid
        try:
            certs = client.get_certs(ci_pkid)
        except Es10Error as exc:
            raise _Refused(IpaEuiccDataErrorCode.EUICC_CI_PKID_NOT_FOUND) from exc
        if b"\xa5" in tags:
            fields[b"\xa5"] = _retag(certs.eum_certificate, b"\xa5")
        if b"\xa6" in tags:
            fields[b"\xa6"] = _retag(certs.euicc_certificate, b"\xa6")
    if b"\x87" in tags and request.get("eimTransactionId") is not None:
        fields[b"\x87"] = tlv.encode_tlv(b"\x87", request["eimTransactionId"])
    if b"\xa8" in tags:
        fields[b"\xa8"] = _retag(capabilities or ipa_capabilities(), b"\xa8")
    if b"\xa9" in tags:
        info = (device_info or DeviceInfo()).to_asn1()
        fields[b"\xa9"] = _retag(schema.encode("DeviceInfo", info), b"\xa9")
    return fields, seqs
