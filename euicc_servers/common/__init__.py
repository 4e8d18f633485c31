"""Helpers shared by the reference servers: JSON bindings, DER integers, PEM and public keys,
ASN.1 values as JSON.

Nothing here knows a protocol function; these are the small conversions every binding needs
(SGP.22 §6.5.1, JSON binding: standard base64 of complete TLVs, hex transaction ids, a
Content-Type check that accepts an optional UTF-8 charset).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import string
import textwrap
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.responses import Response

from euicc_protocol import tlv

__all__ = [
    "b64",
    "has_unknown_alternative",
    "is_hex",
    "is_json_content_type",
    "json_error",
    "json_response",
    "pem",
    "spki",
    "tlv_children",
    "unb64",
    "value_to_json",
]


def b64(data: bytes) -> str:
    """Standard base64 with padding, no line breaks."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Decode standard base64, ignoring whitespace (line breaks) as clients send it.

    Raises:
        ValueError: not standard base64.
    """
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not standard base64") from None


def pem(der: bytes, label: str = "CERTIFICATE") -> str:
    """DER as PEM text (``label`` e.g. CERTIFICATE, PUBLIC KEY)."""
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode("ascii"), 64))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"


def spki(key: ec.EllipticCurvePublicKey) -> bytes:
    """The SubjectPublicKeyInfo (DER) of ``key``."""
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def is_hex(text: str, *, min_bytes: int = 1, max_bytes: int | None = None) -> bool:
    """Whether ``text`` is an even number of hex digits encoding ``min_bytes..max_bytes``."""
    if len(text) % 2 or not all(c in string.hexdigits for c in text):
        return False
    n = len(text) // 2
    return n >= min_bytes and (max_bytes is None or n <= max_bytes)


def is_json_content_type(content_type: str | None) -> bool:
    """``application/json`` with no charset or a UTF-8 one (``application/json;charset=UTF-8``)."""
    if not content_type:
        return False
    media_type, *params = (p.strip().lower() for p in content_type.split(";"))
    if media_type != "application/json":
        return False
    for param in params:
        key, _, value = param.partition("=")
        if key.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            return False
    return True


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON response for an operator API (indented, UTF-8)."""
    return Response(
        json.dumps(body, indent=1).encode("utf-8"),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def json_error(status: int, message: str) -> Response:
    """An operator API error: ``{"error": message}`` with ``status``."""
    return json_response(status, {"error": message})


def tlv_children(data: bytes, parent: tlv.Tlv | None = None) -> list[tuple[bytes, bytes]]:
    """(tag, complete TLV bytes as received) of each TLV inside ``parent`` (default: the TLV
    ``data`` starts with). Received bytes are kept so signatures verify over them.

    Raises:
        euicc_protocol.tlv.TlvError: malformed TLVs.
    """
    parent = parent or tlv.read_tlv(data)
    out, pos = [], parent.value_start
    for child in tlv.iter_tlvs(data, parent.value_start, parent.value_end):
        out.append((child.tag, bytes(data[pos : child.end])))
        pos = child.end
    return out


def value_to_json(value: Any) -> Any:
    """An asn1tools value as JSON: SEQUENCE → object with the ASN.1 field names, CHOICE →
    ``{alternative: value}``, OCTET STRING → uppercase hex, BIT STRING → list of set bit
    positions, NULL → ``true`` (it is present), times → ISO 8601, INTEGER/str unchanged."""
    kind = type(value)
    if kind is int or kind is str or kind is bool:  # most of a message: looked at first
        return value
    if kind is bytes:
        return value.hex().upper()
    if isinstance(value, dict):
        return {key: value_to_json(item) for key, item in value.items()}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return {value[0]: value_to_json(value[1])}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], bytes | bytearray):
        data, nbits = value
        return [i for i in range(min(nbits, len(data) * 8)) if data[i // 8] & (0x80 >> (i % 8))]
    if isinstance(value, list):
        return [value_to_json(item) for item in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex().upper()
    if value is None:
        return True
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


#: Types of decoded values that hold no other value (looked up before isinstance).
_LEAVES = frozenset({bytes, bytearray, int, str, bool, float, type(None)})


def has_unknown_alternative(value: Any) -> bool:
    """Whether a decoded asn1tools value holds a CHOICE decoded as ``(None, ...)`` anywhere:
    an alternative the schema does not know (after an extension marker), which no code can
    act on."""
    # Depth first with a list, not recursion with generators: this runs on every decoded
    # message, and most of a message is leaves (bytes, int, str) looked at once.
    pending = [value]
    while pending:
        item = pending.pop()
        if type(item) in _LEAVES:
            continue
        if isinstance(item, tuple):
            if item and item[0] is None:
                return True
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
