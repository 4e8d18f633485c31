"""MILENAGE, the 3GPP example algorithm set f1, f1*, f2, f3, f4, f5, f5* (3GPP TS 35.206).

The kernel E_K is AES-128 (TS 35.206 §4.1). The operator constants r1..r5 (rotations in bits)
and c1..c5 (128-bit XOR constants) default to the values of TS 35.206 §4.1 and can be given
by the profile (PE-AKAParameter rotationConstants / xoringConstants). Pure functions, bytes
in and bytes out; known-answer tests from TS 35.207/35.208 are in the test suite.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

#: r1..r5 of TS 35.206 §4.1, in bits.
DEFAULT_ROTATIONS = (64, 0, 32, 64, 96)
#: c1..c5 of TS 35.206 §4.1.
DEFAULT_CONSTANTS = tuple(bytes(15) + bytes((v,)) for v in (0, 1, 2, 4, 8))


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _rot(x: bytes, bits: int) -> bytes:
    """Cyclic left rotation of a 128-bit block by ``bits`` (TS 35.206 §4.1 rot(x, r))."""
    bits %= 128
    v = int.from_bytes(x, "big")
    v = ((v << bits) | (v >> (128 - bits))) & ((1 << 128) - 1)
    return v.to_bytes(16, "big")


def _aes(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def opc_from_op(k: bytes, op: bytes) -> bytes:
    """OPc = OP XOR E_K(OP) (TS 35.206 §4.1)."""
    _check(k, "K")
    _check(op, "OP")
    return _xor(_aes(k, op), op)


def _check(value: bytes, name: str) -> None:
    if len(value) != 16:
        raise ValueError(f"MILENAGE {name} must be 16 bytes, not {len(value)}")


@dataclass(frozen=True)
class MilenageOutput:
    """f2..f5 of one RAND: RES (8 bytes), CK, IK (16 bytes), AK (6 bytes)."""

    res: bytes
    ck: bytes
    ik: bytes
    ak: bytes


class Milenage:
    """MILENAGE for one subscriber key ``k`` and ``opc`` (give ``op`` to derive OPc)."""

    def __init__(
        self,
        k: bytes,
        opc: bytes | None = None,
        *,
        op: bytes | None = None,
        rotations: tuple[int, ...] = DEFAULT_ROTATIONS,
        constants: tuple[bytes, ...] = DEFAULT_CONSTANTS,
    ) -> None:
        _check(k, "K")
        if (opc is None) == (op is None):
            raise ValueError("give exactly one of OPc and OP")
        self._k = bytes(k)
        self.opc = bytes(opc) if opc is not None else opc_from_op(k, op)  # type: ignore[arg-type]
        _check(self.opc, "OPc")
        if len(rotations) != 5 or len(constants) != 5 or any(len(c) != 16 for c in constants):
            raise ValueError("MILENAGE needs five rotations and five 16-byte constants")
        self._r = tuple(rotations)
        self._c = tuple(bytes(c) for c in constants)

    @classmethod
    def from_profile(cls, k: bytes, opc: bytes, rotation: bytes, xoring: bytes) -> Milenage:
        """MILENAGE with PE-AKAParameter's rotationConstants (5 bytes, bits) and
        xoringConstants (5 x 16 bytes)."""
        if len(rotation) != 5 or len(xoring) != 80:
            raise ValueError("rotationConstants must be 5 bytes and xoringConstants 80")
        constants = tuple(xoring[i : i + 16] for i in range(0, 80, 16))
        return cls(k, opc, rotations=tuple(rotation), constants=constants)

    def _temp(self, rand: bytes) -> bytes:
        _check(rand, "RAND")
        return _aes(self._k, _xor(rand, self.opc))

    def _out(self, temp: bytes, i: int) -> bytes:
        # OUTi = E_K(rot(TEMP XOR OPc, ri) XOR ci) XOR OPc, i = 2..5 (TS 35.206 §4.1)
        x = _xor(_rot(_xor(temp, self.opc), self._r[i - 1]), self._c[i - 1])
        return _xor(_aes(self._k, x), self.opc)

    def f1_f1star(self, rand: bytes, sqn: bytes, amf: bytes) -> tuple[bytes, bytes]:
        """(MAC-A, MAC-S) of f1 and f1* for ``sqn`` (6 bytes) and ``amf`` (2 bytes)."""
        if len(sqn) != 6 or len(amf) != 2:
            raise ValueError("SQN must be 6 bytes and AMF 2")
        temp = self._temp(rand)
        in1 = sqn + amf + sqn + amf
        x = _xor(_xor(temp, _rot(_xor(in1, self.opc), self._r[0])), self._c[0])
        out1 = _xor(_aes(self._k, x), self.opc)
        return out1[:8], out1[8:]

    def f2345(self, rand: bytes) -> MilenageOutput:
        """RES (f2), CK (f3), IK (f4) and AK (f5) of ``rand``."""
        temp = self._temp(rand)
        out2 = self._out(temp, 2)
        return MilenageOutput(
            res=out2[8:], ck=self._out(temp, 3), ik=self._out(temp, 4), ak=out2[:6]
        )

    def f5star(self, rand: bytes) -> bytes:
        """AK for resynchronisation (f5*)."""
        return self._out(self._temp(rand), 5)[:6]
