"""ICCID codings: digits, ProfileHeader (normal BCD) and EF.ICCID (nibble-swapped)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from euicc_protocol.iccid import (
    InvalidIccid,
    header_to_ef,
    iccid_from_ef,
    iccid_from_header,
    iccid_to_ef,
    iccid_to_header,
    luhn_check_digit,
    luhn_valid,
)

# TS48V1-A-UNIQUE and TS48V5-SAIP2-3-NOBERTLV-UNIQUE (GSMA TS.48 test profiles)
KNOWN = [
    ("8949449999999990023", "8949449999999990023F", "989444999999990920F3"),
    ("8949449999999990171", "8949449999999990171F", "989444999999990971F1"),
    ("89000000000000000001", "89000000000000000001", "98000000000000000010"),
]


@pytest.mark.parametrize(("digits", "header", "ef"), KNOWN)
def test_known_codings(digits: str, header: str, ef: str) -> None:
    assert iccid_to_ef(digits) == bytes.fromhex(ef)
    assert iccid_to_header(digits) == bytes.fromhex(header)
    assert iccid_from_ef(bytes.fromhex(ef)) == digits
    assert iccid_from_header(bytes.fromhex(header)) == digits
    assert header_to_ef(bytes.fromhex(header)) == bytes.fromhex(ef)


@given(st.text(alphabet="0123456789", min_size=1, max_size=20))
def test_round_trip(digits: str) -> None:
    assert iccid_from_ef(iccid_to_ef(digits)) == digits
    assert iccid_from_header(iccid_to_header(digits)) == digits
    assert len(iccid_to_ef(digits)) == 10


@pytest.mark.parametrize("digits", ["", "12a4", "1" * 21, "１２３", " 123"])
def test_bad_digits(digits: str) -> None:
    with pytest.raises(InvalidIccid):
        iccid_to_ef(digits)


@pytest.mark.parametrize(
    "ef",
    [
        "989444999999990920F3AA",  # 11 bytes
        "989444999999990920",  # 9 bytes
        "989444999999990920A3",  # non-BCD nibble
        "9894449999999909F013",  # digit after padding
        "FFFFFFFFFFFFFFFFFFFF",  # no digits at all
    ],
)
def test_bad_ef_codings(ef: str) -> None:
    with pytest.raises(InvalidIccid):
        iccid_from_ef(bytes.fromhex(ef))


def test_invalid_iccid_is_a_value_error() -> None:
    assert issubclass(InvalidIccid, ValueError)


def test_luhn() -> None:
    assert luhn_check_digit("894944999999999002") == "3"
    assert luhn_valid("8949449999999990023")
    assert not luhn_valid("8949449999999990024")
    assert luhn_check_digit("7992739871") == "3"  # the textbook example
    assert not luhn_valid("")
    assert not luhn_valid("12x")
