"""Model-based test of the profile rules: random ES10 operations on a card against a reference
model written here, independently of the card, from the rules stated at the top of
``euicc_sim/profiles.py``.

After every step the card's answer (ok or the Es10Error code) must be the one the model
predicts, and GetProfilesInfo, ListNotification and the default SM-DP+ address must show the
model's state, with at most one profile enabled. Notifications keep their exact bytes and
verify under the eUICC key for as long as they exist.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from backends import CardBackend, CardProfile, ProfileSpec
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from euicc_protocol import crypto, pki, tlv
from euicc_protocol.iccid import iccid_to_ef
from ipa.errors import Es10Error
from ipa.es10 import Es10Client
from ipa.types import NotificationEvent, PendingNotification, ProfileClass, ProfileState

TEST = ProfileClass.TEST
PROVISIONING = ProfileClass.PROVISIONING
OPERATIONAL = ProfileClass.OPERATIONAL
ENABLE = NotificationEvent.NOTIFICATION_ENABLE
DISABLE = NotificationEvent.NOTIFICATION_DISABLE
DELETE = NotificationEvent.NOTIFICATION_DELETE

OK = 0
NOT_FOUND = 1  # iccidOrAidNotFound, iccidNotFound, nothingToDelete
WRONG_STATE = 2  # profileNotInDisabledState, profileNotInEnabledState
POLICY = 3  # disallowedByPolicy
UNDEFINED = 127

UNKNOWN_ICCID = "8949449999999990999"
UNKNOWN_AID = bytes.fromhex("A0000005591010FFFFFFFF8900FFFE00")
DP_ADDRESSES = ["", "smdp.model.example.com", "other-smdp.model.example.org"]

# About ten seconds per framing; derandomized so every run is the same. Shrinking is off: every
# step costs several ES10 exchanges, so shrinking a failure takes Hypothesis' full five-minute
# budget. A failure prints its (at most 50) steps at once; add Phase.shrink to minimise one.
SETTINGS = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# -- the reference model -----------------------------------------------------------------------


@dataclass
class Prof:
    iccid: str
    aid: bytes
    cls: ProfileClass
    ppr1: bool
    ppr2: bool
    address: str | None  # where its enable/disable/delete notifications go, None: no notifications
    enabled: bool = False
    nickname: str | None = None
    preloaded: bool = True


class Model:
    """The card as plain data, changed by the rules as written in profiles.py."""

    def __init__(self, profiles: list[Prof]) -> None:
        self.profiles = {p.iccid: p for p in profiles}
        self.notifications: dict[int, tuple[NotificationEvent, str, str]] = {}
        self.next_seq = 1
        self.default_dp: str | None = None

    def enabled(self) -> Prof | None:
        return next((p for p in self.profiles.values() if p.enabled), None)

    def _notify(self, p: Prof, event: NotificationEvent) -> None:
        if p.address is not None:
            self.notifications[self.next_seq] = (event, p.iccid, p.address)
            self.next_seq += 1

    @staticmethod
    def _ppr(p: Prof, which: str) -> bool:
        # PPRs bind operational profiles only.
        return p.cls is OPERATIONAL and getattr(p, which)

    def enable(self, p: Prof | None) -> int:
        if p is None:
            return NOT_FOUND
        if p.enabled:
            return WRONG_STATE
        if p.cls is PROVISIONING:
            return POLICY
        current = self.enabled()
        if current is not None and self._ppr(current, "ppr1"):
            return POLICY
        if current is not None:
            current.enabled = False
            self._notify(current, DISABLE)
        p.enabled = True
        self._notify(p, ENABLE)
        return OK

    def disable(self, p: Prof | None) -> int:
        if p is None:
            return NOT_FOUND
        if not p.enabled:
            return WRONG_STATE
        if p.cls is PROVISIONING or self._ppr(p, "ppr1"):
            return POLICY
        p.enabled = False
        self._notify(p, DISABLE)
        return OK

    def delete(self, p: Prof | None) -> int:
        if p is None:
            return NOT_FOUND
        if p.enabled:
            return WRONG_STATE
        if p.cls is PROVISIONING or self._ppr(p, "ppr2"):
            return POLICY
        del self.profiles[p.iccid]
        self._notify(p, DELETE)
        return OK

    def set_nickname(self, p: Prof | None, nickname: str) -> int:
        if p is None:
            return NOT_FOUND
        if len(nickname) > 64:
            return UNDEFINED
        p.nickname = nickname or None
        return OK

    def memory_reset(self, options: frozenset[int]) -> tuple[int, int | None]:
        """(resetResult, resetEimResult or None) for the resetOptions bit positions."""
        doomed = {
            p.iccid
            for p in self.profiles.values()
            if (0 in options and p.cls is OPERATIONAL)
            or (1 in options and p.cls is TEST and not p.preloaded)
            or (3 in options and p.cls is TEST and p.preloaded)
            or (4 in options and p.cls is PROVISIONING)
        }
        changed = bool(doomed)
        for iccid in doomed:
            del self.profiles[iccid]
        if 2 in options and self.default_dp is not None:
            self.default_dp = None
            changed = True
        eim = NOT_FOUND if 5 in options else None  # no eIM configuration: nothing to delete
        return (OK if changed else NOT_FOUND), eim

    def remove_notification(self, seq: int) -> int:
        if seq not in self.notifications:
            return NOT_FOUND
        del self.notifications[seq]
        return OK


# -- the machine -------------------------------------------------------------------------------


def outcome(call: Callable[..., Any], **kwargs: Any) -> int:
    """OK, or the code of the Es10Error the call raised."""
    try:
        call(**kwargs)
    except Es10Error as exc:
        return exc.code
    return OK


def verify_signature(note: PendingNotification) -> None:
    raw = note.raw
    outer = tlv.read_tlv(raw, 0)
    tbs, sig, euicc, _eum = tlv.iter_tlvs(raw, outer.value_start, outer.value_end)
    cert = pki.load_certificate(raw[sig.end : euicc.end])
    crypto.verify_raw(cert.public_key(), sig.value(raw), raw[outer.value_start : tbs.end])


profile_setup = st.tuples(st.booleans(), st.booleans(), st.booleans())  # ppr1, ppr2, notify
nicknames = st.text(alphabet=string.ascii_letters + string.digits + " -", max_size=64)


class ProfileMachine(RuleBasedStateMachine):
    """Subclassed per test with ``new_card`` set to a card factory."""

    new_card: Callable[[], CardBackend]

    def __init__(self) -> None:
        super().__init__()
        self.card: CardBackend | None = None
        self.es10: Es10Client
        self.pool: list[CardProfile] = []
        self.model: Model
        self.seen: dict[int, bytes] = {}
        self.steps_since_reset = 0

    @initialize(
        first=profile_setup,
        second=profile_setup,
        others=st.lists(
            st.tuples(st.sampled_from([TEST, PROVISIONING, OPERATIONAL]), profile_setup),
            min_size=2,
            max_size=3,
        ),
        enabled=st.integers(0, 5),
    )
    def provision(self, first, second, others, enabled) -> None:
        # Always one operational and one test profile, then two or three of any class.
        setups = [(OPERATIONAL, first), (TEST, second), *others]
        specs = []
        for i, (cls, (ppr1, ppr2, notify)) in enumerate(setups):
            starts_enabled = i == enabled and cls is not PROVISIONING
            specs.append(
                ProfileSpec(
                    profile_class=cls,
                    ppr1=ppr1,
                    ppr2=ppr2,
                    notifications=notify,
                    enabled=starts_enabled,
                )
            )
        self.card = type(self).new_card()
        self.pool = self.card.provision(specs)
        self.es10 = self.card.client()
        self.model = Model(
            [
                Prof(
                    p.iccid,
                    p.isdp_aid,
                    p.spec.profile_class,
                    p.spec.ppr1,
                    p.spec.ppr2,
                    p.notification_address,
                    enabled=p.spec.enabled,
                )
                for p in self.pool
            ]
        )

    # -- helpers ----------------------------------------------------------------------------

    def target(self, index: int, by_aid: bool) -> tuple[dict[str, Any], Prof | None]:
        """Client arguments naming pool profile ``index`` (past the pool: an unknown one)."""
        if index >= len(self.pool):
            return ({"isdp_aid": UNKNOWN_AID} if by_aid else {"iccid": UNKNOWN_ICCID}), None
        p = self.pool[index]
        args = {"isdp_aid": p.isdp_aid} if by_aid else {"iccid": p.iccid}
        return args, self.model.profiles.get(p.iccid)

    # -- profile operations -----------------------------------------------------------------

    @rule(index=st.integers(0, 5), by_aid=st.booleans(), refresh=st.booleans())
    def enable(self, index: int, by_aid: bool, refresh: bool) -> None:
        args, p = self.target(index, by_aid)
        expected = self.model.enable(p)
        assert outcome(self.es10.enable_profile, **args, refresh=refresh) == expected

    @rule(index=st.integers(0, 5), by_aid=st.booleans(), refresh=st.booleans())
    def disable(self, index: int, by_aid: bool, refresh: bool) -> None:
        args, p = self.target(index, by_aid)
        expected = self.model.disable(p)
        assert outcome(self.es10.disable_profile, **args, refresh=refresh) == expected

    @rule(index=st.integers(0, 5), by_aid=st.booleans())
    def delete(self, index: int, by_aid: bool) -> None:
        args, p = self.target(index, by_aid)
        expected = self.model.delete(p)
        assert outcome(self.es10.delete_profile, **args) == expected

    @rule(index=st.integers(0, 5), nickname=nicknames)
    def set_nickname(self, index: int, nickname: str) -> None:
        args, p = self.target(index, False)
        expected = self.model.set_nickname(p, nickname)
        assert outcome(self.es10.set_nickname, iccid=args["iccid"], nickname=nickname) == expected

    @rule(index=st.integers(0, 5), extra=st.integers(1, 8))
    def set_too_long_nickname(self, index: int, extra: int) -> None:
        # Past the client's own check: the card must refuse it itself.
        args, p = self.target(index, False)
        nickname = "x" * (64 + extra)
        expected = self.model.set_nickname(p, nickname)
        request = {"iccid": iccid_to_ef(args["iccid"]), "profileNickname": nickname}
        answer = self.es10.transmit_es10("SetNicknameRequest", request)
        assert answer == {"setNicknameResult": expected}

    @rule(address=st.sampled_from(DP_ADDRESSES))
    def set_default_dp_address(self, address: str) -> None:
        self.es10.set_default_dp_address(address)
        self.model.default_dp = address or None

    @precondition(lambda self: self.steps_since_reset >= 8)
    @rule(
        # The model runs on a consumer card: eUICCMemoryReset in its SGP.22 form (BF34).
        sgp22=st.just(True),
        sgp22_options=st.sets(st.integers(0, 2), min_size=1),
        iot_options=st.sets(st.integers(0, 6), min_size=1),
    )
    def memory_reset(self, sgp22: bool, sgp22_options: set[int], iot_options: set[int]) -> None:
        self.steps_since_reset = 0
        options = frozenset(sgp22_options if sgp22 else iot_options)
        reset_result, eim_result = self.model.memory_reset(options)
        expected: tuple[int, str] | None = None
        if reset_result != OK:
            expected = (reset_result, "resetResult")
        elif eim_result not in (None, OK) and not sgp22:
            expected = (eim_result, "resetEimResult")
        try:
            result = self.es10.euicc_memory_reset(sorted(options), sgp22=sgp22)
        except Es10Error as exc:
            assert (exc.code, exc.field) == expected
        else:
            assert expected is None
            assert result.reset_result == OK
            if not sgp22 and 6 in options:
                assert result.reset_immediate_enable_config_result == OK

    # -- notifications ----------------------------------------------------------------------

    @rule(data=st.data())
    def remove_notification(self, data: st.DataObject) -> None:
        known = sorted(self.model.notifications)
        pick_known = known and data.draw(st.integers(0, 3), label="pick") > 0  # mostly known ones
        candidates = st.sampled_from(known) if pick_known else st.integers(0, self.model.next_seq)
        seq = data.draw(candidates, label="seq")
        expected = self.model.remove_notification(seq)
        assert outcome(self.es10.remove_notification_from_list, seq_number=seq) == expected

    @rule()
    def retrieve_all(self) -> None:
        notes = self.es10.retrieve_notifications_list()
        assert {n.seq_number for n in notes} == set(self.model.notifications)
        for note in notes:
            self.check_bytes(note)

    @rule(data=st.data())
    def retrieve_one(self, data: st.DataObject) -> None:
        known = sorted(self.model.notifications)
        seq = data.draw(
            st.sampled_from(known) if known else st.integers(0, self.model.next_seq), label="seq"
        )
        notes = self.es10.retrieve_notifications_list(seq_number=seq)
        assert [n.seq_number for n in notes] == ([seq] if seq in self.model.notifications else [])
        for note in notes:
            self.check_bytes(note)

    def check_bytes(self, note: PendingNotification) -> None:
        """The same notification always comes back as the same, validly signed, bytes."""
        previous = self.seen.get(note.seq_number)
        if previous is None:
            verify_signature(note)
            self.seen[note.seq_number] = note.raw
        else:
            assert note.raw == previous

    # -- power ------------------------------------------------------------------------------

    @rule()
    def power_cycle(self) -> None:
        assert self.card is not None
        self.es10 = self.card.power_cycle()

    @rule()
    def reopen(self) -> None:
        assert self.card is not None
        self.es10 = self.card.reopen()

    # -- the check after every step ---------------------------------------------------------

    @invariant()
    def card_matches_model(self) -> None:
        if self.card is None:
            return
        self.steps_since_reset += 1
        infos = self.es10.get_profiles_info()
        assert sum(p.profile_state is ProfileState.ENABLED for p in infos) <= 1
        got = {
            p.iccid: (
                p.isdp_aid,
                p.profile_state is ProfileState.ENABLED,
                p.profile_class,
                p.profile_nickname,
                "ppr1" in (p.profile_policy_rules or ()),
                "ppr2" in (p.profile_policy_rules or ()),
            )
            for p in infos
        }
        want = {
            p.iccid: (p.aid, p.enabled, p.cls, p.nickname, p.ppr1, p.ppr2)
            for p in self.model.profiles.values()
        }
        assert got == want
        notes = {
            m.seq_number: (m.event, m.iccid, m.notification_address)
            for m in self.es10.list_notification()
        }
        assert notes == self.model.notifications
        addresses = self.es10.get_euicc_configured_addresses()
        assert addresses.default_dp_address == self.model.default_dp


@pytest.mark.kind("consumer")  # local ES10c profile management
def test_card_follows_the_profile_model(card_factory) -> None:
    class Run(ProfileMachine):
        new_card = staticmethod(card_factory)

    examples = card_factory.examples(SETTINGS.max_examples)  # fewer where exchanges cost more
    run_state_machine_as_test(Run, settings=settings(SETTINGS, max_examples=examples))
