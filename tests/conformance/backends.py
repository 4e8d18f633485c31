"""Card backends of the ES10 conformance suite (see conftest.py for how tests use them).

Three backends, one suite:

* ``emulator``: the in-process :class:`~euicc_sim.card.Euicc`, reached through
  :class:`~ipa.transport.InProcessTransport`;
* ``vpcd``: the same emulated card, served to pcscd's vpcd driver by
  :class:`~euicc_sim.vpcd.VpcdClient` and reached through :class:`~ipa.pcsc.PcscTransport`, so
  every APDU of a test goes through real PC/SC (provisioning still preloads the card object);
* ``pcsc``: whatever card is in a PC/SC reader (``--reader NAME``): nothing can be installed,
  so :meth:`CardBackend.provision` picks existing profiles that fit;
* ``modem``: the emulated card behind ``euicc-sim modem`` on a pseudo-terminal, reached through
  :class:`~ipa.modem.ModemTransport` (every APDU crosses the AT interface: +CCHO/+CGLA or
  +CSIM, as the quirks profile has it);
* ``modem-device``: the card inside a real cellular module (``--modem DEVICE``), picked like
  ``pcsc``.
"""

from __future__ import annotations

import abc
import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from pcsc_support import SLOT_TIMEOUT, file_lock, lock_name

from euicc_protocol.eid import make_eid
from euicc_protocol.iccid import iccid_from_ef
from euicc_sim.card import Euicc
from euicc_sim.state import ProfileClass as CardProfileClass
from ipa.channel import ChannelConfig
from ipa.errors import IpaError
from ipa.es10 import Es10Client
from ipa.modem import ModemTransport, open_modem_transport
from ipa.pcsc import PcscTransport, open_reader_transport
from ipa.transport import InProcessTransport
from ipa.types import NotificationEvent, ProfileClass, ProfileInfo, ProfileState

TS48_DIR = Path(__file__).resolve().parents[2] / "profiles" / "ts48"

#: The client framings every test runs through: (card-assigned channel, 255-byte STORE DATA
#: blocks) and (fixed further-interindustry channel 7, 16-byte blocks, SELECT P2=00).
FRAMINGS: dict[str, ChannelConfig] = {
    "assigned-ch-255": ChannelConfig(),
    "ch7-16": ChannelConfig(channel=7, block_size=16, select_p2=0x00),
}

#: Where emulated profiles that ask for notifications send them.
NOTIFICATION_ADDRESS = "notifications.smdp.example.com"

#: The emulator's EID: fixed, so runs are reproducible.
EMULATOR_EID = make_eid("89049032", 4711)

_NOTIFYING_EVENTS = {
    NotificationEvent.NOTIFICATION_ENABLE,
    NotificationEvent.NOTIFICATION_DISABLE,
    NotificationEvent.NOTIFICATION_DELETE,
}


@dataclass(frozen=True)
class ProfileSpec:
    """What a test needs of one profile.

    Attributes:
        profile_class: test, provisioning or operational.
        ppr1, ppr2: the profile policy rules set on the profile.
        notifications: whether the profile asks for enable, disable and delete
            notifications (the address is the backend's choice, see ``CardProfile``).
        enabled: whether it must start enabled (at most one spec per card).
        nickname: its starting nickname.
        preloaded: installed by the factory (True) or downloaded in the field.
    """

    profile_class: ProfileClass = ProfileClass.TEST
    ppr1: bool = False
    ppr2: bool = False
    notifications: bool = False
    enabled: bool = False
    nickname: str | None = None
    preloaded: bool = True

    def describe(self) -> str:
        """The spec in words: ``an enabled operational profile with PPR1, ...``."""
        state = "enabled" if self.enabled else "disabled"
        pprs = [name for name, on in (("PPR1", self.ppr1), ("PPR2", self.ppr2)) if on]
        parts = [
            f"with {' and '.join(pprs)}" if pprs else "without PPR1/PPR2",
            "asking for enable/disable/delete notifications to one address"
            if self.notifications
            else "without notifications",
            f"nicknamed {self.nickname!r}" if self.nickname is not None else "without nickname",
        ]
        if not self.preloaded:
            parts.append("loaded in the field")
        article = "an" if state[0] in "aeiou" else "a"
        return f"{article} {state} {self.profile_class.asn1_name} profile {', '.join(parts)}"


@dataclass(frozen=True)
class CardProfile:
    """A profile the backend provided for a :class:`ProfileSpec`."""

    spec: ProfileSpec
    iccid: str
    isdp_aid: bytes
    notification_address: str | None


