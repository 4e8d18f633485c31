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

Values use asn1tools' Python form: SEQUENCE -> dict keyed by the ASN.1 field names, CHOICE ->
``(alternative_name, value)``, BIT STRING -> ``(bytes, number_of_bits)``, OCTET STRING ->
``bytes``, INTEGER/ENUMERATED -> ``int``/``str``, NULL -> ``None``.

Two asn1tools defects are handled here:

* OBJECT IDENTIFIERs whose first arc is 2 and second arc >= 40 (``2.999.10``, the SGP.26
  SM-DP+ OID) are decoded wrongly by asn1tools 0.169.0; the decoder is replaced at import.
* Named BIT STRINGs are encoded with the bit length given; :func:`bits` builds the minimal
  (DER) form from bit positions.
* The DER decoder loops forever on a SEQUENCE OF whose element has an unexpected tag (it never
  advances); the element loop is replaced at import so that such input is a DecodeError.
* A named-number DEFAULT of an INTEGER (``profileClass DEFAULT operational``, PKIX
  ``version DEFAULT v1``) is kept as the *name*: an absent field decodes as the string
  ``'operational'`` and an explicit ``2`` is not recognised as the default, so DER's "omit the
  default" rule is broken. The defaults are resolved to numbers before compiling.
"""

from __future__ import annotations

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

import asn1tools
from asn1tools.codecs import ber as _ber
from asn1tools.codecs import der as _der

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


_CACHE_FORMAT = 2


class Asn1Error(ValueError):
    """Base class for schema encode/decode failures."""


class EncodeError(Asn1Error):
    """A value does not fit the ASN.1 type it was encoded as."""


class DecodeError(Asn1Error):
    """Bytes are not a valid DER encoding of the expected ASN.1 type."""


def _decode_object_identifier(data: bytes, offset: int, end_offset: int) -> str:
    # X.690 8.19.4: the first subidentifier packs two arcs; arc 2 takes every value >= 80.
    first, offset = _ber.decode_object_identifier_subidentifier(data, offset)
    if first < 40:
        arcs = [0, first]
    elif first < 80:
        arcs = [1, first - 40]
    else:
        arcs = [2, first - 80]
    while offset < end_offset:
        sub, offset = _ber.decode_object_identifier_subidentifier(data, offset)
        arcs.append(sub)
    return ".".join(str(a) for a in arcs)


_ber.decode_object_identifier = _decode_object_identifier


def _decode_array_content(self: Any, data: bytearray, offset: int, length: int) -> Any:
    # asn1tools 0.169.0 appends its TAG_MISMATCH marker without advancing, looping forever.
    end = offset + length
    decoded = []
    while offset < end:
        element, offset = self.element_type.decode(data, offset)
        _ber.check_decode_error(self.element_type, element, data, offset)
        decoded.append(element)
    if offset != end:
        raise _ber.DecodeError(f"element runs {offset - end} bytes past its SEQUENCE OF", offset)
    return decoded, offset


_der.ArrayType.decode_content = _decode_array_content


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
                visit(member)
        element = descriptor.get("element")
        if isinstance(element, dict):
            visit(element)

    for module in parsed.values():
        for descriptor in module["types"].values():
            visit(descriptor)


def _source_digest(files: tuple[str, ...] = MODULE_FILES) -> str:
    h = hashlib.sha256()
    h.update(f"{_CACHE_FORMAT}|{asn1tools.__version__}|{sys.version_info[:2]}".encode())
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


def _compile(files: tuple[str, ...] = MODULE_FILES) -> Any:
    parsed = asn1tools.parse_files([str(ASN1_DIR / n) for n in files])
    _resolve_integer_defaults(parsed)
    return asn1tools.compile_dict(parsed, "der")


@cache
def spec(sgp32: str = "1.2") -> Any:
    """The compiled asn1tools specification with SGP.32 version ``sgp32`` (loaded from the disk
    cache when possible)."""
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


def encode(type_name: str, value: Any, *, sgp32: str = "1.2") -> bytes:
    """DER-encode ``value`` as ``type_name``."""
    try:
        return bytes(spec(sgp32).encode(type_name, value))
    except KeyError:
        if not has_type(type_name, sgp32=sgp32):
            raise
        raise EncodeError(f"{type_name}: missing field in {value!r}") from None
    except Exception as exc:
        raise EncodeError(f"{type_name}: {exc}") from exc


def decode(type_name: str, data: bytes, *, allow_trailing: bool = False, sgp32: str = "1.2") -> Any:
    """Decode one ``type_name`` from ``data``.

    Unless ``allow_trailing`` is set, bytes after the first complete TLV are an error.
    """
    try:
        value, length = spec(sgp32).decode_with_length(type_name, bytes(data))
    except KeyError:
        if not has_type(type_name, sgp32=sgp32):
            raise
        raise DecodeError(f"{type_name}: malformed encoding") from None
    except Exception as exc:
        raise DecodeError(f"{type_name}: {exc}") from exc
    if not allow_trailing and length != len(data):
        raise DecodeError(f"{type_name}: {len(data) - length} unexpected trailing bytes")
    return value


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
