"""What the IPAd's pull flow (:mod:`ipa.pull`) is told: :class:`PullConfig`, the S8 timing
(:class:`Backoff`) and how S6 reaches the SM-DP+ (:class:`DownloadMode`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ipa.es9p import Es9Config
from ipa.es10_download import DeviceInfo
from ipa.esipa import EsipaConfig

__all__ = ["Backoff", "DownloadMode", "PullConfig"]


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
        report_attempts: failed deliveries (ProvideEimPackageResult, HandleNotification) per
            cycle at most; a fresh result gets that many tries before a rollback or being set
            aside (see :mod:`ipa.pull.rules`).
        max_packages: most eIM packages handled in one cycle.
        send_eid: put eidValue into ProvideEimPackageResult (v1.2; v1.0.1 has no such field).
        sgp32: the SGP.32 version spoken with the eIM ("1.0" or "1.2"); None: the card's
            (EUICCInfo2 iotVersion).
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
    sgp32: str | None = None

    def __post_init__(self) -> None:
        if self.sgp32 not in (None, "1.0", "1.2"):
            raise ValueError(f"sgp32 must be '1.0', '1.2' or None, got {self.sgp32!r}")
        if self.report_attempts < 1:
            raise ValueError("report_attempts must be at least 1")