#: Card kinds the emulator backends make (``euicc_sim.config.KINDS``).
KINDS = ("consumer", "iot")


@dataclass(frozen=True)
class CardTarget:
    """One parametrisation of the suite: a backend (``--backend`` name), a client framing and,
    for the emulator backends, the kind of card they make (a card in a reader is what it is:
    ``None``)."""

    backend: str
    framing: str
    kind: str | None = None

    @property
    def id(self) -> str:
        """The test ID part: ``emulator-iot-assigned-ch-255``."""
        if self.kind is None:
            return f"{self.backend}-{self.framing}"
        return f"{self.backend}-{self.kind}-{self.framing}"


class CardBackend(abc.ABC):
    """One card under test, reached through one client framing."""

    #: The ``--backend`` value that selects this backend.
    name: ClassVar[str]
    #: Whether tests may change the card without ``--allow-card-changes``.
    can_modify: ClassVar[bool]
    #: Whether the card holds only the profiles :meth:`provision` returned (and only the
    #: notifications the test caused), so that lists read from it can be compared exactly
    #: (otherwise tests compare the provisioned part).
    exclusive: ClassVar[bool]
    #: Whether the backend can make a brand-new card as often as asked (model tests need one
    #: per example).
    fresh_cards: ClassVar[bool]
    #: Whether the card is reached through PC/SC (the test then carries the ``pcsc`` mark).
    uses_pcsc: ClassVar[bool] = False
    #: The share of a model test's examples to run on this backend (below 1 where each
    #: exchange costs more, so that the suite's runtime stays reasonable).
    example_share: ClassVar[float] = 1.0

    def __init__(self, framing: ChannelConfig) -> None:
        self.framing = framing

    @abc.abstractmethod
    def client(self) -> Es10Client:
        """The ES10 client currently connected to the card."""

    @abc.abstractmethod
    def provision(self, profiles: Sequence[ProfileSpec]) -> list[CardProfile]:
        """Make the card hold profiles matching ``profiles`` (one result per spec, in order).

        A backend that cannot install profiles selects existing ones instead and calls
        ``pytest.skip`` naming the spec it could not match.
        """

    @abc.abstractmethod
    def power_cycle(self) -> Es10Client:
        """Reset the card (volatile state is lost) and return a newly opened client."""

    @abc.abstractmethod
    def reopen(self) -> Es10Client:
        """Power the card down and up again from what it persisted; return a new client."""

    def known_eid(self) -> str | None:
        """The EID the backend knows the card has (None when only the card can tell)."""
        return None

    @property
    def kind(self) -> str:
        """``"iot"`` or ``"consumer"``: an SGP.32 eUICC announces its IoT version in
        EUICCInfo2 (``iotSpecificInfo``), an SGP.22 one does not."""
        return "iot" if self.client().get_euicc_info2().iot_specific_info else "consumer"

    @abc.abstractmethod
    def close(self) -> None:
        """Close the client's channel and release the card."""


def _check_one_enabled(profiles: Sequence[ProfileSpec]) -> None:
    if sum(spec.enabled for spec in profiles) > 1:
        raise ValueError("at most one profile can start enabled")


class EmulatorBackend(CardBackend):
    """The in-process emulator, in memory or (for persistence tests) in a directory."""

    name = "emulator"
    can_modify = True
    exclusive = True
    fresh_cards = True

    def __init__(
        self, framing: ChannelConfig, directory: Path | None = None, kind: str = "consumer"
    ) -> None:
        super().__init__(framing)
        self._directory = directory
        self._kind = kind
        self._card = Euicc.create(directory, eid=EMULATOR_EID, fsync=False, kind=kind)
        self._packages = sorted(TS48_DIR.glob("*.der"))
        self._used = 0
        self._client = self._connect(reset=False)

    def _connect(self, *, reset: bool) -> Es10Client:
        """Open a client to ``self._card``, resetting the card first when ``reset``."""
        if reset:
            self._card.reset()
        return Es10Client.open(InProcessTransport(self._card), self.framing)

    def client(self) -> Es10Client:
        return self._client

    def provision(self, profiles: Sequence[ProfileSpec]) -> list[CardProfile]:
        _check_one_enabled(profiles)
        if self._used + len(profiles) > len(self._packages):
            raise ValueError(f"the emulator backend has {len(self._packages)} TS.48 packages")
        out = []
        for spec in profiles:
            if not spec.preloaded:
                pytest.skip("needs a field-loaded profile; the emulator backend only preloads")
            package = self._packages[self._used].read_bytes()
            self._used += 1
            address = NOTIFICATION_ADDRESS if spec.notifications else None
            installed = self._card.preload(
                package,
                profile_class=CardProfileClass(int(spec.profile_class)),
                nickname=spec.nickname,
                notification_address=address,
                ppr1=spec.ppr1,
                ppr2=spec.ppr2,
                enable=spec.enabled,
            )
            iccid = iccid_from_ef(installed.iccid)
            out.append(CardProfile(spec, iccid, installed.isdp_aid, address))
        return out

    def power_cycle(self) -> Es10Client:
        self._client = self._connect(reset=True)
        return self._client

    def reopen(self) -> Es10Client:
        if self._directory is not None:
            self._card.close()  # one owner per card directory
            self._card = Euicc.open(self._directory, fsync=False)
        else:
            self._card = Euicc(self._card.storage)
        self._client = self._connect(reset=False)
        return self._client

    def known_eid(self) -> str | None:
        return self._card.eid

    @property
    def kind(self) -> str:
        return self._kind

    def close(self) -> None:
        self._client.close()
        self._card.close()


