"""The IPAd's ES10 client: one typed method per ES10a/b/c function (SGP.22 §5.7, SGP.32 §5.9).

Each method encodes its request with :mod:`euicc_protocol.schema`, sends it through an
:class:`~ipa.channel.Es10Channel`, decodes the response into the dataclasses of
:mod:`ipa.types`, and turns every result or error code other than ``ok`` into an
:class:`~ipa.errors.Es10Error` carrying that code and its ASN.1 name.

Speed matters on the hot paths (fleet and benchmark runs call GetEID and GetProfilesInfo tens
of thousands of times per second), so:

* requests that never change are encoded once and reused;
* GetEID answers of the usual shape are read without the ASN.1 decoder;
* GetProfilesInfo splits its ``A0`` list with a plain TLV walk and decodes each ``E3``
  ProfileInfo through an LRU keyed by its exact bytes (same bytes, same immutable object).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache, lru_cache
from types import TracebackType
from typing import Any, NoReturn

from euicc_protocol import es10 as es10_catalogue
from euicc_protocol import schema, tlv
from euicc_protocol.iccid import iccid_to_ef
from ipa.channel import ChannelConfig, Es10Channel
from ipa.errors import Es10Error, ResponseFormatError
from ipa.transport import Transport
from ipa.types import (
    Asn1Enum,
    DeleteNotificationStatus,
    DeleteResult,
    DisableResult,
    EnableResult,
    EuiccCertificates,
    EuiccConfiguredAddresses,
    EuiccInfo1,
    EuiccInfo2,
    GetCertsError,
    ListNotificationsResultError,
    LoadCrlError,
    MemoryResetResult,
    NotificationEvent,
    NotificationMetadata,
    NotificationsListResultError,
    PendingNotification,
    ProfileClass,
    ProfileInfo,
    ProfileInfoListError,
    ProfilePolicyAuthorisationRule,
    ResetEimResult,
    ResetImmediateEnableConfigResult,
    ResetOption,
    ResetResult,
    SetDefaultDpAddressResult,
    SetNicknameResult,
    events_to_bits,
)

__all__ = ["Es10Client", "profile_info_tags"]

# Function names as the standard writes them; they label errors.
F_GET_ADDRESSES = "ES10a.GetEuiccConfiguredAddresses"
F_SET_DEFAULT_DP = "ES10a.SetDefaultDpAddress"
F_GET_INFO1 = "ES10b.GetEUICCInfo1"
F_GET_INFO2 = "ES10b.GetEUICCInfo2"
F_GET_CHALLENGE = "ES10b.GetEUICCChallenge"
F_GET_RAT = "ES10b.GetRAT"
F_LIST_NOTIFICATION = "ES10b.ListNotification"
F_RETRIEVE_NOTIFICATIONS = "ES10b.RetrieveNotificationsList"
F_REMOVE_NOTIFICATION = "ES10b.RemoveNotificationFromList"
F_GET_CERTS = "ES10b.GetCerts"
F_LOAD_CRL = "ES10b.LoadCRL"
F_MEMORY_RESET_IOT = "ES10b.eUICCMemoryReset"
F_GET_PROFILES_INFO = "ES10c.GetProfilesInfo"
F_ENABLE = "ES10c.EnableProfile"
F_DISABLE = "ES10c.DisableProfile"
F_DELETE = "ES10c.DeleteProfile"
F_MEMORY_RESET = "ES10c.eUICCMemoryReset"
F_GET_EID = "ES10c.GetEID"
F_SET_NICKNAME = "ES10c.SetNickname"

_GET_EID_REQUEST = bytes.fromhex("BF3E035C015A")
_GET_EID_PREFIX = bytes.fromhex("BF3E125A10")
_TAG_PROFILE_INFO = 0xE3
_SGP22_RESET_OPTIONS = frozenset({0, 1, 2})


@cache
def _constant_request(type_name: str) -> bytes:
    """The encoding of a request type whose value is always empty (``BF2200``...)."""
    return schema.encode(type_name, {})


@cache
def _response_type_of(request_type: str) -> str:
    # SGP.32 first: where both standards define a form, the IoT one is the superset.
    for profile in ("sgp32", "sgp22"):
        for fn in es10_catalogue.catalogue_for(profile).values():
            if fn.request_type == request_type:
                return fn.response_type
    raise ValueError(f"{request_type} is not an ES10 request type; pass response_type")


@cache
def profile_info_tags() -> dict[str, bytes]:
    """ProfileInfo component name -> encoded tag (``"profileState"`` -> ``9F70``), from the schema.

    These are the tags a GetProfilesInfo ``tagList`` may ask for.
    """
    members = schema.spec().types["SGP32-ProfileInfo"].type.root_members
    return {m.name: bytes(m.tag) for m in members}


# -- TLV walking (hot path; DER only: definite lengths of at most 3 length bytes) -------------


def _tlv(buf: bytes, pos: int, limit: int) -> tuple[int, int]:
    """Value start and end of the TLV at ``pos``; raises ValueError/IndexError if malformed."""
    i = pos + 1
    if buf[pos] & 0x1F == 0x1F:
        while buf[i] & 0x80:
            i += 1
        i += 1
    n = buf[i]
    i += 1
    if n & 0x80:
        k = n & 0x7F
        if not 1 <= k <= 3 or i + k > limit:
            raise ValueError(f"unsupported length form at offset {pos}")
        n = int.from_bytes(buf[i : i + k], "big")
        i += k
    end = i + n
    if end > limit:
        raise ValueError(f"TLV at offset {pos} overruns its container")
    return i, end


def _children(buf: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """``(tlv_start, value_start, value_end)`` of every TLV in ``buf[start:end]``."""
    out = []
    pos = start
    while pos < end:
        vstart, vend = _tlv(buf, pos, end)
        out.append((pos, vstart, vend))
        pos = vend
    return out


def _body(function: str, response: bytes, tag: bytes) -> tuple[int, int]:
    """Value bounds of ``response``, which must be exactly one TLV with tag ``tag``."""
    if not response.startswith(tag):
        raise ResponseFormatError(
            f"{function}: expected a {tag.hex().upper()} response, got {_preview(response)}"
        )
    try:
        vstart, vend = _tlv(response, 0, len(response))
    except (ValueError, IndexError) as exc:
        raise ResponseFormatError(f"{function}: malformed response: {exc}") from None
    if vend != len(response):
        raise ResponseFormatError(f"{function}: {len(response) - vend} bytes after the response")
    return vstart, vend


def _preview(data: bytes) -> str:
    text = data[:24].hex().upper()
    return (text + "...") if len(data) > 24 else (text or "an empty response")


# -- argument checks ------------------------------------------------------------------------


def _iccid(iccid: str | bytes) -> bytes:
    if isinstance(iccid, str):
        return iccid_to_ef(iccid)  # raises InvalidIccid (a ValueError) with the reason
    if isinstance(iccid, bytes | bytearray) and len(iccid) == 10:
        return bytes(iccid)
    raise ValueError(f"ICCID must be its digits or the 10-byte EF.ICCID coding, got {iccid!r}")


def _aid(aid: bytes) -> bytes:
    if not isinstance(aid, bytes | bytearray) or not 1 <= len(aid) <= 16:
        raise ValueError(f"ISD-P AID must be 1..16 bytes, got {aid!r}")
    return bytes(aid)


def _profile_identifier(iccid: str | bytes | None, isdp_aid: bytes | None) -> tuple[str, bytes]:
    if (iccid is None) == (isdp_aid is None):
        raise ValueError("give exactly one of iccid and isdp_aid")
    if iccid is not None:
        return "iccid", _iccid(iccid)
    assert isdp_aid is not None
    return "isdpAid", _aid(isdp_aid)


def _seq_number(seq_number: int) -> int:
    if isinstance(seq_number, bool) or not isinstance(seq_number, int) or seq_number < 0:
        raise ValueError(f"seqNumber must be a non-negative int, got {seq_number!r}")
    return seq_number


def _notification_sent_request(seq_number: int) -> bytes:
    """NotificationSentRequest (SGP.22 ES10b.RemoveNotificationFromList: ``BF30 { [0]
    seqNumber }``) built directly: the IPAd sends one per handled result, and the seqNumber
    differs every time. The INTEGER is DER's minimal two's complement (a leading 00 when the
    top bit is set)."""
    number = seq_number.to_bytes(seq_number.bit_length() // 8 + 1, "big")
    return tlv.encode_tlv(b"\xbf\x30", tlv.encode_tlv(b"\x80", number))


def _encode_tag(tag: int | bytes | str) -> bytes:
    if isinstance(tag, str):
        try:
            return profile_info_tags()[tag]
        except KeyError:
            raise ValueError(f"ProfileInfo has no component {tag!r}") from None
    if isinstance(tag, int) and not isinstance(tag, bool):
        if not 0 < tag < 1 << 32:
            raise ValueError(f"tag out of range: {tag:#x}")
        raw = tag.to_bytes((tag.bit_length() + 7) // 8, "big")
    elif isinstance(tag, bytes | bytearray):
        raw = bytes(tag)
    else:
        raise ValueError(f"a tag is an int, bytes or a ProfileInfo component name, got {tag!r}")
    # BER tag shape: one byte, or a 1F-marked first byte then base-128 bytes ending bit8=0.
    ok = len(raw) == 1 and raw[0] & 0x1F != 0x1F
    if len(raw) > 1 and raw[0] & 0x1F == 0x1F:
        ok = all(b & 0x80 for b in raw[1:-1]) and not raw[-1] & 0x80
    if not ok:
        raise ValueError(f"not a BER tag: {raw.hex().upper()}")
    return raw


@lru_cache(maxsize=256)
def _profiles_info_request(kind: str | None, value: Any, tag_list: bytes | None) -> bytes:
    req: dict[str, Any] = {}
    if kind is not None:
        req["searchCriteria"] = (kind, value)
    if tag_list is not None:
        req["tagList"] = tag_list
    return schema.encode("ProfileInfoListRequest", req)


@lru_cache(maxsize=1024)
def _profile_info(raw: bytes) -> ProfileInfo:
    # Keyed by the exact E3 bytes: a card that did not change answers with the same bytes.
    return ProfileInfo.from_asn1(schema.decode("SGP32-ProfileInfo", raw))


def _pending_notification(raw: bytes) -> PendingNotification:
    kind, value = schema.decode("SGP32-PendingNotification", raw)
    if kind == "profileInstallationResult":
        meta = NotificationMetadata.from_asn1(
            value["profileInstallationResultData"]["notificationMetadata"]
        )
    elif kind in ("otherSignedNotification", "compactOtherSignedNotification"):
        meta = NotificationMetadata.from_asn1(value["tbsOtherNotification"])
    else:  # compactProfileInstallationResult carries only the sequence number
        seq = value["compactProfileInstallationResultData"]["seqNumber"]
        return PendingNotification(raw, kind, seq, None)
    return PendingNotification(raw, kind, meta.seq_number, meta)


class Es10Client:
    """Typed ES10a/b/c functions over an :class:`Es10Channel`.

    Open one over any transport with :meth:`open` (or wrap an already open channel)::

        with Es10Client.open(InProcessTransport(card)) as client:
            print(client.get_eid())
    """

    def __init__(self, channel: Es10Channel) -> None:
        self._channel = channel
        self._exchange = channel.exchange

    @classmethod
    def open(cls, transport: Transport, config: ChannelConfig | None = None) -> Es10Client:
        """Open a channel to ISD-R over ``transport`` (see :class:`ChannelConfig`)."""
        channel = Es10Channel(transport, config)
        channel.open()
        return cls(channel)

    @property
    def channel(self) -> Es10Channel:
        """The channel carrying this client's requests."""
        return self._channel

    def close(self) -> None:
        """Close the underlying channel."""
        self._channel.close()

    def __enter__(self) -> Es10Client:
        self._channel.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._channel.__exit__(exc_type, exc, tb)

    # -- generic ------------------------------------------------------------------------

    def exchange(self, request: bytes) -> bytes:
        """Send a raw ES10 request TLV and return the raw response TLV (may be empty)."""
        return self._exchange(request)

    def transmit_es10(self, request_type: str, value: Any, response_type: str | None = None) -> Any:
        """Encode ``value`` as ``request_type``, send it, decode the answer.

        The escape hatch for functions without a typed method. ``response_type`` defaults
        to the one the ES10 catalogue (:mod:`euicc_protocol.es10`) gives the request type,
        preferring
        the SGP.32 form (``GetEuiccInfo2Request`` -> ``SGP32-EUICCInfo2``). Values use the
        asn1tools Python form (see :mod:`euicc_protocol.schema`). Returns None for an empty
        response.
        """
        if response_type is None:
            response_type = _response_type_of(request_type)
        if not schema.has_type(response_type):
            raise ValueError(f"unknown response type {response_type}")
        response = self._exchange(schema.encode(request_type, value))
        if not response:
            return None
        return self._decode(request_type, response_type, response)

    @staticmethod
    def _decode(function: str, type_name: str, response: bytes) -> Any:
        try:
            return schema.decode(type_name, response)
        except schema.DecodeError as exc:
            raise ResponseFormatError(f"{function}: {exc} in {_preview(response)}") from None

    @staticmethod
    def _fail(
        function: str, field: str, code: int, enum: type[Asn1Enum], response: Any = None
    ) -> NoReturn:
        result = enum(code)
        raise Es10Error(
            function, int(code), result.asn1_name, field=field, result=result, response=response
        )

    @classmethod
    def _check(
        cls, function: str, field: str, code: int, enum: type[Asn1Enum], response: Any = None
    ) -> None:
        # Result codes: 0 is ok in every ES10 result INTEGER, anything else is an error.
        if code != 0:
            cls._fail(function, field, code, enum, response)

    def _result(
        self, function: str, request: bytes, response_type: str, field: str, enum: type[Asn1Enum]
    ) -> None:
        decoded = self._decode(function, response_type, self._exchange(request))
        self._check(function, field, decoded[field], enum)

    # -- ES10a ----------------------------------------------------------------------------

    def get_euicc_configured_addresses(self) -> EuiccConfiguredAddresses:
        """ES10a.GetEuiccConfiguredAddresses: default SM-DP+ and root SM-DS addresses."""
        response = self._exchange(_constant_request("EuiccConfiguredAddressesRequest"))
        d = self._decode(F_GET_ADDRESSES, "EuiccConfiguredAddressesResponse", response)
        return EuiccConfiguredAddresses(d.get("defaultDpAddress"), d["rootDsAddress"])

    def set_default_dp_address(self, address: str) -> None:
        """ES10a.SetDefaultDpAddress (an empty string clears the address)."""
        if not isinstance(address, str):
            raise ValueError(f"address must be a str, got {address!r}")
        request = schema.encode("SetDefaultDpAddressRequest", {"defaultDpAddress": address})
        self._result(
            F_SET_DEFAULT_DP,
            request,
            "SetDefaultDpAddressResponse",
            "setDefaultDpAddressResult",
            SetDefaultDpAddressResult,
        )

    # -- ES10b ----------------------------------------------------------------------------

    def get_euicc_info1(self) -> EuiccInfo1:
        """ES10b.GetEUICCInfo (EUICCInfo1): SVN and CI key identifiers."""
        response = self._exchange(_constant_request("GetEuiccInfo1Request"))
        return EuiccInfo1.from_asn1(self._decode(F_GET_INFO1, "EUICCInfo1", response), response)

    def get_euicc_info2(self) -> EuiccInfo2:
        """ES10b.GetEUICCInfo (SGP32-EUICCInfo2, which also reads an SGP.22 EUICCInfo2)."""
        response = self._exchange(_constant_request("GetEuiccInfo2Request"))
        decoded = self._decode(F_GET_INFO2, "SGP32-EUICCInfo2", response)
        return EuiccInfo2.from_asn1(decoded, response)

    def get_euicc_challenge(self) -> bytes:
        """ES10b.GetEUICCChallenge: 16 random bytes from the eUICC."""
        response = self._exchange(_constant_request("GetEuiccChallengeRequest"))
        d = self._decode(F_GET_CHALLENGE, "GetEuiccChallengeResponse", response)
        return bytes(d["euiccChallenge"])

    def get_rat(self) -> list[ProfilePolicyAuthorisationRule]:
        """ES10b.GetRAT: the Rules Authorisation Table."""
        response = self._exchange(_constant_request("GetRatRequest"))
        d = self._decode(F_GET_RAT, "GetRatResponse", response)
        return [ProfilePolicyAuthorisationRule.from_asn1(r) for r in d["rat"]]

    def list_notification(
        self, events: Iterable[NotificationEvent] | None = None
    ) -> list[NotificationMetadata]:
        """ES10b.ListNotification, optionally only for the given operations."""
        if events is None:
            request = _constant_request("ListNotificationRequest")
        else:
            value = events_to_bits(events)
            request = schema.encode(
                "ListNotificationRequest", {"profileManagementOperation": value}
            )
        response = self._exchange(request)
        kind, value = self._decode(F_LIST_NOTIFICATION, "ListNotificationResponse", response)
        if kind != "notificationMetadataList":
            self._fail(F_LIST_NOTIFICATION, kind, value, ListNotificationsResultError)
        return [NotificationMetadata.from_asn1(m) for m in value]

    def retrieve_notifications_list(
        self, seq_number: int | None = None, event: NotificationEvent | None = None
    ) -> list[PendingNotification]:
        """ES10b.RetrieveNotificationsList: all pending notifications, or one by seqNumber,
        or those of one operation. Each result keeps its exact signed bytes in ``raw``."""
        if seq_number is not None and event is not None:
            raise ValueError("give at most one of seq_number and event")
        criteria: Any = None
        if seq_number is not None:
            criteria = ("seqNumber", _seq_number(seq_number))
        elif event is not None:
            criteria = ("profileManagementOperation", events_to_bits([event]))
        if criteria is None:
            request = _constant_request("SGP32-RetrieveNotificationsListRequest")
        else:
            request = schema.encode(
                "SGP32-RetrieveNotificationsListRequest", {"searchCriteria": criteria}
            )
        items = self._notification_list_items(self._exchange(request), 0xA0)
        try:
            return [_pending_notification(raw) for raw in items]
        except schema.DecodeError as exc:
            raise ResponseFormatError(f"{F_RETRIEVE_NOTIFICATIONS}: {exc}") from None

    def retrieve_euicc_package_results(self) -> list[bytes]:
        """ES10b.RetrieveNotificationsList with ``euiccPackageResults`` (SGP.32): the stored
        EuiccPackageResult TLVs (``BF51``), exactly as signed by the eUICC."""
        request = schema.encode(
            "SGP32-RetrieveNotificationsListRequest",
            {"searchCriteria": ("euiccPackageResults", None)},
        )
        items = self._notification_list_items(self._exchange(request), 0xA2)
        if any(not item.startswith(b"\xbf\x51") for item in items):
            raise ResponseFormatError(f"{F_RETRIEVE_NOTIFICATIONS}: list item is not a BF51")
        return items

    def _notification_list_items(self, response: bytes, list_tag: int) -> list[bytes]:
        fn = F_RETRIEVE_NOTIFICATIONS
        start, end = _body(fn, response, b"\xbf\x2b")
        try:
            (pos, vstart, vend), *rest = _children(response, start, end)
            if rest:
                raise ValueError("more than one alternative")
            tag = response[pos]
            if tag == 0x81:
                code = int.from_bytes(response[vstart:vend], "big", signed=True)
                self._fail(fn, "notificationsListResultError", code, NotificationsListResultError)
            if tag != list_tag:
                raise ValueError(f"unexpected alternative {tag:02X}")
            return [response[p:e] for p, _, e in _children(response, vstart, vend)]
        except (ValueError, IndexError) as exc:
            raise ResponseFormatError(f"{fn}: {exc} in {_preview(response)}") from None

    def remove_notification_from_list(self, seq_number: int) -> None:
        """ES10b.RemoveNotificationFromList (also removes an SGP.32 EuiccPackageResult)."""
        request = _notification_sent_request(_seq_number(seq_number))
        self._result(
            F_REMOVE_NOTIFICATION,
            request,
            "NotificationSentResponse",
            "deleteNotificationStatus",
            DeleteNotificationStatus,
        )

    def load_crl(self, crl: bytes) -> list[int]:
        """ES10b.LoadCRL: hand the card a CRL (DER ``CertificateList``) from its CI.

        Returns the partialCrlNumbers the card still misses of a partitioned CRL (empty when
        it holds the whole list). Raises :class:`Es10Error` with :class:`LoadCrlError`.
        """
        item = tlv.read_tlv(crl) if crl[:1] == b"\x30" else None
        if item is None or item.end != len(crl):
            raise ValueError("crl must be one DER CertificateList (a 30 TLV)")
        # The request carries the CertificateList under the automatic tag A0.
        request = tlv.encode_tlv(b"\xbf\x35", b"\xa0" + crl[1:])
        response = self._exchange(request)
        kind, value = self._decode(F_LOAD_CRL, "LoadCRLResponse", response)
        if kind == "loadCRLResponseError":
            self._fail(F_LOAD_CRL, kind, value, LoadCrlError)
        return list(value.get("missingParts", []))

    def get_certs(self, ci_pkid: bytes | None = None) -> EuiccCertificates:
        """ES10b.GetCerts (SGP.32): EUM and eUICC certificates as DER.

        The response carries them under implicit tags ``A5``/``A6``; the outer ``30`` of each
        certificate is restored here so X.509 parsers accept them.
        """
        if ci_pkid is None:
            request = _constant_request("GetCertsRequest")
        else:
            if not isinstance(ci_pkid, bytes | bytearray) or not ci_pkid:
                raise ValueError(f"ci_pkid must be non-empty bytes, got {ci_pkid!r}")
            request = schema.encode("GetCertsRequest", {"euiccCiPKId": bytes(ci_pkid)})
        response = self._exchange(request)
        start, end = _body(F_GET_CERTS, response, b"\xbf\x56")
        if response[start : start + 1] == b"\x81":
            kind, code = self._decode(F_GET_CERTS, "GetCertsResponse", response)
            self._fail(F_GET_CERTS, kind, code, GetCertsError)
        certs: dict[int, bytes] = {}
        try:
            (pos, vstart, vend), *rest = _children(response, start, end)
            if response[pos] != 0xA0 or rest:
                raise ValueError("expected the certs alternative A0")
            for p, _, e in _children(response, vstart, vend):
                certs[response[p]] = b"\x30" + response[p + 1 : e]
            return EuiccCertificates(certs[0xA5], certs[0xA6])
        except (ValueError, IndexError, KeyError) as exc:
            raise ResponseFormatError(f"{F_GET_CERTS}: {exc!r} in {_preview(response)}") from None

    # -- ES10c ----------------------------------------------------------------------------

    def get_profiles_info(
        self,
        iccid: str | bytes | None = None,
        isdp_aid: bytes | None = None,
        profile_class: ProfileClass | int | None = None,
        tags: Iterable[int | bytes | str] | None = None,
    ) -> list[ProfileInfo]:
        """ES10c.GetProfilesInfo: all profiles, or those matching one search criterion.

        ``tags`` selects the ProfileInfo components to return: encoded tags as ints
        (``0x5A``, ``0x9F70``), bytes, or ASN.1 component names (``"profileNickname"``).
        """
        given = [c for c in (iccid, isdp_aid, profile_class) if c is not None]
        if len(given) > 1:
            raise ValueError("give at most one of iccid, isdp_aid and profile_class")
        kind: str | None = None
        value: Any = None
        if iccid is not None:
            kind, value = "iccid", _iccid(iccid)
        elif isdp_aid is not None:
            kind, value = "isdpAid", _aid(isdp_aid)
        elif profile_class is not None:
            if isinstance(profile_class, bool) or not isinstance(profile_class, int):
                raise ValueError(f"profile_class must be a ProfileClass, got {profile_class!r}")
            kind, value = "profileClass", int(profile_class)
        tag_list = None if tags is None else b"".join(_encode_tag(t) for t in tags)
        response = self._exchange(_profiles_info_request(kind, value, tag_list))
        return self._parse_profiles_info(response)

    def _parse_profiles_info(self, response: bytes) -> list[ProfileInfo]:
        fn = F_GET_PROFILES_INFO
        start, end = _body(fn, response, b"\xbf\x2d")
        try:
            if start == end:
                raise ValueError("empty response body")
            tag = response[start]
            vstart, vend = _tlv(response, start, end)
            if vend != end:
                raise ValueError("more than one alternative")
            if tag == 0x81:
                code = int.from_bytes(response[vstart:vend], "big", signed=True)
                self._fail(fn, "profileInfoListError", code, ProfileInfoListError)
            if tag != 0xA0:
                raise ValueError(f"unexpected alternative {tag:02X}")
            items = []
            for p, _, e in _children(response, vstart, vend):
                if response[p] != _TAG_PROFILE_INFO:
                    raise ValueError(f"list item with tag {response[p]:02X} instead of E3")
                items.append(_profile_info(response[p:e]))
            return items
        except (ValueError, IndexError) as exc:
            raise ResponseFormatError(f"{fn}: {exc} in {_preview(response)}") from None

    def enable_profile(
        self, iccid: str | bytes | None = None, isdp_aid: bytes | None = None, refresh: bool = False
    ) -> None:
        """ES10c.EnableProfile by ICCID or ISD-P AID."""
        ident = _profile_identifier(iccid, isdp_aid)
        request = schema.encode(
            "EnableProfileRequest", {"profileIdentifier": ident, "refreshFlag": bool(refresh)}
        )
        self._result(F_ENABLE, request, "EnableProfileResponse", "enableResult", EnableResult)

    def disable_profile(
        self, iccid: str | bytes | None = None, isdp_aid: bytes | None = None, refresh: bool = False
    ) -> None:
        """ES10c.DisableProfile by ICCID or ISD-P AID."""
        ident = _profile_identifier(iccid, isdp_aid)
        request = schema.encode(
            "DisableProfileRequest", {"profileIdentifier": ident, "refreshFlag": bool(refresh)}
        )
        self._result(F_DISABLE, request, "DisableProfileResponse", "disableResult", DisableResult)

    def delete_profile(
        self, iccid: str | bytes | None = None, isdp_aid: bytes | None = None
    ) -> None:
        """ES10c.DeleteProfile by ICCID or ISD-P AID (the request is a tagged CHOICE)."""
        request = schema.encode("DeleteProfileRequest", _profile_identifier(iccid, isdp_aid))
        self._result(F_DELETE, request, "DeleteProfileResponse", "deleteResult", DeleteResult)

    def set_nickname(self, iccid: str | bytes, nickname: str) -> None:
        """ES10c.SetNickname (at most 64 characters; empty clears the nickname).

        ``UTF8String (SIZE(0..64))`` constrains characters, not bytes (X.680), so 64
        non-ASCII characters are fine even though they take more than 64 bytes.
        """
        if not isinstance(nickname, str):
            raise ValueError(f"nickname must be a str, got {nickname!r}")
        if len(nickname) > 64:
            raise ValueError(f"nickname is {len(nickname)} characters; the limit is 64")
        request = schema.encode(
            "SetNicknameRequest", {"iccid": _iccid(iccid), "profileNickname": nickname}
        )
        self._result(
            F_SET_NICKNAME, request, "SetNicknameResponse", "setNicknameResult", SetNicknameResult
        )

    def get_eid(self) -> str:
        """ES10c.GetEID: the EID as 32 digits."""
        response = self._exchange(_GET_EID_REQUEST)
        if len(response) == 21 and response.startswith(_GET_EID_PREFIX):
            return response[5:].hex().upper()
        d = self._decode(F_GET_EID, "GetEuiccDataResponse", response)
        return bytes(d["eidValue"]).hex().upper()

    def euicc_memory_reset(
        self, options: Iterable[ResetOption | int], *, sgp22: bool = False
    ) -> MemoryResetResult:
        """eUICCMemoryReset: the SGP.32 v1.2 form (``BF64``) or, with ``sgp22``, ``BF34``.

        Raises Es10Error for the first result that is not ``ok`` (``resetResult``, then
        ``resetEimResult``, then ``resetImmediateEnableConfigResult``); the error's
        ``response`` holds the full :class:`MemoryResetResult`.
        """
        positions = sorted({int(o) for o in options})
        unknown = [p for p in positions if not ResetOption(p).is_known]
        if unknown:
            raise ValueError(f"unknown eUICCMemoryReset options {unknown} (known: 0..6)")
        if not positions:
            raise ValueError("give at least one reset option")
        if sgp22:
            bad = [ResetOption(p).asn1_name for p in positions if p not in _SGP22_RESET_OPTIONS]
            if bad:
                raise ValueError(f"SGP.22 eUICCMemoryReset has no option {', '.join(bad)}")
            request = schema.encode(
                "EuiccMemoryResetRequest", {"resetOptions": schema.bits(positions)}
            )
            d = self._decode(F_MEMORY_RESET, "EuiccMemoryResetResponse", self._exchange(request))
            result = MemoryResetResult(ResetResult(d["resetResult"]))
            self._check(F_MEMORY_RESET, "resetResult", result.reset_result, ResetResult, result)
            return result
        fn = F_MEMORY_RESET_IOT
        request = schema.encode(
            "SGP32-EuiccMemoryResetRequest", {"resetOptions": schema.bits(positions)}
        )
        d = self._decode(fn, "SGP32-EuiccMemoryResetResponse", self._exchange(request))
        eim = d.get("resetEimResult")
        iec = d.get("resetImmediateEnableConfigResult")
        result = MemoryResetResult(
            ResetResult(d["resetResult"]),
            None if eim is None else ResetEimResult(eim),
            None if iec is None else ResetImmediateEnableConfigResult(iec),
        )
        self._check(fn, "resetResult", result.reset_result, ResetResult, result)
        if result.reset_eim_result is not None:
            self._check(fn, "resetEimResult", result.reset_eim_result, ResetEimResult, result)
        if result.reset_immediate_enable_config_result is not None:
            self._check(
                fn,
                "resetImmediateEnableConfigResult",
                result.reset_immediate_enable_config_result,
                ResetImmediateEnableConfigResult,
                result,
            )
        return result
