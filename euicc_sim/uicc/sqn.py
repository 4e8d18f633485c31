"""Sequence number freshness in the USIM (3GPP TS 33.102 Annex C).

SQN (48 bits) = SEQ || IND with an IND of 5 bits: the USIM keeps an array of 32 highest
accepted SEQ values, one per IND (Annex C.2.2 / C.3.2). A received SQN is fresh when

* its SEQ is greater than the array entry of its IND (C.2.2), and
* its SEQ does not run more than ``delta`` ahead of the highest accepted SEQ (C.2.1, the
  protection against wrap-around), and
* (optional, ``sqnOptions`` b2... see :data:`AGE_LIMIT_CHECK`) its SEQ is not more than
  ``age_limit`` behind the highest accepted SEQ (C.2.3).

On acceptance the entry of its IND becomes its SEQ. For a synchronisation failure the USIM
reports SQN_MS, the highest accepted SQN (the highest SEQ with its IND).

The PE-AKAParameter values seed this: ``sqnInit`` (the 32 SEQ values, without IND),
``sqnDelta`` and ``sqnAgeLimit``. How ``sqnOptions`` is read here is documented in
docs/usim.md: b1 set enables the delta check, b2 set the age limit check (default ``02``).
"""

from __future__ import annotations

IND_BITS = 5
ARRAY_SIZE = 1 << IND_BITS
MAX_SQN = (1 << 48) - 1
#: sqnOptions bits as this card reads them.
DELTA_CHECK = 0x01
AGE_LIMIT_CHECK = 0x02


def split(sqn: int) -> tuple[int, int]:
    """(SEQ, IND) of a 48-bit SQN."""
    return sqn >> IND_BITS, sqn & (ARRAY_SIZE - 1)


def join(seq: int, ind: int) -> int:
    """The SQN of a SEQ and an IND."""
    return (seq << IND_BITS) | ind


def check(
    array: tuple[int, ...],
    sqn: int,
    *,
    options: int = AGE_LIMIT_CHECK,
    delta: int = 0x000010000000,
    age_limit: int = 0x000010000000,
) -> tuple[int, ...] | None:
    """The new SEQ array if ``sqn`` is fresh, ``None`` if it must be refused."""
    if len(array) != ARRAY_SIZE:
        raise ValueError(f"the SEQ array has {ARRAY_SIZE} entries")
    if not 0 <= sqn <= MAX_SQN:
        raise ValueError("SQN is 48 bits")
    seq, ind = split(sqn)
    highest = max(array)
    if seq <= array[ind]:
        return None
    if options & DELTA_CHECK and seq - highest > delta:
        return None
    if options & AGE_LIMIT_CHECK and highest - seq > age_limit:
        return None
    return array[:ind] + (seq,) + array[ind + 1 :]


def sqn_ms(array: tuple[int, ...]) -> int:
    """SQN_MS: the highest accepted SQN (its SEQ and the IND it was accepted with)."""
    highest = max(array)
    return join(highest, array.index(highest))
