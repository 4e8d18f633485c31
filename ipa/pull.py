"""The IPAd's automated pull flow (SGP.32 v1.2, PROTOCOL.md §5.10, §5.11): poll the eIM over
ESipa, run what it sends against the eUICC, report the results.

Everything that decides a transition lives in this module; the states and their rules:

====  ===============  ===========================================================  ==============
      state            what happens                                                 next
====  ===============  ===========================================================  ==============
S0    BOOT             GetEID, GetEimConfigurationData; pick the eIM (configured    S4 (results
                       eimId, else the one used before, else the first). None:      pending),
                       AddInitialEim from the initial configuration file if one     S1, S9
                       is configured, else unprovisioned. Load the state file
                       (results of another EID are dropped); a profile switch
                       made while the IPAd was not looking is reported in the
                       next GetEimPackage (notifyStateChange, cause undefined).
S1    NOTIFY           RetrieveNotificationsList; each to the eIM in ESipa          S2; S8 if the
                       HandleNotification, removed only after the eIM took it.      eIM is
                       EuiccPackageResults still on the card that no pending        unreachable
                       result covers (an IPAd that stopped between
                       LoadEuiccPackage and saving) go the same way, wrapped in a
                       ProvideEimPackageResult.
S2    POLL             GetEimPackage {eid [, notifyStateChange, cause]}.            S3, S5, S6;
                       noEimPackageAvailable ends the cycle; another                S8
                       eimPackageError or a transport error ends it with back-off.
S3    EXECUTE          LoadEuiccPackage as received → EPR. The result                S4
                       (ePRAndNotifications with every pending notification, or the
                       EPR alone) is saved before it is sent. A successful enable or
                       disable switched the profile: the device re-attaches
                       (``on_profile_switch``) before S4. A package that does not
                       decode is answered invalidPackageFormat without the card.
S4    REPORT           ProvideEimPackageResult {eid, result}. Accepted: remove the  S2; S1 for a
                       result's own seqNumbers (EPR, install result) and every      result pending
                       acknowledged one, then forget it. Refused by the eIM         from before;
                       (function error): forget it. Undeliverable after             S0 after an
                       ``report_attempts`` tries (or no connectivity after the      eCO (the eIMs
                       switch): if a rollbackFlag enable switched the profile,      may have
                       ProfileRollback → the card's new EPR replaces the result,    changed); S8
                       re-attach, S4 again; otherwise keep it for the next cycle.   if kept
S5    EUICC DATA       IpaEuiccData per tagList (:mod:`ipa.ipa_data`).              S4
S6    DOWNLOAD         activationCode, or the default SM-DP+ for                    S4, S7
                       contactDefaultSmdp; EUICCInfo1 restricted to the eIM's
                       euiccCiPKId; direct (ES9+) or indirect (ESipa via the eIM,
                       when ``download_mode`` says so or, in auto mode, when the
                       eIM announces indirectProfileDownload). Installed:
                       ImmediateEnable if ``immediate_enable`` (refusals are
                       logged; a success is a state change, cause
                       immediateEnableProfile). Result: ProfileDownloadTrigger-
                       Result with the ``BF37``, or profileDownloadError
                       undefinedError (SM-DS triggers, missing download data, an
                       invalid activation code, any failed download).
S7    CANCEL           a download that failed after AuthenticateServer was ended    S4
                       on the card (CancelSession) and at the server by
                       :mod:`ipa.download`.
S8    IDLE             wait ``Backoff.delay(failures)``: the poll interval after a  S4 if results
                       good cycle, exponential back-off after failures, both with   are pending,
                       jitter.                                                      else S1; S0
                                                                                    after a card
                                                                                    error
S9    UNPROVISIONED    no eIM: wait and try S0 again.                               S0
====  ===============  ===========================================================  ==============


Results are persisted in ``<state_dir>/ipad-state.json`` from the moment they exist until the
eIM took them, so a restarted IPAd re-sends them (S0 → S4) before it polls again; without a
state directory they live in memory. Card I/O runs inline (the ES10 client is synchronous).
Time, sleeping and randomness are injected (``clock``, ``sleep``, ``random``) so tests run the
back-off without waiting.

What the flow is told, keeps and does for S6 lives next to it (every public name is importable
from here as well): :mod:`ipa.pull_config` (:class:`PullConfig`, :class:`Backoff`,
:class:`DownloadMode`), :mod:`ipa.pull_state` (the state file, :class:`PendingResult`,
:class:`PackageOutcome`), :mod:`ipa.pull_packages` (the work of S3, S5 and S6 on the card and,
for S6, with the SM-DP+).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import os
import random as random_module
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from ipa import es10_iot
from ipa.errors import Es10Error, IpaError
from ipa.es10 import Es10Client
from ipa.es10_iot import EimConfiguration
from ipa.esipa import (
    EimPackage,
    EimPackageKind,
    EsipaClient,
    EsipaError,
    EsipaFunctionError,
    StateChangeCause,
    provide_eim_package_result,
)
from ipa.pull_config import Backoff, DownloadMode, PullConfig
from ipa.pull_packages import download_for_trigger, epr_result, euicc_data, execute_package
from ipa.pull_state import STATE_FILE, PackageOutcome, PendingResult, SavedState, StateFile
from ipa.types import ProfileState

__all__ = [
    "STATE_FILE",
    "TRANSITIONS",
    "Backoff",
    "DownloadMode",
    "PackageOutcome",
    "PendingResult",
    "PollOutcome",
    "ProfileSwitchHook",
    "PullConfig",
    "PullFlow",
    "State",
]

log = logging.getLogger(__name__)


class State(enum.Enum):
    """The pull-flow states (PROTOCOL.md §5.10)."""

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


S = State
#: Allowed transitions (the "next" column of the module table); anything else is a bug.
TRANSITIONS: dict[State, frozenset[State]] = {
    S.BOOT: frozenset({S.REPORT, S.NOTIFY, S.UNPROVISIONED, S.IDLE}),
    S.NOTIFY: frozenset({S.POLL, S.IDLE}),
    S.POLL: frozenset({S.EXECUTE, S.EUICC_DATA, S.DOWNLOAD, S.IDLE}),
    S.EXECUTE: frozenset({S.REPORT, S.IDLE}),
    S.REPORT: frozenset({S.POLL, S.NOTIFY, S.BOOT, S.IDLE}),
    S.EUICC_DATA: frozenset({S.REPORT, S.IDLE}),
    S.DOWNLOAD: frozenset({S.REPORT, S.CANCEL, S.IDLE}),
    S.CANCEL: frozenset({S.REPORT}),
    S.IDLE: frozenset({S.BOOT, S.NOTIFY, S.REPORT}),
    S.UNPROVISIONED: frozenset({S.BOOT, S.IDLE}),
}


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """One cycle: the state it ended in (IDLE or UNPROVISIONED), the packages handled, the
    notifications delivered in S1, the error that ended it early, and the S8 wait."""

    state: State
    packages: tuple[PackageOutcome, ...] = ()
    notifications: int = 0
    error: str | None = None
    failures: int = 0
    next_delay: float = 0.0

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
            "nextDelay": round(self.next_delay, 3),
        }


class _CycleFailed(Exception):
    """Internal: end the cycle in S8 with back-off."""


ProfileSwitchHook = Callable[[], "bool | Awaitable[bool] | None | Awaitable[None]"]


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


# -- the flow -------------------------------------------------------------------------------------


class PullFlow:
    """The pull flow over one eUICC (an open :class:`~ipa.es10.Es10Client`).

    Args:
        client: the ES10 client (the caller opens and closes it).
        config: see :class:`PullConfig`.
        state_dir: directory of the state file (None: in memory only).
        esipa: an ESipa client to use instead of one made from the eIM configuration (tests).
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
        self.state = State.IDLE
        self.eid: str | None = None
        self.eim: EimConfiguration | None = None
        self.failures = 0
        self._saved = SavedState()
        self._booted = False
        self._reboot = False
        self._switched = False

    # -- public --------------------------------------------------------------------------

    @property
    def pending_results(self) -> tuple[PendingResult, ...]:
        """Results not yet taken by the eIM (persisted in the state file)."""
        return tuple(self._saved.pending)

    @property
    def esipa(self) -> EsipaClient | None:
        """The ESipa client of the eIM being polled (None before S0)."""
        return self._esipa

    async def boot(self) -> bool:
        """Run S0 now (read the EID and the eIM configuration); False: unprovisioned."""
        self._go(State.BOOT)
        if await self._boot():
            return True
        self._go(State.UNPROVISIONED)
        return False

    def notify_state_change(self, cause: StateChangeCause | int) -> None:
        """Report a profile switch the device made itself (fallback, emergency profile...) in
        the next GetEimPackage."""
        self._saved.state_change_cause = int(cause)
        self._save()

    async def aclose(self) -> None:
        """Close the ESipa client this flow made (the next cycle opens a new one)."""
        if self._esipa is not None and self._esipa is not self._given_esipa:
            await self._esipa.aclose()
        self._esipa = self._given_esipa

    async def poll_once(self) -> PollOutcome:
        """One cycle: S0 if needed, pending results, S1, S2.. until no package, then S8."""
        packages: list[PackageOutcome] = []
        notifications = 0
        error: str | None = None
        try:
            handled = 0
            while True:
                if not self._booted or self._reboot:
                    self._go(State.BOOT)
                    if not await self._boot():
                        self._go(State.UNPROVISIONED)
                        delay = self.config.backoff.delay(0, self._random)
                        return PollOutcome(State.UNPROVISIONED, tuple(packages), next_delay=delay)
                packages += await self._resend_pending()
                self._go(State.NOTIFY)
                notifications += await self._notify()
                while handled < self.config.max_packages and not self._reboot:
                    self._go(State.POLL)
                    package = await self._poll()
                    if package is None:
                        break
                    outcome = await self._handle(package)
                    handled += 1
                    packages.append(outcome)
                    if outcome.kept:
                        raise _CycleFailed(outcome.detail)
                if not self._reboot:  # an eCO may have changed the eIMs: S0, then go on
                    break
            if self._switched:
                self._record_enabled()
        except _CycleFailed as exc:
            error = str(exc) or "cycle failed"
        except IpaError as exc:  # the card: start again from S0 next time
            error = f"card: {exc}"
            self._booted = False
        except BaseException:
            # A bug or a cancellation: leave the flow where a next cycle can start.
            self.state, self._booted = State.IDLE, False
            raise
        if error is None:
            self.failures = 0
        else:
            self.failures += 1
            log.warning("pull cycle failed (%d in a row): %s", self.failures, error)
        self._go(State.IDLE)
        delay = self.config.backoff.delay(self.failures, self._random)
        return PollOutcome(State.IDLE, tuple(packages), notifications, error, self.failures, delay)

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

    # -- transitions ---------------------------------------------------------------------

    def _go(self, state: State) -> None:
        if state is not self.state:
            if state not in TRANSITIONS[self.state]:
                raise RuntimeError(f"pull flow: no transition {self.state.value} -> {state.value}")
            log.debug("pull flow %s -> %s", self.state.value, state.value)
            self.state = state

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

    def _save(self) -> None:
        self._file.save(self._saved)

    # -- S0 ------------------------------------------------------------------------------

    async def _boot(self) -> bool:
        client = self.client
        self.eid = client.get_eid()
        saved = self._saved
        if saved.eid != self.eid:  # the first S0 of this flow (or another card): read the file
            asked_cause = saved.state_change_cause  # notify_state_change() before S0
            saved = self._file.load()
            if saved.eid is not None and saved.eid != self.eid:
                log.warning(
                    "state file is for EID %s, not %s: starting afresh", saved.eid, self.eid
                )
                saved = SavedState()
            saved.eid = self.eid
            if saved.state_change_cause is None:
                saved.state_change_cause = asked_cause
            self._saved = saved
            self._detect_local_switch()  # only here: later switches are the flow's own
        configs = es10_iot.get_eim_configuration_data(client)
        if not configs and self.config.initial_eim is not None:
            tokens = es10_iot.add_initial_eim(client, self.config.initial_eim)
            log.info("AddInitialEim from the initial configuration: tokens %s", tokens)
            configs = es10_iot.get_eim_configuration_data(client)
        if not configs:
            self._booted = False
            return False
        by_id = {c.eim_id: c for c in configs}
        previous = self.eim.eim_id if self.eim is not None else saved.eim_id
        chosen = by_id.get(self.config.eim_id or "") or by_id.get(previous or "") or configs[0]
        if self.config.eim_id and chosen.eim_id != self.config.eim_id:
            log.warning("eIM %s is not configured; using %s", self.config.eim_id, chosen.eim_id)
        if self.eim is None or chosen != self.eim or self._esipa is None:
            if self._esipa is not None and self._esipa is not self._given_esipa:
                await self._esipa.aclose()
            self._esipa = self._given_esipa or self._make_esipa(chosen)
        self.eim = chosen
        saved.eim_id = chosen.eim_id
        self._save()
        self._booted, self._reboot = True, False
        log.info("IPAd for EID %s polls eIM %s", self.eid, chosen.eim_id)
        return True

    def _make_esipa(self, eim: EimConfiguration) -> EsipaClient:
        url = self.config.eim_url or eim.eim_fqdn
        if not url:
            raise IpaError(f"eIM {eim.eim_id} has no eimFqdn and no eim_url is configured")
        esipa = self.config.esipa
        if self.config.use_eim_tls_pin:
            if eim.trusted_eim_pk_tls is not None:
                esipa = replace(esipa, pinned_public_key=eim.trusted_eim_pk_tls)
            elif eim.trusted_certificate_tls is not None:
                anchors = esipa.ca_certificates + (eim.trusted_certificate_tls,)
                esipa = replace(esipa, ca_certificates=anchors)
        return EsipaClient(url, esipa)

    def _enabled_iccid(self) -> str | None:
        try:
            profiles = self.client.get_profiles_info(tags=(0x5A, 0x9F70))
        except IpaError as exc:  # GetProfilesInfo is optional for this flow
            log.info("cannot read the profile states: %s", exc)
            return None
        enabled = [p.iccid or "" for p in profiles if p.profile_state == ProfileState.ENABLED]
        return enabled[0] if enabled else ""

    def _detect_local_switch(self) -> None:
        now = self._enabled_iccid()
        before = self._saved.enabled_iccid
        if now is not None and before is not None and now != before:
            if self._saved.state_change_cause is None:
                log.info("enabled profile changed from %r to %r while not polling", before, now)
                self._saved.state_change_cause = int(StateChangeCause.UNDEFINED)
        if now is not None:
            self._saved.enabled_iccid = now

    def _record_enabled(self) -> None:
        now = self._enabled_iccid()
        if now is not None:
            self._saved.enabled_iccid = now
            self._save()
        self._switched = False

    # -- S4 (also for results pending from before) ---------------------------------------

    @property
    def _eim_client(self) -> EsipaClient:
        if self._esipa is None:  # closed by aclose(): open a new one for the same eIM
            if self.eim is None:
                raise IpaError("no eIM to talk to")
            self._esipa = self._make_esipa(self.eim)
        return self._esipa

    async def _resend_pending(self) -> list[PackageOutcome]:
        outcomes = []
        while self._saved.pending:
            self._go(State.REPORT)
            outcome = await self._report(self._saved.pending[0], None)
            outcomes.append(outcome)
            if outcome.kept:
                raise _CycleFailed(outcome.detail)
        return outcomes

    async def _report(
        self, pending: PendingResult, kind: EimPackageKind | None, reattach: bool = False
    ) -> PackageOutcome:
        """Deliver ``pending`` (already saved) with retries, rolling back if allowed;
        ``reattach``: the profile was just switched, wait for connectivity first."""
        rolled_back = False
        connected = await self._profile_switched() if reattach else True
        attempts = 0
        while True:
            failure: str | None = None
            if connected:
                try:
                    acks = await self._eim_client.provide_eim_package_result(
                        pending.result, eid=self.eid if self.config.send_eid else None
                    )
                except EsipaFunctionError as exc:
                    # The eIM has seen the result and refused it: the same bytes cannot do
                    # better next time. Stored EPRs stay on the card (S1 offers them again).
                    log.warning("eIM refused the result: %s", exc)
                    self._forget(pending)
                    return PackageOutcome(
                        kind, pending.result, False, (), rolled_back, str(exc), refused=True
                    )
                except EsipaError as exc:
                    failure = str(exc)
                else:
                    self._acknowledged(pending, acks)
                    return PackageOutcome(
                        kind, pending.result, True, acks, rolled_back, "delivered"
                    )
                attempts += 1
            else:
                failure = "no connectivity after the profile switch"
                attempts = self.config.report_attempts
            if attempts < self.config.report_attempts:
                await self._sleep(self.config.backoff.delay(attempts, self._random))
                continue
            if pending.rollback:
                rolled = self._rollback(pending)
                if rolled is not None:
                    pending, rolled_back, attempts = rolled, True, 0
                    connected = await self._profile_switched()
                    continue
            log.warning("result kept for the next cycle: %s", failure)
            return PackageOutcome(kind, pending.result, False, (), rolled_back, failure or "")

    def _rollback(self, pending: PendingResult) -> PendingResult | None:
        try:
            epr = es10_iot.profile_rollback(self.client, self.config.refresh)
        except Es10Error as exc:
            log.warning("ProfileRollback refused: %s", exc)
            pending.rollback = False
            self._save()
            return None
        self._switched = True
        if epr is None:
            log.warning("ProfileRollback gave no new result; keeping the original")
            pending.rollback = False
            self._save()
            return None
        log.info("rolled back: the eIM gets the new result (seqNumber %s)", epr.seq_number)
        replacement = PendingResult(
            epr_result(self.client, epr),
            tuple(s for s in (epr.seq_number,) if s is not None),
            False,
            self._clock(),
        )
        index = self._saved.pending.index(pending)
        self._saved.pending[index] = replacement
        self._save()
        return replacement

    def _acknowledged(self, pending: PendingResult, acks: tuple[int, ...]) -> None:
        for seq in dict.fromkeys(pending.remove + acks):
            try:
                self.client.remove_notification_from_list(seq)
            except Es10Error as exc:  # nothingToDelete: already gone
                log.info("RemoveNotificationFromList(%d): %s", seq, exc)
        self._forget(pending)

    def _forget(self, pending: PendingResult) -> None:
        if pending in self._saved.pending:
            self._saved.pending.remove(pending)
            self._save()

    def _keep(
        self, result: bytes, remove: tuple[int, ...] = (), rollback: bool = False
    ) -> PendingResult:
        pending = PendingResult(result, remove, rollback, self._clock())
        self._saved.pending.append(pending)
        self._save()
        return pending

    async def _profile_switched(self) -> bool:
        self._switched = True
        if self._on_profile_switch is None:
            return True
        answer = await _maybe_await(self._on_profile_switch())
        return answer is None or bool(answer)

    # -- S1 ------------------------------------------------------------------------------

    async def _notify(self) -> int:
        delivered = 0
        esipa = self._eim_client
        for notification in self.client.retrieve_notifications_list():
            seq = notification.seq_number
            delivered += await self._hand_over(esipa, notification.raw, seq, "notification")
        covered = {s for p in self._saved.pending for s in p.remove}
        for epr in es10_iot.retrieve_euicc_package_results(self.client):
            if epr.seq_number is None or epr.seq_number in covered:
                continue
            wrapped = provide_eim_package_result(
                epr.raw, self.eid if self.config.send_eid else None
            )
            delivered += await self._hand_over(esipa, wrapped, epr.seq_number, "stored result")
        return delivered

    async def _hand_over(self, esipa: EsipaClient, raw: bytes, seq: int, what: str) -> bool:
        """ESipa.HandleNotification of ``raw``; once the eIM took it, seqNumber ``seq`` is
        removed from the card. A refusal skips it; an unreachable eIM ends the cycle."""
        try:
            await esipa.handle_notification(raw)
        except EsipaFunctionError as exc:
            log.warning("eIM refused %s %d: %s", what, seq, exc)
            return False
        except EsipaError as exc:
            raise _CycleFailed(f"handleNotification: {exc}") from exc
        self._remove(seq)
        return True

    def _remove(self, seq: int) -> None:
        try:
            self.client.remove_notification_from_list(seq)
        except Es10Error as exc:
            log.info("RemoveNotificationFromList(%d): %s", seq, exc)

    # -- S2 ------------------------------------------------------------------------------

    async def _poll(self) -> EimPackage | None:
        cause = self._saved.state_change_cause
        assert self.eid is not None
        try:
            package = await self._eim_client.get_eim_package(
                self.eid, notify_state_change=cause is not None, state_change_cause=cause
            )
        except EsipaError as exc:
            raise _CycleFailed(f"getEimPackage: {exc}") from exc
        if cause is not None:  # the eIM has been told
            self._saved.state_change_cause = None
            self._save()
        return package

    async def _handle(self, package: EimPackage) -> PackageOutcome:
        reattach = False
        if package.kind is EimPackageKind.EUICC_PACKAGE_REQUEST:
            self._go(State.EXECUTE)
            pending, reattach = self._execute(package.raw)
        elif package.kind is EimPackageKind.IPA_EUICC_DATA_REQUEST:
            self._go(State.EUICC_DATA)
            pending = self._euicc_data(package.raw)
        else:
            self._go(State.DOWNLOAD)
            pending, reattach = await self._download(package.raw)
        self._go(State.REPORT)
        return await self._report(pending, package.kind, reattach)

    # -- S3 / S5 -------------------------------------------------------------------------

    def _execute(self, package: bytes) -> tuple[PendingResult, bool]:
        """S3: the result (saved) and whether the profile was switched."""
        handled = execute_package(self.client, package)
        if handled.reconfigured:
            self._reboot = True  # eIM configuration may have changed
        pending = self._keep(handled.result, handled.remove, handled.rollback)
        return pending, handled.switched

    def _euicc_data(self, request: bytes) -> PendingResult:
        """S5: the result (saved)."""
        return self._keep(euicc_data(self.client, request, eim=self.eim, config=self.config).result)

    # -- S6 / S7 -------------------------------------------------------------------------

    async def _download(self, request: bytes) -> tuple[PendingResult, bool]:
        """S6: the result (saved) and whether ImmediateEnable switched the profile."""
        attempt = await download_for_trigger(
            self.client,
            request,
            eim=self.eim,
            config=self.config,
            esipa=lambda: self._eim_client,
        )
        if attempt.cancelled:
            self._go(State.CANCEL)
        if attempt.installed is None:
            return self._keep(attempt.result, attempt.remove), False
        self._switched = True  # a new profile is there (state recorded after the cycle)
        enabled = False
        if self.config.immediate_enable:
            try:
                es10_iot.immediate_enable(self.client, self.config.refresh)
            except Es10Error as exc:
                log.info("ImmediateEnable: %s", exc)
            else:
                log.info("profile %s enabled at once", attempt.installed.iccid)
                self._saved.state_change_cause = int(StateChangeCause.IMMEDIATE_ENABLE_PROFILE)
                enabled = True
        return self._keep(attempt.result, attempt.remove), enabled
