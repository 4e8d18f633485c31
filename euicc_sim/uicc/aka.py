"""AUTHENTICATE in the USIM/ISIM context (3GPP TS 31.102 §7.1.2, TS 31.103 §7.1.2, TS 33.102).

Pure: the AKA parameters of the ADF, the SQN array and the command data in; the response
data or status word and the new SQN array out. The algorithm is the one PE-AKAParameter
names: MILENAGE (1), TUAK (2) or the USIM test algorithm (3).

3G/4G/5G context (P2 ``81``): data ``10 RAND 10 AUTN``. The card derives AK, recovers SQN,
checks MAC-A (``9862`` when wrong, TS 31.102 §7.1.2.1), checks SQN freshness
(:mod:`euicc_sim.uicc.sqn`) and answers either ``DB L RES L CK L IK [L Kc]`` (Kc, from the
conversion function c3 of TS 33.102 §6.8.1.2, only when the USIM offers GSM access, service
n°27) or the synchronisation failure ``DC 0E AUTS``, AUTS = (SQN_MS XOR AK*) || MAC-S with
the dummy AMF ``0000`` (TS 33.102 §6.3.3).

GSM context (P2 ``80``, USIM with service n°27 only): data ``10 RAND``, answer
``04 SRES 08 Kc`` with SRES = c2(RES) and Kc = c3(CK, IK) (TS 33.102 §6.8.1.2).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Protocol

from . import sqn as sqn_rules
from .image import AkaConfig
from .milenage import Milenage
from .testalg import TestAlgorithm

MILENAGE = 1
TUAK = 2
TEST_ALGORITHM = 3

SW_MAC_FAILURE = 0x9862
SW_INCORRECT_DATA = 0x6A80
SW_WRONG_LENGTH = 0x6700
SW_INCORRECT_P1P2 = 0x6A86
SW_CONDITIONS = 0x6985


class AkaAlgorithm(Protocol):
    """What AUTHENTICATE needs of an algorithm set (f1 .. f5*)."""

    def f1_f1star(self, rand: bytes, sqn: bytes, amf: bytes) -> tuple[bytes, bytes]: ...

    def f2345(self, rand: bytes) -> _F2345: ...

    def f5star(self, rand: bytes) -> bytes: ...


class _F2345(Protocol):
    @property
    def res(self) -> bytes: ...
    @property
    def ck(self) -> bytes: ...
    @property
    def ik(self) -> bytes: ...
    @property
    def ak(self) -> bytes: ...


def algorithm_for(config: AkaConfig) -> AkaAlgorithm:
    """The algorithm set of a PE-AKAParameter; ``ValueError`` for an unknown one."""
    if config.algorithm == TEST_ALGORITHM:
        return TestAlgorithm(config.key)
    if config.algorithm == MILENAGE:
        return Milenage.from_profile(config.key, config.opc, config.rotation, config.xoring)
    if config.algorithm == TUAK:
        from .tuak import Tuak

        return Tuak(config.key, topc=config.opc, keccak_iterations=config.keccak_iterations)
    raise ValueError(f"unknown AKA algorithmID {config.algorithm}")


def c2(res: bytes) -> bytes:
    """SRES from RES (TS 33.102 §6.8.1.2): XOR of the 32-bit words of RES padded to 128 bits."""
    padded = res.ljust(16, b"\x00")[:16]
    out = bytearray(4)
    for i in range(0, 16, 4):
        for j in range(4):
            out[j] ^= padded[i + j]
    return bytes(out)


def c3(ck: bytes, ik: bytes) -> bytes:
    """Kc from CK and IK (TS 33.102 §6.8.1.2): CK1 XOR CK2 XOR IK1 XOR IK2 (64-bit halves)."""
    return bytes(a ^ b ^ c ^ d for a, b, c, d in zip(ck[:8], ck[8:], ik[:8], ik[8:], strict=True))


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


@dataclass(frozen=True)
class AuthResult:
    """The answer to one AUTHENTICATE: response data and SW, and the SQN array to keep."""

    sw: int
    data: bytes = b""
    sqn_array: tuple[int, ...] | None = None  # set when the array changes


def authenticate(
    config: AkaConfig,
    array: tuple[int, ...],
    p2: int,
    data: bytes,
    *,
    gsm_allowed: bool,
    with_kc: bool,
) -> AuthResult:
    """Process AUTHENTICATE (P2 ``80`` GSM or ``81`` 3G context) for one ADF."""
    algo = algorithm_for(config)
    if p2 == 0x80:
        if not gsm_allowed:
            return AuthResult(SW_INCORRECT_P1P2)
        if len(data) != 17:
            return AuthResult(SW_WRONG_LENGTH)
        if data[0] != 0x10:
            return AuthResult(SW_INCORRECT_DATA)
        out = algo.f2345(data[1:17])
        return AuthResult(0x9000, b"\x04" + c2(out.res) + b"\x08" + c3(out.ck, out.ik))
    if p2 != 0x81:
        return AuthResult(SW_INCORRECT_P1P2)
    if len(data) != 34:
        return AuthResult(SW_WRONG_LENGTH)
    if data[0] != 0x10 or data[17] != 0x10:
        return AuthResult(SW_INCORRECT_DATA)
    rand, autn = data[1:17], data[18:34]
    out = algo.f2345(rand)
    sqn_bytes = _xor(autn[:6], out.ak)
    amf, mac = autn[6:8], autn[8:16]
    xmac, _ = algo.f1_f1star(rand, sqn_bytes, amf)
    if not hmac.compare_digest(xmac, mac):
        return AuthResult(SW_MAC_FAILURE)
    fresh = sqn_rules.check(
        array,
        int.from_bytes(sqn_bytes, "big"),
        options=config.sqn_options,
        delta=config.sqn_delta,
        age_limit=config.sqn_age_limit,
    )
    if fresh is None:
        ms = sqn_rules.sqn_ms(array).to_bytes(6, "big")
        _, mac_s = algo.f1_f1star(rand, ms, b"\x00\x00")
        auts = _xor(ms, algo.f5star(rand)) + mac_s
        return AuthResult(0x9000, b"\xdc" + bytes((len(auts),)) + auts)
    body = bytearray(b"\xdb")
    for item in (out.res, out.ck, out.ik):
        body += bytes((len(item),)) + item
    if with_kc:
        body += b"\x08" + c3(out.ck, out.ik)
    return AuthResult(0x9000, bytes(body), fresh)
