"""The JSON bindings of ES9+ (SGP.22 §6.5) and ESipa (SGP.32 §6.1), described once as data.

Each function is a :class:`Function`: the JSON fields of its request and of its response,
each a :class:`Field` with its name, how its value travels (:class:`Encoding`) and whether it
is mandatory. Servers and clients both read and write bodies with :func:`decode` and
:func:`encode` over these tables, so the two sides cannot drift apart.

How values travel (SGP.22 §6.5.1):

* an ASN.1 object is the standard base64 (with padding) of its complete TLV, tag and length
  included (:attr:`Encoding.TLV`; ``tags`` lists the tags it may have);
* ``euiccChallenge`` is the base64 of its 16 raw bytes (:attr:`Encoding.BASE64`);
* ``transactionId``, ``eimTransactionId``, ``eidValue`` and ``rPlmn`` are hex strings
  (:attr:`Encoding.HEX`; upper case on output, either case on input);
* addresses and matching ids are JSON strings, error codes JSON integers, flags booleans.

Base64 and hex are read leniently where peers differ harmlessly (whitespace and line breaks
in base64 are ignored) and strictly otherwise: a TLV field must be exactly one TLV.
"""

from __future__ import annotations

import base64
import binascii
import enum
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import tlv

__all__ = [
    "ES9PLUS",
    "ESIPA",
    "BindingError",
    "Encoding",
    "Field",
    "Function",
    "decode",
    "encode",
]


class Encoding(enum.Enum):
    """How a field's value is carried in JSON."""

    TLV = "base64 of a complete TLV"
    BASE64 = "base64 of raw bytes"
    HEX = "hex"
    STRING = "string"
    INTEGER = "integer"
    BOOLEAN = "boolean"


@dataclass(frozen=True)
class Field:
    """One JSON field: ``name`` as on the wire, its :class:`Encoding`, whether it is
    mandatory, the TLV tags it may carry (TLV; empty: any) and the byte sizes it may have
    (HEX, BASE64)."""

    name: str
    encoding: Encoding
    mandatory: bool = True
    tags: tuple[bytes, ...] = ()
    size: tuple[int, int] | None = None


@dataclass(frozen=True)
class Function:
    """One function of a JSON binding. ``one_of_response``: exactly one of these response
    fields is present; ``empty_response``: success is HTTP 204 with no body."""

    interface: str
    name: str
    request: tuple[Field, ...]
    response: tuple[Field, ...] = ()
    one_of_request: tuple[str, ...] = ()
    one_of_response: tuple[str, ...] = ()
    empty_response: bool = False

    def field(self, name: str) -> Field:
        """The request or response field ``name``.

        Raises:
            KeyError: no such field.
        """
        for item in (*self.request, *self.response):
            if item.name == name:
                return item
        raise KeyError(name)


