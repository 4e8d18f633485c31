"""TUAK, the second 3GPP example algorithm set f1 .. f5* (3GPP TS 35.231), on Keccak-f[1600].

Each function fills the 1600-bit Keccak state with TOPc (TOP for the TOPc derivation), an
INSTANCE byte that says which function and which lengths, the ALGONAME "TUAK1.0", RAND and,
for f1/f1*, AMF and SQN, then the key (K is 128 or 256 bits) and the sponge padding
(TS 35.231 §6). The permutation runs ``keccak_iterations`` times (PE-AKAParameter
numberOfKeccak). TS 35.231 numbers the bits of every field from its least significant end,
so each field is written into the state byte-reversed, and outputs are read back the same
way.

INSTANCE (TS 35.231 §6): b8 set for the resynchronisation functions f1*/f5*, b7 set for
f2..f5 and f5*, b6..b4 the MAC length (f1/f1*: 001 64, 010 128, 100 256 bits) or the RES
length (f2..f5: 000 32, 001 64, 010 128, 100 256 bits), b3 CK of 256 bits, b2 IK of 256
bits (f2..f5 only), b1 K of 256 bits. All six test sets of TS 35.233 pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from .keccak import keccak_f1600

_ALGONAME = b"TUAK1.0"
_MAC_BITS = {8: 0x08, 16: 0x10, 32: 0x20}
_RES_BITS = {4: 0x00, 8: 0x08, 16: 0x10, 32: 0x20}


@dataclass(frozen=True)
class TuakOutput:
    """f2..f5 of one RAND."""

    res: bytes
    ck: bytes
    ik: bytes
    ak: bytes


class Tuak:
    """TUAK for key ``k`` (16 or 32 bytes) and ``topc`` (give ``top`` to derive TOPc)."""

    def __init__(
        self,
        k: bytes,
        topc: bytes | None = None,
        *,
        top: bytes | None = None,
        keccak_iterations: int = 1,
        mac_length: int = 8,
        res_length: int = 8,
        ck_length: int = 16,
        ik_length: int = 16,
    ) -> None:
        if len(k) not in (16, 32):
            raise ValueError("TUAK K must be 16 or 32 bytes")
        if (topc is None) == (top is None):
            raise ValueError("give exactly one of TOPc and TOP")
        if mac_length not in _MAC_BITS or res_length not in _RES_BITS:
            raise ValueError("TUAK MAC is 8, 16 or 32 bytes and RES 4, 8, 16 or 32 bytes")
        if ck_length not in (16, 32) or ik_length not in (16, 32):
            raise ValueError("TUAK CK and IK are 16 or 32 bytes")
        if not 1 <= keccak_iterations <= 255:
            raise ValueError("numberOfKeccak must be 1..255")
        self._k = bytes(k)
        self._iterations = keccak_iterations
        self._mac_length = mac_length
        self._res_length = res_length
        self._ck_length = ck_length
        self._ik_length = ik_length
        self._k_bit = 0x01 if len(k) == 32 else 0x00
        if top is not None:
            if len(top) != 32:
                raise ValueError("TUAK TOP must be 32 bytes")
            out = self._permute(top, self._k_bit, b"")
            self.topc = out[:32][::-1]
        else:
            assert topc is not None
            if len(topc) != 32:
                raise ValueError("TUAK TOPc must be 32 bytes")
            self.topc = bytes(topc)

    def _permute(self, first: bytes, instance: int, middle: bytes) -> bytes:
        state = bytearray(200)
        state[0:32] = first[::-1]
        state[32] = instance
        state[33:40] = _ALGONAME[::-1]
        state[40 : 40 + len(middle)] = middle
        state[64 : 64 + len(self._k)] = self._k[::-1]
        state[96] ^= 0x1F  # sponge padding of the 1088-bit rate
        state[135] ^= 0x80
        out = bytes(state)
        for _ in range(self._iterations):
            out = keccak_f1600(out)
        return out

    def f1_f1star(self, rand: bytes, sqn: bytes, amf: bytes) -> tuple[bytes, bytes]:
        """(MAC-A, MAC-S) of f1 and f1*."""
        if len(rand) != 16 or len(sqn) != 6 or len(amf) != 2:
            raise ValueError("RAND is 16 bytes, SQN 6 and AMF 2")
        middle = rand[::-1] + amf[::-1] + sqn[::-1]
        instance = _MAC_BITS[self._mac_length] | self._k_bit
        n = self._mac_length
        mac_a = self._permute(self.topc, instance, middle)[:n][::-1]
        mac_s = self._permute(self.topc, 0x80 | instance, middle)[:n][::-1]
        return mac_a, mac_s

    def _f2345_instance(self) -> int:
        return (
            0x40
            | _RES_BITS[self._res_length]
            | (0x04 if self._ck_length == 32 else 0)
            | (0x02 if self._ik_length == 32 else 0)
            | self._k_bit
        )

    def f2345(self, rand: bytes) -> TuakOutput:
        """RES (f2), CK (f3), IK (f4), AK (f5)."""
        if len(rand) != 16:
            raise ValueError("RAND is 16 bytes")
        out = self._permute(self.topc, self._f2345_instance(), rand[::-1])
        return TuakOutput(
            res=out[: self._res_length][::-1],
            ck=out[32 : 32 + self._ck_length][::-1],
            ik=out[64 : 64 + self._ik_length][::-1],
            ak=out[96:102][::-1],
        )

    def f5star(self, rand: bytes) -> bytes:
        """AK for resynchronisation (f5*)."""
        if len(rand) != 16:
            raise ValueError("RAND is 16 bytes")
        # f5* does not depend on the output lengths: only its function bits and K's length.
        out = self._permute(self.topc, 0xC0 | self._k_bit, rand[::-1])
        return out[96:102][::-1]
