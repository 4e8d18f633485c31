"""The profile state machine: every rule about installing, enabling, disabling and deleting.

Everything that decides whether a profile operation is allowed, and what it changes, lives in
this module, as pure functions from one :class:`~euicc_sim.state.CardState` to the next. No
I/O, no signing, no numbering: callers (ES10c handlers, SGP.32 PSMOs and the IoT functions of
:mod:`euicc_sim.iot`) commit the new state and turn the returned events into signed
notifications.

Rules
=====

1. A profile is DISABLED or ENABLED. At most one profile on the card is ENABLED.
2. A target is named by ICCID (10 bytes, EF.ICCID coding) or by ISD-P AID. No such profile:
   iccidOrAidNotFound (1).
3. Checks run in this order: target found, target state, then policy. So disabling a
   disabled profile is profileNotInEnabledState (2) even when PPR1 is set.
4. The operations (table ``_RULES``):

   ========  ==============  ==============================  ========  =======  ============
   op        target must be  otherwise                       becomes   event    blocked by
   ========  ==============  ==============================  ========  =======  ============
   enable    DISABLED        profileNotInDisabledState (2)   ENABLED   enable   --
   disable   ENABLED         profileNotInEnabledState (2)    DISABLED  disable  PPR1
   delete    DISABLED        profileNotInDisabledState (2)   (gone)    delete   PPR2
   ========  ==============  ==============================  ========  =======  ============

   "blocked by" yields disallowedByPolicy (3).
5. Enabling B while A is enabled first disables A by the disable rule: A's PPR1 blocks the
   whole operation (3) and nothing changes. Otherwise the events are "disable A", "enable B".
6. PPRs bind operational profiles only; test and provisioning profiles ignore their PPR bits
   (table ``_CLASS_POLICY``).
7. Provisioning profiles (profileClass provisioning; these rules are our choice): the end user,
   i.e. :attr:`Actor.LPA` (ES10c), cannot enable, disable or delete one (disallowedByPolicy,
   after the state check). Enabling another profile does implicitly disable an enabled
   provisioning profile, since that is what a provisioning profile is for. :attr:`Actor.EIM`
   (SGP.32 PSMOs) may target them like test profiles.
8. Events: an operation reports ``(event, profile)`` only when one of that profile's
   notificationConfigurationInfo entries lists the event; the caller creates one
   notification per such entry (:func:`notification_addresses`). A failed operation returns
   the state unchanged and no events. Install reports no event: the ProfileInstallationResult
   (``BF37``) is always stored, on success and failure, by the download code.
9. SetNickname: unknown ICCID is iccidNotFound (1); more than 64 characters is
   undefinedError (127); an empty nickname clears it. Any profile, any class, any state.
10. eUICCMemoryReset deletes regardless of state and PPRs and of who is enabled (table
    ``_RESET_DELETES``): option 0 operational, 1 field-loaded test, 3 (SGP.32) pre-loaded
    test, 4 (SGP.32) provisioning profiles; option 2 clears the default SM-DP+ address.
    resetResult is ok (0) if options 0-4 deleted or reset anything, else nothingToDelete (1).
    It creates no notifications, and pending notifications of deleted profiles stay (they
    report operations that did happen). Options 5 and 6 (SGP.32) are answered in their own
    result fields: 5 (resetEimConfigData) deletes every eIM configuration (with its counter
    and association token; the token allocator is not reset, so tokens stay fresh) and the
    pending rollback, resetEimResult ok (0), or nothingToDelete (1) when no eIM is
    configured; 6 (resetImmediateEnableConfig) removes the immediate-enable configuration,
    resetImmediateEnableConfigResult ok (0) whether or not one was set. Stored eUICC package
    results stay, like notifications.
    Unknown option bits are ignored; which bits an interface accepts is the handler's call.
11. Install adds a DISABLED profile. Its ICCID already on the card:
    installFailedDueToIccidAlreadyExistsOnEuicc (9). No room (``max_profiles`` profiles, or
    the sum of ``package_size`` above ``max_package_bytes``):
    installFailedDueToInsufficientMemoryForProfile (10). The ISD-P AID is allocated from
    ``next_isdp_index`` (bytes 14-15 of ``A0000005591010FFFFFFFF89 00 xxxx 00``), skipping
    AIDs in use, and the index advances past it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from euicc_sim.state import (
    CardState,
    NotificationEvent,
    Profile,
    ProfileClass,
    ProfileState,
    evolve,
)

# ES10c / PSMO result codes (EnableProfileResult, DisableProfileResult, DeleteProfileResult,
# SetNicknameResult, EuiccMemoryResetResponse); the names overlap where the values do.
OK = 0
ICCID_OR_AID_NOT_FOUND = 1
ICCID_NOT_FOUND = 1
NOTHING_TO_DELETE = 1
PROFILE_NOT_IN_DISABLED_STATE = 2
PROFILE_NOT_IN_ENABLED_STATE = 2
DISALLOWED_BY_POLICY = 3
UNDEFINED_ERROR = 127

# ProfileInstallationResult errorReason values for install().
INSTALL_FAILED_ICCID_ALREADY_EXISTS = 9
INSTALL_FAILED_INSUFFICIENT_MEMORY = 10
INSTALL_FAILED_UNKNOWN_ERROR = 127

MAX_NICKNAME_CHARS = 64

ISDP_AID_PREFIX = bytes.fromhex("A0000005591010FFFFFFFF8900")
MAX_ISDP_INDEX = 0xFFFF


class Actor(enum.Enum):
    """Who asks: the end user through the LPA (ES10c) or an eIM through a PSMO (SGP.32)."""

    LPA = "lpa"
    EIM = "eim"


class Operation(enum.Enum):
    """The state-changing operations on one profile (ES10c functions, SGP.32 PSMOs)."""

    ENABLE = "enable"
    DISABLE = "disable"
    DELETE = "delete"


class ResetOption(enum.IntEnum):
    """Bit positions of eUICCMemoryReset resetOptions (SGP.22 0-2, SGP.32 v1.2 3-6)."""

    DELETE_OPERATIONAL_PROFILES = 0
    DELETE_FIELD_LOADED_TEST_PROFILES = 1
    RESET_DEFAULT_SMDP_ADDRESS = 2
    DELETE_PRELOADED_TEST_PROFILES = 3
    DELETE_PROVISIONING_PROFILES = 4
    RESET_EIM_CONFIG_DATA = 5
    RESET_IMMEDIATE_ENABLE_CONFIG = 6


Events = tuple[tuple[NotificationEvent, Profile], ...]


@dataclass(frozen=True)
class Transition:
    """The outcome of an operation: the next state, the result code, notifications to create."""

    state: CardState
    result: int
    events: Events = ()

    @property
    def ok(self) -> bool:
        return self.result == OK


@dataclass(frozen=True)
class MemoryResetTransition(Transition):
    """:class:`Transition` plus the SGP.32 v1.2 per-option results (``None`` = not asked)."""

    reset_eim_result: int | None = None
    reset_immediate_enable_config_result: int | None = None


@dataclass(frozen=True)
class _Rule:
    required: ProfileState
    wrong_state: int
    becomes: ProfileState | None  # None: the profile is removed
    event: NotificationEvent
    blocking_ppr: str | None  # Profile attribute that forbids the operation


_D, _E, _N = ProfileState.DISABLED, ProfileState.ENABLED, NotificationEvent
# fmt: off
_RULES: dict[Operation, _Rule] = {
    #                  must be  otherwise                      becomes  event        blocked by
    Operation.ENABLE:  _Rule(_D, PROFILE_NOT_IN_DISABLED_STATE, _E,   _N.ENABLE,  None),
    Operation.DISABLE: _Rule(_E, PROFILE_NOT_IN_ENABLED_STATE,  _D,   _N.DISABLE, "ppr1"),
    Operation.DELETE:  _Rule(_D, PROFILE_NOT_IN_DISABLED_STATE, None, _N.DELETE,  "ppr2"),
}
# fmt: on
_ENABLE, _DISABLE, _DELETE = (
    _RULES[Operation.ENABLE],
    _RULES[Operation.DISABLE],
    _RULES[Operation.DELETE],
)


@dataclass(frozen=True)
class _ClassPolicy:
    pprs_apply: bool
    lpa_may_target: bool


_CLASS_POLICY = {
    ProfileClass.TEST: _ClassPolicy(pprs_apply=False, lpa_may_target=True),
    ProfileClass.PROVISIONING: _ClassPolicy(pprs_apply=False, lpa_may_target=False),
    ProfileClass.OPERATIONAL: _ClassPolicy(pprs_apply=True, lpa_may_target=True),
}

_RESET_DELETES: dict[ResetOption, Callable[[Profile], bool]] = {
    ResetOption.DELETE_OPERATIONAL_PROFILES: (
        lambda p: p.profile_class == ProfileClass.OPERATIONAL
    ),
    ResetOption.DELETE_FIELD_LOADED_TEST_PROFILES: (
        lambda p: p.profile_class == ProfileClass.TEST and not p.preloaded
    ),
    ResetOption.DELETE_PRELOADED_TEST_PROFILES: (
        lambda p: p.profile_class == ProfileClass.TEST and p.preloaded
    ),
    ResetOption.DELETE_PROVISIONING_PROFILES: (
        lambda p: p.profile_class == ProfileClass.PROVISIONING
    ),
}


# --- lookup helpers -------------------------------------------------------------------------


def find_profile(
    state: CardState, *, iccid: bytes | None = None, isdp_aid: bytes | None = None
) -> Profile | None:
    """The profile named by exactly one of ``iccid`` (EF coding) or ``isdp_aid``."""
    if (iccid is None) == (isdp_aid is None):
        raise ValueError("name the profile by exactly one of iccid or isdp_aid")
    if iccid is not None:
        return state.profile_by_iccid(bytes(iccid))
    assert isdp_aid is not None
    return state.profile_by_aid(bytes(isdp_aid))


def notification_addresses(profile: Profile, event: NotificationEvent) -> tuple[str, ...]:
    """Addresses of the profile's notificationConfigurationInfo entries listing ``event``."""
    return tuple(c.address for c in profile.notification_config if event in c.events)


