"""The project's one strict decoder: DER (ITU-T X.690 §8, §10, §11) read against the compiled
ASN.1 schema, giving the same Python values as asn1tools.

Every message any part of the project receives (ES10 requests and responses, BPP pieces,
eUICC packages, ES9+ and ESipa bodies, certificates) is decoded here, through
:func:`euicc_protocol.schema.decode`. asn1tools' own decoder is lenient in ways that let two
parsers disagree about the same bytes (it skips extra elements, reads a child past the end of
its parent, takes the first of two duplicate fields, reads a BIT STRING without its
unused-bits octet from the next byte), so it is used for encoding only. What is refused, and
the :class:`Rule` each refusal names:

=========================  =====================================================================
rule                       what breaks it
=========================  =====================================================================
truncated                  the data ends inside a tag, a length or a value
tag-form                   a high-tag-number form that is not minimal (X.690 §8.1.2.4)
indefinite-length          a ``80`` length (X.690 §8.1.3.6; DER §10.1 allows definite only)
length-form                length octets not in the minimal form (DER §10.1), more than four
child-past-parent          a TLV runs past the end of the value that contains it (§8.1.1)
trailing-bytes             bytes after the outermost TLV
wrong-tag                  a tag the type does not allow where one TLV of it is expected, or
                           a known tag in the wrong primitive/constructed form
explicit-form              an explicit tag that does not hold exactly one TLV (§8.14)
unknown-field              an element of a SEQUENCE/SET without an extension marker that is
                           none of its components (X.680 §25)
duplicate-field            a component present twice
field-order                components out of the order of the definition (SEQUENCE: X.690
                           §8.9.3; SET: DER canonical order, §10.3), or a known component after
                           an unknown extension addition
missing-field              a mandatory root component absent
default-encoded            a component encoded with its DEFAULT value (DER §11.5)
unknown-alternative        a CHOICE without an extension marker given a tag none of its
                           alternatives has
unknown-enumerated         an ENUMERATED value outside a non-extensible list
size-constraint            SIZE outside the root of a (non-extensible) constraint (X.680 §51.5)
range-constraint           an INTEGER outside a value-range constraint (X.680 §51.4)
integer-form               an empty INTEGER, or not in its shortest form (X.690 §8.3.2)
boolean-form               a BOOLEAN not one octet, or TRUE other than ``FF`` (DER §11.1)
null-form                  a NULL with content (§8.8.2)
bit-string-form            no unused-bits octet, a count above 7 or with no bits (§8.6.2),
                           unused bits not zero (DER §11.2.1), a named bit list with trailing
                           zero bits (DER §11.2.2)
oid-form                   an empty OBJECT IDENTIFIER or a subidentifier that is not minimal or
                           does not end (§8.19.2)
string-form                characters the string type does not allow
time-form                  a UTCTime / GeneralizedTime not in the DER form (§11.7, §11.8)
set-of-order               SET OF elements not in ascending order (DER §11.6)
=========================  =====================================================================

X.680 extensibility: where a SEQUENCE, SET or CHOICE has an extension marker (every type of
the GSMA modules, which say ``EXTENSIBILITY IMPLIED``), unknown elements after the known ones
are skipped (their TLV structure is still checked) and an unknown CHOICE alternative decodes
as ``(None, None)``. An untagged extensible CHOICE that is a component of a SEQUENCE does
not take unknown tags: they are read as extension additions of the SEQUENCE (the decoder
cannot tell the two apart, and a mandatory component then is missing-field).
Extensible constraints (``SIZE(1..16, ...)``) are not checked, as X.680 §51 allows values
outside their root.

Strings: the length of a UTF8String is counted in characters for SIZE (X.680 §51.5.3);
permitted-alphabet (``FROM``) constraints are not checked.

:func:`decode` optionally records the exact byte span of every component it decodes
(``spans``): a signature is checked over the bytes of the very parse that is then acted upon,
never over bytes found by a second reader.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable
from typing import Any

from . import asn1tools_import, tlv

# The codecs without asn1tools' grammar parser (start-up: see asn1tools_import).
_ber, _der = asn1tools_import.codecs()
_codecs = sys.modules["asn1tools.codecs"]
restricted_generalized_time_to_datetime = _codecs.restricted_generalized_time_to_datetime
restricted_utc_time_to_datetime = _codecs.restricted_utc_time_to_datetime

__all__ = [
    "Asn1Error",
    "DecodeError",
    "FieldPath",
    "Rule",
    "Spans",
    "StrictDecodeError",
    "decode",
]

#: A component's place in a value: field and alternative names, SEQUENCE OF indexes.
FieldPath = tuple[str | int, ...]
#: Byte span ``(start, end)`` of each decoded component's whole TLV, by path.
Spans = dict[FieldPath, tuple[int, int]]


class Rule(enum.Enum):
    """The encoding rule a refused input breaks (see the module table)."""

    TRUNCATED = "truncated"
    TAG_FORM = "tag-form"
    INDEFINITE_LENGTH = "indefinite-length"
    LENGTH_FORM = "length-form"
    CHILD_PAST_PARENT = "child-past-parent"
    TRAILING_BYTES = "trailing-bytes"
    WRONG_TAG = "wrong-tag"
    EXPLICIT_FORM = "explicit-form"
    UNKNOWN_FIELD = "unknown-field"
    DUPLICATE_FIELD = "duplicate-field"
    FIELD_ORDER = "field-order"
    MISSING_FIELD = "missing-field"
    DEFAULT_ENCODED = "default-encoded"
    UNKNOWN_ALTERNATIVE = "unknown-alternative"
    UNKNOWN_ENUMERATED = "unknown-enumerated"
    SIZE = "size-constraint"
    RANGE = "range-constraint"
    INTEGER_FORM = "integer-form"
    BOOLEAN_FORM = "boolean-form"
    NULL_FORM = "null-form"
    BIT_STRING_FORM = "bit-string-form"
    OID_FORM = "oid-form"
    STRING_FORM = "string-form"
    TIME_FORM = "time-form"
    SET_OF_ORDER = "set-of-order"


class Asn1Error(ValueError):
    """Base class for schema encode/decode failures."""


class DecodeError(Asn1Error):
    """Bytes are not a valid DER encoding of the expected ASN.1 type."""


class StrictDecodeError(DecodeError):
    """The input breaks ``rule`` at byte ``offset``, inside the component at ``path``.

    ``str()`` reads like ``EuiccPackageRequest.euiccPackageSigned.counterValue:
    integer-form: ... (at offset 12)``.
    """

    def __init__(self, rule: Rule, message: str, offset: int) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.offset = offset
        self.type_name = ""
        self._reversed_path: list[str | int] = []

    @property
    def path(self) -> FieldPath:
        """Field names and indexes from the outermost type down to the failing component."""
        return tuple(reversed(self._reversed_path))

    def __str__(self) -> str:
        where = self.type_name
        for part in self.path:
            where += f"[{part}]" if isinstance(part, int) else f".{part}"
        where = where.lstrip(".") or "value"
        return f"{where}: {self.rule.value}: {self.message} (at offset {self.offset})"


def _fail(rule: Rule, message: str, offset: int) -> StrictDecodeError:
    return StrictDecodeError(rule, message, offset)


def _from_tlv(exc: tlv.TlvError) -> StrictDecodeError:
    return StrictDecodeError(Rule(exc.rule), str(exc).rsplit(" (at offset", 1)[0], exc.offset)


def _flipped(tag: bytes) -> bytes:
    """``tag`` with the other primitive/constructed form (X.690 §8.1.2.5: not part of the tag)."""
    return bytes((tag[0] ^ 0x20,)) + tag[1:]


def _header(data: bytes, pos: int, end: int) -> tuple[bytes, int, int]:
    """:func:`tlv.read_header`, its refusals raised as :class:`StrictDecodeError`."""
    try:
        return tlv.read_header(data, pos, end)
    except tlv.TlvError as exc:
        raise _from_tlv(exc) from None


#: One-octet tags as ``bytes`` by octet: the decoder's loops read most headers in place.
_TAG1 = tlv.ONE_OCTET_TAGS


def _form_error(tag: bytes, offset: int) -> StrictDecodeError:
    form = "constructed" if tag[0] & 0x20 else "primitive"
    return _fail(Rule.WRONG_TAG, f"tag {tag.hex().upper()} in the wrong ({form}) form", offset)


def check_tree(data: bytes, start: int, end: int) -> None:
    """Check that ``data[start:end]`` is a series of well-formed DER TLVs, recursing into
    constructed ones (what an unknown extension or an open type must at least be)."""
    stack = [(start, end)]
    read_header = tlv.read_header
    try:
        while stack:
            pos, stop = stack.pop()
            while pos < stop:
                tag, vs, ve = read_header(data, pos, stop)
                if tag[0] & 0x20 and vs < ve:
                    stack.append((vs, ve))
                pos = ve
    except tlv.TlvError as exc:
        raise _from_tlv(exc) from None


# --- nodes ------------------------------------------------------------------------------------
#
# One node per compiled asn1tools type. ``read`` gets the TLV already framed by its parent:
# ``start`` (first tag octet), ``tag``, value ``vs:ve``. ``spans`` is None unless the caller
# asked for them; ``prefix`` is then this component's path.


class _Node:
    __slots__ = ("size", "tags")

    #: Tags this type may start with; None: any tag (ANY, open types).
    tags: frozenset[bytes] | None
    size: tuple[int | None, int | None] | None

    def read(
        self,
        data: bytes,
        start: int,
        tag: bytes,
        vs: int,
        ve: int,
        spans: Spans | None,
        prefix: FieldPath,
    ) -> Any:
        raise NotImplementedError

    def _check_size(self, n: int, offset: int) -> None:
        low, high = self.size  # type: ignore[misc]
        if (low is not None and n < low) or (high is not None and n > high):
            raise _fail(Rule.SIZE, f"size {n} outside {low}..{high}", offset)


class _Member:
    __slots__ = ("default", "has_default", "is_default", "name", "node", "required")

    def __init__(self, compiled: Any, node: _Node, addition: bool) -> None:
        self.name: str = compiled.name
        self.node = node
        # An OPTIONAL member never takes a default (asn1tools can leak one onto it from a
        # shared type, e.g. PKIX Version): absent stays absent, as asn1tools decodes it.
        self.has_default: bool = compiled.has_default() and not compiled.optional
        self.default = compiled.get_default() if self.has_default else None
        self.is_default: Callable[[Any], bool] = compiled.is_default
        self.required = not (addition or compiled.optional or self.has_default)


class _Members(_Node):
    """SEQUENCE and SET (asn1tools lists SET components in DER's canonical tag order).

    ``setup`` lays the components out as parallel tuples, so the loop in ``read`` indexes
    them instead of looking up attributes per element, and reads a plain OCTET STRING
    component (the commonest leaf by far: every SAIP file content) in place.
    """

    __slots__ = (
        "any_slots",
        "bounds",
        "by_octet",
        "defaults",
        "extensible",
        "first",
        "index",
        "is_default",
        "last_required",
        "members",
        "names",
        "readers",
        "required",
        "required_before",
    )

    def setup(self, members: list[_Member], extensible: bool) -> None:
        self.members = tuple(members)
        self.extensible = extensible
        # Several mandatory components may share a tag (TBSCertificate: five 30s in a row).
        self.index: dict[bytes, tuple[int, ...]] = {}
        self.any_slots: list[int] = []
        for i, member in enumerate(members):
            if member.node.tags is None:
                self.any_slots.append(i)
            else:
                for t in member.node.tags:
                    self.index[t] = (*self.index.get(t, ()), i)
        #: The first component each tag can start (the others sharing it are in ``index``).
        self.first = {t: slots[0] for t, slots in self.index.items()}
        self.names = tuple(m.name for m in members)
        self.readers = tuple(m.node.read for m in members)
        self.required = tuple(m.required for m in members)
        self.last_required = max((k for k, m in enumerate(members) if m.required), default=-1)
        #: For each component, the last required one before it (-1: none).
        self.required_before = tuple(
            max((k for k in range(j) if members[k].required), default=-1)
            for j in range(len(members))
        )
        self.is_default = tuple(m.is_default if m.has_default else None for m in members)
        self.defaults = tuple((m.name, m.default) for m in members if m.has_default)
        #: For each component: (lowest, highest) size when it is a plain OCTET STRING (read
        #: in place), None when its node reads it.
        self.bounds = tuple(
            (
                0 if m.node.size is None or m.node.size[0] is None else m.node.size[0],
                sys.maxsize if m.node.size is None or m.node.size[1] is None else m.node.size[1],
            )
            if type(m.node) is _OctetString and not m.has_default
            else None
            for m in members
        )
        #: ``first`` for the one-octet tags, indexed by the octet, plus one (0: none), as
        #: bytes when it fits (a quarter KiB per type instead of two).
        shifted = [self.first.get(t, -1) + 1 for t in _TAG1]
        self.by_octet: bytes | tuple[int, ...] = (
            bytes(shifted) if len(members) < 255 else tuple(shifted)
        )

    def read(self, data, start, tag, vs, ve, spans, prefix):  # type: ignore[no-untyped-def]
        first = self.first
        by_octet = self.by_octet
        names = self.names
        bounds = self.bounds
        out: dict[str, Any] = {}
        i = 0
        pos = vs
        while pos < ve:
            # tlv.read_header's fast path, inlined: one-octet tag, short length, inside.
            b = data[pos]
            if (
                b & 0x1F != 0x1F
                and pos + 1 < ve
                and (length := data[pos + 1]) < 0x80
                and pos + 2 + length <= ve
            ):
                t = _TAG1[b]
                cs = pos + 2
                ce = cs + length
                j = by_octet[b] - 1
            else:
                t, cs, ce = _header(data, pos, ve)
                j = first.get(t, -1)
            if j < i:  # no component has this tag (-1), or one before the next expected
                j = self._slot(t, i)
                if j is None:
                    # An unknown element: only more unknown ones may follow it.
                    self._unknown(data, pos, t, cs, ce)
                    self._after_unknown(data, pos, ce, ve, i, out)
                    break
                if j < i:
                    name = names[j]
                    if name in out:
                        raise _fail(Rule.DUPLICATE_FIELD, f"{name} present twice", pos)
                    raise _fail(Rule.FIELD_ORDER, f"{name} out of order", pos)
            name = names[j]
            if j > i and self.required_before[j] >= i:
                self._check_skipped(i, j, pos)
            try:
                bound = bounds[j]
                if bound is not None:  # a plain OCTET STRING: read here
                    value = data[cs:ce]
                    if not bound[0] <= ce - cs <= bound[1]:
                        self.members[j].node._check_size(ce - cs, cs)
                else:
                    path = prefix + (name,) if spans is not None else prefix
                    value = self.readers[j](data, pos, t, cs, ce, spans, path)
                    is_default = self.is_default[j]
                    if is_default is not None and is_default(value):
                        raise _fail(Rule.DEFAULT_ENCODED, "encoded with its DEFAULT value", pos)
            except StrictDecodeError as exc:
                exc._reversed_path.append(name)
                raise
            out[name] = value
            if spans is not None:
                spans[prefix + (name,)] = (pos, ce)
            i = j + 1
            pos = ce
        if i <= self.last_required:
            self._check_skipped(i, len(names), ve)
        for name, default in self.defaults:
            if name not in out:
                out[name] = default
        return out

    def _after_unknown(
        self, data: bytes, unknown_at: int, pos: int, ve: int, i: int, out: dict[str, Any]
    ) -> None:
        """The elements after an unknown one (at ``unknown_at``, ending at ``pos``): more
        unknown ones are skipped (checked); a known component is misplaced (``i``: the next
        one expected)."""
        while pos < ve:
            t, cs, ce = _header(data, pos, ve)
            j = self._slot(t, i)
            if j is None:
                self._unknown(data, pos, t, cs, ce)
                unknown_at = pos
                pos = ce
                continue
            name = self.names[j]
            if j < i:
                if name in out:
                    raise _fail(Rule.DUPLICATE_FIELD, f"{name} present twice", pos)
                raise _fail(Rule.FIELD_ORDER, f"{name} out of order", pos)
            raise _fail(
                Rule.FIELD_ORDER, f"{name} after an unknown element at offset {unknown_at}", pos
            )

    def _slot(self, t: bytes, i: int) -> int | None:
        """The component a TLV with tag ``t`` is, the next one expected being ``i``: the first
        at or after ``i`` with that tag (else the last before it), or an ANY still ahead."""
        j = None
        for k in self.index.get(t, ()):
            j = k
            if k >= i:
                break
        if (j is None or j < i) and self.any_slots:
            # ANY takes every tag; a tag seen before goes to an ANY still ahead
            j = next((k for k in self.any_slots if k >= i), j)
        return j

    def _unknown(self, data: bytes, pos: int, t: bytes, cs: int, ce: int) -> None:
        """Judge an element that is none of the components (raises unless it is a well-formed
        extension addition)."""
        if _flipped(t) in self.index:
            raise _form_error(t, pos)
        if not self.extensible:
            raise _fail(Rule.UNKNOWN_FIELD, f"no component has tag {t.hex().upper()}", pos)
        if t[0] & 0x20:
            check_tree(data, cs, ce)

    def _check_skipped(self, i: int, j: int, offset: int) -> None:
        """Components ``i`` up to ``j`` are absent: none of them may be required."""
        for k in range(i, j):
            if self.required[k]:
                raise _fail(Rule.MISSING_FIELD, f"{self.names[k]} missing", offset)


class _List(_Node):
    """SEQUENCE OF and SET OF."""

    __slots__ = ("check_tags", "element", "is_set")

    def setup(self, element: _Node, is_set: bool) -> None:
        self.element = element
        self.is_set = is_set
        self.check_tags = element.tags is not None and not isinstance(element, _Choice)

    def read(self, data, start, tag, vs, ve, spans, prefix):  # type: ignore[no-untyped-def]
        read_element = self.element.read
        tags = self.element.tags if self.check_tags else None
        is_set = self.is_set
        out: list[Any] = []
        pos = vs
        previous = b""
        while pos < ve:
            b = data[pos]
            if (
                b & 0x1F != 0x1F
                and pos + 1 < ve
                and (length := data[pos + 1]) < 0x80
                and pos + 2 + length <= ve
            ):
                t = _TAG1[b]
                cs = pos + 2
                ce = cs + length
            else:
                t, cs, ce = _header(data, pos, ve)
            n = len(out)
            try:
                if tags is not None and t not in tags:
                    raise _fail(Rule.WRONG_TAG, f"element with tag {t.hex().upper()}", pos)
                out.append(
                    read_element(
                        data, pos, t, cs, ce, spans, prefix + (n,) if spans is not None else prefix
                    )
                )
                if is_set:
                    encoding = data[pos:ce]
                    width = max(len(encoding), len(previous))
                    if encoding.ljust(width, b"\0") < previous.ljust(width, b"\0"):
                        raise _fail(Rule.SET_OF_ORDER, "elements not in ascending order", pos)
                    previous = encoding
            except StrictDecodeError as exc:
                exc._reversed_path.append(n)
                raise
            if spans is not None:
                spans[prefix + (n,)] = (pos, ce)
            pos = ce
        if self.size is not None:
            self._check_size(len(out), vs)
        return out


class _Choice(_Node):
    __slots__ = ("arms", "extensible")

    def setup(self, arms: list[tuple[str, _Node]], extensible: bool) -> None:
        self.extensible = extensible
        #: tag -> (name, node, whether the node is an OCTET STRING without SIZE: read here)
        self.arms: dict[bytes, tuple[str, _Node, bool]] = {}
        for name, node in arms:
            plain = type(node) is _OctetString and node.size is None
            for t in node.tags or ():
                self.arms.setdefault(t, (name, node, plain))

    def read(self, data, start, tag, vs, ve, spans, prefix):  # type: ignore[no-untyped-def]
        arm = self.arms.get(tag)
        if arm is None:
            if _flipped(tag) in self.arms:
                raise _form_error(tag, start)
            if not self.extensible:
                raise _fail(
                    Rule.UNKNOWN_ALTERNATIVE, f"no alternative has tag {tag.hex().upper()}", start
                )
            if tag[0] & 0x20:
                check_tree(data, vs, ve)
            return (None, None)
        name, node, plain = arm
        if plain:
            if spans is not None:
                spans[prefix + (name,)] = (start, ve)
            return (name, data[vs:ve])
        try:
            value = node.read(
                data, start, tag, vs, ve, spans, prefix + (name,) if spans is not None else prefix
            )
        except StrictDecodeError as exc:
            exc._reversed_path.append(name)
            raise
        if spans is not None:
            spans[prefix + (name,)] = (start, ve)
        return (name, value)


class _Explicit(_Node):
    __slots__ = ("inner",)

    def setup(self, inner: _Node) -> None:
        self.inner = inner

    def read(self, data, start, tag, vs, ve, spans, prefix):  # type: ignore[no-untyped-def]
        if vs == ve:
            raise _fail(Rule.EXPLICIT_FORM, "explicit tag with no content", start)
        try:
            t, cs, ce = tlv.read_header(data, vs, ve)
        except tlv.TlvError as exc:
            raise _from_tlv(exc) from None
        if ce != ve:
            raise _fail(Rule.EXPLICIT_FORM, "explicit tag holds more than one TLV", ce)
        inner = self.inner
        if inner.tags is not None and t not in inner.tags and not isinstance(inner, _Choice):
            raise _fail(Rule.WRONG_TAG, f"tag {t.hex().upper()} inside explicit tag", vs)
        return inner.read(data, vs, t, cs, ce, spans, prefix)


class _Ref(_Node):
    """A recursive type's reference, resolved once the whole type is built."""

    __slots__ = ("target",)

    def read(self, data, start, tag, vs, ve, spans, prefix):  # type: ignore[no-untyped-def]
        return self.target.read(data, start, tag, vs, ve, spans, prefix)


def _integer(data: bytes, vs: int, ve: int) -> int:
    n = ve - vs
    if n == 0:
        raise _fail(Rule.INTEGER_FORM, "INTEGER with no content octets", vs)
    if n > 1:
        b0, b1 = data[vs], data[vs + 1]
        if (b0 == 0 and b1 < 0x80) or (b0 == 0xFF and b1 >= 0x80):
            raise _fail(Rule.INTEGER_FORM, "INTEGER not in its shortest form", vs)
    return int.from_bytes(data[vs:ve], "big", signed=True)


class _Integer(_Node):
    __slots__ = ("high", "low")

    def read(self, data, start, tag, vs, ve, spans, prefix):  # type: ignore[no-untyped-def]
        value = _integer(data, vs, ve)
        if (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        ):
            raise _fail(Rule.RANGE, f"{value} outside {self.low}..{self.high}", vs)
        return value


class _Enumerated(_Node):
    __slots__ = ("extensible", "names")

    def read(self, data, start, tag, vs, ve, spans, prefix):  # type: ignore[no-untyped-def]
        value = _integer(data, vs, ve)
        name = self.names.get(value)
        if name is None and not self.extensible:
            raise _fail(Rule.UNKNOWN_ENUMERATED, f"no enumeration has value {value}", vs)
        return name


class _Boolean(_Node):
    __slots__ = ()

    def read(self, data, start, tag, vs, ve, spans, prefix):  # type: ignore[no-untyped-def]
        if ve - vs != 1 or data[vs] not in (0, 0xFF):
            raise _fail(Rule.BOOLEAN_FORM, "BOOLEAN must be one octet 00 or FF", vs)
        return data[vs] == 0xFF


class _Null(_Node):
    __slots__ = ()

    def read(self, data, start, tag, vs, ve, spans, prefix):  # type: ignore[no-untyped-def]
        if ve != vs:
            raise _fail(Rule.NULL_FORM, "NULL with content", vs)


class _OctetString(_Node):
    __slots__ = ()

    def read(self, data, start, tag, vs, ve, spans, prefix):  # type: ignore[no-untyped-def]
        if self.size is not None:
            self._check_size(ve - vs, vs)
        return data[vs:ve]


class _BitString(_Node):
    __slots__ = ("named",)

    def read(self, data, start, tag, vs, ve, spans, prefix):  # type: ignore[no-untyped-def]
        n = ve - vs
        if n == 0:
            raise _fail(Rule.BIT_STRING_FORM, "BIT STRING without its unused-bits octet", vs)
        unused = data[vs]
        if unused > 7:
            raise _fail(Rule.BIT_STRING_FORM, f"{unused} unused bits (at most 7)", vs)
        if n == 1 and unused:
            raise _fail(Rule.BIT_STRING_FORM, "unused bits in an empty BIT STRING", vs)
        last = data[ve - 1]
        if unused and last & ((1 << unused) - 1):
            raise _fail(Rule.BIT_STRING_FORM, "unused bits are not zero", ve - 1)
        nbits = 8 * (n - 1) - unused
        if self.named and nbits and not (last >> unused) & 1:
            low = self.size[0] if self.size is not None else None
            if not low or nbits > low:
                raise _fail(Rule.BIT_STRING_FORM, "named bit list with trailing zero bits", vs)
        if self.size is not None:
            self._check_size(nbits, vs)
        return (data[vs + 1 : ve], nbits)


class _ObjectIdentifier(_Node):
    __slots__ = ()

    def read(self, data, start, tag, vs, ve, spans, prefix):  # type: ignore[no-untyped-def]
        content = data[vs:ve]
        known = _OIDS.get(content)
        if known is not None:
            return known
        if vs == ve or data[ve - 1] & 0x80:
            raise _fail(Rule.OID_FORM, "empty or unterminated OBJECT IDENTIFIER", vs)
        subids: list[int] = []
        value = 0
        fresh = True
        for pos in range(vs, ve):
            octet = data[pos]
            if fresh and octet == 0x80:
                raise _fail(Rule.OID_FORM, "subidentifier not in its shortest form", pos)
            value = (value << 7) | (octet & 0x7F)
            fresh = not octet & 0x80
            if fresh:
                subids.append(value)
                value = 0
        # X.690 §8.19.4: the first subidentifier packs two arcs; arc 2 takes every value >= 80.
        first = subids[0]
        arcs = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
        dotted = ".".join(str(a) for a in arcs + subids[1:])
        if len(_OIDS) < _OIDS_MAX:
            _OIDS[content] = dotted
        return dotted


#: OBJECT IDENTIFIER content octets already read (only valid ones) and their dotted form:
#: certificates repeat the same few algorithm and extension OIDs.
_OIDS: dict[bytes, str] = {}
_OIDS_MAX = 1024


_PRINTABLE = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?"
)
_NUMERIC = frozenset(b"0123456789 ")


