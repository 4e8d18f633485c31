"""Test helpers for the UICC side: a raw APDU client and the network side of AKA.

Both work on any ``transmit(bytes) -> bytes`` (the emulator, a PC/SC transport), so the same
helpers serve the unit tests and the conformance suite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from euicc_sim.uicc.aka import AkaAlgorithm

#: What every GSMA TS.48 profile holds (profiles/ts48/README.md).
TS48_IMSI_EF = bytes.fromhex("080910101032540636")  # IMSI 001010123456063
TS48_K = bytes(range(16))
TS48_USIM_AID = bytes.fromhex("A0000000871002FF49FF0589")
TS48_ISIM_AID = bytes.fromhex("A0000000871004FF49FF0589")
PIN1 = b"0000" + b"\xff" * 4
PIN2 = b"9999" + b"\xff" * 4
PUK1 = b"11111111"
ADM1 = b"55555555"


@dataclass(frozen=True)
class Response:
    """Response data and status word of one command (after GET RESPONSE)."""

    data: bytes
    sw: int

    @property
    def swx(self) -> str:
        """The status word as 4 upper-case hex digits."""
        return f"{self.sw:04X}"


class Apdu:
    """Sends command APDUs on the basic channel (or ``channel``) and fetches ``61xx`` data."""

    def __init__(self, transmit: Callable[[bytes], bytes], channel: int = 0) -> None:
        self._transmit = transmit
        self.channel = channel

    def _cla(self, proprietary: bool) -> int:
        ch = self.channel
        base = 0x80 if proprietary else 0x00
        return base | ch if ch < 4 else base | 0x40 | (ch - 4)

    def send(self, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None,
             *, proprietary: bool = False) -> Response:  # fmt: skip
        """One command; ``61xx`` answers are completed with GET RESPONSE."""
        apdu = bytes((self._cla(proprietary), ins, p1, p2))
        if data:
            apdu += bytes((len(data),)) + data
        if le is not None:
            apdu += bytes((le & 0xFF,))
        raw = self._transmit(apdu)
        body, sw1, sw2 = raw[:-2], raw[-2], raw[-1]
        while sw1 == 0x61:
            more = self._transmit(bytes((self._cla(False), 0xC0, 0, 0, sw2)))
            body, sw1, sw2 = body + more[:-2], more[-2], more[-1]
        return Response(bytes(body), (sw1 << 8) | sw2)

    def select(self, p1: int, target: bytes, p2: int = 0x04) -> Response:
        """SELECT (P1 00 FID, 04 AID, 08 path from MF, 09 path from the current DF)."""
        return self.send(0xA4, p1, p2, target)

    def read_binary(self, offset: int = 0, le: int = 0, *, sfi: int = 0) -> Response:
        """READ BINARY (with ``sfi``: P1 = 80 | SFI, offset in P2)."""
        if sfi:
            return self.send(0xB0, 0x80 | sfi, offset, le=le)
        return self.send(0xB0, offset >> 8, offset & 0xFF, le=le)

    def read_record(self, number: int, mode: int = 0x04, *, sfi: int = 0, le: int = 0) -> Response:
        """READ RECORD (mode 04 absolute/current, 02 next, 03 previous)."""
        return self.send(0xB2, number, (sfi << 3) | mode, le=le)

    def verify(self, ref: int, value: bytes | None) -> Response:
        """VERIFY PIN ``ref`` (``value`` None: ask for the retry counter)."""
        return self.send(0x20, 0x00, ref, value or b"")

    def authenticate(self, rand: bytes, autn: bytes | None, p2: int = 0x81) -> Response:
        """AUTHENTICATE in the 3G (``81``) or, without AUTN, the GSM (``80``) context."""
        data = b"\x10" + rand + (b"\x10" + autn if autn is not None else b"")
        return self.send(0x88, 0x00, p2, data)


def xor(a: bytes, b: bytes) -> bytes:
    """Byte-wise XOR of two equally long strings."""
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def make_autn(algo: AkaAlgorithm, rand: bytes, sqn: int, amf: bytes = b"\x80\x00") -> bytes:
    """The network side: AUTN = SQN XOR AK || AMF || MAC-A (3GPP TS 33.102 §6.3.2)."""
    sqn_bytes = sqn.to_bytes(6, "big")
    ak = algo.f2345(rand).ak
    mac_a, _ = algo.f1_f1star(rand, sqn_bytes, amf)
    return xor(sqn_bytes, ak) + amf + mac_a


def parse_auth_success(data: bytes) -> tuple[bytes, bytes, bytes, bytes | None]:
    """(RES, CK, IK, Kc or None) of a ``DB`` AUTHENTICATE answer (TS 31.102 §7.1.2)."""
    assert data[0] == 0xDB, data.hex()
    items = []
    pos = 1
    while pos < len(data):
        n = data[pos]
        items.append(data[pos + 1 : pos + 1 + n])
        pos += 1 + n
    assert pos == len(data)
    res, ck, ik = items[:3]
    return res, ck, ik, items[3] if len(items) > 3 else None


def resync_sqn(algo: AkaAlgorithm, rand: bytes, auts: bytes) -> int:
    """The network side of a synchronisation failure: check MAC-S and return SQN_MS."""
    sqn_ms = xor(auts[:6], algo.f5star(rand))
    _, mac_s = algo.f1_f1star(rand, sqn_ms, b"\x00\x00")
    assert mac_s == auts[6:], "MAC-S of AUTS does not verify"
    return int.from_bytes(sqn_ms, "big")