# -- the emulator through pcscd + vpcd ----------------------------------------------------------


class SwitchableCard:
    """What a vpcd slot serves: the card object of the current test, swapped per test.

    The slot's :class:`~euicc_sim.vpcd.VpcdClient` (its own thread) calls :meth:`transmit` and
    :meth:`reset`; the test's thread swaps the card and preloads profiles. Both hold
    :attr:`lock` while they touch the card.
    """

    def __init__(self, card: Euicc) -> None:
        self.lock = threading.RLock()
        self._card = card

    @property
    def card(self) -> Euicc:
        """The card currently in the slot."""
        return self._card

    def put(self, card: Euicc) -> None:
        """Put ``card`` into the slot in place of the current one."""
        with self.lock:
            self._card = card

    def transmit(self, apdu: bytes) -> bytes:
        with self.lock:
            return self._card.transmit(apdu)

    def reset(self) -> bytes:
        with self.lock:
            return self._card.reset()


@dataclass(frozen=True)
class VpcdSlot:
    """A vpcd reader slot serving a :class:`SwitchableCard` (set up per test module)."""

    card: SwitchableCard
    reader: str


class _SlotBackend(EmulatorBackend):
    """The emulator in a slot shared by a test module (a vpcd reader, an emulated modem),
    reached through a real transport held for the backend's lifetime.

    Each backend puts its own new card into the slot; every connection resets the card through
    the transport, so no state of an earlier test survives. Provisioning preloads the card
    object directly, as the emulator backend does.
    """

    def __init__(
        self,
        framing: ChannelConfig,
        slot: VpcdSlot | ModemSlot,
        directory: Path | None = None,
        kind: str = "consumer",
    ) -> None:
        self._slot = slot
        self._transport: PcscTransport | ModemTransport | None = None
        try:
            super().__init__(framing, directory, kind)
        except BaseException:
            if self._transport is not None:
                self._transport.close()
            raise

    def _open_transport(self) -> PcscTransport | ModemTransport:
        raise NotImplementedError  # each kind of slot says how it is reached

    def _connect(self, *, reset: bool) -> Es10Client:
        self._slot.card.put(self._card)
        if self._transport is None:
            self._transport = self._open_transport()
        self._transport.reset()
        return Es10Client.open(self._transport, self.framing)

    def provision(self, profiles: Sequence[ProfileSpec]) -> list[CardProfile]:
        with self._slot.card.lock:
            return super().provision(profiles)

    def close(self) -> None:
        try:
            with contextlib.suppress(IpaError):
                self._client.close()
        finally:
            if self._transport is not None:
                self._transport.close()


class VpcdBackend(_SlotBackend):
    """The emulator through real PC/SC: pcscd's vpcd driver and :class:`PcscTransport`.

    Each backend puts its own new card into the module's vpcd slot and holds one
    :class:`PcscTransport` to the slot's reader for its lifetime. The card is reset through
    PC/SC (``SCardReconnect`` with reset, which vpcd passes on) when the backend starts, on
    :meth:`power_cycle` and on :meth:`reopen` (after swapping in the card object rebuilt from
    storage). Provisioning preloads the card object directly, as the emulator backend does.
    """

    name = "vpcd"
    uses_pcsc = True
    # Each APDU crosses pcscd and two TCP hops (about 0.15 ms): the model test takes over
    # twice as long as in process. A third of its examples is still some 2,500 steps, about
    # ten thousand ES10 exchanges through PC/SC.
    example_share = 1 / 3

    def __init__(
        self,
        framing: ChannelConfig,
        slot: VpcdSlot,
        directory: Path | None = None,
        kind: str = "consumer",
    ) -> None:
        super().__init__(framing, slot, directory, kind)

    def _open_transport(self) -> PcscTransport | ModemTransport:
        return PcscTransport(self._slot.reader)