def isdp_aid(index: int) -> bytes:
    """The ISD-P AID with ``index`` in bytes 14-15 (``A0000005591010FFFFFFFF89 00 xxxx 00``)."""
    if not 0 <= index <= MAX_ISDP_INDEX:
        raise ValueError(f"ISD-P index out of range: {index}")
    return ISDP_AID_PREFIX + index.to_bytes(2, "big") + b"\x00"


# --- internals ------------------------------------------------------------------------------


def _refuse(state: CardState, result: int) -> Transition:
    return Transition(state, result)


def _refusal(rule: _Rule, profile: Profile, actor: Actor, *, implicit: bool = False) -> int:
    """The error code that forbids applying ``rule`` to ``profile``, or OK (rule 3 order)."""
    if profile.state != rule.required:
        return rule.wrong_state
    policy = _CLASS_POLICY[profile.profile_class]
    if not implicit and actor is Actor.LPA and not policy.lpa_may_target:
        return DISALLOWED_BY_POLICY
    if rule.blocking_ppr and policy.pprs_apply and getattr(profile, rule.blocking_ppr):
        return DISALLOWED_BY_POLICY
    return OK


def _apply(state: CardState, rule: _Rule, profile: Profile) -> tuple[CardState, Events]:
    """Apply ``rule`` to ``profile`` (already checked); return the state and its event."""
    if rule.becomes is None:
        profiles = tuple(p for p in state.profiles if p is not profile)
        after = profile
    else:
        after = evolve(profile, state=rule.becomes)
        profiles = tuple(after if p is profile else p for p in state.profiles)
    events: Events = ((rule.event, after),) if notification_addresses(after, rule.event) else ()
    return evolve(state, profiles=profiles), events


