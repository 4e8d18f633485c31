"""euicc_servers.eim.campaign_engine: the pure decisions of a campaign (waves, pauses,
stops on failures, done, follow)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from euicc_servers.eim.campaign_engine import (
    CampaignState,
    EngineView,
    Member,
    MemberStatus,
    Rollout,
    decide,
)

W, Q, S, U, D, F = (
    MemberStatus.WAITING,
    MemberStatus.QUEUED,
    MemberStatus.SENT,
    MemberStatus.UNVERIFIED,
    MemberStatus.DONE,
    MemberStatus.FAILED,
)


def members(*spec: tuple[int, MemberStatus]) -> list[Member]:
    return [Member(f"E{i}", wave, status) for i, (wave, status) in enumerate(spec)]


def view(**kw: object) -> EngineView:
    rollout = kw.pop("rollout", Rollout(batch_size=2, pause=10.0))
    return EngineView(kw.pop("state", CampaignState.RUNNING), rollout, **kw)  # type: ignore[arg-type]


def test_first_wave_takes_batch_size_members_in_join_order() -> None:
    decision = decide(view(), members((0, W), (0, W), (0, W)), now=100.0)
    assert decision.queue == ("E0", "E1")
    assert (decision.wave, decision.wave_started, decision.wave_closed) == (1, 100.0, None)
    assert decision.state is CampaignState.RUNNING


def test_open_wave_blocks_the_next_one() -> None:
    decision = decide(view(wave=1, wave_started=0.0), members((1, S), (1, D), (0, W)), 50.0)
    assert decision.queue == () and decision.wave_closed is None


def test_next_wave_waits_the_pause_after_the_wave_closed() -> None:
    spec = members((1, D), (1, D), (0, W))
    closing = decide(view(wave=1, wave_started=0.0), spec, 20.0)
    assert closing.queue == () and closing.wave_closed == 20.0
    early = decide(view(wave=1, wave_started=0.0, wave_closed=20.0), spec, 29.0)
    assert early.queue == ()
    later = decide(view(wave=1, wave_started=0.0, wave_closed=20.0), spec, 30.0)
    assert later.queue == ("E2",) and later.wave == 2


def test_wave_timeout_closes_a_wave_with_silent_devices() -> None:
    plan = Rollout(batch_size=1, pause=0.0, wave_timeout=60.0)
    spec = members((1, S), (0, W))
    assert decide(view(rollout=plan, wave=1, wave_started=0.0), spec, 59.0).queue == ()
    assert decide(view(rollout=plan, wave=1, wave_started=0.0), spec, 60.0).queue == ("E1",)


def test_more_failures_than_allowed_stop_and_cancel_what_is_queued() -> None:
    plan = Rollout(batch_size=2, max_failures=1)
    ok = decide(view(rollout=plan, wave=1, wave_started=0.0), members((1, F), (1, Q)), 5.0)
    assert ok.state is CampaignState.RUNNING
    stop = decide(view(rollout=plan, wave=1, wave_started=0.0), members((1, F), (1, F)), 5.0)
    assert stop.state is CampaignState.STOPPED and stop.cancel_queued
    assert stop.reason is not None and "maxFailures 1" in stop.reason
    assert stop.queue == ()


def test_failure_rate_counts_only_once_enough_verified_results_exist() -> None:
    plan = Rollout(batch_size=10, max_failure_rate=0.2, min_results=5)
    few = members((1, F), (1, F), (1, D), (1, S), (1, S))
    assert decide(view(rollout=plan, wave=1), few, 1.0).state is CampaignState.RUNNING
    enough = members((1, F), (1, F), (1, D), (1, D), (1, D), (1, U))
    assert decide(view(rollout=plan, wave=1), enough, 1.0).state is CampaignState.STOPPED
    fine = members((1, F), (1, D), (1, D), (1, D), (1, D), (1, D), (0, W))
    assert decide(view(rollout=plan, wave=1), fine, 1.0).state is CampaignState.RUNNING


def test_done_when_nobody_waits_and_every_wave_closed() -> None:
    decision = decide(view(wave=2, wave_started=0.0), members((1, D), (2, F), (2, D)), 3.0)
    assert decision.state is CampaignState.DONE


def test_unverified_members_keep_the_wave_open() -> None:
    decision = decide(view(wave=1, wave_started=0.0), members((1, U), (1, D)), 3.0)
    assert decision.state is CampaignState.RUNNING and decision.wave_closed is None


@pytest.mark.parametrize("state", [CampaignState.PAUSED, CampaignState.STOPPED])
def test_paused_and_stopped_campaigns_queue_nothing(state: CampaignState) -> None:
    decision = decide(view(state=state), members((0, W), (0, F), (0, F)), 1.0)
    assert decision.queue == () and decision.state is state


def test_a_device_joining_a_done_following_campaign_runs_it_again() -> None:
    spec = members((1, D), (0, W))
    done = view(state=CampaignState.DONE, wave=1, wave_started=0.0, wave_closed=1.0)
    assert decide(done, spec, 100.0).state is CampaignState.DONE
    follow = view(state=CampaignState.DONE, follow=True, wave=1, wave_started=0.0, wave_closed=1.0)
    decision = decide(follow, spec, 100.0)
    assert decision.state is CampaignState.RUNNING and decision.queue == ("E1",)


@pytest.mark.parametrize(
    "options",
    [{"batch_size": 0}, {"pause": -1.0}, {"max_failure_rate": 1.5}, {"max_failures": -1}],
)
def test_invalid_rollouts_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Rollout(**options)  # type: ignore[arg-type]


@given(
    st.lists(st.sampled_from([W, Q, S, U, D, F]), max_size=12),
    st.integers(1, 5),
    st.floats(0, 100),
)
def test_a_wave_never_queues_a_member_that_is_not_waiting(
    statuses: list[MemberStatus], batch: int, now: float
) -> None:
    spec = [Member(f"E{i}", 0 if s is W else 1, s) for i, s in enumerate(statuses)]
    decision = decide(view(rollout=Rollout(batch_size=batch), wave=1, wave_closed=0.0), spec, now)
    waiting = {m.eid for m in spec if m.status is W}
    assert set(decision.queue) <= waiting
    assert len(decision.queue) <= batch
