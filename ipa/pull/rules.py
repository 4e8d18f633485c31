"""The IPAd's pull flow as one pure function: ``step(memory, event) -> (memory, actions)``
(the IPAd side of SGP.32's eIM package retrieval over ESipa, v1.0.1 §6.3.2 and the same
functions in v1.2; the states follow the procedure's steps).

Everything that decides a transition lives here (the events, actions and outcomes it speaks of
are in :mod:`ipa.pull.events`); :mod:`ipa.pull.driver` performs the actions
(ES10 calls, ESipa calls, sleeps, the state file) and feeds back what happened as the next
event. Nothing here does I/O, reads a clock or draws a random number, so every rule below can
be tested by feeding events.

States
======

====  ===============  ==========================================================  =============
      state            what happens                                                next
====  ===============  ==========================================================  =============
S0    BOOT             GetEID, GetEimConfigurationData, AddInitialEim from the     S4, S1, S9;
                       initial configuration, the eIM chosen, the SGP.32 version   S8 (card
                       (:mod:`ipa.pull.startup`); the state file read on the       error)
                       first S0 of a card.
S1    NOTIFY           the card's pending notifications, and EuiccPackageResults   S2; S8 (eIM
                       stored on the card that no pending result covers, each      unreachable)
                       handed to the eIM (HandleNotification) and removed once
                       taken.
S2    POLL             GetEimPackage {eid [, notifyStateChange, cause]}.           S3, S5, S6;
                                                                                   S8
S3    EXECUTE          LoadEuiccPackage → the EPR (with every pending              S4
                       notification).
S4    REPORT           ProvideEimPackageResult of a pending result.                S2, S1, S0,
                                                                                   S8
S5    EUICC DATA       IpaEuiccData per tagList.                                   S4
S6    DOWNLOAD         the triggered download, direct or indirect; ImmediateEnable S4, S7
                       if configured.
S7    CANCEL           a download that failed after AuthenticateServer was ended.  S4
S8    IDLE             between cycles: the driver waits ``next_delay``.            S0, S1, S4
S9    UNPROVISIONED    no eIM configured.                                          S0
====  ===============  ==========================================================  =============

Rules
=====

1. A cycle starts with :class:`CycleStarted` in S8 or S9 and ends with an :class:`End`
   action back in S8 (S9 when no eIM is configured). S0 runs first when the flow has not
   booted, after a card error, and after an eCO was executed (the eIMs may have changed).
2. Every cycle has a **delivery budget** of ``report_attempts`` failed deliveries
   (ProvideEimPackageResult and HandleNotification together). A delivery *fails* when the eIM
   is unreachable (connection, TLS, time-out) or *refuses* it (an HTTP error status, an error
   answer, an answer that does not decode). No delivery is attempted once the budget is spent,
   so an eIM that fails every delivery costs at most ``report_attempts`` of them per cycle
   (a ProfileRollback opens a fresh budget: the device is back on its old profile, rule 6).
3. **Pending results first** (S4 after S0): results kept from earlier cycles are sent in the
   order kept, each once, before S1. A fresh one (never set aside, e.g. after a restart)
   is retried as in rule 6. The first failure of a set-aside result ends this step (the eIM
   still refuses): that result moves to the end of the list, so one result the eIM will never
   take cannot starve the others.
4. **S1**: each notification is handed over; a stored EPR that a pending result already
   carries is skipped. A refused notification is retried as in rule 6 and then set aside
   (remembered by seqNumber; it stays on the card); a set-aside one gets one try per cycle.
   An unreachable eIM ends the cycle with back-off.
5. **S2**: noEimPackageAvailable ends the cycle; another eimPackageError or a failure ends it
   with back-off. A state change not yet reported is sent with the poll and forgotten once
   the eIM answered. At most ``max_packages`` packages per cycle; after each result delivered,
   S2 again (S0 first after an eCO); after a result set aside, the cycle ends (no new package
   while the eIM refuses results; the next cycle polls again).
6. **Delivering a fresh result** (S4 after S3/S5/S6; saved before the first try): a failed
   try is followed, while tries and budget remain, by a back-off :class:`Sleep` (``n``-th
   failure, the driver's :class:`~ipa.pull.config.Backoff`) and another try, at most
   ``report_attempts`` tries. Then, if a rollback-flagged enable switched the profile,
   ProfileRollback: the card's new EPR replaces the result, the device re-attaches and the new
   result gets a fresh set of tries. Otherwise the result is **set aside** (kept on disk,
   rule 3 retries it later; the cycle ends with back-off if the eIM was unreachable). A result
   made when the budget is already spent is set aside untried.
7. A profile switch (a successful enable/disable, ImmediateEnable, ProfileRollback) is
   followed by :class:`Reattach` before the result is sent; no connectivity counts as the
   tries of rule 6 used up (rollback, or set aside and the cycle fails).
8. An accepted result removes its own seqNumbers (EPR, install result) and every
   acknowledged one from the card, then is forgotten. An eIM-refused result or notification
   is never dropped: only the eIM taking it ends its life.
9. A card error (any ES10 failure outside a package) ends the cycle with back-off, and the
   next cycle starts with S0.
10. A cycle fails (``failures`` + 1, back-off) when it ends on a card error, an unreachable
    eIM or a failed poll; otherwise ``failures`` is 0, even when the eIM refused a result
    (it answered, so polling at the normal interval goes on).
11. After a cycle in which the profile changed, the enabled ICCID is read and saved, so a
    switch made while the IPAd was not looking (found at the first S0 of a later run) is
    reported with stateChangeCause undefined.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from euicc_protocol.records import evolve_slotted
from ipa.esipa_answers import EimPackageKind
from ipa.esipa_codes import StateChangeCause
from ipa.pull.events import (
    Action,
    Boot,
    BootAsked,
    Booted,
    CardFailed,
    CycleStarted,
    Deliver,
    Delivered,
    DeliveryFailed,
    EnabledRead,
    End,
    Event,
    HandlePackage,
    HandOver,
    ImmediateEnable,
    ImmediateEnabled,
    Log,
    NoPackage,
    Notice,
    NotificationsRead,
    PackageHandled,
    PackageOutcome,
    PackageReceived,
    Persist,
    Poll,
    PollFailed,
    PollOutcome,
    ReadNotifications,
    Reattach,
    Reattached,
    RecordEnabled,
    Remove,
    Rollback,
    RolledBack,
    Sleep,
    Slept,
    State,
    StateChangeNoticed,
    Unprovisioned,
)
from ipa.pull.state import PendingResult, SavedState, SetAsideNotification

__all__ = [
    "TRANSITIONS",
    "Action",
    "Boot",
    "BootAsked",
    "Booted",
    "CardFailed",
    "CycleStarted",
    "Deliver",
    "Delivered",
    "DeliveryFailed",
    "EnabledRead",
    "End",
    "Event",
    "HandOver",
    "HandlePackage",
    "ImmediateEnable",
    "ImmediateEnabled",
    "Log",
    "Memory",
    "NoPackage",
    "Notice",
    "NotificationsRead",
    "PackageHandled",
    "PackageOutcome",
    "PackageReceived",
    "Persist",
    "Poll",
    "PollFailed",
    "PollOutcome",
    "Policy",
    "Reattach",
    "Reattached",
    "ReadNotifications",
    "RecordEnabled",
    "Remove",
    "RolledBack",
    "Rollback",
    "Sleep",
    "Slept",
    "State",
    "StateChangeNoticed",
    "Unprovisioned",
    "step",
]


S = State
#: Allowed transitions (the "next" column of the module table); :func:`step` refuses others.
TRANSITIONS: dict[State, frozenset[State]] = {
    S.BOOT: frozenset({S.REPORT, S.NOTIFY, S.UNPROVISIONED, S.IDLE}),
    S.NOTIFY: frozenset({S.POLL, S.IDLE}),
    S.POLL: frozenset({S.EXECUTE, S.EUICC_DATA, S.DOWNLOAD, S.IDLE}),
    S.EXECUTE: frozenset({S.REPORT, S.IDLE}),
    S.REPORT: frozenset({S.POLL, S.NOTIFY, S.BOOT, S.IDLE}),
    S.EUICC_DATA: frozenset({S.REPORT, S.IDLE}),
    S.DOWNLOAD: frozenset({S.REPORT, S.CANCEL, S.IDLE}),
    S.CANCEL: frozenset({S.REPORT, S.IDLE}),
    S.IDLE: frozenset({S.BOOT, S.NOTIFY, S.REPORT}),
    S.UNPROVISIONED: frozenset({S.BOOT, S.IDLE}),
}


# -- immutable updates ----------------------------------------------------------------------------

# The rules' records are slotted: copied by a generated slot-by-slot function.
_evolve = evolve_slotted


# -- memory ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    """The parts of :class:`~ipa.pull.config.PullConfig` the rules read."""

    report_attempts: int = 3
    max_packages: int = 32
    immediate_enable: bool = True


class Phase(enum.Enum):
    """Which delivery is under way."""

    RETRY = "pending results first (rule 3)"
    PACKAGE = "this cycle's result (rule 6)"
    NOTIFY = "S1 (rule 4)"


@dataclass(frozen=True, slots=True)
class Delivery:
    """The delivery under way: what, why, failed tries in this cycle, whether more tries may
    follow, whether a rollback replaced it, and the package kind it answers."""

    phase: Phase
    item: PendingResult | Notice
    attempts: int = 0
    retries: bool = True
    rolled_back: bool = False
    kind: EimPackageKind | None = None
    last: tuple[str, bool] = ("", False)  # the last failure: reason, unreachable


@dataclass(frozen=True, slots=True)
class Memory:
    """What the rules remember: the persisted :class:`SavedState`, the flow's standing
    (``booted``, ``failures``) and the cycle in progress."""

    policy: Policy = field(default_factory=Policy)
    state: State = State.IDLE
    saved: SavedState = field(default_factory=SavedState)
    booted: bool = False
    reboot: bool = False
    failures: int = 0
    # the cycle in progress
    now: float = 0.0
    boot_only: bool = False
    budget: int = 0
    handled: int = 0
    error: str | None = None
    outcomes: tuple[PackageOutcome, ...] = ()
    notified: int = 0
    switched: bool = False
    tried: frozenset[bytes] = frozenset()  # results tried in this cycle's rule-3 step
    notices: tuple[Notice, ...] = ()  # S1 still to hand over
    current: Delivery | None = None
    package: PackageHandled | None = None  # while ImmediateEnable runs

    @property
    def set_aside_results(self) -> tuple[PendingResult, ...]:
        """The results set aside."""
        return tuple(p for p in self.saved.pending if p.set_aside)


Step = tuple[Memory, tuple[Action, ...]]


# -- the step function ----------------------------------------------------------------------------


def step(memory: Memory, event: Event) -> Step:
    """Apply ``event`` to ``memory``: the new memory and the actions to perform, in order (any
    effects, then at most one action that gives the next event, or :class:`End`)."""
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"not a pull-flow event: {event!r}")
    return handler(memory, event)


def _go(m: Memory, state: State, **changes: Any) -> Memory:
    """``m`` in ``state`` (an allowed transition) with ``changes``, in one copy."""
    if state is not m.state and state not in TRANSITIONS[m.state]:
        raise RuntimeError(f"pull flow: no transition {m.state.value} -> {state.value}")
    return _evolve(m, state=state, **changes)


def _save(m: Memory, saved: SavedState) -> tuple[Memory, Action]:
    return _evolve(m, saved=saved), Persist(saved)


def _cycle_started(m: Memory, e: CycleStarted) -> Step:
    m = _evolve(
        m,
        now=e.now,
        boot_only=False,
        budget=m.policy.report_attempts,
        handled=0,
        error=None,
        outcomes=(),
        notified=0,
        switched=False,
        tried=frozenset(),
        notices=(),
        current=None,
        package=None,
    )
    if not m.booted or m.reboot:
        return _go(m, S.BOOT), (Boot(),)
    return _pending_first(m, ())


def _boot_asked(m: Memory, e: BootAsked) -> Step:
    m = _evolve(m, now=e.now, boot_only=True)
    return _go(m, S.BOOT), (Boot(),)


def _state_change_noticed(m: Memory, e: StateChangeNoticed) -> Step:
    m, persist = _save(m, _evolve(m.saved, state_change_cause=e.cause))
    return m, (persist,)


def _booted(m: Memory, e: Booted) -> Step:
    effects: list[Action] = []
    saved = m.saved
    if e.restored is not None:  # the first S0 for this card
        asked = saved.state_change_cause  # notify_state_change() before S0
        restored = e.restored
        if restored.eid is not None and restored.eid != e.eid:
            effects.append(Log(30, f"state file is for EID {restored.eid}, not {e.eid}: afresh"))
            restored = SavedState()
        saved = restored
        if saved.state_change_cause is None and asked is not None:
            saved = _evolve(saved, state_change_cause=asked)
        before, now = saved.enabled_iccid, e.enabled_iccid
        if now is not None and before is not None and now != before:
            if saved.state_change_cause is None:  # rule 11
                effects.append(Log(20, f"enabled profile changed from {before!r} to {now!r}"))
                saved = _evolve(saved, state_change_cause=int(StateChangeCause.UNDEFINED))
        if now is not None:
            saved = _evolve(saved, enabled_iccid=now)
    saved = _evolve(saved, eid=e.eid, eim_id=e.eim_id, sgp32=e.sgp32)
    m, persist = _save(_evolve(m, booted=True, reboot=False), saved)
    effects.append(persist)
    if m.boot_only:
        return _go(m, S.IDLE), tuple(effects)
    return _pending_first(m, tuple(effects))


def _unprovisioned(m: Memory, e: Unprovisioned) -> Step:
    m = _go(m, S.UNPROVISIONED, booted=False)
    if m.boot_only:
        return m, ()
    return m, (End(_outcome(m, S.UNPROVISIONED, failures=m.failures)),)


def _card_failed(m: Memory, e: CardFailed) -> Step:
    m = _evolve(m, booted=False, current=None, package=None)
    if m.boot_only:
        return _go(m, S.IDLE), ()
    return _end(_evolve(m, error=f"card: {e.error}"), ())


# -- rule 3: pending results first ----------------------------------------------------------------


def _pending_first(m: Memory, effects: tuple[Action, ...]) -> Step:
    todo = [p for p in m.saved.pending if p.result not in m.tried]
    if not todo or m.budget <= 0:
        return _notify(m, effects)
    item = todo[0]
    delivery = Delivery(Phase.RETRY, item, retries=not item.set_aside)
    m = _go(m, S.REPORT, current=delivery, tried=m.tried | {item.result})
    return m, (*effects, Deliver(item))


# -- rule 4: S1 -----------------------------------------------------------------------------------


def _notify(m: Memory, effects: tuple[Action, ...]) -> Step:
    return _go(m, S.NOTIFY, current=None), (*effects, ReadNotifications())


def _notifications_read(m: Memory, e: NotificationsRead) -> Step:
    covered = {s for p in m.saved.pending for s in p.remove}
    notices = tuple(n for n in e.notices if not (n.stored_result and n.seq_number in covered))
    on_card = {n.seq_number for n in e.notices}
    kept = tuple(n for n in m.saved.notifications if n.seq_number in on_card)
    effects: tuple[Action, ...] = ()
    if kept != m.saved.notifications:  # gone from the card: nothing left to deliver
        m, persist = _save(m, _evolve(m.saved, notifications=kept))
        effects = (persist,)
    return _next_notice(_evolve(m, notices=notices), effects)


def _next_notice(m: Memory, effects: tuple[Action, ...]) -> Step:
    if not m.notices or m.budget <= 0:
        return _poll(_evolve(m, notices=()), effects)
    notice, rest = m.notices[0], m.notices[1:]
    aside = any(n.seq_number == notice.seq_number for n in m.saved.notifications)
    delivery = Delivery(Phase.NOTIFY, notice, retries=not aside)
    return _evolve(m, notices=rest, current=delivery), (*effects, HandOver(notice))


# -- rule 5: S2 -----------------------------------------------------------------------------------


def _poll(m: Memory, effects: tuple[Action, ...]) -> Step:
    if m.handled >= m.policy.max_packages:
        return _finish(m, effects)
    m = _go(m, S.POLL, current=None)
    return m, (*effects, Poll(m.saved.state_change_cause))


def _told(m: Memory) -> tuple[Memory, tuple[Action, ...]]:
    if m.saved.state_change_cause is None:
        return m, ()
    m, persist = _save(m, _evolve(m.saved, state_change_cause=None))
    return m, (persist,)


def _no_package(m: Memory, e: NoPackage) -> Step:
    m, effects = _told(m)
    return _finish(m, effects)


def _poll_failed(m: Memory, e: PollFailed) -> Step:
    return _end(_evolve(m, error=f"getEimPackage: {e.reason}"), ())


_PACKAGE_STATES = {
    EimPackageKind.EUICC_PACKAGE_REQUEST: S.EXECUTE,
    EimPackageKind.IPA_EUICC_DATA_REQUEST: S.EUICC_DATA,
    EimPackageKind.PROFILE_DOWNLOAD_TRIGGER_REQUEST: S.DOWNLOAD,
}


def _package_received(m: Memory, e: PackageReceived) -> Step:
    m, effects = _told(m)
    delivery = Delivery(Phase.PACKAGE, PendingResult(b""), kind=e.kind)
    m = _go(m, _PACKAGE_STATES[e.kind], handled=m.handled + 1, current=delivery)
    return m, (*effects, HandlePackage(e.kind, e.raw))


def _package_handled(m: Memory, e: PackageHandled) -> Step:
    if e.cancelled:
        m = _go(m, S.CANCEL)
    if e.reconfigured:
        m = _evolve(m, reboot=True)
    if e.installed:
        m = _evolve(m, switched=True)  # a new profile is there (rule 11)
        if m.policy.immediate_enable:
            return _evolve(m, package=e), (ImmediateEnable(),)
    return _keep_result(m, e, e.switched, ())


def _immediate_enabled(m: Memory, e: ImmediateEnabled) -> Step:
    handled = m.package
    assert handled is not None
    m = _evolve(m, package=None)
    effects: tuple[Action, ...] = ()
    if e.ok:
        cause = int(StateChangeCause.IMMEDIATE_ENABLE_PROFILE)
        m, persist = _save(m, _evolve(m.saved, state_change_cause=cause))
        effects = (persist,)
    return _keep_result(m, handled, e.ok, effects)


def _keep_result(m: Memory, e: PackageHandled, switched: bool, effects: tuple[Action, ...]) -> Step:
    """Rule 6: save the fresh result, re-attach after a switch (rule 7), send it."""
    pending = PendingResult(e.result, e.remove, e.rollback, m.now)
    m, persist = _save(m, _evolve(m.saved, pending=(*m.saved.pending, pending)))
    assert m.current is not None
    delivery = _evolve(m.current, item=pending)
    m = _go(m, S.REPORT, current=delivery, tried=m.tried | {pending.result})
    if m.budget <= 0:  # rule 2: no try left in this cycle
        return _set_aside(m, "no delivery left in this cycle", False, (*effects, persist))
    if switched:
        return _evolve(m, switched=True), (*effects, persist, Reattach())
    return m, (*effects, persist, Deliver(pending))


# -- deliveries (rules 6-8) -----------------------------------------------------------------------


def _reattached(m: Memory, e: Reattached) -> Step:
    d = m.current
    assert d is not None and isinstance(d.item, PendingResult)
    if e.connected:
        return m, (Deliver(d.item),)
    # Rule 7: no connectivity uses up the tries (no budget spent: nothing was sent).
    reason = "no connectivity after the profile switch"
    d = _evolve(d, attempts=m.policy.report_attempts, last=(reason, True))
    return _gave_up(_evolve(m, current=d), "no connectivity after the profile switch", True)


def _slept(m: Memory, e: Slept) -> Step:
    d = m.current
    assert d is not None
    if isinstance(d.item, Notice):
        return m, (HandOver(d.item),)
    return m, (Deliver(d.item),)


def _delivered(m: Memory, e: Delivered) -> Step:
    d = m.current
    assert d is not None
    if isinstance(d.item, Notice):
        seq = d.item.seq_number
        effects: tuple[Action, ...] = (Remove((seq,)),)
        aside = tuple(n for n in m.saved.notifications if n.seq_number != seq)
        if aside != m.saved.notifications:
            m, persist = _save(m, _evolve(m.saved, notifications=aside))
            effects += (persist,)
        return _next_notice(_evolve(m, current=None, notified=m.notified + 1), effects)
    pending = d.item
    remove = tuple(dict.fromkeys(pending.remove + e.acknowledged))
    m, persist = _save(m, _evolve(m.saved, pending=_without(m.saved.pending, pending)))
    outcome = PackageOutcome(
        d.kind, pending.result, True, e.acknowledged, d.rolled_back, "delivered"
    )
    m = _evolve(m, outcomes=(*m.outcomes, outcome), current=None)
    effects = (Remove(remove), persist) if remove else (persist,)
    if d.phase is Phase.RETRY:
        return _pending_first(m, effects)
    return _after_result(m, effects)


def _delivery_failed(m: Memory, e: DeliveryFailed) -> Step:
    d = m.current
    assert d is not None
    d = _evolve(d, attempts=d.attempts + 1)
    m = _evolve(m, current=d, budget=m.budget - 1)
    d = _evolve(d, last=(e.reason, e.unreachable))
    m = _evolve(m, current=d)
    if d.retries and d.attempts < m.policy.report_attempts and m.budget > 0:
        return m, (Sleep(d.attempts),)
    return _gave_up(m, e.reason, e.unreachable)


def _gave_up(m: Memory, reason: str, unreachable: bool) -> Step:
    """Rule 6 after the last try: rollback if allowed, else set aside (rules 3, 4)."""
    d = m.current
    assert d is not None
    function = "handleNotification" if d.phase is Phase.NOTIFY else "provideEimPackageResult"
    if isinstance(d.item, Notice):
        seq = d.item.seq_number
        before = {n.seq_number: n.attempts for n in m.saved.notifications}
        before[seq] = before.get(seq, 0) + d.attempts
        aside = tuple(SetAsideNotification(s, n) for s, n in before.items())
        m, persist = _save(_evolve(m, current=None), _evolve(m.saved, notifications=aside))
        if unreachable:
            return _end(_evolve(m, error=f"{function}: {reason}"), (persist,))
        return _next_notice(m, (persist,))
    if d.item.rollback and not d.rolled_back:
        return m, (Rollback(),)
    return _set_aside(m, reason, unreachable, ())


def _set_aside(m: Memory, reason: str, unreachable: bool, effects: tuple[Action, ...]) -> Step:
    """Rules 3 and 6: the result under way goes to the end of the list, set aside."""
    d = m.current
    assert d is not None and isinstance(d.item, PendingResult)
    pending = d.item
    function = "provideEimPackageResult"
    kept = _evolve(pending, attempts=pending.attempts + d.attempts, set_aside=True, rollback=False)
    rest = _without(m.saved.pending, pending)
    m, persist = _save(m, _evolve(m.saved, pending=(*rest, kept)))
    effects = (*effects, persist)
    outcome = PackageOutcome(
        d.kind,
        pending.result,
        False,
        (),
        d.rolled_back,
        f"set aside: {reason}",
        refused=not unreachable,
        set_aside=True,
    )
    m = _evolve(m, outcomes=(*m.outcomes, outcome), current=None)
    if unreachable:
        return _end(_evolve(m, error=f"{function}: {reason}"), effects)
    if d.phase is Phase.RETRY:
        return _notify(m, effects)  # rule 3: the eIM still refuses; on with the cycle
    return _finish(m, effects)  # rule 5: no new package while the eIM refuses results


def _rolled_back(m: Memory, e: RolledBack) -> Step:
    d = m.current
    assert d is not None and isinstance(d.item, PendingResult)
    old = d.item
    if e.replacement is None:
        plain = _evolve(old, rollback=False)
        pending = tuple(plain if p == old else p for p in m.saved.pending)
        m, persist = _save(m, _evolve(m.saved, pending=pending))
        m = _evolve(m, current=_evolve(d, item=plain))
        return _set_aside(m, d.last[0] or "undeliverable", d.last[1], (persist,))
    new = e.replacement
    pending = tuple(new if p == old else p for p in m.saved.pending)
    m, persist = _save(m, _evolve(m.saved, pending=pending))
    # A new result on the old profile: a fresh set of tries (rule 6).
    d = Delivery(d.phase, new, 0, True, True, d.kind)
    m = _evolve(m, current=d, budget=m.policy.report_attempts, switched=True)
    return m, (persist, Reattach())


def _after_result(m: Memory, effects: tuple[Action, ...]) -> Step:
    if m.reboot:  # an eCO: the eIMs may have changed
        return _go(m, S.BOOT, current=None), (*effects, Boot())
    return _poll(m, effects)


# -- the end of a cycle ---------------------------------------------------------------------------


def _finish(m: Memory, effects: tuple[Action, ...]) -> Step:
    if m.switched:  # rule 11
        return _evolve(m, current=None), (*effects, RecordEnabled())
    return _end(m, effects)


def _enabled_read(m: Memory, e: EnabledRead) -> Step:
    m = _evolve(m, switched=False)
    if e.iccid is None:
        return _end(m, ())
    m, persist = _save(m, _evolve(m.saved, enabled_iccid=e.iccid))
    return _end(m, (persist,))


def _end(m: Memory, effects: tuple[Action, ...]) -> Step:
    failures = 0 if m.error is None else m.failures + 1
    m = _go(m, S.IDLE, failures=failures, current=None, notices=(), package=None)
    return m, (*effects, End(_outcome(m, S.IDLE, failures)))


def _outcome(m: Memory, state: State, failures: int) -> PollOutcome:
    return PollOutcome(
        state,
        m.outcomes,
        m.notified,
        m.error if state is S.IDLE else None,
        failures,
        0.0,
        m.set_aside_results,
        m.saved.notifications,
    )


def _without(items: tuple[PendingResult, ...], item: PendingResult) -> tuple[PendingResult, ...]:
    out = list(items)
    if item in out:
        out.remove(item)
    return tuple(out)


_HANDLERS: dict[type[Event], Callable[[Memory, Any], Step]] = {
    CycleStarted: _cycle_started,
    BootAsked: _boot_asked,
    StateChangeNoticed: _state_change_noticed,
    Booted: _booted,
    Unprovisioned: _unprovisioned,
    CardFailed: _card_failed,
    NotificationsRead: _notifications_read,
    NoPackage: _no_package,
    PollFailed: _poll_failed,
    PackageReceived: _package_received,
    PackageHandled: _package_handled,
    ImmediateEnabled: _immediate_enabled,
    Reattached: _reattached,
    Slept: _slept,
    Delivered: _delivered,
    DeliveryFailed: _delivery_failed,
    RolledBack: _rolled_back,
    EnabledRead: _enabled_read,
}
