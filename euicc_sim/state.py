"""The card's persistent state as immutable dataclasses.

Everything a card remembers across power cycles lives in one :class:`CardState` value.
Commands never mutate it: they compute a new value and hand it to the storage, which commits
it atomically (see :mod:`euicc_sim.storage`). Profile package bytes are kept apart as blobs
named by their SHA-256, so the state itself stays small.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ProfileState(enum.IntEnum):
    """ProfileState as in RSPDefinitions (``9F70``)."""

    DISABLED = 0
    ENABLED = 1


class ProfileClass(enum.IntEnum):
    """ProfileClass as in RSPDefinitions (``95``)."""

    TEST = 0
    PROVISIONING = 1
    OPERATIONAL = 2


class NotificationEvent(enum.IntEnum):
    """Bit positions of the NotificationEvent BIT STRING."""

    INSTALL = 0
    ENABLE = 1
    DISABLE = 2
    DELETE = 3


@dataclass(frozen=True)
class NotificationConfig:
    """One entry of a profile's notificationConfigurationInfo."""

    events: frozenset[NotificationEvent]
    address: str


@dataclass(frozen=True)
class ProfileOwner:
    """OperatorId (``B7``): MCC/MNC and optional GID1/GID2."""

    mcc_mnc: bytes
    gid1: bytes | None = None
    gid2: bytes | None = None


@dataclass(frozen=True)
class Profile:
    """One installed profile (one ISD-P)."""

    iccid: bytes  # 10 bytes, EF.ICCID (nibble-swapped) coding as in ProfileInfo 5A
    isdp_aid: bytes  # 16 bytes
    state: ProfileState = ProfileState.DISABLED
    profile_class: ProfileClass = ProfileClass.OPERATIONAL
    nickname: str | None = None
    service_provider_name: str | None = None
    profile_name: str | None = None
    icon_type: int | None = None
    icon: bytes | None = None
    notification_config: tuple[NotificationConfig, ...] = ()
    profile_owner: ProfileOwner | None = None
    ppr1: bool = False  # disabling not allowed
    ppr2: bool = False  # deletion not allowed
    package_digest: str | None = None  # SHA-256 hex of the stored SAIP package blob
    preloaded: bool = False  # installed by the factory rather than downloaded in the field
    package_size: int = 0  # bytes of the SAIP package, counted against the card's capacity


@dataclass(frozen=True)
class PendingNotification:
    """A notification waiting for RemoveNotificationFromList.

    ``encoded`` is the complete PendingNotification TLV as it will be returned by
    RetrieveNotificationsList (``BF37`` ProfileInstallationResult or ``30``
    OtherSignedNotification), signed at creation time.
    """

    seq_number: int
    event: NotificationEvent
    address: str
    iccid: bytes | None
    encoded: bytes


@dataclass(frozen=True)
class CardState:
    """Everything that survives a power cycle (besides keys, certificates and blobs)."""

    profiles: tuple[Profile, ...] = ()
    notifications: tuple[PendingNotification, ...] = ()
    next_seq_number: int = 1
    next_isdp_index: int = 0x10
    default_dp_address: str | None = None
    root_ds_address: str = "testrootsmds.example.com"

    def profile_by_iccid(self, iccid: bytes) -> Profile | None:
        return next((p for p in self.profiles if p.iccid == iccid), None)

    def profile_by_aid(self, aid: bytes) -> Profile | None:
        return next((p for p in self.profiles if p.isdp_aid == aid), None)

    @property
    def enabled_profile(self) -> Profile | None:
        return next((p for p in self.profiles if p.state is ProfileState.ENABLED), None)
