"""The campaign engine: a pure function from a campaign's state and its members' states to
what happens next (no database, no clock, no I/O; :mod:`.campaigns` applies the decisions).

Rules
=====

1. Only a *running* campaign acts. A *paused* one starts no wave (orders queued already stay
   queued and are delivered); *stopped* is final; a *done* campaign that follows new devices
   (``follow``) runs again when a device joins it.
2. Members are taken in the order they joined. A member is *waiting* until a wave queues its
   order; after that its state is its order's: *queued* (not delivered yet), *sent*,
   *unverified* (sent, and only an unverified report came back), *done* or *failed* (a
   verified result), or *cancelled*.
3. The failure check comes first, on every step: the campaign stops when more than
   ``max_failures`` members failed, or when at least ``min_results`` members have a verified
   result and the share of failures among them exceeds ``max_failure_rate``. Stopping cancels
   the orders of the campaign that were queued but not delivered yet (those sent cannot be
   called back: their results are still recorded).
4. A wave is ``batch_size`` waiting members queued at once. It is *open* while one of its
   members is queued, sent or unverified, and for at most ``wave_timeout`` seconds (``None``:
   no limit). The next wave starts ``pause`` seconds after the previous one closed.
5. The campaign is *done* when no member is waiting and every wave is closed: members still
   without a verified result are counted as such, not waited for.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "CampaignState",
    "Decision",
    "EngineView",
    "MemberStatus",
    "Rollout",
    "decide",
]


class CampaignState(enum.StrEnum):
    """The states of a campaign."""

    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    STOPPED = "stopped"


class MemberStatus(enum.StrEnum):
    """Where one member (one eUICC) of a campaign stands (rule 2)."""

    WAITING = "waiting"
    QUEUED = "queued"
    SENT = "sent"
    UNVERIFIED = "unverified"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: Members whose order is out and has no verified result yet (rule 4).
OPEN = frozenset({MemberStatus.QUEUED, MemberStatus.SENT, MemberStatus.UNVERIFIED})


@dataclass(frozen=True)
class Rollout:
    """How a campaign rolls out (the ``rollout`` object of the API, in its JSON names:
    ``batchSize``, ``pauseSeconds``, ``maxFailures``, ``maxFailureRate``, ``minResults``,
    ``waveTimeoutSeconds``)."""

    batch_size: int = 100
    pause: float = 0.0
    max_failures: int | None = None
    max_failure_rate: float | None = None
    min_results: int = 10
    wave_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batchSize must be at least 1")
        if self.pause < 0 or (self.wave_timeout is not None and self.wave_timeout <= 0):
            raise ValueError("pauseSeconds must be >= 0 and waveTimeoutSeconds > 0")
        if self.max_failures is not None and self.max_failures < 0:
            raise ValueError("maxFailures must be >= 0")
        if self.max_failure_rate is not None and not 0 <= self.max_failure_rate < 1:
            raise ValueError("maxFailureRate must be in [0, 1)")
        if self.min_results < 1:
            raise ValueError("minResults must be at least 1")

    def to_json(self) -> dict[str, object]:
        """The API form."""
        return {
            "batchSize": self.batch_size,
            "pauseSeconds": self.pause,
            "maxFailures": self.max_failures,
            "maxFailureRate": self.max_failure_rate,
            "minResults": self.min_results,
            "waveTimeoutSeconds": self.wave_timeout,
        }


@dataclass(frozen=True)
class EngineView:
    """What the engine needs of a campaign: its state, rollout, and its current wave (number,
    start time, the time it closed or ``None`` while open; times in seconds)."""

    state: CampaignState
    rollout: Rollout
    follow: bool = False
    wave: int = 0
    wave_started: float | None = None
    wave_closed: float | None = None


@dataclass(frozen=True)
class Member:
    """One member as the engine sees it: EID, the wave that queued it (0: waiting), status."""

    eid: str
    wave: int
    status: MemberStatus


@dataclass(frozen=True)
class Decision:
    """What to do: the campaign's new state (and why), the EIDs to queue as wave ``wave``,
    the wave's times, and whether to cancel the queued, undelivered orders (rule 3)."""

    state: CampaignState
    reason: str | None = None
    queue: tuple[str, ...] = ()
    wave: int = 0
    wave_started: float | None = None
    wave_closed: float | None = None
    cancel_queued: bool = False


def failure_reason(rollout: Rollout, members: Sequence[Member]) -> str | None:
    """Why the members' results stop the campaign (rule 3), or ``None``."""
    failed = sum(m.status is MemberStatus.FAILED for m in members)
    done = sum(m.status is MemberStatus.DONE for m in members)
    if rollout.max_failures is not None and failed > rollout.max_failures:
        return f"{failed} device(s) failed (maxFailures {rollout.max_failures})"
    results = failed + done
    if (
        rollout.max_failure_rate is not None
        and results >= rollout.min_results
        and failed / results > rollout.max_failure_rate
    ):
        return (
            f"{failed} of {results} verified results are failures "
            f"(maxFailureRate {rollout.max_failure_rate})"
        )
    return None


def decide(view: EngineView, members: Sequence[Member], now: float) -> Decision:
    """The next step of a campaign at time ``now`` (see the module rules)."""
    keep = Decision(
        view.state,
        wave=view.wave,
        wave_started=view.wave_started,
        wave_closed=view.wave_closed,
    )
    waiting = [m for m in members if m.status is MemberStatus.WAITING]
    state = view.state
    if state is CampaignState.DONE and view.follow and waiting:
        state = CampaignState.RUNNING  # rule 1: a device joined a following campaign
    if state is not CampaignState.RUNNING:
        return keep
    reason = failure_reason(view.rollout, members)
    if reason is not None:
        return Decision(
            CampaignState.STOPPED,
            reason,
            wave=view.wave,
            wave_started=view.wave_started,
            wave_closed=view.wave_closed if view.wave_closed is not None else now,
            cancel_queued=True,
        )
    closed = view.wave_closed
    if closed is None and view.wave > 0:
        still_open = any(m.wave == view.wave and m.status in OPEN for m in members)
        timeout = view.rollout.wave_timeout
        timed_out = (
            timeout is not None
            and view.wave_started is not None
            and now - view.wave_started >= timeout
        )
        if not still_open or timed_out:
            closed = now
    if view.wave > 0 and closed is None:
        return Decision(state, wave=view.wave, wave_started=view.wave_started)
    if not waiting:
        return Decision(
            CampaignState.DONE,
            wave=view.wave,
            wave_started=view.wave_started,
            wave_closed=closed,
        )
    if closed is not None and now < closed + view.rollout.pause:
        return Decision(state, wave=view.wave, wave_started=view.wave_started, wave_closed=closed)
    batch = tuple(m.eid for m in waiting[: view.rollout.batch_size])
    return Decision(state, queue=batch, wave=view.wave + 1, wave_started=now, wave_closed=None)
