"""Tests of euicc_protocol.eid: check digits, construction and the BCD wire form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from euicc_protocol.eid import (
    InvalidEid,
    eid_check_digits,
    eid_from_bytes,
    eid_to_bytes,
    is_valid_eid,
    make_eid,
)

SGP26_EID = "89049032123451234512345678901235"


@pytest.mark.parametrize(
    "eid",
    [SGP26_EID, "89086030202200000022000023022943", "89044045116727494800000004479366"],
)
def test_published_valid_eids_are_valid(eid: str) -> None:
    assert is_valid_eid(eid)
    assert eid_check_digits(eid[:30]) == eid[30:]
    assert int(eid) % 97 == 1


def test_published_invalid_eid_is_invalid() -> None:
    assert not is_valid_eid("89049032123451234512345678901234")


@pytest.mark.parametrize(
    "eid",
    [
        "",
        SGP26_EID[:-1],
        SGP26_EID + "0",
        "8904903212345123451234567890123A",
        "８９049032123451234512345678901235",  # full-width digits are not ASCII
        "8904903212345123451234567890123²",
    ],
)
def test_malformed_eids_are_invalid(eid: str) -> None:
    assert not is_valid_eid(eid)


def test_check_digits_reject_wrong_length_and_non_digits() -> None:
    with pytest.raises(InvalidEid):
        eid_check_digits("123")
    with pytest.raises(InvalidEid):
        eid_check_digits("89049032123451234512345678901X")


def test_make_eid_places_serial_between_prefix_and_check_digits() -> None:
    assert make_eid("89049032", 1234512345123456789012) == "89049032123451234512345678901235"
    assert make_eid("89049032", "1234512345123456789012") == SGP26_EID
    assert make_eid("89049032", 5) == make_eid("89049032", "5")
    assert make_eid("89049032", 5)[8:30] == "0" * 21 + "5"


def test_make_eid_default_is_random_under_sgp26_prefix() -> None:
    eids = {make_eid() for _ in range(20)}
    assert len(eids) > 1
    assert all(e.startswith("89049032") and is_valid_eid(e) for e in eids)


@pytest.mark.parametrize(
    ("prefix", "serial"),
    [
        ("", None),
        ("8904903x", None),
        ("8" * 31, None),
        ("89049032", 10**22),
        ("89049032", -1),
        ("89049032", "1" * 23),
        ("89049032", "12a"),
    ],
)
def test_make_eid_rejects_bad_input(prefix: str, serial: int | str | None) -> None:
    with pytest.raises(InvalidEid):
        make_eid(prefix, serial)


def test_make_eid_with_full_length_prefix() -> None:
    body = SGP26_EID[:30]
    assert make_eid(body) == SGP26_EID


def test_eid_bytes_are_plain_bcd() -> None:
    assert eid_to_bytes(SGP26_EID) == bytes.fromhex(SGP26_EID)
    assert eid_from_bytes(bytes.fromhex(SGP26_EID)) == SGP26_EID


def test_eid_to_bytes_accepts_wrong_check_digits_for_kdf_vectors() -> None:
    assert eid_to_bytes("89049032123451234512345678901335").hex() == (
        "89049032123451234512345678901335"
    )


@pytest.mark.parametrize("bad", ["123", "8904903212345123451234567890123F", SGP26_EID + "00"])
def test_eid_to_bytes_rejects_malformed(bad: str) -> None:
    with pytest.raises(InvalidEid):
        eid_to_bytes(bad)


@pytest.mark.parametrize("bad", [b"\x89" * 15, b"\x89" * 17, bytes.fromhex("8A" + "00" * 15)])
def test_eid_from_bytes_rejects_malformed(bad: bytes) -> None:
    with pytest.raises(InvalidEid):
        eid_from_bytes(bad)


prefixes = st.text(alphabet="0123456789", min_size=1, max_size=30)


@given(prefix=prefixes, data=st.data())
def test_make_eid_always_valid(prefix: str, data: st.DataObject) -> None:
    width = 30 - len(prefix)
    serial = data.draw(st.none() | st.integers(min_value=0, max_value=10**width - 1))
    eid = make_eid(prefix, serial)
    assert is_valid_eid(eid)
    assert eid.startswith(prefix)
    assert eid_from_bytes(eid_to_bytes(eid)) == eid


@given(
    serial=st.integers(min_value=0, max_value=10**22 - 1),
    position=st.integers(min_value=0, max_value=31),
    delta=st.integers(min_value=1, max_value=9),
)
def test_changing_one_digit_invalidates(serial: int, position: int, delta: int) -> None:
    eid = make_eid("89049032", serial)
    digit = (int(eid[position]) + delta) % 10
    changed = eid[:position] + str(digit) + eid[position + 1 :]
    assert not is_valid_eid(changed)
