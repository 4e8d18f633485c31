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
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import json
import logging
import os
import random as random_module
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ipa import es10_iot
from ipa.activation import ActivationCode, InvalidActivationCode, parse_activation_code
from ipa.download import DownloadError, ProfileInstallationFailed, download_profile
from ipa.errors import Es10Error, IpaError, StatusWordError
from ipa.es9p import Es9Config
from ipa.es10 import Es10Client
from ipa.es10_download import DeviceInfo
from ipa.es10_iot import EimConfiguration, EuiccPackageResult
from ipa.esipa import (
    EimPackage,
    EimPackageKind,
    EimPackageResultErrorCode,
    EsipaClient,
    EsipaConfig,
    EsipaError,
    EsipaFunctionError,
    ProfileDownloadErrorReason,
    StateChangeCause,
    epr_and_notifications,
    package_result_error,
    profile_download_trigger_result,
    provide_eim_package_result,
)
from ipa.indirect import download_profile_indirect
from ipa.ipa_data import InvalidIpaEuiccDataRequest, build_ipa_euicc_data
from ipa.types import EuiccInfo1, ProfileState
from rsp import schema

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

#: Name of the IPAd's state file inside the state directory.
STATE_FILE = "ipad-state.json"
_STATE_VERSION = 1


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


class DownloadMode(enum.StrEnum):
    """How S6 reaches the SM-DP+."""

    AUTO = "auto"  # indirect when the eIM announces indirectProfileDownload, else direct
    DIRECT = "direct"
    INDIRECT = "indirect"


@dataclass(frozen=True)
class Backoff:
    """S8 timing: ``interval`` after a good cycle; after ``n`` failed cycles in a row
    ``min(maximum, initial * factor ** (n - 1))``; each scaled by a random factor in
    ``[1 - jitter, 1 + jitter]`` so a fleet does not poll in lockstep."""

    interval: float = 60.0
    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 3600.0
    jitter: float = 0.1

    def delay(self, failures: int, random: Callable[[], float]) -> float:
        """Seconds to wait after a cycle that ended with ``failures`` failures in a row."""
        if failures <= 0:
            base = self.interval
        else:
            base = min(self.maximum, self.initial * self.factor ** (failures - 1))
        return base * (1.0 - self.jitter + 2.0 * self.jitter * random())


@dataclass(frozen=True)
class PullConfig:
    """What the pull flow needs to know.

    Attributes:
        eim_id: the eIM to poll (default: the one used before, else the first configured).
        eim_url: where to reach it instead of ``https://<eimFqdn>`` (e.g. ``http://...``).
        esipa: binding, trust anchors, time-outs (the eIM's trustedPublicKeyDataTls is added
            when ``use_eim_tls_pin``).
        es9: trust anchors and time-outs for direct downloads.
        use_eim_tls_pin: pin/anchor the eIM's TLS to its configured trustedPublicKeyDataTls.
        initial_eim: an AddInitialEimRequest (DER bytes or a file) for an unprovisioned card.
        download_mode: direct, indirect, or auto (see :class:`DownloadMode`).
        immediate_enable: call ImmediateEnable after each successful download.
        refresh: refreshFlag for ImmediateEnable and ProfileRollback.
        device_info: TAC/capabilities/IMEI for ctxParams1 and IpaEuiccData.
        capabilities: IpaCapabilities DER (default :func:`ipa.ipa_data.ipa_capabilities`).
        backoff: S8 timing.
        report_attempts: ProvideEimPackageResult tries per cycle before giving up/rolling back.
        max_packages: most eIM packages handled in one cycle.
        send_eid: put eidValue into ProvideEimPackageResult (optional in v1.2).
    """

    eim_id: str | None = None
    eim_url: str | None = None
    esipa: EsipaConfig = field(default_factory=EsipaConfig)
    es9: Es9Config = field(default_factory=Es9Config)
    use_eim_tls_pin: bool = True
    initial_eim: bytes | str | Path | None = None
    download_mode: DownloadMode = DownloadMode.AUTO
    immediate_enable: bool = True
    refresh: bool = False
    device_info: DeviceInfo | None = None
    capabilities: bytes | None = None
    backoff: Backoff = field(default_factory=Backoff)
    report_attempts: int = 3
    max_packages: int = 32
    send_eid: bool = True


