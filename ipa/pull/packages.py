"""The card's work for each eIM package of the IPAd's pull flow (:mod:`ipa.pull`, the
SGP.32 eIM packages): a package in, the EimPackageResult to report out (:class:`HandledPackage`).

- S3 EXECUTE (:func:`execute_package`): LoadEuiccPackage as received → EPR, with every pending
  notification (ePRAndNotifications) when there are any. A package that does not decode, or
  that the card will not even parse, is answered invalidPackageFormat.
- S5 EUICC DATA (:func:`euicc_data`): IpaEuiccData per tagList (:mod:`ipa.ipa_data`).
- S6 DOWNLOAD (:func:`download_for_trigger`): the activation code is the trigger's
  ``activationCode``, or the card's default SM-DP+ for ``contactDefaultSmdp``. EUICCInfo1 is
  restricted to the eIM's euiccCiPKId, so the SM-DP+ picks that CI. The download is direct
  (ES9+, :mod:`ipa.download`) or indirect (ESipa via the eIM, :mod:`ipa.indirect`): as
  ``download_mode`` says or, in auto mode, indirect when the eIM announces
  indirectProfileDownload. Installed or refused by the card: the result carries the ``BF37``.
  An undecodable trigger is answered invalidPackageFormat; anything else that fails (SM-DS
  triggers, missing download data, an invalid activation code, any failed download) is
  profileDownloadError undefinedError.

Persistence, delivery, ImmediateEnable and every state transition stay with the flow: it is
told what happened (a profile switch, a rollback-flagged enable, an eCO, a cancelled download).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from euicc_protocol import schema
from ipa import es10_iot
from ipa.activation import ActivationCode, InvalidActivationCode, parse_activation_code
from ipa.download import DownloadError, DownloadResult, ProfileInstallationFailed, download_profile
from ipa.errors import StatusWordError
from ipa.es10 import Es10Client
from ipa.es10_iot import EimConfiguration, EuiccPackageResult
from ipa.esipa import (
    EimPackageResultErrorCode,
    EsipaClient,
    ProfileDownloadErrorReason,
    epr_and_notifications,
    package_result_error,
    profile_download_trigger_result,
)
from ipa.indirect import download_profile_indirect
from ipa.ipa_data import InvalidIpaEuiccDataRequest, build_ipa_euicc_data
from ipa.pull.config import DownloadMode, PullConfig
from ipa.types import EuiccInfo1

__all__ = [
    "CiRestricted",
    "HandledPackage",
    "activation_code_for",
    "download_for_trigger",
    "epr_result",
    "euicc_data",
    "execute_package",
]

log = logging.getLogger(__name__)


_INVALID = EimPackageResultErrorCode.INVALID_PACKAGE_FORMAT


@dataclass(frozen=True, slots=True)
class HandledPackage:
    """What one eIM package gave.

    Attributes:
        result: the EimPackageResult alternative to report (``BF51``, ``30``, ``BF52``,
            ``BF54``, ``A0``).
        remove: the card's seqNumbers to remove once the eIM took the result.
        rollback: a rollbackFlag enable switched the profile (ProfileRollback is the way out
            if the result cannot be delivered).
        switched: the enabled profile changed (S3).
        reconfigured: an eCO was executed; the eIM configuration may have changed (S0 again).
        installed: the download, when S6 installed a profile.
        cancelled: a failed download was cancelled on the card (S7).
    """

    result: bytes
    remove: tuple[int, ...] = ()
    rollback: bool = False
    switched: bool = False
    reconfigured: bool = False
    installed: DownloadResult | None = None
    cancelled: bool = False


# -- S3 -------------------------------------------------------------------------------------------


def epr_result(client: Es10Client, epr: EuiccPackageResult, sgp32: str = "1.2") -> bytes:
    """The result reporting ``epr``: ePRAndNotifications with every notification pending on
    the card, or the EPR alone when there is none."""
    notifications = [n.raw for n in client.retrieve_notifications_list()]
    if not notifications:
        return epr.raw
    return epr_and_notifications(epr.raw, notifications, sgp32)


def execute_package(client: Es10Client, package: bytes, sgp32: str = "1.2") -> HandledPackage:
    """S3: LoadEuiccPackage of the EuiccPackageRequest ``package`` (SGP.32 version ``sgp32``)."""
    try:
        signed = schema.decode("EuiccPackageRequest", package, sgp32=sgp32)["euiccPackageSigned"]
    except schema.DecodeError as exc:
        log.warning("undecodable eUICC package: %s", exc)
        return HandledPackage(package_result_error(_INVALID, sgp32=sgp32))
    # v1.0.1 names the field transactionId; the tag (82) is the same.
    tid = signed.get("eimTransactionId", signed.get("transactionId"))
    try:
        epr = es10_iot.load_euicc_package(client, package)
    except StatusWordError as exc:  # the card would not even parse it
        log.warning("LoadEuiccPackage refused: %s", exc)
        return HandledPackage(package_result_error(_INVALID, tid, sgp32))
    kind, operations = signed["euiccPackage"]
    rollback = False
    if kind == "psmoList" and epr.ok:
        for (op, value), (name, code) in zip(operations, epr.results, strict=False):
            if op == "enable" and "rollbackFlag" in value and name == "enableResult":
                rollback = rollback or code == 0
    seqs = tuple(s for s in (epr.seq_number,) if s is not None)
    result = epr_result(client, epr, sgp32)
    log.info("eUICC package %s: %s %s", kind, epr.kind, list(epr.results))
    return HandledPackage(
        result,
        seqs,
        rollback,
        switched=epr.profile_switched,
        reconfigured=kind == "ecoList" and epr.ok,
    )


# -- S5 -------------------------------------------------------------------------------------------


def euicc_data(
    client: Es10Client,
    request: bytes,
    *,
    eim: EimConfiguration | None,
    config: PullConfig,
    sgp32: str = "1.2",
) -> HandledPackage:
    """S5: the IpaEuiccData answering the IpaEuiccDataRequest ``request``."""
    try:
        answer = build_ipa_euicc_data(
            client,
            request,
            eim_id=eim.eim_id if eim is not None else None,
            capabilities=config.capabilities,
            device_info=config.device_info,
            sgp32=sgp32,
        )
    except InvalidIpaEuiccDataRequest as exc:
        log.warning("%s", exc)
        return HandledPackage(package_result_error(_INVALID, sgp32=sgp32))
    return HandledPackage(answer.raw)


# -- S6 -------------------------------------------------------------------------------------------


class CiRestricted(Es10Client):
    """An Es10Client whose EUICCInfo1 lists only one CI key id (the eIM's euiccCiPKId), so the
    SM-DP+ picks that CI (S6 of :mod:`ipa.pull.rules`)."""

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


def activation_code_for(client: Es10Client, data: Any) -> ActivationCode:
    """The activation code of a trigger's decoded ``profileDownloadData``.

    Raises:
        ValueError, InvalidActivationCode: the trigger cannot be used by this IPAd.
    """
    if data is None:
        raise ValueError("no profileDownloadData (eimDownloadDataHandling is not offered)")
    kind, value = data
    if kind == "activationCode":
        return parse_activation_code(value)
    if kind == "contactDefaultSmdp":
        address = client.get_euicc_configured_addresses().default_dp_address
        if not address:
            raise ValueError("contactDefaultSmdp, but no default SM-DP+ address is set")
        return ActivationCode(address, "")
    raise ValueError(f"{kind} is not supported by this IPAd")


def _indirect(mode: DownloadMode, eim: EimConfiguration | None) -> bool:
    if mode is DownloadMode.AUTO:
        return eim is not None and eim.indirect_profile_download
    return mode is DownloadMode.INDIRECT


async def download_for_trigger(
    client: Es10Client,
    request: bytes,
    *,
    eim: EimConfiguration | None,
    config: PullConfig,
    esipa: Callable[[], EsipaClient],
    sgp32: str = "1.2",
) -> HandledPackage:
    """S6: run the ProfileDownloadTriggerRequest ``request`` on ``client``.

    ``eim`` is the eIM's configuration (its euiccCiPKId and indirectProfileDownload); ``esipa``
    gives its ESipa client, asked for only for an indirect download.
    """
    try:
        trigger = schema.decode("ProfileDownloadTriggerRequest", request, sgp32=sgp32)
    except schema.DecodeError as exc:
        log.warning("undecodable download trigger: %s", exc)
        return HandledPackage(package_result_error(_INVALID, sgp32=sgp32))
    tid = trigger.get("eimTransactionId")
    failed = profile_download_trigger_result(
        error_reason=ProfileDownloadErrorReason.UNDEFINED_ERROR,
        eim_transaction_id=tid,
        sgp32=sgp32,
    )
    try:
        ac = activation_code_for(client, trigger.get("profileDownloadData"))
    except (ValueError, InvalidActivationCode) as exc:
        log.warning("download trigger not usable: %s", exc)
        return HandledPackage(failed)
    card: Es10Client = client
    if eim is not None and eim.euicc_ci_pkid is not None:
        card = CiRestricted(client, eim.euicc_ci_pkid)
    options: dict[str, Any] = {"device_info": config.device_info}
    try:
        if _indirect(config.download_mode, eim):
            log.info("indirect download from %s through the eIM", ac.smdp_address)
            result = await download_profile_indirect(
                card,
                esipa(),
                ac,
                eim_transaction_id=tid,
                deliver_notification=False,
                **options,
            )
        else:
            log.info("direct download from %s", ac.smdp_address)
            result = await download_profile(card, ac, config=config.es9, **options)
    except ProfileInstallationFailed as exc:
        remove = () if exc.notification_removed else (exc.result.seq_number,)
        pir = exc.result.raw
        trigger_result = profile_download_trigger_result(
            profile_installation_result=pir, eim_transaction_id=tid, sgp32=sgp32
        )
        return HandledPackage(trigger_result, remove)
    except DownloadError as exc:
        log.warning("download failed at %s: %s", exc.step, exc)
        return HandledPackage(failed, cancelled=exc.cancelled_on_card)
    remove = () if result.notification_removed else (result.seq_number,)
    trigger_result = profile_download_trigger_result(
        profile_installation_result=result.profile_installation_result,
        eim_transaction_id=tid,
        sgp32=sgp32,
    )
    return HandledPackage(trigger_result, remove, installed=result)
