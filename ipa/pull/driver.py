"""The pull flow's driver: performs what :func:`ipa.pull.rules.step` asks for (ES10 calls on
the card, ESipa calls to the eIM, back-off sleeps, the state file) and feeds back what
happened, until the rules end the cycle.

Card I/O runs inline (the ES10 client is synchronous). Time, sleeping and randomness are
injected (``clock``, ``sleep``, ``random``) so tests run the back-off without waiting. The
SGP.32 version spoken with the eIM is chosen in S0: ``PullConfig.sgp32`` if set, else the
card's EUICCInfo2 iotVersion.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import random as random_module
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from ipa import es10_iot
from ipa.errors import Es10Error, IpaError
from ipa.es10 import Es10Client
from ipa.es10_iot import EimConfiguration
from ipa.esipa import (
    EimPackageKind,
    EsipaClient,
    EsipaConnectionError,
    EsipaError,
    StateChangeCause,
)
from ipa.esipa_messages import provide_eim_package_result
from ipa.pull import rules, startup
from ipa.pull.config import PullConfig
from ipa.pull.packages import (
    HandledPackage,
    download_for_trigger,
    epr_result,
    euicc_data,
    execute_package,
)
from ipa.pull.rules import Memory, PendingResult, PollOutcome, State
from ipa.pull.state import SavedState, SetAsideNotification, StateFile
from ipa.sgp32 import Sgp32Version
from ipa.types import ProfileState

__all__ = ["ProfileSwitchHook", "PullFlow"]

log = logging.getLogger(__name__)

ProfileSwitchHook = Callable[[], "bool | Awaitable[bool] | None | Awaitable[None]"]


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class PullFlow:
    """The pull flow over one eUICC (an open :class:`~ipa.es10.Es10Client`).

    Args:
        client: the ES10 client (the caller opens and closes it).
        config: see :class:`~ipa.pull.config.PullConfig`.
        state_dir: directory of the state file (None: in memory only).
        esipa: an ESipa client to use instead of one made from the eIM configuration (tests,
            the fleet's shared client).
        on_profile_switch: called after the enabled profile changed (eIM package, immediate
            enable, rollback): the device re-attaches and returns True once it is connected
            again, False if it cannot (None or no hook: connected).
        sleep, random, clock: injected for tests (defaults ``asyncio.sleep``,
            ``random.random``, ``time.time``).
    """

    def __init__(
        self,
        client: Es10Client,
        config: PullConfig | None = None,
        *,
        state_dir: str | os.PathLike[str] | None = None,
        esipa: EsipaClient | None = None,
        on_profile_switch: ProfileSwitchHook | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        random: Callable[[], float] = random_module.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.config = config or PullConfig()
        self._file = StateFile(state_dir)
        self._given_esipa = esipa
        self._esipa: EsipaClient | None = esipa
        self._on_profile_switch = on_profile_switch
        self._sleep = sleep
        self._random = random
        self._clock = clock
        policy = rules.Policy(
            self.config.report_attempts, self.config.max_packages, self.config.immediate_enable
        )
        self.memory = Memory(policy)
        self.eid: str | None = None
        self.eim: EimConfiguration | None = None
        self.sgp32: Sgp32Version | None = None

    # -- public --------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The state the flow is in (S8 IDLE between cycles)."""
        return self.memory.state

    @property
    def failures(self) -> int:
        """Cycles failed in a row."""
        return self.memory.failures

    @property
    def pending_results(self) -> tuple[PendingResult, ...]:
        """Results not yet taken by the eIM (persisted in the state file), set aside or not."""
        return self.memory.saved.pending

    @property
    def set_aside_results(self) -> tuple[PendingResult, ...]:
        """Results the eIM kept refusing, retried once per cycle."""
        return self.memory.set_aside_results

    @property
    def set_aside_notifications(self) -> tuple[SetAsideNotification, ...]:
        """Notifications the eIM kept refusing (still on the card), retried once per cycle."""
        return self.memory.saved.notifications

    @property
    def esipa(self) -> EsipaClient | None:
        """The ESipa client of the eIM being polled (None before S0)."""
        return self._esipa

    async def boot(self) -> bool:
        """Run S0 now (read the EID and the eIM configuration); False: unprovisioned."""
        event = await self._drive(rules.BootAsked(self._clock()), catch_card_errors=False)
        return isinstance(event, rules.Booted)

    def notify_state_change(self, cause: StateChangeCause | int) -> None:
        """Report a profile switch the device made itself (fallback, emergency profile...) in
        the next GetEimPackage."""
        self.memory, actions = rules.step(self.memory, rules.StateChangeNoticed(int(cause)))
        for action in actions:
            self._effect(action)

    async def aclose(self) -> None:
        """Close the ESipa client this flow made (the next cycle opens a new one)."""
        if self._esipa is not None and self._esipa is not self._given_esipa:
            await self._esipa.aclose()
        self._esipa = self._given_esipa

    async def poll_once(self) -> PollOutcome:
        """One cycle (see the rules of :mod:`ipa.pull.rules`)."""
        try:
            end = await self._drive(rules.CycleStarted(self._clock()), catch_card_errors=True)
        except BaseException:
            # A bug or a cancellation: leave the flow where a next cycle can start.
            self.memory = replace(self.memory, state=State.IDLE, booted=False, current=None)
            raise
        assert isinstance(end, PollOutcome)
        if end.error is not None:
            log.warning("pull cycle failed (%d in a row): %s", end.failures, end.error)
        delay = self.config.backoff.delay(
            end.failures if end.state is State.IDLE else 0, self._random
        )
        return rules._evolve(end, next_delay=delay)  # one copy per cycle, as the rules make them

    async def run(self, stop_event: asyncio.Event | None = None) -> None:
        """Poll until ``stop_event`` is set, waiting each cycle's ``next_delay`` in between."""
        stop = stop_event if stop_event is not None else asyncio.Event()
        try:
            while not stop.is_set():
                outcome = await self.poll_once()
                if stop.is_set():
                    break
                await self._idle(stop, outcome.next_delay)
        finally:
            await self.aclose()

    # -- the loop ------------------------------------------------------------------------

    async def _drive(self, event: rules.Event, *, catch_card_errors: bool) -> Any:
        """Feed ``event`` and every following one to the rules; the :class:`End` outcome, or
        the last event when the rules asked for nothing more."""
        debug = log.isEnabledFor(logging.DEBUG)
        while True:
            if debug:
                log.debug("pull flow %s <- %s", self.memory.state.value, type(event).__name__)
            self.memory, actions = rules.step(self.memory, event)
            following: rules.Event | None = None
            for action in actions:
                if isinstance(action, rules.End):
                    return action.outcome
                if self._effect(action):
                    continue
                try:
                    following = await self._perform(action)
                except IpaError as exc:
                    if not catch_card_errors or isinstance(exc, EsipaError):
                        raise
                    following = rules.CardFailed(str(exc))
            if following is None:
                return event
            event = following

    def _effect(self, action: rules.Action) -> bool:
        """Perform an effect (no event follows); False if ``action`` is not one."""
        if isinstance(action, rules.Persist):
            self._file.save(action.saved)
        elif isinstance(action, rules.Remove):
            for seq in action.seq_numbers:
                self._remove(seq)
        elif isinstance(action, rules.Log):
            log.log(action.level, "%s", action.message)
        else:
            return False
        return True

    async def _perform(self, action: rules.Action) -> rules.Event:
        if isinstance(action, rules.Boot):
            return await self._boot()
        if isinstance(action, rules.Deliver):
            return await self._deliver(action.pending)
        if isinstance(action, rules.HandOver):
            return await self._hand_over(action.notice)
        if isinstance(action, rules.Sleep):
            await self._sleep(self.config.backoff.delay(action.failures, self._random))
            return rules.Slept()
        if isinstance(action, rules.Reattach):
            return rules.Reattached(await self._reattach())
        if isinstance(action, rules.Rollback):
            return rules.RolledBack(self._rollback())
        if isinstance(action, rules.ReadNotifications):
            return rules.NotificationsRead(self._notices())
        if isinstance(action, rules.Poll):
            return await self._poll(action.state_change_cause)
        if isinstance(action, rules.HandlePackage):
            return self._handled(await self._handle(action.kind, action.raw))
        if isinstance(action, rules.ImmediateEnable):
            return rules.ImmediateEnabled(self._immediate_enable())
        if isinstance(action, rules.RecordEnabled):
            return rules.EnabledRead(self._enabled_iccid())
        raise TypeError(f"unknown pull-flow action {action!r}")

    async def _idle(self, stop: asyncio.Event, delay: float) -> None:
        sleeper = asyncio.ensure_future(self._sleep(delay))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, stopper):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- S0 ------------------------------------------------------------------------------

    async def _boot(self) -> rules.Event:
        client = self.client
        eid = client.get_eid()
        restored: SavedState | None = None
        enabled: str | None = None
        if self.memory.saved.eid != eid:  # the first S0 for this card: read the state file
            restored = self._file.load()
            enabled = self._enabled_iccid()
        configs = startup.eim_configurations(client, self.config)
        previous = self.eim.eim_id if self.eim is not None else None
        if previous is None:
            previous = (restored or self.memory.saved).eim_id
        chosen = startup.choose_eim(configs, self.config.eim_id, previous)
        same_card, self.eid = self.eid == eid, eid
        if chosen is None:
            return rules.Unprovisioned()
        if self.sgp32 is not None and same_card:
            version = self.sgp32  # S0 again (an eCO, a card error): the same card
        else:
            version = startup.sgp32_version(client, self.config)
        if self.eim is None or chosen != self.eim or self._esipa is None or version != self.sgp32:
            if self._esipa is not None and self._esipa is not self._given_esipa:
                await self._esipa.aclose()
            if self._given_esipa is not None:  # shared (the fleet's): same HTTP client
                self._esipa = self._given_esipa.for_version(version)
            else:
                self._esipa = self._make_esipa(chosen, version)
        self.eim, self.sgp32 = chosen, version
        log.info("IPAd for EID %s polls eIM %s (SGP.32 %s)", eid, chosen.eim_id, version.label)
        return rules.Booted(eid, chosen.eim_id, str(version), restored, enabled)

    def _make_esipa(self, eim: EimConfiguration, version: Sgp32Version) -> EsipaClient:
        url = startup.eim_url(self.config, eim)
        return EsipaClient(url, startup.esipa_config_for(self.config, eim), sgp32=version)

    def _enabled_iccid(self) -> str | None:
        try:
            profiles = self.client.get_profiles_info(tags=(0x5A, 0x9F70))
        except IpaError as exc:  # GetProfilesInfo is optional for this flow
            log.info("cannot read the profile states: %s", exc)
            return None
        enabled = [p.iccid or "" for p in profiles if p.profile_state == ProfileState.ENABLED]
        return enabled[0] if enabled else ""

    @property
    def _eim_client(self) -> EsipaClient:
        if self._esipa is None:  # closed by aclose(): open a new one for the same eIM
            if self.eim is None:
                raise IpaError("no eIM to talk to")
            self._esipa = self._make_esipa(self.eim, self.sgp32 or Sgp32Version.V1_2)
        return self._esipa

    @property
    def _version(self) -> Sgp32Version:
        return self.sgp32 or Sgp32Version.V1_2

    # -- deliveries ----------------------------------------------------------------------

    @staticmethod
    def _failed(exc: EsipaError) -> rules.DeliveryFailed:
        return rules.DeliveryFailed(str(exc), isinstance(exc, EsipaConnectionError))

    async def _deliver(self, pending: PendingResult) -> rules.Event:
        eid = self.eid if self.config.send_eid else None
        try:
            acks = await self._eim_client.provide_eim_package_result(pending.result, eid=eid)
        except EsipaError as exc:
            log.warning("result not delivered: %s", exc)
            return self._failed(exc)
        return rules.Delivered(acks)

    async def _hand_over(self, notice: rules.Notice) -> rules.Event:
        raw = notice.raw
        if notice.stored_result:
            eid = self.eid if self.config.send_eid else None
            raw = provide_eim_package_result(raw, eid, sgp32=self._version)
        try:
            await self._eim_client.handle_notification(raw)
        except EsipaError as exc:
            log.warning("notification %d not delivered: %s", notice.seq_number, exc)
            return self._failed(exc)
        return rules.Delivered()

    def _remove(self, seq: int) -> None:
        try:
            self.client.remove_notification_from_list(seq)
        except Es10Error as exc:  # nothingToDelete: already gone
            log.info("RemoveNotificationFromList(%d): %s", seq, exc)

    async def _reattach(self) -> bool:
        if self._on_profile_switch is None:
            return True
        answer = await _maybe_await(self._on_profile_switch())
        return answer is None or bool(answer)

    def _rollback(self) -> PendingResult | None:
        try:
            epr = es10_iot.profile_rollback(self.client, self.config.refresh)
        except Es10Error as exc:
            log.warning("ProfileRollback refused: %s", exc)
            return None
        if epr is None:
            log.warning("ProfileRollback gave no new result; keeping the original")
            return None
        log.info("rolled back: the eIM gets the new result (seqNumber %s)", epr.seq_number)
        seqs = tuple(s for s in (epr.seq_number,) if s is not None)
        result = epr_result(self.client, epr, self._version)
        return PendingResult(result, seqs, False, self._clock())

    # -- S1, S2 --------------------------------------------------------------------------

    def _notices(self) -> tuple[rules.Notice, ...]:
        notices = [
            rules.Notice(n.seq_number, n.raw) for n in self.client.retrieve_notifications_list()
        ]
        for epr in es10_iot.retrieve_euicc_package_results(self.client):
            if epr.seq_number is not None:
                notices.append(rules.Notice(epr.seq_number, epr.raw, stored_result=True))
        return tuple(notices)

    async def _poll(self, cause: int | None) -> rules.Event:
        assert self.eid is not None
        try:
            package = await self._eim_client.get_eim_package(
                self.eid, notify_state_change=cause is not None, state_change_cause=cause
            )
        except EsipaError as exc:
            return rules.PollFailed(str(exc))
        if package is None:
            return rules.NoPackage()
        return rules.PackageReceived(package.kind, package.raw)

    # -- S3, S5, S6 ----------------------------------------------------------------------

    async def _handle(self, kind: EimPackageKind, raw: bytes) -> HandledPackage:
        version = self._version
        if kind is EimPackageKind.EUICC_PACKAGE_REQUEST:
            return execute_package(self.client, raw, version)
        if kind is EimPackageKind.IPA_EUICC_DATA_REQUEST:
            return euicc_data(self.client, raw, eim=self.eim, config=self.config, sgp32=version)
        return await download_for_trigger(
            self.client,
            raw,
            eim=self.eim,
            config=self.config,
            esipa=lambda: self._eim_client,
            sgp32=version,
        )

    @staticmethod
    def _handled(handled: HandledPackage) -> rules.PackageHandled:
        return rules.PackageHandled(
            handled.result,
            handled.remove,
            handled.rollback,
            handled.switched,
            handled.reconfigured,
            handled.installed is not None,
            handled.cancelled,
        )

    def _immediate_enable(self) -> bool:
        try:
            if self._version is Sgp32Version.V1_0:
                es10_iot.enable_using_dd(self.client)
            else:
                es10_iot.immediate_enable(self.client, self.config.refresh)
        except Es10Error as exc:
            log.info("ImmediateEnable: %s", exc)
            return False
        log.info("the new profile is enabled at once")
        return True
