"""ipa.pull.rules: the pull flow's table, driven by events alone (no card, no eIM, no clock).

A small scripted environment answers each action the rules ask for; hypothesis varies what the
eIM does with each delivery, and the invariants of the module's rules are checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipa.esipa_answers import EimPackageKind
from ipa.pull import rules
from ipa.pull.rules import (
    TRANSITIONS,
    Booted,
    CycleStarted,
    Delivered,
    DeliveryFailed,
    Memory,
    NoPackage,
    NotificationsRead,
    PackageHandled,
    PackageReceived,
    Policy,
    State,
    step,
)
from ipa.pull.state import PendingResult, SavedState

EPR = bytes.fromhex("BF5103020101")
KIND = EimPackageKind.EUICC_PACKAGE_REQUEST


def booted_memory(policy: Policy | None = None, **saved: object) -> Memory:
    m = Memory(policy or Policy(report_attempts=3))
    m, actions = step(m, CycleStarted(0.0))
    assert actions == (rules.Boot(),)
    m, actions = step(m, Booted("89" * 16, "eim", "1.2", SavedState(**saved), None))  # type: ignore[arg-type]
    return m


def kinds(actions: tuple[rules.Action, ...]) -> list[str]:
    return [type(a).__name__ for a in actions]


def test_every_state_has_transitions_into_known_states() -> None:
    assert set(TRANSITIONS) == set(State)
    assert [s.value for s in State] == [f"S{i}" for i in range(10)]


def test_a_transition_outside_the_table_is_refused() -> None:
    m = Memory(state=State.CANCEL)
    with pytest.raises(RuntimeError, match="no transition S7 -> S2"):
        step(m, NotificationsRead(()))


def test_the_first_cycle_boots_then_notifies_then_polls() -> None:
    m = booted_memory()
    assert m.state is State.NOTIFY
    m, actions = step(m, NotificationsRead(()))
    assert actions == (rules.Poll(None),) and m.state is State.POLL
    m, actions = step(m, NoPackage())
    assert kinds(actions) == ["End"] and m.state is State.IDLE
    end = actions[-1]
    assert isinstance(end, rules.End) and end.outcome.ok and end.outcome.failures == 0


def test_a_fresh_result_gets_report_attempts_tries_with_back_off_then_is_set_aside() -> None:
    m = booted_memory()
    m, _ = step(m, NotificationsRead(()))
    m, actions = step(m, PackageReceived(KIND, b"\xbf\x51\x00"))
    assert actions == (rules.HandlePackage(KIND, b"\xbf\x51\x00"),)
    m, actions = step(m, PackageHandled(EPR, (7,)))
    assert kinds(actions) == ["Persist", "Deliver"]  # saved before the first try
    refused = DeliveryFailed("HTTP 500", unreachable=False)
    m, actions = step(m, refused)
    assert actions == (rules.Sleep(1),)
    m, actions = step(m, rules.Slept())
    assert kinds(actions) == ["Deliver"]
    m, actions = step(m, refused)
    assert actions == (rules.Sleep(2),)
    m, _ = step(m, rules.Slept())
    m, actions = step(m, refused)
    assert kinds(actions) == ["Persist", "End"]  # set aside; no new package this cycle
    outcome = actions[-1].outcome  # type: ignore[attr-defined]
    assert outcome.ok and outcome.packages[0].set_aside and outcome.packages[0].refused
    (kept,) = m.saved.pending
    assert kept.set_aside and kept.attempts == 3 and kept.remove == (7,)


def test_an_unreachable_eim_ends_the_cycle_with_back_off() -> None:
    m = booted_memory(policy=Policy(report_attempts=1))
    m, _ = step(m, NotificationsRead(()))
    m, _ = step(m, PackageReceived(KIND, b""))
    m, _ = step(m, PackageHandled(EPR))
    m, actions = step(m, DeliveryFailed("connection refused", unreachable=True))
    outcome = actions[-1].outcome  # type: ignore[attr-defined]
    assert not outcome.ok and outcome.failures == 1
    assert "provideEimPackageResult" in outcome.error
    assert m.saved.pending[0].set_aside


def test_a_rollback_flagged_result_rolls_back_before_it_is_set_aside() -> None:
    m = booted_memory(policy=Policy(report_attempts=1))
    m, _ = step(m, NotificationsRead(()))
    m, _ = step(m, PackageReceived(KIND, b""))
    m, actions = step(m, PackageHandled(EPR, rollback=True, switched=True))
    assert kinds(actions) == ["Persist", "Reattach"]
    m, actions = step(m, rules.Reattached(False))
    assert actions == (rules.Rollback(),)
    new = PendingResult(b"\xbf\x51\x01\x00", (9,))
    m, actions = step(m, rules.RolledBack(new))
    assert kinds(actions) == ["Persist", "Reattach"]
    m, actions = step(m, rules.Reattached(True))
    assert actions == (rules.Deliver(new),)
    m, actions = step(m, Delivered((3,)))
    assert actions[0] == rules.Remove((9, 3))
    assert m.saved.pending == ()


def test_a_set_aside_result_gets_one_try_and_goes_last() -> None:
    a = PendingResult(b"\xbf\x51\x01\x0a", set_aside=True, attempts=3)
    b = PendingResult(b"\xbf\x51\x01\x0b", set_aside=True, attempts=3)
    m = booted_memory(pending=(a, b))
    assert m.state is State.REPORT
    m, actions = step(m, DeliveryFailed("error answer", unreachable=False))
    assert kinds(actions) == ["Persist", "ReadNotifications"]  # no retry, on to S1
    assert [p.result for p in m.saved.pending] == [b.result, a.result]
    assert m.saved.pending[1].attempts == 4


def test_a_state_change_is_sent_with_the_poll_and_then_forgotten() -> None:
    m = booted_memory(state_change_cause=3)
    m, actions = step(m, NotificationsRead(()))
    assert actions == (rules.Poll(3),)
    m, actions = step(m, NoPackage())
    assert kinds(actions) == ["Persist", "End"] and m.saved.state_change_cause is None


def test_a_switch_made_while_not_looking_is_reported_as_undefined() -> None:
    m = Memory()
    m, _ = step(m, CycleStarted(0.0))
    restored = SavedState(eid="89" * 16, enabled_iccid="98001")
    m, _ = step(m, Booted("89" * 16, "eim", "1.2", restored, "98002"))
    assert m.saved.state_change_cause == 127 and m.saved.enabled_iccid == "98002"


# -- the budget, under any eIM behaviour ----------------------------------------------------------


@dataclass
class Environment:
    """Answers the rules' actions: packages from a queue, deliveries as ``deliveries`` says."""

    deliveries: Callable[[], str]
    packages: int
    notices: int
    failed: int = 0
    polls: int = 0
    made: list[bytes] = field(default_factory=list)
    delivered: list[bytes] = field(default_factory=list)

    def answer(self, action: rules.Action) -> rules.Event:
        if isinstance(action, rules.Boot):
            return Booted("89" * 16, "eim", "1.2")
        if isinstance(action, rules.ReadNotifications):
            return NotificationsRead(
                tuple(rules.Notice(n, b"\x30\x00") for n in range(self.notices))
            )
        if isinstance(action, rules.Poll):
            self.polls += 1
            if not self.packages:
                return NoPackage()
            self.packages -= 1
            return PackageReceived(KIND, b"")
        if isinstance(action, rules.HandlePackage):
            result = b"\xbf\x51\x02\x02" + len(self.made).to_bytes(2, "big")
            self.made.append(result)
            return PackageHandled(result)
        if isinstance(action, rules.Sleep):
            return rules.Slept()
        if isinstance(action, (rules.Deliver, rules.HandOver)):
            what = self.deliveries()
            if what == "ok":
                if isinstance(action, rules.Deliver):
                    self.delivered.append(action.pending.result)
                return Delivered()
            self.failed += 1
            return DeliveryFailed(what, unreachable=what == "unreachable")
        raise AssertionError(f"unexpected {action}")


