"""euicc_sim.state: the cheap copy of the card's frozen state records."""

from __future__ import annotations

import dataclasses

import pytest

from euicc_protocol.records import evolve
from euicc_sim.state import CardState, EimConfig


def test_evolve_equals_replace_and_leaves_the_original() -> None:
    config = EimConfig(eim_id="eim-1", counter_value=3)
    state = CardState(eim_configs=(config,), next_seq_number=7)
    copy = evolve(state, next_seq_number=8, rollback=None)
    assert copy == dataclasses.replace(state, next_seq_number=8, rollback=None)
    assert hash(copy) == hash(dataclasses.replace(state, next_seq_number=8))
    assert state.next_seq_number == 7 and copy.eim_configs is state.eim_configs
    assert evolve(config, counter_value=4) == dataclasses.replace(config, counter_value=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.next_seq_number = 9  # type: ignore[misc]


def test_evolve_refuses_what_replace_would_and_what_it_cannot_copy() -> None:
    with pytest.raises(TypeError, match="no field 'nope'"):
        evolve(CardState(), nope=1)

    @dataclasses.dataclass(frozen=True)
    class Checked:
        a: int = 0

        def __post_init__(self) -> None:
            pass

    with pytest.raises(TypeError):
        evolve(Checked())
