"""SAIP: reading an Unprotected Profile Package (TCA eUICC Profile Package, ``PEDefinitions``).

A package is a plain concatenation of DER ``ProfileElement`` values. :func:`read_package`
checks the structural rules an installer relies on and pulls out the few values the card
needs without interpreting the file system:

* the first PE is the header (``A0``) and no other PE is a header;
* the last PE is ``end`` (``AA``) and nothing follows it;
* every PE is one complete DER TLV that decodes as a ``ProfileElement`` of a known type
  (the reserved ``rfu1``..``rfu5`` and unknown extension alternatives are refused);
* the header's ICCID is a valid F-padded BCD number.

Extracted besides the header: the MF's EF.ICCID content, the USIM's EF.IMSI (as digits), the
USIM ADF AID and EF.SPN's service provider name, each ``None`` when the package does not set
it explicitly (template defaults are not modelled).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from euicc_protocol import schema
from euicc_protocol.iccid import InvalidIccid, iccid_from_header, iccid_to_ef

_PE_TYPE = "ProfileElement"
_RESERVED = frozenset({"rfu1", "rfu2", "rfu3", "rfu4", "rfu5"})


class SaipError(ValueError):
    """A profile package breaks a structural rule; says what and where."""

    def __init__(self, message: str, *, offset: int | None = None, pe_index: int | None = None):
        where = []
        if pe_index is not None:
            where.append(f"PE #{pe_index}")
        if offset is not None:
            where.append(f"offset {offset}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.offset = offset
        self.pe_index = pe_index


class SaipElement(NamedTuple):
    """One profile element: its ASN.1 alternative name (``"usim"``) and its complete TLV."""

    pe_type: str
    raw: bytes


@dataclass(frozen=True)
class SaipPackage:
    """A parsed Unprotected Profile Package."""

    major_version: int
    minor_version: int
    profile_type: str | None
    iccid: str  # digits
    iccid_ef: bytes  # 10 bytes, EF.ICCID / RSP ``5A`` coding
    mandatory_services: tuple[str, ...]  # ServicesList names, in schema order
    mandatory_gfste: tuple[str, ...]  # template OIDs, dotted
    mandatory_aids: tuple[tuple[bytes, bytes], ...]  # (aid, version)
    pes: tuple[SaipElement, ...]
    size: int  # package length in bytes
    ef_iccid: bytes | None = None  # MF EF.ICCID content as written by the package
    imsi: str | None = None
    usim_aid: bytes | None = None
    service_provider_name: str | None = None

    def pe_types(self) -> tuple[str, ...]:
        """The PE type names in package order."""
        return tuple(pe.pe_type for pe in self.pes)


def _tlv_extent(data: bytes, offset: int) -> tuple[bytes, int]:
    """The tag and the total length (header + value) of the DER TLV starting at ``offset``."""
    pos = offset
    end = len(data)

    def need(n: int, what: str) -> None:
        if pos + n > end:
            raise SaipError(f"truncated {what}", offset=offset)

    need(1, "tag")
    if data[pos] & 0x1F == 0x1F:  # high tag number: continuation bytes have bit 8 set
        pos += 1
        need(1, "tag")
        while data[pos] & 0x80:
            pos += 1
            need(1, "tag")
    pos += 1
    tag = data[offset:pos]
    need(1, "length")
    first = data[pos]
    pos += 1
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise SaipError("indefinite length is not DER", offset=offset)
    else:
        n = first & 0x7F
        need(n, "length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > end:
        raise SaipError(
            f"TLV declares {length} value bytes, only {end - pos} remain", offset=offset
        )
    return tag, pos + length - offset


def _file_content(file: Any) -> bytes | None:
    """Content a SAIP ``File`` explicitly sets (fill pattern overlaid with fillFileContent)."""
    content = bytearray()
    explicit = False
    pos = 0
    for kind, value in file:
        if kind == "fileDescriptor":
            info = value.get("proprietaryEFInfo", {})
            pattern = info.get("fillPattern") or info.get("repeatPattern")
            if pattern:
                content[: len(pattern)] = pattern
                explicit = True
        elif kind == "fillFileOffset":
            pos += value
        elif kind == "fillFileContent":
            if len(content) < pos:
                content.extend(b"\xff" * (pos - len(content)))
            content[pos : pos + len(value)] = value
            pos += len(value)
            explicit = True
    return bytes(content) if explicit else None


def _decode_imsi(content: bytes) -> str | None:
    # EF.IMSI (TS 31.102 4.2.2): length byte, then digit 1 in the high nibble of the byte
    # whose low nibble holds the parity/type indicator, the rest nibble-swapped BCD.
    if len(content) < 2 or not 1 <= content[0] <= 8 or len(content) < 1 + content[0]:
        return None
    body = content[1 : 1 + content[0]]
    nibbles = [body[0] >> 4] + [n for b in body[1:] for n in (b & 0x0F, b >> 4)]
    digits = "".join(str(n) for n in nibbles if n <= 9)
    return digits or None


# 3GPP TS 23.038 GSM 7-bit default alphabet, basic character set (0x1B escape shown as space).
_GSM7 = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


def _decode_spn(content: bytes) -> str | None:
    # EF.SPN (TS 31.102 4.2.12): display condition byte, then 16 bytes of name coded as
    # unpacked GSM 7-bit or as TS 102 221 Annex A UCS2 (only the 0x80 form is handled).
    name = content[1:17]
    if not name:
        return None
    if name[0] == 0x80:
        ucs = name[1:]
        chars = []
        for i in range(0, len(ucs) - 1, 2):
            if ucs[i : i + 2] == b"\xff\xff":
                break
            chars.append(ucs[i : i + 2].decode("utf-16-be", errors="replace"))
        text = "".join(chars)
    elif name[0] in (0x81, 0x82):
        return None
    else:
        text = "".join(_GSM7[b] for b in name.rstrip(b"\xff") if b < 0x80)
    return text or None


def _pe_file(pe: Mapping[str, Any], name: str) -> bytes | None:
    file = pe.get(name)
    return _file_content(file) if file is not None else None


def _df_name(pe: Mapping[str, Any], name: str) -> bytes | None:
    for kind, value in pe.get(name, ()):
        if kind == "fileDescriptor" and "dfName" in value:
            return bytes(value["dfName"])
    return None


def read_package(data: bytes) -> SaipPackage:
    """Parse and validate an Unprotected Profile Package; raise :class:`SaipError` if invalid."""
    data = bytes(data)
    if not data:
        raise SaipError("empty profile package")
    pes: list[SaipElement] = []
    header: dict[str, Any] | None = None
    found: dict[str, Any] = {}
    offset = 0
    while offset < len(data):
        index = len(pes)
        if pes and pes[-1].pe_type == "end":
            raise SaipError("data after the end PE", offset=offset, pe_index=index)
        tag, length = _tlv_extent(data, offset)
        raw = data[offset : offset + length]
        try:
            pe_type, value = schema.decode(_PE_TYPE, raw)
        except schema.DecodeError as exc:
            raise SaipError(f"does not decode: {exc}", offset=offset, pe_index=index) from exc
        if pe_type is None:
            raise SaipError(
                f"unknown PE tag {raw[:2].hex().upper()}", offset=offset, pe_index=index
            )
        if pe_type in _RESERVED:
            raise SaipError(f"reserved PE {pe_type}", offset=offset, pe_index=index)
        if (pe_type == "header") != (index == 0):
            msg = "header PE after the first PE" if index else f"first PE is {pe_type}, not header"
            raise SaipError(msg, offset=offset, pe_index=index)
        if pe_type == "header":
            header = value
        elif pe_type == "mf" and "ef_iccid" not in found:
            found["ef_iccid"] = _pe_file(value, "ef-iccid")
        elif pe_type == "usim":
            found.setdefault("imsi", _pe_file(value, "ef-imsi"))
            found.setdefault("spn", _pe_file(value, "ef-spn"))
            found.setdefault("usim_aid", _df_name(value, "adf-usim"))
        pes.append(SaipElement(pe_type, raw))
        offset += length
    if pes[-1].pe_type != "end":
        raise SaipError("package does not end with an end PE", offset=len(data))
    assert header is not None  # the first PE is a header, checked above
    try:
        iccid = iccid_from_header(header["iccid"])
    except InvalidIccid as exc:
        raise SaipError(f"header ICCID: {exc}", offset=0, pe_index=0) from exc
    imsi_ef, spn_ef = found.get("imsi"), found.get("spn")
    return SaipPackage(
        major_version=header["major-version"],
        minor_version=header["minor-version"],
        profile_type=header.get("profileType"),
        iccid=iccid,
        iccid_ef=iccid_to_ef(iccid),
        mandatory_services=tuple(header["eUICC-Mandatory-services"]),
        mandatory_gfste=tuple(header["eUICC-Mandatory-GFSTEList"]),
        mandatory_aids=tuple(
            (bytes(a["aid"]), bytes(a["version"])) for a in header.get("eUICC-Mandatory-AIDs", ())
        ),
        pes=tuple(pes),
        size=len(data),
        ef_iccid=found.get("ef_iccid"),
        imsi=_decode_imsi(imsi_ef) if imsi_ef else None,
        usim_aid=found.get("usim_aid"),
        service_provider_name=_decode_spn(spn_ef) if spn_ef else None,
    )