def _ascii_in(allowed: frozenset[int] | None) -> Callable[[bytes], str]:
    def decode(raw: bytes) -> str:
        if allowed is None:
            if any(b > 0x7F for b in raw):
                raise ValueError("octet above 7F")
        elif not allowed.issuperset(raw):
            raise ValueError("character outside the type's alphabet")
        return raw.decode("ascii")

    return decode


def _codec(encoding: str) -> Callable[[bytes], str]:
    return lambda raw: raw.decode(encoding)


_STRING_DECODERS: dict[str, Callable[[bytes], str]] = {
    "UTF8String": _codec("utf-8"),
    "IA5String": _ascii_in(None),
    "PrintableString": _ascii_in(_PRINTABLE),
    "NumericString": _ascii_in(_NUMERIC),
    "VisibleString": _ascii_in(frozenset(range(0x20, 0x7F))),
    "BMPString": _codec("utf-16-be"),
    "UniversalString": _codec("utf-32-be"),
}


class _String(_Node):
    __slots__ = ("convert",)

    def read(self, data, start, tag, vs, ve, spans, prefix):  # type: ignore[no-untyped-def]
        try:
            value = self.convert(data[vs:ve])
        except (UnicodeDecodeError, ValueError) as exc:
            raise _fail(Rule.STRING_FORM, str(exc), vs) from None
        if self.size is not None:
            self._check_size(len(value), vs)
        return value