# -- a card in a PC/SC reader --------------------------------------------------------------------


def fits(info: ProfileInfo, spec: ProfileSpec) -> bool:
    """Whether the card's profile ``info`` is one :class:`ProfileSpec` ``spec`` describes.

    Whether a profile was pre-loaded or loaded in the field cannot be read over ES10, so
    ``spec.preloaded`` is not checked here (see :class:`PcscBackend`).
    """
    if info.iccid is None or info.isdp_aid is None or info.profile_class is not spec.profile_class:
        return False
    expected = ProfileState.ENABLED if spec.enabled else ProfileState.DISABLED
    if info.profile_state is not expected or info.profile_nickname != spec.nickname:
        return False
    pprs = set(info.profile_policy_rules or ())
    if ("ppr1" in pprs, "ppr2" in pprs) != (spec.ppr1, spec.ppr2):
        return False
    config = info.notification_configuration_info or ()
    if not spec.notifications:
        return not config
    events = {event for entry in config for event in entry.profile_management_operation}
    addresses = {entry.notification_address for entry in config}
    return _NOTIFYING_EVENTS <= events and len(addresses) == 1


def match_profiles(
    infos: Sequence[ProfileInfo], specs: Sequence[ProfileSpec]
) -> list[ProfileInfo] | None:
    """Distinct profiles of ``infos``, one fitting each of ``specs`` in order (None: none)."""
    chosen: list[ProfileInfo] = []

    def search(i: int) -> bool:
        if i == len(specs):
            return True
        for info in infos:
            if all(info is not c for c in chosen) and fits(info, specs[i]):
                chosen.append(info)
                if search(i + 1):
                    return True
                chosen.pop()
        return False

    return chosen if search(0) else None


def _summary(info: ProfileInfo) -> str:
    state = "no state" if info.profile_state is None else info.profile_state.asn1_name
    cls = "no class" if info.profile_class is None else info.profile_class.asn1_name
    pprs = "/".join(info.profile_policy_rules or ()) or "no PPRs"
    notes = "notifications" if info.notification_configuration_info else "no notifications"
    nick = f"nickname {info.profile_nickname!r}" if info.profile_nickname else "no nickname"
    return f"{info.iccid} ({cls}, {state}, {pprs}, {notes}, {nick})"


class PcscBackend(CardBackend):
    """A card in a PC/SC reader (``--reader NAME``), physical or not.

    Nothing can be installed: :meth:`provision` picks existing profiles that fit each spec and
    skips the test, naming what it needs, when the card has none. The card is shared by every
    test (and every ``pytest -n`` worker): each backend holds the reader's lock file for its
    lifetime and one :class:`PcscTransport`, resets the card through PC/SC when it starts, and
    implements both :meth:`power_cycle` and :meth:`reopen` as a PC/SC reset (pcscd powers the
    card down anyway when its last client leaves, so no logical channel outlives a test).

    Pre-loaded and field-loaded profiles look the same over ES10: specs asking for pre-loaded
    profiles (the default) match any profile, specs asking for field-loaded ones are skipped.
    """

    name = "pcsc"
    can_modify = False
    exclusive = False
    fresh_cards = False
    uses_pcsc = True

    def __init__(self, framing: ChannelConfig, reader: str, *, changes: bool = True) -> None:
        super().__init__(framing)
        self._changes = changes
        self._stack = contextlib.ExitStack()
        try:
            self._stack.enter_context(
                file_lock(lock_name(f"reader-{reader}"), blocking=True, timeout=SLOT_TIMEOUT)
            )
            self._transport = self._stack.enter_context(open_reader_transport(reader))
            self._client = self._connect()
        except BaseException:
            self._stack.close()
            raise

    @property
    def reader(self) -> str:
        """The name of the reader holding the card."""
        return self._transport.reader

    def _connect(self) -> Es10Client:
        self._transport.reset()
        return Es10Client.open(self._transport, self.framing)

    def client(self) -> Es10Client:
        return self._client

    def provision(self, profiles: Sequence[ProfileSpec]) -> list[CardProfile]:
        _check_one_enabled(profiles)
        for spec in profiles:
            if not spec.preloaded:
                pytest.skip(
                    f"needs {spec.describe()}; the pcsc backend cannot tell field-loaded "
                    "profiles from pre-loaded ones"
                )
        infos = self._client.get_profiles_info()
        chosen = match_profiles(infos, profiles)
        if chosen is None:
            wanted = "; ".join(spec.describe() for spec in profiles)
            if len(profiles) > 1:
                wanted = f"{len(profiles)} distinct profiles: {wanted}"
            have = "; ".join(_summary(info) for info in infos) or "none"
            pytest.skip(
                f"needs {wanted}. The card in {self.reader!r} has no such profile"
                f"{'s' if len(profiles) > 1 else ''} (it has: {have})"
            )
        if self._changes and not any(spec.enabled for spec in profiles):
            self._check_enabled_elsewhere(infos)
        out = []
        for spec, info in zip(profiles, chosen, strict=True):
            assert info.iccid is not None and info.isdp_aid is not None
            config = info.notification_configuration_info or ()
            address = config[0].notification_address if config else None
            out.append(CardProfile(spec, info.iccid, info.isdp_aid, address))
        return out

    def _check_enabled_elsewhere(self, infos: Sequence[ProfileInfo]) -> None:
        """Skip unless a test that enables a provisioned profile can switch away, silently.

        On the emulator no profile is enabled when no spec asks for one. Here the card's
        enabled profile stays; enabling another profile disables it, which a PPR1 of an
        operational profile forbids and a notification configuration would make visible.
        """
        for info in infos:
            if info.profile_state is not ProfileState.ENABLED:
                continue
            pprs = set(info.profile_policy_rules or ())
            blocks = info.profile_class is ProfileClass.OPERATIONAL and "ppr1" in pprs
            if blocks or info.notification_configuration_info:
                pytest.skip(
                    "changes the card and needs no profile enabled, or an enabled one that "
                    "can be disabled implicitly (no PPR1 on an operational profile) without "
                    f"a notification; the card's enabled profile is {_summary(info)}"
                )

    def power_cycle(self) -> Es10Client:
        self._client = self._connect()
        return self._client

    def reopen(self) -> Es10Client:
        return self.power_cycle()

    def close(self) -> None:
        try:
            with contextlib.suppress(IpaError):
                self._client.close()
        finally:
            self._stack.close()


