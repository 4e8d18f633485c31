"""What every IPAd does before it polls (S0 of :mod:`ipa.pull`), shared by the pull flow and
the fleet (:mod:`ipa.fleet`): the eIMs on the card (AddInitialEim from an initial
configuration when there is none), which one to poll, how its TLS is trusted, and which
SGP.32 version the card speaks (EUICCInfo2 iotVersion, GetEUICCInfo in SGP.32 §5.9.2).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from euicc_protocol import schema
from ipa import es10_iot
from ipa.errors import IpaError
from ipa.es10 import Es10Client
from ipa.es10_iot import EimConfiguration
from ipa.esipa_transport import EsipaConfig
from ipa.pull.config import PullConfig
from ipa.sgp32 import Sgp32Version, version_of

__all__ = [
    "card_sgp32_version",
    "choose_eim",
    "eim_configurations",
    "eim_tls_trust",
    "eim_url",
    "esipa_config_for",
    "sgp32_version",
]

log = logging.getLogger(__name__)


def eim_configurations(client: Es10Client, config: PullConfig) -> list[EimConfiguration]:
    """The eIMs configured on the card; on a card without any, AddInitialEim of
    ``config.initial_eim`` first (when given)."""
    configs = es10_iot.get_eim_configuration_data(client)
    if not configs and config.initial_eim is not None:
        tokens = es10_iot.add_initial_eim(client, config.initial_eim)
        log.info("AddInitialEim from the initial configuration: tokens %s", tokens)
        configs = es10_iot.get_eim_configuration_data(client)
    return configs


def choose_eim(
    configs: list[EimConfiguration], wanted: str | None, previous: str | None = None
) -> EimConfiguration | None:
    """The eIM to poll: ``wanted`` if configured, else ``previous``, else the first."""
    if not configs:
        return None
    by_id = {c.eim_id: c for c in configs}
    chosen = by_id.get(wanted or "") or by_id.get(previous or "") or configs[0]
    if wanted and chosen.eim_id != wanted:
        log.warning("eIM %s is not configured; using %s", wanted, chosen.eim_id)
    return chosen


def eim_tls_trust(eim: EimConfiguration) -> tuple[bytes | None, bytes | None]:
    """The eIM's trustedPublicKeyDataTls: ``(pinned SubjectPublicKeyInfo, anchor
    certificate)``, at most one of them set."""
    if eim.trusted_eim_pk_tls is not None:
        return eim.trusted_eim_pk_tls, None
    return None, eim.trusted_certificate_tls


def esipa_config_for(config: PullConfig, eim: EimConfiguration) -> EsipaConfig:
    """``config.esipa`` with the eIM's TLS trust added when ``config.use_eim_tls_pin``: a
    trustedEimPkTls pins the key, a trustedCertificateTls becomes a trust anchor."""
    esipa = config.esipa
    if not config.use_eim_tls_pin:
        return esipa
    pin, anchor = eim_tls_trust(eim)
    if pin is not None:
        return replace(esipa, pinned_public_key=pin)
    if anchor is not None:
        return replace(esipa, ca_certificates=esipa.ca_certificates + (anchor,))
    return esipa


def eim_url(config: PullConfig, eim: EimConfiguration) -> str:
    """Where the eIM is reached: ``config.eim_url``, else its eimFqdn."""
    url = config.eim_url or eim.eim_fqdn
    if not url:
        raise IpaError(f"eIM {eim.eim_id} has no eimFqdn and no eim_url is configured")
    return url


def card_sgp32_version(client: Es10Client) -> Sgp32Version:
    """The SGP.32 version the card announces in EUICCInfo2 iotSpecificInfo.iotVersion (the
    highest one this IPAd speaks; v1.2 when the card announces none)."""
    info = client.exchange(schema.encode("GetEuiccInfo2Request", {}))
    try:
        decoded = schema.decode("SGP32-EUICCInfo2", info)
    except schema.DecodeError:
        try:
            decoded = schema.decode("SGP32-EUICCInfo2", info, sgp32="1.0")
        except schema.DecodeError as exc:
            log.info("EUICCInfo2 without SGP.32 data (%s): assuming v1.2", exc)
            return Sgp32Version.V1_2
    versions = (decoded.get("iotSpecificInfo") or {}).get("iotVersion") or []
    return version_of(versions)


def sgp32_version(client: Es10Client, config: PullConfig) -> Sgp32Version:
    """``config.sgp32`` when set, else the card's (:func:`card_sgp32_version`)."""
    if config.sgp32 is not None:
        return Sgp32Version(config.sgp32)
    return card_sgp32_version(client)
