"""SQN freshness (3GPP TS 33.102 Annex C): unit tests and a stateful model."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from euicc_sim.uicc import sqn

ZERO = (0,) * sqn.ARRAY_SIZE


def test_first_sqn_of_each_index_is_fresh_and_replaying_it_is_not() -> None:
    array = sqn.check(ZERO, sqn.join(1, 3))
    assert array is not None and array[3] == 1 and sum(array) == 1
    assert sqn.check(array, sqn.join(1, 3)) is None  # replay
    assert sqn.check(array, sqn.join(1, 4)) is not None  # the same SEQ on another IND


def test_sqn_ms_is_the_highest_accepted_with_its_index() -> None:
    array = sqn.check(ZERO, sqn.join(7, 2))
    assert array is not None
    array = sqn.check(array, sqn.join(5, 9))
    assert array is not None
    assert sqn.sqn_ms(array) == sqn.join(7, 2)


def test_delta_check_refuses_a_jump_too_far_ahead_when_enabled() -> None:
    far = sqn.join(0x1000_0001, 0)
    assert sqn.check(ZERO, far, options=sqn.DELTA_CHECK, delta=0x1000_0000) is None
    assert sqn.check(ZERO, far, options=0, delta=0x1000_0000) is not None


def test_age_limit_refuses_an_old_seq_when_enabled() -> None:
    array = ZERO[:1] + (100,) + ZERO[2:]
    old = sqn.join(10, 0)  # fresh for IND 0 but 90 behind the highest
    assert sqn.check(array, old, options=sqn.AGE_LIMIT_CHECK, age_limit=50) is None
    assert sqn.check(array, old, options=sqn.AGE_LIMIT_CHECK, age_limit=100) is not None


def test_bad_arguments_are_errors() -> None:
    with pytest.raises(ValueError):
        sqn.check((0,) * 3, 1)
    with pytest.raises(ValueError):
        sqn.check(ZERO, 1 << 48)


class SqnModel(RuleBasedStateMachine):
    """Random SQNs against a model: per IND the highest SEQ seen, accepted iff greater."""

    def __init__(self) -> None:
        super().__init__()
        self.array = ZERO
        self.model: dict[int, int] = {}

    @rule(seq=st.integers(0, 40), ind=st.integers(0, sqn.ARRAY_SIZE - 1))
    def present(self, seq: int, ind: int) -> None:
        new = sqn.check(self.array, sqn.join(seq, ind), options=0)
        expected_fresh = seq > self.model.get(ind, 0)
        assert (new is not None) == expected_fresh
        if new is not None:
            self.model[ind] = seq
            self.array = new

    @rule(seq=st.integers(0, 40), ind=st.integers(0, sqn.ARRAY_SIZE - 1))
    def resynchronise(self, seq: int, ind: int) -> None:
        # After a refusal the network continues above SQN_MS: that SQN is always fresh.
        if sqn.check(self.array, sqn.join(seq, ind), options=0) is None:
            seq_ms, _ = sqn.split(sqn.sqn_ms(self.array))
            fresh = sqn.check(self.array, sqn.join(seq_ms + 1, ind), options=0)
            assert fresh is not None
            self.array = fresh
            self.model[ind] = seq_ms + 1

    @invariant()
    def array_matches_model(self) -> None:
        assert all(self.array[i] == self.model.get(i, 0) for i in range(sqn.ARRAY_SIZE))
        assert sqn.split(sqn.sqn_ms(self.array))[0] == max(self.model.values(), default=0)


TestSqnModel = SqnModel.TestCase
TestSqnModel.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