# --- operations -----------------------------------------------------------------------------


def enable(
    state: CardState,
    *,
    iccid: bytes | None = None,
    isdp_aid: bytes | None = None,
    actor: Actor = Actor.LPA,
) -> Transition:
    """Enable a profile, implicitly disabling the enabled one (rules 4, 5)."""
    target = find_profile(state, iccid=iccid, isdp_aid=isdp_aid)
    if target is None:
        return _refuse(state, ICCID_OR_AID_NOT_FOUND)
    if (err := _refusal(_ENABLE, target, actor)) != OK:
        return _refuse(state, err)
    events: Events = ()
    current = state.enabled_profile
    if current is not None:
        if (err := _refusal(_DISABLE, current, actor, implicit=True)) != OK:
            return _refuse(state, err)
        new_state, events = _apply(state, _DISABLE, current)
    else:
        new_state = state
    new_state, enable_events = _apply(new_state, _ENABLE, target)
    return Transition(new_state, OK, events + enable_events)


def _single(
    rule: _Rule,
    state: CardState,
    iccid: bytes | None,
    isdp_aid: bytes | None,
    actor: Actor,
) -> Transition:
    target = find_profile(state, iccid=iccid, isdp_aid=isdp_aid)
    if target is None:
        return _refuse(state, ICCID_OR_AID_NOT_FOUND)
    if (err := _refusal(rule, target, actor)) != OK:
        return _refuse(state, err)
    new_state, events = _apply(state, rule, target)
    return Transition(new_state, OK, events)


def disable(
    state: CardState,
    *,
    iccid: bytes | None = None,
    isdp_aid: bytes | None = None,
    actor: Actor = Actor.LPA,
) -> Transition:
    """Disable the enabled profile (rule 4: PPR1 forbids it for operational profiles)."""
    return _single(_DISABLE, state, iccid, isdp_aid, actor)