# -- persisted state ------------------------------------------------------------------------------


@dataclass
class PendingResult:
    """A result for the eIM not yet taken: the EimPackageResult alternative TLV, the card's
    seqNumbers to remove once it is, and whether a rollback-flagged enable switched the
    profile (so ProfileRollback is the way out if it cannot be delivered)."""

    result: bytes
    remove: tuple[int, ...] = ()
    rollback: bool = False
    created: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "result": self.result.hex().upper(),
            "remove": list(self.remove),
            "rollback": self.rollback,
            "created": self.created,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PendingResult:
        return cls(
            bytes.fromhex(d["result"]),
            tuple(int(s) for s in d.get("remove", ())),
            bool(d.get("rollback", False)),
            float(d.get("created", 0.0)),
        )


@dataclass
class _Saved:
    eid: str | None = None
    eim_id: str | None = None
    pending: list[PendingResult] = field(default_factory=list)
    state_change_cause: int | None = None
    enabled_iccid: str | None = None  # "" = none enabled; None = never looked


class _StateFile:
    """The state file: JSON, replaced atomically (write, fsync, rename)."""

    def __init__(self, directory: str | os.PathLike[str] | None) -> None:
        self.path = None if directory is None else Path(directory) / STATE_FILE

    def load(self) -> _Saved:
        if self.path is None or not self.path.exists():
            return _Saved()
        try:
            d = json.loads(self.path.read_text("utf-8"))
            return _Saved(
                d.get("eid"),
                d.get("eimId"),
                [PendingResult.from_json(p) for p in d.get("pendingResults", [])],
                d.get("stateChangeCause"),
                d.get("enabledIccid"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            # A damaged file must not stop the device; what it held is lost (and logged).
            log.error("ignoring unreadable state file %s: %s", self.path, exc)
            return _Saved()

    def save(self, saved: _Saved) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "version": _STATE_VERSION,
            "eid": saved.eid,
            "eimId": saved.eim_id,
            "pendingResults": [p.to_json() for p in saved.pending],
            "stateChangeCause": saved.state_change_cause,
            "enabledIccid": saved.enabled_iccid,
        }
        tmp = self.path.with_name(STATE_FILE + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


# -- outcomes -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PackageOutcome:
    """What became of one eIM package (or of a result re-sent from an earlier cycle, ``kind``
    None).

    Attributes:
        kind: the package kind.
        result: the EimPackageResult alternative sent (``BF51``, ``30``, ``BF52``, ``BF54``,
            ``A0``).
        delivered: the eIM took it.
        acknowledged: seqNumbers the eIM acknowledged with it.
        rolled_back: ProfileRollback replaced the result.
        detail: a short human-readable summary.
        refused: the eIM answered the result with an error (it is not sent again).
    """

    kind: EimPackageKind | None
    result: bytes
    delivered: bool
    acknowledged: tuple[int, ...] = ()
    rolled_back: bool = False
    detail: str = ""
    refused: bool = False

    @property
    def kept(self) -> bool:
        """Whether the result is still pending (to be sent again next cycle)."""
        return not self.delivered and not self.refused


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


class _CycleFailed(Exception):
    """Internal: end the cycle in S8 with back-off."""


class _CiRestricted(Es10Client):
    """An Es10Client whose EUICCInfo1 lists only one CI key id (the eIM's euiccCiPKId), so the
    SM-DP+ picks that CI (PROTOCOL.md §5.10 S6)."""

    def __init__(self, client: Es10Client, ci_pkid: bytes) -> None:
        super().__init__(client.channel)
        self._ci_pkid = ci_pkid

    def get_euicc_info1(self) -> EuiccInfo1:
        info = super().get_euicc_info1()
        d = schema.decode("EUICCInfo1", info.raw)
        lists = ("euiccCiPKIdListForVerification", "euiccCiPKIdListForSigning")
        if not all(self._ci_pkid in d[name] for name in lists):
            log.warning("the eIM's euiccCiPKId is not among the card's CIs; not restricting")
            return info
        for name in lists:
            d[name] = [self._ci_pkid]
        raw = schema.encode("EUICCInfo1", d)
        return EuiccInfo1.from_asn1(d, raw)


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
        self._file = _StateFile(state_dir)
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
        self._saved = _Saved()
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
                saved = _Saved()
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
            self._epr_result(epr),
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
            try:
                await esipa.handle_notification(notification.raw)
            except EsipaFunctionError as exc:
                log.warning("eIM refused notification %d: %s", notification.seq_number, exc)
                continue
            except EsipaError as exc:
                raise _CycleFailed(f"handleNotification: {exc}") from exc
            self._remove(notification.seq_number)
            delivered += 1
        covered = {s for p in self._saved.pending for s in p.remove}
        for epr in es10_iot.retrieve_euicc_package_results(self.client):
            if epr.seq_number is None or epr.seq_number in covered:
                continue
            wrapped = provide_eim_package_result(
                epr.raw, self.eid if self.config.send_eid else None
            )
            try:
                await esipa.handle_notification(wrapped)
            except EsipaFunctionError as exc:
                log.warning("eIM refused stored result %d: %s", epr.seq_number, exc)
                continue
            except EsipaError as exc:
                raise _CycleFailed(f"handleNotification: {exc}") from exc
            self._remove(epr.seq_number)
            delivered += 1
        return delivered

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

    # -- S3 ------------------------------------------------------------------------------

    def _epr_result(self, epr: EuiccPackageResult) -> bytes:
        notifications = [n.raw for n in self.client.retrieve_notifications_list()]
        return epr_and_notifications(epr.raw, notifications) if notifications else epr.raw

    def _execute(self, package: bytes) -> tuple[PendingResult, bool]:
        """S3: the result (saved) and whether the profile was switched."""
        invalid = EimPackageResultErrorCode.INVALID_PACKAGE_FORMAT
        try:
            signed = schema.decode("EuiccPackageRequest", package)["euiccPackageSigned"]
        except schema.DecodeError as exc:
            log.warning("undecodable eUICC package: %s", exc)
            return self._keep(package_result_error(invalid)), False
        tid = signed.get("eimTransactionId")
        try:
            epr = es10_iot.load_euicc_package(self.client, package)
        except StatusWordError as exc:  # the card would not even parse it
            log.warning("LoadEuiccPackage refused: %s", exc)
            return self._keep(package_result_error(invalid, tid)), False
        kind, operations = signed["euiccPackage"]
        rollback = False
        if kind == "psmoList" and epr.ok:
            for (op, value), (name, code) in zip(operations, epr.results, strict=False):
                if op == "enable" and "rollbackFlag" in value and name == "enableResult":
                    rollback = rollback or code == 0
        if kind == "ecoList" and epr.ok:
            self._reboot = True  # eIM configuration may have changed
        seqs = tuple(s for s in (epr.seq_number,) if s is not None)
        pending = self._keep(self._epr_result(epr), seqs, rollback)
        log.info("eUICC package %s: %s %s", kind, epr.kind, list(epr.results))
        return pending, epr.profile_switched

    # -- S5 ------------------------------------------------------------------------------

    def _euicc_data(self, request: bytes) -> PendingResult:
        try:
            answer = build_ipa_euicc_data(
                self.client,
                request,
                eim_id=self.eim.eim_id if self.eim is not None else None,
                capabilities=self.config.capabilities,
                device_info=self.config.device_info,
            )
        except InvalidIpaEuiccDataRequest as exc:
            log.warning("%s", exc)
            return self._keep(
                package_result_error(EimPackageResultErrorCode.INVALID_PACKAGE_FORMAT)
            )
        return self._keep(answer.raw)

    # -- S6 / S7 -------------------------------------------------------------------------

    def _activation_code(self, data: Any) -> ActivationCode:
        if data is None:
            raise ValueError("no profileDownloadData (eimDownloadDataHandling is not offered)")
        kind, value = data
        if kind == "activationCode":
            return parse_activation_code(value)
        if kind == "contactDefaultSmdp":
            address = self.client.get_euicc_configured_addresses().default_dp_address
            if not address:
                raise ValueError("contactDefaultSmdp, but no default SM-DP+ address is set")
            return ActivationCode(address, "")
        raise ValueError(f"{kind} is not supported by this IPAd")

    def _indirect(self) -> bool:
        mode = self.config.download_mode
        if mode is DownloadMode.AUTO:
            return self.eim is not None and self.eim.indirect_profile_download
        return mode is DownloadMode.INDIRECT

    async def _download(self, request: bytes) -> tuple[PendingResult, bool]:
        """S6: the result (saved) and whether ImmediateEnable switched the profile."""
        try:
            trigger = schema.decode("ProfileDownloadTriggerRequest", request)
        except schema.DecodeError as exc:
            log.warning("undecodable download trigger: %s", exc)
            code = EimPackageResultErrorCode.INVALID_PACKAGE_FORMAT
            return self._keep(package_result_error(code)), False
        tid = trigger.get("eimTransactionId")
        failed = profile_download_trigger_result(
            error_reason=ProfileDownloadErrorReason.UNDEFINED_ERROR, eim_transaction_id=tid
        )
        try:
            ac = self._activation_code(trigger.get("profileDownloadData"))
        except (ValueError, InvalidActivationCode) as exc:
            log.warning("download trigger not usable: %s", exc)
            return self._keep(failed), False
        client: Es10Client = self.client
        if self.eim is not None and self.eim.euicc_ci_pkid is not None:
            client = _CiRestricted(self.client, self.eim.euicc_ci_pkid)
        options: dict[str, Any] = {"device_info": self.config.device_info}
        try:
            if self._indirect():
                log.info("indirect download from %s through the eIM", ac.smdp_address)
                result = await download_profile_indirect(
                    client,
                    self._eim_client,
                    ac,
                    eim_transaction_id=tid,
                    deliver_notification=False,
                    **options,
                )
            else:
                log.info("direct download from %s", ac.smdp_address)
                result = await download_profile(client, ac, config=self.config.es9, **options)
        except ProfileInstallationFailed as exc:
            remove = () if exc.notification_removed else (exc.result.seq_number,)
            pir = exc.result.raw
            trigger_result = profile_download_trigger_result(
                profile_installation_result=pir, eim_transaction_id=tid
            )
            return self._keep(trigger_result, remove), False
        except DownloadError as exc:
            log.warning("download failed at %s: %s", exc.step, exc)
            if exc.cancelled_on_card:
                self._go(State.CANCEL)
            return self._keep(failed), False
        self._switched = True  # a new profile is there (state recorded after the cycle)
        enabled = False
        if self.config.immediate_enable:
            try:
                es10_iot.immediate_enable(self.client, self.config.refresh)
            except Es10Error as exc:
                log.info("ImmediateEnable: %s", exc)
            else:
                log.info("profile %s enabled at once", result.iccid)
                self._saved.state_change_cause = int(StateChangeCause.IMMEDIATE_ENABLE_PROFILE)
                enabled = True
        remove = () if result.notification_removed else (result.seq_number,)
        trigger_result = profile_download_trigger_result(
            profile_installation_result=result.profile_installation_result,
            eim_transaction_id=tid,
        )
        return self._keep(trigger_result, remove), enabled