# -- the emulator behind an emulated AT modem, and a card in a real module -------------------


@dataclass(frozen=True)
class ModemSlot:
    """An emulated modem on a pty serving a :class:`SwitchableCard` (set up per test module)."""

    card: SwitchableCard
    device: str
    quirks: str


class ModemBackend(_SlotBackend):
    """The emulator behind ``euicc-sim modem`` (a thread serving a pty), through AT commands.

    Each backend puts its own new card into the module's modem slot and holds one
    :class:`ModemTransport` for its lifetime; connecting power-cycles the card through the
    modem (``AT+CFUN=0``/``1``), so no channel of an earlier test survives. Provisioning
    preloads the card object directly, as the emulator backend does.
    """

    name = "modem"
    # Every APDU crosses the AT interface and a pty (two thread switches): fewer model examples.
    example_share = 1 / 4

    def __init__(
        self, framing: ChannelConfig, slot: ModemSlot, directory: Path | None = None
    ) -> None:
        super().__init__(framing, slot, directory)

    def _open_transport(self) -> PcscTransport | ModemTransport:
        return open_modem_transport(self._slot.device, quirks=self._slot.quirks)


class ModemDeviceBackend(PcscBackend):
    """The card inside a real cellular module (``--modem DEVICE``), picked like ``pcsc``.

    The module's port is held under a lock file for the backend's lifetime; the card is reset
    through the module (``AT+CFUN=0``/``1``) when the backend starts and on power cycles.
    """

    name = "modem-device"
    uses_pcsc = False

    def __init__(
        self, framing: ChannelConfig, device: str, quirks: str, *, changes: bool = True
    ) -> None:
        CardBackend.__init__(self, framing)
        self._changes = changes
        self._device = device
        self._stack = contextlib.ExitStack()
        try:
            self._stack.enter_context(
                file_lock(lock_name(f"modem-{device}"), blocking=True, timeout=SLOT_TIMEOUT)
            )
            self._transport = self._stack.enter_context(  # type: ignore[assignment]
                open_modem_transport(device, quirks=quirks)
            )
            self._client = self._connect()
        except BaseException:
            self._stack.close()
            raise

    @property
    def reader(self) -> str:
        """The module's AT port."""
        return self._device


#: The backends by ``--backend`` name.
BACKENDS: dict[str, type[CardBackend]] = {
    "emulator": EmulatorBackend,
    "vpcd": VpcdBackend,
    "pcsc": PcscBackend,
    "modem": ModemBackend,
    "modem-device": ModemDeviceBackend,
}
