"""The card's persistent state as immutable dataclasses.

Everything a card remembers across power cycles lives in one :class:`CardState` value.
Commands never mutate it: they compute a new value and hand it to the storage, which commits
it atomically (see :mod:`euicc_sim.storage`). Profile package bytes are kept apart as blobs
named by their SHA-256, so the state itself stays small.

The SGP.32 part (eIM configurations, stored eUICC package results, rollback, fallback and
immediate-enable bookkeeping) is described in ``docs/sgp32-card.md``. Every field added after
the first release has a default, so state files written before it still load.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from euicc_protocol.records import evolve


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
    # SGP.32 v1.2: fallbackAllowed (9F67) from the profile metadata, and whether this is the
    # Fallback Profile (fallbackAttribute 9F26, set by the PSMO setFallbackAttribute).
    fallback_allowed: bool = False
    fallback_attribute: bool = False
    # The profile's UICC side as the terminal changed it (files, PIN counters, SQN arrays):
    # SHA-256 hex of a blob (euicc_sim.uicc.state); None while it is as the package made it.
    uicc_digest: str | None = None


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
class EimConfig:
    """One eIM's EimConfigurationData as the eUICC keeps it (SGP.32 v1.2 §2.11.1.1.1).

    Key material is kept as the DER the eIM sent (the context tag restored to ``30``), so it
    is returned and used exactly as received. ``counter_value`` is the last counterValue
    accepted from this eIM (initially the configured one); ``association_token`` is ``None``
    when the configuration has none.
    """

    eim_id: str
    counter_value: int = 0
    association_token: int | None = None
    eim_fqdn: str | None = None
    eim_id_type: int | None = None
    public_key: bytes | None = None  # eimPublicKey: SubjectPublicKeyInfo DER
    certificate: bytes | None = None  # eimCertificate: Certificate DER
    tls_public_key: bytes | None = None  # trustedEimPkTls: SubjectPublicKeyInfo DER
    tls_certificate: bytes | None = None  # trustedCertificateTls: Certificate DER
    supported_protocols: frozenset[int] | None = None  # EimSupportedProtocol bit positions
    euicc_ci_pkid: bytes | None = None  # CI whose eUICC chain signs this eIM's results
    indirect_profile_download: bool = False


@dataclass(frozen=True)
class StoredPackageResult:
    """A signed EuiccPackageResult waiting for RemoveNotificationFromList.

    ``encoded`` is the complete ``BF51`` TLV as returned to the IPAd. Package results share
    the seqNumber space with notifications (``CardState.next_seq_number``).
    """

    seq_number: int
    eim_id: str
    encoded: bytes


@dataclass(frozen=True)
class RollbackInfo:
    """What ProfileRollback needs after an ``enable`` PSMO with rollbackFlag succeeded.

    ``results`` are the encoded EuiccResultData items of the package's result, so the new
    result ProfileRollback signs reports them too; ``token_tlv`` is the associationToken TLV
    the package was verified with (the new result is signed with the same bytes).
    """

    eim_id: str
    counter_value: int
    eim_transaction_id: bytes | None
    previous_iccid: bytes  # the profile that was enabled before, re-enabled by a rollback
    enabled_iccid: bytes  # the profile the PSMO enabled
    results: bytes
    token_tlv: bytes
    seq_number: int  # of the original result, replaced by the rollback result


@dataclass(frozen=True)
class FallbackInfo:
    """Fallback mode is active: ExecuteFallbackMechanism switched to the Fallback Profile."""

    return_iccid: bytes | None  # enabled before the fallback; None if none was


@dataclass(frozen=True)
class ImmediateEnableConfig:
    """ConfigureImmediateProfileEnabling / PSMO configureImmediateEnable."""

    enabled: bool  # immediateEnableFlag present
    smdp_oid: str | None = None  # defaultSmdpOid: downloads from this SM-DP+ only
    smdp_address: str | None = None  # defaultSmdpAddress: downloads from this SM-DP+ only


@dataclass(frozen=True)
class LastDownload:
    """The hook between a download and ES10b.ImmediateEnable.

    The download code sets ``CardState.last_download`` to the profile a successful
    LoadBoundProfilePackage installed, in the same commit as the install; ImmediateEnable
    consumes it. ``None`` means no download ImmediateEnable could act on (noSessionContext).
    """

    iccid: bytes  # EF.ICCID coding, as Profile.iccid
    smdp_oid: str  # the SM-DP+ OID of the download session (CERT.DPauth registeredID)
    smdp_address: str  # the serverAddress of the download session


@dataclass(frozen=True)
class StoredCrl:
    """The certificate revocation list of one CI, as LoadCRL left it (:mod:`euicc_sim.crl`).

    ``revoked``: the serial numbers of the CRL with the highest crlNumber loaded (deltas
    merged in). A partitioned CRL (SGP.22 partial CRLs) is loaded part by part: ``parts``
    holds the partialCrlNumbers loaded of ``total_parts`` and ``revoked`` their entries; until
    all are in, the card also keeps applying ``previous``, the list the new set replaces.
    """

    ci_pkid: bytes
    crl_number: int
    revoked: frozenset[int] = frozenset()
    total_parts: int = 0
    parts: frozenset[int] = frozenset()
    previous: frozenset[int] = frozenset()

    @property
    def missing_parts(self) -> list[int]:
        """The partialCrlNumbers still to load (empty for a complete CRL)."""
        return sorted(set(range(1, self.total_parts + 1)) - self.parts)

    @property
    def applied(self) -> frozenset[int]:
        """The serial numbers the card treats as revoked."""
        return self.revoked | self.previous


@dataclass(frozen=True)
class CardState:
    """Everything that survives a power cycle (besides keys, certificates and blobs)."""

    profiles: tuple[Profile, ...] = ()
    notifications: tuple[PendingNotification, ...] = ()
    next_seq_number: int = 1
    next_isdp_index: int = 0x10
    default_dp_address: str | None = None
    root_ds_address: str = "testrootsmds.example.com"
    # --- SGP.32 (see docs/sgp32-card.md)
    eim_configs: tuple[EimConfig, ...] = ()
    next_association_token: int = 1  # never reset, so a new association gets a fresh token
    package_results: tuple[StoredPackageResult, ...] = ()
    rollback: RollbackInfo | None = None
    fallback: FallbackInfo | None = None
    immediate_enable: ImmediateEnableConfig | None = None
    last_download: LastDownload | None = None
    #: One entry per CI that issued a loaded CRL (ES10b.LoadCRL).
    crls: tuple[StoredCrl, ...] = ()
    #: httpParams for GetConnectivityParameters (a factory setting; None: not available).
    connectivity_parameters: bytes | None = None

    def profile_by_iccid(self, iccid: bytes) -> Profile | None:
        return next((p for p in self.profiles if p.iccid == iccid), None)

    def profile_by_aid(self, aid: bytes) -> Profile | None:
        return next((p for p in self.profiles if p.isdp_aid == aid), None)

    @property
    def enabled_profile(self) -> Profile | None:
        return next((p for p in self.profiles if p.state is ProfileState.ENABLED), None)

    def crl_for(self, ci_pkid: bytes) -> StoredCrl | None:
        return next((c for c in self.crls if c.ci_pkid == ci_pkid), None)

    def is_revoked(self, ci_pkid: bytes, serial_number: int) -> bool:
        """Whether a certificate of this CI with this serial number is on a loaded CRL."""
        crl = self.crl_for(ci_pkid)
        return crl is not None and serial_number in crl.applied

    def eim_config(self, eim_id: str) -> EimConfig | None:
        return next((e for e in self.eim_configs if e.eim_id == eim_id), None)

    def package_result(self, seq_number: int) -> StoredPackageResult | None:
        return next((r for r in self.package_results if r.seq_number == seq_number), None)

    def without_package_result(self, seq_number: int) -> CardState | None:
        """This state without package result ``seq_number``; None if there is no such one."""
        kept = tuple(r for r in self.package_results if r.seq_number != seq_number)
        if len(kept) == len(self.package_results):
            return None
        return evolve(self, package_results=kept)
