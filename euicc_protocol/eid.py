"""EIDs: the 32-digit eUICC identifier (GSMA SGP.29, as used by SGP.22/SGP.32).

An EID is 32 decimal digits; the last two are check digits computed like an IBAN (ISO 7064
MOD 97-10): append ``00`` to the first 30 digits, take the number modulo 97, and the check
digits are ``98 - remainder``. A valid EID therefore satisfies ``int(eid) % 97 == 1``.

Only the structure and the check digits are validated; the issuer fields (``89``, country
code, issuer identifier) are not interpreted.

On the wire (tag ``5A`` in GetEuiccData, and in the SCP03t key derivation) the EID is the
16-byte BCD of the 32 digits in normal nibble order (not swapped like an ICCID).
"""

from __future__ import annotations

import secrets

__all__ = [
    "EID_LENGTH",
    "InvalidEid",
    "eid_check_digits",
    "eid_from_bytes",
    "eid_to_bytes",
    "is_valid_eid",
    "make_eid",
]

#: Number of decimal digits of an EID.
EID_LENGTH = 32

_BODY_LENGTH = EID_LENGTH - 2


class InvalidEid(ValueError):
    """An EID (or part of one) is malformed or has wrong check digits."""


def _require_digits(value: str, what: str) -> None:
    # str.isdigit() accepts non-ASCII digits such as "²"; EIDs are ASCII only.
    if not (value.isascii() and value.isdigit()):
        raise InvalidEid(f"{what} must contain decimal digits only, got {value!r}")


def eid_check_digits(first_30_digits: str) -> str:
    """Return the two check digits for the first 30 digits of an EID.

    Raises:
        InvalidEid: the input is not exactly 30 decimal digits.
    """
    _require_digits(first_30_digits, "EID body")
    if len(first_30_digits) != _BODY_LENGTH:
        raise InvalidEid(f"EID body must have {_BODY_LENGTH} digits, got {len(first_30_digits)}")
    remainder = int(first_30_digits + "00") % 97
    return f"{98 - remainder:02d}"


def is_valid_eid(eid: str) -> bool:
    """Tell whether ``eid`` is 32 decimal digits whose last two are the correct check digits."""
    if not isinstance(eid, str) or len(eid) != EID_LENGTH:
        return False
    if not (eid.isascii() and eid.isdigit()):
        return False
    # Comparing with the computed digits (always 02..98) is stricter than "mod 97 == 1",
    # which would also accept e.g. "00"/"97" in the rare cases where both satisfy the sum.
    return eid[_BODY_LENGTH:] == eid_check_digits(eid[:_BODY_LENGTH])


def make_eid(prefix: str = "89049032", serial: int | str | None = None) -> str:
    """Build a valid EID from a prefix (e.g. an EUM's EIN) and a serial number.

    The serial fills the digits between the prefix and the check digits, zero-padded on the
    left; when it is ``None`` a random serial is drawn.

    Raises:
        InvalidEid: the prefix is not 1..30 digits, or the serial does not fit.
    """
    _require_digits(prefix, "EID prefix")
    width = _BODY_LENGTH - len(prefix)
    if not prefix or width < 0:
        raise InvalidEid(f"EID prefix must have 1..{_BODY_LENGTH} digits, got {len(prefix)}")
    if serial is None:
        serial_text = f"{secrets.randbelow(10**width):0{width}d}" if width else ""
    elif isinstance(serial, int):
        if serial < 0 or serial >= 10**width:
            raise InvalidEid(f"serial {serial} does not fit in {width} digits")
        serial_text = f"{serial:0{width}d}" if width else ""
    else:
        if serial:
            _require_digits(serial, "EID serial")
        if len(serial) > width:
            raise InvalidEid(f"serial {serial!r} does not fit in {width} digits")
        serial_text = serial.rjust(width, "0")
    body = prefix + serial_text
    return body + eid_check_digits(body)


def eid_to_bytes(eid: str) -> bytes:
    """Encode an EID as the 16-byte BCD used on the wire (``5A`` value, KDF input).

    The check digits are not verified here: key-derivation test vectors use EIDs with wrong
    check digits. Use :func:`is_valid_eid` where validity matters.

    Raises:
        InvalidEid: ``eid`` is not 32 decimal digits.
    """
    if len(eid) != EID_LENGTH:
        raise InvalidEid(f"EID must have {EID_LENGTH} digits, got {len(eid)}")
    _require_digits(eid, "EID")
    return bytes.fromhex(eid)


def eid_from_bytes(data: bytes) -> str:
    """Decode the 16-byte BCD form of an EID into its 32-digit string.

    Raises:
        InvalidEid: ``data`` is not 16 bytes or holds a nibble above 9.
    """
    if len(data) != EID_LENGTH // 2:
        raise InvalidEid(f"EID must be {EID_LENGTH // 2} bytes, got {len(data)}")
    text = data.hex()
    if not text.isdigit():
        raise InvalidEid(f"EID bytes {text} contain non-decimal nibbles")
    return text
