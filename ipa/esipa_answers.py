"""What the eIM answers over ESipa (SGP.32 v1.2 §5.14, ASN.1 binding §6.3): the answer types, and
reading them out of an answer in either binding.

ASN.1 binding: after the transport checked the schema, answers are split with a TLV walk, so
every TLV is kept as the exact bytes received (signed values are relayed to the card as is).
JSON binding: the ES9+ conventions, ASN.1 values as base64 of the complete TLV (checked to be
one TLV of the expected tag), transaction ids as hex. Anything else is an
:class:`~ipa.esipa_codes.EsipaProtocolError`.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from euicc_protocol import schema, tlv
from ipa.codes import Asn1Enum
from ipa.esipa_codes import ERROR_ENUMS, EsipaProtocolError
from ipa.esipa_messages import one_tlv

__all__ = [
    "PACKAGE_TAGS",
    "AuthenticateClientOkDp",
    "AuthenticateClientOkDs",
    "EimPackage",
    "EimPackageKind",
    "GetBoundProfilePackageOk",
    "InitiateAuthenticationOk",
    "acknowledgements",
    "acknowledgements_v1_0",
    "answer_alternative",
    "authenticate_ok_dp",
    "error_code",
    "initiate_ok",
    "json_b64",
    "json_hex",
    "json_opt_b64",
    "json_opt_hex",
    "json_str",
    "octet_string_value",
    "tlv_value",
]


class EimPackageKind(enum.StrEnum):
    """What GetEimPackage delivered (the GetEimPackageResponse alternative)."""

    EUICC_PACKAGE_REQUEST = "euiccPackageRequest"
    IPA_EUICC_DATA_REQUEST = "ipaEuiccDataRequest"
    PROFILE_DOWNLOAD_TRIGGER_REQUEST = "profileDownloadTriggerRequest"


#: The tag of each package kind's TLV.
PACKAGE_TAGS = {
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


# -- ASN.1 binding --------------------------------------------------------------------------------


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


def answer_alternative(
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


def error_code(function: str, raw: bytes) -> Asn1Enum:
    """The INTEGER error TLV ``raw`` of ``function``'s answer as that function's enum."""
    value = int.from_bytes(tlv.read_tlv(raw).value(raw), "big", signed=True)
    return ERROR_ENUMS[function](value)


def tlv_value(raw: bytes) -> bytes:
    """The value of the TLV ``raw``."""
    return tlv.read_tlv(raw).value(raw)


def acknowledgements(function: str, raw: bytes) -> tuple[int, ...]:
    """The seqNumbers of an EimAcknowledgements TLV (``BF53``)."""
    try:
        return tuple(schema.decode("EimAcknowledgements", raw))
    except schema.DecodeError as exc:
        raise EsipaProtocolError(f"ESipa.{function}: eimAcknowledgements: {exc}") from None


def acknowledgements_v1_0(function: str, answer: bytes) -> tuple[int, ...]:
    """The seqNumbers of an SGP.32 v1.0.1 ProvideEimPackageResultResponse ``BF50 { [BF53] }``
    (``BF50 00`` when the eIM acknowledges nothing)."""
    try:
        value = schema.decode("ProvideEimPackageResultResponse", answer, sgp32="1.0")
    except schema.DecodeError as exc:
        raise EsipaProtocolError(f"ESipa.{function}: {exc}", function=function) from None
    return tuple(value.get("eimAcknowledgements", ()))


def _named_parts(
    function: str,
    parts: list[tuple[bytes, bytes]],
    sequences: tuple[str, ...],
    names: Mapping[bytes, str],
    required: set[str],
) -> dict[str, bytes]:
    """Name the children of an answer: the ``30`` ones in the order of ``sequences``, the
    others by tag; the first of each name is kept. A ``required`` name missing is a protocol
    error."""
    found: dict[str, bytes] = {}
    in_order = iter(sequences)
    for tag, raw in parts:
        name = next(in_order, "extra") if tag == b"\x30" else names.get(tag, "extra")
        found.setdefault(name, raw)
    missing = required - set(found)
    if missing:
        raise EsipaProtocolError(f"ESipa.{function}: missing {', '.join(sorted(missing))}")
    return found


def initiate_ok(function: str, parts: list[tuple[bytes, bytes]]) -> InitiateAuthenticationOk:
    """InitiateAuthenticationOkEsipa from the ``(tag, TLV)`` of its children."""
    names = {b"\x80": "transactionId", b"\x5f\x37": "serverSignature1", b"\x04": "ciPKId",
             b"\x0c": "matchingId", b"\xa2": "ctxParams1"}  # fmt: skip
    required = {"serverSigned1", "serverCertificate", "serverSignature1", "ciPKId"}
    found = _named_parts(function, parts, ("serverSigned1", "serverCertificate"), names, required)
    tid, mid, ctx = found.get("transactionId"), found.get("matchingId"), found.get("ctxParams1")
    return InitiateAuthenticationOk(
        transaction_id=None if tid is None else tlv_value(tid),
        server_signed1=found["serverSigned1"],
        server_signature1=found["serverSignature1"],
        euicc_ci_pkid_to_be_used=found["ciPKId"],
        server_certificate=found["serverCertificate"],
        matching_id=None if mid is None else tlv_value(mid).decode("utf-8"),
        ctx_params1=None if ctx is None else tlv_value(ctx),  # [2] is explicit around the CHOICE
    )


def authenticate_ok_dp(function: str, parts: list[tuple[bytes, bytes]]) -> AuthenticateClientOkDp:
    """AuthenticateClientOkDPEsipa from the ``(tag, TLV)`` of its children."""
    names = {b"\x80": "transactionId", b"\xbf\x25": "profileMetadata",
             b"\x5f\x37": "smdpSignature2", b"\x04": "hashCc"}  # fmt: skip
    required = {"smdpSigned2", "smdpSignature2", "smdpCertificate"}
    found = _named_parts(function, parts, ("smdpSigned2", "smdpCertificate"), names, required)
    tid, hash_cc = found.get("transactionId"), found.get("hashCc")
    return AuthenticateClientOkDp(
        transaction_id=None if tid is None else tlv_value(tid),
        profile_metadata=found.get("profileMetadata"),
        smdp_signed2=found["smdpSigned2"],
        smdp_signature2=found["smdpSignature2"],
        smdp_certificate=found["smdpCertificate"],
        hash_cc=None if hash_cc is None else tlv_value(hash_cc),
    )


# -- JSON binding ---------------------------------------------------------------------------------


def json_str(body: Mapping[str, Any], function: str, name: str) -> str:
    """The string field ``name`` of a JSON answer."""
    value = body.get(name)
    if not isinstance(value, str):
        got = "missing" if value is None else f"a {type(value).__name__}"
        raise EsipaProtocolError(
            f"ESipa.{function}: {name} is {got}, expected a string", function=function
        )
    return value


def json_b64(
    body: Mapping[str, Any], function: str, name: str, tags: bytes | tuple[bytes, ...] | None
) -> bytes:
    """The base64 field ``name``, decoded; with ``tags``, it must be one TLV of those tags."""
    text = "".join(json_str(body, function, name).split())
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise EsipaProtocolError(
            f"ESipa.{function}: {name} is not base64", function=function
        ) from None
    if tags is not None:
        try:
            one_tlv(data, tags, name)
        except ValueError as exc:
            raise EsipaProtocolError(f"ESipa.{function}: {exc}", function=function) from None
    return data


def json_opt_b64(
    body: Mapping[str, Any], function: str, name: str, tags: bytes | tuple[bytes, ...] | None
) -> bytes | None:
    """:func:`json_b64`, or None when the field is absent (or null)."""
    return None if body.get(name) is None else json_b64(body, function, name, tags)


def json_hex(body: Mapping[str, Any], function: str, name: str) -> bytes:
    """The hex field ``name``, decoded."""
    text = json_str(body, function, name)
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise EsipaProtocolError(
            f"ESipa.{function}: {name} is not hex", function=function
        ) from None


def json_opt_hex(body: Mapping[str, Any], function: str, name: str) -> bytes | None:
    """:func:`json_hex`, or None when the field is absent (or null)."""
    return None if body.get(name) is None else json_hex(body, function, name)


def octet_string_value(raw: bytes) -> bytes:
    """The value of a ``04`` TLV, or ``raw`` itself when it is not one (raw 32-byte hashCc)."""
    if raw[:1] == b"\x04":
        try:
            item = tlv.read_tlv(raw)
            if item.end == len(raw):
                return item.value(raw)
        except tlv.TlvError:
            pass
    return raw