class _Time(_Node):
    __slots__ = ("convert",)

    def read(self, data, start, tag, vs, ve, spans, prefix):  # type: ignore[no-untyped-def]
        key = (self.convert, data[vs:ve])
        known = _TIMES.get(key)
        if known is not None:
            return known
        try:
            value = self.convert(data[vs:ve].decode("ascii"))
        except Exception as exc:  # asn1tools raises assorted types for a bad time string
            raise _fail(Rule.TIME_FORM, f"not a DER time: {exc}", vs) from None
        if len(_TIMES) < _TIMES_MAX:
            _TIMES[key] = value
        return value


#: UTCTime / GeneralizedTime contents already read (only valid ones; datetimes are
#: immutable), by converter and content octets: certificate validity dates recur.
_TIMES: dict[tuple[Callable[[str], Any], bytes], Any] = {}
_TIMES_MAX = 256


class _Primitive(_Node):
    """Types no GSMA message uses (REAL, DATE, ...): asn1tools reads the content octets."""

    __slots__ = ("compiled",)

    def read(self, data, start, tag, vs, ve, spans, prefix):  # type: ignore[no-untyped-def]
        try:
            value, _ = self.compiled.decode_content(bytearray(data), vs, ve - vs)
        except Exception as exc:  # asn1tools raises assorted types for bad content
            raise _fail(Rule.STRING_FORM, f"bad content: {exc}", vs) from None
        return value


