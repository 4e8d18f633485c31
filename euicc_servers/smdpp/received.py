"""ES9+ requests as the SM-DP+ received them: :class:`FunctionFailed` (a function's
statusCodeData) with the common failures, and reading request values without re-encoding them.

ASN.1 values are sliced out of the received bytes (so signatures verify over exactly what the
eUICC signed) and decoded with the schema; a value that is not the expected ASN.1 object is
1.3.1/2.1. A signature that does not verify, or an eUICC error answer forwarded by the client,
is 8.1/6.1; an unknown transactionId 8.10.1/3.9.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from euicc_protocol import crypto, pki, schema, tlv

from ..common import has_unknown_alternative, tlv_children
from ..common.functions import FunctionFailed

__all__ = [
    "SIG",
    "FunctionFailed",
    "children",
    "decode_as",
    "ec_public_key",
    "euicc_verification",
    "expect_tags",
    "hex_upper",
    "invalid",
    "outer_tlv",
    "single_choice",
    "unknown_transaction",
    "verifies",
]

#: Tag of an ECDSA signature TLV (``5F37``).
SIG = b"\x5f\x37"


def invalid(name: str, why: str) -> FunctionFailed:
    """1.3.1/2.1: the value ``name`` is not what the function takes."""
    return FunctionFailed("1.3.1", "2.1", f"{name} is invalid: {why}")


def unknown_transaction(message: str = "transactionId unknown") -> FunctionFailed:
    """8.10.1/3.9: no (live) session for this transactionId, or not in the right phase."""
    return FunctionFailed("8.10.1", "3.9", message)


def euicc_verification(message: str) -> FunctionFailed:
    """8.1/6.1: the eUICC's answer does not verify, or is an error answer."""
    return FunctionFailed("8.1", "6.1", message)


def hex_upper(data: bytes) -> str:
    """``data`` as upper-case hex (transactionIds in logs and in the order store)."""
    return data.hex().upper()


def outer_tlv(data: bytes, tag: bytes, name: str) -> tlv.Tlv:
    """The one TLV ``data`` is, which must have ``tag``."""
    try:
        item = tlv.read_tlv(data)
    except tlv.TlvError as exc:
        raise invalid(name, str(exc)) from None
    if item.tag != tag or item.end != len(data):
        raise invalid(name, f"not one {tag.hex().upper()} TLV")
    return item


def children(data: bytes, name: str, item: tlv.Tlv | None = None) -> list[tuple[bytes, bytes]]:
    """(tag, complete TLV bytes as received) of each TLV inside ``item`` (default: the TLV
    ``data`` starts with); malformed TLVs make ``name`` invalid."""
    try:
        return tlv_children(data, item)
    except tlv.TlvError as exc:
        raise invalid(name, str(exc)) from None


def decode_as(type_names: tuple[str, ...], data: bytes, name: str) -> Any:
    """Decode with the first schema type that accepts ``data`` (SGP.22, then SGP.32 forms)."""
    error: Exception | None = None
    for type_name in type_names:
        try:
            value = schema.decode(type_name, data)
        except schema.DecodeError as exc:
            error = exc
            continue
        if has_unknown_alternative(value):
            raise invalid(name, "holds an unknown CHOICE alternative")
        return value
    raise invalid(name, f"does not decode: {error}")


def single_choice(data: bytes, tag: bytes, name: str) -> tuple[bytes, bytes]:
    """The one alternative inside a tagged CHOICE such as ``BF38 { A0 ... }``."""
    kids = children(data, name, outer_tlv(data, tag, name))
    if len(kids) != 1:
        raise invalid(name, "must hold exactly one alternative")
    return kids[0]


def expect_tags(parts: list[tuple[bytes, bytes]], tags: list[bytes], name: str) -> list[bytes]:
    """The TLVs of ``parts`` when their tags are exactly ``tags``."""
    if [t for t, _ in parts] != tags:
        raise invalid(name, f"does not hold {' '.join(t.hex().upper() for t in tags)}")
    return [raw for _, raw in parts]


def ec_public_key(cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    """The EC public key of an eUICC certificate."""
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise pki.InvalidCertificate("does not hold an EC key", which="eUICC")
    return key


def verifies(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    """Whether the raw (r||s) ``signature`` over ``data`` verifies with ``key``."""
    try:
        crypto.verify_raw(key, signature, data)
    except crypto.CryptoError:
        return False
    return True
