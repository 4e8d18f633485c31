"""Hypothesis strategies for any type of the compiled ASN.1 schema.

:func:`strategy_for` walks the asn1tools DER type tree of a schema type together with its
constraints tree (asn1tools compiles SIZE and value ranges into a separate checker tree with
the same shape) and builds a strategy for valid Python values in asn1tools' form:

* SEQUENCE/SET -> dict; OPTIONAL members sometimes absent; DEFAULT members always present,
  often *equal to the default*, which the DER encoder omits, so the decoded value (where
  asn1tools fills the default back in) still equals the generated one;
* CHOICE -> ``(alternative, value)``; SEQUENCE OF/SET OF -> list;
* named BIT STRING -> minimal DER form (trailing zero bits dropped), via ``schema.bits``;
* times -> naive UTC datetimes in the ranges asn1tools reads back unchanged.

Sizes are kept small (lists of at most :data:`MAX_LIST` elements, unbounded strings of at
most :data:`MAX_OCTETS` octets) and shrink to the minimum below :data:`DEEP` levels of
nesting, so even EsipaMessageFromEimToIpa, certificates included, generates quickly.

A compiled type this module does not know raises :class:`UnsupportedType` when the strategy
is built: a round-trip test over it fails loudly instead of testing nothing.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

from asn1tools.codecs import ber, der
from asn1tools.codecs import constraints_checker as cc
from hypothesis import strategies as st

from euicc_protocol import schema
from euicc_protocol.tlv import der_integer, encode_tlv

__all__ = ["DEEP", "MAX_LIST", "MAX_OCTETS", "UnsupportedType", "strategy_for"]

MAX_LIST = 3
MAX_OCTETS = 24
MAX_CHARS = 12
#: Below this nesting depth lists take their minimum size and OPTIONAL members are left out.
DEEP = 7
#: Named BIT STRINGs: asn1tools does not keep the names, so positions are drawn from this range.
NAMED_BITS = 12

Strategy = st.SearchStrategy[Any]


class UnsupportedType(TypeError):
    """The compiled asn1tools type has a class this builder cannot generate values for."""


@cache
def strategy_for(type_name: str) -> Strategy:
    """A strategy for valid values of schema type ``type_name`` (cached per type)."""
    compiled = schema.spec().types[type_name]
    checker = compiled.constraints_checker
    root = checker._type if checker is not None else None
    return _build(compiled._type, root, 0, type_name)


def _bounds(c: Any, default_max: int) -> tuple[int, int]:
    """(min, max) of a SIZE constraint, capped so generation stays small."""
    lo = c.minimum if c is not None and isinstance(getattr(c, "minimum", None), int) else 0
    hi = c.maximum if c is not None and isinstance(getattr(c, "maximum", None), int) else None
    cap = lo + default_max
    return lo, cap if hi is None else min(hi, cap)


def _member_constraint(c: Any, name: str) -> Any:
    if isinstance(c, cc.Recursive):
        c = c.inner
    if isinstance(c, cc.Dict):
        for m in c.members:
            if m.name == name:
                return m
    if isinstance(c, cc.Choice):
        return c.name_to_member.get(name)
    return None


def _tagged_with(name: str) -> Callable[[Any], tuple[str, Any]]:
    return lambda value: (name, value)


def _flat(members: Any) -> list[Any]:
    out: list[Any] = []
    for m in members or ():
        out.extend(m if isinstance(m, list) else [m])
    return out


def _build(t: Any, c: Any, depth: int, path: str) -> Strategy:
    here = f"{path}.{t.name}" if t.name else path
    # Order matters: several DER classes subclass the BER ones listed later.
    if isinstance(t, ber.ExplicitTag):
        return _build(t.inner, c, depth, path)
    if isinstance(t, ber.Recursive):
        if t.inner is None or depth >= DEEP:
            raise UnsupportedType(f"{here}: recursive type {t.type_name} too deep")
        return st.deferred(lambda: _build(t.inner, c, depth + 1, path))
    if isinstance(t, ber.MembersType):  # SEQUENCE, SET
        return _members(t, c, depth, here)
    if isinstance(t, ber.Choice):
        alternatives = [
            _build(m, _member_constraint(c, m.name), depth + 1, here).map(_tagged_with(m.name))
            for m in t.members
        ]
        return st.one_of(alternatives)
    if isinstance(t, der.ArrayType | ber.ArrayType):  # SEQUENCE OF, SET OF
        element = c.element_type if isinstance(c, cc.List) else None
        lo, hi = _bounds(c, MAX_LIST)
        if depth >= DEEP:
            hi = lo
        if isinstance(t, der.SetOf | ber.SetOf):
            # DER sorts SET OF elements (X.690 §11.6), so more than one would not decode back
            # in the order drawn; the sorting has its own tests in test_der.py.
            hi = max(lo, min(hi, 1))
        return st.lists(_build(t.element_type, element, depth + 1, here), min_size=lo, max_size=hi)
    return _primitive(t, c, here)


def _differs_from(default: Any) -> Callable[[Any], bool]:
    return lambda value: bool(value != default)


def _members(t: Any, c: Any, depth: int, here: str) -> Strategy:
    required: dict[str, Strategy] = {}
    optional: dict[str, Strategy] = {}
    for m in _flat(t.root_members) + _flat(t.additions):
        s = _build(m, _member_constraint(c, m.name), depth + 1, here)
        if m.optional:
            if depth + 1 < DEEP:
                if m.has_default():
                    # OPTIONAL with a default leaked in from a shared inner type (asn1tools
                    # sets an EXPLICIT member's default on the referenced type, e.g. PKIX
                    # Version): the encoder drops a default value, the decoder does not
                    # fill it back in.
                    s = s.filter(_differs_from(m.get_default()))
                optional[m.name] = s
        elif m.has_default():
            # Present and equal to the default = absent on the wire (DER), decoded back the same.
            required[m.name] = st.one_of(st.just(m.get_default()), s)
        else:
            required[m.name] = s
    return st.fixed_dictionaries(required, optional=optional)


_PRINTABLE = string.ascii_letters + string.digits + " '()+,-./:=?"
_ALPHABETS = {
    der.PrintableString: _PRINTABLE,
    der.NumericString: string.digits + " ",
    der.VisibleString: "".join(chr(i) for i in range(0x20, 0x7F)),
    der.IA5String: "".join(chr(i) for i in range(0x80)),
}


def _text(t: Any, c: Any) -> Strategy:
    lo, hi = _bounds(c, MAX_CHARS)
    permitted = getattr(c, "permitted_alphabet", None)
    alphabet: Any
    if permitted:
        alphabet = st.sampled_from(sorted(set(permitted)))
    elif type(t) in _ALPHABETS:
        alphabet = st.sampled_from(_ALPHABETS[type(t)])
    elif isinstance(t, der.GeneralString | der.GraphicString | der.TeletexString):
        alphabet = st.characters(max_codepoint=0xFF)
    elif isinstance(t, der.BMPString):
        alphabet = st.characters(max_codepoint=0xFFFF, exclude_categories=["Cs"])
    elif isinstance(t, der.UTF8String | der.UniversalString):
        alphabet = st.characters(exclude_categories=["Cs"])
    else:
        raise UnsupportedType(f"string type {type(t).__name__}")
    return st.text(alphabet, min_size=lo, max_size=hi)


def _bit_string(t: Any, c: Any) -> Strategy:
    if t.has_named_bits:
        lo, hi = _bounds(c, NAMED_BITS)
        positions = st.sets(st.integers(0, max(hi, 1) - 1), max_size=4)
        return positions.map(schema.bits).filter(lambda v: v[1] >= lo)
    lo, hi = _bounds(c, MAX_OCTETS * 8)

    def unnamed(nbits: int, raw: bytes) -> tuple[bytes, int]:
        buf = bytearray(raw[: (nbits + 7) // 8])
        if nbits % 8:
            buf[-1] &= (0xFF << (8 - nbits % 8)) & 0xFF  # DER: unused bits are zero
        return bytes(buf), nbits

    return st.integers(lo, hi).flatmap(
        lambda n: st.binary(min_size=(n + 7) // 8, max_size=(n + 7) // 8).map(
            lambda raw: unnamed(n, raw)
        )
    )


def _oid() -> Strategy:
    # 2.x takes any second arc (2.999.10 is the SGP.26 SM-DP+ OID); 0.x and 1.x stop at 39.
    head = st.one_of(
        st.tuples(st.sampled_from([0, 1]), st.integers(0, 39)),
        st.tuples(st.just(2), st.integers(0, 2000)),
    )
    tail = st.lists(st.integers(0, 2**32), max_size=5)
    return st.builds(lambda h, t: ".".join(str(a) for a in (*h, *t)), head, tail)


def _any_tlv() -> Strategy:
    # An open type value is one complete TLV (a constructed one holds TLVs, as the strict
    # decoder checks); the decoder hands back its raw bytes.
    primitive = st.builds(
        encode_tlv, st.sampled_from([b"\x04", b"\x0c", b"\x80"]), st.binary(max_size=MAX_OCTETS)
    )
    integer = st.integers(-(2**40), 2**40).map(lambda n: encode_tlv(b"\x02", der_integer(n)))
    constructed = st.builds(
        lambda tag, items: encode_tlv(tag, b"".join(items)),
        st.sampled_from([b"\x30", b"\xa1", b"\xbf\x22"]),
        st.lists(primitive, max_size=2),
    )
    return st.one_of(primitive, integer, constructed)


def _primitive(t: Any, c: Any, here: str) -> Strategy:
    if isinstance(t, ber.Boolean):
        return st.booleans()
    if isinstance(t, ber.Null):
        return st.none()
    if isinstance(t, der.Integer | ber.Integer):
        lo = c.minimum if isinstance(getattr(c, "minimum", None), int) else -(2**64)
        hi = c.maximum if isinstance(getattr(c, "maximum", None), int) else 2**64
        return st.integers(lo, hi)
    if isinstance(t, ber.Enumerated):
        return st.sampled_from(sorted(t.value_to_data.values(), key=str))
    if isinstance(t, der.OctetString | ber.OctetString):
        lo, hi = _bounds(c, MAX_OCTETS)
        return st.binary(min_size=lo, max_size=hi)
    if isinstance(t, der.BitString | ber.BitString):
        return _bit_string(t, c)
    if isinstance(t, ber.ObjectIdentifier):
        return _oid()
    if isinstance(t, der.UTCTime):
        # asn1tools reads YY as 1969..2068 (strptime), RFC 5280 as 1950..2049: use the overlap.
        return st.datetimes(datetime(1969, 1, 1), datetime(2049, 12, 31, 23, 59, 59)).map(
            lambda d: d.replace(microsecond=0)
        )
    if isinstance(t, der.GeneralizedTime):
        return st.datetimes(datetime(1000, 1, 1), datetime(9999, 12, 31, 23, 59, 59))
    if isinstance(t, der.StringType):
        return _text(t, c)
    if isinstance(t, ber.AnyDefinedBy):
        if t.choices:
            raise UnsupportedType(f"{here}: ANY DEFINED BY with a choices table")
        return _any_tlv()
    if isinstance(t, ber.Any):
        return _any_tlv()
    raise UnsupportedType(f"{here}: no strategy for asn1tools type {type(t).__name__}")
