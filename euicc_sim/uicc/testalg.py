"""The USIM test algorithm of 3GPP TS 34.108 §8.1.2 (XOR based), used by every TS.48 profile.

XDOUT = K XOR RAND; RES is the first bytes of XDOUT, CK is XDOUT rotated left by one byte,
IK by two, AK is bytes 3..8 of XDOUT; MAC = MAC-S = XDOUT[0..7] XOR (SQN || AMF). The test
algorithm defines no separate f5*: the resynchronisation token is concealed with AK.
Not secure by design; only for test profiles.
"""

from __future__ import annotations

from dataclasses import dataclass


def _check(value: bytes, name: str) -> None:
    if len(value) != 16:
        raise ValueError(f"test algorithm {name} must be 16 bytes, not {len(value)}")


@dataclass(frozen=True)
class TestAlgorithmOutput:
    """RES, CK, IK and AK of one RAND."""

    __test__ = False  # not a pytest test class despite its name

    res: bytes
    ck: bytes
    ik: bytes
    ak: bytes


class TestAlgorithm:
    """The TS 34.108 §8.1.2 test algorithm for key ``k`` (RES of ``res_length`` bytes)."""

    __test__ = False

    def __init__(self, k: bytes, *, res_length: int = 8) -> None:
        _check(k, "K")
        if not 4 <= res_length <= 16:
            raise ValueError("RES length must be 4..16 bytes")
        self._k = bytes(k)
        self._res_length = res_length

    def _xdout(self, rand: bytes) -> bytes:
        _check(rand, "RAND")
        return bytes(a ^ b for a, b in zip(self._k, rand, strict=True))

    def f1_f1star(self, rand: bytes, sqn: bytes, amf: bytes) -> tuple[bytes, bytes]:
        """(MAC-A, MAC-S): both XDOUT[0..7] XOR CDOUT, CDOUT = SQN || AMF."""
        if len(sqn) != 6 or len(amf) != 2:
            raise ValueError("SQN must be 6 bytes and AMF 2")
        cdout = sqn + amf
        mac = bytes(a ^ b for a, b in zip(self._xdout(rand)[:8], cdout, strict=True))
        return mac, mac

    def f2345(self, rand: bytes) -> TestAlgorithmOutput:
        """RES (f2), CK (f3), IK (f4), AK (f5)."""
        x = self._xdout(rand)
        return TestAlgorithmOutput(
            res=x[: self._res_length], ck=x[1:] + x[:1], ik=x[2:] + x[:2], ak=x[3:9]
        )

    def f5star(self, rand: bytes) -> bytes:
        """AK for resynchronisation: the test algorithm uses AK itself."""
        return self._xdout(rand)[3:9]