def delete(
    state: CardState,
    *,
    iccid: bytes | None = None,
    isdp_aid: bytes | None = None,
    actor: Actor = Actor.LPA,
) -> Transition:
    """Delete a disabled profile (rule 4: PPR2 forbids it for operational profiles)."""
    return _single(_DELETE, state, iccid, isdp_aid, actor)


def set_nickname(state: CardState, iccid: bytes, nickname: str | None) -> Transition:
    """Set or clear (``None`` or ``""``) a profile's nickname (rule 9)."""
    target = state.profile_by_iccid(bytes(iccid))
    if target is None:
        return _refuse(state, ICCID_NOT_FOUND)
    if nickname is not None and len(nickname) > MAX_NICKNAME_CHARS:
        return _refuse(state, UNDEFINED_ERROR)
    after = replace(target, nickname=nickname or None)
    profiles = tuple(after if p is target else p for p in state.profiles)
    return Transition(replace(state, profiles=profiles), OK)


def memory_reset(state: CardState, options: Iterable[int]) -> MemoryResetTransition:
    """eUICCMemoryReset with the given resetOptions bit positions (rule 10)."""
    wanted = frozenset(options)
    doomed = [rule for opt, rule in _RESET_DELETES.items() if opt in wanted]
    keep = tuple(p for p in state.profiles if not any(rule(p) for rule in doomed))
    changed = len(keep) != len(state.profiles)
    new_state = replace(state, profiles=keep) if changed else state
    if ResetOption.RESET_DEFAULT_SMDP_ADDRESS in wanted and state.default_dp_address is not None:
        new_state = replace(new_state, default_dp_address=None)
        changed = True
    eim: int | None = None
    iec: int | None = None
    if ResetOption.RESET_EIM_CONFIG_DATA in wanted:
        eim = OK if new_state.eim_configs else NOTHING_TO_DELETE
        if eim == OK:
            # A rollback would have to be reported to an eIM the card no longer knows.
            new_state = replace(new_state, eim_configs=(), rollback=None)
    if ResetOption.RESET_IMMEDIATE_ENABLE_CONFIG in wanted:
        iec = OK  # there is no error for "nothing configured"
        if new_state.immediate_enable is not None:
            new_state = replace(new_state, immediate_enable=None)
    return MemoryResetTransition(
        new_state,
        OK if changed else NOTHING_TO_DELETE,
        (),
        reset_eim_result=eim,
        reset_immediate_enable_config_result=iec,
    )


def next_isdp_aid(state: CardState) -> bytes | None:
    """The AID :func:`install` will allocate next, or ``None`` if the index space is used up."""
    index = _free_isdp_index(state)
    return None if index is None else isdp_aid(index)


def _free_isdp_index(state: CardState) -> int | None:
    used = {p.isdp_aid for p in state.profiles}
    for index in range(state.next_isdp_index, MAX_ISDP_INDEX + 1):
        if isdp_aid(index) not in used:
            return index
    return None


def install(
    state: CardState,
    profile: Profile,
    *,
    max_profiles: int,
    max_package_bytes: int | None = None,
) -> Transition:
    """Add ``profile`` as a new DISABLED profile with a freshly allocated ISD-P AID (rule 11).

    ``profile.isdp_aid`` and ``profile.state`` are ignored. On success the new profile is the
    last one in ``state.profiles``. ``result`` is a ProfileInstallationResult errorReason.
    """
    if state.profile_by_iccid(profile.iccid) is not None:
        return _refuse(state, INSTALL_FAILED_ICCID_ALREADY_EXISTS)
    if len(state.profiles) >= max_profiles:
        return _refuse(state, INSTALL_FAILED_INSUFFICIENT_MEMORY)
    if max_package_bytes is not None:
        used = sum(p.package_size for p in state.profiles)
        if used + profile.package_size > max_package_bytes:
            return _refuse(state, INSTALL_FAILED_INSUFFICIENT_MEMORY)
    index = _free_isdp_index(state)
    if index is None:
        return _refuse(state, INSTALL_FAILED_UNKNOWN_ERROR)
    new = replace(profile, isdp_aid=isdp_aid(index), state=ProfileState.DISABLED)
    return Transition(
        replace(state, profiles=state.profiles + (new,), next_isdp_index=index + 1), OK
    )


__all__ = [
    "Actor",
    "MemoryResetTransition",
    "Operation",
    "ResetOption",
    "Transition",
    "delete",
    "disable",
    "enable",
    "find_profile",
    "install",
    "isdp_aid",
    "memory_reset",
    "next_isdp_aid",
    "notification_addresses",
    "set_nickname",
]
