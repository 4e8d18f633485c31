"""The profile state machine: one example test per rule, and a model-based stateful test."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from euicc_protocol.iccid import iccid_to_ef
from euicc_sim import profiles as pm
from euicc_sim.profiles import Actor, ResetOption
from euicc_sim.state import (
    CardState,
    NotificationConfig,
    NotificationEvent,
    Profile,
    ProfileClass,
    ProfileState,
)

ALL_EVENTS = frozenset(NotificationEvent)
NOTIFY_ALL = (NotificationConfig(ALL_EVENTS, "smdp.example.com"),)


def iccid(n: int) -> bytes:
    return iccid_to_ef(f"89000000000000000{n:02d}")


def card(*specs: Profile, **kw: object) -> CardState:
    """A card with the given profiles installed through install() (AIDs allocated)."""
    state = CardState(**kw)  # type: ignore[arg-type]
    for p in specs:
        wanted = p.state
        t = pm.install(state, p, max_profiles=100)
        assert t.ok
        state = t.state
        if wanted is ProfileState.ENABLED:
            profiles = tuple(
                replace(q, state=ProfileState.ENABLED) if q.iccid == p.iccid else q
                for q in state.profiles
            )
            state = replace(state, profiles=profiles)
    return state


def prof(n: int, **kw: object) -> Profile:
    kw.setdefault("notification_config", NOTIFY_ALL)
    return Profile(iccid=iccid(n), isdp_aid=b"", **kw)  # type: ignore[arg-type]


def states(state: CardState) -> dict[bytes, ProfileState]:
    return {p.iccid: p.state for p in state.profiles}


def events(t: pm.Transition) -> list[tuple[NotificationEvent, bytes]]:
    return [(e, p.iccid) for e, p in t.events]


ENABLED = ProfileState.ENABLED
DISABLED = ProfileState.DISABLED
OP, TEST, PROV = ProfileClass.OPERATIONAL, ProfileClass.TEST, ProfileClass.PROVISIONING


# --- rule 2: lookup -------------------------------------------------------------------------


def test_unknown_iccid_is_not_found() -> None:
    s = card(prof(1))
    for op in (pm.enable, pm.disable, pm.delete):
        t = op(s, iccid=iccid(9))
        assert (t.result, t.state, t.events) == (pm.ICCID_OR_AID_NOT_FOUND, s, ())


def test_profile_can_be_named_by_isdp_aid() -> None:
    s = card(prof(1), prof(2))
    aid = s.profile_by_iccid(iccid(2)).isdp_aid  # type: ignore[union-attr]
    t = pm.enable(s, isdp_aid=aid)
    assert t.ok and states(t.state)[iccid(2)] is ENABLED
    assert pm.enable(s, isdp_aid=pm.isdp_aid(0x99)).result == pm.ICCID_OR_AID_NOT_FOUND


def test_target_must_be_named_exactly_once() -> None:
    s = card(prof(1))
    with pytest.raises(ValueError):
        pm.enable(s)
    with pytest.raises(ValueError):
        pm.enable(s, iccid=iccid(1), isdp_aid=s.profiles[0].isdp_aid)


# --- rules 1, 4, 5: the state table ---------------------------------------------------------


def test_enable_disabled_profile() -> None:
    t = pm.enable(card(prof(1)), iccid=iccid(1))
    assert t.ok and states(t.state) == {iccid(1): ENABLED}
    assert events(t) == [(NotificationEvent.ENABLE, iccid(1))]
    assert t.events[0][1].state is ENABLED  # the event carries the profile as it is now


def test_enable_enabled_profile_is_refused() -> None:
    s = card(prof(1, state=ENABLED))
    t = pm.enable(s, iccid=iccid(1))
    assert (t.result, t.state, t.events) == (pm.PROFILE_NOT_IN_DISABLED_STATE, s, ())


def test_enable_second_profile_disables_first() -> None:
    s = card(prof(1, state=ENABLED), prof(2))
    t = pm.enable(s, iccid=iccid(2))
    assert t.ok and states(t.state) == {iccid(1): DISABLED, iccid(2): ENABLED}
    assert events(t) == [
        (NotificationEvent.DISABLE, iccid(1)),
        (NotificationEvent.ENABLE, iccid(2)),
    ]


def test_disable_enabled_profile() -> None:
    t = pm.disable(card(prof(1, state=ENABLED)), iccid=iccid(1))
    assert t.ok and states(t.state) == {iccid(1): DISABLED}
    assert events(t) == [(NotificationEvent.DISABLE, iccid(1))]


def test_disable_disabled_profile_is_refused() -> None:
    s = card(prof(1))
    assert pm.disable(s, iccid=iccid(1)).result == pm.PROFILE_NOT_IN_ENABLED_STATE


def test_delete_disabled_profile() -> None:
    s = card(prof(1), prof(2))
    t = pm.delete(s, iccid=iccid(1))
    assert t.ok and states(t.state) == {iccid(2): DISABLED}
    assert events(t) == [(NotificationEvent.DELETE, iccid(1))]


def test_delete_enabled_profile_is_refused() -> None:
    s = card(prof(1, state=ENABLED))
    t = pm.delete(s, iccid=iccid(1))
    assert (t.result, t.state) == (pm.PROFILE_NOT_IN_DISABLED_STATE, s)


def test_state_is_checked_before_policy() -> None:
    s = card(prof(1, ppr1=True, ppr2=True))
    assert pm.disable(s, iccid=iccid(1)).result == pm.PROFILE_NOT_IN_ENABLED_STATE
    s = card(prof(1, ppr1=True, ppr2=True, state=ENABLED))
    assert pm.delete(s, iccid=iccid(1)).result == pm.PROFILE_NOT_IN_DISABLED_STATE


# --- rules 5, 6: PPRs -----------------------------------------------------------------------


def test_ppr1_forbids_disable() -> None:
    s = card(prof(1, ppr1=True, state=ENABLED))
    t = pm.disable(s, iccid=iccid(1))
    assert (t.result, t.state, t.events) == (pm.DISALLOWED_BY_POLICY, s, ())


def test_ppr1_on_enabled_profile_forbids_enabling_another() -> None:
    s = card(prof(1, ppr1=True, state=ENABLED), prof(2))
    t = pm.enable(s, iccid=iccid(2))
    assert (t.result, t.state, t.events) == (pm.DISALLOWED_BY_POLICY, s, ())


def test_ppr1_on_target_does_not_forbid_enabling_it() -> None:
    s = card(prof(1, state=ENABLED), prof(2, ppr1=True))
    assert pm.enable(s, iccid=iccid(2)).ok


def test_ppr2_forbids_delete() -> None:
    s = card(prof(1, ppr2=True))
    t = pm.delete(s, iccid=iccid(1))
    assert (t.result, t.state) == (pm.DISALLOWED_BY_POLICY, s)


def test_pprs_do_not_apply_to_test_profiles() -> None:
    s = card(prof(1, profile_class=TEST, ppr1=True, ppr2=True, state=ENABLED), prof(2))
    assert pm.enable(s, iccid=iccid(2)).ok
    t = pm.disable(s, iccid=iccid(1))
    assert t.ok
    assert pm.delete(t.state, iccid=iccid(1)).ok


# --- rule 7: provisioning profiles ----------------------------------------------------------


def test_lpa_cannot_manage_provisioning_profile() -> None:
    s = card(prof(1, profile_class=PROV))
    assert pm.enable(s, iccid=iccid(1)).result == pm.DISALLOWED_BY_POLICY
    assert pm.delete(s, iccid=iccid(1)).result == pm.DISALLOWED_BY_POLICY
    s = card(prof(1, profile_class=PROV, state=ENABLED))
    assert pm.disable(s, iccid=iccid(1)).result == pm.DISALLOWED_BY_POLICY


def test_enabling_another_profile_disables_provisioning_profile() -> None:
    s = card(prof(1, profile_class=PROV, state=ENABLED, ppr1=True), prof(2))
    t = pm.enable(s, iccid=iccid(2))
    assert t.ok and states(t.state) == {iccid(1): DISABLED, iccid(2): ENABLED}


def test_eim_may_manage_provisioning_profile() -> None:
    s = card(prof(1, profile_class=PROV))
    t = pm.enable(s, iccid=iccid(1), actor=Actor.EIM)
    assert t.ok
    t = pm.disable(t.state, iccid=iccid(1), actor=Actor.EIM)
    assert t.ok
    assert pm.delete(t.state, iccid=iccid(1), actor=Actor.EIM).ok


def test_eim_is_bound_by_pprs() -> None:
    s = card(prof(1, ppr1=True, ppr2=True, state=ENABLED), prof(2, ppr2=True))
    assert pm.disable(s, iccid=iccid(1), actor=Actor.EIM).result == pm.DISALLOWED_BY_POLICY
    assert pm.delete(s, iccid=iccid(2), actor=Actor.EIM).result == pm.DISALLOWED_BY_POLICY


# --- rule 8: events -------------------------------------------------------------------------


def test_events_only_for_configured_operations() -> None:
    only_enable = (NotificationConfig(frozenset({NotificationEvent.ENABLE}), "a.example"),)
    s = card(
        prof(1, state=ENABLED, notification_config=()),
        prof(2, notification_config=only_enable),
    )
    t = pm.enable(s, iccid=iccid(2))
    assert events(t) == [(NotificationEvent.ENABLE, iccid(2))]
    t = pm.disable(t.state, iccid=iccid(2))
    assert t.ok and t.events == ()


def test_notification_addresses_lists_every_matching_entry() -> None:
    p = prof(
        1,
        notification_config=(
            NotificationConfig(frozenset({NotificationEvent.ENABLE}), "a.example"),
            NotificationConfig(frozenset({NotificationEvent.DELETE}), "b.example"),
            NotificationConfig(ALL_EVENTS, "c.example"),
        ),
    )
    assert pm.notification_addresses(p, NotificationEvent.ENABLE) == ("a.example", "c.example")
    assert pm.notification_addresses(p, NotificationEvent.DISABLE) == ("c.example",)


def test_install_reports_no_event() -> None:
    assert pm.install(CardState(), prof(1), max_profiles=5).events == ()


# --- rule 9: nickname -----------------------------------------------------------------------


def test_set_nickname() -> None:
    s = card(prof(1))
    t = pm.set_nickname(s, iccid(1), "wörk ✓")
    assert t.ok and t.state.profiles[0].nickname == "wörk ✓"
    assert pm.set_nickname(t.state, iccid(1), "").state.profiles[0].nickname is None


def test_set_nickname_unknown_iccid() -> None:
    assert pm.set_nickname(card(prof(1)), iccid(2), "x").result == pm.ICCID_NOT_FOUND


def test_nickname_longer_than_64_characters_is_refused() -> None:
    s = card(prof(1))
    assert pm.set_nickname(s, iccid(1), "é" * 64).ok  # 64 characters, 128 UTF-8 bytes
    t = pm.set_nickname(s, iccid(1), "x" * 65)
    assert (t.result, t.state) == (pm.UNDEFINED_ERROR, s)


# --- rule 10: memory reset ------------------------------------------------------------------


def _reset_card() -> CardState:
    return card(
        prof(1, state=ENABLED, ppr1=True, ppr2=True),
        prof(2, profile_class=TEST),
        prof(3, profile_class=TEST, preloaded=True),
        prof(4, profile_class=PROV),
        default_dp_address="smdp.example.com",
    )


@pytest.mark.parametrize(
    ("option", "gone"),
    [
        (ResetOption.DELETE_OPERATIONAL_PROFILES, {1}),
        (ResetOption.DELETE_FIELD_LOADED_TEST_PROFILES, {2}),
        (ResetOption.DELETE_PRELOADED_TEST_PROFILES, {3}),
        (ResetOption.DELETE_PROVISIONING_PROFILES, {4}),
    ],
)
def test_memory_reset_deletes_its_class_regardless_of_state_and_pprs(
    option: ResetOption, gone: set[int]
) -> None:
    s = _reset_card()
    t = pm.memory_reset(s, {option})
    assert t.ok and t.events == ()
    assert set(states(t.state)) == {iccid(n) for n in {1, 2, 3, 4} - gone}
    assert t.state.default_dp_address == "smdp.example.com"


def test_memory_reset_default_smdp_address() -> None:
    t = pm.memory_reset(_reset_card(), {ResetOption.RESET_DEFAULT_SMDP_ADDRESS})
    assert t.ok and t.state.default_dp_address is None and len(t.state.profiles) == 4
    again = pm.memory_reset(t.state, {ResetOption.RESET_DEFAULT_SMDP_ADDRESS})
    assert again.result == pm.NOTHING_TO_DELETE and again.state == t.state


def test_memory_reset_with_nothing_to_delete() -> None:
    s = card(prof(2, profile_class=TEST))
    t = pm.memory_reset(s, {ResetOption.DELETE_OPERATIONAL_PROFILES})
    assert (t.result, t.state) == (pm.NOTHING_TO_DELETE, s)
    assert pm.memory_reset(s, set()).result == pm.NOTHING_TO_DELETE


def test_memory_reset_keeps_pending_notifications_and_creates_none() -> None:
    from euicc_sim.state import PendingNotification

    pending = PendingNotification(5, NotificationEvent.ENABLE, "smdp.example.com", iccid(1), b"0")
    s = replace(_reset_card(), notifications=(pending,))
    t = pm.memory_reset(s, {0, 1, 2, 3, 4})
    assert t.ok and t.state.profiles == () and t.events == ()
    assert t.state.notifications == (pending,)


def test_memory_reset_eim_options_are_reported_apart() -> None:
    s = _reset_card()
    t = pm.memory_reset(s, {ResetOption.RESET_EIM_CONFIG_DATA})
    assert (t.result, t.reset_eim_result, t.reset_immediate_enable_config_result) == (
        pm.NOTHING_TO_DELETE,
        pm.NOTHING_TO_DELETE,
        None,
    )
    t = pm.memory_reset(s, {0, ResetOption.RESET_IMMEDIATE_ENABLE_CONFIG})
    assert (t.result, t.reset_eim_result, t.reset_immediate_enable_config_result) == (
        pm.OK,
        None,
        pm.OK,
    )


# --- rule 11: install -----------------------------------------------------------------------


def test_install_adds_disabled_profile_with_next_isdp_aid() -> None:
    s = CardState()
    t = pm.install(s, prof(1, state=ENABLED, package_size=100), max_profiles=5)
    assert t.ok
    (p,) = t.state.profiles
    assert p.state is DISABLED
    assert p.isdp_aid == bytes.fromhex("A0000005591010FFFFFFFF8900001000")
    assert t.state.next_isdp_index == 0x11
    t = pm.install(t.state, prof(2), max_profiles=5)
    assert t.state.profiles[1].isdp_aid == bytes.fromhex("A0000005591010FFFFFFFF8900001100")


def test_install_skips_isdp_aids_in_use() -> None:
    # A pre-loaded profile placed by the factory on the AID the index points at.
    s = CardState(profiles=(replace(prof(1), isdp_aid=pm.isdp_aid(0x10)),))
    assert pm.next_isdp_aid(s) == pm.isdp_aid(0x11)
    t = pm.install(s, prof(2), max_profiles=5)
    assert t.state.profiles[1].isdp_aid == pm.isdp_aid(0x11)
    assert t.state.next_isdp_index == 0x12


def test_install_existing_iccid_is_refused() -> None:
    s = card(prof(1))
    t = pm.install(s, prof(1), max_profiles=5)
    assert (t.result, t.state) == (pm.INSTALL_FAILED_ICCID_ALREADY_EXISTS, s)


def test_install_beyond_max_profiles_is_refused() -> None:
    s = card(prof(1), prof(2))
    t = pm.install(s, prof(3), max_profiles=2)
    assert (t.result, t.state) == (pm.INSTALL_FAILED_INSUFFICIENT_MEMORY, s)


def test_install_beyond_package_capacity_is_refused() -> None:
    s = card(prof(1, package_size=600))
    assert pm.install(s, prof(2, package_size=400), max_profiles=9, max_package_bytes=1000).ok
    t = pm.install(s, prof(2, package_size=401), max_profiles=9, max_package_bytes=1000)
    assert t.result == pm.INSTALL_FAILED_INSUFFICIENT_MEMORY


def test_install_fails_when_isdp_index_space_is_exhausted() -> None:
    s = CardState(next_isdp_index=pm.MAX_ISDP_INDEX + 1)
    assert pm.next_isdp_aid(s) is None
    assert pm.install(s, prof(1), max_profiles=5).result == pm.INSTALL_FAILED_UNKNOWN_ERROR


# --- model-based test -----------------------------------------------------------------------

MAX_PROFILES = 5
MAX_BYTES = 40_000
POOL = range(8)  # ICCIDs the machine draws from; some are never installed


@dataclass
class ModelProfile:
    enabled: bool
    cls: ProfileClass
    ppr1: bool
    ppr2: bool
    preloaded: bool
    size: int
    aid: bytes
    notify: frozenset[NotificationEvent]
    nickname: str | None = None


@dataclass
class Model:
    """The rules written out plainly, independent of the module under test."""

    profiles: dict[int, ModelProfile] = field(default_factory=dict)
    next_index: int = 0x10
    dp_address: str | None = None

    def by_aid(self, aid: bytes) -> int | None:
        return next((n for n, p in self.profiles.items() if p.aid == aid), None)

    def enabled(self) -> int | None:
        return next((n for n, p in self.profiles.items() if p.enabled), None)

    def enable(self, n: int | None, eim: bool) -> tuple[int, list[tuple[str, int]]]:
        if n is None or n not in self.profiles:
            return 1, []
        p = self.profiles[n]
        if p.enabled:
            return 2, []
        if p.cls is PROV and not eim:
            return 3, []
        out = []
        cur = self.enabled()
        if cur is not None:
            c = self.profiles[cur]
            if c.cls is OP and c.ppr1:
                return 3, []
            c.enabled = False
            if NotificationEvent.DISABLE in c.notify:
                out.append(("disable", cur))
        p.enabled = True
        if NotificationEvent.ENABLE in p.notify:
            out.append(("enable", n))
        return 0, out

    def disable(self, n: int | None, eim: bool) -> tuple[int, list[tuple[str, int]]]:
        if n is None or n not in self.profiles:
            return 1, []
        p = self.profiles[n]
        if not p.enabled:
            return 2, []
        if p.cls is PROV and not eim:
            return 3, []
        if p.cls is OP and p.ppr1:
            return 3, []
        p.enabled = False
        return 0, [("disable", n)] if NotificationEvent.DISABLE in p.notify else []

    def delete(self, n: int | None, eim: bool) -> tuple[int, list[tuple[str, int]]]:
        if n is None or n not in self.profiles:
            return 1, []
        p = self.profiles[n]
        if p.enabled:
            return 2, []
        if p.cls is PROV and not eim:
            return 3, []
        if p.cls is OP and p.ppr2:
            return 3, []
        del self.profiles[n]
        return 0, [("delete", n)] if NotificationEvent.DELETE in p.notify else []

    def memory_reset(self, options: frozenset[int]) -> int:
        doomed = []
        for n, p in self.profiles.items():
            if p.cls is OP and 0 in options:
                doomed.append(n)
            elif p.cls is TEST and not p.preloaded and 1 in options:
                doomed.append(n)
            elif p.cls is TEST and p.preloaded and 3 in options:
                doomed.append(n)
            elif p.cls is PROV and 4 in options:
                doomed.append(n)
        for n in doomed:
            del self.profiles[n]
        reset_address = 2 in options and self.dp_address is not None
        if 2 in options:
            self.dp_address = None
        return 0 if doomed or reset_address else 1

    def install(self, n: int, mp: ModelProfile) -> int:
        if n in self.profiles:
            return 9
        if len(self.profiles) >= MAX_PROFILES:
            return 10
        if sum(p.size for p in self.profiles.values()) + mp.size > MAX_BYTES:
            return 10
        mp.aid = bytes.fromhex("A0000005591010FFFFFFFF8900") + bytes([0, self.next_index, 0])
        self.next_index += 1
        self.profiles[n] = mp
        return 0


EVENT_NAMES = {
    NotificationEvent.ENABLE: "enable",
    NotificationEvent.DISABLE: "disable",
    NotificationEvent.DELETE: "delete",
}


class ProfileMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = CardState()
        self.model = Model()

    @initialize(address=st.none() | st.just("smdp.example.com"))
    def start(self, address: str | None) -> None:
        self.state = CardState(default_dp_address=address)
        self.model.dp_address = address

    def _check(self, t: pm.Transition, result: int, expected: list[tuple[str, int]]) -> None:
        assert t.result == result
        got = [(EVENT_NAMES[e], int(iccid_to_digits_index(p.iccid))) for e, p in t.events]
        assert got == expected
        if result != 0:
            assert t.state == self.state
        self.state = t.state

    def _target(self, n: int, by_aid: bool) -> dict[str, bytes]:
        if by_aid:
            p = self.model.profiles.get(n)
            return {"isdp_aid": p.aid if p else pm.isdp_aid(0xFF00 + n)}
        return {"iccid": iccid(n)}

    @rule(
        n=st.sampled_from(POOL),
        cls=st.sampled_from(ProfileClass),
        ppr1=st.booleans(),
        ppr2=st.booleans(),
        preloaded=st.booleans(),
        size=st.integers(0, 15_000),
        notify=st.frozensets(st.sampled_from(NotificationEvent)),
    )
    def install(
        self,
        n: int,
        cls: ProfileClass,
        ppr1: bool,
        ppr2: bool,
        preloaded: bool,
        size: int,
        notify: frozenset[NotificationEvent],
    ) -> None:
        mp = ModelProfile(False, cls, ppr1, ppr2, preloaded, size, b"", notify)
        expected = self.model.install(n, mp)
        config = (NotificationConfig(notify, "x.example"),) if notify else ()
        p = Profile(
            iccid=iccid(n),
            isdp_aid=b"",
            profile_class=cls,
            ppr1=ppr1,
            ppr2=ppr2,
            preloaded=preloaded,
            package_size=size,
            notification_config=config,
        )
        t = pm.install(self.state, p, max_profiles=MAX_PROFILES, max_package_bytes=MAX_BYTES)
        self._check(t, expected, [])

    @rule(n=st.sampled_from(POOL), by_aid=st.booleans(), eim=st.booleans())
    def enable(self, n: int, by_aid: bool, eim: bool) -> None:
        actor = Actor.EIM if eim else Actor.LPA
        t = pm.enable(self.state, **self._target(n, by_aid), actor=actor)
        self._check(t, *self.model.enable(n, eim))

    @rule(n=st.sampled_from(POOL), by_aid=st.booleans(), eim=st.booleans())
    def disable(self, n: int, by_aid: bool, eim: bool) -> None:
        actor = Actor.EIM if eim else Actor.LPA
        t = pm.disable(self.state, **self._target(n, by_aid), actor=actor)
        self._check(t, *self.model.disable(n, eim))

    @rule(n=st.sampled_from(POOL), by_aid=st.booleans(), eim=st.booleans())
    def delete(self, n: int, by_aid: bool, eim: bool) -> None:
        actor = Actor.EIM if eim else Actor.LPA
        t = pm.delete(self.state, **self._target(n, by_aid), actor=actor)
        self._check(t, *self.model.delete(n, eim))

    @rule(n=st.sampled_from(POOL), nickname=st.none() | st.text(max_size=70))
    def set_nickname(self, n: int, nickname: str | None) -> None:
        t = pm.set_nickname(self.state, iccid(n), nickname)
        if n not in self.model.profiles:
            expected = 1
        elif nickname is not None and len(nickname) > 64:
            expected = 127
        else:
            expected = 0
            self.model.profiles[n].nickname = nickname or None
        self._check(t, expected, [])

    @rule(options=st.frozensets(st.integers(0, 8)))
    def memory_reset(self, options: frozenset[int]) -> None:
        t = pm.memory_reset(self.state, options)
        self._check(t, self.model.memory_reset(options), [])

    @invariant()
    def agrees_with_model(self) -> None:
        got = {
            iccid_to_digits_index(p.iccid): (
                p.state is ENABLED,
                p.profile_class,
                p.isdp_aid,
                p.nickname,
            )
            for p in self.state.profiles
        }
        want = {n: (p.enabled, p.cls, p.aid, p.nickname) for n, p in self.model.profiles.items()}
        assert got == want
        assert self.state.default_dp_address == self.model.dp_address
        assert self.state.next_isdp_index == self.model.next_index

    @invariant()
    def at_most_one_enabled(self) -> None:
        assert sum(p.state is ENABLED for p in self.state.profiles) <= 1
        assert len({p.isdp_aid for p in self.state.profiles}) == len(self.state.profiles)


def iccid_to_digits_index(ef: bytes) -> int:
    """The pool index ``n`` of ``iccid(n)``."""
    return next(n for n in POOL if iccid(n) == ef)


ProfileMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestProfileMachine = ProfileMachine.TestCase