class BindingError(ValueError):
    """A JSON body does not follow its function's binding. ``missing`` tells a mandatory
    field that is absent (SGP.22 1.3.1/2.2) from one that is malformed (1.3.1/2.1)."""

    def __init__(self, message: str, *, field: str | None = None, missing: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.missing = missing


_TID = (1, 16)
_T, _B, _H, _S = Encoding.TLV, Encoding.BASE64, Encoding.HEX, Encoding.STRING
_I, _F = Encoding.INTEGER, Encoding.BOOLEAN


def _es9(
    name: str, request: tuple[Field, ...], response: tuple[Field, ...] = (), **kw: Any
) -> Function:
    return Function("ES9+", name, request, response, **kw)


def _esipa(
    name: str, request: tuple[Field, ...], response: tuple[Field, ...] = (), **kw: Any
) -> Function:
    return Function("ESipa", name, request, response, **kw)


#: ES9+ (SGP.22 §6.5.2), as SM-DP+s and LPAs/IPAs/eIMs speak it.
ES9PLUS: dict[str, Function] = {
    f.name: f
    for f in (
        _es9(
            "initiateAuthentication",
            (
                Field("euiccChallenge", _B, size=(16, 16)),
                Field("euiccInfo1", _T, tags=(b"\xbf\x20",)),
                Field("smdpAddress", _S),
            ),
            (
                Field("transactionId", _H, size=_TID),
                Field("serverSigned1", _T, tags=(b"\x30",)),
                Field("serverSignature1", _T, tags=(b"\x5f\x37",)),
                Field("euiccCiPKIdToBeUsed", _T, tags=(b"\x04",)),
                Field("serverCertificate", _T, tags=(b"\x30",)),
            ),
        ),
        _es9(
            "authenticateClient",
            (
                Field("transactionId", _H, size=_TID),
                Field("authenticateServerResponse", _T, tags=(b"\xbf\x38",)),
            ),
            (
                Field("transactionId", _H, size=_TID),
                Field("profileMetadata", _T, False, tags=(b"\xbf\x25",)),
                Field("smdpSigned2", _T, tags=(b"\x30",)),
                Field("smdpSignature2", _T, tags=(b"\x5f\x37",)),
                Field("smdpCertificate", _T, tags=(b"\x30",)),
            ),
        ),
        _es9(
            "getBoundProfilePackage",
            (
                Field("transactionId", _H, size=_TID),
                Field("prepareDownloadResponse", _T, tags=(b"\xbf\x21",)),
            ),
            (
                Field("transactionId", _H, size=_TID),
                Field("boundProfilePackage", _T, tags=(b"\xbf\x36",)),
            ),
        ),
        _es9(
            "handleNotification",
            (Field("pendingNotification", _T, tags=(b"\xbf\x37", b"\x30")),),
            empty_response=True,
        ),
        _es9(
            "cancelSession",
            (
                Field("transactionId", _H, size=_TID),
                Field("cancelSessionResponse", _T, tags=(b"\xbf\x41",)),
            ),
            (Field("transactionId", _H, False, size=_TID),),
        ),
    )
}

_PACKAGES = ("euiccPackageRequest", "ipaEuiccDataRequest", "profileDownloadTriggerRequest")

#: ESipa (SGP.32 §6.1), as eIMs and IPAds speak it.
ESIPA: dict[str, Function] = {
    f.name: f
    for f in (
        _esipa(
            "getEimPackage",
            (
                Field("eidValue", _H, size=(16, 16)),
                Field("notifyStateChange", _F, False),
                Field("stateChangeCause", _I, False),
                Field("rPlmn", _H, False, size=(3, 3)),
            ),
            (
                Field("euiccPackageRequest", _T, False, tags=(b"\xbf\x51",)),
                Field("ipaEuiccDataRequest", _T, False, tags=(b"\xbf\x52",)),
                Field("profileDownloadTriggerRequest", _T, False, tags=(b"\xbf\x54",)),
                Field("eimPackageError", _I, False),
            ),
            one_of_response=(*_PACKAGES, "eimPackageError"),
        ),
        _esipa(
            "provideEimPackageResult",
            (
                Field("eidValue", _H, False, size=(16, 16)),
                Field(
                    "eimPackageResult",
                    _T,
                    tags=(b"\xbf\x51", b"\x30", b"\xbf\x52", b"\xbf\x54", b"\xa0"),
                ),
            ),
            (
                Field("eimAcknowledgements", _T, False, tags=(b"\xbf\x53",)),
                Field("provideEimPackageResultError", _I, False),
            ),
        ),
        _esipa(
            "handleNotification",
            (
                Field("pendingNotification", _T, False),
                Field("provideEimPackageResult", _T, False, tags=(b"\xbf\x50",)),
            ),
            one_of_request=("pendingNotification", "provideEimPackageResult"),
            empty_response=True,
        ),
        _esipa(
            "initiateAuthentication",
            (
                Field("euiccChallenge", _B, size=(16, 16)),
                Field("smdpAddress", _S, False),
                Field("euiccInfo1", _T, False, tags=(b"\xbf\x20",)),
                Field("eimTransactionId", _H, False, size=_TID),
            ),
            (
                Field("transactionId", _H, False, size=_TID),
                Field("serverSigned1", _T, tags=(b"\x30",)),
                Field("serverSignature1", _T, tags=(b"\x5f\x37",)),
                Field("euiccCiPKIdentifierToBeUsed", _T, tags=(b"\x04",)),
                Field("serverCertificate", _T, tags=(b"\x30",)),
                Field("matchingId", _S, False),
                Field("ctxParams1", _T, False, tags=(b"\xa0",)),
            ),
        ),
        _esipa(
            "authenticateClient",
            (
                Field("transactionId", _H, size=_TID),
                Field("authenticateServerResponse", _T, tags=(b"\xbf\x38",)),
            ),
            (
                Field("transactionId", _H, False, size=_TID),
                Field("profileMetadata", _T, False, tags=(b"\xbf\x25",)),
                Field("smdpSigned2", _T, tags=(b"\x30",)),
                Field("smdpSignature2", _T, tags=(b"\x5f\x37",)),
                Field("smdpCertificate", _T, tags=(b"\x30",)),
                Field("hashCc", _T, False, tags=(b"\x04",)),
            ),
        ),
        _esipa(
            "getBoundProfilePackage",
            (
                Field("transactionId", _H, size=_TID),
                Field("prepareDownloadResponse", _T, tags=(b"\xbf\x21",)),
            ),
            (
                Field("transactionId", _H, False, size=_TID),
                Field("boundProfilePackage", _T, tags=(b"\xbf\x36",)),
            ),
        ),
        _esipa(
            "cancelSession",
            (
                Field("transactionId", _H, size=_TID),
                Field("cancelSessionResponse", _T, tags=(b"\xbf\x41",)),
            ),
        ),
    )
}


def _bad(field: Field, why: str) -> BindingError:
    return BindingError(f"{field.name} {why}", field=field.name)


def _decode_value(field: Field, value: Any) -> Any:
    kind = field.encoding
    if kind is Encoding.BOOLEAN:
        if not isinstance(value, bool):
            raise _bad(field, "must be true or false")
        return value
    if kind is Encoding.INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(field, "must be an integer")
        return value
    if not isinstance(value, str):
        raise _bad(field, f"is a {type(value).__name__}, expected a string")
    if kind is Encoding.STRING:
        return value
    if kind is Encoding.HEX:
        text = value.strip()
        if len(text) % 2 or not all(c in string.hexdigits for c in text):
            raise _bad(field, "is not hex")
        data = bytes.fromhex(text)
    else:
        try:
            data = base64.b64decode("".join(value.split()), validate=True)
        except (binascii.Error, ValueError):
            raise _bad(field, "is not base64 (standard alphabet, padded)") from None
    if field.size is not None and not field.size[0] <= len(data) <= field.size[1]:
        low, high = field.size
        raise _bad(field, f"must be {low} bytes" if low == high else f"must be {low}..{high} bytes")
    if kind is Encoding.TLV:
        try:
            item = tlv.read_tlv(data)
        except tlv.TlvError as exc:
            raise _bad(field, f"is not a complete TLV: {exc}") from None
        wanted = " or ".join(t.hex().upper() for t in field.tags) or "one"
        if item.end != len(data) or (field.tags and item.tag not in field.tags):
            head = data[:4].hex().upper()
            raise _bad(field, f"must be a complete {wanted} TLV, starts {head}")
    return data


def _check_one_of(names: Sequence[str], present: Mapping[str, Any], what: str) -> None:
    if names and sum(1 for n in names if present.get(n) is not None) != 1:
        raise BindingError(f"{what} needs exactly one of {', '.join(names)}")


def decode(
    fields: Sequence[Field], body: Mapping[str, Any], *, one_of: Sequence[str] = ()
) -> dict[str, Any]:
    """The values of ``fields`` in a JSON object: bytes for TLV/BASE64/HEX, ``str``,
    ``int``, ``bool``; absent optional fields are left out, unknown fields ignored.

    Raises:
        BindingError: ``body`` is not an object, a mandatory field is missing, a value is
            malformed, or not exactly one of ``one_of`` is present.
    """
    if not isinstance(body, Mapping):
        raise BindingError("the body must be a JSON object")
    out: dict[str, Any] = {}
    for field in fields:
        value = body.get(field.name)
        if value is None:
            if field.mandatory:
                raise BindingError(
                    f"mandatory element {field.name} is missing", field=field.name, missing=True
                )
            continue
        out[field.name] = _decode_value(field, value)
    _check_one_of(one_of, out, "the body")
    return out


def _encode_value(field: Field, value: Any) -> Any:
    kind = field.encoding
    if kind in (Encoding.STRING, Encoding.INTEGER, Encoding.BOOLEAN):
        return value
    data = bytes(value)
    if field.size is not None and not field.size[0] <= len(data) <= field.size[1]:
        raise _bad(field, f"must be {field.size[0]}..{field.size[1]} bytes")
    if kind is Encoding.HEX:
        return data.hex().upper()
    if kind is Encoding.TLV:
        _decode_value(field, base64.b64encode(data).decode("ascii"))  # one TLV, right tag
    return base64.b64encode(data).decode("ascii")


def encode(
    fields: Sequence[Field], values: Mapping[str, Any], *, one_of: Sequence[str] = ()
) -> dict[str, Any]:
    """The JSON object of ``values`` (keyed by field name; ``None`` means absent).

    Raises:
        BindingError: a mandatory value is missing, a value is unknown or malformed.
    """
    names = {f.name for f in fields}
    unknown = [k for k in values if k not in names]
    if unknown:
        raise BindingError(f"unknown field(s) {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for field in fields:
        value = values.get(field.name)
        if value is None:
            if field.mandatory:
                raise BindingError(f"mandatory element {field.name} is missing", missing=True)
            continue
        out[field.name] = _encode_value(field, value)
    _check_one_of(one_of, out, "the body")
    return out