class _Any(_Node):
    """ANY / an open type: the whole TLV, checked to be well-formed DER."""

    __slots__ = ()

    def read(self, data, start, tag, vs, ve, spans, prefix):  # type: ignore[no-untyped-def]
        if tag[0] & 0x20:
            check_tree(data, vs, ve)
        return data[start:ve]


# --- building nodes from the compiled asn1tools types -------------------------------------------

#: Nodes by ``id`` of the compiled asn1tools type (the compiled types live as long as the
#: cached schema, so ids stay valid; the type is kept beside its node to be sure).
_BUILT: dict[tuple[int, bool], tuple[Any, _Node]] = {}


def _tags_of(compiled: Any) -> frozenset[bytes] | None:
    if isinstance(compiled, _ber.Recursive):
        return _tags_of(compiled.inner)
    if isinstance(compiled, _ber.Choice):
        tags: set[bytes] = set()
        for member in compiled.members:
            member_tags = _tags_of(member)
            if member_tags is None:
                return None
            tags |= member_tags
        return frozenset(tags)
    tag = getattr(compiled, "tag", None)
    return None if tag is None else frozenset((bytes(tag),))


def _new(cls: type[_Node], compiled: Any, constraints: bool) -> Any:
    node = cls.__new__(cls)
    node.tags = _tags_of(compiled)
    node.size = getattr(compiled, "strict_size", None) if constraints else None
    _BUILT[(id(compiled), constraints)] = (compiled, node)
    return node