@given(
    answers=st.lists(st.sampled_from(["ok", "refused", "unreachable"]), min_size=1, max_size=40),
    attempts=st.integers(1, 4),
    packages=st.integers(0, 4),
    notices=st.integers(0, 3),
)
def test_no_cycle_spends_more_than_the_budget_and_no_result_is_lost(
    answers: list[str], attempts: int, packages: int, notices: int
) -> None:
    feed = iter(answers)
    env = Environment(lambda: next(feed, "refused"), packages, notices)
    m = Memory(Policy(report_attempts=attempts, max_packages=8))
    for _ in range(4):
        env.failed, polls_before = 0, env.polls
        m, actions = step(m, CycleStarted(0.0))
        while True:
            request = [a for a in actions if not isinstance(a, rules.Persist | rules.Remove)]
            assert len(request) <= 1
            if isinstance(request[0], rules.End):
                outcome = request[0].outcome
                break
            m, actions = step(m, env.answer(request[0]))
        assert env.failed <= attempts  # rule 2
        assert m.state is State.IDLE
        if outcome.error is None or "getEimPackage" in outcome.error:
            assert env.polls > polls_before  # polling went on (rules 3, 4, 5)
        # rule 8: a result is delivered or still kept, never dropped
        kept = {p.result for p in m.saved.pending}
        assert set(env.made) == kept | set(env.delivered)
        assert not kept & set(env.delivered)


def test_evolve_copies_a_record_with_changes_and_leaves_the_original() -> None:
    m = rules.Memory(booted=True, failures=2)
    n = rules._evolve(m, failures=0, state=rules.State.POLL)
    assert (n.booted, n.failures, n.state) == (True, 0, rules.State.POLL)
    assert (m.failures, m.state) == (2, rules.State.IDLE)
    assert n == rules.Memory(booted=True, failures=0, state=rules.State.POLL)
    with pytest.raises(AttributeError):
        rules._evolve(m, no_such_field=1)
    with pytest.raises(TypeError):  # only slotted records without __post_init__

        @dataclass(frozen=True)
        class Plain:
            a: int = 0
            b: int = 0

        rules._evolve(Plain())
