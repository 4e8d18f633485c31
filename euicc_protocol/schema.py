"""The project's ASN.1 schema: SGP.22 v2.5, SGP.32 v1.2 and v1.0.1, PKIX and the TCA PE
definitions.

SGP.32 v1.0.1 and v1.2 share one module name and are not wire compatible, so each is compiled
into its own specification beside the same SGP.22, PKIX and PE modules: every function here
takes ``sgp32="1.2"`` (the default) or ``sgp32="1.0"`` and applies the same decoding rules to
both.

The modules in ``euicc_protocol/asn1/`` are compiled once with asn1tools (DER codec) and the
compiled
specification is pickled to a cache directory, so later processes load it in tens of
milliseconds instead of re-parsing the grammar (over a second).

Encoding uses asn1tools. Decoding does not: :func:`decode` is the project's one strict
decoder (:mod:`euicc_protocol.der`), which reads DER only, checks SIZE and value-range
constraints (recorded on the compiled types at compile time, see :class:`_Compiler`) and
refuses with a :class:`StrictDecodeError` naming the rule broken and where.

Values use asn1tools' Python form: SEQUENCE -> dict keyed by the ASN.1 field names, CHOICE ->
``(alternative_name, value)``, BIT STRING -> ``(bytes, number_of_bits)``, OCTET STRING ->
``bytes``, INTEGER/ENUMERATED -> ``int``/``str``, NULL -> ``None``.

asn1tools defects handled here (its decoding defects, such as OBJECT IDENTIFIERs with a
first arc 2 and a second arc >= 40 read wrongly, or a loop that never ends on a SEQUENCE OF
element with a foreign tag, do not matter: its decoder is not used):

* Named BIT STRINGs are encoded with the bit length given; :func:`bits` builds the minimal
  (DER) form from bit positions.
* SET OF elements are encoded in the order given; the encoder is replaced at import to sort
  them (DER §11.6).
* A named-number DEFAULT of an INTEGER (``profileClass DEFAULT operational``, PKIX
  ``version DEFAULT v1``) is kept as the *name*: an absent field decodes as the string
  ``'operational'`` and an explicit ``2`` is not recognised as the default, so DER's "omit the
  default" rule is broken. The defaults are resolved to numbers before compiling.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import pickle
import sys
import tempfile
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from . import asn1tools_import, der
from .der import Asn1Error, DecodeError, FieldPath, Rule, Spans, StrictDecodeError

__all__ = [
    "Asn1Error",
    "DecodeError",
    "EncodeError",
    "FieldPath",
    "Rule",
    "Spans",
    "StrictDecodeError",
    "bit_positions",
    "bits",
    "decode",
    "decode_spans",
    "encode",
    "has_type",
    "spec",
    "tag_of",
]

# The codecs without asn1tools' grammar parser: a cached schema needs no parsing (start-up).
_ber, _der = asn1tools_import.codecs()
#: How asn1tools' parser marks an extension marker (``...``) in a parsed SIZE or range list.
_EXTENSION_MARKER = None

log = logging.getLogger(__name__)

ASN1_DIR = Path(__file__).with_name("asn1")

#: Compiled in this order; SGP32Definitions imports from all of the others.
MODULE_FILES = (
    "PKIX1Explicit88.asn",
    "PKIX1Implicit88.asn",
    "PEDefinitions.asn",
    "RSPDefinitions.asn",
    "SGP32Definitions.asn",
)

#: The SGP.32 versions compiled, and the file holding each one's ``SGP32Definitions`` module.
SGP32_MODULES = {"1.2": "SGP32Definitions.asn", "1.0": "SGP32Definitions-v1.0.asn"}


def module_files(sgp32: str = "1.2") -> tuple[str, ...]:
    """The module files of the specification for SGP.32 version ``sgp32``."""
    try:
        return (*MODULE_FILES[:-1], SGP32_MODULES[sgp32])
    except KeyError:
        known = sorted(SGP32_MODULES)
        raise ValueError(f"SGP.32 version {sgp32!r} is not one of {known}") from None


_CACHE_FORMAT = 4


class EncodeError(Asn1Error):
    """A value does not fit the ASN.1 type it was encoded as."""


def _encode_set_of_content(self: Any, data: Any, values: Any = None) -> bytearray:
    # DER §11.6: SET OF elements in ascending order of their encodings; asn1tools keeps the
    # order given, which the strict decoder (rightly) refuses.
    encoded: list[bytes] = []
    for entry in data:
        element = bytearray()
        self.element_type.encode(entry, element)
        encoded.append(bytes(element))
    width = max((len(e) for e in encoded), default=0)

    def padded(e: bytes) -> bytes:
        return e + bytes(width - len(e))

    ordered: list[bytes] = sorted(encoded, key=padded)
    return bytearray(b"".join(ordered))


_der.SetOf.encode_content = _encode_set_of_content


def _named_numbers(descriptor: dict[str, Any], types: dict[str, Any]) -> dict[str, int] | None:
    # Follow type references (Version -> INTEGER {v1(0), ...}) to the named numbers, if any.
    for _ in range(16):
        if "named-numbers" in descriptor:
            return dict(descriptor["named-numbers"])
        ref = types.get(str(descriptor.get("type")))
        if ref is None:
            return None
        descriptor = ref
    return None


def _resolve_integer_defaults(parsed: dict[str, Any]) -> None:
    types = {name: d for module in parsed.values() for name, d in module["types"].items()}

    def visit(descriptor: dict[str, Any]) -> None:
        for entry in descriptor.get("members", ()):
            for member in entry if isinstance(entry, list) else [entry]:
                if not isinstance(member, dict):
                    continue  # extension marker
                default = member.get("default")
                if isinstance(default, str):
                    numbers = _named_numbers(member, types)
                    if numbers and default in numbers:
                        member["default"] = numbers[default]
                if member.get("type") in ("ANY", "ANY DEFINED BY") and "tag" in member:
                    # X.680 §31.2.7: a tag on an open type is explicit, whatever the module
                    # default; asn1tools would drop the tag on encoding.
                    member["tag"]["kind"] = "EXPLICIT"
                visit(member)
        element = descriptor.get("element")
        if isinstance(element, dict):
            visit(element)

    for module in parsed.values():
        for descriptor in module["types"].values():
            visit(descriptor)


def _source_digest(files: tuple[str, ...] = MODULE_FILES) -> str:
    h = hashlib.sha256()
    h.update(f"{_CACHE_FORMAT}|{asn1tools_import.version()}|{sys.version_info[:2]}".encode())
    for name in files:
        h.update(name.encode())
        h.update((ASN1_DIR / name).read_bytes())
    return h.hexdigest()[:24]


def cache_dir() -> Path:
    """Where the compiled schema is cached (``$EUICC_SIM_CACHE`` or the user cache dir)."""
    env = os.environ.get("EUICC_SIM_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "euicc-sim"


def _bound(value: Any) -> int | None:
    return None if value is None or isinstance(value, str) else int(value)


class _Compiler(_der.Compiler):  # type: ignore[misc,name-defined]
    """asn1tools' DER compiler, which also records on each compiled type what the strict
    decoder checks and the DER codec drops: ``strict_size`` (SIZE root, as (min, max)),
    ``strict_range`` (INTEGER value range) and ``strict_extensible`` (an ENUMERATED in a
    module with EXTENSIBILITY IMPLIED, X.680 §13.4). Constraints with an extension marker
    are not recorded: X.680 lets values outside their root through."""

    def compile_type(self, name: str, type_descriptor: dict[str, Any], module_name: str) -> Any:
        compiled = super().compile_type(name, type_descriptor, module_name)
        size = type_descriptor.get("size")
        restricted = type_descriptor.get("restricted-to")
        implied = type_descriptor.get("type") == "ENUMERATED" and self._specification.get(
            module_name, {}
        ).get("extensibility-implied", False)
        if not (size or restricted or implied) or isinstance(compiled, _ber.Recursive):
            return compiled
        # Copies: the compiled type may be shared with every other use of the referenced type.
        compiled = copy.copy(compiled)
        target = compiled
        if isinstance(compiled, _ber.ExplicitTag):
            target = compiled.inner = copy.copy(compiled.inner)
        if size and _EXTENSION_MARKER not in size:
            low, high, _ = self.get_size_range(type_descriptor, module_name)
            low, high = _bound(low), _bound(high)
            old_low, old_high = getattr(target, "strict_size", None) or (None, None)
            if old_low is not None:
                low = old_low if low is None else max(low, old_low)
            if old_high is not None:
                high = old_high if high is None else min(high, old_high)
            target.strict_size = (low, high)
        if restricted and _EXTENSION_MARKER not in restricted:
            low, high, _ = self.get_restricted_to_range(type_descriptor, module_name)
            target.strict_range = (_bound(low), _bound(high))
        if implied:
            target.strict_extensible = True
        return compiled


def _compile(files: tuple[str, ...] = MODULE_FILES) -> Any:
    asn1tools = asn1tools_import.full()  # the grammar parser, only when the cache misses
    from asn1tools.codecs import constraints_checker, type_checker
    from asn1tools.compiler import Specification

    parsed = asn1tools.parse_files([str(ASN1_DIR / n) for n in files])
    _resolve_integer_defaults(parsed)
    return Specification(
        _Compiler(parsed).process(),
        _der.decode_full_length,
        type_checker.compile_dict(parsed),
        constraints_checker.compile_dict(parsed),
    )


def spec(sgp32: str = "1.2") -> Any:
    """The compiled asn1tools specification with SGP.32 version ``sgp32`` (loaded from the disk
    cache when possible)."""
    # One cache key per version: spec(), spec("1.2") and spec(sgp32="1.2") are one load, and
    # so is a str subclass equal to "1.2" (an enum member), which hashes differently.
    return _spec(sgp32 if type(sgp32) is str else str(sgp32))


@cache
def _spec(sgp32: str) -> Any:
    files = module_files(sgp32)
    path = cache_dir() / f"schema-{_source_digest(files)}.pickle"
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except FileNotFoundError:
        pass
    except Exception as exc:  # a corrupt or foreign cache file is rebuilt, never trusted
        log.warning("ignoring unreadable schema cache %s: %s", path, exc)
    compiled = _compile(files)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".schema-")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(compiled, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot write schema cache %s: %s", path, exc)
    return compiled


def has_type(type_name: str, *, sgp32: str = "1.2") -> bool:
    """Whether the schema defines ``type_name``."""
    return type_name in spec(sgp32).types


# Encodings of small immutable values, keyed by the type, the version and the exact value
# (see _frozen): the card's results and the IPAd's fixed requests repeat on every cycle, and
# asn1tools' encoder costs tens of microseconds for a few octets.
_ENCODED: dict[tuple[Any, ...], bytes] = {}
_ENCODED_MAX = 1024
_UNCACHEABLE = object()
_DICT, _TUPLE, _LIST = object(), object(), object()  # kind marks: no value can forge them


def _frozen(value: Any, depth: int = 0) -> Any:
    """A hashable key standing for ``value`` and only for values that encode the same; or
    ``_UNCACHEABLE``. Only exact ``str``, ``int``, ``bytes`` and None leaves are taken (not
    ``bool``, which equals 1 but may encode otherwise, nor ``bytearray`` or floats); dicts,
    tuples and lists keep their kind and their order."""
    kind = type(value)
    if kind is str or kind is int or kind is bytes or value is None:
        return value
    if depth > 4:
        return _UNCACHEABLE
    if kind is dict:
        items = []
        for name, item in value.items():
            frozen = _frozen(item, depth + 1)
            if frozen is _UNCACHEABLE or type(name) is not str:
                return _UNCACHEABLE
            items.append((name, frozen))
        return (_DICT, *items)
    if kind is tuple or kind is list:
        parts: list[Any] = [_TUPLE if kind is tuple else _LIST]
        for item in value:
            frozen = _frozen(item, depth + 1)
            if frozen is _UNCACHEABLE:
                return _UNCACHEABLE
            parts.append(frozen)
        return tuple(parts)
    return _UNCACHEABLE


def encode(type_name: str, value: Any, *, sgp32: str = "1.2") -> bytes:
    """DER-encode ``value`` as ``type_name``."""
    if type(sgp32) is not str:  # an enum member: the same cache entries as its string
        sgp32 = str(sgp32)
    frozen = _frozen(value)
    if frozen is not _UNCACHEABLE:
        key = (type_name, sgp32, frozen)
        encoded = _ENCODED.get(key)
        if encoded is None:
            encoded = _encode(type_name, value, sgp32)
            if len(_ENCODED) >= _ENCODED_MAX:
                del _ENCODED[next(iter(_ENCODED))]  # the oldest entry
            _ENCODED[key] = encoded
        return encoded
    return _encode(type_name, value, sgp32)


def _encode(type_name: str, value: Any, sgp32: str) -> bytes:
    try:
        return bytes(spec(sgp32).encode(type_name, value))
    except KeyError:
        if not has_type(type_name, sgp32=sgp32):
            raise
        raise EncodeError(f"{type_name}: missing field in {value!r}") from None
    except Exception as exc:
        raise EncodeError(f"{type_name}: {exc}") from exc


@cache
def _decoder(type_name: str, constraints: bool = True, sgp32: str = "1.2") -> Any:
    return der.node_for(spec(sgp32).types[type_name].type, constraints)


def decode(
    type_name: str,
    data: bytes,
    *,
    allow_trailing: bool = False,
    constraints: bool = True,
    sgp32: str = "1.2",
) -> Any:
    """Decode one ``type_name`` from ``data`` with the strict DER decoder (the schema of
    SGP.32 version ``sgp32``).

    Unless ``allow_trailing`` is set, bytes after the first complete TLV are an error.
    ``constraints=False`` leaves SIZE and value ranges unchecked (every other rule holds),
    for a function that answers a constraint violation with a result of its own.

    Raises:
        StrictDecodeError: (a :class:`DecodeError`) the bytes break a rule of
            :mod:`euicc_protocol.der`; it names the rule, the offset and the component.
        KeyError: the schema has no type ``type_name``.
    """
    return _decode(type_name, data, allow_trailing, None, constraints, sgp32)


def decode_spans(type_name: str, data: bytes, *, sgp32: str = "1.2") -> tuple[Any, Spans]:
    """Decode ``type_name`` like :func:`decode` and also return where each component is.

    The spans map a component's path (field and alternative names, SEQUENCE OF indexes,
    e.g. ``("euiccPackageSigned", "euiccPackage", "psmoList", 0)``) to the ``(start, end)``
    of its whole TLV in ``data``; ``()`` is the whole value. Code that checks a signature
    takes the signed bytes from these spans, so it verifies exactly what it then acts on.
    """
    spans: Spans = {}
    return _decode(type_name, data, False, spans, True, sgp32), spans


def _decode(
    type_name: str,
    data: bytes,
    allow_trailing: bool,
    spans: Spans | None,
    constraints: bool = True,
    sgp32: str = "1.2",
) -> Any:
    if type(sgp32) is not str:  # an enum member: one cache entry, and a cheap hash
        sgp32 = str(sgp32)
    root = _decoder(type_name, constraints, sgp32)
    if type(data) is not bytes:
        data = bytes(data)
    try:
        return der.decode(root, data, allow_trailing=allow_trailing, spans=spans)[0]
    except StrictDecodeError as exc:
        exc.type_name = type_name
        raise


@cache
def tag_of(type_name: str, *, sgp32: str = "1.2") -> bytes:
    """The encoded outermost tag of ``type_name`` (``b'\\xbf\\x3e'`` for GetEuiccDataRequest)."""
    compiled = spec(sgp32).types[type_name].type
    tag = getattr(compiled, "tag", None)
    if tag is None:
        raise Asn1Error(f"{type_name} has no single outer tag (untagged CHOICE?)")
    return bytes(tag)


def bits(positions: Iterable[int]) -> tuple[bytes, int]:
    """A named BIT STRING value with the given bit positions set, in minimal DER form."""
    pos = sorted(set(positions))
    if not pos:
        return b"", 0
    if pos[0] < 0:
        raise ValueError("bit positions are non-negative")
    nbits = pos[-1] + 1
    buf = bytearray((nbits + 7) // 8)
    for p in pos:
        buf[p // 8] |= 0x80 >> (p % 8)
    return bytes(buf), nbits


def bit_positions(value: tuple[bytes, int]) -> frozenset[int]:
    """The set bit positions of a decoded BIT STRING (the unused-bits count is ignored)."""
    data, nbits = value
    return frozenset(
        i for i in range(min(nbits, len(data) * 8)) if data[i // 8] & (0x80 >> (i % 8))
    )