def node_for(compiled: Any, constraints: bool = True) -> _Node:
    """The decoder node of a compiled asn1tools DER type (built once, then cached).

    ``constraints=False`` builds a decoder that checks no SIZE or value range (every other
    rule stays), for the few functions that answer a constraint violation with a result of
    their own after other checks (SetNickname).
    """
    known = _BUILT.get((id(compiled), constraints))
    if known is not None and known[0] is compiled:
        return known[1]
    if isinstance(compiled, _ber.Recursive):
        ref = _new(_Ref, compiled, constraints)
        ref.target = node_for(compiled.inner, constraints)
        return ref  # type: ignore[no-any-return]
    if isinstance(compiled, _ber.ExplicitTag):
        node = _new(_Explicit, compiled, constraints)
        node.setup(node_for(compiled.inner, constraints))
        return node  # type: ignore[no-any-return]
    if isinstance(compiled, _ber.Choice):
        node = _new(_Choice, compiled, constraints)
        node.setup(
            [(m.name, node_for(m, constraints)) for m in compiled.members],
            compiled.has_extension_marker,
        )
        return node  # type: ignore[no-any-return]
    if isinstance(compiled, _ber.MembersType):
        node = _new(_Members, compiled, constraints)
        members = [_Member(m, node_for(m, constraints), False) for m in compiled.root_members]
        additions = compiled.additions
        for entry in additions or ():
            for m in entry if isinstance(entry, list) else [entry]:
                members.append(_Member(m, node_for(m, constraints), True))
        node.setup(members, additions is not None)
        return node  # type: ignore[no-any-return]
    if isinstance(compiled, _der.ArrayType | _ber.ArrayType):
        node = _new(_List, compiled, constraints)
        node.setup(
            node_for(compiled.element_type, constraints),
            isinstance(compiled, _der.SetOf | _ber.SetOf),
        )
        return node  # type: ignore[no-any-return]
    if isinstance(compiled, _ber.Enumerated):
        node = _new(_Enumerated, compiled, constraints)
        node.names = dict(compiled.value_to_data)
        node.extensible = compiled.has_extension_marker or bool(
            getattr(compiled, "strict_extensible", False)
        )
        return node  # type: ignore[no-any-return]
    if isinstance(compiled, _der.Integer | _ber.Integer):
        node = _new(_Integer, compiled, constraints)
        bounds = getattr(compiled, "strict_range", None) if constraints else None
        node.low, node.high = bounds or (None, None)
        return node  # type: ignore[no-any-return]
    if isinstance(compiled, _der.BitString | _ber.BitString):
        node = _new(_BitString, compiled, constraints)
        node.named = compiled.has_named_bits
        return node  # type: ignore[no-any-return]
    if isinstance(compiled, _der.OctetString | _ber.OctetString):
        return _new(_OctetString, compiled, constraints)  # type: ignore[no-any-return]
    if isinstance(compiled, _ber.Boolean):
        return _new(_Boolean, compiled, constraints)  # type: ignore[no-any-return]
    if isinstance(compiled, _ber.Null):
        return _new(_Null, compiled, constraints)  # type: ignore[no-any-return]
    if isinstance(compiled, _ber.ObjectIdentifier):
        return _new(_ObjectIdentifier, compiled, constraints)  # type: ignore[no-any-return]
    if isinstance(compiled, _der.UTCTime):
        node = _new(_Time, compiled, constraints)
        node.convert = restricted_utc_time_to_datetime
        return node  # type: ignore[no-any-return]
    if isinstance(compiled, _der.GeneralizedTime):
        node = _new(_Time, compiled, constraints)
        node.convert = restricted_generalized_time_to_datetime
        return node  # type: ignore[no-any-return]
    if isinstance(compiled, _der.StringType | _ber.StringType):
        node = _new(_String, compiled, constraints)
        kind = type(compiled).__name__
        node.convert = _STRING_DECODERS.get(kind) or _codec(compiled.ENCODING)
        return node  # type: ignore[no-any-return]
    if isinstance(compiled, _ber.Any | _ber.AnyDefinedBy):
        if getattr(compiled, "choices", None):
            raise NotImplementedError("ANY DEFINED BY with a table of types")
        return _new(_Any, compiled, constraints)  # type: ignore[no-any-return]
    node = _new(_Primitive, compiled, constraints)
    node.compiled = compiled
    return node  # type: ignore[no-any-return]


def decode(
    root: _Node, data: bytes, *, allow_trailing: bool = False, spans: Spans | None = None
) -> tuple[Any, int]:
    """Decode one value of the type of ``root`` (see :func:`node_for`) from ``data``.

    Returns the value and the number of bytes it took. Unless ``allow_trailing``, they must
    be all of ``data``. When ``spans`` is a dict it receives the ``(start, end)`` of every
    component's TLV by path, the whole value under ``()``.

    Raises:
        StrictDecodeError: naming the :class:`Rule` broken, where, and the path.
    """
    try:
        tag, vs, ve = tlv.read_header(data, 0, len(data))
    except tlv.TlvError as exc:
        raise _from_tlv(exc) from None
    tags = root.tags
    if tags is not None and tag not in tags and not isinstance(root, _Choice):
        raise _fail(Rule.WRONG_TAG, f"tag {tag.hex().upper()} does not start this type", 0)
    value = root.read(data, 0, tag, vs, ve, spans, ())
    if ve != len(data) and not allow_trailing:
        raise _fail(Rule.TRAILING_BYTES, f"{len(data) - ve} bytes after the value", ve)
    if spans is not None:
        spans[()] = (0, ve)
    return value, ve
