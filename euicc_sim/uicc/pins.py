"""PIN and PUK rules (ETSI TS 102 221 §9.5, §11.1.9 - §11.1.13) as pure functions.

Every function takes the current :class:`Pin` (and :class:`Puk`) and returns an
:class:`Outcome`: the new values, the status word to answer and whether the PIN is now
verified. The rules, in one place:

* A PIN value is 8 bytes: ASCII digits padded with ``FF`` (§9.5.1); a new PIN must have
  4..8 digits, else ``6A80``.
* A wrong PIN (or PUK) decrements its retry counter and answers ``63Cx`` with the retries
  left; at 0 it is blocked and every later attempt answers ``6983`` without comparing.
  A correct one resets the counter to its maximum.
* VERIFY without data answers the retries left (``63Cx``), or ``9000`` when the PIN is
  disabled or already verified, or ``6983`` when blocked.
* CHANGE needs the old PIN (counts like VERIFY) and an enabled PIN (``6985`` otherwise).
* DISABLE / ENABLE need the PIN (counts like VERIFY); disabling a disabled or enabling an
  enabled PIN answers ``6985``; ADM keys cannot be disabled (``6985``).
* UNBLOCK checks the PUK with the PUK's own counter, then sets the new PIN, resets the PIN's
  counter and leaves it verified; without data it answers the PUK's retries; a PIN without
  PUK answers ``6A88`` (referenced data not found).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

SW_OK = 0x9000
SW_BLOCKED = 0x6983
SW_CONDITIONS = 0x6985
SW_INCORRECT_DATA = 0x6A80
SW_NOT_FOUND = 0x6A88

#: ADM key references (TS 102 221 §9.5.1 Table 9.3): never disabled.
ADM_REFS = frozenset(range(0x0A, 0x0F)) | frozenset(range(0x8A, 0x8F))


@dataclass(frozen=True)
class Pin:
    """One PIN as the card keeps it."""

    value: bytes
    retries: int
    max_attempts: int
    enabled: bool = True
    puk_ref: int | None = None

    def __repr__(self) -> str:  # never show the value
        return f"Pin(retries={self.retries}/{self.max_attempts}, enabled={self.enabled})"


@dataclass(frozen=True)
class Puk:
    """One PUK (unblock PIN)."""

    value: bytes
    retries: int
    max_attempts: int

    def __repr__(self) -> str:
        return f"Puk(retries={self.retries}/{self.max_attempts})"


@dataclass(frozen=True)
class Outcome:
    """The result of one PIN command."""

    sw: int
    pin: Pin
    puk: Puk | None = None
    verified: bool = False


def retries_sw(retries: int) -> int:
    """``63Cx`` with ``x`` retries left."""
    return 0x63C0 | min(retries, 0x0F)


def valid_pin_format(value: bytes) -> bool:
    """8 bytes: 4..8 ASCII digits, then ``FF`` padding (TS 102 221 §9.5.1)."""
    if len(value) != 8:
        return False
    digits = value.rstrip(b"\xff")
    return 4 <= len(digits) <= 8 and all(0x30 <= b <= 0x39 for b in digits)


def _equal(a: bytes, b: bytes) -> bool:
    import hmac

    return hmac.compare_digest(a, b)


def _check(pin: Pin, value: bytes) -> Outcome:
    if pin.retries == 0:
        return Outcome(SW_BLOCKED, pin)
    if _equal(pin.value, value):
        return Outcome(SW_OK, replace(pin, retries=pin.max_attempts), verified=True)
    left = pin.retries - 1
    return Outcome(retries_sw(left), replace(pin, retries=left))


def verify(pin: Pin, value: bytes | None, *, verified: bool) -> Outcome:
    """VERIFY PIN (``value`` None: the status query without data)."""
    if value is None:
        if pin.retries == 0:
            return Outcome(SW_BLOCKED, pin)
        if not pin.enabled or verified:
            return Outcome(SW_OK, pin, verified=verified)
        return Outcome(retries_sw(pin.retries), pin)
    return _check(pin, value)


def change(pin: Pin, old: bytes, new: bytes) -> Outcome:
    """CHANGE PIN from ``old`` to ``new``."""
    if not pin.enabled:
        return Outcome(SW_CONDITIONS, pin)
    if not valid_pin_format(new):
        return Outcome(SW_INCORRECT_DATA, pin)
    out = _check(pin, old)
    if out.sw != SW_OK:
        return out
    return Outcome(SW_OK, replace(out.pin, value=new), verified=True)


def set_enabled(pin: Pin, key_ref: int, value: bytes, enabled: bool) -> Outcome:
    """ENABLE (``enabled``) or DISABLE VERIFICATION REQUIREMENT."""
    if pin.enabled == enabled or (not enabled and key_ref in ADM_REFS):
        return Outcome(SW_CONDITIONS, pin)
    out = _check(pin, value)
    if out.sw != SW_OK:
        return out
    return Outcome(SW_OK, replace(out.pin, enabled=enabled), verified=True)


def unblock(pin: Pin, puk: Puk | None, puk_value: bytes | None, new: bytes | None) -> Outcome:
    """UNBLOCK PIN with ``puk_value`` and ``new`` (both None: the PUK status query)."""
    if puk is None:
        return Outcome(SW_NOT_FOUND, pin)
    if puk.retries == 0:
        return Outcome(SW_BLOCKED, pin, puk)
    if puk_value is None or new is None:
        return Outcome(retries_sw(puk.retries), pin, puk)
    if not valid_pin_format(new):
        return Outcome(SW_INCORRECT_DATA, pin, puk)
    if not _equal(puk.value, puk_value):
        left = puk.retries - 1
        return Outcome(retries_sw(left), pin, replace(puk, retries=left))
    return Outcome(
        SW_OK,
        replace(pin, value=new, retries=pin.max_attempts),
        replace(puk, retries=puk.max_attempts),
        verified=True,
    )
