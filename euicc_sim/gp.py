"""GlobalPlatform data on the ISD-R and the ECASD: GET DATA (GP Card Specification 2.3 §11.3)
and GET STATUS (§11.4), as a device sees them without a secure channel.

Pure: the objects are built from the card's configuration, credentials and committed state;
the card OS frames the APDUs (:mod:`euicc_sim.cardos`).

Rules
=====

1. GET DATA (``00 CA`` / ``80 CA``, P1-P2 = the tag) answers the whole TLV. Objects:

   ======  =====================================  ============  =============================
   tag     object                                 ISD-R         ECASD
   ======  =====================================  ============  =============================
   ``66``  Card Data with Card Recognition Data   yes           yes (card-wide)
           ``73`` (GP §H.2; OIDs under
           1.2.840.114283)
   ``E0``  Key Information Template (§11.3.3.1)   its key set   its eUICC keys
   ``9F7F`` CPLC (§H.6, 42 bytes)                 yes           yes (card-wide)
   ``42``  IIN: the first 8 EID digits (BCD)      yes           yes
   ``45``  CIN: the EID (16 bytes BCD)            yes           yes
   ``C1``  sequence counter of the default key    yes (0)       --
           version (3 bytes, SCP03)
   ``FF21`` extended card resources (ETSI TS      yes           --
           102 226 §8.2.1.7.2): installed
           applications, free NVM, free RAM
   ``5A``  EID (the SGP.02 way, still read by     --            yes
           tools)
   ======  =====================================  ============  =============================

   Any other tag answers ``6A88``. Card Recognition Data declares GP 2.3 card management
   (the configured ``globalplatform_version``), the GP card identification scheme and SCP03
   (i = ``70``) as a real eUICC does; this card opens no secure channel from the device side
   (INITIALIZE UPDATE is not supported), so no key value stands behind the ISD-R's key set.
2. Key Information Template, basic format (``C0 04 KID KVN type length``): the ISD-R lists
   one SCP03 key set, KVN ``30``, KIDs ``01``-``03`` (ENC, MAC, DEK: AES ``88``, 16 bytes).
   The ECASD lists one key per signing chain of the eUICC certificate (SK.EUICC.ECDSA):
   KID ``01``, KVN ``01``, ``02`` ... in chain order, type ECC private key ``B1``, 32 bytes.
3. GET STATUS (``80 F2``), P2 ``02`` (GP 2.2+ TLV entries ``E3``) or ``00`` (legacy
   format), P2 bit 1 set = next occurrences. The data field holds the search criteria: AID
   ``4F`` (length 0 = all, otherwise an AID prefix) and optionally a tag list ``5C``
   (entries keep only the listed tags). Unauthenticated callers (there is no secure channel)
   see only the public part of the registry, and what they see depends on whom they ask:

   ======  ==========================================  ==============================
   P1      ISD-R                                       ECASD
   ======  ==========================================  ==============================
   ``80``  the ISD-R (LCS ``0F`` SECURED, card         --
           life cycle)
   ``40``  the ECASD and every ISD-P (LCS ``1F``       itself only
           disabled / ``3F`` enabled, SGP.02), each
           with its associated SD (``CC``) and ELF
           (``C4``)
   ``20``  the ISD-P Executable Load File              --
   ``10``  the same with its Executable Module
           (``84``)
   ======  ==========================================  ==============================

   The ECASD holds no Authorized Management privilege, so it reports only itself (GP
   §11.4.2). The profiles' own applications (USIM, ISIM...) are not listed. Nothing found:
   ``6A88``. Other P1 values, P2 values or unknown search tags: ``6A86`` / ``6A80``.
4. Continuation: one answer carries whole entries up to :data:`MAX_STATUS_RESPONSE` bytes and
   ends with ``6310`` (more data) when more remain; GET STATUS with P2 bit 1 set returns the
   next ones. Without a preceding ``6310`` on that channel, "next" answers ``6A88``. The
   remainder is volatile (lost at reset, at channel close and at any other GET STATUS).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from euicc_protocol import tlv

from .apdu import StatusWordError
from .state import CardState, ProfileState

#: Largest data field of one GET STATUS answer; more entries are served through 6310.
MAX_STATUS_RESPONSE = 256

ISDP_ELF_AID = bytes.fromhex("A0000005591010FFFFFFFF8900000D00")
ISDP_MODULE_AID = bytes.fromhex("A0000005591010FFFFFFFF8900000E00")

SW_REFERENCED_DATA_NOT_FOUND = 0x6A88
SW_INCORRECT_P1P2 = 0x6A86
SW_INCORRECT_DATA = 0x6A80
SW_WRONG_LENGTH = 0x6700
SW_MORE_DATA = 0x6310

# GlobalPlatform OID arc 1.2.840.114283, DER content octets.
_GP_OID = bytes.fromhex("2A864886FC6B")

# Life cycle states (GP §5.1; ISD-P disabled/enabled: SGP.02 §2.2.1.2).
LCS_CARD_SECURED = 0x0F
LCS_ELF_LOADED = 0x01
LCS_SD_PERSONALIZED = 0x0F
LCS_ISDP_DISABLED = 0x1F
LCS_ISDP_ENABLED = 0x3F

# Privileges (GP §6.6.1, 3 bytes). ISD-R: Security Domain; Trusted Path, Authorized
# Management, Global Delete, Global Lock, Global Registry, Final Application; Receipt
# Generation. ECASD and ISD-Ps: Security Domain.
PRIVILEGES_ISDR = bytes.fromhex("80DE80")
PRIVILEGES_SD = bytes.fromhex("800000")


def _oid(*arcs: int) -> bytes:
    """``06 len`` + the GP OID extended with ``arcs`` (each below 128)."""
    return tlv.encode_tlv(b"\x06", _GP_OID + bytes(arcs))


def card_recognition_data(gp_version: Sequence[int]) -> bytes:
    """Card Data ``66 { 73 {...} }`` (GP Card Specification 2.3 Annex H.2)."""
    body = (
        _oid(1)  # Card Recognition Data
        + tlv.encode_tlv(b"\x60", _oid(2, *gp_version))  # card management type and version
        + tlv.encode_tlv(b"\x63", _oid(3))  # card identification scheme
        + tlv.encode_tlv(b"\x64", _oid(4, 3, 0x70))  # SCP03, i = 70
    )
    return tlv.encode_tlv(b"\x66", tlv.encode_tlv(b"\x73", body))


def cplc(eid: bytes) -> bytes:
    """CPLC ``9F7F`` (GP Card Specification 2.3 Annex H.6): 42 bytes, neutral vendor fields.

    The IC serial number is taken from the EID's individual number so that every card differs.
    """
    zero2 = b"\x00\x00"
    fields = (
        zero2,  # IC fabricator
        zero2,  # IC type
        zero2,  # operating system identifier
        b"\x60\x01",  # operating system release date (YDDD)
        b"\x01\x00",  # operating system release level
        b"\x60\x01",  # IC fabrication date
        eid[10:14],  # IC serial number
        zero2,  # IC batch identifier
        zero2,  # IC module fabricator
        b"\x60\x01",  # IC module packaging date
        zero2,  # ICC manufacturer
        b"\x60\x01",  # IC embedding date
        zero2,  # IC pre-personaliser
        b"\x60\x01",  # IC pre-perso equipment date
        b"\x00\x00\x00\x00",  # IC pre-perso equipment identifier
        zero2,  # IC personaliser
        b"\x60\x01",  # IC personalisation date
        b"\x00\x00\x00\x00",  # IC personalisation equipment identifier
    )
    value = b"".join(fields)
    assert len(value) == 42
    return tlv.encode_tlv(b"\x9f\x7f", value)


def iin(eid: bytes) -> bytes:
    """IIN ``42``: the first 8 EID digits (major industry 89, country, issuer), BCD."""
    return tlv.encode_tlv(b"\x42", eid[:4])


def cin(eid: bytes) -> bytes:
    """CIN ``45``: the EID, which identifies this card uniquely."""
    return tlv.encode_tlv(b"\x45", eid)


def ext_card_resources(state: CardState, profile_memory: int) -> bytes:
    """ETSI TS 102 226 §8.2.1.7.2 extended card resources (value only): installed
    applications ``81``, free non-volatile memory ``82``, free volatile memory ``83``."""
    used = sum(p.package_size or 0 for p in state.profiles)
    free = max(profile_memory - used, 0)
    return (
        tlv.encode_tlv(b"\x81", bytes([min(len(state.profiles), 255)]))
        + tlv.encode_tlv(b"\x82", free.to_bytes(4, "big"))
        + tlv.encode_tlv(b"\x83", (32 * 1024).to_bytes(2, "big"))
    )


def _constant(value: bytes) -> Callable[[], bytes]:
    return lambda: value


def card_wide_objects(gp_version: Sequence[int], eid: bytes) -> dict[int, Callable[[], bytes]]:
    """GET DATA objects both the ISD-R and the ECASD answer (rule 1), built once."""
    made = {
        0x66: card_recognition_data(gp_version),
        0x9F7F: cplc(eid),
        0x42: iin(eid),
        0x45: cin(eid),
    }
    return {tag: _constant(value) for tag, value in made.items()}


def _key_info(kid: int, kvn: int, key_type: int, length: int) -> bytes:
    return bytes((0xC0, 4, kid, kvn, key_type, length))


def isdr_key_information() -> bytes:
    """Key Information Template ``E0`` of the ISD-R: one SCP03 key set (rule 2)."""
    entries = b"".join(_key_info(kid, 0x30, 0x88, 16) for kid in (1, 2, 3))
    return tlv.encode_tlv(b"\xe0", entries)


def ecasd_key_information(chains: int) -> bytes:
    """Key Information Template ``E0`` of the ECASD: SK.EUICC.ECDSA per chain (rule 2)."""
    entries = b"".join(_key_info(1, 1 + i, 0xB1, 32) for i in range(chains))
    return tlv.encode_tlv(b"\xe0", entries)


# -- the registry GET STATUS reports ----------------------------------------------------------


@dataclass(frozen=True)
class RegistryEntry:
    """One GlobalPlatform registry entry as GET STATUS reports it."""

    aid: bytes
    lcs: int
    privileges: bytes | None = None
    associated_sd: bytes | None = None
    elf: bytes | None = None
    modules: tuple[bytes, ...] = ()

    def tlv(self, tags: frozenset[bytes] | None, *, with_modules: bool) -> bytes:
        """The ``E3`` entry (GP §11.4.3.2), keeping only ``tags`` when given."""
        parts: list[tuple[bytes, bytes]] = [
            (b"\x4f", self.aid),
            (b"\x9f\x70", bytes((self.lcs,))),
        ]
        if self.privileges is not None:
            parts.append((b"\xc5", self.privileges))
        if self.elf is not None:
            parts.append((b"\xc4", self.elf))
        if self.associated_sd is not None:
            parts.append((b"\xcc", self.associated_sd))
        if with_modules:
            parts.extend((b"\x84", m) for m in self.modules)
        body = b"".join(tlv.encode_tlv(t, v) for t, v in parts if tags is None or t in tags)
        return tlv.encode_tlv(b"\xe3", body)

    def legacy(self, *, with_modules: bool) -> bytes:
        """The pre-2.2 format (P2 ``00``): AID length, AID, LCS, privileges (1 byte)."""
        out = bytes((len(self.aid),)) + self.aid + bytes((self.lcs,))
        if with_modules:  # P1 10: ELF, then its modules
            out += bytes((len(self.modules),))
            out += b"".join(bytes((len(m),)) + m for m in self.modules)
        else:
            out += (self.privileges or b"\x00")[:1]
        return out


def isdr_registry(isdr_aid: bytes, ecasd_aid: bytes, state: CardState) -> dict[int, list]:
    """What the ISD-R reports per GET STATUS P1 (rule 3)."""
    apps = [RegistryEntry(ecasd_aid, LCS_SD_PERSONALIZED, PRIVILEGES_SD, isdr_aid)]
    for p in state.profiles:
        lcs = LCS_ISDP_ENABLED if p.state is ProfileState.ENABLED else LCS_ISDP_DISABLED
        apps.append(RegistryEntry(p.isdp_aid, lcs, PRIVILEGES_SD, isdr_aid, ISDP_ELF_AID))
    elf = RegistryEntry(ISDP_ELF_AID, LCS_ELF_LOADED, None, isdr_aid, None, (ISDP_MODULE_AID,))
    return {
        0x80: [RegistryEntry(isdr_aid, LCS_CARD_SECURED, PRIVILEGES_ISDR)],
        0x40: apps,
        0x20: [elf],
        0x10: [elf],
    }


def ecasd_registry(ecasd_aid: bytes, isdr_aid: bytes) -> dict[int, list]:
    """What the ECASD reports per GET STATUS P1: itself only (rule 3)."""
    return {0x40: [RegistryEntry(ecasd_aid, LCS_SD_PERSONALIZED, PRIVILEGES_SD, isdr_aid)]}


def _parse_criteria(data: bytes) -> tuple[bytes, frozenset[bytes] | None]:
    """(AID prefix, tag list) from the GET STATUS data field."""
    prefix: bytes | None = None
    tags: frozenset[bytes] | None = None
    try:
        for item in tlv.iter_tlvs(data):
            value = item.value(data)
            if item.tag == b"\x4f" and prefix is None:
                prefix = value
            elif item.tag == b"\x5c" and tags is None:
                wanted, pos = set(), 0
                while pos < len(value):
                    tag, pos = tlv.read_tag(value, pos)
                    wanted.add(tag)
                tags = frozenset(wanted)
            else:
                raise StatusWordError(SW_INCORRECT_DATA)
    except tlv.TlvError:
        raise StatusWordError(SW_INCORRECT_DATA) from None
    if prefix is None:
        raise StatusWordError(SW_INCORRECT_DATA)
    return prefix, tags


class StatusReporter:
    """GET STATUS for one application, with per-channel continuation (rules 3 and 4)."""

    def __init__(self, registry: Callable[[], dict[int, list]]) -> None:
        self._registry = registry
        self._rest: dict[int, list[bytes]] = {}

    def get_status(self, channel: int, p1: int, p2: int, data: bytes) -> tuple[bytes, int]:
        """Answer one GET STATUS: (response data, status word)."""
        rest = self._rest.pop(channel, None)
        if p2 & ~0x03:
            raise StatusWordError(SW_INCORRECT_P1P2)
        if p1 not in (0x80, 0x40, 0x20, 0x10):
            raise StatusWordError(SW_INCORRECT_P1P2)
        if not data:
            raise StatusWordError(SW_WRONG_LENGTH)
        if p2 & 0x01:
            if not rest:
                raise StatusWordError(SW_REFERENCED_DATA_NOT_FOUND)
            return self._serve(channel, rest)
        prefix, tags = _parse_criteria(data)
        entries = [e for e in self._registry().get(p1, []) if e.aid.startswith(prefix)]
        if not entries:
            raise StatusWordError(SW_REFERENCED_DATA_NOT_FOUND)
        with_modules = p1 == 0x10
        if p2 & 0x02:
            encoded = [e.tlv(tags, with_modules=with_modules) for e in entries]
        else:
            encoded = [e.legacy(with_modules=with_modules) for e in entries]
        return self._serve(channel, encoded)

    def _serve(self, channel: int, encoded: list[bytes]) -> tuple[bytes, int]:
        out: list[bytes] = []
        size = 0
        for i, item in enumerate(encoded):
            if out and size + len(item) > MAX_STATUS_RESPONSE:
                self._rest[channel] = encoded[i:]
                return b"".join(out), SW_MORE_DATA
            out.append(item)
            size += len(item)
        return b"".join(out), 0x9000

    def forget(self, channel: int | None = None) -> None:
        """Drop continuation state (one channel, or all of them at reset)."""
        if channel is None:
            self._rest.clear()
        else:
            self._rest.pop(channel, None)


def lookup(objects: dict[int, Callable[[], bytes]], tag: int) -> bytes:
    """The GET DATA answer for ``tag`` from an application's object table (rule 1)."""
    make = objects.get(tag)
    if make is None:
        raise StatusWordError(SW_REFERENCED_DATA_NOT_FOUND)
    return make()
