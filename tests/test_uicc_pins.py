"""PIN and PUK rules (ETSI TS 102 221 §9.5, §11.1.9 - §11.1.13): unit tests, stateful model."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from euicc_sim.uicc import pins

PIN = b"1234" + b"\xff" * 4
WRONG = b"9999" + b"\xff" * 4
PUK = b"87654321"


def fresh_pin(enabled: bool = True) -> pins.Pin:
    return pins.Pin(PIN, 3, 3, enabled, puk_ref=1)


def fresh_puk() -> pins.Puk:
    return pins.Puk(PUK, 10, 10)


def test_wrong_pin_counts_down_and_blocks() -> None:
    pin = fresh_pin()
    sws = []
    for _ in range(4):
        out = pins.verify(pin, WRONG, verified=False)
        sws.append(out.sw)
        pin = out.pin
    assert sws == [0x63C2, 0x63C1, 0x63C0, 0x6983]
    assert pins.verify(pin, PIN, verified=False).sw == 0x6983  # even the right one


def test_right_pin_resets_the_counter() -> None:
    pin = pins.verify(fresh_pin(), WRONG, verified=False).pin
    out = pins.verify(pin, PIN, verified=False)
    assert out.sw == 0x9000 and out.verified and out.pin.retries == 3


def test_status_query_without_data() -> None:
    assert pins.verify(fresh_pin(), None, verified=False).sw == 0x63C3
    assert pins.verify(fresh_pin(), None, verified=True).sw == 0x9000
    assert pins.verify(fresh_pin(enabled=False), None, verified=False).sw == 0x9000


def test_change_checks_format_and_old_value() -> None:
    assert pins.change(fresh_pin(), PIN, b"12\xff\xff\xff\xff\xff\xff").sw == 0x6A80
    assert pins.change(fresh_pin(), WRONG, b"4321\xff\xff\xff\xff").sw == 0x63C2
    out = pins.change(fresh_pin(), PIN, b"4321\xff\xff\xff\xff")
    assert out.sw == 0x9000 and out.pin.value == b"4321\xff\xff\xff\xff"
    assert pins.change(fresh_pin(enabled=False), PIN, PIN).sw == 0x6985


def test_disable_enable_and_adm_stays_enabled() -> None:
    out = pins.set_enabled(fresh_pin(), 0x01, PIN, False)
    assert out.sw == 0x9000 and not out.pin.enabled
    assert pins.set_enabled(out.pin, 0x01, PIN, False).sw == 0x6985
    assert pins.set_enabled(out.pin, 0x01, PIN, True).pin.enabled
    assert pins.set_enabled(fresh_pin(), 0x0A, PIN, False).sw == 0x6985


def test_unblock_with_puk() -> None:
    blocked = pins.Pin(PIN, 0, 3, True, 1)
    assert pins.unblock(blocked, fresh_puk(), None, None).sw == 0x63CA
    assert pins.unblock(blocked, fresh_puk(), b"00000000", PIN).sw == 0x63C9
    out = pins.unblock(blocked, fresh_puk(), PUK, b"5555\xff\xff\xff\xff")
    assert out.sw == 0x9000 and out.pin.retries == 3 and out.verified
    assert out.pin.value == b"5555\xff\xff\xff\xff"
    assert pins.unblock(blocked, None, PUK, PIN).sw == 0x6A88


def test_reprs_hide_values() -> None:
    assert "1234" not in repr(fresh_pin()) and "8765" not in repr(fresh_puk())


values = st.sampled_from([PIN, WRONG, b"4321\xff\xff\xff\xff", b"00000000"])


class PinModel(RuleBasedStateMachine):
    """Random VERIFY / CHANGE / DISABLE / ENABLE / UNBLOCK against a counter model."""

    def __init__(self) -> None:
        super().__init__()
        self.pin = fresh_pin()
        self.puk = fresh_puk()
        self.value = PIN  # model
        self.retries = 3
        self.puk_retries = 10
        self.enabled = True

    def _expect_check(self, value: bytes, sw: int) -> None:
        if self.retries == 0:
            assert sw == 0x6983
        elif value == self.value:
            assert sw == 0x9000
            self.retries = 3
        else:
            self.retries -= 1
            assert sw == 0x63C0 | self.retries

    @rule(value=values)
    def verify(self, value: bytes) -> None:
        out = pins.verify(self.pin, value, verified=False)
        self._expect_check(value, out.sw)
        self.pin = out.pin

    @rule(old=values, new=values)
    def change(self, old: bytes, new: bytes) -> None:
        out = pins.change(self.pin, old, new)
        if not self.enabled:
            assert out.sw == 0x6985
        elif not pins.valid_pin_format(new):
            assert out.sw == 0x6A80
        else:
            self._expect_check(old, out.sw)
            if out.sw == 0x9000:
                self.value = new
        self.pin = out.pin

    @rule(value=values, enable=st.booleans())
    def set_enabled(self, value: bytes, enable: bool) -> None:
        out = pins.set_enabled(self.pin, 0x01, value, enable)
        if self.enabled == enable:
            assert out.sw == 0x6985
        else:
            self._expect_check(value, out.sw)
            if out.sw == 0x9000:
                self.enabled = enable
        self.pin = out.pin

    @precondition(lambda self: self.retries == 0 or self.puk_retries < 10)
    @rule(puk=st.sampled_from([PUK, b"00000000"]), new=values)
    def unblock(self, puk: bytes, new: bytes) -> None:
        out = pins.unblock(self.pin, self.puk, puk, new)
        if self.puk_retries == 0:
            assert out.sw == 0x6983
        elif not pins.valid_pin_format(new):
            assert out.sw == 0x6A80
        elif puk != PUK:
            self.puk_retries -= 1
            assert out.sw == 0x63C0 | self.puk_retries
        else:
            assert out.sw == 0x9000
            self.value, self.retries, self.puk_retries = new, 3, 10
        self.pin = out.pin
        self.puk = out.puk or self.puk

    @invariant()
    def counters_match(self) -> None:
        assert self.pin.retries == self.retries
        assert self.puk.retries == self.puk_retries
        assert self.pin.enabled == self.enabled
        assert self.pin.value == self.value


TestPinModel = PinModel.TestCase
TestPinModel.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
