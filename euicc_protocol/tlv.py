"""A small BER-TLV toolkit for hot paths and for looking at bytes by hand.

The ASN.1 schema (:mod:`euicc_protocol.schema`) decodes whole messages; this module only finds tags
and
lengths, so the card can route a STORE DATA payload by its outer tag, or a test can pick one
element out of a response, without building Python values for everything around it.

Rules (X.690 §8.1), checked on input:

* Tags: low-tag-number form for numbers 0..30, high-tag-number form (``xF`` marker plus base-128
  octets) for 31 and above. Up to :data:`MAX_TAG_LEN` octets. A high-tag form that could have
  been a low one, or whose first subsequent octet is ``80``, is rejected: X.690 forbids both,
  and accepting them would let two byte strings name the same tag.
* Lengths: definite only, in the minimal (DER) form, X.690 §10.1: the short form below 128,
  otherwise ``81``..``84`` followed by 1..4 octets without a leading zero octet and not
  below 128 (``81 05`` and ``82 00 80`` are refused). The project reads every ES10, ES9+ and
  ESipa message as DER (see ``docs/strictness.md``), and a reader that accepted two
  encodings of one length would let two parsers disagree about where a value ends.
* A TLV lies inside the buffer (or the parent value) it was read from.

These are the framing rules of the project's one strict decoder
(:mod:`euicc_protocol.der`), which reads every tag and length through :func:`read_header`:
the two never judge the same bytes differently. Every malformed or truncated input raises
:class:`TlvError` carrying the offset where the problem was found and the ``rule`` broken
(one of :data:`RULES`); never ``IndexError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

__all__ = [
    "MAX_LENGTH",
    "MAX_TAG_LEN",
    "ONE_OCTET_TAGS",
    "RULES",
    "Tlv",
    "TlvError",
    "der_integer",
    "encode_length",
    "encode_tlv",
    "first_tag",
    "is_constructed",
    "iter_tlvs",
    "read_header",
    "read_length",
    "read_tag",
    "read_tlv",
]

#: Longest tag accepted, in octets (tag numbers up to 2**21 - 1).
MAX_TAG_LEN = 4
#: Largest length that fits the four length octets allowed.
MAX_LENGTH = 0xFFFFFFFF

_Bytes = bytes | bytearray | memoryview


#: The framing rules a :class:`TlvError` names (``TlvError.rule``).
RULES = (
    "truncated",  # the data ends inside a tag, a length or a value
    "tag-form",  # high-tag-number form that is not minimal, or too long
    "indefinite-length",  # X.690 §8.1.3.6: not allowed in DER (§10.1)
    "length-form",  # non-minimal length octets (X.690 §10.1) or more than 4 of them
    "child-past-parent",  # a TLV runs past the end of the value that contains it
)


class TlvError(ValueError):
    """Malformed or truncated BER-TLV data; ``offset`` is where it was detected and ``rule``
    which framing rule (one of :data:`RULES`) the data breaks."""

    def __init__(self, message: str, offset: int, rule: str = "truncated") -> None:
        super().__init__(f"{message} (at offset {offset})")
        self.offset = offset
        self.rule = rule


class Tlv(NamedTuple):
    """Where one TLV sits in a buffer. Offsets index the buffer that was parsed.

    ``value_end`` and ``end`` are equal for the definite lengths this module reads; both are
    kept so code can say which one it means.
    """

    tag: bytes
    value_start: int
    value_end: int
    end: int

    @property
    def length(self) -> int:
        """Number of value octets."""
        return self.value_end - self.value_start

    @property
    def constructed(self) -> bool:
        """Whether the tag marks a constructed encoding (its value is more TLVs)."""
        return is_constructed(self.tag)

    def value(self, data: _Bytes) -> bytes:
        """The value octets, copied out of ``data`` (the buffer this TLV was read from)."""
        return bytes(data[self.value_start : self.value_end])


def is_constructed(tag: bytes) -> bool:
    """Whether ``tag`` (encoded tag octets) has the constructed bit set."""
    return bool(tag[0] & 0x20)


def read_tag(data: _Bytes, offset: int = 0) -> tuple[bytes, int]:
    """Read one tag at ``offset``; return its octets and the offset just after it."""
    if 0 <= offset < len(data):
        first = data[offset]
        if first & 0x1F != 0x1F:  # the one-octet form: no checks left to make
            return ONE_OCTET_TAGS[first], offset + 1
    return _read_tag(data, offset, len(data))


#: The one-octet tags as ``bytes``, indexed by the octet (a lookup instead of an allocation).
ONE_OCTET_TAGS = tuple(bytes((octet,)) for octet in range(256))
#: The valid two-octet tags (tag numbers 31 to 127) as ``bytes``, keyed by their big-endian
#: value (a lookup instead of a slice).
TWO_OCTET_TAGS = {
    (first << 8) | second: bytes((first, second))
    for first in range(0x1F, 0x100, 0x20)
    for second in range(0x1F, 0x80)
}


def _read_tag(data: _Bytes, offset: int, end: int) -> tuple[bytes, int]:
    if offset < 0:
        raise TlvError("negative offset", offset)
    if offset >= end:
        raise TlvError("missing tag", offset)
    first = data[offset]
    if first & 0x1F != 0x1F:
        return ONE_OCTET_TAGS[first], offset + 1
    pos = offset + 1
    if pos >= end:
        raise TlvError("truncated tag", pos)
    if data[pos] == 0x80:
        raise TlvError("tag number with leading zero bits", pos, "tag-form")
    number = 0
    while True:
        if pos >= end:
            raise TlvError("truncated tag", pos)
        octet = data[pos]
        number = (number << 7) | (octet & 0x7F)
        pos += 1
        if not octet & 0x80:
            break
        if pos - offset >= MAX_TAG_LEN:
            raise TlvError(f"tag longer than {MAX_TAG_LEN} octets", offset, "tag-form")
    if number < 31:
        raise TlvError(f"tag number {number} must use the one-octet form", offset, "tag-form")
    return bytes(data[offset:pos]), pos


def read_length(data: _Bytes, offset: int) -> tuple[int, int]:
    """Read one definite length, in its minimal form, at ``offset``; return it and the offset
    just after it."""
    return _read_length(data, offset, len(data))


def _read_length(data: _Bytes, offset: int, end: int) -> tuple[int, int]:
    if offset < 0:
        raise TlvError("negative offset", offset)
    if offset >= end:
        raise TlvError("missing length", offset)
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    count = first & 0x7F
    if count == 0:
        raise TlvError("indefinite length not allowed", offset, "indefinite-length")
    if count > 4:
        raise TlvError(f"{count} length octets (at most 4 allowed)", offset, "length-form")
    start = offset + 1
    stop = start + count
    if stop > end:
        raise TlvError("truncated length", offset)
    length = int.from_bytes(data[start:stop], "big")
    if data[start] == 0 or length < 0x80:
        raise TlvError(f"length {length} not in its minimal form", offset, "length-form")
    return length, stop


def read_header(data: _Bytes, offset: int, end: int) -> tuple[bytes, int, int]:
    """Read the tag and length of the TLV at ``offset`` inside ``data[:end]``.

    Returns ``(tag, value_start, value_end)``. The whole TLV must lie before ``end``: a value
    that runs past it is ``child-past-parent`` when ``end`` is inside ``data`` (the end of a
    parent's value), ``truncated`` when ``end`` is the end of the data.
    """
    # Fast paths for what nearly every TLV is: a one-octet tag and a short-form length whose
    # value fits; then a one-octet or complete two-octet tag (the BFxx of ES10 and ESipa)
    # with a length of up to two octets in its minimal form. Anything else (including every
    # error) takes the full reading below.
    if offset >= 0 and offset + 1 < end:
        first = data[offset]
        second = data[offset + 1]
        if first & 0x1F != 0x1F:
            if second < 0x80:
                value_end = offset + 2 + second
                if value_end <= end:
                    return ONE_OCTET_TAGS[first], offset + 2, value_end
            tag, at = ONE_OCTET_TAGS[first], offset + 1
        elif 0x1F <= second < 0x80:
            tag, at = TWO_OCTET_TAGS[(first << 8) | second], offset + 2
        else:
            at = end
        if at < end:
            length = data[at]
            at += 1
            if length >= 0x80:
                if length == 0x81 and at < end and data[at] >= 0x80:
                    length = data[at]
                    at += 1
                elif length == 0x82 and at + 1 < end and data[at]:
                    length = (data[at] << 8) | data[at + 1]
                    at += 2
                else:
                    at = end + 1  # another form (or an error): the full reading
            if at + length <= end:
                return tag, at, at + length
    return _read_header_in_full(data, offset, end)


def _read_header_in_full(data: _Bytes, offset: int, end: int) -> tuple[bytes, int, int]:
    """:func:`read_header` without its fast paths: the tag, the length, then the bound (every
    form and every error)."""
    tag, pos = _read_tag(data, offset, end)
    length, value_start = _read_length(data, pos, end)
    value_end = value_start + length
    if value_end > end:
        rule = "truncated" if end >= len(data) else "child-past-parent"
        raise TlvError(
            f"value of tag {tag.hex().upper()} needs {length} octets, {end - value_start} present",
            value_start,
            rule,
        )
    return tag, value_start, value_end


def read_tlv(data: _Bytes, offset: int = 0) -> Tlv:
    """Read the TLV starting at ``offset``; its value must lie entirely inside ``data``."""
    tag, value_start, value_end = read_header(data, offset, len(data))
    return Tlv(tag, value_start, value_end, value_end)


def iter_tlvs(data: _Bytes, start: int = 0, end: int | None = None) -> Iterator[Tlv]:
    """Yield the consecutive TLVs in ``data[start:end]`` (e.g. the value of a constructed TLV).

    Offsets stay relative to ``data``, so ``iter_tlvs(buf, t.value_start, t.value_end)`` walks
    the children of ``t`` without copying. A TLV that runs past ``end`` is an error.
    """
    stop = len(data) if end is None else end
    if stop > len(data):
        raise TlvError("end beyond the data", len(data))
    pos = start
    while pos < stop:
        tag, value_start, value_end = read_header(data, pos, stop)
        yield Tlv(tag, value_start, value_end, value_end)
        pos = value_end


def encode_length(n: int) -> bytes:
    """The minimal (DER) encoding of length ``n``."""
    if n < 0:
        raise ValueError(f"negative length {n}")
    if n < 0x80:
        return bytes((n,))
    if n > MAX_LENGTH:
        raise ValueError(f"length {n} needs more than 4 length octets")
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


#: Tags :func:`encode_tlv` has checked already (the encoders use a few dozen constants).
_CHECKED_TAGS: set[bytes] = set()


def encode_tlv(tag: bytes, value: bytes) -> bytes:
    """``tag`` (one complete encoded tag) followed by the length and ``value``."""
    if type(tag) is bytes and type(value) is bytes and tag in _CHECKED_TAGS:
        n = len(value)
        if n < 0x80:
            return tag + ONE_OCTET_TAGS[n] + value
        return tag + encode_length(n) + value
    _check_tag(tag)
    if type(tag) is bytes and len(_CHECKED_TAGS) < 512:
        _CHECKED_TAGS.add(tag)
    return bytes(tag) + encode_length(len(value)) + bytes(value)


def _check_tag(tag: bytes) -> None:
    """Raise ValueError unless ``tag`` is exactly one complete encoded tag."""
    try:
        _, after = read_tag(tag, 0)
    except TlvError as exc:
        raise ValueError(f"invalid tag {bytes(tag).hex().upper()}: {exc}") from None
    if after != len(tag):
        raise ValueError(f"{bytes(tag).hex().upper()} is more than one tag")


def der_integer(value: int) -> bytes:
    """The content octets of a DER INTEGER: two's complement (128 is ``00 80``)."""
    return value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)


def first_tag(data: _Bytes) -> bytes:
    """The tag of the first TLV in ``data`` (how ES10 requests are routed)."""
    return read_tag(data, 0)[0]
