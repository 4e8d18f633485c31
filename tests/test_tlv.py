"""Tests for euicc_protocol.tlv: round trips, the X.690 tag/length rules and truncated input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from euicc_protocol import tlv as tlv_module
from euicc_protocol.tlv import (
    Tlv,
    TlvError,
    encode_length,
    encode_tlv,
    first_tag,
    is_constructed,
    iter_tlvs,
    read_length,
    read_tag,
    read_tlv,
)


def _tag_from_number(klass: int, constructed: bool, number: int) -> bytes:
    first = klass | (0x20 if constructed else 0)
    if number < 31:
        return bytes((first | number,))
    groups = []
    while True:
        groups.append(number & 0x7F)
        number >>= 7
        if not number:
            break
    groups.reverse()
    return bytes((first | 0x1F, *(g | 0x80 for g in groups[:-1]), groups[-1]))


#: Every valid BER tag of one to three octets (tag numbers 0 .. 2**14 - 1).
tags = st.builds(
    _tag_from_number,
    st.sampled_from([0x00, 0x40, 0x80, 0xC0]),
    st.booleans(),
    st.integers(0, 2**14 - 1),
)


# --- known encodings -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, "00"),
        (0x7F, "7F"),
        (0x80, "8180"),
        (0xFF, "81FF"),
        (0x100, "820100"),
        (0xFFFF, "82FFFF"),
        (0x10000, "83010000"),
        (0x1000000, "8401000000"),
        (0xFFFFFFFF, "84FFFFFFFF"),
    ],
)
def test_encode_length_is_minimal(n: int, encoded: str) -> None:
    assert encode_length(n) == bytes.fromhex(encoded)
    assert read_length(bytes.fromhex(encoded), 0) == (n, len(encoded) // 2)


def test_encode_length_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        encode_length(-1)
    with pytest.raises(ValueError):
        encode_length(2**32)


@pytest.mark.parametrize(
    ("tag", "number"),
    [("5A", 26), ("BF2D", 45), ("9F70", 112), ("BF65", 101), ("5F37", 55), ("E3", 3)],
)
def test_read_tag_known_tags(tag: str, number: int) -> None:
    raw = bytes.fromhex(tag)
    assert read_tag(raw + b"\x00", 0) == (raw, len(raw))
    assert _tag_from_number(raw[0] & 0xC0, bool(raw[0] & 0x20), number) == raw


def test_read_tlv_of_get_eid_request() -> None:
    data = bytes.fromhex("BF3E035C015A")
    tlv = read_tlv(data)
    assert tlv == Tlv(b"\xbf\x3e", 3, 6, 6)
    assert tlv.length == 3 and tlv.constructed
    assert tlv.value(data) == bytes.fromhex("5C015A")
    inner = list(iter_tlvs(data, tlv.value_start, tlv.value_end))
    assert inner == [Tlv(b"\x5c", 5, 6, 6)]
    assert not inner[0].constructed
    assert inner[0].value(data) == b"\x5a"


def test_iter_tlvs_walks_siblings() -> None:
    data = bytes.fromhex("800101 81020780 0C03612E62")
    assert [(t.tag.hex(), t.value(data).hex()) for t in iter_tlvs(data)] == [
        ("80", "01"),
        ("81", "0780"),
        ("0c", "612e62"),
    ]


def test_first_tag_routes_es10_requests() -> None:
    assert first_tag(bytes.fromhex("BF2E00")) == b"\xbf\x2e"
    assert first_tag(bytes.fromhex("BF64040282020204")) == b"\xbf\x64"
    assert is_constructed(b"\xa0") and not is_constructed(b"\x80")


@pytest.mark.parametrize(
    "hex_data", ["04 81 02 AABB", "04 82 0080" + "00" * 128, "04 81 7F" + "00" * 127]
)
def test_non_minimal_long_length_is_refused_as_not_der(hex_data: str) -> None:
    with pytest.raises(TlvError) as caught:
        read_tlv(bytes.fromhex(hex_data))
    assert caught.value.rule == "length-form"


def test_indefinite_length_names_its_rule() -> None:
    with pytest.raises(TlvError) as caught:
        read_tlv(bytes.fromhex("30 80 0400 0000"))
    assert caught.value.rule == "indefinite-length"


def test_child_past_parent_names_its_rule() -> None:
    data = bytes.fromhex("30 03 04 05 AABBCCDDEE")
    with pytest.raises(TlvError) as caught:
        list(iter_tlvs(data, 2, 5))
    assert caught.value.rule == "child-past-parent"


# --- malformed input -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_data", "offset"),
    [
        ("", 0),  # no tag
        ("1F", 1),  # high-tag-number marker without a number
        ("BF", 1),
        ("BF80 01 00", 1),  # leading zero bits in the tag number
        ("1F1E 00", 0),  # number 30 must use the one-octet form
        ("BF818181 01 00", 0),  # five octets: too long
        ("04", 1),  # no length
        ("04 80", 1),  # indefinite length
        ("04 85 0000000001 00", 1),  # five length octets
        ("04 82 01", 1),  # truncated length
        ("04 03 AABB", 2),  # truncated value
    ],
)
def test_malformed_input_raises_tlv_error_with_offset(hex_data: str, offset: int) -> None:
    with pytest.raises(TlvError) as info:
        read_tlv(bytes.fromhex(hex_data))
    assert info.value.offset == offset
    assert isinstance(info.value, ValueError)


def test_iter_tlvs_rejects_child_running_past_its_parent() -> None:
    data = bytes.fromhex("A003 0402AABB")  # parent says 3 octets, child needs 4
    parent = read_tlv(data[:2] + b"\x04\x02\xaa")
    with pytest.raises(TlvError):
        list(iter_tlvs(data, parent.value_start, parent.value_end))


def test_encode_tlv_rejects_invalid_tags() -> None:
    for bad in (b"", b"\xbf", b"\x1f\x1e", b"\x5a\x5a", b"\xbf\x80\x01"):
        with pytest.raises(ValueError):
            encode_tlv(bad, b"")


def test_negative_offset_is_an_error_not_a_wraparound() -> None:
    with pytest.raises(TlvError):
        read_tlv(b"\x04\x00", -2)


# --- properties ------------------------------------------------------------------------


@settings(max_examples=200)
@given(tags, st.binary(max_size=300))
def test_encode_then_read_round_trips(tag: bytes, value: bytes) -> None:
    data = encode_tlv(tag, value)
    tlv = read_tlv(data)
    assert tlv.tag == tag
    assert tlv.value(data) == value
    assert tlv.end == len(data)
    assert first_tag(data) == tag


@settings(max_examples=15)
@given(tags, st.integers(0, 70_000), st.binary(min_size=1, max_size=1))
def test_round_trip_with_long_values(tag: bytes, size: int, fill: bytes) -> None:
    value = fill * size
    data = encode_tlv(tag, value)
    tlv = read_tlv(data)
    assert (tlv.tag, tlv.length, tlv.end) == (tag, size, len(data))


@settings(max_examples=200)
@given(st.lists(st.tuples(tags, st.binary(max_size=40)), max_size=5))
def test_iter_tlvs_finds_every_concatenated_tlv(items: list[tuple[bytes, bytes]]) -> None:
    data = b"".join(encode_tlv(t, v) for t, v in items)
    assert [(t.tag, t.value(data)) for t in iter_tlvs(data)] == items


@settings(max_examples=200)
@given(tags, st.binary(max_size=300), st.data())
def test_truncated_input_raises_tlv_error(tag: bytes, value: bytes, data: st.DataObject) -> None:
    encoded = encode_tlv(tag, value)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(TlvError):
        read_tlv(encoded[:cut])


@settings(max_examples=300)
@given(st.binary(max_size=12), st.integers(0, 12))
def test_arbitrary_bytes_never_raise_anything_but_tlv_error(data: bytes, offset: int) -> None:
    try:
        tlv = read_tlv(data, offset)
    except TlvError:
        return
    assert offset < tlv.value_start <= tlv.end <= len(data)


# Headers as ES10/ESipa messages start: one- and two-octet tags, every length form, some
# valid and some not (non-minimal, past the end), then a few value octets.
_header_starts = st.builds(
    lambda tag, length, rest: tag + length + rest,
    st.sampled_from(
        [b"\x5a", b"\x30", b"\xbf\x4f", b"\xbf\x51", b"\x9f\x1f", b"\xbf\x80", b"\x1f"]
    ),
    st.sampled_from(
        [
            b"\x00",
            b"\x05",
            b"\x7f",
            b"\x80",
            b"\x81\x7f",
            b"\x81\x80",
            b"\x81\xff",
            b"\x82\x00\xff",
            b"\x82\x01\x00",
            b"\x82\x01",
            b"\x83\x01\x00\x00",
            b"",
        ]
    ),
    st.binary(max_size=8),
)


@settings(max_examples=400)
@given(st.one_of(_header_starts, st.binary(max_size=10)), st.data())
def test_read_header_fast_paths_agree_with_the_full_reading(
    data: bytes, draw: st.DataObject
) -> None:
    end = draw.draw(st.integers(0, len(data)))
    offset = draw.draw(st.integers(0, max(end, 1)))
    try:
        expected: object = tlv_module._read_header_in_full(data, offset, end)
    except TlvError as exc:
        expected = (TlvError, exc.offset, exc.rule)
    try:
        got: object = tlv_module.read_header(data, offset, end)
    except TlvError as exc:
        got = (TlvError, exc.offset, exc.rule)
    assert got == expected
