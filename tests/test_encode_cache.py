"""The schema's cache of encodings and the IPAd's directly built ES10 requests encode exactly
what asn1tools encodes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from euicc_protocol import schema
from ipa.es10 import _notification_sent_request


@given(st.integers(min_value=0, max_value=2**64))
def test_notification_sent_request_is_the_schema_encoding(seq_number: int) -> None:
    expected = bytes(schema.spec().encode("NotificationSentRequest", {"seqNumber": seq_number}))
    assert _notification_sent_request(seq_number) == expected


def test_cached_encoding_equals_a_fresh_one() -> None:
    value = ("enableResult", 0)
    first = schema.encode("EuiccResultData", value)
    assert schema.encode("EuiccResultData", value) == first
    assert first == bytes(schema.spec().encode("EuiccResultData", value))
    other = schema.encode("EuiccResultData", ("disableResult", 0))
    assert other != first
    assert other == bytes(schema.spec().encode("EuiccResultData", ("disableResult", 0)))


def test_kinds_and_bools_are_not_confused() -> None:
    assert schema._frozen(True) is schema._UNCACHEABLE
    assert schema._frozen({"a": 1}) != schema._frozen((("a", 1),))
    assert schema._frozen([1, 2]) != schema._frozen((1, 2))
    assert schema._frozen({"a": bytearray(b"x")}) is schema._UNCACHEABLE
    # a BOOLEAN field given True encodes as such; the cache never answers 1's encoding for it
    a = schema.encode("ProfileRollbackRequest", {"refreshFlag": True})
    b = schema.encode("ProfileRollbackRequest", {"refreshFlag": False})
    assert a != b and a == schema.encode("ProfileRollbackRequest", {"refreshFlag": True})


def test_an_encoding_error_is_not_cached() -> None:
    for _ in range(2):
        with pytest.raises(schema.EncodeError):
            schema.encode("EuiccResultData", ("enableResult", "not an integer"))


def test_the_cache_is_bounded() -> None:
    for n in range(schema._ENCODED_MAX + 10):
        schema.encode("NotificationSentRequest", {"seqNumber": n})
    assert len(schema._ENCODED) <= schema._ENCODED_MAX
    assert schema.encode("NotificationSentRequest", {"seqNumber": 3}) == bytes.fromhex(
        "BF3003800103"
    )


def test_encode_tlv_checks_every_tag_every_time() -> None:
    from euicc_protocol import tlv

    for _ in range(2):
        assert tlv.encode_tlv(b"\xbf\x30", b"\x80\x01\x03") == bytes.fromhex("BF3003800103")
        assert tlv.encode_tlv(b"\x04", b"x" * 200)[:3] == bytes.fromhex("0481C8")
        assert tlv.encode_tlv(bytearray(b"\x04"), memoryview(b"ab")) == b"\x04\x02ab"
        for bad in (b"", b"\x1f", b"\x30\x30", b"\xbf\x80\x01", b"\xbf"):
            with pytest.raises(ValueError):
                tlv.encode_tlv(bad, b"")
    assert tlv.read_tag(b"\x30\x00") == (b"\x30", 1)
    assert tlv.read_tag(b"\x00\xbf\x30", 1) == (b"\xbf\x30", 3)
    for data, offset in ((b"\x30", 1), (b"\x30", -1), (b"", 0)):
        with pytest.raises(tlv.TlvError):
            tlv.read_tag(data, offset)
