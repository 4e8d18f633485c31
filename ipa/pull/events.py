"""The words of the pull flow's rules (:mod:`ipa.pull.rules`): its states, the events fed to
:func:`~ipa.pull.rules.step`, the actions it asks for, and what a cycle gives
(:class:`PollOutcome`, :class:`PackageOutcome`). Small immutable objects, no behaviour.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from ipa.esipa_answers import EimPackageKind
from ipa.pull.state import PendingResult, SavedState, SetAsideNotification


class State(enum.Enum):
    """The pull-flow states (see the module table)."""

    BOOT = "S0"
    NOTIFY = "S1"
    POLL = "S2"
    EXECUTE = "S3"
    REPORT = "S4"
    EUICC_DATA = "S5"
    DOWNLOAD = "S6"
    CANCEL = "S7"
    IDLE = "S8"
    UNPROVISIONED = "S9"


# -- outcomes -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PackageOutcome:
    """What became of one eIM package (or of a result kept from an earlier cycle, ``kind``
    None).

    Attributes:
        kind: the package kind.
        result: the EimPackageResult alternative sent (``BF51``, ``30``, ``BF52``, ``BF54``,
            ``A0``; v1.0.1: ``02`` for the error).
        delivered: the eIM took it.
        acknowledged: seqNumbers the eIM acknowledged with it.
        rolled_back: ProfileRollback replaced the result.
        detail: a short human-readable summary.
        refused: the eIM answered it with an error, an HTTP error status or something that
            does not decode (rather than being unreachable).
        set_aside: not delivered; kept and retried in later cycles.
    """

    kind: EimPackageKind | None
    result: bytes
    delivered: bool
    acknowledged: tuple[int, ...] = ()
    rolled_back: bool = False
    detail: str = ""
    refused: bool = False
    set_aside: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the result in hex)."""
        return {
            "kind": self.kind.value if self.kind is not None else None,
            "result": self.result.hex().upper(),
            "delivered": self.delivered,
            "acknowledged": list(self.acknowledged),
            "rolledBack": self.rolled_back,
            "refused": self.refused,
            "setAside": self.set_aside,
            "detail": self.detail,
        }

    @property
    def kept(self) -> bool:
        """Whether the result is still pending (retried in a later cycle)."""
        return not self.delivered


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """One cycle: the state it ended in (IDLE or UNPROVISIONED), the packages handled, the
    notifications delivered in S1, the error that made it fail, the failed cycles in a row,
    the S8 wait, and what is set aside after it."""

    state: State
    packages: tuple[PackageOutcome, ...] = ()
    notifications: int = 0
    error: str | None = None
    failures: int = 0
    next_delay: float = 0.0
    set_aside_results: tuple[PendingResult, ...] = ()
    set_aside_notifications: tuple[SetAsideNotification, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the cycle reached the eIM and ended normally."""
        return self.error is None and self.state is State.IDLE

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``ipa poll --json`` adds the EID and eIM to it)."""
        return {
            "state": self.state.name,
            "packages": [p.to_json() for p in self.packages],
            "notifications": self.notifications,
            "error": self.error,
            "failures": self.failures,
            "nextDelay": round(self.next_delay, 3),
            "setAside": {
                "results": [p.to_json() for p in self.set_aside_results],
                "notifications": [n.to_json() for n in self.set_aside_notifications],
            },
        }


# -- events (what happened) -----------------------------------------------------------------------


class Event:
    """Base class of the events fed to :func:`step`."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class CycleStarted(Event):
    """A cycle begins at ``now`` (the flow's clock)."""

    now: float


@dataclass(frozen=True, slots=True)
class BootAsked(Event):
    """Run S0 alone (``PullFlow.boot``)."""

    now: float


@dataclass(frozen=True, slots=True)
class StateChangeNoticed(Event):
    """The device switched profiles itself (fallback, emergency profile...): report ``cause``
    with the next poll."""

    cause: int


@dataclass(frozen=True, slots=True)
class Booted(Event):
    """S0 done: the card's EID, the eIM chosen, the SGP.32 version spoken with it, the state
    file when it was read (first S0 for this EID), the ICCID enabled now (None: unknown)."""

    eid: str
    eim_id: str
    sgp32: str
    restored: SavedState | None = None
    enabled_iccid: str | None = None


@dataclass(frozen=True, slots=True)
class Unprovisioned(Event):
    """S0 found no eIM configured (and no initial configuration to add)."""


@dataclass(frozen=True, slots=True)
class CardFailed(Event):
    """An ES10 call failed (the card, not a package result)."""

    error: str


@dataclass(frozen=True, slots=True)
class Delivered(Event):
    """The eIM took what was sent; ``acknowledged`` seqNumbers came with the answer."""

    acknowledged: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class DeliveryFailed(Event):
    """The delivery failed: ``unreachable`` (connection, TLS, time-out) or refused (HTTP
    error status, error answer, undecodable answer)."""

    reason: str
    unreachable: bool


@dataclass(frozen=True, slots=True)
class Slept(Event):
    """A back-off :class:`Sleep` is over."""


@dataclass(frozen=True, slots=True)
class Reattached(Event):
    """After a profile switch: whether the device is connected again."""

    connected: bool


@dataclass(frozen=True, slots=True)
class RolledBack(Event):
    """ProfileRollback done: the result replacing the pending one, or None (refused, or no
    new result)."""

    replacement: PendingResult | None


@dataclass(frozen=True, slots=True)
class Notice:
    """A notification on the card, or (``stored_result``) an EuiccPackageResult stored on it."""

    seq_number: int
    raw: bytes
    stored_result: bool = False


@dataclass(frozen=True, slots=True)
class NotificationsRead(Event):
    """What RetrieveNotificationsList (both lists) found."""

    notices: tuple[Notice, ...]


@dataclass(frozen=True, slots=True)
class NoPackage(Event):
    """GetEimPackage: noEimPackageAvailable."""


@dataclass(frozen=True, slots=True)
class PackageReceived(Event):
    """GetEimPackage delivered a package."""

    kind: EimPackageKind
    raw: bytes


@dataclass(frozen=True, slots=True)
class PollFailed(Event):
    """GetEimPackage failed (unreachable, refused, or another eimPackageError)."""

    reason: str


@dataclass(frozen=True, slots=True)
class PackageHandled(Event):
    """S3/S5/S6 done: the result to report and what the package did (see
    :class:`~ipa.pull.packages.HandledPackage`)."""

    result: bytes
    remove: tuple[int, ...] = ()
    rollback: bool = False
    switched: bool = False
    reconfigured: bool = False
    installed: bool = False
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class ImmediateEnabled(Event):
    """ImmediateEnable after a download: whether the card enabled the new profile."""

    ok: bool


@dataclass(frozen=True, slots=True)
class EnabledRead(Event):
    """The ICCID enabled now ("" none, None unknown)."""

    iccid: str | None


# -- actions (what to do) -------------------------------------------------------------------------


class Action:
    """Base class of the actions :func:`step` asks for. Effects (:class:`Persist`,
    :class:`Remove`, :class:`Log`) give no event; every other action gives exactly one."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Persist(Action):
    """Write the state file."""

    saved: SavedState


@dataclass(frozen=True, slots=True)
class Remove(Action):
    """RemoveNotificationFromList of each seqNumber (one already gone is not an error)."""

    seq_numbers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Log(Action):
    """Log ``message`` at ``level`` (a :mod:`logging` level)."""

    level: int
    message: str


@dataclass(frozen=True, slots=True)
class Boot(Action):
    """S0 → :class:`Booted`, :class:`Unprovisioned` or :class:`CardFailed`."""


@dataclass(frozen=True, slots=True)
class Deliver(Action):
    """ProvideEimPackageResult → :class:`Delivered` / :class:`DeliveryFailed`."""

    pending: PendingResult


@dataclass(frozen=True, slots=True)
class HandOver(Action):
    """HandleNotification (a stored result wrapped in ProvideEimPackageResult) →
    :class:`Delivered` / :class:`DeliveryFailed`."""

    notice: Notice


@dataclass(frozen=True, slots=True)
class Sleep(Action):
    """Wait the back-off after the ``failures``-th failed try → :class:`Slept`."""

    failures: int


@dataclass(frozen=True, slots=True)
class Reattach(Action):
    """The enabled profile changed: the device re-attaches → :class:`Reattached`."""


@dataclass(frozen=True, slots=True)
class Rollback(Action):
    """ProfileRollback → :class:`RolledBack`."""


@dataclass(frozen=True, slots=True)
class ReadNotifications(Action):
    """RetrieveNotificationsList (notifications and stored results) →
    :class:`NotificationsRead`."""


@dataclass(frozen=True, slots=True)
class Poll(Action):
    """GetEimPackage → :class:`PackageReceived`, :class:`NoPackage` or :class:`PollFailed`."""

    state_change_cause: int | None


@dataclass(frozen=True, slots=True)
class HandlePackage(Action):
    """S3/S5/S6 on the card → :class:`PackageHandled`."""

    kind: EimPackageKind
    raw: bytes


@dataclass(frozen=True, slots=True)
class ImmediateEnable(Action):
    """ES10b.ImmediateEnable → :class:`ImmediateEnabled`."""


@dataclass(frozen=True, slots=True)
class RecordEnabled(Action):
    """Read the enabled ICCID → :class:`EnabledRead`."""


@dataclass(frozen=True, slots=True)
class End(Action):
    """The cycle is over; the driver adds ``next_delay`` (back-off after ``failures``)."""

    outcome: PollOutcome
