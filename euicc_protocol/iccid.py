"""ICCID codings: digits, the SAIP ProfileHeader form and the EF.ICCID / RSP ``5A`` form.

An ICCID travels in two 10-byte BCD codings that differ only in nibble order:

* ProfileHeader (SAIP ``83``) keeps the *normal* order, digit 1 in the high nibble:
  ``8949449999999990023F``.
* EF.ICCID, and everything in RSP (StoreMetadata, ProfileInfo, PSMOs ``5A``) swaps the
  two nibbles of every byte, digit 1 in the low nibble: ``989444999999990920F3``.

Both pad an ICCID shorter than 20 digits with ``F`` nibbles at the end.
"""

from __future__ import annotations

ICCID_BYTES = 10
MAX_DIGITS = 2 * ICCID_BYTES


class InvalidIccid(ValueError):
    """Digits or bytes that are not a valid ICCID coding."""


def _check_digits(digits: str) -> None:
    if not 1 <= len(digits) <= MAX_DIGITS or not (digits.isascii() and digits.isdigit()):
        raise InvalidIccid(f"ICCID must be 1..{MAX_DIGITS} decimal digits, got {digits!r}")


def _nibbles_to_digits(nibbles: list[int], raw: bytes) -> str:
    # Padding is only allowed as a tail: a digit after an F would mean a corrupted value.
    out = []
    padded = False
    for n in nibbles:
        if n == 0xF:
            padded = True
        elif n > 9 or padded:
            raise InvalidIccid(f"not a BCD ICCID: {raw.hex().upper()}")
        else:
            out.append(chr(0x30 + n))
    if not out:
        raise InvalidIccid(f"empty ICCID: {raw.hex().upper()}")
    return "".join(out)


def _check_length(b: bytes) -> None:
    if len(b) != ICCID_BYTES:
        raise InvalidIccid(f"ICCID coding must be {ICCID_BYTES} bytes, got {len(b)}")


def iccid_to_ef(digits: str) -> bytes:
    """Encode ICCID digits in EF.ICCID (nibble-swapped) order, ``F``-padded to 10 bytes."""
    _check_digits(digits)
    padded = digits.ljust(MAX_DIGITS, "F")
    return bytes.fromhex("".join(padded[i + 1] + padded[i] for i in range(0, MAX_DIGITS, 2)))


def iccid_to_header(digits: str) -> bytes:
    """Encode ICCID digits in ProfileHeader (normal BCD) order, ``F``-padded to 10 bytes."""
    _check_digits(digits)
    return bytes.fromhex(digits.ljust(MAX_DIGITS, "F"))


def iccid_from_ef(b: bytes) -> str:
    """Decode a 10-byte EF.ICCID / RSP ``5A`` value to its digits."""
    _check_length(b)
    return _nibbles_to_digits([n for x in b for n in (x & 0x0F, x >> 4)], bytes(b))


def iccid_from_header(b: bytes) -> str:
    """Decode a 10-byte ProfileHeader ICCID (normal BCD order) to its digits."""
    _check_length(b)
    return _nibbles_to_digits([n for x in b for n in (x >> 4, x & 0x0F)], bytes(b))


def header_to_ef(b: bytes) -> bytes:
    """Convert a ProfileHeader ICCID to the EF.ICCID coding (validating it on the way)."""
    return iccid_to_ef(iccid_from_header(b))


def luhn_check_digit(payload: str) -> str:
    """The Luhn (mod 10) check digit to append to ``payload`` (ITU-T E.118 ICCIDs)."""
    _check_digits(payload)
    total = 0
    # Doubling starts at the rightmost payload digit, since the check digit will follow it.
    for i, ch in enumerate(reversed(payload)):
        n = int(ch) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return str(-total % 10)


def luhn_valid(digits: str) -> bool:
    """Whether the last digit of ``digits`` is a correct Luhn check digit."""
    if not 2 <= len(digits) <= MAX_DIGITS or not (digits.isascii() and digits.isdigit()):
        return False
    return luhn_check_digit(digits[:-1]) == digits[-1]
