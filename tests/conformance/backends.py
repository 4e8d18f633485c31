"""Card backends of the ES10 conformance suite (see conftest.py for how tests use them)."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from euicc_sim.card import Euicc
from euicc_sim.state import ProfileClass as CardProfileClass
from ipa.channel import ChannelConfig
from ipa.es10 import Es10Client
from ipa.transport import InProcessTransport
from ipa.types import ProfileClass
from rsp.eid import make_eid
from rsp.iccid import iccid_from_ef

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


@dataclass(frozen=True)
class CardProfile:
    """A profile the backend provided for a :class:`ProfileSpec`."""

    spec: ProfileSpec
    iccid: str
    isdp_aid: bytes
    notification_address: str | None


class CardBackend(abc.ABC):
    """One card under test, reached through one client framing."""

    #: The ``--backend`` value that selects this backend.
    name: ClassVar[str]
    #: Whether tests may change the card without ``--allow-card-changes``.
    can_modify: ClassVar[bool]
    #: Whether the card holds only the profiles :meth:`provision` returned, so that lists
    #: read from it can be compared exactly (otherwise tests compare the provisioned part).
    exclusive: ClassVar[bool]
    #: Whether the backend can make a brand-new card as often as asked (model tests need one
    #: per example).
    fresh_cards: ClassVar[bool]

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

    @abc.abstractmethod
    def close(self) -> None:
        """Close the client's channel and release the card."""


class EmulatorBackend(CardBackend):
    """The in-process emulator, in memory or (for persistence tests) in a directory."""

    name = "emulator"
    can_modify = True
    exclusive = True
    fresh_cards = True

    def __init__(self, framing: ChannelConfig, directory: Path | None = None) -> None:
        super().__init__(framing)
        self._directory = directory
        self._card = Euicc.create(directory, eid=EMULATOR_EID, fsync=False)
        self._packages = sorted(TS48_DIR.glob("*.der"))
        self._used = 0
        self._client = self._connect()

    def _connect(self) -> Es10Client:
        return Es10Client.open(InProcessTransport(self._card), self.framing)

    def client(self) -> Es10Client:
        return self._client

    def provision(self, profiles: Sequence[ProfileSpec]) -> list[CardProfile]:
        if sum(spec.enabled for spec in profiles) > 1:
            raise ValueError("at most one profile can start enabled")
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
        self._card.reset()
        self._client = self._connect()
        return self._client

    def reopen(self) -> Es10Client:
        if self._directory is not None:
            self._card = Euicc.open(self._directory, fsync=False)
        else:
            self._card = Euicc(self._card.storage)
        self._client = self._connect()
        return self._client

    def known_eid(self) -> str | None:
        return self._card.eid

    def close(self) -> None:
        self._client.close()


BACKENDS: dict[str, Callable[..., CardBackend]] = {"emulator": EmulatorBackend}
